"""Detection data: multi-object Fashion-MNIST scenes (COCO-format folders of your own: :mod:`zoo.data.coco`).

A *scene* is a black 64×64 canvas with 1 to 4 real Fashion-MNIST garments, each scaled to a random
side of 14 to 28 pixels and pasted at a random position whose box overlaps every earlier box by
IoU ≤ 0.2 (positions are drawn again until one does; a later garment lies on top). Its box is the
tight box of the garment's non-zero pixels, so boxes are exact. The scenes are fixed by the seed:
training scenes use the training images, validation scenes a held-out 5,000 of them, and the 1,000
test scenes the test images, the same on every machine.

Detection datamodules yield ``(images (N, C, H, W) uint8, targets)``, each target a dict of ``boxes``
``(k, 4)`` float ``xyxy`` in pixels and ``labels`` ``(k,)`` int64: torchvision's detection format.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from zoo.data.fashion_mnist import CLASS_NAMES
from zoo.errors import InvalidValueError


def paste(canvas: Tensor, mask: Tensor | None, patch: Tensor, label: int, x0: int, y0: int) -> None:
    """Paste ``patch`` (h, w) uint8 at (x0, y0), in place: its non-zero pixels over the canvas (the later
    garment on top), and, given a ``mask``, class ``label + 1`` over the mask at the same pixels."""
    h, w = patch.shape
    drawn = patch > 0
    canvas[y0 : y0 + h, x0 : x0 + w][drawn] = patch[drawn]
    if mask is not None:
        mask[y0 : y0 + h, x0 : x0 + w][drawn] = label + 1


def make_scene(
    garments: Tensor,
    labels: Tensor,
    generator: torch.Generator,
    size: int,
    max_objects: int,
    scales: tuple[int, int],
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One scene from a pool of ``garments`` (N, 28, 28) uint8: ``(image (1, size, size), boxes, labels)``;
    given a ``(size, size)`` ``mask`` of zeros, every pixel a garment wrote gets its class + 1 there."""
    canvas = torch.zeros(size, size, dtype=torch.uint8)
    count = int(torch.randint(1, max_objects + 1, (1,), generator=generator))
    boxes, classes = [], []
    for _ in range(count):
        for _attempt in range(100):  # drawn again until it overlaps the earlier boxes little
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
    return canvas[None], torch.stack(boxes), torch.tensor(classes, dtype=torch.long)


def _iou(box: Tensor, others: Tensor) -> Tensor:
    low, high = torch.maximum(box[:2], others[:, :2]), torch.minimum(box[2:], others[:, 2:])
    inter = (high - low).clamp_min(0).prod(1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(others) - inter)


def collate_detection(batch: Sequence[tuple[Tensor, dict[str, Tensor]]]) -> tuple[Tensor, list[dict[str, Tensor]]]:
    """Images of one size stacked; targets kept as a list (each image has its own number of boxes)."""
    return torch.stack([image for image, _ in batch]), [target for _, target in batch]


def detection_loader(datamodule: L.LightningDataModule, split: str, shuffle: bool) -> DataLoader:
    """A loader over ``datamodule.datasets[split]`` with its batch size and workers, batched as lists of targets."""
    return DataLoader(
        datamodule.datasets[split],
        batch_size=datamodule.hparams.batch_size,
        shuffle=shuffle,
        num_workers=datamodule.hparams.num_workers,
        collate_fn=collate_detection,
    )


class SceneDataset(Dataset):
    """Pre-rendered scenes: ``(image uint8 (1, H, W), {"boxes", "labels"})``."""

    def __init__(self, images: Tensor, targets: list[dict[str, Tensor]], flip: bool = False) -> None:
        self.images, self.targets, self.flip = images, targets, flip

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        image, target = self.images[index], self.targets[index]
        if self.flip and torch.rand(()) < 0.5:  # a horizontal flip, boxes mirrored with it
            width = image.shape[-1]
            image = image.flip(-1)
            boxes = target["boxes"].clone()
            boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
            target = {**target, "boxes": boxes}
        return image, target


class FashionMNISTScenes(L.LightningDataModule):
    """Multi-object Fashion-MNIST scenes for detection (see the module doc).

    Args:
        size: canvas side in pixels. max_objects: garments per scene (1 to this many).
        min_scale, max_scale: garment side range in pixels. train_scenes/val_scenes/test_scenes: split sizes.
        seed: the scenes' seed. batch_size, num_workers: DataLoader settings. augment: horizontal flips.
        fresh_train_scenes: draw new training scenes every epoch (epoch ``e`` from its own seed, so a resumed
            run sees the same ones) instead of the same ``train_scenes`` each time: more garments, positions
            and neighbours for the same compute. Needs ``trainer.reload_dataloaders_every_n_epochs=1``.
        root: folder of the Fashion-MNIST IDX files (as :class:`~zoo.data.FashionMNISTDataModule`).
    """

    dataset_name = "fashion_mnist_scenes"
    class_names = list(CLASS_NAMES)
    num_classes = 10
    in_chans = 1

    def __init__(
        self,
        size: int = 64,
        max_objects: int = 4,
        min_scale: int = 14,
        max_scale: int = 28,
        train_scenes: int = 10_000,
        val_scenes: int = 1_000,
        test_scenes: int = 1_000,
        seed: int = 0,
        batch_size: int = 32,
        num_workers: int = 0,
        augment: bool = True,
        fresh_train_scenes: bool = False,
        root: str | None = None,
    ) -> None:
        super().__init__()
        if not 0 < min_scale <= max_scale <= size:
            raise InvalidValueError(f"need 0 < min_scale ≤ max_scale ≤ size, got {min_scale}, {max_scale}, {size}")
        if max_objects < 1:
            raise InvalidValueError(f"max_objects must be ≥ 1, got {max_objects}")
        self.save_hyperparameters()
        self.datasets: dict[str, SceneDataset] = {}

    def render(self, split: str, epoch: int = 0) -> SceneDataset:
        hp = self.hparams
        scenes = self.draw(split, epoch, make_scene)
        stacked = torch.stack([image for image, _, _ in scenes])
        targets = [{"boxes": boxes, "labels": classes} for _, boxes, classes in scenes]
        return SceneDataset(stacked, targets, flip=hp.augment and split == "train")

    def draw(self, split: str, epoch: int, maker) -> list:
        """The scenes of a split made by ``maker`` (:func:`make_scene`, or a subclass's), each from the same
        images and seeds: a subclass drawing masks gets the very scenes the detector sees."""
        from zoo.data.fashion_mnist import load_split

        hp = self.hparams
        images, labels = load_split("test" if split == "test" else "train", hp.root, download=False)
        if split != "test":  # the last 5,000 training images are the validation scenes' pool
            order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(hp.seed))
            keep = order[:-5000] if split == "train" else order[-5000:]
            images, labels = images[keep], labels[keep]
        count = {"train": hp.train_scenes, "val": hp.val_scenes, "test": hp.test_scenes}[split]
        offset = {"train": 0, "val": 1, "test": 2}[split]
        generator = torch.Generator().manual_seed(hp.seed * 3 + offset + 1_000_003 * epoch)
        return [
            maker(images, labels, generator, hp.size, hp.max_objects, (hp.min_scale, hp.max_scale))
            for _ in range(count)
        ]

    def setup(self, stage: str | None = None) -> None:
        for split in ("train", "val", "test"):
            if split not in self.datasets:
                self.datasets[split] = self.render(split)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return detection_loader(self, split, shuffle)

    def train_dataloader(self) -> DataLoader:
        if self.hparams.fresh_train_scenes and self.trainer is not None:
            if self.trainer.reload_dataloaders_every_n_epochs != 1:
                raise InvalidValueError(
                    "fresh_train_scenes needs a new training loader every epoch: "
                    "add --trainer.reload_dataloaders_every_n_epochs 1"
                )
            if self.trainer.current_epoch:  # epoch 0 trains on the scenes setup() rendered
                self.datasets["train"] = self.render("train", self.trainer.current_epoch)
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
