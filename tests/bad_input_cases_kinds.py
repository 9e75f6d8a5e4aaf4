"""The third part of the bad-input table of ``tests/test_bad_inputs.py``: a file of another kind given to any
command that takes a file (a text file as a checkpoint, a recipe, a metrics CSV, weights, an image, an ONNX
file; an image as a recipe...), and bad inputs to the newer commands (explain, filters, activations, dream,
prepare, segment, detect, attention, finetune --task, list --timm), as a new user tried them.

CLI rows: (id, argv, words the ``zoo: error:`` line must hold); ``{files}`` is the fixture's folder, which
:func:`write_kind_files` fills. API rows: (id, call(model, files), error class, words).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from zoo.errors import InvalidValueError, WeightsError, ZooError

REPO = Path(__file__).resolve().parent.parent
RECIPE = str(REPO / "recipes" / "lenet5_fmnist.yaml")
SAMPLE = str(sorted((REPO / "samples").glob("*.png"))[0])
SCENE = str(REPO / "samples" / "scenes" / "00000.png")
TEST = ["--trainer.logger=false", "--trainer.enable_progress_bar=false"]


def write_kind_files(folder: Path) -> None:
    """Files of the wrong kind, and the small data sets the fine-tuning rows refuse."""
    (folder / "notes.txt").write_text("hello world\n")  # its bytes read as pickle opcodes raised a raw KeyError
    (folder / "notes.safetensors").write_text("hello world\n")
    (folder / "broken.yaml").write_text("model: [1, 2\n")
    (folder / "other.csv").write_text("a,b\n1,2\n")
    (folder / "words.csv").write_text("epoch,step,val_loss\n0,abc,1.0\n")
    shutil.copy(SAMPLE, folder / "pic.png")
    shutil.copy(SAMPLE, folder / "pic.csv")
    (folder / "notes.json").write_text("hello world\n")
    (folder / "short.csv").write_text("path,label\nphotos/boot/a.png,boot\nphotos/bag/a.png\n")
    (folder / "scenes").mkdir()
    for index in range(3):
        shutil.copy(REPO / "samples" / "scenes" / f"0000{index}.png", folder / "scenes" / f"{index}.png")
    (folder / "scenes" / "one_tag.csv").write_text("path,labels\n0.png,Bag\n")
    (folder / "scenes" / "tags.csv").write_text("path,labels\n0.png,Bag\n1.png,Coat\n2.png,Bag;Coat\n")
    for label, file in (("boot", SAMPLE), ("bag", str(REPO / "samples" / "fmnist_test_0018_bag.png"))):
        (folder / "photos" / label).mkdir(parents=True)
        shutil.copy(file, folder / "photos" / label / "a.png")


def _read_pickle(path: Path) -> None:
    from zoo.files import read_pickle

    read_pickle(path)


def _dream(model, **kwargs) -> None:
    from zoo.visualise import dream

    dream(model, **kwargs)


def _attention_block(block) -> None:
    import torch

    import zoo

    zoo.attention_maps(zoo.create("swin_lite"), torch.rand(1, 1, 28, 28), block=block)


def _swin_block(block) -> None:
    import zoo
    from zoo.attention import swin_block_index

    swin_block_index(zoo.create("swin_lite").net, block, (28, 28))


def _recipe(path) -> None:
    from zoo.sources import check_recipe

    check_recipe(path)


def _metrics_csv(path) -> None:
    from zoo.sources import check_metrics_csv

    check_metrics_csv(path)


def _offline(value: str) -> bool:
    import os

    from zoo.hub import is_offline

    old = os.environ.get("ZOO_OFFLINE")
    os.environ["ZOO_OFFLINE"] = value
    try:
        return is_offline()
    finally:
        os.environ.pop("ZOO_OFFLINE") if old is None else os.environ.__setitem__("ZOO_OFFLINE", old)


def _explain(model, target) -> None:
    import torch

    import zoo

    zoo.explain(model, torch.rand(2, 1, 28, 28), target=target)


API_CASES_KINDS = [
    (
        "save_pretrained under a file",
        lambda m, f: m.save_pretrained(f / "notes.txt" / "weights"),
        ZooError,
        ["is a file, so no folder can be made under it"],
    ),
    ("explain an unknown class name", lambda m, f: _explain(m, "Sneakerz"), InvalidValueError, ["unknown class"]),
    ("explain class 12 of 10", lambda m, f: _explain(m, 12), InvalidValueError, ["one class index in 0..9"]),
    (
        "attention block not a number",
        lambda m, f: _attention_block("a"),
        InvalidValueError,
        ["block must be a whole number"],
    ),
    (
        "push a text file",
        lambda m, f: __import__("zoo").push(str(f / "notes.txt"), "org/x"),
        ZooError,
        ["not a weight folder"],
    ),
    ("ZOO_OFFLINE=ture", lambda m, f: _offline("ture"), ZooError, ["ZOO_OFFLINE must be 1 (offline) or 0"]),
    (
        "a text file read as a checkpoint",
        lambda m, f: _read_pickle(f / "notes.txt"),
        WeightsError,
        ["notes.txt is not a readable PyTorch file", "torch.save"],
    ),
    (
        "a text file as weights",
        lambda m, f: __import__("zoo").load(str(f / "notes.txt")),
        WeightsError,
        ["not weights"],
    ),
    (
        "a text file named .safetensors",
        lambda m, f: __import__("zoo").load(str(f / "notes.safetensors")),
        WeightsError,
        ["is a text file, not a readable safetensors file"],
    ),
    ("an image as a recipe", lambda m, f: _recipe(f / "pic.png"), ZooError, ["is a PNG image, not text"]),
    ("a CSV as a recipe", lambda m, f: _recipe(f / "other.csv"), ZooError, ["not a YAML mapping"]),
    ("a CSV of something else as metrics", lambda m, f: _metrics_csv(f / "other.csv"), ZooError, ["no epoch"]),
    ("dream steps 0", lambda m, f: _dream(m, steps=0), InvalidValueError, ["steps must be a whole number ≥ 1"]),
    ("dream negative TV", lambda m, f: _dream(m, tv_weight=-1), InvalidValueError, ["tv_weight must be"]),
    ("dream class 10 of 10", lambda m, f: _dream(m, classes=[10]), InvalidValueError, ["(0 to 9)"]),
    (
        "dream channel 99 of 6",
        lambda m, f: _dream(m, layer="features.s2", channels=[99]),
        InvalidValueError,
        ["which has 6 channels (0 to 5)"],
    ),
    ("Swin block 99 of 6", lambda m, f: _swin_block(99), InvalidValueError, ["6 blocks (0 to 5"]),
    ("Swin block -7 of 6", lambda m, f: _swin_block(-7), InvalidValueError, ["out of range"]),
]

CLI_CASES_KINDS = [
    # any file of another kind, to any command that takes a file: named, with what was expected
    (
        "test --ckpt_path a text file",
        ["test", "--config", RECIPE, *TEST, "--ckpt_path", "{files}/notes.txt"],
        ["notes.txt is not a readable PyTorch file", "--ckpt_path takes a .ckpt file"],
    ),
    ("test --ckpt_path a text file, no recipe", ["test", "--ckpt_path", "{files}/notes.txt"], ["notes.txt is not a"]),
    ("validate --ckpt_path=an image", ["validate", "--ckpt_path={files}/pic.png"], ["pic.png is not a readable"]),
    (
        "fit --ckpt_path an image",
        ["fit", "--config", RECIPE, *TEST, "--card.name=null", "--ckpt_path", "{files}/pic.png"],
        ["pic.png is not a readable PyTorch file", "--ckpt_path takes a .ckpt file"],
    ),
    ("plot a text file", ["plot", "{files}/notes.txt"], ["is a text file", "not a training run's metrics CSV"]),
    ("plot an image", ["plot", "{files}/pic.png"], ["is a PNG image, not text", "metrics.csv"]),
    ("plot a CSV of other columns", ["plot", "{files}/other.csv"], ["not a training run's metrics CSV"]),
    ("plot a word in a metrics CSV", ["plot", "{files}/words.csv"], ["line 2: step is 'abc', not a number"]),
    ("schedule --config a text file", ["schedule", "--config", "{files}/notes.txt"], ["is a text file", "YAML"]),
    ("lr-find --config an image", ["lr-find", "--config", "{files}/pic.png"], ["is a PNG image", "recipe YAML"]),
    ("fit --config a CSV", ["fit", "--config", "{files}/other.csv"], ["not a YAML mapping"]),
    ("fit --config=an image", ["fit", "--config={files}/pic.png"], ["is a PNG image"]),
    ("overfit-batch --config a folder", ["overfit-batch", "--config", "{files}/empty"], ["is a folder", "recipe"]),
    ("fit --config broken YAML", ["fit", "--config", "{files}/broken.yaml"], ["not valid YAML", "line 2"]),
    ("fit --model a text file", ["fit", "--config", RECIPE, "--model", "{files}/notes.txt"], ["--model", "YAML"]),
    ("evaluate a text file", ["evaluate", "{files}/notes.txt"], ["notes.txt is a text file, not weights"]),
    ("export an image", ["export", "{files}/pic.png", "-o", "{files}/x.onnx"], ["is a PNG image, not weights"]),
    ("classify an ONNX file", ["classify", "{files}/plain.onnx", SAMPLE], ["zoo predict WEIGHTS IMAGES --onnx"]),
    ("classify a text .safetensors", ["classify", "{files}/notes.safetensors", SAMPLE], ["not a readable safetensors"]),
    ("pull a text file", ["pull", "{files}/notes.txt"], ["not weights"]),
    ("finetune --model a text file", ["finetune", "{files}/notes.txt", "--data", "{files}/photos"], ["not weights"]),
    (
        "evaluate --data-root a file",
        ["evaluate", "lenet5.fmnist", "--data-root", "{files}/notes.txt"],
        ["not a folder"],
    ),
    ("predict --onnx a folder", ["predict", "lenet5.fmnist", SAMPLE, "--onnx", "{files}/empty"], ["is a folder"]),
    ("predict --onnx a text file", ["predict", "lenet5.fmnist", SAMPLE, "--onnx", "{files}/notes.txt"], ["text file"]),
    ("prepare --out a file", ["prepare", "{files}/photos", "--out", "{files}/notes.txt"], ["--out", "is a file"]),
    # the newer commands
    ("explain a text file", ["explain", "lenet5.fmnist", "{files}/notes.txt"], ["(a text file) as an image"]),
    ("explain a text .png", ["explain", "lenet5.fmnist", "{files}/notes.png"], ["notes.png (a text file)"]),
    ("explain --target 12", ["explain", "lenet5.fmnist", SAMPLE, "--target", "12"], ["unknown class", "index 0-9"]),
    ("explain --layer typo", ["explain", "lenet5.fmnist", SAMPLE, "--layer", "conv9"], ["no layer 'conv9'"]),
    ("explain a CNN's attention", ["explain", "lenet5.fmnist", SAMPLE, "--method", "attention"], ["no attention"]),
    ("explain -o .txt", ["explain", "lenet5.fmnist", SAMPLE, "-o", "{files}/e.txt"], ["must end in .png"]),
    ("explain without arguments", ["explain"], ["zoo explain: the following arguments are required"]),
    ("filters -o .txt", ["filters", "lenet5.fmnist", "-o", "{files}/f.txt"], ["must end in .png"]),
    ("filters of a text file", ["filters", "{files}/notes.txt"], ["not weights"]),
    ("activations --limit 0", ["activations", "lenet5.fmnist", SAMPLE, "--limit", "0"], ["--limit: must be ≥ 1"]),
    ("activations of an empty folder", ["activations", "lenet5.fmnist", "{files}/empty"], ["no image files"]),
    ("activations --layer typo", ["activations", "lenet5.fmnist", SAMPLE, "--layer", "nope"], ["no layer 'nope'"]),
    ("dream --steps 0", ["dream", "lenet5.fmnist", "--steps", "0"], ["--steps: must be ≥ 1"]),
    ("dream --steps -5", ["dream", "lenet5.fmnist", "--steps", "-5"], ["--steps: must be ≥ 1"]),
    ("dream --tv -1", ["dream", "lenet5.fmnist", "--tv", "-1"], ["--tv: must be a finite number ≥ 0"]),
    ("dream --class typo", ["dream", "lenet5.fmnist", "--class", "Sneakerz"], ["unknown class 'Sneakerz'"]),
    ("dream --class 10", ["dream", "lenet5.fmnist", "--class", "10"], ["unknown class '10'", "index 0-9"]),
    (
        "dream --channel 999",
        ["dream", "lenet5.fmnist", "--layer", "features.s2", "--channel", "999"],
        ["999 is not a channel of features.s2"],
    ),
    ("dream --channel -1", ["dream", "lenet5.fmnist", "--layer", "features.s2", "--channel", "-1"], ["must be ≥ 0"]),
    ("dream --layer typo", ["dream", "lenet5.fmnist", "--layer", "conv9", "--channel", "3"], ["no layer 'conv9'"]),
    ("prepare a text file", ["prepare", "{files}/notes.txt", "--out", "{files}/shards"], ["neither a folder"]),
    ("prepare an empty folder", ["prepare", "{files}/empty", "--out", "{files}/shards"], ["no class sub-folders"]),
    ("prepare --size abc", ["prepare", "{files}/photos", "--out", "{files}/s", "--size", "abc"], ["--size"]),
    ("prepare --size 0", ["prepare", "{files}/photos", "--out", "{files}/s", "--size", "0"], ["must be ≥ 1"]),
    (
        "prepare --val-fraction 1.5",
        ["prepare", "{files}/photos", "--out", "{files}/s", "--val-fraction", "1.5"],
        ["[0, 1)"],
    ),
    ("segment with a classifier", ["segment", "lenet5.fmnist", SCENE], ["does not apply to lenet5.fmnist"]),
    ("segment a text file", ["segment", "fpn_resnet20.fmnist_scenes", "{files}/notes.txt"], ["(a text file)"]),
    (
        "segment --out-dir a file",
        ["segment", "fpn_resnet20.fmnist_scenes", SCENE, "--out-dir", "{files}/notes.txt"],
        ["is a file"],
    ),
    ("detect --threshold 2", ["detect", "detr_lite.fmnist_scenes", SCENE, "--threshold", "2"], ["between 0 and 1"]),
    ("detect --threshold -1", ["detect", "detr_lite.fmnist_scenes", SCENE, "--threshold", "-1"], ["≥ 0"]),
    ("detect with a classifier", ["detect", "lenet5.fmnist", SCENE], ["use `zoo classify`"]),
    ("detect a text .png", ["detect", "detr_lite.fmnist_scenes", "{files}/notes.png"], ["notes.png (a text file)"]),
    ("attention --block 99", ["attention", "swin_lite.fmnist", SAMPLE, "--block", "99"], ["6 blocks (0 to 5"]),
    ("attention of a CNN", ["attention", "lenet5.fmnist", SAMPLE], ["no attention layers"]),
    (
        "finetune multilabel of one image",
        ["finetune", "lenet5.fmnist", "--data", "{files}/scenes/one_tag.csv", "--task", "multilabel"],
        ["lists one image", "give at least two"],
    ),
    (
        "finetune without validation images",
        ["finetune", "lenet5.fmnist", "--data", "{files}/scenes/tags.csv", "--task", "multilabel"]
        + ["--data.val_fraction", "0"],
        ["leaves no validation images", "0.2"],
    ),
    (
        "finetune --task typo",
        ["finetune", "lenet5.fmnist", "--data", "{files}/photos", "--task", "multilabell"],
        ["did you mean 'multilabel'"],
    ),
    ("finetune --data a text file", ["finetune", "lenet5.fmnist", "--data", "{files}/notes.txt"], ["neither a folder"]),
    ("evaluate --data an image named .csv", ["evaluate", "lenet5.fmnist", "--data", "{files}/pic.csv"], ["PNG image"]),
    ("finetune --data an image named .csv", ["finetune", "lenet5.fmnist", "--data", "{files}/pic.csv"], ["not text"]),
    (
        "finetune multilabel of an image named .csv",
        ["finetune", "lenet5.fmnist", "--data", "{files}/pic.csv", "--task", "multilabel"],
        ["pic.csv is a PNG image, not text", "path,labels"],
    ),
    ("prepare an image named .csv", ["prepare", "{files}/pic.csv", "--out", "{files}/s"], ["is a PNG image"]),
    (
        "finetune a CSV row without a label",
        ["finetune", "lenet5.fmnist", "--data", "{files}/short.csv"],
        ["line 3: no label"],
    ),
    (
        "evaluate a detector on a text .json",
        ["evaluate", "detr_lite.fmnist_scenes", "--data", "{files}/notes.json"],
        ["JSON"],
    ),
    (
        "finetune -o under a file",
        ["finetune", "lenet5.fmnist", "--data", "{files}/photos", "-o", "{files}/notes.txt/out"],
        ["notes.txt is a file, so no folder can be made under it"],
    ),
    (
        "detect -o under a file",
        ["detect", "detr_lite.fmnist_scenes", SCENE, "-o", "{files}/notes.txt/x.png"],
        ["is a file"],
    ),
    ("detect -o a folder", ["detect", "detr_lite.fmnist_scenes", SCENE, "-o", "{files}/empty"], ["is a folder"]),
    (
        "segment -o under a file",
        ["segment", "fpn_resnet20.fmnist_scenes", SCENE, "-o", "{files}/pic.png/s.png"],
        ["is a file"],
    ),
    (
        "segment --out-dir under a file",
        ["segment", "fpn_resnet20.fmnist_scenes", SCENE, "--out-dir", "{files}/pic.png/masks"],
        ["is a file, so no folder can be made under it"],
    ),
    (
        "fit --trainer.default_root_dir a file",
        ["fit", "--config", RECIPE, *TEST, "--card.name=null", "--trainer.default_root_dir", "{files}/notes.txt"],
        ["--trainer.default_root_dir", "is a file, not a folder"],
    ),
    ("list --timm no match", ["list", "--timm", "zzzqqq*"], ["timm has no architecture matching"]),
    ("info --input-size 1 0 28", ["info", "lenet5", "--input-size", "1", "0", "28"], ["--input-size: must be ≥ 1"]),
    ("predict --json --csv", ["predict", "lenet5.fmnist", SAMPLE, "--json", "--csv"], ["not allowed with"]),
    ("schedule --world-size 0", ["schedule", "--config", RECIPE, "--world-size", "0"], ["must be ≥ 1"]),
]

# taken as they are, with the result they must give: (id, argv, exit code, words of stdout + stderr)
HANDLED = [
    ("classify --top-k above the class count", ["classify", "lenet5.fmnist", SAMPLE, "--top-k", "20"], 0, ["Trouser"]),
    (
        "predict an unreadable file among images",
        ["predict", "lenet5.fmnist", SAMPLE, "{files}/notes.png"],
        1,
        ["Ankle boot", "skipped {files}/notes.png", "1 file(s) could not be read"],
    ),
    (
        "a weight folder's config.json as weights",
        ["classify", str(REPO / "model_cards" / "lenet5.fmnist" / "config.json"), SAMPLE],
        0,
        ["Ankle boot"],
    ),
]
