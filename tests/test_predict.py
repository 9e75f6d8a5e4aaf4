"""``zoo predict`` over files and folders: the weights' transforms, batches through a DataLoader, table /
JSON / CSV output, ONNX through onnxruntime, unreadable files skipped, counted and reported by exit code."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

import zoo
from zoo.cli import main
from zoo.predict import predict_files

REPO = Path(__file__).resolve().parent.parent
SAMPLES = sorted((REPO / "samples").glob("*.png"))


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "nested" / "deeper").mkdir(parents=True)
    for i, path in enumerate(SAMPLES):
        target = tmp_path / ("nested/deeper" if i % 3 == 0 else "nested" if i % 3 == 1 else ".") / path.name
        shutil.copy(path, target)
    return tmp_path


def _label(path: str) -> str:
    return Path(path).stem.split("_", 3)[3]  # fmnist_test_0000_ankle-boot → ankle-boot


def test_predict_json_over_a_folder_recursively(folder, capsys) -> None:
    main(["predict", "lenet5.fmnist", str(folder), "--top-k", "3", "--json", "--num-workers", "2"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(Path(r["path"]).name for r in rows) == sorted(p.name for p in SAMPLES)
    assert all(len(r["labels"]) == 3 and r["probs"] == sorted(r["probs"], reverse=True) for r in rows)
    names = {"ankle-boot": "Ankle boot", "t-shirt-top": "T-shirt/top"}
    right = sum(r["labels"][0] == names.get(_label(r["path"]), _label(r["path"]).capitalize()) for r in rows)
    assert right == len(SAMPLES), "the shipped LeNet-5 gets the ten samples right, as zoo classify does"


def test_predict_csv_and_the_same_numbers_through_onnx(folder, tmp_path, capsys) -> None:
    main(["predict", "resnet20.fmnist", str(folder), "--csv", "--top-k", "2", "--num-workers", "0"])
    torch_rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert torch_rows[0] == ["path", "label1", "prob1", "label2", "prob2"] and len(torch_rows) == len(SAMPLES) + 1
    zoo.export(zoo.load("resnet20.fmnist"), tmp_path / "r20.onnx")
    main(["predict", "resnet20.fmnist", str(folder), "--csv", "--top-k", "2", "--onnx", str(tmp_path / "r20.onnx")])
    onnx_rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    for ours, theirs in zip(torch_rows[1:], onnx_rows[1:]):
        assert ours[:2] == theirs[:2] and abs(float(ours[2]) - float(theirs[2])) < 1e-4


def test_unreadable_files_are_skipped_counted_and_set_the_exit_code(folder, capsys) -> None:
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "nested" / "empty.jpg").write_bytes(b"")
    with pytest.raises(SystemExit) as info:
        main(["predict", "lenet5.fmnist", str(folder), "--json"])
    out, err = capsys.readouterr()
    assert info.value.code == 1 and len(out.splitlines()) == len(SAMPLES)
    assert "skipped" in err and "broken.png" in err and "empty.jpg" in err and "2 file(s) could not be read" in err


def test_predict_files_api_and_a_folder_without_images(folder, tmp_path) -> None:
    run = predict_files("lenet5.fmnist", [folder], top_k=1, num_workers=0)
    assert len(run.predictions) == len(SAMPLES) and not run.unreadable
    (tmp_path / "empty").mkdir()
    with pytest.raises(zoo.ZooError, match="no image files under"):
        predict_files("lenet5.fmnist", [tmp_path / "empty"], num_workers=0)
    with pytest.raises(zoo.ZooError, match=r"no such image file or folder: .*typo\.png; check the path"):
        predict_files("lenet5.fmnist", [folder, tmp_path / "typo.png"], num_workers=0)


def test_lightning_predict_still_runs_from_a_recipe(tmp_path, monkeypatch, fmnist_root) -> None:
    """``zoo predict --config``: Lightning's predict loop returns the task's class probabilities for the
    datamodule's first batch, the same numbers ``predict_proba`` gives for those images."""
    import torch

    import zoo.cli.recipe as recipe

    runs = []
    real = recipe.run_lightning
    monkeypatch.setattr(recipe, "run_lightning", lambda argv: runs.append(real(argv)) or runs[-1])
    monkeypatch.chdir(tmp_path)
    main(
        [
            "predict",
            "--config",
            str(REPO / "recipes" / "lenet5_fmnist.yaml"),
            "--trainer.limit_predict_batches=1",
            "--trainer.logger=false",
            "--trainer.enable_progress_bar=false",
        ]
    )
    (cli,) = runs
    (probs,) = cli.trainer.predict_loop.predictions  # one batch
    images, _ = next(iter(cli.datamodule.predict_dataloader()))
    assert probs.shape == (len(images), 10) and len(images) > 1
    assert torch.allclose(probs.sum(dim=1), torch.ones(len(images)), atol=1e-5)
    assert torch.allclose(probs, cli.model.predict_proba(images), atol=1e-6)
