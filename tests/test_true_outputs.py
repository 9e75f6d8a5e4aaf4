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


def test_every_option_of_every_command_has_help(monkeypatch) -> None:
    """Every zoo command's parser, caught as `zoo COMMAND --help` builds it: no option without a help text."""
    import argparse

    from zoo import cli

    parsers: dict[str, argparse.ArgumentParser] = {}

    def catch(self, args=None, namespace=None):
        parsers[self.prog] = self
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", catch)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", catch)
    for name, command in cli.EXTRA_COMMANDS.items():
        if name != "finetune":  # its own usage text, checked below
            with pytest.raises(SystemExit):
                command(["--help"])
    assert len(parsers) >= len(cli.EXTRA_COMMANDS) - 1  # finetune prints its own usage (checked below)
    missing = [
        f"{prog} {action.option_strings or action.dest}"
        for prog, parser in parsers.items()
        for action in parser._actions
        if not action.help or action.help == argparse.SUPPRESS
    ]
    assert missing == []


def test_finetune_help_describes_every_option(capsys) -> None:
    main(["finetune", "--help"])
    text = capsys.readouterr().out
    for option in ("--model", "--data", "--output", "--strategy", "--task", "--lr", "--overwrite"):
        line = next(line for line in text.splitlines() if line.strip().startswith((option, f"-o, {option}")))
        assert len(line.split(maxsplit=2)[-1]) > 15, line


CHATTER = ("💡 Tip", "litlogger", "LeafSpec", "on_after_batch_transfer", "GPU available", "weights_only", ".lr_find_")
TOOL_CHATTER = ("Loading `train_dataloader`", "`Trainer.fit` stopped", "You requested to overfit")


def test_tools_print_their_answer_without_lightnings_chatter(tmp_path, capfd, fmnist_root) -> None:
    recipe = str(REPO / "recipes" / "lenet5_fmnist.yaml")
    with pytest.raises(SystemExit) as failed:  # 5 steps cannot overfit: exit 1, a verdict, nothing else
        main(["overfit-batch", "--config", recipe, "--steps", "5", "-o", str(tmp_path / "o.png")])
    assert failed.value.code == 1
    main(["lr-find", "--config", recipe, "--num-training", "30", "-o", str(tmp_path / "lr.png")])
    err = capfd.readouterr().err
    for line in CHATTER + TOOL_CHATTER:
        assert line not in err, (line, err)


def test_training_keeps_its_run_lines_and_real_warnings() -> None:
    import logging
    import warnings

    from zoo.cli.quiet import quiet_lightning

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    handler = Lines()
    rank_zero.addHandler(handler)
    for training in (True, False):
        lines: list[str] = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with quiet_lightning(training=training):
                rank_zero.warning("`Trainer.fit` stopped: `max_steps=5` reached.")
                rank_zero.warning("💡 Tip: try litlogger")
                warnings.warn("You requested to overfit but enabled train dataloader shuffling.", stacklevel=1)
                warnings.warn("The dataloader does not have many workers", stacklevel=1)  # about the user's data
        err = "\n".join(lines)
        assert ("`Trainer.fit` stopped" in err) == training and "💡 Tip" not in err
        shown = [str(w.message) for w in caught]
        assert "The dataloader does not have many workers" in shown
        assert any("You requested to overfit" in m for m in shown) == training
    rank_zero.removeHandler(handler)


def test_a_closed_pipe_ends_the_command_quietly() -> None:
    """`zoo predict ... --csv | head -1`: the reader closes the pipe; no 'zoo: error: BrokenPipeError' line."""
    import subprocess
    import sys

    script = (
        "from zoo import cli\n"
        "cli.EXTRA_COMMANDS['list'] = lambda argv: [print(f'row {i}') for i in range(200_000)]\n"
        "cli.main(['list'])\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout.readline() == b"row 0\n"
    child.stdout.close()  # as head does after its line
    err = child.stderr.read().decode()
    assert child.wait(timeout=120) == 141 and err == "", err


def test_default_root_dir_is_where_the_run_goes(tmp_path, monkeypatch, fmnist_root) -> None:
    """--trainer.default_root_dir was taken and ignored: the zoo's loggers wrote runs/ all the same."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ZOO_RUN_VERSION", raising=False)
    recipe = str(REPO / "recipes" / "lenet5_fmnist.yaml")
    quick = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]
    main(
        ["fit", "--config", recipe, *quick, "--trainer.enable_progress_bar=false", "--card.name=null"]
        + ["--trainer.default_root_dir", str(tmp_path / "elsewhere")]
    )
    assert not (tmp_path / "runs").exists()
    (run,) = (tmp_path / "elsewhere" / "zoo").iterdir()
    assert (run / "metrics.csv").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
