"""Segmentation data: the Fashion-MNIST scenes of :mod:`zoo.data.scenes` with an exact mask per pixel.

The scenes are the detection scenes, drawn by the same rule from the same seeds (the same images): a
garment is pasted where its scaled pixels are non-zero, a later garment on top. The mask is written by the
same rule: every pixel a garment wrote gets its class (1..10: Fashion-MNIST's label + 1), so a pixel
covered by a later garment has the later one's class, and every pixel no garment wrote is 0, the
background. Nothing is estimated: ``mask > 0`` exactly where the canvas is non-zero.

Datamodules yield ``(images (N, 1, H, W) uint8, masks (N, H, W) int64)``; training flips image and mask
together (torchvision v2 on a ``tv_tensors.Mask``).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from zoo.data.scenes import FashionMNISTScenes, make_scene, paste  # noqa: F401  paste: the mask's rule


def make_masked_scene(
    garments: Tensor, labels: Tensor, generator: torch.Generator, size: int, max_objects: int, scales: tuple[int, int]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One scene: ``(image (1, size, size) uint8, mask (size, size) int64, boxes, labels)``.

    :func:`zoo.data.scenes.make_scene` draws it, writing the mask as it pastes, so a seed gives the same
    scene as the detection data does.
    """
    mask = torch.zeros(size, size, dtype=torch.long)
    image, boxes, classes = make_scene(garments, labels, generator, size, max_objects, scales, mask=mask)
    return image, mask, boxes, classes


class MaskDataset(Dataset):
    """``(image uint8 (C, H, W), mask int64 (H, W))`` pairs, flipped together when ``flip``."""

    def __init__(self, images: Tensor, masks: Tensor, flip: bool = False) -> None:
        self.images, self.masks, self.flip = images, masks, flip
        self._augment = None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, mask = self.images[index], self.masks[index]
        if self.flip:
            from torchvision import tv_tensors
            from torchvision.transforms import v2

            if self._augment is None:
                self._augment = v2.RandomHorizontalFlip()
            image, mask = self._augment(tv_tensors.Image(image), tv_tensors.Mask(mask))
            image, mask = image.as_subclass(Tensor), mask.as_subclass(Tensor)
        return image, mask


class FashionMNISTSceneMasks(FashionMNISTScenes):
    """Fashion-MNIST scenes with exact masks (see the module doc): 10 classes + background.

    Args: those of :class:`~zoo.data.scenes.FashionMNISTScenes` (the same scenes for the same seed and sizes).
    """

    def render(self, split: str, epoch: int = 0) -> MaskDataset:
        """The scenes of a split with their masks, drawn as :class:`~zoo.data.scenes.FashionMNISTScenes` draws them."""
        scenes = self.draw(split, epoch, make_masked_scene)
        stacked, masks = torch.stack([s[0] for s in scenes]), torch.stack([s[1] for s in scenes])
        return MaskDataset(stacked, masks, flip=self.hparams.augment and split == "train")

    def setup(self, stage: str | None = None) -> None:
        splits = ("test",) if stage == "test" else ("train", "val", "test")
        for split in splits:
            if split not in self.datasets:
                self.datasets[split] = self.render(split)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            self.datasets[split] = self.render(split)
        hp = self.hparams
        return DataLoader(self.datasets[split], batch_size=hp.batch_size, shuffle=shuffle, num_workers=hp.num_workers)
