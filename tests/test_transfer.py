"""The README's transfer experiment: its table is the script's output, and a small run keeps its ordering."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))


def test_readme_transfer_table_is_the_experiments_output() -> None:
    block = re.search(r"<!-- transfer:start -->\n(.*?)<!-- transfer:end -->", (REPO / "README.md").read_text(), re.S)
    assert block and block.group(1) == (REPO / "docs" / "transfer.md").read_text(), (
        "README's transfer table is stale: copy docs/transfer.md (written by experiments/transfer_fmnist.py)"
    )
    assert (REPO / "docs" / "transfer.png").stat().st_size > 10_000


@pytest.mark.slow
def test_fine_tuning_beats_scratch_by_five_points_on_a_small_budget(fmnist_root) -> None:
    """LeNet-5 pretrained on classes 0-4, 25 images per class of 5-9, 15 epochs, one seed."""
    from transfer_fmnist import run

    scratch = run("lenet5_relu", "scratch", 25, seed=0, epochs=15)["test_acc"]
    tuned = max(run("lenet5_relu", method, 25, seed=0, epochs=15)["test_acc"] for method in ("linear_probe", "full"))
    assert tuned >= scratch + 0.05, (tuned, scratch)
