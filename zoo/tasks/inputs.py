"""What a zoo task accepts: the input checks every LightningModule of the zoo runs, and option checks.

``check_input`` (shape and channels) always runs; ``check_values`` (dtype, finiteness, range) at
inference; ``preprocess`` turns integer pixels into [0, 1] floats and normalises them with the
weights' statistics. ``check_numbers`` / ``check_choices`` give the one-line errors of bad options.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from zoo.errors import InputShapeError, InputValueError, InvalidValueError


class InputChecks:
    """Mixed into :class:`~zoo.tasks.base.ZooTask` (reads its ``input_size``, ``mean``/``std``, ``hparams``)."""

    def as_batch(self, x: Any) -> Tensor:
        """What the model takes, from what users hold: a tensor as it is; a numpy array as a tensor (4-D
        channels-last arrays, as PIL and OpenCV give them, become (N, C, H, W)); a PIL image, or a list of
        them, through the weights' own ``transforms()``; a list of (C, H, W) tensors stacked. An empty
        batch is refused in one line; anything else goes on to :meth:`check_input`'s refusal."""
        name = self.weights_name or self.hparams.model_name
        if type(x).__module__ == "numpy" and hasattr(x, "__array__"):
            import numpy as np

            if x.dtype.kind not in "biuf":
                raise InputValueError(f"{name} takes image pixels as numbers, got a numpy array of {x.dtype}")
            x = torch.from_numpy(np.ascontiguousarray(x))
            if x.ndim == 4 and x.shape[1] != self.input_size[0] and x.shape[3] == self.input_size[0]:
                x = x.permute(0, 3, 1, 2)  # (N, H, W, C) → (N, C, H, W)
        elif _is_pil(x):
            x = self.transforms()(x)[None]
        elif isinstance(x, (list, tuple)) and x and all(_is_pil(item) for item in x):
            transform = self.transforms()
            x = torch.stack([transform(item) for item in x])
        elif isinstance(x, (list, tuple)) and x and all(isinstance(item, Tensor) for item in x):
            if len({tuple(item.shape) for item in x}) > 1:
                raise InputShapeError(
                    f"{name} takes a batch of images of one size; the {len(x)} tensors given have different "
                    "shapes (resize them, or pass them one at a time)"
                )
            x = torch.stack(list(x))
        if (isinstance(x, (list, tuple)) and not x) or (isinstance(x, Tensor) and x.ndim >= 1 and x.shape[0] == 0):
            raise InputShapeError(f"{name} got an empty batch (no images); give at least one image")
        if not isinstance(x, Tensor):
            self.check_input(x)  # its one-line refusal of a non-tensor
        return x

    def check_input(self, x: Tensor) -> None:
        channels, height, width = self.input_size
        name = self.weights_name or self.hparams.model_name
        if not isinstance(x, Tensor):
            raise InputShapeError(
                f"{name} takes a torch.Tensor batch (N, C, H, W), got a {type(x).__name__}; "
                "convert it with torch.as_tensor(...) (numpy arrays and PIL images are taken as they are)"
            )
        if x.ndim != 4:
            raise InputShapeError(
                f"{name} takes a batch (N, C, H, W); got a tensor of shape {tuple(x.shape)} (add a batch dimension with x[None])"
            )
        if x.shape[1] != channels:
            raise InputShapeError(
                f"{name} takes {channels}-channel images, got {x.shape[1]} channels; convert the images "
                f"or create the model with in_chans={x.shape[1]}"
            )
        if self.fixed_input_size and tuple(x.shape[2:]) != (height, width):
            raise InputShapeError(
                f"{name} takes {height}×{width} images, got {x.shape[2]}×{x.shape[3]}; resize the images to {height}×{width}"
            )

    def check_values(self, x: Tensor) -> None:
        """At inference: pixels must be finite and in [0, 1] (floats) or 0-255 (integers), one line if not.

        Training batches are not checked (the hot path; Lightning's ``detect_anomaly`` is the switch there).
        """
        name = self.weights_name or self.hparams.model_name
        if x.dtype == torch.bool or x.is_complex():
            raise InputValueError(f"{name} takes image pixels as floats in [0, 1] or integers 0-255, got {x.dtype}")
        extremes = torch.aminmax(x)  # one pass over the batch: NaN and ±inf show in its extremes
        if not x.is_floating_point():
            low, high = int(extremes.min), int(extremes.max)
            if low < 0 or high > 255:
                raise InputValueError(
                    f"{name} reads integer images as 0-255 pixels, got values from {low} to {high}; "
                    "give uint8 images, or floats in [0, 1]"
                )
            return
        low, high = float(extremes.min), float(extremes.max)
        if not math.isfinite(low) or not math.isfinite(high):
            bad = int((~torch.isfinite(x)).sum())
            raise InputValueError(f"{name} got {bad} NaN or infinite pixel values; check how the images were loaded")
        if low < -1e-3 or high > 1 + 1e-3:
            hint = "divide by 255" if high > 1.5 and low >= 0 else "do not normalise them: the model does it itself"
            raise InputValueError(
                f"{name} takes float pixels in [0, 1], got values from {low:.3g} to {high:.3g}; {hint}"
            )

    def preprocess(self, x: Tensor) -> Tensor:
        """Integer pixels (uint8, int64...) → [0, 1] floats, then the normalisation the weights were trained with."""
        x = self.normalize(x)  # zoo.layers.pixels.Normalize: the same wrapper as zoo.backbone's and the export's
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def _is_pil(x: Any) -> bool:
    """A PIL image, without importing PIL for those who never use it."""
    return any(cls.__module__.startswith("PIL.") and cls.__name__ == "Image" for cls in type(x).__mro__)


def check_numbers(**values: tuple[Any, type, float | None, float | None, str]) -> None:
    """One-line errors for options that must be numbers in a range (``lr="fast"``, ``num_classes=-1``)."""
    for option, (value, kind, low, high, example) in values.items():
        if value is None and option == "in_chans":
            continue
        whole = kind is int
        ok_type = isinstance(value, int) if whole else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type:
            what = "a whole number" if whole else "a number"
            raise InvalidValueError(f"{option} must be {what}, got {value!r} ({example})")
        if (low is not None and value < low) or (high is not None and value >= high):
            bounds = ("a whole number " if whole else "") + (f"≥ {low}" if high is None else f"in [{low}, {high})")
            raise InvalidValueError(f"{option} must be {bounds}, got {value!r} ({example})")


def check_choices(**values: tuple[Any, Any]) -> None:
    """A one-line error for an option value outside its ``Literal`` choices (``optimizer="sgdd"``)."""
    import difflib

    for option, (value, choices) in values.items():
        allowed = choices.__args__
        if value not in allowed:
            close = difflib.get_close_matches(str(value), allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise InvalidValueError(f"unknown {option} {value!r}; {hint}choose one of {', '.join(allowed)}")
