"""Where a command writes: checked before any work, so a bad ``-o`` costs a second, not a training run.

    check_output_file("curves.yaml", suffixes=(".png",), option="-o")   # ZooError: give a name ending in .png
    check_output_folder("notes.txt/cards", option="--card.output_dir")  # ZooError: notes.txt is a file

Each check raises a one-line :class:`~zoo.errors.ZooError` and touches nothing on disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from zoo.errors import ZooError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")  # what matplotlib writes without extra libraries


def _blocking_file(path: Path) -> Path | None:
    """The first existing ancestor of ``path`` that is not a folder (so nothing can be created under it)."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def check_output_file(
    path: str | Path,
    *,
    suffixes: Sequence[str] | None = None,
    overwrite: bool = True,
    option: str = "-o",
) -> Path:
    """``path`` can be written as a file: not a folder, not under a file, the right suffix, new unless ``overwrite``."""
    path = Path(path).expanduser()
    shown = f"{option} {path}" if option else str(path)
    if not str(path).strip() or path.name in ("", ".", ".."):
        raise ZooError(f"{shown}: give a file name")
    if path.is_dir():
        raise ZooError(
            f"{shown} is a folder; give a file name inside it, e.g. {path / ('out' + (suffixes or ['.png'])[0])}"
        )
    blocker = _blocking_file(path)
    if blocker is not None:
        raise ZooError(f"{shown}: {blocker} is a file, so nothing can be written under it; give a path in a folder")
    if suffixes and path.suffix.lower() not in suffixes:
        wanted = " or ".join(suffixes)
        raise ZooError(f"{shown}: the file name must end in {wanted} (got {path.suffix or 'no suffix'})")
    if path.exists() and not overwrite:
        raise ZooError(f"{shown} already exists; give another file name, or --overwrite to replace it")
    return path


def check_output_folder(path: str | Path, *, option: str = "") -> Path:
    """``path`` can be (or already is) a folder: neither it nor any of its parents is a file."""
    path = Path(path).expanduser()
    shown = f"{option} {path}" if option else str(path)
    if path.exists() and not path.is_dir():
        raise ZooError(f"{shown} is a file, not a folder; give a folder path")
    blocker = _blocking_file(path)
    if blocker is not None:
        raise ZooError(f"{shown}: {blocker} is a file, so no folder can be made under it; give a folder path")
    return path
