"""What a command reads, checked before any work: a file of the kind the option takes, or one line that
names the file, what it is and what was expected (the other half of :mod:`zoo.destinations`).

    check_recipe("notes.txt")        # ZooError: --config notes.txt is a text file, not a recipe; expected ...
    check_metrics_csv("notes.txt")   # ZooError: notes.txt is a text file, not a training run's metrics CSV; ...

A checkpoint is read (safely) by :func:`zoo.files.read_pickle`, an ONNX file by :mod:`zoo.predict`, an image by
the image readers; each refuses a file of another kind in one line as well.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from zoo.errors import ZooError

RECIPE_EXAMPLE = "recipes/lenet5_fmnist.yaml"
RECIPE_SECTIONS = ("model", "data", "trainer")
METRICS_COLUMNS = ("epoch", "step")  # every row of Lightning's CSVLogger has them

_MAGIC = (  # the first bytes of the files people give by mistake
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"PK\x03\x04", "a ZIP archive (a PyTorch checkpoint is one)"),
    (b"\x80", "a pickle (a PyTorch file)"),
    (b"%PDF", "a PDF"),
    (b"\x1f\x8b", "a gzip file"),
)


def describe(path: str | Path) -> str:
    """What a file is, in words, from its first bytes: ``"a PNG image"``, ``"a text file"``, ``"an empty file"``,
    ``"a binary file"``."""
    if Path(path).is_dir():
        return "a folder"
    if not Path(path).exists():
        return "a missing file"
    try:
        with Path(path).open("rb") as file:
            head = file.read(4096)
    except OSError:
        return "a file that cannot be read"
    if not head:
        return "an empty file"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 1 << 27:
        return "a safetensors file"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 4:  # not just a character cut at the 4096th byte
            return "a binary file"
    return "a text file"


def read_text(path: Path, shown: str, expected: str) -> str:
    """The text of ``path``, or one line: it is missing, a folder, or not text (``expected``: what it should be)."""
    if not path.exists():
        raise ZooError(f"{shown} not found; {expected}")
    if path.is_dir():
        raise ZooError(f"{shown} is a folder; {expected}")
    try:
        return path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark is no content
    except UnicodeDecodeError:
        raise ZooError(f"{shown} is {describe(path)}, not text; {expected}") from None


def read_csv(path: str | Path, expected: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of a text CSV, or one line naming the file, what it is, and ``expected``."""
    path = Path(path).expanduser()
    text = read_text(path, str(path), expected)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = list(reader)
    except csv.Error as err:
        raise ZooError(f"{path} is not a valid CSV ({err}); {expected}") from None
    return list(reader.fieldnames or []), rows


def check_recipe(path: str | Path, option: str = "--config", expected: str | None = None) -> dict[str, Any]:
    """``path`` is a recipe: a YAML mapping such as ``recipes/lenet5_fmnist.yaml`` (its ``model:``, ``data:``,
    ``trainer:`` sections); returns it. Anything else is one line naming the file and what it is
    (``option``: how the command line named the file; ``expected``: what it takes instead)."""
    import yaml

    path = Path(path).expanduser()
    shown = f"recipe {path}" if option == "--config" else f"{option} {path}"
    expected = expected or f"give a recipe YAML file with model:, data:, trainer: sections, such as {RECIPE_EXAMPLE}"
    text = read_text(path, shown, expected)
    try:
        recipe = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ZooError(f"{shown} is not valid YAML ({problem}{where}); {expected}") from None
    if not isinstance(recipe, dict):
        if recipe is None:
            what = "empty"
        elif isinstance(recipe, (str, int, float)):
            what = f"{describe(path)} ({' '.join(str(recipe).split())[:40]!r})"
        else:
            what = f"a YAML {type(recipe).__name__}"
        raise ZooError(f"{shown} is {what}, not a YAML mapping; {expected}")
    return recipe


def check_metrics_csv(path: str | Path) -> list[dict[str, str]]:
    """The rows of a training run's ``metrics.csv`` (Lightning's ``CSVLogger``: ``epoch``, ``step`` and the
    logged values), or one line naming the file and what it is."""
    path = Path(path).expanduser()
    expected = "give a run folder such as runs/zoo/<version> or its metrics.csv (written by zoo fit's CSV logger)"
    kind = describe(path) if path.is_file() else ""
    text = read_text(path, str(path), expected)
    header = next(csv.reader(io.StringIO(text)), [])
    missing = [column for column in METRICS_COLUMNS if column not in header]
    if missing:
        first = text.splitlines()[0][:40] if text.strip() else ""
        what = f"{kind} whose first line is {first!r}" if kind == "a text file" and first else kind
        raise ZooError(
            f"{path} is {what}, not a training run's metrics CSV (no {' or '.join(missing)} column); {expected}"
        )
    rows = list(csv.DictReader(io.StringIO(text)))
    for number, row in enumerate(rows, start=2):
        for key, value in row.items():
            if key is None or value in (None, ""):
                if key is None:  # more cells than columns
                    raise ZooError(f"{path} line {number} has more cells than the header's columns; {expected}")
                continue
            try:
                float(value)
            except ValueError:
                raise ZooError(
                    f"{path} line {number}: {key} is {value[:30]!r}, not a number; a metrics CSV holds numbers only"
                ) from None
    return rows
