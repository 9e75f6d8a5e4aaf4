"""Box-aware training augmentation for detection fine-tuning (torchvision v2 with ``tv_tensors.BoundingBoxes``).

Each training draw: a horizontal flip, a scale jitter (``RandomAffine`` zoom in ``SCALE`` about the centre,
with a small shift; the canvas keeps its size), brightness/contrast jitter and Gaussian pixel noise of a
random strength up to ``NOISE`` (on [0, 1] pixels). Boxes move with the pixels; boxes left with less than
``MIN_SIDE`` pixels a side (pushed off the canvas) are dropped with their labels.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

SCALE = (0.8, 1.2)
SHIFT = 0.05  # of the side
NOISE = 0.1  # the largest σ of the pixel noise, on [0, 1] pixels
MIN_SIDE = 2.0


class PixelNoise(torch.nn.Module):
    """Gaussian noise of σ drawn uniformly in [0, ``sigma``] on a uint8 image (boxes untouched)."""

    def __init__(self, sigma: float = NOISE) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, image: Tensor, target: Any) -> tuple[Tensor, Any]:
        from torchvision import tv_tensors

        sigma = float(torch.rand(())) * self.sigma
        noisy = image.float() / 255 + sigma * torch.randn(image.shape)
        return tv_tensors.wrap(noisy.clamp(0, 1).mul(255).round().to(torch.uint8), like=image), target


def box_transform(sigma: float = NOISE) -> Any:
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandomAffine(degrees=0, translate=(SHIFT, SHIFT), scale=SCALE),
            v2.ColorJitter(brightness=0.2, contrast=0.2),
            v2.SanitizeBoundingBoxes(min_size=MIN_SIDE),
        ]
    ), PixelNoise(sigma)


class BoxAugment:
    """One training draw on ``(uint8 image, {"boxes": xyxy pixels, "labels"})``: pixels and boxes moved alike."""

    def __init__(self, sigma: float = NOISE) -> None:
        self.geometric, self.noise = box_transform(sigma)

    def __call__(self, image: Tensor, target: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        from torchvision import tv_tensors

        image = tv_tensors.Image(image)
        boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=tuple(image.shape[-2:]))
        image, moved = self.geometric(image, {"boxes": boxes, "labels": target["labels"]})
        image, moved = self.noise(image, moved)
        return image.as_subclass(Tensor), {
            "boxes": moved["boxes"].as_subclass(Tensor).float(),
            "labels": moved["labels"],
        }


class BoxAugmented(Dataset):
    """``dataset``'s ``(uint8 image, {"boxes": xyxy pixels, "labels"})`` items, augmented box-aware each draw."""

    def __init__(self, dataset: Dataset, sigma: float = NOISE) -> None:
        self.dataset = dataset
        self.augment = BoxAugment(sigma)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        return self.augment(*self.dataset[index])
