"""Data that cannot be right, refused in one line before any training (or warned about, when it can run).

* :func:`check_tensors`: ``(images, labels)`` of different lengths, float or negative labels, labels past
  the class list, images that are not ``(N, C, H, W)``/``(N, H, W)``;
* :func:`check_classes`: fewer than two classes;
* :func:`empty_validation`: the classes a validation split holds no image of (warned: their validation
  set is empty, and the validation accuracy measures the other classes only).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from zoo.errors import InvalidValueError, ZooError


def check_tensors(images: Any, labels: Any, classes: Sequence[str] | None, what: str = "") -> tuple[Tensor, Tensor]:
    """``labels`` as a long tensor, after the checks above; ``what`` names the pair in messages (``"val "``)."""
    images = torch.as_tensor(images)
    labels = torch.as_tensor(labels)
    if images.ndim not in (3, 4):
        raise InvalidValueError(f"{what}images must be (N, C, H, W) or (N, H, W), got shape {tuple(images.shape)}")
    if labels.ndim != 1:
        raise InvalidValueError(f"{what}labels must be one integer per image, shape (N,), got {tuple(labels.shape)}")
    if len(images) != len(labels):
        raise InvalidValueError(f"{len(images)} {what}images but {len(labels)} labels; give one label per image")
    if len(labels) == 0:
        raise InvalidValueError(f"no {what}images: the tensors are empty")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise InvalidValueError(
            f"{what}labels must be integers 0..K-1 (class indices), got {labels.dtype}; "
            "for class indices stored as floats use labels.long()"
        )
    labels = labels.long()
    if int(labels.min()) < 0:
        raise InvalidValueError(f"{what}labels must be class indices 0..K-1, got {int(labels.min())}")
    if classes is not None and int(labels.max()) >= len(classes):
        raise InvalidValueError(
            f"{what}label {int(labels.max())} is past the {len(classes)} classes given ({', '.join(classes[:5])}"
            f"{'...' if len(classes) > 5 else ''}); labels are 0..{len(classes) - 1}"
        )
    return images, labels


def check_classes(names: Sequence[str], where: str) -> None:
    """A classifier learns to tell classes apart: one class is refused."""
    if len(names) < 2:
        found = f"one ({names[0]})" if names else "none"
        raise ZooError(
            f"{where} has {found} class; fine-tuning a classifier needs at least 2 (one sub-folder or label per class)"
        )


def empty_validation(names: Sequence[str], train: Sequence[int], val: Sequence[int]) -> list[str]:
    """The classes with no validation image while others have some; warned in one line (returned)."""
    if not val:
        return []
    held = set(val)
    empty = [name for i, name in enumerate(names) if i not in held]
    if empty:
        counts = ", ".join(f"{name} ({list(train).count(names.index(name))})" for name in empty[:5])
        warnings.warn(
            f"too few images to validate class(es) {counts}{' ...' if len(empty) > 5 else ''} "
            f"(training images in brackets): their validation set is empty, so the validation accuracy measures "
            f"the other {len(names) - len(empty)} classes only; add images (at least 2 per class, 5 for a 20% split)",
            stacklevel=3,
        )
    return empty
