"""Every bad input gets one line that says what was wrong and what to do, across the API and the CLI.

One table: each case is an input, the error class (API) or exit code 2 (CLI), and words of the fix the
message must name. The message must be a single line; nothing on disk is touched by a refused call.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from bad_input_cases import ACCEPTED, API_CASES_MORE, CLI_CASES_MORE, write_fixture_files
from bad_input_cases_kinds import API_CASES_KINDS, CLI_CASES_KINDS, HANDLED, write_kind_files

import zoo
from zoo.cli import main
from zoo.errors import (
    DatasetNotFoundError,
    InputShapeError,
    InputValueError,
    InvalidValueError,
    UnknownArgumentError,
    UnknownModelError,
    WeightsError,
    ZooError,
)

REPO = Path(__file__).resolve().parent.parent
RECIPE = str(REPO / "recipes" / "lenet5_fmnist.yaml")
SAMPLE = str(sorted((REPO / "samples").glob("*.png"))[0])
QUICK = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=1",
    "--trainer.limit_val_batches=1",
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
    "--card.name=null",
]


class Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/zoo-bad-inputs-pwned",))


@pytest.fixture(scope="module")
def lenet():
    return zoo.load("lenet5.fmnist")


@pytest.fixture
def files(tmp_path):
    """Bad files: a corrupt checkpoint, a malicious pickle, an empty folder, a text file posing as an image."""
    (tmp_path / "corrupt.ckpt").write_bytes(b"not a checkpoint at all")
    torch.save({"state_dict": Evil(), "pytorch-lightning_version": "2"}, tmp_path / "evil.ckpt")  # as an attacker would
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.png").write_text("this is not a PNG")
    write_fixture_files(tmp_path)
    write_kind_files(tmp_path)
    return tmp_path


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by its sha256: a refused call must leave all of them as they were."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
        for p in sorted(folder.rglob("*"))
    }


X = torch.rand(2, 1, 28, 28)

# (id, call(lenet, files), error class, words the message must contain)
API_CASES = [
    ("unknown model", lambda m, f: zoo.create("lenet"), UnknownModelError, ["closest: lenet5"]),
    ("unknown weights tag", lambda m, f: zoo.load("lenet5.imagenet"), UnknownModelError, ["lenet5.fmnist"]),
    ("optimizer typo", lambda m, f: zoo.create("lenet5", optimizer="sgdd"), InvalidValueError, ["did you mean 'sgd'"]),
    ("scheduler typo", lambda m, f: zoo.create("lenet5", scheduler="cosin"), InvalidValueError, ["'cosine'"]),
    ("init typo", lambda m, f: zoo.create("lenet5", init="he"), InvalidValueError, ["kaiming"]),
    ("lr not a number", lambda m, f: zoo.create("lenet5", lr="fast"), InvalidValueError, ["lr must be a number"]),
    ("negative lr", lambda m, f: zoo.create("lenet5", lr=-0.1), InvalidValueError, ["lr must be ≥ 0"]),
    ("negative num_classes", lambda m, f: zoo.create("lenet5", num_classes=-1), InvalidValueError, ["whole number"]),
    ("fractional num_classes", lambda m, f: zoo.create("lenet5", num_classes=1.5), InvalidValueError, ["whole number"]),
    (
        "in_chans 0",
        lambda m, f: zoo.create("lenet5", in_chans=0),
        InvalidValueError,
        ["in_chans must be a whole number ≥ 1"],
    ),
    ("momentum 1", lambda m, f: zoo.create("lenet5", momentum=1.0), InvalidValueError, ["momentum", "0.9"]),
    ("label smoothing 1", lambda m, f: zoo.create("lenet5", label_smoothing=1), InvalidValueError, ["[0, 1)"]),
    (
        "unknown keyword",
        lambda m, f: zoo.create("lenet5", dropuot=0.5),
        UnknownArgumentError,
        ["did you mean 'dropout'"],
    ),
    ("three channels", lambda m, f: m(torch.rand(2, 3, 28, 28)), InputShapeError, ["in_chans=3"]),
    ("wrong size", lambda m, f: m(torch.rand(2, 1, 32, 32)), InputShapeError, ["resize the images to 28×28"]),
    ("no batch dimension", lambda m, f: m(torch.rand(1, 28, 28)), InputShapeError, ["x[None]"]),
    ("a Python list", lambda m, f: m([[0.5] * 28] * 28), InputShapeError, ["torch.as_tensor"]),
    ("NaN pixels", lambda m, f: m.predict_proba(torch.full((1, 1, 28, 28), float("nan"))), InputValueError, ["NaN"]),
    ("infinite pixels", lambda m, f: m(torch.full((1, 1, 28, 28), float("inf"))), InputValueError, ["infinite"]),
    ("0-255 floats", lambda m, f: m.predict_proba(X * 255), InputValueError, ["divide by 255"]),
    ("normalised input", lambda m, f: m(X - 0.5), InputValueError, ["the model does it itself"]),
    ("int pixels over 255", lambda m, f: m(torch.full((1, 1, 28, 28), 300)), InputValueError, ["uint8"]),
    ("bool pixels", lambda m, f: m(torch.ones(1, 1, 28, 28, dtype=torch.bool)), InputValueError, ["floats in [0, 1]"]),
    (
        "missing folder",
        lambda m, f: zoo.load(str(f / "no-such-folder") + "/"),
        WeightsError,
        ["no such file or folder"],
    ),
    ("typo'd relative folder", lambda m, f: zoo.load("./model_cards/lenet5.fmnistt"), WeightsError, ["no such file"]),
    ("missing weight file", lambda m, f: zoo.load(str(f / "w.safetensors")), WeightsError, ["no such weight file"]),
    (
        "corrupt checkpoint",
        lambda m, f: zoo.load(str(f / "corrupt.ckpt")),
        WeightsError,
        ["not a readable PyTorch file"],
    ),
    ("malicious checkpoint", lambda m, f: zoo.load(str(f / "evil.ckpt")), WeightsError, ["weights_only=True"]),
    ("save onto a file", lambda m, f: m.save_pretrained(f / "notes.png"), ZooError, ["new folder name"]),
    (
        "save where nobody may write",
        lambda m, f: m.save_pretrained("/proc/zoo-weights"),
        ZooError,
        ["/proc/zoo-weights", "choose a folder"],
    ),
    ("head of -1 classes", lambda m, f: zoo.create("lenet5").reset_classifier(-1), InvalidValueError, ["≥ 0"]),
    (
        "weights of an architecture that has none",
        lambda m, f: zoo.load("alexnet"),
        UnknownModelError,
        ["has no pretrained weights", "zoo.create('alexnet') builds it untrained", "closest weights: alexnet_tv."],
    ),
    (
        "feature level out of range",
        lambda m, f: zoo.backbone("lenet5", out_indices=(9,)),
        InvalidValueError,
        ["2 feature levels"],
    ),
    (
        "data root without the files",
        lambda m, f: _load_data(f / "empty"),
        DatasetNotFoundError,
        ["leave --data.root out"],
    ),
    (
        "batch size 0",
        lambda m, f: zoo.data.FashionMNISTDataModule(batch_size=0),
        InvalidValueError,
        ["batch_size must be"],
    ),
    (
        "erasing probability 2",
        lambda m, f: zoo.data.FashionMNISTDataModule(random_erasing=2),
        InvalidValueError,
        ["[0, 1]"],
    ),
    *API_CASES_MORE,
    *API_CASES_KINDS,
]


def _load_data(root):
    from zoo.data.fashion_mnist import load_split

    return load_split("test", root, download=False)


@pytest.mark.parametrize(("call", "error", "words"), [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_bad_input_is_one_line_naming_the_fix(call, error, words, lenet, files) -> None:
    import zoo.data  # noqa: F401  zoo.data.FashionMNISTDataModule in the table

    before = snapshot(files)
    with pytest.raises(error) as info:
        call(lenet, files)
    message = str(info.value)
    assert "\n" not in message and len(message) < 600, message  # one line; the longest lists accepted names
    for word in words:
        assert word in message, (word, message)
    assert snapshot(files) == before, "a refused call leaves the files as they were"
    assert not Path("/tmp/zoo-bad-inputs-pwned").exists()


CLI_CASES = [
    ("unknown command", ["fitt"], ["did you mean 'fit'"]),
    ("classify unknown weights", ["classify", "lenet", SAMPLE], ["closest: lenet5"]),
    ("classify a missing image", ["classify", "lenet5.fmnist", "nope.png"], ["no such image file or folder: nope.png"]),
    ("classify a non-image", ["classify", "lenet5.fmnist", "{files}/notes.png"], ["cannot read image", "PNG or JPEG"]),
    ("classify an empty folder", ["classify", "lenet5.fmnist", "{files}/empty"], ["holds no image files"]),
    ("classify --top-k 0", ["classify", "lenet5.fmnist", SAMPLE, "--top-k", "0"], ["--top-k", "must be ≥ 1"]),
    ("info --batch-size -1", ["info", "lenet5", "--batch-size", "-1"], ["--batch-size", "must be ≥ 1"]),
    ("info --num-classes -1", ["info", "lenet5", "--num-classes", "-1"], ["--num-classes", "≥ 0"]),
    ("info unknown model", ["info", "resnet21"], ["unknown model 'resnet21'", "resnet20"]),
    ("evaluate --batch-size 0", ["evaluate", "lenet5.fmnist", "--batch-size", "0"], ["must be ≥ 1"]),
    (
        "evaluate on an empty data root",
        ["evaluate", "lenet5.fmnist", "--data-root", "{files}/empty"],
        ["has no Fashion-MNIST"],
    ),
    ("schedule --epochs 0", ["schedule", "--config", RECIPE, "--epochs", "0"], ["--epochs", "must be ≥ 1"]),
    ("overfit-batch --steps 0", ["overfit-batch", "--config", RECIPE, "--steps", "0"], ["--steps", "must be ≥ 1"]),
    ("missing recipe", ["lr-find", "--config", "recipes/nope.yaml"], ["recipe recipes/nope.yaml not found"]),
    (
        "recipe key typo",
        ["fit", "--config", RECIPE, "--model.init_args.lrr", "0.1", *QUICK],
        ["no option 'lrr'", "did you mean 'lr'"],
    ),
    (
        "trainer flag typo",
        ["fit", "--config", RECIPE, "--trainer.max_epochz", "3"],
        ["did you mean --trainer.max_epochs"],
    ),
    (
        "flag of the wrong type",
        ["fit", "--config", RECIPE, "--trainer.max_epochs", "abc"],
        ["--trainer.max_epochs", "int"],
    ),
    (
        "recipe naming an unknown model",
        ["fit", "--config", RECIPE, "--model.init_args.model_name", "lenet", *QUICK],
        ["closest: lenet5"],
    ),
    ("card name without a tag", ["fit", "--config", RECIPE, *QUICK, "--card.name", "lenet5"], ["'lenet5.<tag>'"]),
    (
        "missing checkpoint",
        ["fit", "--config", RECIPE, *QUICK, "--ckpt_path", "{files}/nope.ckpt"],
        ["no such checkpoint file"],
    ),
    (
        "corrupt checkpoint",
        ["test", "--config", RECIPE, *QUICK[3:5], "--ckpt_path", "{files}/corrupt.ckpt"],
        ["not a readable PyTorch file"],
    ),
    (
        "malicious checkpoint",
        ["fit", "--config", RECIPE, *QUICK, "--ckpt_path", "{files}/evil.ckpt"],
        ["refused to load", "weights_only"],
    ),
    (
        "data root that does not exist",
        [
            "fit",
            "--config",
            RECIPE,
            *QUICK,
            "--data.init_args.root",
            "{files}/nope",
            "--data.init_args.download",
            "false",
        ],
        ["has no Fashion-MNIST"],
    ),
    (
        "push of a folder without weights",
        ["push", "{files}/empty", "--repo", "org/x"],
        ["config.json is missing", "a weight folder needs"],
    ),
    (
        "push to an unreachable hub",
        ["push", str(REPO / "model_cards" / "lenet5.fmnist"), "--repo", "org/x"],
        ["cannot reach the hub", "HF_ENDPOINT"],
    ),
    ("pull of a typo'd folder", ["pull", "./no/such/folder"], ["no such file or folder"]),
    *CLI_CASES_MORE,
    *CLI_CASES_KINDS,
]


@pytest.mark.parametrize(("argv", "words"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_is_one_line_and_exit_2(argv, words, files, capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    monkeypatch.setenv("ZOO_DOWNLOAD_TIMEOUT", "2")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    cards = sorted(p.name for p in (REPO / "model_cards").iterdir())
    before = snapshot(files)
    with pytest.raises(SystemExit) as info:
        main([arg.replace("{files}", str(files)) for arg in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2
    assert err and err[-1].startswith("zoo: error: "), err[-3:]
    assert not any("Traceback" in line for line in err), err
    for word in words:
        assert word in err[-1], (word, err[-1])
    assert sorted(p.name for p in (REPO / "model_cards").iterdir()) == cards
    assert snapshot(files) == before, "a refused command leaves the files as they were"


@pytest.mark.parametrize(("argv", "code", "words"), [c[1:] for c in HANDLED], ids=[c[0] for c in HANDLED])
def test_cli_inputs_taken_as_stated(argv, code, words, files, capsys, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    before = snapshot(files)
    try:
        main([arg.replace("{files}", str(files)) for arg in argv])
        exit_code = 0
    except SystemExit as exit_:
        exit_code = exit_.code
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert exit_code == code and "Traceback" not in text, (exit_code, text[-500:])
    for word in words:
        assert word.replace("{files}", str(files)) in text, (word, text[-500:])
    assert snapshot(files) == before


def test_the_table_has_at_least_100_cases() -> None:
    assert len(API_CASES) + len(CLI_CASES) + len(ACCEPTED) + len(HANDLED) + 2 >= 100  # + the two PIL cases below


X8 = (torch.rand(3, 1, 28, 28) * 255).round() / 255  # pixels that survive a uint8 round trip exactly


@pytest.mark.parametrize("make", [c[1] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_arrays_and_lists_are_taken_as_the_tensor_batch(make, lenet) -> None:
    expected = lenet.predict_proba(X8)
    assert torch.allclose(lenet.predict_proba(make(X8)), expected, atol=1e-6)
    assert torch.allclose(lenet(make(X8)).softmax(-1), expected, atol=1e-6)


def test_pil_images_go_through_the_weights_transforms(lenet) -> None:
    from PIL import Image

    image = Image.open(SAMPLE)
    expected = lenet.predict_proba(lenet.transforms()(image)[None])
    assert torch.allclose(lenet.predict_proba(image), expected)
    assert torch.allclose(lenet.predict_proba([image, image]), expected.repeat(2, 1))
    assert lenet.predict_proba(image).argmax().item() == lenet.class_names.index("Ankle boot")


def test_any_other_error_is_one_line_and_debug_shows_it(capsys, monkeypatch) -> None:
    from zoo import cli

    def broken(argv):
        raise RuntimeError("deep inside\nsecond line")

    monkeypatch.setitem(cli.EXTRA_COMMANDS, "list", broken)
    with pytest.raises(SystemExit) as info:
        main(["list"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and err == [
        "zoo: error: RuntimeError: deep inside (run with --debug for the traceback)"
    ]
    with pytest.raises(RuntimeError):
        main(["--debug", "list"])  # --debug before the command, as after it


def test_debug_shows_the_traceback(capsys) -> None:
    with pytest.raises(UnknownModelError):
        main(["info", "resnet21", "--debug"])


def test_classify_a_folder_image_by_image(tmp_path, capsys) -> None:
    import shutil

    for path in sorted((REPO / "samples").glob("*.png"))[:3]:
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "sub").mkdir()
    shutil.copy(SAMPLE, tmp_path / "sub" / "again.png")
    main(["classify", "lenet5.fmnist", str(tmp_path)])
    out = capsys.readouterr().out
    assert out.count(".png") == 4 and "again.png" in out


def test_integer_and_float64_pixels_are_taken(lenet) -> None:
    uint8 = (X * 255).round().to(torch.uint8)
    expected = lenet.predict_proba(uint8.float() / 255)
    assert torch.allclose(lenet.predict_proba(uint8.long()), expected)
    assert torch.allclose(lenet.predict_proba(uint8.double() / 255), expected, atol=1e-6)


def test_training_without_checkpoints(tmp_path, monkeypatch, fmnist_root) -> None:
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", RECIPE, *QUICK, "--trainer.enable_checkpointing", "false"])
    assert not list(tmp_path.rglob("*.ckpt"))


def test_explain_takes_class_names_as_their_indices(lenet) -> None:
    x = torch.rand(2, 1, 28, 28)
    by_index = zoo.explain(lenet, x, target=lenet.class_names.index("Sneaker"))
    assert torch.allclose(zoo.explain(lenet, x, target="sneaker"), by_index)
    assert torch.allclose(zoo.explain(lenet, x, target=["Sneaker", 7]), by_index)
