"""Image files as a dataset for inference: each file decoded once, prepared by the weights' transforms.

An unreadable file does not stop the run: its item is ``None`` and :func:`collate_readable` drops it, so
the caller can count and name the failures (``zoo predict`` warns and sets its exit code).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from zoo.errors import ZooError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm")


def find_images(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given; folders expanded to the image files inside them, recursively and sorted.

    A path that is neither (a typo) stops here with its name, before any model is run.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise ZooError(f"no such image file or folder: {path}; check the path")
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            found.append(path)
    return found


class ImageFiles(Dataset):
    """``(index, tensor)`` per file, ``transform`` (PIL → float tensor) applied; ``(index, None)`` if unreadable."""

    def __init__(self, files: Sequence[Path], transform: Callable[[Any], Any]) -> None:
        self.files = list(files)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        from PIL import Image

        try:
            with Image.open(self.files[index]) as image:
                return index, self.transform(image)
        except (OSError, ValueError, SyntaxError):  # missing, truncated or not an image
            return index, None


def unreadable_error(bad: Sequence[str | Path]) -> ZooError:
    """One line for image files that could not be read, each named with what it is (a text file, a PDF...)."""
    from zoo.sources import describe

    shown = ", ".join(f"{p} ({describe(p)})" for p in bad[:3]) + (f" (+{len(bad) - 3} more)" if len(bad) > 3 else "")
    return ZooError(f"cannot read {shown} as an image; give PNG or JPEG files, or folders of them")


def read_all(files: Sequence[Path], transform: Callable[[Any], Any]) -> list[Any]:
    """Every file through ``transform``; an unreadable one stops here in one line (:func:`unreadable_error`)."""
    dataset = ImageFiles(files, transform)
    items = [dataset[i][1] for i in range(len(files))]
    bad = [files[i] for i, item in enumerate(items) if item is None]
    if bad:
        raise unreadable_error(bad)
    return items


def collate_readable(items: list[tuple[int, Any]]):
    """A batch of the readable items: ``(indices, stacked tensors or None, unreadable indices)``."""
    import torch

    good = [(i, x) for i, x in items if x is not None]
    bad = [i for i, x in items if x is None]
    if not good:
        return [], None, bad
    return [i for i, _ in good], torch.stack([x for _, x in good]), bad
