"""Every image mode PIL opens, as the 8-bit grey or RGB image a model takes, with no silent loss.

PIL's own ``convert("L")`` clips 16-bit grey to 0/255 (a 2-level image); here each mode is scaled:

* ``I;16*`` (16-bit grey PNG/TIFF) and ``I`` (32-bit integers holding 16-bit values): ``round(v / 257)``,
  so 0..65535 maps onto 0..255 (``I`` values already in 0..255 are kept);
* ``F`` (32-bit float): values in [0, 1] times 255, else clipped to 0..255;
* ``1`` (bilevel): 0 and 255;
* ``P`` (palette): through its palette (and its transparency, if any);
* alpha (``LA``, ``PA``, ``RGBA``, ``La``, ``RGBa``): the colour under it is kept, as PIL and torchvision's
  ``ImageFolder`` do (premultiplied modes are un-multiplied first);
* ``CMYK``: ``R = 255·(1 − C/255)·(1 − K/255)`` (and G, B from M, Y), which is PIL's conversion;
* ``YCbCr``, ``LAB``, ``HSV``: PIL's conversion to RGB.

Colour to grey is ITU-R 601 luma (``0.299 R + 0.587 G + 0.114 B``), PIL's ``L``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I;16S")


def to_8bit(image: Any) -> Any:
    """``image`` as mode ``L`` (grey) or ``RGB``, every mode's values scaled to 0..255 (see the module doc)."""
    from PIL import Image

    mode = image.mode
    if mode in ("L", "RGB"):
        return image
    if mode in SIXTEEN_BIT or mode == "I":
        values = np.asarray(image).astype(np.int64)
        if mode == "I" and values.size and values.max() <= 255 and values.min() >= 0:
            scaled = values
        else:
            scaled = np.rint(np.clip(values, 0, 65535) / 257.0)
        return Image.fromarray(scaled.astype(np.uint8), mode="L")
    if mode == "F":
        values = np.asarray(image).astype(np.float64)
        if values.size and values.min() >= 0 and values.max() <= 1:
            values = values * 255
        return Image.fromarray(np.rint(np.clip(values, 0, 255)).astype(np.uint8), mode="L")
    if mode == "1":
        return image.convert("L")
    if mode == "P":
        return to_8bit(image.convert("RGBA" if "transparency" in image.info else "RGB"))
    if mode in ("La", "RGBa"):
        return to_8bit(image.convert(mode.upper()))
    if mode in ("LA", "PA"):
        return image.convert("RGBA").convert("L") if mode == "PA" else image.getchannel(0)
    return image.convert("RGB")  # RGBA (alpha dropped), CMYK, YCbCr, LAB, HSV, RGBX


def is_colour(image: Any, tolerance: int = 2) -> bool:
    """Whether an image holds colour (not grey stored as RGB): some pixel's channels differ by more than ``tolerance``."""
    image = to_8bit(image)
    if image.mode == "L":
        return False
    small = image.copy()
    small.thumbnail((64, 64))
    values = np.asarray(small).astype(np.int16)
    return bool((values.max(axis=-1) - values.min(axis=-1)).max() > tolerance)


def colour_files(files: Sequence[Path], sample: int = 32) -> tuple[int, int]:
    """``(colour, checked)``: how many of an even sample of up to ``sample`` of ``files`` are colour images."""
    from PIL import Image

    files = list(files)
    picked = files[:: max(1, len(files) // sample)][:sample]
    count = 0
    for path in picked:
        try:
            with Image.open(path) as image:
                if image.format == "JPEG":
                    image.draft("RGB", (128, 128))  # a reduced decode is enough to see colour
                count += is_colour(image)
        except (OSError, ValueError, SyntaxError):
            continue
    return count, len(picked)


def grey_model_warning(colour: int, checked: int) -> str:
    """The one line said when colour images are turned grey for a grey model."""
    return (
        f"{colour} of {checked} images checked are colour but the model takes grey images: they are converted "
        "to grey (luma); pass in_chans=3 (zoo finetune: --model.in_chans 3) to keep the colour"
    )


def reduced_jpeg(image: Any, width: int, height: int) -> Any:
    """A JPEG decoded at the smallest DCT scale (1/2, 1/4, 1/8) still at least ``width`` × ``height``
    (PIL's ``draft``): a 4000-px photo for a 224-px network decodes at 1/8 the work. Other formats as they are."""
    if getattr(image, "format", None) == "JPEG" and image.mode in ("RGB", "L", "CMYK", "YCbCr"):
        image.draft(image.mode if image.mode in ("RGB", "L") else "RGB", (width, height))
    return image


class DecodeAtLeast:
    """``reduced_jpeg`` for a target whose short side is ``short`` (aspect kept) or which is ``size`` exactly."""

    def __init__(self, short: int | None = None, size: tuple[int, int] | None = None) -> None:
        self.short, self.size = short, size

    def __call__(self, image: Any) -> Any:
        width, height = image.size
        if self.short is not None:
            scale = self.short / min(width, height)
            return reduced_jpeg(image, int(np.ceil(width * scale)), int(np.ceil(height * scale)))
        return reduced_jpeg(image, *(self.size or (width, height)))
