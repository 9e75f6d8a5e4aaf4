"""What was saved is what is loaded or resumed: config.json under the card's hash, --ckpt_path of the recipe's model.

A weight folder's ``metrics.json`` records the sha256 of ``config.json`` beside the weights' own, so a config
edited after saving (another ``architecture`` whose tensors have the same shapes) is refused instead of
building another network around the weights. ``zoo fit --ckpt_path`` refuses a checkpoint of another
architecture or task before training, where Lightning would silently train the checkpoint's model instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import lightning as L
import pytest
import torch

import zoo
from zoo.cards import write_folder
from zoo.cli import main
from zoo.cli.checkpoints import check_ckpt_model
from zoo.files import CONFIG_HASH_KEY, bundled_cards_dir, config_sha256
from zoo.pretrained import check_folder

REPO = Path(__file__).resolve().parents[1]
RESNET_RECIPE = str(REPO / "recipes" / "resnet20_fmnist.yaml")


@pytest.fixture
def card(tmp_path) -> Path:
    """A complete weight folder of a randomly initialised LeNet-5."""
    torch.manual_seed(0)
    model = zoo.create("lenet5")
    return write_folder(tmp_path / "lenet5.test", model.net.state_dict(), model.model_config("lenet5.test"), {})


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and len(text) < 400, text
    return text


# ---- config.json under the card's sha256 ---------------------------------------------------------
def test_written_folder_records_the_hash_of_its_config(card) -> None:
    config, metrics = _json(card / "config.json"), _json(card / "metrics.json")
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert metrics[CONFIG_HASH_KEY] == hashlib.sha256(canonical).hexdigest() == config_sha256(config)


def test_edited_architecture_is_refused_in_one_line(card) -> None:
    """lenet5_relu has exactly LeNet-5's tensors: without the hash these weights would load into it."""
    config = _json(card / "config.json")
    config["architecture"] = "lenet5_relu"
    (card / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for load in (lambda: zoo.load(str(card)), lambda: check_folder(card)):  # loading, and before a push
        with pytest.raises(zoo.WeightsError) as info:
            load()
        line = _one_line(info.value)
        assert "config.json" in line and "edited" in line and "restore the original config.json" in line


def test_reformatted_config_still_loads(card, caplog) -> None:
    """Line endings and indentation (a Windows checkout, an editor) are not an edit of the values."""
    config = _json(card / "config.json")
    (card / "config.json").write_bytes(json.dumps(config, indent=4).replace("\n", "\r\n").encode())
    with caplog.at_level(logging.WARNING, logger="zoo"):
        model = zoo.load(str(card))
    assert model.hparams.model_name == "lenet5" and not caplog.records


def test_folder_without_a_config_hash_loads_with_one_warning(card, caplog) -> None:
    """Folders pushed by older versions record only the weights' sha256: they still load, with a warning."""
    metrics = _json(card / "metrics.json")
    del metrics[CONFIG_HASH_KEY]
    (card / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    with caplog.at_level(logging.WARNING, logger="zoo"):
        model = zoo.load(str(card))
    assert model.hparams.model_name == "lenet5"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert "config.json is not covered by a sha256" in warnings[0] and "save_pretrained()" in warnings[0]
    again = model.save_pretrained(card.parent / "resaved")  # re-saving records it
    assert _json(again / "metrics.json")[CONFIG_HASH_KEY] == config_sha256(_json(again / "config.json"))


def test_shipped_cards_record_their_config_hash() -> None:
    folders = [p for p in sorted(bundled_cards_dir().iterdir()) if (p / "config.json").is_file()]
    assert len(folders) >= 10
    for folder in folders:
        assert _json(folder / "metrics.json").get(CONFIG_HASH_KEY) == config_sha256(_json(folder / "config.json")), (
            folder.name
        )


# ---- --ckpt_path of another model ----------------------------------------------------------------
@pytest.fixture
def lenet5_ckpt(tmp_path) -> Path:
    """A real Lightning checkpoint: LeNet-5 trained for two steps on random tensors."""
    torch.manual_seed(0)
    model = zoo.create("lenet5")
    images = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.arange(16) % 10), batch_size=8)
    trainer = L.Trainer(
        max_steps=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, loader)
    path = tmp_path / "lenet5.ckpt"
    trainer.save_checkpoint(path)
    return path


def _refused(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and err and err[-1].startswith("zoo: error: "), err[-3:]
    assert not any("Traceback" in line for line in err), err
    return err[-1]


def test_fit_refuses_a_checkpoint_of_another_architecture(lenet5_ckpt, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    line = _refused(["fit", "--config", RESNET_RECIPE, "--ckpt_path", str(lenet5_ckpt)], capsys)
    assert "checkpoint of lenet5, but the recipe builds resnet20" in line and str(lenet5_ckpt) in line
    assert "(classification)" not in line, "the tasks are the same: only the architectures are named"
    assert not (tmp_path / "runs").exists(), "refused before any run folder, model or data was made"


def test_fit_refuses_a_checkpoint_of_another_task(lenet5_ckpt, tmp_path, monkeypatch, capsys) -> None:
    """A detector's checkpoint (hyper-parameters and class path as the CLI saves them) for a classifier recipe."""
    checkpoint = torch.load(lenet5_ckpt, weights_only=True)
    detector = zoo.create("detr_lite")
    checkpoint["hyper_parameters"] = {
        **dict(detector.hparams),
        "_class_path": f"{type(detector).__module__}.{type(detector).__name__}",
    }
    checkpoint["state_dict"] = detector.state_dict()
    torch.save(checkpoint, tmp_path / "detr.ckpt")
    monkeypatch.chdir(tmp_path)
    line = _refused(["fit", "--config", RESNET_RECIPE, "--ckpt_path", str(tmp_path / "detr.ckpt")], capsys)
    assert "checkpoint of detr_lite (detection), but the recipe builds resnet20 (classification)" in line
    assert not (tmp_path / "runs").exists()


def test_a_checkpoint_of_the_recipes_own_model_is_taken(lenet5_ckpt) -> None:
    checkpoint = torch.load(lenet5_ckpt, weights_only=True)
    recipe_model = {"class_path": "zoo.tasks.classification.ImageClassifier", "init_args": {"model_name": "lenet5"}}
    check_ckpt_model(str(lenet5_ckpt), checkpoint, recipe_model)  # no error: the resume goes ahead
    with pytest.raises(zoo.ZooError, match="checkpoint of lenet5, but the recipe builds lenet5_relu"):
        check_ckpt_model(str(lenet5_ckpt), checkpoint, {**recipe_model, "init_args": {"model_name": "lenet5_relu"}})
