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
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from zoo.data.scenes import FashionMNISTScenes, _iou


def paste(canvas: Tensor, mask: Tensor, patch: Tensor, label: int, x0: int, y0: int) -> None:
    """Paste ``patch`` (h, w) uint8 at (x0, y0), in place: its non-zero pixels over the canvas, and class
    ``label + 1`` over the mask at the same pixels."""
    h, w = patch.shape
    region, labels = canvas[y0 : y0 + h, x0 : x0 + w], mask[y0 : y0 + h, x0 : x0 + w]
    drawn = patch > 0
    region[drawn] = patch[drawn]
    labels[drawn] = label + 1


def make_masked_scene(
    garments: Tensor, labels: Tensor, generator: torch.Generator, size: int, max_objects: int, scales: tuple[int, int]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One scene: ``(image (1, size, size) uint8, mask (size, size) int64, boxes, labels)``.

    The random draws are :func:`zoo.data.scenes.make_scene`'s, in the same order, so a seed gives the
    same scene as the detection data does.
    """
    canvas = torch.zeros(size, size, dtype=torch.uint8)
    mask = torch.zeros(size, size, dtype=torch.long)
    count = int(torch.randint(1, max_objects + 1, (1,), generator=generator))
    boxes, classes = [], []
    for _ in range(count):
        for _attempt in range(100):
            index = int(torch.randint(len(garments), (1,), generator=generator))
            side = int(torch.randint(scales[0], scales[1] + 1, (1,), generator=generator))
            x0 = int(torch.randint(0, size - side + 1, (1,), generator=generator))
            y0 = int(torch.randint(0, size - side + 1, (1,), generator=generator))
            patch = F.interpolate(
                garments[index][None, None].float(), size=(side, side), mode="bilinear", antialias=True
            )
            patch = patch[0, 0].round().clamp(0, 255).to(torch.uint8)
            rows, cols = (patch > 20).any(1).nonzero().flatten(), (patch > 20).any(0).nonzero().flatten()
            if not len(rows):
                continue
            box = torch.tensor([x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1], dtype=torch.float)
            if boxes and float(_iou(box, torch.stack(boxes)).max()) > 0.2:
                continue
            paste(canvas, mask, patch, int(labels[index]), x0, y0)
            boxes.append(box)
            classes.append(int(labels[index]))
            break
    return canvas[None], mask, torch.stack(boxes), torch.tensor(classes, dtype=torch.long)


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
