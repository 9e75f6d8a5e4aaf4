"""What ``zoo.finetune`` chooses when it is not told: the run's length, its new head's start and its learning rate.

* **Length.** With ``max_epochs`` not given, the run gets a budget of optimizer steps rather than a fixed
  number of epochs: ``STEP_BUDGET`` steps, as epochs (at least ``MIN_EPOCHS``, at most ``MAX_EPOCHS``),
  with early stopping after ``patience`` validations without improvement, keeping the best validation
  weights. A small set (80 images, batch 32: 3 steps an epoch) gets ``MAX_EPOCHS`` epochs; a large one
  ``MIN_EPOCHS``. The numbers come from the runs of ``experiments/finetune_defaults.py``
  (``docs/finetune_defaults.json``).
* **Head.** A new classification head (the data's classes are not the weights') starts, with
  ``head_init="auto"`` (the default), as the nearest-class-mean classifier of the training images' pretrained
  features (:func:`imprint`; "weight imprinting", Qi et al. 2018) when that start's LR range test has its lowest
  loss at a rate of at most ``HEAD_KEEP_LR``: the features already tell the classes apart, and training them
  harder only raises the loss. Otherwise the features must move, and the head goes back to the network's draw
  (its own range test then chooses the rate). With a rate given, the range test runs for this choice alone.
  ``"imprint"`` / ``"random"`` always take the one or the other.
  Measured in ``experiments/finetune_defaults.py`` (``docs/finetune_defaults.json``): always imprinting gains
  on the weights' own classes and loses elsewhere; the imprinted start's lowest-loss rate was at most 0.01 on
  every set of the first kind and at least 0.035 on every set of the second, at three seeds each. With the
  step budget, a kept imprinted head's run keeps (and stops by) the epoch of its lowest validation loss rather
  than of its highest accuracy (``FinetuneDefaults._best_by_loss``; ``docs/finetuning.md`` has the runs).
* **Weight average.** With the step budget, a task whose description says so (``finetune_average``: a
  classifier) validates, keeps and tests an exponential moving average of its weights (:class:`zoo.callbacks.EMA`
  at ``AVERAGE_DECAY``, every step) rather than the weights of one step: on a validation set of a few dozen images
  the best epoch of the raw weights is partly chance. A run given its own averaging keeps it (:func:`averaging`).
* **Learning rate.** ``lr="auto"`` runs Lightning's LR range test (``Tuner.lr_find``: the rate grows
  exponentially from ``1e-5`` to ``1`` over ``LR_STEPS`` training steps, the weights restored after) and
  takes the rate of the lowest smoothed loss divided by ``LR_DIVISOR`` (Lightning's own suggestion, the
  steepest descent, lands at 1e-4 or below on small sets: its first points are noise), clipped to ``[LR_FLOOR, LR_CEIL]``.
  A number is used as given.

:func:`plan` returns the choices with the reasons, printed by the run and kept in ``metrics.json``
(``finetune_plan``).
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, StochasticWeightAveraging, WeightAveraging
from torch import nn

from zoo.callbacks import KeepBestEarlyStopping, monitor_instead
from zoo.errors import InvalidValueError

STEP_BUDGET = 600  # optimizer steps a fine-tuning run without max_epochs aims at
# at most 200 epochs: a set of 80 training images (3 steps an epoch) gets its 600 steps. The cap was 100 (300 steps)
# until LeNet-5 on fmnistinv10 sat 1.2 points under the grid's best over seeds 1-3 (62.5%, docs/finetune_defaults.json
# at 0cdbf4a); with the other 300 steps it is 64.8%, and the sets built after it check it (docs/finetuning.md)
MIN_EPOCHS, MAX_EPOCHS = 10, 200
LR_STEPS, LR_MIN, LR_MAX = 100, 1e-5, 1.0  # the range test
# the rate of the lowest (smoothed) loss is divided by this: the best grid rate sat 10-35× below it on the sets
# it was chosen on (docs/finetune_defaults.json); 3 (fastai's valley region) cost LeNet 5-24 points on them.
# On held-out sets it is within a point of the grid's best or ahead, except ResNet-20 on classes its weights
# never saw (fmnist5to9: 1.4 below, best at /9): the range test's minimum does not see how far the features
# must move (8.9e-3 there and on fmnist10, whose best rate is 3× lower), so no divisor serves both.
LR_DIVISOR = 30.0
# an imprinted head that is kept starts near its lowest loss: the features need a nudge, not a move. On the tuning
# sets its grid (docs/finetune_defaults.json) was best at the lowest rate tried, 1e-4, 60-90x under the range
# test's minimum for LeNet-5 (ResNet-20's minimum sits so low that /30 is already at the floor), and fell with
# every step up; /30 cost LeNet-5 0.4-1.0 point there
IMPRINTED_DIVISOR = 100.0
# the weight average of a budgeted run: a horizon of 1 / (1 - decay) = 100 steps, a sixth of STEP_BUDGET. Probed
# (experiments/finetune_probes.py "ema") on every pair at seeds 1-3 against the runs without it (docs/finetuning.md)
AVERAGE_DECAY = 0.99
SKIP_BEGIN = 10  # the first points of the smoothed curve are its warm-up, not the loss
LR_FLOOR, LR_CEIL = 1e-4, 0.1


def train_count(datamodule: Any) -> int | None:
    """Training images of a zoo datamodule before its setup (None when it does not say)."""
    splits = getattr(datamodule, "splits", None) or {}
    if splits.get("train"):
        return len(splits["train"])
    tensors = getattr(datamodule, "_tensors", None) or {}
    if "train" in tensors:
        return len(tensors["train"][1])
    count = getattr(datamodule, "train_count", None)
    return count() if callable(count) else None


def budget(images: int | None, batch_size: int) -> dict[str, Any]:
    """``max_epochs`` and early-stopping ``patience`` for ``images`` training images (see the module doc)."""
    if not images:
        return {"max_epochs": MIN_EPOCHS, "patience": None, "why": "the datamodule does not say its size"}
    per_epoch = math.ceil(images / batch_size)
    epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(STEP_BUDGET / per_epoch)))
    patience = max(10, epochs // 4)
    why = (
        f"{images} training images, batch {batch_size}: {per_epoch} step(s) an epoch; a budget of {STEP_BUDGET} "
        f"steps in {MIN_EPOCHS}..{MAX_EPOCHS} epochs gives {epochs} epochs ({epochs * per_epoch} steps), "
        f"stopping after {patience} epochs without improvement (best validation weights kept)"
    )
    return {"max_epochs": epochs, "patience": patience, "steps": epochs * per_epoch, "why": why}


def lowest_loss_rate(lrs: list[float], losses: list[float], divisor: float = LR_DIVISOR) -> dict[str, Any]:
    """The rate chosen from an LR range test's curve (see the module doc), with the reason. A curve that stopped
    within its first ``SKIP_BEGIN`` points (the loss rose 4× at once: an imprinted head starts near its lowest
    loss) has its lowest there."""
    finite = [(loss, rate) for loss, rate in zip(losses, lrs) if math.isfinite(loss)]
    usable = [(loss, rate) for loss, rate in list(zip(losses, lrs))[SKIP_BEGIN:] if math.isfinite(loss)]
    if not finite:
        return {"lr": 1e-3, "why": "the LR range test's loss was never finite; 1e-3 used"}
    lowest = min(usable or finite)[1]
    lr = min(LR_CEIL, max(LR_FLOOR, lowest / divisor))
    stopped = "" if usable else f", the loss having risen 4× within its first {len(lrs)} steps"
    why = (
        f"LR range test ({len(lrs)} steps, {LR_MIN:g} to {LR_MAX:g}): lowest smoothed loss at {lowest:.3g}{stopped}, "
        f"/ {divisor:g} within [{LR_FLOOR:g}, {LR_CEIL:g}]"
    )
    return {"lr": float(f"{lr:.3g}"), "lowest_loss_lr": float(f"{lowest:.3g}"), "why": why}


AVERAGING = (WeightAveraging, StochasticWeightAveraging)  # Lightning's callbacks that average a run's weights


def averaging(description: Any, budget: bool, callbacks: list) -> list[Callback]:
    """The weight average a fine-tuning run adds to ``callbacks`` (module doc): :class:`zoo.callbacks.EMA` at
    ``AVERAGE_DECAY`` when the run has the step budget, its task's ``description`` averages, and none of
    ``callbacks`` averages already; else nothing."""
    from zoo.callbacks import EMA

    given = any(isinstance(c, AVERAGING) for c in callbacks)
    return [EMA(decay=AVERAGE_DECAY)] if budget and description.finetune_average and not given else []


class FinetuneDefaults(Callback):
    """Choose what was not given when ``fit`` starts: ``max_epochs`` from the step budget (and the patience of
    the trainer's :class:`~zoo.callbacks.KeepBestEarlyStopping`, turned on), a new head's start, and ``lr`` from
    the LR range test.

    ``zoo.finetune`` and ``zoo finetune`` add it; after fit, ``plan`` holds the choices and their reasons
    (the card's ``finetune_plan``).

    Args:
        lr: ``"auto"`` (the range test) or the rate given (kept, recorded).
        budget: choose ``max_epochs`` (``False``: the trainer's is kept, recorded as given).
        head_init: ``"auto"``: a classifier's new head starts as the nearest class mean of the training images'
            features (:func:`imprint`) when that start's range test bottoms out at ``HEAD_KEEP_LR`` or below, else
            as the network drew it (module doc); ``"imprint"`` / ``"random"``: always the one or the other.
    """

    def __init__(self, lr: float | str = "auto", budget: bool = True, head_init: str = "auto") -> None:
        super().__init__()
        if head_init not in HEAD_INITS:
            raise InvalidValueError(f"head_init must be one of {', '.join(HEAD_INITS)}, got {head_init!r}")
        self.lr, self.budget, self.head_init = lr, budget, head_init
        self.plan: dict[str, Any] = {}
        self._imprinted: dict[str, Any] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if self.budget:
            data = trainer.datamodule
            batch = getattr(getattr(data, "hparams", None), "batch_size", None) or 32
            length = budget(train_count(data), batch)
            trainer.fit_loop.max_epochs = length["max_epochs"]
            for stopper in trainer.callbacks:
                if isinstance(stopper, KeepBestEarlyStopping) and not stopper.enabled and length["patience"]:
                    stopper.enabled, stopper.patience = True, length["patience"]
        else:
            length = {"max_epochs": trainer.max_epochs, "patience": None, "why": "given"}
        self.plan = {"max_epochs": length["max_epochs"], "max_epochs_from": length["why"]}
        if length.get("patience"):
            self.plan["early_stopping_patience"] = length["patience"]
        average = _average_of(trainer.callbacks)
        if average:
            self.plan["weights_averaged"] = average

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.fit_loop.restarting:  # a resumed run keeps its checkpoint's head and rate
            rate = {"lr": float(pl_module.hparams.lr), "why": "the checkpoint's"}
        else:
            drawn = self._start_head(trainer, pl_module)
            curve = self._range_test(trainer, pl_module)[0] if self.lr == "auto" or drawn is not None else None
            if drawn is not None:  # "auto": an imprinted start is kept when its range test bottoms out early
                self.plan.update(self._keep_or_redraw(trainer, pl_module, drawn, lowest_loss_rate(*curve)))
                if self.plan["head_init"] == "random" and self.lr == "auto":
                    curve = self._range_test(trainer, pl_module)[0]  # the drawn head's own curve
            imprinted = self.plan.get("head_init") == "imprint"
            if self.budget and imprinted:
                self._best_by_loss(trainer, pl_module.description.monitor)
            if self.lr == "auto":
                rate = lowest_loss_rate(*curve, IMPRINTED_DIVISOR if imprinted else LR_DIVISOR)
                pl_module.hparams.lr = rate["lr"]
                trainer.strategy.setup_optimizers(trainer)  # every group and the schedule at the chosen rate
            else:
                rate = {"lr": float(pl_module.hparams.lr), "why": "given"}
        self.plan.update({k if k != "why" else "lr_from": v for k, v in rate.items()})
        if trainer.is_global_zero:
            averaged = f"; {self.plan['weights_averaged']}" if "weights_averaged" in self.plan else ""
            print(
                f"fine-tuning: max_epochs {self.plan['max_epochs']} ({self.plan['max_epochs_from']}); "
                f"lr {rate['lr']:g} ({rate['why']}){averaged}",
                flush=True,
            )

    def _best_by_loss(self, trainer: L.Trainer, monitor: str) -> None:
        """With the step budget, a kept imprinted head's run keeps (and stops by) the epoch of the lowest validation
        loss, not of the highest accuracy: it starts near its best accuracy, which on a small validation set moves
        in steps of one image and ties often, while the loss, high at the start (the class means' logits are
        overconfident), still tells the epochs apart. A drawn head's run keeps the best accuracy (``monitor``, the
        task's own)."""
        if monitor_instead(trainer.callbacks, monitor, "val_loss", "min"):  # the best-weights checkpoint, stopping
            self.plan["best_epoch_by"] = "the lowest validation loss (an imprinted head)"

    @staticmethod
    def _range_test(trainer: L.Trainer, pl_module: L.LightningModule, draws: int = 1) -> list[tuple[list, list]]:
        """Lightning's LR range test over ``LR_STEPS`` steps (it stops when the smoothed loss reaches 4× its
        lowest), ``draws`` times in a row: the weights are restored after each, the random state after the last,
        so each draw sees other batches and the run itself goes on as without them. Each draw's rates and
        smoothed losses, for :func:`lowest_loss_rate` (divided by ``IMPRINTED_DIVISOR`` for an imprinted head,
        ``LR_DIVISOR`` for a drawn one). The defaults take one draw; ``experiments/finetune_head_draws.py`` more."""
        from lightning.pytorch.tuner.lr_finder import _lr_find
        from lightning.pytorch.utilities.seed import isolate_rng

        epochs, every = trainer.fit_loop.max_epochs, trainer.check_val_every_n_epoch
        trainer.fit_loop.max_epochs = 10_000  # a small set has few batches an epoch: the test spans many
        trainer.check_val_every_n_epoch = 10_000  # and no validation between them: only the training loss counts
        curves = []
        try:
            with isolate_rng():
                for _ in range(draws):
                    finder = _lr_find(
                        trainer,
                        pl_module,
                        min_lr=LR_MIN,
                        max_lr=LR_MAX,
                        num_training=LR_STEPS,
                        update_attr=False,
                    )
                    curves.append((finder.results["lr"], finder.results["loss"]))
        finally:
            trainer.fit_loop.max_epochs, trainer.check_val_every_n_epoch = epochs, every
        return curves

    def _keep_or_redraw(self, trainer, pl_module, drawn: dict[str, torch.Tensor], test: dict) -> dict[str, Any]:
        """``head_init="auto"``: keep the imprinted head when the range test's lowest loss comes at a rate of at
        most ``HEAD_KEEP_LR`` (the features already tell the classes apart: pushing them harder only raises the
        loss), else put the drawn head back (the features must move, and a drawn head moves them further)."""
        lowest = test.get("lowest_loss_lr")
        keep = lowest is not None and lowest <= HEAD_KEEP_LR
        head = pl_module.net.get_classifier()
        if not keep:
            head.load_state_dict(drawn)
        found = f"lowest at {lowest:.3g}" if lowest is not None else "no finite loss"
        why = (
            f"the imprinted start's LR range test: {found}, "
            + (f"at most {HEAD_KEEP_LR:g}: the features already tell the classes apart; " if keep else "")
            + (f"above {HEAD_KEEP_LR:g}: the features must move; " if lowest is not None and not keep else "")
        )
        chosen = self._imprinted if keep else {"head_init": "random", "head_init_from": "the network's own draw"}
        if trainer.is_global_zero:
            print(f"fine-tuning: head {chosen['head_init']} ({why + chosen['head_init_from']})", flush=True)
        return {**chosen, "head_init_from": why + chosen["head_init_from"]}

    def _start_head(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, torch.Tensor] | None:
        """Imprint a new head (a single-label classifier with one linear head) when asked, and record why or why
        not in the plan; ``head_init="auto"`` returns the drawn head's weights, to put back if it is not kept."""
        if not getattr(pl_module, "head_is_new", False):
            return None
        if self.head_init == "random":
            self.plan.update({"head_init": "random", "head_init_from": "the network's own draw"})
            return None
        get = getattr(pl_module.net, "get_classifier", None)
        head = get() if callable(get) else None
        if getattr(pl_module, "task", None) != "classification" or not isinstance(head, nn.Linear):
            self.plan.update(
                {"head_init": "random", "head_init_from": "not a single-label classifier with one linear head"}
            )
            return None
        features, labels = _head_inputs(trainer, pl_module, head)
        if features is None:
            why = "the training batches are not (images, class indices)"
            self.plan.update({"head_init": "random", "head_init_from": why})
            return None
        drawn = {k: v.detach().clone() for k, v in head.state_dict().items()}
        self._imprinted = imprint(head, features, labels)
        # the model is already wrapped for several processes, which share gradients, not weights: every process
        # takes process 0's head (each read the data in its own order, so a large set's first images differ)
        head.load_state_dict(trainer.strategy.broadcast({k: v.cpu() for k, v in head.state_dict().items()}, src=0))
        if self.head_init == "imprint":
            self.plan.update(self._imprinted)
            if trainer.is_global_zero:
                print(f"fine-tuning: head {self._imprinted['head_init_from']}", flush=True)
            return None
        return drawn


def _average_of(callbacks: list) -> str | None:
    """How the run averages its weights, in words (None: it does not)."""
    found = next((c for c in callbacks if isinstance(c, AVERAGING)), None)
    if found is None:
        return None
    decay = getattr(found, "decay", None)  # zoo.callbacks.EMA's
    horizon = f" (decay {decay:g}: about the last {round(1 / (1 - decay))} steps)" if decay and decay < 1 else ""
    return f"weights averaged: {type(found).__name__}{horizon}, validated, kept and tested"


HEAD_INITS = ("auto", "imprint", "random")
HEAD_KEEP_LR = 0.02  # "auto" keeps an imprinted head whose range test bottoms out at or below this rate
IMPRINT_IMAGES = 4096  # training images whose features give the class means (a large set: its first ones)


def _head_inputs(trainer: L.Trainer, pl_module: L.LightningModule, head: nn.Module):
    """The head's inputs and the labels of (up to ``IMPRINT_IMAGES``) training images, in eval mode."""
    seen: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].detach().flatten(1).float()))
    was_training = pl_module.training
    pl_module.eval()
    try:
        with torch.no_grad():
            for batch in trainer.datamodule.train_dataloader():
                images, targets = batch[0], batch[1]
                if not isinstance(targets, torch.Tensor) or targets.ndim != 1 or targets.is_floating_point():
                    return None, None
                pl_module(images.to(pl_module.device))
                labels.append(targets.to(pl_module.device))
                if sum(len(t) for t in labels) >= IMPRINT_IMAGES:
                    break
    finally:
        hook.remove()
        pl_module.train(was_training)
    return (torch.cat(seen), torch.cat(labels)) if labels else (None, None)


@torch.no_grad()
def imprint(head: nn.Linear, features: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Set ``head`` to the nearest-class-mean classifier of ``features``: with ``m`` their mean, ``μ_c`` class
    ``c``'s and ``σ²`` the within-class variance pooled over classes and features, the logits are
    ``−‖f − μ_c‖² / 2σ²`` up to a term shared by the classes, i.e. ``W_c = (μ_c − m)/σ²`` and
    ``b_c = −((μ_c − m)·m + ‖μ_c − m‖²/2)/σ²``. A class without images keeps its row."""
    classes = head.out_features
    present = [c for c in range(classes) if bool((labels == c).any())]
    means = torch.stack([features[labels == c].mean(0) for c in present])
    spread = torch.cat([features[labels == c] - means[i] for i, c in enumerate(present)])
    variance = float(spread.pow(2).mean().clamp_min(1e-6)) if len(spread) > len(present) else 1.0
    center = features.mean(0)
    rows = (means - center) / variance
    bias = -(rows @ center) - 0.5 * (means - center).pow(2).sum(1) / variance
    index = torch.tensor(present, device=head.weight.device)
    head.weight[index] = rows.to(head.weight)
    if head.bias is not None:
        head.bias[index] = bias.to(head.bias)
    missing = classes - len(present)
    return {
        "head_init": "imprint",
        "head_init_from": (
            f"imprinted: the nearest class mean of {len(labels)} training images' features "
            f"(pooled within-class variance {variance:.3g})"
            + (f"; {missing} class(es) without images kept at random" if missing else "")
        ),
    }
