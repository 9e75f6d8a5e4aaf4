"""Regression from a CSV of image paths and numbers (angles in degrees for an angle model), and both regression
tasks end to end through the public API and the CLI: fine-tune, save, load, push (to the Hub emulator), export
(ONNX gives the same outputs) and evaluate. Every measured number is recomputed here from the model's outputs on
the decoded PNG files, with numpy and scikit-learn; the shipped angle model is re-measured on garments that
torchvision turned (not the zoo's own rotation).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import r2_score

import zoo
from zoo.cli import main
from zoo.data.targets_csv import AngleDataModule, RegressionDataModule, scan_targets_csv
from zoo.errors import ZooError
from zoo.evaluate import evaluate
from zoo.tasks.regression import AngleRegressor, ImageRegressor

ROTATION = "resnet20.fmnist_rotation"


def _pixels(folder, files: list[str]) -> torch.Tensor:
    """The PNG files as the model's float input in [0, 1], decoded by PIL."""
    return torch.stack(
        [torch.from_numpy(np.array(Image.open(folder / f), dtype=np.float32) / 255)[None] for f in files]
    )


def _rows(csv_path) -> tuple[list[str], np.ndarray]:
    lines = csv_path.read_text().splitlines()[1:]
    return [line.split(",")[0] for line in lines], np.array([float(line.split(",")[1]) for line in lines])


def _angle_errors(outputs: np.ndarray, degrees: np.ndarray) -> np.ndarray:
    """The course's read-back by hand: atan2(sin, cos), then the shortest way round to the target."""
    predicted = np.degrees(np.arctan2(outputs[:, 0], outputs[:, 1]))
    difference = np.abs(predicted - degrees) % 360
    return np.minimum(difference, 360 - difference)


def _outputs(model, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(x).numpy()


def _onnx_outputs(path, x: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"pixels": x.numpy()})[0]


@pytest.fixture(scope="module")
def brightness_csv(tmp_path_factory, fmnist_root):
    """60 test garments as PNG files and targets.csv: each garment's mean pixel value times 10 (a number to learn)."""
    from zoo.data.fashion_mnist import load_split

    folder = tmp_path_factory.mktemp("brightness")
    images = load_split("test")[0][:60]
    rows = ["path,brightness"]
    for i, image in enumerate(images):
        Image.fromarray(image.numpy()).save(folder / f"g{i}.png")
        rows.append(f"g{i}.png,{float(image.float().mean()) / 25.5:.5f}")
    (folder / "targets.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def angles_csv(tmp_path_factory, fmnist_root):
    """60 test garments turned by torchvision at seeded angles, written as PNG files, and angles.csv in degrees
    (every third angle written as its negative twin, angle - 360: the same direction)."""
    from torchvision.transforms.v2 import functional as TF

    from zoo.data.fashion_mnist import load_split

    folder = tmp_path_factory.mktemp("angles")
    images = load_split("test")[0][:60]
    angles = np.random.default_rng(44).uniform(0, 360, len(images)).round(2)
    rows = ["path,angle"]
    for i, (image, angle) in enumerate(zip(images, angles)):
        turned = TF.rotate(image[None], float(angle), interpolation=TF.InterpolationMode.BILINEAR)[0]
        Image.fromarray(turned.numpy()).save(folder / f"r{i}.png")
        rows.append(f"r{i}.png,{angle - 360 if i % 3 == 0 else angle:.2f}")
    (folder / "angles.csv").write_text("\n".join(rows) + "\n")
    return folder


# ---- the CSV -----------------------------------------------------------------------------------------------
def test_targets_csv_read_as_written(tmp_path) -> None:
    for name in ("a.png", "b.png", "c.png"):
        Image.new("L", (28, 28)).save(tmp_path / name)
    (tmp_path / "t.csv").write_text("path,x,y\na.png,1.5,-2\n\nb.png, 3e2 ,0\nc.png,-0.25,7\n")
    files, targets, names = scan_targets_csv(tmp_path / "t.csv")
    assert names == ["x", "y"] and [f.name for f in files] == ["a.png", "b.png", "c.png"]
    assert targets.tolist() == [[1.5, -2.0], [300.0, 0.0], [-0.25, 7.0]]
    assert scan_targets_csv(tmp_path / "t.csv", columns=["y"])[1].tolist() == [[-2.0], [0.0], [7.0]]
    data = RegressionDataModule(tmp_path / "t.csv", val_fraction=0.34)
    assert data.class_names == ["x", "y"] and data.train_count == 2  # one of three held out
    (tmp_path / "a.csv").write_text("path,angle\na.png,-30\nb.png,390\n")
    angles = AngleDataModule(tmp_path / "a.csv", val_fraction=0.0)
    assert angles.class_names == ["sin θ", "cos θ"] and angles._files["train"][1].tolist() == [-30.0, 390.0]


BAD_CSVS = [
    ("empty", "", "is empty"),
    ("header only", "path,age\n", "lists no images"),
    ("no path column", "file,age\na.png,1\n", "needs a header line 'path,<target>'"),
    ("only a path column", "path\na.png\n", "needs a header line 'path,<target>'"),
    ("not a number", "path,age\na.png,1\nb.png,old\n", "row 3: age is 'old', not a finite number"),
    ("a decimal comma", 'path,age\na.png,"1,5"\n', "age is '1,5', not a finite number"),
    ("not finite", "path,age\na.png,inf\n", "age is 'inf', not a finite number"),
    ("no value", "path,age\na.png,\n", "row 2: no value in column 'age'"),
    ("a file twice", "path,age\na.png,1\nb.png,2\na.png,3\n", "row 4: a.png is listed twice (row 2 too)"),
    ("the same file by two paths", "path,age\na.png,1\n./a.png,1\n", "listed twice"),
    ("a missing file", "path,age\nc.png,1\n", "row 2: c.png is not in"),
    ("outside the folder", "path,age\n../a.png,1\n", "is outside"),
    ("cells for columns", "path,age\na.png,1,2\n", "3 cells for the 2 columns"),
    ("a column twice", "path,age,age\na.png,1,2\n", "column 'age' appears twice"),
]


@pytest.mark.parametrize(("text", "words"), [c[1:] for c in BAD_CSVS], ids=[c[0] for c in BAD_CSVS])
def test_a_bad_csv_is_refused_in_one_line(text: str, words: str, tmp_path) -> None:
    (tmp_path / "set").mkdir()
    for name in ("a.png", "b.png"):
        Image.new("L", (28, 28)).save(tmp_path / "set" / name)
    Image.new("L", (28, 28)).save(tmp_path / "a.png")  # beside the folder: outside it
    (tmp_path / "set" / "t.csv").write_text(text)
    with pytest.raises(ZooError) as info:
        zoo.finetune("lenet5.fmnist", str(tmp_path / "set" / "t.csv"), task="regression", max_epochs=1)
    message = str(info.value)
    assert words in message and "\n" not in message, message


def test_an_angle_csv_takes_one_column_and_evaluation_names_the_models_columns(tmp_path) -> None:
    Image.new("L", (28, 28)).save(tmp_path / "a.png")
    (tmp_path / "two.csv").write_text("path,angle,tilt\na.png,10,2\n")
    with pytest.raises(ZooError, match="2 target columns \\(angle, tilt\\); an angle model takes one"):
        zoo.finetune(ROTATION, str(tmp_path / "two.csv"), task="angle-regression", max_epochs=1)
    model = zoo.create("lenet5", task="regression", num_classes=2, class_names=["x", "y"])
    (tmp_path / "xy.csv").write_text("path,y,x,z\na.png,1,2,3\n")
    data = RegressionDataModule.for_evaluation(tmp_path / "xy.csv", model)
    assert data._files["test"][1].tolist() == [[2.0, 1.0]]  # the model's own columns, in its order
    (tmp_path / "ab.csv").write_text("path,a,b,c\na.png,1,2,3\n")
    with pytest.raises(ZooError, match="3 target columns \\(a, b, c\\) but the model predicts 2"):
        RegressionDataModule.for_evaluation(tmp_path / "ab.csv", model)


def test_the_cli_refuses_a_bad_csv_in_one_line_and_writes_nothing(tmp_path, capsys) -> None:
    Image.new("L", (28, 28)).save(tmp_path / "a.png")
    (tmp_path / "t.csv").write_text("path,age\na.png,ten\n")
    with pytest.raises(SystemExit) as info:
        main(["finetune", "lenet5.fmnist", "--data", str(tmp_path / "t.csv"), "--task", "regression", "-o", "out"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and err[-1].startswith("zoo: error: ") and "age is 'ten', not a finite" in err[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "t.csv"]


# ---- value regression: the public API ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tuned(brightness_csv):
    return zoo.finetune("lenet5.fmnist", str(brightness_csv / "targets.csv"), task="regression", max_epochs=2, lr=1e-3)


def test_finetune_from_a_csv_measured_by_hand(tuned, brightness_csv) -> None:
    assert isinstance(tuned, ImageRegressor) and tuned.class_names == ["brightness"]
    assert (
        tuned.card_metrics["val_samples"] == 12 and tuned.card_metrics["dataset"] == "targets"
    )  # 60 rows, 12 held out
    files, targets = _rows(brightness_csv / "targets.csv")
    predicted = _outputs(tuned, _pixels(brightness_csv, files))[:, 0]
    result = evaluate(tuned, str(brightness_csv / "targets.csv"))
    assert result["test_samples"] == 60
    assert result["test_mae"] == pytest.approx(np.abs(predicted - targets).mean(), abs=1e-4)
    assert result["test_r2"] == pytest.approx(r2_score(targets, predicted), abs=1e-3)


def test_save_load_export_and_push_keep_the_outputs(tuned, brightness_csv, tmp_path, hub_env) -> None:
    from zoo.exporting import export

    x = _pixels(brightness_csv, ["g0.png", "g1.png", "g2.png"])
    folder = tuned.save_pretrained(tmp_path / "bright", name="lenet5.brightness")
    loaded = zoo.load(folder)
    assert isinstance(loaded, ImageRegressor) and loaded.class_names == ["brightness"]
    assert np.allclose(_outputs(loaded, x), _outputs(tuned, x), atol=1e-6)
    assert np.allclose(_onnx_outputs(export(loaded, tmp_path / "b.onnx"), x), _outputs(loaded, x), atol=1e-4)
    loaded.push_to_hub("org/brightness")
    pulled = zoo.load("hf-hub:org/brightness")
    assert isinstance(pulled, ImageRegressor) and np.allclose(_outputs(pulled, x), _outputs(loaded, x), atol=1e-6)


# ---- both tasks through the CLI ------------------------------------------------------------------------------
def _finetune_cli(source: str, csv_path, task: str, out, lr: str) -> None:
    main(
        [
            "finetune", source,  # WEIGHTS first, without --model
            "--data", str(csv_path),
            "--task", task,
            "--trainer.max_epochs", "1",
            "--lr", lr,
            "--trainer.enable_progress_bar", "false",
            "-o", str(out),
        ]
    )  # fmt: skip


def _printed_number(capsys, label: str) -> float:
    printed = capsys.readouterr().out
    match = re.search(re.escape(label) + r" (-?[0-9.]+)", printed)
    assert match, printed
    return float(match.group(1))


def test_cli_finetune_evaluate_export_push_a_regressor(brightness_csv, tmp_path, hub_env, capsys) -> None:
    out, onnx = tmp_path / "tuned", tmp_path / "tuned.onnx"
    _finetune_cli("lenet5.fmnist", brightness_csv / "targets.csv", "regression", out, "0.001")
    model = zoo.load(out)
    assert isinstance(model, ImageRegressor) and model.class_names == ["brightness"]
    files, targets = _rows(brightness_csv / "targets.csv")
    x = _pixels(brightness_csv, files)
    capsys.readouterr()
    main(["evaluate", str(out), "--data", str(brightness_csv / "targets.csv")])
    assert _printed_number(capsys, "MAE") == pytest.approx(np.abs(_outputs(model, x)[:, 0] - targets).mean(), abs=1e-3)
    main(["export", str(out), "-o", str(onnx)])
    assert np.allclose(_onnx_outputs(onnx, x), _outputs(model, x), atol=1e-4)
    main(["push", str(out), "--repo", "org/brightness-cli"])
    assert np.allclose(_outputs(zoo.load("hf-hub:org/brightness-cli"), x), _outputs(model, x), atol=1e-6)


def test_cli_evaluates_the_shipped_angle_model_on_an_angles_csv(angles_csv, capsys) -> None:
    files, degrees = _rows(angles_csv / "angles.csv")
    errors = _angle_errors(_outputs(zoo.load(ROTATION), _pixels(angles_csv, files)), degrees)
    capsys.readouterr()
    main(["evaluate", ROTATION, "--data", str(angles_csv / "angles.csv")])
    assert _printed_number(capsys, "mean angular error (°)") == pytest.approx(errors.mean(), abs=1e-2)
    assert errors.mean() < 20  # the shipped model reads garments that torchvision turned (7.6° on its own test set)


def test_cli_finetune_evaluate_export_push_an_angle_model(angles_csv, tmp_path, hub_env) -> None:
    out = tmp_path / "angles"
    _finetune_cli(ROTATION, angles_csv / "angles.csv", "angle-regression", out, "0.0001")
    model = zoo.load(out)
    assert isinstance(model, AngleRegressor) and model.class_names == ["sin θ", "cos θ"]
    files, degrees = _rows(angles_csv / "angles.csv")
    x = _pixels(angles_csv, files)
    errors = _angle_errors(_outputs(model, x), degrees)
    result = evaluate(model, str(angles_csv / "angles.csv"))
    assert result["test_angle_error"] == pytest.approx(errors.mean(), abs=1e-2) and result["test_samples"] == 60
    lower_median = np.sort(errors)[(len(errors) - 1) // 2]  # torch.median's: the lower of the two middle values
    assert model.median_angle_error == pytest.approx(lower_median, abs=1e-2)
    main(["export", str(out), "-o", str(tmp_path / "angles.onnx")])
    assert np.allclose(_onnx_outputs(tmp_path / "angles.onnx", x), _outputs(model, x), atol=1e-4)
    main(["push", str(out), "--repo", "org/angles-cli"])
    pulled = zoo.load("hf-hub:org/angles-cli")
    assert isinstance(pulled, AngleRegressor) and np.allclose(_outputs(pulled, x), _outputs(model, x), atol=1e-6)


def test_zoo_fit_the_rotation_recipe_writes_a_card_measured_by_hand(tmp_path, monkeypatch, fmnist_root) -> None:
    """The shipped demo's recipe through `zoo fit` in a small form; the card's numbers recomputed from its weights."""
    from pathlib import Path

    from zoo.data.rotations import FashionMNISTRotations

    monkeypatch.chdir(tmp_path)
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "resnet20_fmnist_rotation.yaml"
    small = ["--data.init_args.train_images=256", "--data.init_args.val_images=64", "--data.init_args.test_images=96"]
    quiet = ["--trainer.max_epochs=1", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    main(["fit", "--config", str(recipe), *small, *quiet, "--card.output_dir", str(tmp_path / "cards")])
    folder = tmp_path / "cards" / ROTATION
    metrics = json.loads((folder / "metrics.json").read_text())
    data = FashionMNISTRotations(test_images=96)
    data.setup("test")
    images, degrees, classes = data.datasets["test"].tensors
    errors = _angle_errors(_outputs(zoo.load(folder), images.float() / 255), degrees.numpy())
    assert metrics["test_samples"] == 96
    assert metrics["test_angle_error"] == pytest.approx(errors.mean(), abs=1e-2)
    assert metrics["test_median_angle_error"] == pytest.approx(np.sort(errors)[47], abs=1e-2)
    by_class = {name: errors[classes.numpy() == k].mean() for k, name in enumerate(data.group_names)}
    assert metrics["angle_error_per_class"] == pytest.approx(by_class, abs=1e-2)
