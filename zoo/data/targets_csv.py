"""Regression data from a CSV: one image per row, its path and the number(s) to predict.

::

    path,age              one number per image (a column of any name)
    faces/a.png,31.5
    path,x,y              several numbers: one output per column, named by the header
    path,angle            an angle model: the angle in degrees (-30 and 330 are the same angle)

Paths are relative to the CSV's folder (never outside it). Each bad CSV is one :class:`~zoo.errors.ZooError`
line that names the file, the line and what to do: an empty file, a missing ``path`` column, a cell that is not a
finite number, a file listed twice, a file that is not there.

* :class:`RegressionDataModule` (task ``regression``): the CSV (or ``columns=`` of it), decoded once at the size of
  the model being trained, a seeded validation split; ``for_evaluation`` makes every row a test set.
* :class:`AngleDataModule` (task ``angle-regression``): the same with one column of angles in degrees; the
  model's outputs are (sin θ, cos θ), so it reports those two as its ``class_names``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from zoo.data.multilabel import _TagsBase, decode_files
from zoo.errors import InvalidValueError, ZooError

PATH = "path"
ANGLE_OUTPUTS = ["sin θ", "cos θ"]  # an angle model's two outputs


def read_header(path: Path) -> list[str]:
    """The CSV's column names (stripped); one line if the file is empty, not text, or has no ``path`` column."""
    rows = _rows(path)
    if not rows:
        raise ZooError(f"{path} is empty; write a header line 'path,<target>', then one row per image")
    header = rows[0]
    if PATH not in header or len(header) < 2:
        raise ZooError(
            f"{path} needs a header line 'path,<target>' (got {','.join(header)}); "
            "one image per row, then its number(s)"
        )
    return header


def _rows(path: Path) -> list[list[str]]:
    """Every non-blank row, stripped, the header first."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [[cell.strip() for cell in row] for row in csv.reader(handle)]
    except UnicodeDecodeError:
        raise ZooError(f"{path} is not a text CSV (UTF-8); write it as path,<target> rows") from None
    except csv.Error as error:
        raise ZooError(f"{path} is not a valid CSV ({error}); write it as path,<target> rows") from None
    return [row for row in rows if any(row)]


def scan_targets_csv(
    path: Path, columns: Sequence[str] | None = None, angles: bool = False
) -> tuple[list[Path], Tensor, list[str]]:
    """The files of a ``path,<target>...`` CSV, their ``(N, K)`` float targets and the target columns' names.

    ``columns``: the target columns to read, in order (default: every column but ``path``). ``angles``: exactly
    one target column (the angle in degrees).
    """
    root = path.parent.resolve()
    header = read_header(path)
    rows = _rows(path)[1:]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise ZooError(f"{path}: column {repeated[0]!r} appears twice in the header; name each column once")
    names = list(columns) if columns is not None else [name for name in header if name != PATH]
    unknown = [name for name in names if name not in header or name == PATH]
    if unknown or not names:
        raise ZooError(f"{path} has no target column {unknown[0] if unknown else ''!r}; its columns are {header}")
    if angles and len(names) != 1:
        raise ZooError(
            f"{path} has {len(names)} target columns ({', '.join(names)}); an angle model takes one, "
            "the angle in degrees (path,angle)"
        )
    if not rows:
        raise ZooError(f"{path} lists no images; add rows of path,{','.join(names)}")
    where = {name: header.index(name) for name in (PATH, *names)}
    files: list[Path] = []
    targets = torch.zeros(len(rows), len(names), dtype=torch.float64)
    seen: dict[Path, int] = {}
    for row, cells in enumerate(rows):
        line = row + 2  # blank lines are not counted: the header is line 1
        if len(cells) != len(header):
            raise ZooError(
                f"{path}, row {line}: {len(cells)} cells for the {len(header)} columns {','.join(header)}; "
                "one cell per column (no comma inside a number)"
            )
        file = cells[where[PATH]]
        if not file:
            raise ZooError(f"{path}, row {line}: no path; every row is path,{','.join(names)}")
        for k, name in enumerate(names):
            text = cells[where[name]]
            if not text:
                raise ZooError(f"{path}, row {line}: no value in column {name!r}; give every image its number")
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise ZooError(
                    f"{path}, row {line}: {name} is {text!r}, not a finite number; regression targets are "
                    "numbers such as 3.5 or -12 (a dot for decimals)"
                )
            targets[row, k] = value
        target = (root / file).resolve()
        if not target.is_relative_to(root):
            raise ZooError(f"{path}, row {line}: {file} is outside {root}; keep the images in the CSV's folder")
        if target in seen:
            raise ZooError(f"{path}, row {line}: {file} is listed twice (row {seen[target]} too); one row per image")
        if not target.is_file():
            raise ZooError(f"{path}, row {line}: {file} is not in {root}; fix the path or remove the row")
        seen[target] = line
        files.append(target)
    return files, targets.float(), names


class RegressionDataModule(_TagsBase):
    """Images and the number(s) to predict from a ``path,<target>...`` CSV (see the module doc).

    Args:
        path: the CSV. columns: the target columns, in order (default: every column but ``path``).
        input_size: ``(C, H, W)``; default: the model being trained's.
        val_fraction, split_seed: the share of images held out for validation, and the split's seed.
        batch_size: images per batch.
    """

    angles = False  # AngleDataModule: one column of angles in degrees

    def __init__(
        self,
        path: str | Path,
        columns: list[str] | None = None,
        input_size: tuple[int, int, int] | None = None,
        val_fraction: float = 0.2,
        split_seed: int = 0,
        batch_size: int = 32,
    ) -> None:
        super().__init__()
        if not 0 <= val_fraction < 1:
            raise InvalidValueError(f"val_fraction must be in [0, 1), got {val_fraction!r} (e.g. 0.2)")
        self.save_hyperparameters(ignore=["path"])
        self.hparams["path"] = str(path)
        self.dataset_name = "targets"
        self.datasets: dict[str, TensorDataset] = {}
        path = Path(path).expanduser()
        if path.suffix.lower() != ".csv" or not path.is_file():
            kind = "angles in degrees" if self.angles else "numbers"
            raise ZooError(f"{path} is not a CSV file; regression data is a CSV of path,<target> rows ({kind})")
        files, targets, self.target_names = scan_targets_csv(path, columns, self.angles)
        self.class_names = list(ANGLE_OUTPUTS) if self.angles else list(self.target_names)
        if self.angles:
            targets = targets[:, 0]
        if val_fraction and len(files) < 2:
            raise ZooError(f"{path} lists one image; give at least two (one is held out for validation)")
        order = torch.randperm(len(files), generator=torch.Generator().manual_seed(split_seed)).tolist()
        held = min(len(files) - 1, max(1, round(val_fraction * len(files)))) if val_fraction else 0
        train, val = sorted(order[held:]), sorted(order[:held])
        self._files = {"train": ([files[i] for i in train], targets[train])}
        if val:
            self._files["val"] = ([files[i] for i in val], targets[val])

    @property
    def train_count(self) -> int:
        """How many training images (``zoo.finetune``'s step budget reads it)."""
        return len(self._files["train"][0])

    @classmethod
    def for_evaluation(cls, path: str | Path, model: Any, batch_size: int = 500) -> RegressionDataModule:
        """Every row of the CSV as the test set of ``model``: its own column names, else as many columns as it
        has outputs, in the CSV's order."""
        columns = None
        if not cls.angles:
            header = read_header(Path(path).expanduser())
            names, count = list(model.class_names), int(model.hparams.num_classes)
            targets = [name for name in header if name != PATH]
            if set(names) <= set(targets):
                columns = names
            elif len(targets) != count:
                raise ZooError(
                    f"{path} has {len(targets)} target columns ({', '.join(targets)}) but the model predicts "
                    f"{count} number(s) ({', '.join(names)}); name its columns path,{','.join(names)}"
                )
        data = cls(path, columns=columns, val_fraction=0.0, batch_size=batch_size)
        data._files = {"test": data._files["train"]}
        return data

    def setup(self, stage: str | None = None) -> None:
        size = self.model_input_size()
        for split, (files, targets) in self._files.items():
            if split not in self.datasets:
                self.datasets[split] = TensorDataset(decode_files(files, size), targets)


class AngleDataModule(RegressionDataModule):
    """A ``path,angle`` CSV for an angle model: one column of angles in degrees (see :class:`RegressionDataModule`)."""

    angles = True
