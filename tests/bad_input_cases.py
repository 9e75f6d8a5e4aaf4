"""The second half of the bad-input table of ``tests/test_bad_inputs.py``: inference inputs that are not a
batch of tensors, argument types, destinations, files of another model, numbers and settings, and the
inputs that are taken as they are (with the result they must give).

API rows: (id, call(model, files), error class, words). CLI rows: (id, argv, words); ``{files}`` is the
fixture's folder (a text file ``notes.png``, an ``empty`` folder, ``keep.onnx``, ``other.onnx`` of other
weights, ``plain.onnx`` without zoo metadata, a run folder ``run`` and bad recipes).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

import zoo
from zoo.errors import InputShapeError, InputValueError, InvalidValueError, ZooError

REPO = Path(__file__).resolve().parent.parent
RECIPE = str(REPO / "recipes" / "lenet5_fmnist.yaml")
SAMPLE = str(sorted((REPO / "samples").glob("*.png"))[0])
QUICK = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=1",
    "--trainer.limit_val_batches=1",
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
]


def write_fixture_files(folder: Path) -> None:
    """The files the new cases refuse to read or write over (added to ``test_bad_inputs``' fixture)."""
    import onnx
    from onnx import TensorProto, helper

    (folder / "keep.onnx").write_bytes(b"mine")
    graph = helper.make_graph(
        [helper.make_node("Identity", ["pixels"], ["logits"])],
        "g",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [None, 10])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 10])],
    )
    plain = helper.make_model(graph)
    onnx.save(plain, str(folder / "plain.onnx"))
    plain.metadata_props.add(key="zoo.name", value="resnet20.fmnist")
    plain.metadata_props.add(key="zoo.weights_sha256", value="0" * 64)
    onnx.save(plain, str(folder / "other.onnx"))
    (folder / "run").mkdir()
    (folder / "run" / "metrics.csv").write_text("epoch,step,train_loss_step,val_loss\n0,0,2.3,\n0,0,,2.1\n")
    text = Path(RECIPE).read_text()
    (folder / "lr_fast.yaml").write_text(text.replace("lr: 0.05", "lr: fast"))
    (folder / "batch_list.yaml").write_text(text.replace("batch_size: 128", "batch_size: [128]"))
    (folder / "cards" / "lenet5.mine").mkdir(parents=True)
    (folder / "cards" / "lenet5.mine" / "notes.txt").write_text("my notes")


def _timeout_of(value: str) -> float:
    from zoo import hub

    old = os.environ.get("ZOO_DOWNLOAD_TIMEOUT")
    os.environ["ZOO_DOWNLOAD_TIMEOUT"] = value
    try:
        return hub._timeout()
    finally:
        os.environ.pop("ZOO_DOWNLOAD_TIMEOUT") if old is None else os.environ.__setitem__("ZOO_DOWNLOAD_TIMEOUT", old)


def _predict_onnx(model, onnx_file) -> list:
    from zoo.predict import iter_predictions

    return list(iter_predictions(model, [SAMPLE], onnx=onnx_file, num_workers=0))


def _plot_to(path) -> None:
    from zoo import plots

    plots.save(plots.new_figure(2, 2)[0], path)


E = torch.rand(0, 1, 28, 28)
API_CASES_MORE = [
    ("empty tensor batch", lambda m, f: m(E), InputShapeError, ["empty batch", "at least one image"]),
    ("empty batch to predict_proba", lambda m, f: m.predict_proba(E), InputShapeError, ["empty batch"]),
    ("empty list", lambda m, f: m.predict_proba([]), InputShapeError, ["empty batch"]),
    ("empty numpy batch", lambda m, f: m(np.zeros((0, 1, 28, 28))), InputShapeError, ["empty batch"]),
    ("numpy strings", lambda m, f: m(np.array([["a"]])), InputValueError, ["as numbers"]),
    ("numpy 0-255 floats", lambda m, f: m(np.full((1, 1, 28, 28), 200.0)), InputValueError, ["divide by 255"]),
    ("numpy without batch axis", lambda m, f: m(np.zeros((28, 28, 1))), InputShapeError, ["x[None]"]),
    (
        "tensors of two sizes",
        lambda m, f: m([torch.rand(1, 28, 28), torch.rand(1, 32, 32)]),
        InputShapeError,
        ["one size"],
    ),
    ("a file name as the batch", lambda m, f: m.predict_proba(SAMPLE), InputShapeError, ["got a str"]),
    (
        "out_indices as a string",
        lambda m, f: zoo.backbone("lenet5", out_indices="1"),
        InvalidValueError,
        ["out_indices must be"],
    ),
    (
        "out_indices of floats",
        lambda m, f: zoo.backbone("lenet5", out_indices=[1.0]),
        InvalidValueError,
        ["whole numbers"],
    ),
    (
        "backbone in_chans string",
        lambda m, f: zoo.backbone("lenet5", in_chans="3"),
        InvalidValueError,
        ["in_chans must be"],
    ),
    ("model name None", lambda m, f: zoo.create(None), InvalidValueError, ["a model name is a string"]),
    ("model name in a list", lambda m, f: zoo.create(["lenet5"]), InvalidValueError, ["a model name is a string"]),
    ("list_models(5)", lambda m, f: zoo.list_models(5), InvalidValueError, ["name pattern"]),
    (
        "num_classes as a string",
        lambda m, f: zoo.create("lenet5", num_classes="10"),
        InvalidValueError,
        ["whole number"],
    ),
    (
        "reset_classifier('10')",
        lambda m, f: zoo.create("lenet5").reset_classifier("10"),
        InvalidValueError,
        ["whole number"],
    ),
    (
        "too few class names",
        lambda m, f: zoo.create("lenet5").reset_classifier(3, ["a"]),
        ZooError,
        ["one name per class"],
    ),
    ("batch_size as a string", lambda m, f: _datamodule(batch_size="64"), InvalidValueError, ["batch_size must be"]),
    (
        "export something else",
        lambda m, f: zoo.export(3, f / "x.onnx"),
        InvalidValueError,
        ["export takes a zoo model"],
    ),
    (
        "export opset as a string",
        lambda m, f: zoo.export(m, f / "x.onnx", opset="18"),
        InvalidValueError,
        ["opset must be"],
    ),
    ("export opset 1", lambda m, f: zoo.export(m, f / "x.onnx", opset=1), InvalidValueError, ["from 7 to"]),
    ("export into a folder", lambda m, f: zoo.export(m, f / "empty"), ZooError, ["is a folder"]),
    ("export under a file", lambda m, f: zoo.export(m, f / "notes.png" / "x.onnx"), ZooError, ["is a file"]),
    (
        "export .pt2 named .onnx",
        lambda m, f: zoo.export(m, f / "x.onnx", "exported-program"),
        ZooError,
        ["end in .pt2"],
    ),
    ("export over a file", lambda m, f: zoo.export(m, f / "keep.onnx"), ZooError, ["already exists"]),
    (
        "ONNX file of other weights",
        lambda m, f: _predict_onnx(m, f / "other.onnx"),
        ZooError,
        ["exported from resnet20.fmnist"],
    ),
    ("ONNX file without metadata", lambda m, f: _predict_onnx(m, f / "plain.onnx"), ZooError, ["no zoo metadata"]),
    ("text file as ONNX", lambda m, f: _predict_onnx(m, f / "notes.png"), ZooError, ["not a readable ONNX file"]),
    ("plot to .yaml", lambda m, f: _plot_to(f / "curves.yaml"), ZooError, ["must end in .png"]),
    ("plot under a file", lambda m, f: _plot_to(f / "notes.png" / "c.png"), ZooError, ["is a file"]),
    ("ZOO_DOWNLOAD_TIMEOUT=abc", lambda m, f: _timeout_of("abc"), ZooError, ["ZOO_DOWNLOAD_TIMEOUT", "seconds"]),
    ("ZOO_DOWNLOAD_TIMEOUT=-1", lambda m, f: _timeout_of("-1"), ZooError, ["> 0"]),
]


def _datamodule(**kwargs):
    from zoo.data import FashionMNISTDataModule

    return FashionMNISTDataModule(**kwargs)


CLI_CASES_MORE = [
    ("schedule --steps-per-epoch 0", ["schedule", "--config", RECIPE, "--steps-per-epoch", "0"], ["must be ≥ 1"]),
    ("schedule --steps-per-epoch -3", ["schedule", "--config", RECIPE, "--steps-per-epoch", "-3"], ["must be ≥ 1"]),
    ("schedule --epochs abc", ["schedule", "--config", RECIPE, "--epochs", "abc"], ["whole number"]),
    ("schedule -o under a file", ["schedule", "--config", RECIPE, "-o", "{files}/notes.png/lr.png"], ["is a file"]),
    ("export --opset 1", ["export", "lenet5.fmnist", "-o", "{files}/x.onnx", "--opset", "1"], ["opset must be"]),
    ("export --opset 99", ["export", "lenet5.fmnist", "-o", "{files}/x.onnx", "--opset", "99"], ["from 7 to"]),
    (
        "export-program named .onnx",
        ["export", "lenet5.fmnist", "--format", "exported-program", "-o", "{files}/x.onnx"],
        ["end in .pt2"],
    ),
    ("export under a file", ["export", "lenet5.fmnist", "-o", "{files}/notes.png/x.onnx"], ["is a file"]),
    ("export over a file", ["export", "lenet5.fmnist", "-o", "{files}/keep.onnx"], ["already exists", "--overwrite"]),
    ("export into a folder", ["export", "lenet5.fmnist", "-o", "{files}/empty"], ["is a folder"]),
    ("export unknown weights", ["export", "lenet5.fmnistt", "-o", "{files}/x.onnx"], ["lenet5.fmnist"]),
    ("push of a file", ["push", "{files}/notes.png", "--repo", "org/x"], ["is a file", "weight folder"]),
    ("plot -o .yaml", ["plot", "{files}/run", "-o", "{files}/curves.yaml"], ["must end in .png"]),
    ("plot an empty folder", ["plot", "{files}/empty"], ["no metrics.csv"]),
    ("plot two labels, one run", ["plot", "{files}/run", "--labels", "a", "b"], ["one per run"]),
    (
        "predict --onnx of other weights",
        ["predict", "lenet5.fmnist", SAMPLE, "--onnx", "{files}/other.onnx"],
        ["exported from"],
    ),
    (
        "predict --onnx of a text file",
        ["predict", "lenet5.fmnist", SAMPLE, "--onnx", "{files}/notes.png"],
        ["not a readable"],
    ),
    (
        "predict --onnx missing",
        ["predict", "lenet5.fmnist", SAMPLE, "--onnx", "{files}/no.onnx"],
        ["no such ONNX file"],
    ),
    ("predict --top-k 0", ["predict", "lenet5.fmnist", SAMPLE, "--top-k", "0"], ["--top-k", "must be ≥ 1"]),
    ("predict --batch-size abc", ["predict", "lenet5.fmnist", SAMPLE, "--batch-size", "abc"], ["whole number"]),
    ("predict an empty folder", ["predict", "lenet5.fmnist", "{files}/empty"], ["no image files"]),
    ("lr-find --min-lr 0", ["lr-find", "--config", RECIPE, "--min-lr", "0"], ["--min-lr", "> 0"]),
    ("lr-find --max-lr abc", ["lr-find", "--config", RECIPE, "--max-lr", "abc"], ["--max-lr", "number"]),
    ("lr-find --max-lr nan", ["lr-find", "--config", RECIPE, "--max-lr", "nan"], ["finite"]),
    ("lr-find min above max", ["lr-find", "--config", RECIPE, "--min-lr", "1", "--max-lr", "0.1"], ["must be below"]),
    ("lr-find -o .txt", ["lr-find", "--config", RECIPE, "-o", "{files}/lr.txt"], ["must end in .png"]),
    ("lr-find --apply .png", ["lr-find", "--config", RECIPE, "--apply", "{files}/r.png"], ["--apply", ".yaml"]),
    ("overfit-batch --loss-below -1", ["overfit-batch", "--config", RECIPE, "--loss-below", "-1"], ["> 0"]),
    ("overfit-batch -o .yaml", ["overfit-batch", "--config", RECIPE, "-o", "{files}/o.yaml"], ["must end in .png"]),
    ("classify --top-k -1", ["classify", "lenet5.fmnist", SAMPLE, "--top-k", "-1"], ["must be ≥ 1"]),
    ("evaluate --batch-size abc", ["evaluate", "lenet5.fmnist", "--batch-size", "abc"], ["whole number"]),
    ("info --batch-size abc", ["info", "lenet5", "--batch-size", "abc"], ["whole number"]),
    ("command typo", ["exportt"], ["did you mean 'export'"]),
    (
        "recipe lr of the wrong type",
        ["fit", "--config", "{files}/lr_fast.yaml", *QUICK],
        ["--model.init_args.lr", "float"],
    ),
    (
        "recipe batch_size of the wrong type",
        ["fit", "--config", "{files}/batch_list.yaml", *QUICK],
        ["--data.init_args.batch_size", "int"],
    ),
    (
        "--card.output_dir is a file",
        ["fit", "--config", RECIPE, *QUICK, "--card.name", "lenet5.x", "--card.output_dir", "{files}/notes.png"],
        ["--card.output_dir", "is a file"],
    ),
    (
        "--card.overwrite into a folder of other files",
        ["fit", "--config", RECIPE, *QUICK, "--card.name", "lenet5.mine", "--card.output_dir", "{files}/cards"]
        + ["--card.overwrite", "true"],
        ["not zoo weights", "--card.output_dir"],
    ),
]

# taken as they are: (id, input builder from a float batch X in [0, 1], what it must equal)
ACCEPTED = [
    ("numpy (N, C, H, W)", lambda x: x.numpy()),
    ("numpy channels-last (N, H, W, C)", lambda x: x.permute(0, 2, 3, 1).numpy()),
    ("numpy uint8", lambda x: (x * 255).round().to(torch.uint8).numpy()),
    ("list of (C, H, W) tensors", lambda x: list(x)),
    ("tuple of (C, H, W) tensors", lambda x: tuple(x)),
]
