"""Regression data: Fashion-MNIST garments rotated by a random angle (the target), and your own tensors.

:class:`FashionMNISTRotations` turns every garment by an angle drawn uniformly in [0°, 360°), counter-clockwise
as :func:`torchvision.transforms.v2.functional.rotate` turns (the corners that leave the 28×28 frame are cut;
the background is black, so nothing else is lost). Training angles are drawn again for every batch, so the
network never sees the same (garment, angle) twice; validation and test angles are fixed by the seed, the
same on every machine. Batches are ``(images uint8 (N, 1, 28, 28), angles (N,) degrees, garment classes (N,))``:
the class is there to report the error per garment (a T-shirt turned by 180° looks much like itself).

:class:`TensorRegressionData`: ``(images, targets)`` tensors (targets ``(N,)`` or ``(N, K)`` numbers, or angles
in degrees for an angle model), split into training and validation with a seed.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import TensorDataset

from zoo.data.fashion_mnist import CLASS_NAMES
from zoo.data.multilabel import _TagsBase
from zoo.errors import InvalidValueError


def rotate(images: Tensor, degrees: Tensor) -> Tensor:
    """Each image ``(N, C, H, W)`` turned counter-clockwise by its own angle (bilinear, black outside), same dtype."""
    radians = degrees.float() * math.pi / 180
    cos, sin = torch.cos(radians), torch.sin(radians)
    # output pixel → input pixel (normalised coordinates, y downwards): the inverse rotation
    theta = torch.stack(
        [torch.stack([cos, -sin, torch.zeros_like(cos)], 1), torch.stack([sin, cos, torch.zeros_like(cos)], 1)], 1
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.round().clamp(0, 255).to(images.dtype) if images.dtype == torch.uint8 else out


class RandomRotations(torch.utils.data.Dataset):
    """Garments with their class; the angle is drawn per batch by :meth:`collate`."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]

    @staticmethod
    def collate(batch: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
        images = torch.stack([image for image, _ in batch])
        labels = torch.stack([label for _, label in batch])
        angles = torch.rand(len(images)) * 360
        return rotate(images, angles), angles, labels


class FashionMNISTRotations(_TagsBase):
    """Fashion-MNIST garments turned by a random angle; the target is the angle in degrees (module doc).

    Args:
        train_images: how many training garments (of the 55,000 not held out; 0: all).
        val_images: validation garments, from the 5,000 held out (fixed angles).
        test_images: test garments (of the 10,000 test images; fixed angles).
        seed: the split and the fixed angles. batch_size: garments per batch. root: the IDX files' folder.
    """

    dataset_name = "fashion_mnist_rotations"
    class_names = ["sin θ", "cos θ"]  # the outputs of an angle model
    group_names = list(CLASS_NAMES)  # what each garment is, for the error per class

    def __init__(
        self,
        train_images: int = 20_000,
        val_images: int = 2_000,
        test_images: int = 10_000,
        seed: int = 0,
        batch_size: int = 128,
        root: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.datasets: dict[str, Any] = {}

    def _fixed(self, images: Tensor, labels: Tensor, offset: int) -> TensorDataset:
        generator = torch.Generator().manual_seed(self.hparams.seed * 7 + offset)
        angles = torch.rand(len(images), generator=generator) * 360
        return TensorDataset(rotate(images, angles), angles, labels)

    def setup(self, stage: str | None = None) -> None:
        from zoo.data.fashion_mnist import load_split

        hp = self.hparams
        if "test" not in self.datasets:
            images, labels = load_split("test", hp.root, download=False)
            self.datasets["test"] = self._fixed(images[: hp.test_images].unsqueeze(1), labels[: hp.test_images], 2)
        if stage == "test" or "train" in self.datasets:
            return
        images, labels = load_split("train", hp.root, download=False)
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(hp.seed))
        train, held = order[:-5000], order[-5000:][: hp.val_images]
        train = train[: hp.train_images] if hp.train_images else train
        self.datasets["train"] = RandomRotations(images[train].unsqueeze(1), labels[train])
        self.datasets["val"] = self._fixed(images[held].unsqueeze(1), labels[held], 1)

    def _loader(self, split: str, shuffle: bool):
        from torch.utils.data import DataLoader

        dataset = self.datasets[split]
        collate = RandomRotations.collate if isinstance(dataset, RandomRotations) else None
        return DataLoader(dataset, batch_size=self.hparams.batch_size, shuffle=shuffle, collate_fn=collate)


class TensorRegressionData(_TagsBase):
    """``(images, targets)`` tensors for a regression model: a seeded ``val_fraction`` held out for validation."""

    def __init__(
        self,
        images: Tensor,
        targets: Tensor,
        classes: list[str] | None = None,
        val_fraction: float = 0.2,
        split_seed: int = 0,
        batch_size: int = 32,
        input_size: tuple[int, int, int] | None = None,
        test: bool = False,
    ) -> None:
        super().__init__()
        from zoo.data.folders import _as_uint8

        self.save_hyperparameters(ignore=["images", "targets"])
        targets = torch.as_tensor(targets).float()
        if len(targets) != len(images):
            raise InvalidValueError(f"{len(images)} images but {len(targets)} targets; give one target per image")
        if not bool(torch.isfinite(targets).all()):
            raise InvalidValueError("regression targets must be finite numbers")
        self.class_names = (
            list(classes) if classes else [str(i) for i in range(1 if targets.ndim == 1 else targets.shape[1])]
        )
        self.dataset_name = "tensors"
        images = _as_uint8(images)
        self.datasets: dict[str, Any] = {}
        if test:
            self._tensors = {"test": (images, targets)}
            return
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(split_seed)).tolist()
        held = min(len(images) - 1, round(val_fraction * len(images)))
        train, val = sorted(order[held:]), sorted(order[:held])
        self._tensors = {"train": (images[train], targets[train]), "val": (images[val], targets[val])}

    def setup(self, stage: str | None = None) -> None:
        from zoo.data.folders import _resize_tensor

        size = self.model_input_size()
        for split, (images, targets) in self._tensors.items():
            if split not in self.datasets:
                self.datasets[split] = TensorDataset(_resize_tensor(images, size), targets)
