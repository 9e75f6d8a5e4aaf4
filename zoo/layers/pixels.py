"""Pixels in, normalised tensors out: the one input wrapper of the task, the feature extractor and the
exported graph.

:class:`Normalize` takes what users hand a model, integer pixels (uint8, 0-255) or floats in [0, 1], and
returns ``(x - mean) / std`` in the model's dtype. Integer pixels are scaled by 1/255 here and nowhere else
(:func:`to_unit`), so a batch means the same to ``model(x)``, ``zoo.backbone(...)(x)`` and an exported
file. ``mean`` and ``std`` are non-persistent buffers: they follow the module to its device and dtype, and
stay out of the weights' state dict (``config.json`` holds them).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def to_unit(x: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Integer pixels (0-255) → floats in [0, 1] of ``dtype``; floats are cast to ``dtype`` unchanged."""
    if not x.is_floating_point():
        return x.to(dtype).div_(255)
    return x if x.dtype == dtype else x.to(dtype)


class Normalize(nn.Module):
    """``[0, 1]`` floats or uint8 pixels → ``(x - mean) / std``, per channel (see the module doc)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([float(m) for m in mean]).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([float(s) for s in std]).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (to_unit(x, self.mean.dtype) - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"
