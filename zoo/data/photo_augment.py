"""Training augmentation by input size: photo-grade for networks of 64 px and more, shift-and-flip below.

Photo fine-tuning recipes (torchvision's references, timm, fastai) train on a random-resized crop of the
image, flipped, optionally with a stronger policy, and evaluate with the weights' own transforms. Here:

* **≥ 64 px** (:data:`PHOTO_SIZE`): training images are cached ``CACHE_MARGIN`` larger than the crop (short
  side resized, centre square), then each draw is ``RandomResizedCrop(scale=FINETUNE_SCALE)`` (a milder
  range than ImageNet training's (0.08, 1): a few hundred images do not survive 8% crops) and a horizontal
  flip; ``augment="trivialaugment"`` or ``"randaugment"`` adds that torchvision v2 policy. Validation and test
  images get the weights' ``transforms()`` (resize, centre crop), deterministic.
* **< 64 px** (the 28-px grey models): a random shift (padding 1/14 of the side) and a horizontal flip.
"""

from __future__ import annotations

import math
from typing import Any

PHOTO_SIZE = 64  # networks taking this many pixels a side or more get the photo recipe
FINETUNE_SCALE = (0.35, 1.0)  # RandomResizedCrop's area range for fine-tuning
CACHE_MARGIN = 1.15  # training images are kept this much larger than the crop
POLICIES = ("trivialaugment", "randaugment")


def is_photo(size: tuple[int, int, int]) -> bool:
    return min(size[1:]) >= PHOTO_SIZE


def cache_side(size: tuple[int, int, int]) -> int:
    """The side training images are cached at for a photo network (``CACHE_MARGIN`` × its crop)."""
    return math.ceil(max(size[1:]) * CACHE_MARGIN)


def check_augment(augment: Any) -> None:
    from zoo.errors import InvalidValueError

    if not (isinstance(augment, bool) or augment in POLICIES):
        raise InvalidValueError(f"augment must be true, false or one of {', '.join(POLICIES)}, got {augment!r}")


def cache_steps(size: tuple[int, int, int]) -> list[Any]:
    """PIL → the cached training image of a photo network: channels, short side to the cache size, centre square."""
    from torchvision.transforms import v2

    side = cache_side(size)
    channels = v2.Grayscale(1) if size[0] == 1 else v2.RGB()
    return [channels, v2.Resize(side, antialias=True), v2.CenterCrop(side), v2.PILToTensor()]


def train_augment(size: tuple[int, int, int], augment: Any) -> Any:
    """The training transform (uint8 tensors in, uint8 out) for a network taking ``size`` (C, H, W)."""
    from torchvision.transforms import v2

    if not augment:
        return None
    if not is_photo(size):
        return v2.Compose([v2.RandomCrop(size[1:], padding=max(1, size[1] // 14)), v2.RandomHorizontalFlip()])
    steps: list[Any] = [v2.RandomResizedCrop(size[1:], scale=FINETUNE_SCALE, antialias=True), v2.RandomHorizontalFlip()]
    if augment == "trivialaugment":
        steps.append(v2.TrivialAugmentWide())
    elif augment == "randaugment":
        steps.append(v2.RandAugment())
    return v2.Compose(steps)
