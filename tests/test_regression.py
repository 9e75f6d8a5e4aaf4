"""The regression tasks: angles as (sin θ, cos θ) read back by atan2, the angular error against hand computations
(wrap-around at 360° included), the rotated garments, a tiny real angle run whose metrics are recomputed here
from the model's own outputs, and a value regressor with L1 loss and tanh-bounded outputs.
"""

from __future__ import annotations

import json
import math

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import r2_score

import zoo
from zoo.data.rotations import FashionMNISTRotations, rotate
from zoo.errors import InvalidValueError
from zoo.evaluate import evaluate
from zoo.tasks.regression import AngleRegressor, ImageRegressor, angle_to_sincos, angular_error, sincos_to_angle


def _trainer(**kwargs) -> L.Trainer:
    options = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    return L.Trainer(accelerator="cpu", **{**options, **kwargs})


@pytest.mark.parametrize(
    ("predicted", "target", "expected"),
    [
        (10.0, 30.0, 20.0),
        (350.0, 10.0, 20.0),  # across 0°/360°: 20° the short way, not 340°
        (10.0, 350.0, 20.0),
        (359.5, 0.5, 1.0),
        (0.0, 180.0, 180.0),  # the largest error there is
        (725.0, 0.0, 5.0),  # two turns and 5°
        (90.0, 270.0, 180.0),
        (271.0, 90.0, 179.0),
    ],
)
def test_angular_error_by_hand(predicted: float, target: float, expected: float) -> None:
    assert float(angular_error(torch.tensor([predicted]), torch.tensor([target]))) == pytest.approx(expected, abs=1e-4)


def test_sin_cos_round_trip_and_atan2_ignores_the_length() -> None:
    angles = torch.tensor([0.0, 45.0, 90.0, 179.9, 180.0, 270.0, 359.9, 360.0, -30.0])
    encoded = angle_to_sincos(angles)
    assert torch.allclose(encoded[2], torch.tensor([1.0, 0.0]), atol=1e-6)  # 90°: sin 1, cos 0
    back = sincos_to_angle(encoded)
    assert torch.allclose(angular_error(back, angles), torch.zeros(9), atol=1e-3)
    assert float(back[-1]) == pytest.approx(330.0, abs=1e-3) and float(back[-2]) == pytest.approx(0.0, abs=1e-3)
    assert torch.allclose(sincos_to_angle(3 * encoded), back, atol=1e-4)  # only the direction counts
    assert ((back >= 0) & (back < 360)).all()


def test_rotate_turns_counter_clockwise_like_torchvision() -> None:
    from torchvision.transforms.v2 import functional as TF

    from zoo.data.fashion_mnist import load_split

    images = load_split("test")[0][:4].unsqueeze(1)
    assert torch.equal(rotate(images, torch.zeros(4)), images)
    ours = rotate(images, torch.full((4,), 90.0))
    theirs = TF.rotate(images, 90.0, interpolation=TF.InterpolationMode.BILINEAR)
    assert (ours.int() - theirs.int()).abs().max() <= 1
    turned = rotate(images[:2], torch.tensor([30.0, 200.0]))
    assert torch.equal(turned[1:], rotate(images[1:2], torch.tensor([200.0])))  # each image its own angle


@pytest.fixture(scope="module")
def angle_run(fmnist_root):
    """resnet20.fmnist started as an angle model, one short epoch on 1,000 rotated garments, tested on 500."""
    L.seed_everything(0)
    model = zoo.load("resnet20.fmnist", task="angle-regression", optimizer="adamw", lr=0.003)
    data = FashionMNISTRotations(train_images=1000, val_images=200, test_images=500, batch_size=100)
    trainer = _trainer(max_epochs=1)
    model.train()
    trainer.fit(model, datamodule=data)
    result = trainer.test(model, datamodule=data, verbose=False)[0]
    return model, data, result


def test_angle_metrics_recomputed_from_the_models_outputs(angle_run) -> None:
    model, data, result = angle_run
    images, angles, classes = data.datasets["test"].tensors
    with torch.no_grad():
        out = model.eval()(images.float() / 255)
    errors = [abs((float(a) - float(t) + 180) % 360 - 180) for a, t in zip(sincos_to_angle(out), angles)]
    assert result["test_angle_error"] == pytest.approx(sum(errors) / len(errors), abs=1e-3)
    assert model.median_angle_error == pytest.approx(float(torch.tensor(errors).median()), abs=1e-3)
    by_class = {
        name: sum(e for e, c in zip(errors, classes) if c == k) / int((classes == k).sum())
        for k, name in enumerate(data.group_names)
    }
    assert model.angle_error_per_class == pytest.approx(by_class, abs=1e-3)
    target = torch.stack([torch.sin(angles * math.pi / 180), torch.cos(angles * math.pi / 180)], 1)
    assert result["test_mae"] == pytest.approx(float((out - target).abs().mean()), abs=1e-5)
    assert result["test_r2"] == pytest.approx(r2_score(target.numpy(), out.numpy()), abs=1e-4)
    assert result["test_angle_error"] < 80  # better than guessing (90° on average)
    assert model.measured_test_samples() == 500


def test_angle_model_saves_loads_evaluates_and_refuses_classify(angle_run, tmp_path, fmnist_root) -> None:
    model, data, result = angle_run
    folder = model.save_pretrained(tmp_path / "angles", name="resnet20.angles")
    config = json.loads((folder / "config.json").read_text())
    assert config["task"] == "zoo-image-angle-regression" and config["class_names"] == ["sin θ", "cos θ"]
    loaded = zoo.load(folder)
    assert isinstance(loaded, AngleRegressor)
    x = data.datasets["test"].tensors[0][:8].float() / 255
    assert torch.allclose(loaded.predict_angle(x), model.predict_angle(x), atol=1e-3)
    measured = evaluate(loaded, FashionMNISTRotations(test_images=500))
    assert measured["test_angle_error"] == pytest.approx(result["test_angle_error"], abs=1e-3)
    card = (folder / "README.md").read_text()
    assert "angular error" in card and "top-1" not in card
    with pytest.raises(Exception, match="use `zoo predict`|its commands are"):
        loaded.description.require("classify", "resnet20.angles")


def test_value_regression_with_l1_and_tanh_bounded_outputs(tmp_path, fmnist_root) -> None:
    """Each garment's mean brightness, scaled to [-1, 1]: tanh outputs, L1 loss; the loss and the metrics by hand."""
    from zoo.data.fashion_mnist import load_split

    images = load_split("test")[0][:300].unsqueeze(1)
    targets = images.float().div(255).mean(dim=(1, 2, 3)) * 2 - 1
    with pytest.raises(InvalidValueError, match="loss"):
        zoo.create("lenet5", task="regression", loss="huber")
    model = zoo.create("lenet5", task="regression", loss="l1", output="tanh", optimizer="adam", lr=3e-3)
    x, y = images[:16].float() / 255, targets[:16]
    with torch.no_grad():
        loss, out, _, _ = model._step((x, y))
    assert float(loss) == pytest.approx(float(F.l1_loss(torch.tanh(model(x)), y[:, None])), abs=1e-6)
    tuned = zoo.finetune(model, (images, targets), max_epochs=2, lr=3e-3, batch_size=32)
    assert isinstance(tuned, ImageRegressor) and tuned.hparams.output == "tanh"
    folder = tuned.save_pretrained(tmp_path / "bright", name="lenet5.brightness")
    config = json.loads((folder / "config.json").read_text())
    assert config["task_options"] == {"loss": "l1", "output": "tanh"}
    loaded = zoo.load(folder)
    assert loaded.hparams.loss == "l1" and loaded.hparams.output == "tanh"
    with torch.no_grad():
        predicted = loaded.predict(images.float() / 255)[:, 0]
    assert predicted.abs().max() < 1
    result = evaluate(loaded, (images, targets))
    assert result["test_mae"] == pytest.approx(float((predicted - targets).abs().mean()), abs=1e-5)
    assert result["test_r2"] == pytest.approx(r2_score(targets.numpy(), predicted.numpy()), abs=1e-4)
    assert result["test_samples"] == 300


# ---- the shipped demo: the angle of a turned garment ---------------------------------------------------------
SHIPPED = "resnet20.fmnist_rotation"


def _card() -> tuple[dict, dict]:
    from zoo.files import bundled_cards_dir

    folder = bundled_cards_dir() / SHIPPED
    return json.loads((folder / "config.json").read_text()), json.loads((folder / "metrics.json").read_text())


def test_shipped_rotation_card_is_consistent_and_a_small_sample_agrees(fmnist_root) -> None:
    config, metrics = _card()
    assert config["task"] == "zoo-image-angle-regression" and metrics["test_samples"] == 10_000
    per_class = metrics["angle_error_per_class"]
    assert list(per_class) == list(FashionMNISTRotations.group_names)
    assert sum(per_class.values()) / 10 == pytest.approx(metrics["test_angle_error"], abs=1e-2)  # 1,000 per class
    assert metrics["test_median_angle_error"] <= metrics["test_angle_error"]  # a long tail of turned-around garments
    model = zoo.load(SHIPPED)
    small = evaluate(model, FashionMNISTRotations(test_images=1_000))
    assert small["test_samples"] == 1_000
    assert abs(small["test_angle_error"] - metrics["test_angle_error"]) < max(3.0, 0.3 * metrics["test_angle_error"])


@pytest.mark.slow
def test_shipped_rotation_remeasured_on_the_10000_test_garments(fmnist_root) -> None:
    _, metrics = _card()
    model = zoo.load(SHIPPED)
    result = evaluate(model, root=fmnist_root)  # the task's default data: every test garment at its fixed angle
    assert result["test_samples"] == 10_000
    assert abs(result["test_angle_error"] - metrics["test_angle_error"]) <= 1e-2
    assert model.median_angle_error == pytest.approx(metrics["test_median_angle_error"], abs=1e-2)
    assert model.angle_error_per_class == pytest.approx(metrics["angle_error_per_class"], abs=1e-2)


def _remeasured_by_hand(count: int) -> tuple[np.ndarray, np.ndarray]:
    """The shipped model's angular errors on the first ``count`` test garments at the test set's fixed angles, the
    garments turned by torchvision (not the zoo's rotate) and the angle read back with numpy's atan2; and classes."""
    from torchvision.transforms.v2 import functional as TF

    from zoo.data.fashion_mnist import load_split

    data = FashionMNISTRotations(test_images=count)
    data.setup("test")
    angles = data.datasets["test"].tensors[1].numpy()  # the data: each garment's angle
    images, classes = load_split("test")
    turned = torch.stack(
        [
            TF.rotate(image[None], float(a), interpolation=TF.InterpolationMode.BILINEAR)
            for image, a in zip(images, angles)
        ]
    )
    with torch.no_grad():
        out = zoo.load(SHIPPED).eval()(turned.float() / 255).numpy()
    difference = np.abs(np.degrees(np.arctan2(out[:, 0], out[:, 1])) - angles) % 360
    return np.minimum(difference, 360 - difference), classes[:count].numpy()


def test_shipped_rotation_independent_recomputation_on_1000_garments(fmnist_root) -> None:
    errors, _ = _remeasured_by_hand(1_000)
    measured = evaluate(zoo.load(SHIPPED), FashionMNISTRotations(test_images=1_000))
    assert measured["test_angle_error"] == pytest.approx(errors.mean(), abs=0.05)


@pytest.mark.slow
def test_shipped_rotation_card_matches_an_independent_recomputation(fmnist_root) -> None:
    _, metrics = _card()
    errors, classes = _remeasured_by_hand(10_000)
    assert metrics["test_angle_error"] == pytest.approx(errors.mean(), abs=0.05)
    assert metrics["test_median_angle_error"] == pytest.approx(np.sort(errors)[4_999], abs=0.05)  # torch's lower median
    per_class = {name: errors[classes == k].mean() for k, name in enumerate(FashionMNISTRotations.group_names)}
    assert metrics["angle_error_per_class"] == pytest.approx(per_class, abs=0.1)
