"""Training craft: lr-find, overfit-batch, schedule, plot, early stopping that keeps the best weights,
histograms, test-time PNGs, init options. Tiny budgets: every run is a handful of LeNet-5 steps."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from zoo.cli import main

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "recipes" / "lenet5_fmnist.yaml")
QUIET = ["--data.init_args.augment", "false", "--card.name", "null"]


def _png(path: Path) -> None:
    assert path.is_file(), f"{path} was not written"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size < 300_000


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, fmnist_root):
    """One short ``zoo fit`` with the craft flags on: early stopping, histograms, accumulation, clipping."""
    workdir = tmp_path_factory.mktemp("fit")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        torch.set_num_threads(1)
        main(
            [
                "fit",
                "--config",
                RECIPE,
                *QUIET,
                "--trainer.max_epochs",
                "3",
                "--trainer.limit_train_batches",
                "8",
                "--trainer.limit_val_batches",
                "2",
                "--trainer.log_every_n_steps",
                "1",
                "--trainer.enable_progress_bar",
                "false",
                "--trainer.accumulate_grad_batches",
                "2",
                "--trainer.gradient_clip_val",
                "1.0",
                "--early_stopping.patience",
                "5",
                "--histograms.every_n_steps",
                "2",
            ]
        )
    runs = sorted((workdir / "runs" / "zoo").iterdir())
    assert len(runs) == 1
    return runs[0]


# ---- lr-find -------------------------------------------------------------------------------------------
def test_lr_find_suggests_a_sane_rate_and_applies_it(tmp_path, monkeypatch, fmnist_root) -> None:
    monkeypatch.chdir(tmp_path)
    main(["lr-find", "--config", RECIPE, *QUIET, "--num-training", "60", "-o", "lr.png", "--apply", "tuned.yaml"])
    _png(tmp_path / "lr.png")
    tuned = yaml.safe_load((tmp_path / "tuned.yaml").read_text())
    original = yaml.safe_load(Path(RECIPE).read_text())
    lr = tuned["model"]["init_args"].pop("lr")
    assert 1e-4 <= lr <= 1.0, f"LeNet-5 LR suggestion {lr} is outside 1e-4..1"
    original["model"]["init_args"].pop("lr")
    assert tuned == original  # nothing but the learning rate changed


# ---- overfit-batch -------------------------------------------------------------------------------------
def test_overfit_batch_says_lenet5_can_learn(tmp_path, monkeypatch, capsys, fmnist_root) -> None:
    monkeypatch.chdir(tmp_path)
    main(
        [
            "overfit-batch",
            "--config",
            RECIPE,
            *QUIET,
            "--data.init_args.batch_size",
            "32",
            "--steps",
            "150",
            "-o",
            "overfit.png",
        ]
    )
    out = capsys.readouterr().out
    assert "the model can learn" in out, out
    _png(tmp_path / "overfit.png")


def test_overfit_batch_says_something_is_wrong_with_lr_0(tmp_path, monkeypatch, capsys, fmnist_root) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:  # a failed check exits 1, so that a script can tell
        main(
            [
                "overfit-batch",
                "--config",
                RECIPE,
                *QUIET,
                "--data.init_args.batch_size",
                "32",
                "--steps",
                "10",
                "--model.init_args.lr",
                "0",
            ]
        )
    assert exit_.value.code == 1
    out = capsys.readouterr().out
    assert "something is wrong" in out and "learning rate" in out, out
    assert "the model can learn" not in out


def test_overfit_verdicts_name_what_to_check() -> None:
    from zoo.cli.craft import overfit_verdict

    diverged = {
        "losses": [2.3, 40.0, math.nan],
        "final_loss": math.nan,
        "final_acc": 0.1,
        "lr": 10.0,
        "first_loss": 2.3,
    }
    assert "learning rate" in overfit_verdict(diverged, 0.05)[1] and "nan" in overfit_verdict(diverged, 0.05)[1]
    slow = {"losses": [2.3, 1.5, 1.2], "final_loss": 1.2, "final_acc": 0.6, "lr": 1e-3, "first_loss": 2.3}
    ok, verdict = overfit_verdict(slow, 0.05)
    assert not ok and "labels" in verdict and "--steps" in verdict


# ---- schedule ------------------------------------------------------------------------------------------
def test_schedule_command_draws_every_schedule(tmp_path, monkeypatch, fmnist_root) -> None:
    monkeypatch.chdir(tmp_path)
    main(["schedule", "--config", RECIPE, "--all", "--steps-per-epoch", "20", "--epochs", "6", "-o", "lr.png"])
    _png(tmp_path / "lr.png")


@pytest.mark.parametrize("kind", ["constant", "step", "exponential", "cosine", "sgdr", "plateau", "onecycle"])
def test_every_schedule_warms_up_linearly_then_runs(kind: str) -> None:
    from zoo.cli.craft import lr_schedule
    from zoo.tasks.classification import ImageClassifier

    hp = ImageClassifier(
        lr=0.1, scheduler=kind, warmup_epochs=1, step_epochs=2, gamma=0.5, restart_epochs=2, plateau_patience=1
    ).hparams
    lrs = lr_schedule(hp, kind, epochs=6, per_epoch=10)
    assert len(lrs) == 60 and max(lrs) == pytest.approx(0.1, rel=1e-6)
    assert lrs[0] < 0.1 / 10 and all(b > a for a, b in zip(lrs[:9], lrs[1:10]))  # a ramp up over the first epoch
    if kind not in ("constant", "onecycle"):
        assert lrs[-1] < 0.1  # then the schedule brings it down


def test_schedule_matches_the_learning_rate_the_trainer_used(tiny_run: Path) -> None:
    """The picture `zoo schedule` draws is what training does: same steps, same values as the LR monitor logged."""
    from zoo.cli.craft import lr_schedule
    from zoo.cli.plot import read_metrics

    hp = yaml.safe_load((tiny_run / "hparams.yaml").read_text())
    logged = read_metrics(tiny_run / "metrics.csv")["lr"][1]
    planned = lr_schedule(type("HP", (), hp)(), hp["scheduler"], epochs=3, per_epoch=4)  # 8 batches / accumulate 2
    assert len(logged) == 12
    assert logged == pytest.approx(planned, rel=1e-5)


# ---- fit flags: early stopping, histograms, accumulation, clipping ---------------------------------------
def test_fit_flags_reach_the_trainer(tiny_run: Path) -> None:
    from zoo.cli.plot import read_metrics

    config = yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert config["trainer"]["accumulate_grad_batches"] == 2 and config["trainer"]["gradient_clip_val"] == 1.0
    assert config["early_stopping"]["patience"] == 5 and config["histograms"]["every_n_steps"] == 2
    metrics = read_metrics(tiny_run / "metrics.csv")
    assert len(metrics["val_loss"][1]) == 3  # patience 5 never ran out in 3 epochs
    assert max(int(row) for row in _column(tiny_run, "step")) == 11  # 3 epochs × 8 batches / accumulate 2 = 12 steps


def _column(run: Path, key: str) -> list[str]:
    import csv

    with (run / "metrics.csv").open() as file:
        return [row[key] for row in csv.DictReader(file) if row.get(key)]


def test_histograms_reach_tensorboard(tiny_run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(
        str(next(tiny_run.glob("events.out.tfevents.*"))), size_guidance={"histograms": 0, "scalars": 0}
    )
    events.Reload()
    histograms, scalars = events.Tags()["histograms"], events.Tags()["scalars"]
    assert "weights/net.features.c1.weight" in histograms and "gradients/net.head.fc.weight" in histograms
    assert "grad_norm/net.features.c1.weight" in scalars
    assert len(events.Histograms("weights/net.features.c1.weight")) == 6  # 12 optimizer steps, every 2nd


def test_recipe_accumulation_and_clipping_are_trainer_flags(tmp_path, fmnist_root) -> None:
    from zoo.cli.craft import steps_per_epoch
    from zoo.cli.recipe import load_recipe

    recipe = yaml.safe_load(Path(RECIPE).read_text())
    recipe["trainer"].update(accumulate_grad_batches=4, gradient_clip_val=0.5, limit_train_batches=10)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    loaded = load_recipe(str(path), [])
    assert loaded.trainer["accumulate_grad_batches"] == 4 and loaded.trainer["gradient_clip_val"] == 0.5
    assert steps_per_epoch(loaded) == 3  # ceil(10 batches / 4)


class ScriptedValLoss:
    """Validation losses chosen in advance: best at epoch 1, then three worse epochs."""

    script = [1.0, 0.5, 0.8, 0.9, 0.7, 0.6]

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", torch.tensor(self.script[self.current_epoch]))


def test_early_stopping_restores_the_best_epoch_weights(tmp_path, fmnist_root) -> None:
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from zoo.callbacks import KeepBestEarlyStopping
    from zoo.data import FashionMNISTDataModule
    from zoo.tasks.classification import ImageClassifier

    model_class = type("Scripted", (ScriptedValLoss, ImageClassifier), {})
    L.seed_everything(0)
    model = model_class(lr=0.05)
    early = KeepBestEarlyStopping(patience=2)
    best = ModelCheckpoint(
        dirpath=tmp_path, monitor="val_loss", mode="min", save_top_k=-1, filename="{epoch}"
    )  # every epoch
    trainer = L.Trainer(
        max_epochs=6,
        limit_train_batches=3,
        limit_val_batches=1,
        callbacks=[early, best],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=FashionMNISTDataModule(batch_size=32))
    assert early.stopped_epoch == 3 and early.best_epoch == 1  # 0.5 at epoch 1, no better in the 2 after
    best_state = torch.load(best.best_model_path, weights_only=True)["state_dict"]
    last_state = torch.load(tmp_path / "epoch=3.ckpt", weights_only=True)["state_dict"]
    assert Path(best.best_model_path).name == "epoch=1.ckpt"
    for key, value in model.state_dict().items():
        assert torch.equal(value, best_state[key]), key
    assert any(not torch.equal(last_state[k], best_state[k]) for k in best_state)  # training did move on


def test_early_stopping_is_off_until_patience_is_given() -> None:
    from zoo.callbacks import KeepBestEarlyStopping

    assert not KeepBestEarlyStopping().enabled and KeepBestEarlyStopping(patience=3).enabled


# ---- plot and test-time pictures -----------------------------------------------------------------------
def test_plot_draws_curves_from_the_csv_log(tiny_run: Path, tmp_path, capsys) -> None:
    main(["plot", str(tiny_run), "-o", str(tmp_path / "curves.png")])
    _png(tmp_path / "curves.png")
    main(["plot", str(tiny_run), str(tiny_run.parent), "--labels", "a", "b", "-o", str(tmp_path / "two.png")])
    _png(tmp_path / "two.png")
    assert "best val loss" in capsys.readouterr().out


def test_plot_names_a_folder_without_logs(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["plot", str(tmp_path)])
    assert "no metrics.csv" in capsys.readouterr().err


def test_zoo_test_writes_confusion_matrix_and_mistakes(tiny_run: Path, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    main(
        [
            "test",
            "--config",
            RECIPE,
            *QUIET,
            "--ckpt_path",
            str(tiny_run / "checkpoints" / "last.ckpt"),
            "--trainer.limit_test_batches",
            "2",
            "--trainer.enable_progress_bar",
            "false",
            "--test_report.max_images",
            "8",
        ]
    )
    run = next((tmp_path / "runs" / "zoo").iterdir())
    _png(run / "confusion_matrix.png")
    _png(run / "misclassified.png")


# ---- init and switches ---------------------------------------------------------------------------------
@pytest.mark.parametrize("init", ["kaiming", "xavier"])
def test_init_schemes_set_the_textbook_variance(init: str) -> None:
    from zoo.tasks.classification import ImageClassifier

    torch.manual_seed(0)
    model = ImageClassifier("lenet5", init=init)
    weight = model.net.features.c5.weight  # fan_in 16·5·5 = 400, fan_out 120·5·5 = 3000
    expected = 2 / 400 if init == "kaiming" else 2 / (400 + 3000)
    assert weight.var().item() == pytest.approx(expected, rel=0.05)
    assert all(not m.bias.any() for m in model.net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))


def test_batch_norm_switch_keeps_the_default_architecture() -> None:
    from zoo.tasks.classification import ImageClassifier

    plain = ImageClassifier("lenet5")
    normed = ImageClassifier("lenet5", model_kwargs={"batch_norm": True})
    assert sum(p.numel() for p in plain.net.parameters()) == 61_706
    assert sum(p.numel() for p in normed.net.parameters()) == 61_706 + 2 * (6 + 16 + 120)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.net.modules())
