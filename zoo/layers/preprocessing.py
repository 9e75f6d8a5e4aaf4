"""Each weight's evaluation preprocessing as a torchvision v2 pipeline (``model.transforms()``).

PIL image or uint8 tensor → the model's channel count → resize + centre crop as the weights were
evaluated (or a plain resize to the input size) → float tensor in [0, 1]. The normalisation is not
here: it is inside the model, so ``model(model.transforms()(image)[None])`` is all a user writes.
"""

from __future__ import annotations

from typing import Any

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


def eval_transforms(
    input_size: tuple[int, int, int], resize: int | None = None, interpolation: str = "bilinear", **_: Any
):
    """The pipeline for a model taking ``input_size`` (C, H, W) images."""
    import torch
    from torchvision.transforms import InterpolationMode, v2

    channels, height, width = input_size
    mode = InterpolationMode(interpolation)
    steps: list[Any] = [v2.Grayscale(1) if channels == 1 else v2.RGB()]
    if resize:  # the short side to `resize`, then the centre (torchvision's ImageClassification)
        steps += [v2.Resize(resize, interpolation=mode, antialias=True), v2.CenterCrop((height, width))]
    else:
        steps += [v2.Resize((height, width), interpolation=mode, antialias=True)]
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    return v2.Compose(steps)
