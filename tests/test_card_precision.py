"""A card's numbers are what users measure: ``zoo evaluate`` runs in float32, so a run trained in bf16 is
measured in float32 for its card, and the card says so (and what bf16 gave, where it was measured once).

Checked against a measurement made here by hand: the saved weights' float32 forward pass over the test
images, its argmax compared with the labels.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from zoo.cards import FLOAT32, measured_precision, remeasured, render_card, rewrite_measurement
from zoo.errors import ZooError
from zoo.files import sha256_file

REPO = Path(__file__).resolve().parents[1]
CARD = REPO / "model_cards" / "lenet5.fmnist"


def _card(folder: Path) -> tuple[dict, dict]:
    return json.loads((folder / "config.json").read_text()), json.loads((folder / "metrics.json").read_text())


def _rows(card: str) -> list[str]:
    return [line for line in card.splitlines() if line.startswith("| precision |")]


def test_a_float32_card_has_no_precision_row_and_a_bf16_one_says_which() -> None:
    config, metrics = _card(CARD)
    assert metrics["precision"] == FLOAT32 and _rows(render_card(config, metrics)) == []
    bf16 = {**metrics, "precision": "bf16-mixed"}  # a card of before: the run tested in its own precision
    assert measured_precision(bf16) == "bf16-mixed"
    assert _rows(render_card(config, bf16)) == [
        "| precision | measured in bf16-mixed, as trained; `zoo evaluate` measures in float32 and may differ by a "
        "few images |"
    ]
    now = remeasured(bf16, {"test_acc": 0.5, "test_loss": 1.0, "val_acc": bf16["val_acc"]})
    assert now["test_precision"] == FLOAT32 and now["test_acc"] == 0.5 and now["val_acc"] == bf16["val_acc"]
    assert now["earlier_measurement"] == {
        "precision": "bf16-mixed",
        "test_acc": bf16["test_acc"],
        "test_loss": bf16["test_loss"],
    }
    row = _rows(render_card(config, now))[0]
    assert "measured in float32, as `zoo evaluate` measures (trained in bf16-mixed" in row
    assert "measured in bf16-mixed its test top-1 was 91.55%" in row
    again = remeasured(now, {"test_acc": 0.51, "test_loss": 1.0, "val_acc": bf16["val_acc"]})
    assert again["earlier_measurement"] == now["earlier_measurement"], "the bf16 numbers stay the earlier ones"


def test_rewrite_measurement_keeps_the_weights_and_refuses_other_weights(tmp_path) -> None:
    folder = tmp_path / "lenet5.fmnist"
    shutil.copytree(CARD, folder)
    weights = sha256_file(folder / "model.safetensors")
    metrics = rewrite_measurement(folder, {"test_acc": 0.25})
    config, written = _card(folder)
    assert written == metrics and written["test_acc"] == 0.25 and written["test_precision"] == FLOAT32
    assert (folder / "README.md").read_text() == render_card(config, written)
    assert "| test top-1 accuracy (10000 images) | 25.00% |" in (folder / "README.md").read_text()
    assert sha256_file(folder / "model.safetensors") == weights and sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "metrics.json",
        "model.safetensors",
    ]
    (folder / "model.safetensors").write_bytes(b"other weights")
    before = (folder / "metrics.json").read_text()
    with pytest.raises(ZooError, match="is not the file .* describes"):
        rewrite_measurement(folder, {"test_acc": 0.99})
    assert (folder / "metrics.json").read_text() == before


def _float32_accuracy(model, count: int) -> float:
    """By hand: the first ``count`` test images through the model in float32, argmax against the labels."""
    from zoo.data.fashion_mnist import load_split

    images, labels = load_split("test")
    with torch.no_grad():
        logits = model(images[:count, None].float() / 255)
    return (logits.argmax(1) == labels[:count]).float().mean().item()


@pytest.mark.slow
def test_a_bf16_run_writes_its_card_in_float32(tmp_path, monkeypatch, fmnist_root) -> None:
    import zoo
    from zoo.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ZOO_RUN_VERSION", raising=False)
    recipe = str(REPO / "recipes" / "lenet5_fmnist.yaml")
    main(
        ["fit", "--config", recipe, "--trainer.max_epochs=1", "--trainer.limit_train_batches=3"]
        + ["--trainer.limit_val_batches=2", "--trainer.limit_test_batches=2", "--trainer.precision=bf16-mixed"]
        + ["--trainer.enable_progress_bar=false", "--data.init_args.augment=false", "--data.init_args.batch_size=100"]
        + ["--card.name", "lenet5.bf16", "--card.output_dir", str(tmp_path / "cards")]
    )
    folder = tmp_path / "cards" / "lenet5.bf16"
    config, metrics = _card(folder)
    assert metrics["precision"] == "bf16-mixed" and metrics["test_precision"] == FLOAT32
    assert metrics["test_samples"] == 200  # the run's limit_test_batches holds for the float32 measurement too
    model = zoo.load(str(folder))
    assert metrics["test_acc"] == pytest.approx(_float32_accuracy(model, 200), abs=1e-6)
    assert (
        "measured in float32, as `zoo evaluate` measures (trained in bf16-mixed)" in (folder / "README.md").read_text()
    )
