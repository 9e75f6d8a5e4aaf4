"""Where a user's labelled images are: the ``(file, class index)`` lists behind :mod:`zoo.data.folders`.

* :func:`scan_folder`: ``photos/<class>/<image>``, one sub-folder per class;
* :func:`scan_csv`: a ``path,label`` CSV, paths relative to its folder (never outside it), labels as
  class names or integers 0..K-1;
* :func:`split_per_class`: a seeded validation split that holds out the same share of every class.

Each bad layout is one :class:`~zoo.errors.ZooError` line that names the file and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from zoo.data.images import IMAGE_SUFFIXES
from zoo.errors import DatasetNotFoundError, ZooError
from zoo.sources import read_csv

VAL_NAMES = ("val", "validation", "valid")  # the names a validation split's folder may have


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def scan_folder(folder: Path, classes: Sequence[str] | None = None) -> tuple[list[tuple[Path, int]], list[str]]:
    """``(file, class index)`` for every image of ``folder/<class>/``, and the class names (sorted)."""
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subfolders:
        raise DatasetNotFoundError(
            f"{folder} has no class sub-folders; lay the images out as {folder}/<class>/<image>, "
            "or give a CSV file of path,label"
        )
    names = list(classes) if classes is not None else [p.name for p in subfolders]
    index = {name: i for i, name in enumerate(names)}
    items: list[tuple[Path, int]] = []
    for sub in subfolders:
        if sub.name not in index:
            raise ZooError(f"{sub} is not one of the classes {names}; remove it or name it in the class list")
        files = _images_in(sub)
        if not files:
            raise ZooError(
                f"class folder {sub} has no images ({', '.join(s[1:] for s in IMAGE_SUFFIXES[:4])}...); "
                "add images or remove the folder"
            )
        items += [(f, index[sub.name]) for f in files]
    return items, names


def scan_csv(path: Path, classes: Sequence[str] | None = None) -> tuple[list[tuple[Path, int]], list[str]]:
    """``(file, class index)`` for every row of a ``path,label`` CSV, and the class names."""
    root = path.parent.resolve()
    fields, table = read_csv(path, "a labelled CSV is UTF-8 text of path,label rows")
    if not {"path", "label"} <= set(fields):
        raise ZooError(f"{path} needs a header line 'path,label' (got {fields}); one image per row")
    rows = [(line, row["path"], (row["label"] or "").strip()) for line, row in enumerate(table, start=2)]
    if not rows:
        raise ZooError(f"{path} lists no images; add rows of path,label")
    for line, file, label in rows:
        if not (file or "").strip() or not label:
            raise ZooError(
                f"{path}, line {line}: {'no label' if file and file.strip() else 'no path'}; every row is path,label"
            )
    labels = [label for _, _, label in rows]
    if classes is None:
        numeric = all(label.isdigit() for label in labels)
        named = [label for label in labels if not label.isdigit()]
        if not numeric and len(named) < len(labels):
            number = next(label for label in labels if label.isdigit())
            raise ZooError(
                f"{path}: labels mix numbers ({number}) and names ({named[0]}); use class names throughout, "
                "or integers 0..K-1 throughout"
            )
        if numeric:
            count = max(int(label) for label in labels) + 1
            classes = [str(i) for i in range(count)]
        else:
            classes = sorted(set(labels))
    index = {name: i for i, name in enumerate(classes)}
    index.update({str(i): i for i in range(len(classes)) if str(i) not in index})  # integer labels 0..K-1 too
    items, seen = [], {}
    for line, file, label in rows:
        if label not in index:
            raise ZooError(f"{path}, line {line}: label {label!r} is not in the class list {list(classes)}")
        target = (root / file).resolve()
        if not target.is_relative_to(root):
            raise ZooError(f"{path}, line {line}: {file} is outside {root}; keep the images in the CSV's folder")
        if target in seen:
            first, before = seen[target]
            if before != index[label]:
                raise ZooError(
                    f"{path}, line {line}: {file} is labelled {label!r} but line {first} labels it "
                    f"{classes[before]!r}; one label per image"
                )
        seen.setdefault(target, (line, index[label]))
        items.append((target, index[label]))
    return items, list(classes)


def split_per_class(items: list[tuple[Path, int]], fraction: float, seed: int) -> tuple[list, list]:
    """A seeded split holding out ``fraction`` of each class (at least one image of a class of ≥ 2)."""
    if fraction <= 0:
        return list(items), []
    generator = torch.Generator().manual_seed(seed)
    train, val = [], []
    for label in sorted({y for _, y in items}):
        members = [item for item in items if item[1] == label]
        order = torch.randperm(len(members), generator=generator).tolist()
        held = min(len(members) - 1, max(1 if len(members) > 1 else 0, round(fraction * len(members))))
        val += [members[i] for i in order[:held]]
        train += [members[i] for i in order[held:]]
    return train, val
