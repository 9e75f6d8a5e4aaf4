"""A task is one file: a task defined entirely here (regressing an image's mean brightness, a scalar) is
registered, then created, fitted, saved, loaded, evaluated and fine-tuned through the public API alone.

The numbers it is checked against are computed here independently: the mean of the pixels (the target),
and the mean absolute error of the model's own outputs recomputed with plain torch. Also here: the
behaviours the one-task / one-build-path issue lists (commands that do not apply, evaluation on the
wrong dataset, a live model fine-tuned with other channels, options checked the same for every source).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics import MeanAbsoluteError

import zoo
from zoo.errors import InvalidValueError, ZooError
from zoo.evaluate import evaluate
from zoo.task_descriptions import Score, TaskDescription, get_task, list_tasks, register_task
from zoo.tasks.base import ZooTask

TASK = "test_brightness"


class BrightnessRegressor(ZooTask):
    """An image in, its mean brightness out: one linear output, MSE loss, MAE as the metric (lower is better)."""

    task = TASK

    def __init__(self, model_name: str = "lenet5", num_classes: int = 1, **kwargs: Any) -> None:
        super().__init__(model_name=model_name, num_classes=num_classes, **kwargs)
        self.val_mae, self.test_mae = MeanAbsoluteError(), MeanAbsoluteError()
        self.test_count = 0

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, targets = batch
        out = self(images)[:, 0]
        return F.mse_loss(out, targets), out, targets

    def training_step(self, batch, batch_idx):
        loss, _, _ = self._step(batch)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, out, targets = self._step(batch)
        self.val_mae(out, targets)
        self.log("val_loss", loss)
        self.log("val_mae", self.val_mae)

    def on_test_epoch_start(self) -> None:
        self.test_count = 0

    def test_step(self, batch, batch_idx):
        loss, out, targets = self._step(batch)
        self.test_count += len(targets)
        self.test_mae(out, targets)
        self.log("test_loss", loss)
        self.log("test_mae", self.test_mae)

    def measured_test_samples(self) -> int:
        return self.test_count

    def card_test_metrics(self, test: dict[str, Any], val: dict[str, Any]) -> dict[str, Any]:
        return {"test_mae": test["test_mae"], "test_samples": self.test_count, "val_mae": val["val_mae"]}

    def card_test_details(self) -> dict[str, Any]:
        return {}


class Brightness(L.LightningDataModule):
    """(images, targets) tensors, split 3:1 into train and val; the test set is the val set."""

    class_names = ["brightness"]
    dataset_name = "brightness"

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, batch_size: int = 16) -> None:
        super().__init__()
        if len(images) != len(targets):
            raise InvalidValueError(f"{len(images)} images but {len(targets)} targets; give one target per image")
        cut = len(images) * 3 // 4
        self.train, self.val = TensorDataset(images[:cut], targets[:cut]), TensorDataset(images[cut:], targets[cut:])
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val, batch_size=self.batch_size)

    test_dataloader = val_dataloader


def _tensors(data: Any, **options: Any) -> Brightness:
    if not (isinstance(data, tuple) and len(data) == 2):
        raise InvalidValueError("brightness data is (images, targets) tensors")
    return Brightness(*data, **options)


DESCRIPTION = register_task(
    TaskDescription(
        name=TASK,
        pipeline="zoo-test-brightness-regression",
        module=BrightnessRegressor,
        title="brightness regression",
        monitor="val_mae",
        mode="min",
        score=Score("test_mae", "MAE", percent=False),
        model_index=("mae", "mean absolute error"),
        model_index_scale=1.0,
        card_rows=(
            Score("test_mae", "test MAE ({test_samples} images)", percent=False),
            Score("val_mae", "best validation MAE", percent=False),
        ),
        test_metrics=(Score("test_mae", "MAE", percent=False),),
        data=("(images, targets) tensors",),
        commands=("evaluate", "fit", "finetune", "export"),
        datamodule=_tensors,
        eval_datamodule=lambda data, model, batch_size=500: _tensors(data, batch_size=batch_size),
    )
)


@pytest.fixture(scope="module")
def brightness() -> tuple[torch.Tensor, torch.Tensor]:
    """Real Fashion-MNIST images (uint8) and their mean brightness in [0, 1], computed here."""
    from zoo.data.fashion_mnist import load_split

    images, _ = load_split("test")
    images = images[:256].unsqueeze(1)  # (N, 1, 28, 28) uint8
    return images, images.float().div(255).mean(dim=(1, 2, 3))


def _mae_by_hand(model: ZooTask, images: torch.Tensor, targets: torch.Tensor) -> float:
    with torch.no_grad():
        out = model.eval()(images.float() / 255)[:, 0]
    return float((out - targets).abs().mean())


def test_a_task_defined_in_one_file_goes_through_the_whole_public_api(brightness, tmp_path, fmnist_root) -> None:
    images, targets = brightness
    assert TASK in list_tasks() and get_task("zoo-test-brightness-regression") is DESCRIPTION

    model = zoo.create("lenet5", task=TASK, lr=0.05)
    assert isinstance(model, BrightnessRegressor) and model.hparams.num_classes == 1
    data = Brightness(images, targets)
    before = _mae_by_hand(model, images[192:], targets[192:])
    L.seed_everything(0)
    trainer = L.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(model, datamodule=data)
    after = _mae_by_hand(model, images[192:], targets[192:])
    assert after < before, (before, after)

    folder = model.save_pretrained(tmp_path / "bright", name="lenet5.brightness")
    config = json.loads((folder / "config.json").read_text())
    assert config["task"] == "zoo-test-brightness-regression"
    card = (folder / "README.md").read_text()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert "top-1" not in card and "accuracy" not in card  # nothing of classification's card
    assert "| test MAE (? images) | – |" in card  # the task's own rows; nothing measured yet, nothing made up
    measured = model.save_pretrained(
        tmp_path / "measured", name="lenet5.brightness", metrics={**metrics, "test_mae": 0.0123, "test_samples": 64}
    )
    card = (measured / "README.md").read_text()
    assert "| test MAE (64 images) | 0.0123 |" in card  # the task's own number format, not a percentage
    assert "name: mean absolute error" in card and "value: 0.0123" in card  # the model-index, unscaled

    loaded = zoo.load(folder)
    assert isinstance(loaded, BrightnessRegressor)
    assert _mae_by_hand(loaded, images, targets) == pytest.approx(_mae_by_hand(model, images, targets), abs=1e-6)

    result = evaluate(loaded, (images, targets))
    assert result["test_samples"] == 64
    assert result["test_mae"] == pytest.approx(_mae_by_hand(loaded, images[192:], targets[192:]), abs=1e-5)
    with pytest.raises(ZooError, match="classify does not apply to .* brightness regression model"):
        loaded.description.require("classify", "lenet5.brightness")

    tuned = zoo.finetune(folder, (images, targets), max_epochs=2, lr=0.01)
    assert isinstance(tuned, BrightnessRegressor)
    assert tuned.card_metrics["val_mae"] == pytest.approx(_mae_by_hand(tuned, images[192:], targets[192:]), abs=1e-5)
    assert "val_acc" not in tuned.card_metrics  # the task's own monitor, not classification's


def test_classifier_weights_start_another_task_with_a_fresh_head(brightness) -> None:
    images, targets = brightness
    source = zoo.load("lenet5.fmnist")
    model = zoo.load("lenet5.fmnist", task=TASK)
    assert isinstance(model, BrightnessRegressor) and model.head.out_features == 1
    from zoo.registry import get_entry

    head = get_entry("lenet5").classifier + "."
    body = {k: v for k, v in source.net.state_dict().items() if not k.startswith(head)}
    assert body and all(torch.equal(v, model.net.state_dict()[k]) for k, v in body.items())  # the body is kept
    with pytest.raises(ZooError, match="cannot start a image classification|cannot start an image classification"):
        zoo.load("detr_lite.fmnist_scenes", task="classification")


# ---- the behaviours the issue lists, each with its test ----------------------------------------------
def test_a_command_that_does_not_apply_refuses_and_names_the_one_that_does(capsys) -> None:
    from zoo.cli import main

    scene = str(sorted(Path("samples/scenes").glob("*.png"))[0])
    with pytest.raises(SystemExit) as exit_:
        main(["classify", "detr_lite.fmnist_scenes", scene])
    assert exit_.value.code not in (0, None)
    err = capsys.readouterr().err
    assert "zoo classify does not apply to detr_lite.fmnist_scenes, an object detection model; use `zoo detect`" in err
    with pytest.raises(ZooError, match="zoo detect does not apply to lenet5.fmnist, an image classification model"):
        from zoo.detect import detect_files

        detect_files("lenet5.fmnist", ["samples"])


def test_evaluate_without_data_refuses_a_model_of_other_classes(tmp_path, fmnist_root) -> None:
    model = zoo.load("lenet5.fmnist", num_classes=10, class_names=[str(i) for i in range(10)])
    with pytest.raises(ZooError, match="not Fashion-MNIST's; measure it on its own images with --data"):
        evaluate(model)
    two = zoo.load("lenet5.fmnist", num_classes=2, class_names=["a", "b"])
    with pytest.raises(ZooError, match="classifies 2 classes"):
        evaluate(two)
    detector = zoo.load("detr_lite.fmnist_scenes", class_names=[f"c{i}" for i in range(10)])
    with pytest.raises(ZooError, match="not the Fashion-MNIST scenes'"):
        evaluate(detector)


def test_a_live_model_fine_tunes_by_the_same_path_as_its_saved_folder(tmp_path) -> None:
    """``finetune(model, in_chans=3)`` adapts the first convolution (it only recorded it before), and a bad
    option is refused in the same line as for a name."""
    images = torch.randint(0, 256, (40, 3, 28, 28), dtype=torch.uint8)
    labels = torch.arange(40) % 2
    source = zoo.load("lenet5.fmnist")
    tuned = zoo.finetune(source, (images, labels), in_chans=3, max_epochs=1, batch_size=8)
    conv = tuned.net.get_submodule(_first_conv("lenet5"))
    assert conv.weight.shape[1] == 3 and tuned.input_size[0] == 3
    assert tuned(images[:2].float() / 255).shape == (2, 2)
    # the adapted filters are the 1-channel ones spread over 3 channels (timm's adapt_input_conv): sum equal
    original = source.net.get_submodule(_first_conv("lenet5")).weight
    assert source.net.get_submodule(_first_conv("lenet5")).weight.shape[1] == 1  # the caller's model is unchanged
    assert original.shape[0] == conv.weight.shape[0]
    messages = []
    for src in (source, "lenet5.fmnist"):
        with pytest.raises(ZooError) as error:
            zoo.finetune(src, (images, labels), lr=-1, max_epochs=1)
        messages.append(str(error.value))
    assert messages[0] == messages[1] and "lr" in messages[0]


def _first_conv(arch: str) -> str:
    from zoo.registry import get_entry

    return get_entry(arch).first_conv


def test_a_checkpoint_names_its_task_and_loads_as_it(tmp_path, brightness) -> None:
    images, targets = brightness
    model = zoo.create("lenet5", task=TASK)
    trainer = L.Trainer(max_steps=1, logger=False, enable_progress_bar=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=Brightness(images[:32], targets[:32]))
    path = tmp_path / "run.ckpt"
    trainer.save_checkpoint(path)
    assert torch.load(path, weights_only=False)["zoo_task"] == TASK
    assert isinstance(zoo.load(path), BrightnessRegressor)


# ---- one input wrapper: the task, the feature extractor and the exported graph ----------------------
def test_the_model_the_backbone_and_the_exported_file_take_uint8_and_unit_floats_alike(tmp_path) -> None:
    """One batch as uint8 and as [0, 1] floats gives the same outputs from all three, and the normalisation
    is (x - mean) / std computed here from the config's numbers."""
    import numpy as np
    import onnxruntime as ort

    from zoo.exporting import export

    model = zoo.load("lenet5.fmnist")
    pixels = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    unit = pixels.float() / 255
    mean, std = 0.2860, 0.3530  # Fashion-MNIST's, as config.json has them
    with torch.no_grad():
        by_hand = model.net((unit - mean) / std)
        assert torch.allclose(model(pixels), by_hand, atol=1e-5) and torch.allclose(model(unit), by_hand, atol=1e-5)
        features = zoo.backbone("lenet5.fmnist")
        for a, b in zip(features(pixels), features(unit)):
            assert torch.allclose(a, b, atol=1e-6)
    for dtype, batch in (("float32", unit.numpy()), ("uint8", pixels.numpy())):
        path = export(model, tmp_path / f"lenet5_{dtype}.onnx", input_dtype=dtype)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert session.get_inputs()[0].type == f"tensor({dtype.replace('float32', 'float')})"
        out = session.run(None, {"pixels": batch})[0]
        assert np.allclose(out, by_hand.numpy(), atol=1e-4), dtype
