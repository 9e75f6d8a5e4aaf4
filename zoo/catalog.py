"""The registry's catalog: what ``zoo list`` shows, readable without importing torch.

Building the registry means importing every model family, hence torch, which alone takes longer than
the whole answer should. So ``zoo list`` reads ``catalog.json`` beside this file: one row per built-in
architecture (name, family, input size, parameter count, the family's extra columns, weight tags),
written from the live registry by :func:`write` and compared with it by the tests, so that a new model,
weight or parameter count cannot leave it stale. ``zoo list --flops`` and ``--markdown`` still build
the networks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CATALOG = Path(__file__).with_name("catalog.json")
REFRESH = 'python -c "import zoo.models, zoo.catalog as c; c.write()"'


def rows_from_registry() -> list[dict[str, Any]]:
    """The catalog rows of the architectures registered in this process (import ``zoo.models`` first)."""
    from zoo.registry import get_entry, list_models

    rows = []
    for name in list_models():
        entry = get_entry(name)
        rows.append(
            {
                "name": entry.name,
                "family": entry.family,
                "input_size": list(entry.input_size),
                "num_params": entry.num_params,
                "columns": dict(entry.columns),
                "weights": list(entry.weights),
            }
        )
    return rows


def write(path: Path = CATALOG) -> Path:
    """Write the catalog of the registered architectures (after ``import zoo.models``)."""
    lines = [json.dumps(row, ensure_ascii=False) for row in rows_from_registry()]  # a row a line: readable diffs
    path.write_text("[\n" + ",\n".join(lines) + "\n]\n")
    return path


def read(
    pattern: str | Iterable[str] = "*", pretrained: bool = False, exclude: Iterable[str] = (), path: Path = CATALOG
) -> list[dict[str, Any]]:
    """Catalog rows chosen as :func:`zoo.registry.list_models` chooses names (``pattern``, ``pretrained``...)."""
    from zoo.registry import name_matches  # no torch: the registry module imports only zoo.errors

    rows = json.loads(path.read_text())
    return [row for row in rows if name_matches(row["name"], bool(row["weights"]), pattern, pretrained, exclude)]
