"""What the commands print and draw says what happened: no phantom epoch, one row per step after a
resume, one push line whatever the hub did, help text on every option, a confusion matrix not written over."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from zoo.cli import main

REPO = Path(__file__).resolve().parent.parent


def test_two_pushes_print_the_same_line(hub_env, tmp_path, capsys) -> None:
    folder = tmp_path / "lenet5.fmnist"
    shutil.copytree(REPO / "model_cards" / "lenet5.fmnist", folder)
    lines = []
    for _ in range(2):  # the second push changes nothing on the hub
        main(["push", str(folder), "--repo", "org/twice"])
        captured = capsys.readouterr()
        assert captured.err.strip() == "", captured.err  # no progress bars, no second "pushed" line
        lines += captured.out.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert line.startswith(f"pushed {folder} to org/twice (commit http") and "/org/twice/commit/" in line


def test_plot_has_no_phantom_epoch_after_the_card_test(tmp_path, capsys) -> None:
    from zoo.cli.plot import read_metrics

    rows = ["epoch,step,train_loss_step,train_loss_epoch,val_loss,test_acc"]
    rows += ["0,0,2.0,,,", "0,1,1.5,,,", "0,1,,,1.4,", "0,1,,1.7,,", "1,2,1.2,,,", "1,3,1.0,,,", "1,3,,,1.1,"]
    rows += ["1,3,,1.1,,", "2,4,,,1.05,", "2,4,,,,0.9"]  # fit's post-training validate/test, at epoch = max_epochs
    (tmp_path / "metrics.csv").write_text("\n".join(rows) + "\n")
    run = read_metrics(tmp_path / "metrics.csv")
    assert run["val_loss"] == ([1.0, 2.0], [1.4, 1.1])
    assert run["lr"] is None
    main(["plot", str(tmp_path), "-o", str(tmp_path / "c.png")])
    assert "at epoch 2" in capsys.readouterr().out


def test_a_resumed_run_drops_the_repeated_stretch(tmp_path) -> None:
    from zoo.loggers import AppendingExperimentWriter

    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train_loss_step\n" + "".join(f"0,{s},{s / 10}\n" for s in range(8)))
    writer = AppendingExperimentWriter(log_dir=str(tmp_path))  # the run resumes from its step-5 checkpoint
    writer.log_metrics({"train_loss_step": 9.0, "epoch": 0}, step=5)
    writer.save()
    with path.open(newline="") as file:
        steps = [int(row["step"]) for row in csv.DictReader(file)]
    assert steps == [0, 1, 2, 3, 4, 5], "each step once: the killed stretch's rows from step 5 on are gone"


@pytest.mark.parametrize(
    ("argv", "options"),
    [
        (["classify", "--help"], ["--top-k"]),
        (["evaluate", "--help"], ["--batch-size"]),
        (["lr-find", "--help"], ["--min-lr", "--max-lr"]),
        (["predict", "--help"], ["--top-k", "--batch-size", "--onnx", "--json", "--csv"]),
    ],
)
def test_every_option_has_help(argv, options, capsys) -> None:
    import re

    if argv[0] == "predict":
        main(argv)  # zoo predict --help is the file-prediction help, not LightningCLI's
    else:
        with pytest.raises(SystemExit):
            main(argv)
    text = capsys.readouterr().out
    for option in options:
        entry = re.search(rf"\n  {option}[^\n]*\n?([^\n]*)", text)
        assert entry, (option, text)
        described = entry.group(0).split(option, 1)[1]
        assert re.search(r"[a-z]{3,} [a-z]{2,}", described), (option, entry.group(0))


def test_a_second_test_report_does_not_overwrite_the_first(tmp_path) -> None:
    from types import SimpleNamespace

    import torch

    from zoo.callbacks import TestReport

    report = TestReport(output_dir=str(tmp_path), max_images=0)
    module = SimpleNamespace(confusion_matrix=torch.eye(3, dtype=torch.long), class_names=["a", "b", "c"], hparams={})
    trainer = SimpleNamespace(is_global_zero=True, log_dir=str(tmp_path))
    for _ in range(2):
        report.on_test_epoch_start(trainer, module)
        report.on_test_end(trainer, module)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["confusion_matrix-2.png", "confusion_matrix.png"]
