"""The transfer experiment (docs/transfer.md): its table is the script's output, and a small run keeps its ordering."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))


def test_readme_transfer_table_is_the_experiments_output() -> None:
    from docs_text import block
    from transfer_fmnist import table

    assert block("transfer").strip() == table(json.loads((REPO / "docs" / "transfer.json").read_text())).strip(), (
        "docs/transfer.md's table is stale: run python tests/test_readme.py (the table of docs/transfer.json)"
    )
    assert (REPO / "docs" / "transfer.png").stat().st_size > 10_000


@pytest.mark.slow
def test_fine_tuning_beats_scratch_by_five_points_on_a_small_budget(fmnist_root) -> None:
    """LeNet-5 pretrained on classes 0-4, 25 images per class of 5-9, 15 epochs, one seed."""
    from transfer_fmnist import run

    scratch = run("lenet5_relu", "scratch", 25, seed=0, epochs=15)["test_acc"]
    tuned = max(run("lenet5_relu", method, 25, seed=0, epochs=15)["test_acc"] for method in ("linear_probe", "full"))
    assert tuned >= scratch + 0.05, (tuned, scratch)
