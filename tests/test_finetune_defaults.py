"""What zoo.finetune chooses when not told: the step budget (numbers worked by hand), the rate of the LR range
test's curve, the rate the optimizer really used, early stopping on with the best weights kept, ties to the
later epoch, and the plan printed and written to the card (API and CLI)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch

import zoo
from zoo import finetune_defaults as defaults
from zoo.callbacks import KeepBestEarlyStopping
from zoo.finetuning import LatestBest


def test_budget_worked_by_hand() -> None:
    # 80 images, batch 32: ceil(80/32) = 3 steps an epoch; 600 / 3 = 200 epochs; patience 200 // 4
    small = defaults.budget(80, 32)
    assert (small["max_epochs"], small["steps"], small["patience"]) == (200, 600, 50)
    # 40 images: 2 steps an epoch, 300 epochs capped at 200 (400 steps)
    assert (defaults.budget(40, 32)["max_epochs"], defaults.budget(40, 32)["steps"]) == (200, 400)
    # 800 images: 25 steps an epoch, 600 / 25 = 24 epochs; patience max(10, 24 // 4) = 10
    middle = defaults.budget(800, 32)
    assert (middle["max_epochs"], middle["steps"], middle["patience"]) == (24, 600, 10)
    # 60,000 images: 1,875 steps an epoch, the floor of 10 epochs
    assert defaults.budget(60_000, 32)["max_epochs"] == 10
    assert "3 step(s) an epoch" in small["why"] and "200 epochs (600 steps)" in small["why"]


def test_rate_from_the_range_test_curve() -> None:
    lrs = [1e-5 * (1e5) ** (i / 99) for i in range(100)]
    # a curve falling to its lowest at index 70, rising after; the first points (warm-up of the smoothing) lower
    losses = [0.1 if i < 10 else 2.0 - 1.5 * math.exp(-(((i - 70) / 15) ** 2)) for i in range(100)]
    rate = defaults.lowest_loss_rate(lrs, losses)
    assert rate["lowest_loss_lr"] == pytest.approx(lrs[70], rel=1e-2)
    assert rate["lr"] == pytest.approx(lrs[70] / defaults.LR_DIVISOR, rel=1e-2)
    diverged = [float("nan")] * 100
    assert defaults.lowest_loss_rate(lrs, diverged)["lr"] == 1e-3
    low = [2.0] * 10 + [1.0] + [2.0] * 89  # lowest at 1e-5 · 10^(50/99): clipped up to the floor
    assert defaults.lowest_loss_rate(lrs, low)["lr"] == defaults.LR_FLOOR
    # stopped after 6 points (the smoothed loss reached 4× its lowest at once): the lowest is among them
    stopped = defaults.lowest_loss_rate(lrs[:6], [0.05, 0.04, 0.03, 0.05, 0.1, 0.2])
    assert stopped["lowest_loss_lr"] == pytest.approx(lrs[2], rel=1e-2) and stopped["lr"] == defaults.LR_FLOOR
    assert "risen 4× within its first 6 steps" in stopped["why"]


class RecordRates(L.Callback):
    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.rates.append(max(group.get("initial_lr", group["lr"]) for group in trainer.optimizers[0].param_groups))


def _tensors(n_per_class: int = 12):
    from zoo.data.fashion_mnist import load_split

    images, labels = load_split("test")
    picked = torch.cat([(labels == c).nonzero().flatten()[:n_per_class] for c in (0, 1, 7)])
    return images[picked].unsqueeze(1), torch.tensor([0] * n_per_class + [1] * n_per_class + [2] * n_per_class)


def test_defaults_choose_print_use_and_record(fmnist_root, capsys, monkeypatch) -> None:
    record = RecordRates()
    model = zoo.finetune(
        "lenet5.fmnist", _tensors(), classes=["top", "trouser", "sneaker"], trainer={"callbacks": [record]}
    )
    plan = model.card_metrics["finetune_plan"]
    printed = capsys.readouterr().out
    # 36 images, 20% held out per class: 3 × 10 = 30 train, batch 32 → 1 step an epoch → 600 epochs, capped at 200
    assert plan["max_epochs"] == 200 and plan["early_stopping_patience"] == 50
    assert "LR range test" in plan["lr_from"] and defaults.LR_FLOOR <= plan["lr"] <= defaults.LR_CEIL
    divisor = defaults.IMPRINTED_DIVISOR if plan["head_init"] == "imprint" else defaults.LR_DIVISOR
    expected = min(defaults.LR_CEIL, max(defaults.LR_FLOOR, plan["lowest_loss_lr"] / divisor))
    assert plan["lr"] == pytest.approx(expected, rel=1e-2) and f"/ {divisor:g} within" in plan["lr_from"]
    assert "fine-tuning: max_epochs 200 (30 training images" in printed and f"lr {plan['lr']:g}" in printed
    # the optimizer's rate is the chosen one, from the first training step (the range test's steps not counted)
    assert record.rates and all(rate == pytest.approx(plan["lr"]) for rate in record.rates)
    assert 1 <= model.card_metrics["best_epoch"] <= model.card_metrics["epochs"] <= plan["max_epochs"]


def test_a_given_rate_and_length_are_kept_without_a_range_test(fmnist_root, monkeypatch, capsys) -> None:
    import lightning.pytorch.tuner.lr_finder as finder

    monkeypatch.setattr(finder, "_lr_find", lambda *a, **k: pytest.fail("the range test ran for a given rate"))
    record = RecordRates()
    model = zoo.finetune(
        "lenet5.fmnist", _tensors(4), lr=0.05, max_epochs=2, head_init="random", trainer={"callbacks": [record]}
    )
    plan = model.card_metrics["finetune_plan"]
    assert {k: plan[k] for k in ("max_epochs", "max_epochs_from", "lr", "lr_from")} == {
        "max_epochs": 2,
        "max_epochs_from": "given",
        "lr": 0.05,
        "lr_from": "given",
    }
    assert plan["head_init"] == "random"  # asked: a new head as the network drew it, and no range test for it
    assert record.rates == [pytest.approx(0.05)] * 2
    assert "max_epochs 2 (given); lr 0.05 (given)" in capsys.readouterr().out
    for bad in ("fast", -1.0, 0):
        with pytest.raises(zoo.errors.InvalidValueError, match="lr must be"):
            zoo.finetune("lenet5.fmnist", _tensors(4), lr=bad)


NAMES3 = ["top", "trouser", "sneaker"]


def test_the_imprinted_head_is_the_nearest_class_mean_by_hand() -> None:
    """Its logits are -‖f − μ_c‖² / 2σ² up to a per-image constant (σ² the pooled within-class variance), so it
    predicts each image's nearest class mean; a class without images keeps its row."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % 3
    features = torch.randn(60, 5, generator=generator) + 2.0 * torch.randn(3, 5, generator=generator)[labels]
    head = torch.nn.Linear(5, 4)
    untouched = head.weight[3].clone()
    defaults.imprint(head, features, labels)
    means = torch.stack([features[labels == c].mean(0) for c in range(3)])
    distances = torch.cdist(features, means) ** 2
    variance = torch.cat([features[labels == c] - means[c] for c in range(3)]).pow(2).mean()
    with torch.no_grad():
        logits = head(features)
    assert torch.equal(logits[:, :3].argmax(1), distances.argmin(1))
    shift = logits[:, :3] + distances / (2 * variance)
    torch.testing.assert_close(shift, shift[:, :1].expand(-1, 3), atol=1e-4, rtol=1e-4)
    assert torch.equal(head.weight[3], untouched)


def test_a_new_head_starts_imprinted_and_random_is_kept_when_asked(fmnist_root, capsys) -> None:
    """At a rate too small to move anything, the imprinted head already classifies the training images (three
    garments the features know); the network's random head does not (seed 1: at seed 0, the weights' own, the
    random head would replay the pretraining's first head, whose first rows are these classes' neighbours)."""
    images, labels = _tensors()
    accuracies = {}
    for head_init in ("imprint", "random"):
        model = zoo.finetune(
            "lenet5.fmnist", (images, labels), head_init=head_init, classes=NAMES3, max_epochs=1, lr=1e-12, seed=1
        )
        with torch.no_grad():
            accuracies[head_init] = float((model(images.float() / 255).argmax(1) == labels).float().mean())
        assert model.card_metrics["finetune_plan"]["head_init"] == head_init
    assert accuracies["imprint"] >= 0.9 and accuracies["random"] <= 0.7, accuracies
    assert "fine-tuning: head imprinted: the nearest class mean of" in capsys.readouterr().out
    with pytest.raises(zoo.errors.InvalidValueError, match="head_init must be one of auto, imprint, random"):
        zoo.finetune("lenet5.fmnist", (images, labels), head_init="zeros")


def test_every_process_starts_from_process_zeros_imprinted_head() -> None:
    """Under DDP the model is wrapped before fit starts and processes share gradients only: the imprinted head is
    broadcast from process 0 (here a stand-in strategy whose process 0 holds another head)."""
    from zoo.finetune_defaults import FinetuneDefaults

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    net.get_classifier = lambda: net[1]
    theirs = {"weight": torch.full((3, 4), 7.0), "bias": torch.zeros(3)}
    sent = []
    strategy = SimpleNamespace(broadcast=lambda obj, src: sent.append((sorted(obj), src)) or theirs)
    batches = [(torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2]))]
    trainer = SimpleNamespace(
        strategy=strategy, is_global_zero=False, datamodule=SimpleNamespace(train_dataloader=lambda: batches)
    )
    module = _Module(net=net, task="classification", training=True, device=torch.device("cpu"), head_is_new=True)
    chosen = FinetuneDefaults(head_init="imprint")
    chosen._start_head(trainer, module)
    assert chosen.plan["head_init"] == "imprint" and sent == [(["bias", "weight"], 0)]
    assert torch.equal(net[1].weight, theirs["weight"])


def test_auto_keeps_the_imprinted_head_only_when_its_range_test_bottoms_out_early() -> None:
    """``head_init="auto"``: the imprinted head stays when the range test's lowest loss is at a rate of at most
    ``HEAD_KEEP_LR``; above it (or with no finite loss) the drawn head's exact weights are put back."""
    from zoo.finetune_defaults import HEAD_KEEP_LR, FinetuneDefaults

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    net.get_classifier = lambda: net[1]
    drawn = {k: v.clone() for k, v in net[1].state_dict().items()}
    batches = [(torch.randn(6, 4) + torch.eye(3, 4).repeat(2, 1) * 5, torch.tensor([0, 1, 2, 0, 1, 2]))]
    trainer = SimpleNamespace(
        strategy=SimpleNamespace(broadcast=lambda obj, src: obj),
        is_global_zero=True,
        datamodule=SimpleNamespace(train_dataloader=lambda: batches),
    )
    module = _Module(net=net, task="classification", training=True, device=torch.device("cpu"), head_is_new=True)
    for lowest, kept in ((HEAD_KEEP_LR, True), (HEAD_KEEP_LR * 1.01, False), (None, False)):
        net[1].load_state_dict(drawn)
        chosen = FinetuneDefaults(head_init="auto")
        saved = chosen._start_head(trainer, module)
        assert all(torch.equal(saved[k], drawn[k]) for k in drawn)  # what would be put back
        imprinted = {k: v.clone() for k, v in net[1].state_dict().items()}
        assert not torch.equal(imprinted["weight"], drawn["weight"])
        plan = chosen._keep_or_redraw(trainer, module, saved, {} if lowest is None else {"lowest_loss_lr": lowest})
        now = net[1].state_dict()
        assert plan["head_init"] == ("imprint" if kept else "random"), lowest
        assert all(torch.equal(now[k], (imprinted if kept else drawn)[k]) for k in drawn), lowest
        assert "the imprinted start's LR range test" in plan["head_init_from"]


def test_auto_imprints_garments_and_keeps_the_drawn_head_for_digits(fmnist_root) -> None:
    """End to end on the shipped LeNet-5 at a rate too small to move anything: on three garments (classes its
    features know) ``auto`` keeps the imprinted head, which already classifies them; on handwritten digits it
    puts back the drawn head: the same head a ``head_init="random"`` run ends with."""
    from sklearn.datasets import load_digits

    images, labels = _tensors()
    model = zoo.finetune("lenet5.fmnist", (images, labels), classes=NAMES3, max_epochs=1, lr=1e-12, seed=1)
    assert model.card_metrics["finetune_plan"]["head_init"] == "imprint"
    with torch.no_grad():
        assert float((model(images.float() / 255).argmax(1) == labels).float().mean()) >= 0.9
    digits = load_digits()
    x = torch.nn.functional.interpolate(torch.tensor(digits.images[:200], dtype=torch.float32)[:, None], size=28)
    data = ((x * 255 / 16).round().byte(), torch.tensor(digits.target[:200]))
    heads = {}
    for head_init in ("auto", "random"):
        tuned = zoo.finetune("lenet5.fmnist", data, head_init=head_init, max_epochs=1, lr=1e-12, seed=1)
        heads[head_init] = tuned.net.get_classifier().state_dict()
        assert tuned.card_metrics["finetune_plan"]["head_init"] == "random", head_init
    for name, value in heads["random"].items():
        torch.testing.assert_close(heads["auto"][name], value, atol=1e-8, rtol=0)


class _Module(SimpleNamespace):
    """A stand-in LightningModule: calling it runs its network; eval() and train() do nothing."""

    def __call__(self, x):
        return self.net(x)

    def eval(self) -> None:
        pass

    def train(self, mode: bool = True) -> None:
        pass


def test_ties_go_to_the_later_epoch() -> None:
    checkpoint = LatestBest(monitor="val_acc", mode="max", save_top_k=1)
    checkpoint.best_k_models = {"epoch=0.ckpt": torch.tensor(0.75)}
    checkpoint.kth_best_model_path = "epoch=0.ckpt"
    one = SimpleNamespace(strategy=SimpleNamespace(reduce_boolean_decision=lambda decision, all=True: decision))
    assert checkpoint.check_monitor_top_k(one, torch.tensor(0.75))
    assert checkpoint.check_monitor_top_k(one, torch.tensor(0.80))
    assert not checkpoint.check_monitor_top_k(one, torch.tensor(0.70))
    stopper = KeepBestEarlyStopping("val_acc", patience=3, mode="max", min_delta=-1e-7)
    stopper.best_score = torch.tensor(0.75)
    assert stopper._evaluate_stopping_criteria(torch.tensor(0.75))[0] is False and stopper.wait_count == 0


def test_a_checkpoint_and_early_stopping_told_to_watch_the_loss() -> None:
    """``monitor_instead`` before the first validation: the checkpoints and early stopping that watched
    ``val_acc`` now keep the lower loss, a tie not being better (the earlier epoch stays); others are left alone,
    and a checkpoint already saved refuses the change."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from zoo.callbacks import monitor_instead

    checkpoint, plain = LatestBest(monitor="val_acc", mode="max", save_top_k=1), ModelCheckpoint(monitor="val_acc")
    last, stopper = (
        ModelCheckpoint(monitor=None),
        KeepBestEarlyStopping("val_acc", patience=3, mode="max", min_delta=-1e-7),
    )
    assert monitor_instead([checkpoint, plain, last, stopper, RecordRates()], "val_acc", "val_loss", "min") == 3
    assert (plain.monitor, plain.mode, last.monitor) == ("val_loss", "min", None)
    one = SimpleNamespace(strategy=SimpleNamespace(reduce_boolean_decision=lambda decision, all=True: decision))
    assert checkpoint.check_monitor_top_k(one, torch.tensor(2.5))  # nothing saved yet: any score is kept
    checkpoint.best_k_models = {"epoch=0.ckpt": torch.tensor(2.5)}
    checkpoint.kth_best_model_path, checkpoint.kth_value = "epoch=0.ckpt", torch.tensor(2.5)
    assert checkpoint.check_monitor_top_k(one, torch.tensor(2.4))
    assert not checkpoint.check_monitor_top_k(one, torch.tensor(2.5))
    assert not checkpoint.check_monitor_top_k(one, torch.tensor(2.6))
    with pytest.raises(RuntimeError, match="before its first checkpoint"):
        monitor_instead([checkpoint], "val_loss", "val_acc", "max")
    assert stopper.monitor == "val_loss" and stopper._evaluate_stopping_criteria(torch.tensor(2.5))[0] is False
    assert stopper.best_score == 2.5 and stopper.wait_count == 0
    assert stopper._evaluate_stopping_criteria(torch.tensor(2.5))[0] is False and stopper.wait_count == 1
    assert stopper._evaluate_stopping_criteria(torch.tensor(2.0))[0] is False and stopper.best_score == 2.0


class RecordValidation(L.Callback):
    def __init__(self) -> None:
        self.scores: list[tuple[float, float]] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:  # not the card's validation after fit
            self.scores.append(
                (float(trainer.callback_metrics["val_loss"]), float(trainer.callback_metrics["val_acc"]))
            )


def test_a_kept_imprinted_head_keeps_the_epoch_of_lowest_validation_loss(fmnist_root) -> None:
    """With the budget, an imprinted head's run keeps the weights of its lowest validation loss (the card's best
    epoch, read from the losses a callback logged every epoch) and stops ``patience`` epochs after it; the weights
    it hands back score that loss again. Asked for the drawn head, the run keeps its best accuracy instead."""
    record = RecordValidation()
    model = zoo.finetune(
        "lenet5.fmnist", _tensors(), classes=NAMES3, head_init="imprint", seed=1, trainer={"callbacks": [record]}
    )
    plan, losses = model.card_metrics["finetune_plan"], [loss for loss, _ in record.scores]
    lowest = min(range(len(losses)), key=losses.__getitem__)  # the first epoch of the lowest loss
    assert plan["best_epoch_by"] == "the lowest validation loss (an imprinted head)"
    assert model.card_metrics["best_epoch"] == lowest + 1
    assert len(losses) == min(plan["max_epochs"], lowest + 1 + plan["early_stopping_patience"])
    assert model.card_metrics["val_loss"] == pytest.approx(losses[lowest], rel=1e-4)
    record = RecordValidation()
    drawn = zoo.finetune(
        "lenet5.fmnist", _tensors(), classes=NAMES3, head_init="random", seed=1, trainer={"callbacks": [record]}
    )
    accuracies = [acc for _, acc in record.scores]
    assert "best_epoch_by" not in drawn.card_metrics["finetune_plan"]
    assert accuracies[drawn.card_metrics["best_epoch"] - 1] == max(accuracies)


class RecordWeights(L.Callback):
    """The parameters after every optimizer step of the run (not the range test's), as a flat vector."""

    def __init__(self) -> None:
        self.steps: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append(torch.cat([p.detach().flatten().clone() for p in pl_module.parameters()]))


def test_with_the_budget_a_classifier_keeps_a_moving_average_of_its_weights(fmnist_root) -> None:
    """The weights handed back are the exponential moving average, worked here from the weights after each step
    (the first step's weights, then ``a ← d·a + (1 − d)·w``), at the last step of the card's best epoch; the plan
    says so. A given length, or an averaging of the caller's own, adds none."""
    from zoo.callbacks import EMA

    record = RecordWeights()
    model = zoo.finetune(
        "lenet5.fmnist", _tensors(), classes=NAMES3, head_init="random", seed=2, trainer={"callbacks": [record]}
    )
    plan, best = model.card_metrics["finetune_plan"], model.card_metrics["best_epoch"]
    assert plan["weights_averaged"] == (
        "weights averaged: EMA (decay 0.99: about the last 100 steps), validated, kept and tested"
    )
    decay, average = defaults.AVERAGE_DECAY, record.steps[0]
    steps = len(record.steps) // model.card_metrics["epochs"]  # 30 training images, batch 32: one step an epoch
    assert steps * model.card_metrics["epochs"] == len(record.steps) == model.card_metrics["epochs"]
    for weights in record.steps[1 : best * steps]:
        average = decay * average + (1 - decay) * weights
    handed = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.allclose(handed, average, atol=1e-5)
    assert not torch.allclose(handed, record.steps[best * steps - 1], atol=1e-3)  # not the raw weights of that step
    given = zoo.finetune("lenet5.fmnist", _tensors(4), max_epochs=2, lr=1e-3, head_init="random")
    assert "weights_averaged" not in given.card_metrics["finetune_plan"]
    own = EMA(decay=0.5)
    mine = zoo.finetune("lenet5.fmnist", _tensors(4), lr=1e-3, head_init="random", trainer={"callbacks": [own]})
    assert mine.card_metrics["finetune_plan"]["weights_averaged"].startswith("weights averaged: EMA (decay 0.5")
    # which runs average: a classifier with the budget and no averaging of its own; not a detector (not measured)
    from lightning.pytorch.callbacks import StochasticWeightAveraging

    from zoo.task_descriptions import get_task

    classifier = get_task("classification")
    added = defaults.averaging(classifier, True, [])
    assert len(added) == 1 and isinstance(added[0], EMA) and added[0].decay == 0.99
    assert defaults.averaging(classifier, False, []) == []
    assert defaults.averaging(classifier, True, [StochasticWeightAveraging(swa_lrs=1e-3)]) == []
    assert defaults.averaging(get_task("detection"), True, []) == []


def test_the_command_chooses_too(fmnist_root, tmp_path: Path, monkeypatch, capsys) -> None:
    from PIL import Image

    from zoo.cli import main
    from zoo.cli.finetune import _averages_given, _lr_option

    images, labels = _tensors(5)
    for i, (image, label) in enumerate(zip(images, labels)):
        (tmp_path / "pics" / f"c{int(label)}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy()).save(tmp_path / "pics" / f"c{int(label)}" / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    main(["finetune", "--model", "lenet5.fmnist", "--data", "pics", "-o", "out", "--trainer.max_epochs", "1"])
    plan = json.loads((tmp_path / "out" / "metrics.json").read_text())["finetune_plan"]
    assert plan["max_epochs"] == 1 and plan["max_epochs_from"] == "given" and "LR range test" in plan["lr_from"]
    assert "weights_averaged" not in plan  # a given length: no average added
    assert "fine-tuning: max_epochs 1 (given); lr" in capsys.readouterr().out
    assert (
        plan["head_init"] in ("imprint", "random") and "the imprinted start's LR range test" in plan["head_init_from"]
    )
    main(["finetune", "lenet5.fmnist", "--data", "pics", "-o", "imprinted", "--head-init", "imprint", "--lr", "1e-3"])
    metrics = json.loads((tmp_path / "imprinted" / "metrics.json").read_text())
    plan = metrics["finetune_plan"]
    assert plan["head_init"] == "imprint" and "nearest class mean of 12 training images" in plan["head_init_from"]
    # with the budget, the command's own checkpoint and early stopping keep the lowest validation loss too: the
    # weights handed back stopped the run `patience` epochs later
    assert plan["best_epoch_by"] == "the lowest validation loss (an imprinted head)"
    assert metrics["epochs"] in (metrics["best_epoch"] + plan["early_stopping_patience"], plan["max_epochs"])
    assert plan["weights_averaged"].startswith("weights averaged: EMA (decay 0.99")  # as zoo.finetune's
    assert _averages_given(["--trainer.callbacks+=zoo.callbacks.EMA"]) and not _averages_given(["--model.lr=1"])
    recipe = tmp_path / "averaged.yaml"
    recipe.write_text("trainer:\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.EMAWeightAveraging\n")
    assert _averages_given(["--config", str(recipe)]) and _averages_given([f"--config={recipe}"])
    assert _lr_option("3e-3", []) == "0.003" and _lr_option(None, ["--model.lr", "0.1"]) == "given"
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  init_args:\n    lr: 0.2\n")
    assert _lr_option(None, ["--config", str(recipe)]) == "given" and _lr_option(None, []) == "auto"
    with pytest.raises(zoo.errors.ZooError, match="--lr must be a positive number or auto"):
        _lr_option("fast", [])


def test_repeated_range_tests_see_other_batches_and_leave_the_run_as_it_was(fmnist_root) -> None:
    """``_range_test(draws=3)`` (experiments/finetune_head_draws.py): the first draw is the single test the defaults
    run, the later ones other curves; the weights and the random state after it are those before it."""
    from zoo.finetune_defaults import FinetuneDefaults

    seen = {}

    class Probe(L.Callback):
        def on_fit_start(self, trainer, pl_module) -> None:
            before = {k: v.clone() for k, v in pl_module.state_dict().items()}
            rng = torch.get_rng_state()
            single = FinetuneDefaults._range_test(trainer, pl_module)
            assert torch.equal(torch.get_rng_state(), rng)
            seen["draws"] = FinetuneDefaults._range_test(trainer, pl_module, 3)
            assert torch.equal(torch.get_rng_state(), rng)
            after = pl_module.state_dict()
            assert all(torch.equal(before[k], after[k]) for k in before)
            seen["single"] = single[0]
            raise _Stop  # nothing is trained

    class _Stop(Exception):
        pass

    with pytest.raises(_Stop):
        zoo.finetune(
            "lenet5.fmnist",
            _tensors(),
            classes=["top", "trouser", "sneaker"],
            lr=1e-3,
            max_epochs=1,
            head_init="random",
            trainer={"callbacks": [Probe()]},
        )
    (first, *later), single = seen["draws"], seen["single"]
    assert len(later) == 2 and first[1] == single[1]
    assert all(curve[1] != first[1] for curve in later)
