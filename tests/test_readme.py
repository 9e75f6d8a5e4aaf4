"""The documentation's generated parts stay generated: the registry table (`zoo list --markdown`), the budget
table, the detection table, the recipe-comparison table, the fine-tuning defaults and the transfer experiment,
each on whichever page holds its markers (README.md or a page of docs/).

``python tests/test_readme.py`` rewrites them all (and the catalog and the export-support table) where they
are, from the registry, the cards and the experiments' JSON, after a card, an entry or a run changes."""

from __future__ import annotations

import json
import re
import sys

import pytest
from docs_text import README, blocks, pages_with

from zoo.cli.tables import budget_markdown, detection_markdown, registry_markdown, sweep_markdown

SWEEPS = README.parent / "docs" / "recipe_sweeps.json"
EXPERIMENTS = README.parent / "experiments"


def _experiment_table(script: str, results: str, function: str = "table", key: str | None = None):
    """The table an experiment script prints (its ``table()`` or ``markdown()``) from the JSON of its runs in docs/."""

    def generate() -> str:
        sys.path.insert(0, str(EXPERIMENTS))
        runs = json.loads((README.parent / "docs" / results).read_text())
        return getattr(__import__(script), function)(runs[key] if key else runs)

    return generate


TABLES = [  # (marker, generator, what it is): the blocks this file checks and regenerate() rewrites
    ("registry", registry_markdown, "the output of `zoo list --markdown`"),
    ("budget", budget_markdown, "zoo.cli.tables.budget_markdown()"),
    ("detection", detection_markdown, "zoo.cli.tables.detection_markdown()"),
    ("sweeps", lambda: sweep_markdown(SWEEPS), "zoo.cli.tables.sweep_markdown('docs/recipe_sweeps.json')"),
    (
        "finetune-defaults",
        _experiment_table("finetune_defaults", "finetune_defaults.json"),
        "experiments/finetune_defaults.py's table() of docs/finetune_defaults.json",
    ),
    (
        "finetune-head",
        _experiment_table("finetune_defaults", "finetune_defaults_accuracy_rule.json", "head_table"),
        "experiments/finetune_defaults.py's head_table() of docs/finetune_defaults_accuracy_rule.json",
    ),
    (
        "faithfulness",
        _experiment_table("explain_faithfulness", "explain_faithfulness.json", "markdown", "results"),
        "experiments/explain_faithfulness.py's markdown() of docs/explain_faithfulness.json",
    ),
    (
        "transfer",
        _experiment_table("transfer_fmnist", "transfer.json"),
        "experiments/transfer_fmnist.py's table() of docs/transfer.json",
    ),
]


@pytest.mark.parametrize(("marker", "generate", "how"), TABLES)
def test_generated_tables_are_current(marker: str, generate, how: str) -> None:
    generated = generate().strip()
    for page, text in blocks(marker):
        assert text.strip() == generated, (
            f"{page.name}'s {marker} table is stale: run python tests/test_readme.py ({how})"
        )


def test_readme_opens_with_the_two_commands() -> None:
    first_block = README.read_text().split("```")[1]
    commands = [line for line in first_block.splitlines()[1:] if line.strip()]
    assert len(commands) == 2
    assert "zoo classify lenet5.fmnist samples/*.png" in commands[0]
    assert commands[1].endswith("-m pytest -q")


def test_detection_table_reads_the_detector_cards(monkeypatch) -> None:
    """With and without a pretrained backbone: one row per detector card, numbers from its metrics.json."""
    from zoo.cli import tables

    cards = [
        ("detr_lite.a", {"backbone_weights": "resnet20.fmnist", "test_map_50": 0.9123, "test_map": 0.61}),
        ("detr_lite.b", {"backbone_weights": None, "test_map_50": 0.7, "test_map": 0.4}),
    ]
    budget = {"epochs": 12, "wall_time_s": 3600, "hardware": "CPU X, 2 cores; torch 2"}
    monkeypatch.setattr(tables, "trained_cards", lambda task: [(n, {**m, **budget}) for n, m in cards])
    rows = detection_markdown().splitlines()[2:]
    assert rows == [
        "| `detr_lite.a` | `resnet20.fmnist` | 0.912 | 0.610 | 12 | 60 min | CPU X, 2 cores |",
        "| `detr_lite.b` | random initialisation | 0.700 | 0.400 | 12 | 60 min | CPU X, 2 cores |",
    ]


def regenerate() -> None:
    """Rewrite the catalog and every generated block, on whichever page holds it, from the registry and the cards."""
    import zoo.catalog
    import zoo.models  # noqa: F401  (registers the families the catalog lists)

    sys.path.insert(0, str(README.parent / "tests"))
    from test_export import support_markdown

    zoo.catalog.write()
    tables = {marker: generate() for marker, generate, _ in TABLES} | {"export": support_markdown()}
    for marker, generated in tables.items():
        pattern = rf"(<!-- {marker}:start -->\n).*?(\n<!-- {marker}:end -->)"
        for page in pages_with(marker):
            text = page.read_text()
            page.write_text(
                re.sub(pattern, lambda m, b=generated: m.group(1) + b.strip() + m.group(2), text, flags=re.S)
            )


if __name__ == "__main__":
    regenerate()
