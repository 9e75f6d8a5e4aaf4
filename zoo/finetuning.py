"""Transfer learning: ``zoo.finetune`` and the fine-tuning strategies, as Lightning callbacks.

    model = zoo.finetune("resnet20.fmnist", "my_photos/", strategy="freeze_unfreeze", max_epochs=10)
    model.save_pretrained("my_model")        # weights, config with the class names, metrics, card

The strategies of the course, on :class:`Finetuning` (a ``BaseFinetuning`` callback), over the stages
each family declares (``net.stages()``: stem, stages/blocks, pre-logits, head), so each works for every
architecture. "The head" is the stages in the family's ``head_stages``: the classifier, or a detector's
transformer and heads as well (they learn from the first epoch; only its CNN backbone is frozen or slowed):

* ``linear_probe``: the backbone frozen, its BatchNorm layers in eval mode (their statistics stay the
  pretrained ones); only the new head learns;
* ``full``: everything learns (with ``layer_decay`` < 1: layer-wise learning rates);
* ``freeze_unfreeze``: the head alone for ``unfreeze_epoch`` epochs, then the backbone too, at
  ``backbone_lr_factor`` (default 0.1) of the rate;
* ``gradual``: stages unfrozen one by one from the top, one more every ``epochs_per_stage`` epochs
  (ULMFiT, Howard & Ruder 2018);
* ``layer_decay``: ``full`` with layer-wise decay (``layer_decay=0.7`` unless given).

Learning rates per stage live in the optimizer's parameter groups (:func:`zoo.tasks.optim.stage_param_groups`),
with every parameter in a group from the start: schedulers scale each group's own rate, and a run resumed
with ``ckpt_path`` has the same groups; freezing is ``requires_grad`` (re-applied at every epoch start,
so a resumed run freezes what it should).
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import BaseFinetuning, ModelCheckpoint
from torch import nn

from zoo.callbacks import KeepBestEarlyStopping, use_best_weights
from zoo.errors import InvalidValueError, UnknownArgumentError, ZooError
from zoo.finetune_defaults import MIN_EPOCHS, FinetuneDefaults, averaging
from zoo.layers.network import split_stages
from zoo.tasks.inputs import check_choices, check_numbers

log = logging.getLogger(__name__)
Strategy = Literal["linear_probe", "full", "freeze_unfreeze", "gradual", "layer_decay"]
STRATEGIES: tuple[str, ...] = Strategy.__args__
DEFAULT_LR = {"linear_probe": 1e-2, "freeze_unfreeze": 1e-2, "full": 1e-3, "gradual": 1e-3, "layer_decay": 1e-3}


def strategy_options(strategy: str) -> dict[str, Any]:
    """The task options a strategy fine-tunes with by default (AdamW, cosine; ``zoo finetune`` uses them too)."""
    return {
        "optimizer": "adamw",
        "lr": DEFAULT_LR[strategy],
        "scheduler": "cosine",
        "weight_decay": 0.01,
        **({"layer_decay": 0.7} if strategy == "layer_decay" else {}),
        **({"backbone_lr_factor": 0.1} if strategy == "freeze_unfreeze" else {}),
    }


class Finetuning(BaseFinetuning):
    """Which stages of ``pl_module.net`` learn at each epoch (see the module doc for the strategies).

    Args:
        strategy: ``linear_probe``, ``full``, ``freeze_unfreeze``, ``gradual`` or ``layer_decay``.
        unfreeze_epoch: ``freeze_unfreeze``: the epoch (from 0) at which the backbone starts learning.
        epochs_per_stage: ``gradual``: epochs between two unfrozen stages.
    """

    def __init__(self, strategy: Strategy = "full", unfreeze_epoch: int = 1, epochs_per_stage: int = 1) -> None:
        super().__init__()
        check_choices(**{"fine-tuning strategy": (strategy, Strategy)})
        check_numbers(
            unfreeze_epoch=(unfreeze_epoch, int, 0, None, "the epoch, from 0, at which the backbone starts learning"),
            epochs_per_stage=(epochs_per_stage, int, 1, None, "epochs between two unfrozen stages"),
        )
        self.strategy, self.unfreeze_epoch, self.epochs_per_stage = strategy, unfreeze_epoch, epochs_per_stage

    # ---- what learns when ------------------------------------------------------------------------
    @staticmethod
    def backbone_stages(pl_module: L.LightningModule) -> list[tuple[str, list[nn.Module]]]:
        return split_stages(pl_module.net)[0]

    def frozen_at(self, pl_module: L.LightningModule, epoch: int) -> list[str]:
        """The stages frozen during ``epoch`` (0-based)."""
        names = [name for name, _ in self.backbone_stages(pl_module)]
        if self.strategy == "linear_probe" or (self.strategy == "freeze_unfreeze" and epoch < self.unfreeze_epoch):
            return names
        if self.strategy == "gradual":  # the head alone first, then one more stage from the top each step
            return names[: max(0, len(names) - epoch // self.epochs_per_stage)]
        return []

    def _apply(self, pl_module: L.LightningModule, epoch: int) -> None:
        frozen = set(self.frozen_at(pl_module, epoch))
        for name, modules in self.backbone_stages(pl_module):
            if name in frozen:
                self.freeze(modules, train_bn=False)
            else:
                self.make_trainable(modules)
            # frozen BatchNorm normalises with its pretrained statistics (eval mode); a stage that starts
            # learning gets batch statistics again. Lightning keeps these modes across validation.
            for module in modules:
                for layer in module.modules():
                    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                        layer.train(name not in frozen and pl_module.net.training)

    def freeze_before_training(self, pl_module: L.LightningModule) -> None:
        self._apply(pl_module, 0)

    def finetune_function(self, pl_module: L.LightningModule, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        self._apply(pl_module, epoch)


# ---- zoo.finetune ----------------------------------------------------------------------------------
DATA_OPTIONS = ("batch_size", "val_fraction", "split_seed", "num_workers", "augment", "strict", "cache", "classes")


def finetune(
    source: Any,
    data: Any,
    num_classes: int | None = None,
    strategy: str = "full",
    max_epochs: int | None = None,
    *,
    lr: float | str = "auto",
    head_init: str = "auto",
    unfreeze_epoch: int = 1,
    epochs_per_stage: int = 1,
    seed: int = 0,
    trainer: dict[str, Any] | None = None,
    **options: Any,
) -> Any:
    """Fine-tune ``source`` on ``data``; returns the model in eval mode with its best validation weights.

    Args:
        source: weights (anything :func:`zoo.load` takes) or a zoo LightningModule.
        data: a folder of class sub-folders, a ``path,label`` CSV, ``(images, labels)`` tensors, or a
            LightningDataModule (with ``num_classes``/``class_names``, or ``num_classes=`` given).
        num_classes: default: the classes found in the data. The head is replaced for them (kept when the
            data has exactly the model's classes).
        strategy: see the module doc; ``unfreeze_epoch`` / ``epochs_per_stage`` tune two of them.
        max_epochs: the run's length; default: a budget of optimizer steps suited to the data's size, with
            early stopping and, for a classifier, a moving average of the weights (:mod:`zoo.finetune_defaults`).
        lr: the learning rate; ``"auto"`` (default): Lightning's LR range test on the data.
        head_init: ``"auto"`` (default): a classifier's new head starts as the nearest class mean of the training
            images' features when the LR range test of that start bottoms out at a low rate, else as the network
            drew it; ``"imprint"`` / ``"random"``: always the one or the other (:mod:`zoo.finetune_defaults`).
        seed: the run's seed.
        trainer: more ``lightning.Trainer`` arguments (``accelerator``, ``devices``, ``precision``...).
        **options: data options (``batch_size``, ``val_fraction``, ``num_workers``, ``augment``, ``strict``,
            ``cache``, ``classes``) and task options (``lr``, ``optimizer``, ``weight_decay``, ``scheduler``,
            ``warmup_epochs``, ``layer_decay``, ``backbone_lr_factor``, ``label_smoothing``, ``mixup``, ``in_chans``...).
    """
    from zoo.energy import with_energy_tracker
    from zoo.pretrained import resolve
    from zoo.task_descriptions import get_task
    from zoo.tasks.base import ZooTask

    if max_epochs is not None:
        check_numbers(max_epochs=(max_epochs, int, 1, None, "the number of passes over the training images"))
    if lr != "auto":
        check_numbers(lr=(lr, float, 0, None, 'e.g. 1e-3, or "auto" for the LR range test'))
        if lr == 0:
            raise InvalidValueError('lr must be > 0, got 0 (e.g. 1e-3, or "auto" for the LR range test)')
    callback = Finetuning(strategy, unfreeze_epoch=unfreeze_epoch, epochs_per_stage=epochs_per_stage)
    # what was not given is chosen when fit starts: the step budget (early stopping on), the LR range test and,
    # and a new head's start (built here: an unknown head_init is refused before loading)
    chosen = FinetuneDefaults(lr=lr, budget=max_epochs is None, head_init=head_init)
    record = (
        source.as_record() if isinstance(source, ZooTask) else resolve(source)
    )  # the caller's model stays as it was
    task = options.pop("task", None) or record.task
    description = get_task(task)
    data_options = {k: options.pop(k) for k in list(options) if k in DATA_OPTIONS}
    datamodule = _datamodule(data, data_options, description)
    names = list(getattr(datamodule, "class_names", None) or [])
    classes = num_classes if num_classes is not None else len(names)
    if not classes:
        raise ZooError("the data does not say its classes; pass num_classes=")
    if names and len(names) != classes:
        raise InvalidValueError(
            f"num_classes={classes} but the data has {len(names)} classes ({', '.join(names[:5])}...)"
        )
    task_options = {**strategy_options(strategy), **options, **({"lr": float(lr)} if lr != "auto" else {})}
    base_name = (source.weights_name if isinstance(source, ZooTask) else None) or str(source)
    L.seed_everything(seed, verbose=False)
    # the one path from weights to a model: a new head when the data's classes are not the weights' own
    model = ZooTask.from_record(record, task=task, num_classes=classes, class_names=names or None, **task_options)
    monitor, mode = description.monitor, description.mode
    checkpoint = LatestBest(monitor=monitor, mode=mode, save_top_k=1, filename=description.checkpoint_filename)
    # early stopping: off unless the budget turns it on; a tie is no worse (min_delta < 0), as for the checkpoint
    stopping = KeepBestEarlyStopping(monitor, patience=None, mode=mode, min_delta=-TIE)
    settings = dict(
        max_epochs=max_epochs or MIN_EPOCHS,
        accelerator="auto",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    settings.update(trainer or {})
    given = settings.get("callbacks", [])
    # with the step budget a classifier's run averages its weights (unless given an averaging of its own)
    average = averaging(description, max_epochs is None, given)
    settings["callbacks"] = [callback, checkpoint, stopping, chosen, *average, *given]
    settings["callbacks"] = with_energy_tracker(settings["callbacks"], training_type="fine-tuning")  # zoo.energy
    with tempfile.TemporaryDirectory(prefix="zoo-finetune-") as scratch:
        checkpoint.dirpath = checkpoint.dirpath or scratch  # the best epoch's weights, gone after the run
        run = L.Trainer(**{"default_root_dir": scratch, **settings})  # the LR range test's checkpoint too
        model.train()
        started = time.perf_counter()
        run.fit(model, datamodule=datamodule)
        wall = time.perf_counter() - started
        best = checkpoint.best_model_path
        use_best_weights(run, model, best)  # the best validation weights, not the last (nor an average swapped in)
    model.card_metrics = finetuned_metrics(run, model, datamodule, base_name, strategy, best, wall)
    model.card_metrics["sha256"] = model.weights_sha256()  # these numbers belong to exactly these weights
    BaseFinetuning.make_trainable(model.net)  # handed back whole: nothing left frozen (validate froze it again)
    model.weights_name = f"{model.hparams.model_name}.finetuned"
    return model.eval()


TIE = 1e-7  # scores closer than this are equal


class LatestBest(ModelCheckpoint):
    """The best checkpoint, a tie going to the later epoch: on a small validation set accuracy moves in steps of
    1/N, so a strict comparison keeps the first epoch to reach a score and the training after it is lost."""

    ties_to_later = True  # False: a tie keeps the earlier epoch (zoo.callbacks.monitor_instead sets it)

    def check_monitor_top_k(self, trainer: L.Trainer, current: torch.Tensor | None = None) -> bool:
        if current is not None and self.ties_to_later and self.save_top_k == 1 and self.best_k_models:
            held = self.best_k_models[self.kth_best_model_path]
            if abs(float(current) - float(held)) <= TIE:  # every process decides alike, as Lightning's check does
                return bool(trainer.strategy.reduce_boolean_decision(True, all=True))
        return super().check_monitor_top_k(trainer, current)


def finetuned_metrics(
    trainer: L.Trainer, model: Any, datamodule: Any, source: str, strategy: str, best: str | None, wall: float
) -> dict[str, Any]:
    """``metrics.json`` of fine-tuned weights: validated again (best weights loaded), with their origin."""
    from zoo.energy import energy_of
    from zoo.loggers import hardware

    results = trainer.validate(model, datamodule=datamodule, verbose=False)
    if not results:  # a datamodule without a validation split: nothing says which weights are best
        raise ZooError("the data has no validation images, so fine-tuned weights cannot be scored; hold some out")
    val, monitor = results[0], model.description.monitor
    return {
        "dataset": getattr(datamodule, "dataset_name", type(datamodule).__name__),
        monitor: val.get(monitor),
        "val_loss": val.get("val_loss"),
        "val_samples": len(datamodule.val_dataloader().dataset),
        **({"val_classes_without_images": empty} if (empty := getattr(datamodule, "val_empty_classes", [])) else {}),
        "finetuned_from": source,
        "strategy": strategy,
        "epochs": trainer.current_epoch,
        "best_epoch": _best_epoch(best) or trainer.current_epoch,
        **(
            {"finetune_plan": plans[0]}
            if (plans := [c.plan for c in trainer.callbacks if isinstance(c, FinetuneDefaults)])
            else {}
        ),
        "wall_time_s": round(wall, 1),
        "hardware": hardware(),
        **energy_of(trainer),  # codecarbon's energy and CO2 of the fit (zoo.energy)
        "license": (model.card_metrics or {}).get("license", "apache-2.0"),
        "date": time.strftime("%Y-%m-%d"),
    }


def _best_epoch(path: str | None) -> int | None:
    import re

    match = re.search(r"epoch=(\d+)", Path(path).name) if path else None
    return int(match.group(1)) + 1 if match else None


def _datamodule(data: Any, options: dict[str, Any], description: Any) -> Any:
    """The user's data as a LightningDataModule, as the task's description reads it."""
    if isinstance(data, L.LightningDataModule):
        if options:
            raise UnknownArgumentError(
                f"{', '.join(options)} apply to image folders and CSV files, not to a datamodule"
            )
        return data
    return description.datamodule(data, **options)
