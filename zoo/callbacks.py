"""Lightning callbacks for the course's training craft, each one CLI flag away.

* :class:`KeepBestEarlyStopping` — Lightning's ``EarlyStopping`` that also puts back the parameters of
  the best validation epoch when training ends ("keep the best θ"), ``--early_stopping.patience 5``.
* :class:`TrainingHistograms` — per-layer gradient norms and weight/gradient histograms in TensorBoard,
  ``--histograms.every_n_steps 50``.
* :class:`TestReport` — on ``zoo test``: the confusion matrix and the most confident mistakes as PNGs
  in the run's log folder.
* :class:`EMA` — Lightning's ``EMAWeightAveraging`` with torch's exact in-place update, for recipes.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, EMAWeightAveraging
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import grad_norm, rank_zero_only
from torch import Tensor

log = logging.getLogger("zoo")


class EMA(EMAWeightAveraging):
    """An exponential moving average of the weights (and buffers), validated and saved in their place.

    Lightning's ``EMAWeightAveraging`` updates with ``get_ema_avg_fn``, ``decay·avg + (1−decay)·x``, which
    in float32 moves a constant buffer (the task's normalisation mean, 0.28600001 → 0.28600168 over a
    run). This passes torch's ``get_ema_multi_avg_fn`` instead, a foreach ``lerp`` that leaves equal
    values exactly equal and takes one kernel per dtype group. ``AveragedModel`` takes one of the two
    functions, so the parent's ``avg_fn`` is swapped for it before the average model is built (a test fits
    a few steps and checks the constant). Every other argument is Lightning's (``update_starting_at_step``,
    ``use_buffers``, ...).
    """

    def __init__(self, decay: float = 0.999, **kwargs: Any) -> None:
        from torch.optim.swa_utils import get_ema_multi_avg_fn

        super().__init__(decay=decay, **kwargs)
        self.decay = decay
        self._kwargs.pop("avg_fn")
        self._kwargs["multi_avg_fn"] = get_ema_multi_avg_fn(decay)


class KeepBestEarlyStopping(EarlyStopping):
    """Stop when ``monitor`` has not improved for ``patience`` validations, then restore the best weights.

    Lightning's ``EarlyStopping`` decides what "improved" means (``mode``, ``min_delta``); each time it
    records a new best score this callback keeps a CPU copy of the module's state, and loads it back when
    training ends, whether it stopped early or ran out of epochs. The copy lives in memory (one extra
    set of weights), so it holds for every strategy and needs no checkpoint on the same metric.

    Args:
        patience: validations without improvement before stopping; ``None`` (the CLI default) turns the
            callback off, so ``--early_stopping.patience N`` alone turns it on.
        restore_best: load the best weights back at the end of training.
        Other arguments: see ``lightning.pytorch.callbacks.EarlyStopping``.

    After fit: ``best_epoch`` (0-based) and ``best_score`` say what was restored.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int | None = None,
        mode: str = "min",
        min_delta: float = 0.0,
        restore_best: bool = True,
        verbose: bool = False,
        strict: bool = True,
        check_finite: bool = True,
    ) -> None:
        super().__init__(
            monitor=monitor,
            patience=patience or 0,
            mode=mode,
            min_delta=min_delta,
            verbose=verbose,
            strict=strict,
            check_finite=check_finite,
        )
        self.enabled = patience is not None
        self.restore_best = restore_best
        self.best_epoch: int | None = None
        self._best_state: dict[str, Tensor] | None = None
        self._kept_score: Tensor | None = None

    def _keep_if_better(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        improved = torch.isfinite(self.best_score) and (
            self._kept_score is None or not torch.equal(self.best_score, self._kept_score)
        )
        if improved:
            self._kept_score = self.best_score.clone()
            self.best_epoch = trainer.current_epoch
            self._best_state = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.enabled:
            super().on_train_epoch_end(trainer, pl_module)
            self._keep_if_better(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.enabled:
            super().on_validation_end(trainer, pl_module)
            self._keep_if_better(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not (self.enabled and self.restore_best):
            return
        if self._best_state is None:
            log.warning("early stopping: no finite %s was recorded, the final weights are kept", self.monitor)
            return
        pl_module.load_state_dict(self._best_state)
        stopped = f"stopped after epoch {self.stopped_epoch + 1}" if self.stopped_epoch else "ran every epoch"
        if trainer.is_global_zero:
            log.info(
                "early stopping: %s; restored the weights of epoch %d (%s %.4f)",
                stopped,
                self.best_epoch + 1,
                self.monitor,
                float(self._kept_score),
            )


def monitor_instead(callbacks: list[Callback], old: str, monitor: str, mode: str) -> int:
    """Point the best-weights checkpoints and the early stopping among ``callbacks`` that watch ``old`` at
    ``monitor`` (``mode``: ``"min"`` or ``"max"``) instead, before any validation has been scored: a tie is no
    improvement (the earlier epoch stays), nothing is kept yet. Returns how many were changed."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    changed = 0
    for callback in callbacks:
        if getattr(callback, "monitor", None) != old:
            continue
        if isinstance(callback, ModelCheckpoint):
            if callback.best_k_models:
                raise RuntimeError("a checkpoint's monitor can change only before its first checkpoint")
            callback.monitor, callback.mode = monitor, mode
            callback.kth_value = torch.tensor(torch.inf if mode == "min" else -torch.inf)
            if hasattr(callback, "ties_to_later"):
                callback.ties_to_later = False
        elif isinstance(callback, EarlyStopping):
            callback.monitor, callback.mode, callback.min_delta = monitor, mode, 0.0
            callback.best_score = torch.tensor(torch.inf if mode == "min" else -torch.inf)
            if isinstance(callback, KeepBestEarlyStopping):
                callback._kept_score, callback.best_epoch, callback._best_state = None, None, None
        else:
            continue
        changed += 1
    return changed


class TrainingHistograms(Callback):
    """Watch gradients and weights in TensorBoard: ``tensorboard --logdir runs``.

    Every ``every_n_steps`` optimizer steps (before the step, after gradient accumulation, before
    clipping): the 2-norm of each parameter's gradient (``grad_norm/<layer>.<param>`` scalars, from
    Lightning's ``grad_norm``) and histograms of each parameter's values (``weights/...``) and gradients
    (``gradients/...``). The total gradient norm is also logged as ``grad_norm`` to every logger (CSV
    included), so ``zoo plot`` and the progress bar see it. ``None`` turns the callback off.
    """

    def __init__(self, every_n_steps: int | None = None) -> None:
        self.every_n_steps = every_n_steps
        self._warned = False

    def _tensorboard(self, trainer: L.Trainer) -> Any:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                return logger.experiment
        if not self._warned:
            log.warning("--histograms needs a TensorBoardLogger; only the total gradient norm is logged")
            self._warned = True
        return None

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        if not self.every_n_steps or trainer.global_step % self.every_n_steps:
            return
        norms = grad_norm(pl_module, norm_type=2)
        if not norms:
            return
        total = norms.pop("grad_2.0_norm_total")
        pl_module.log("grad_norm", total, on_step=True, on_epoch=False)
        self._write_tensorboard(trainer, pl_module, norms)

    @rank_zero_only
    def _write_tensorboard(self, trainer: L.Trainer, pl_module: L.LightningModule, norms: dict[str, Tensor]) -> None:
        writer = self._tensorboard(trainer)
        if writer is None:
            return
        step = trainer.global_step
        for key, value in norms.items():
            writer.add_scalar("grad_norm/" + key.split("/", 1)[1], value, step)
        for name, param in pl_module.named_parameters():
            writer.add_histogram(f"weights/{name}", param.detach().float().cpu(), step)
            if param.grad is not None:
                writer.add_histogram(f"gradients/{name}", param.grad.detach().float().cpu(), step)


class TestReport(Callback):
    """After a test run: ``confusion_matrix.png`` and ``misclassified.png`` in the run's log folder.

    Needs a task whose ``test_step`` returns the logits and whose ``on_test_epoch_end`` sets
    ``confusion_matrix`` (``ImageClassifier`` does). The grid shows the ``max_images`` most confident
    mistakes: the ones that say most about what the model has learnt wrong. Under DDP the confusion
    matrix covers every process (torchmetrics syncs it), the grid the mistakes seen by process 0.

    Args:
        max_images: size of the grid of mistakes (0: no grid).
        output_dir: where the PNGs go (default: ``trainer.log_dir``, e.g. ``runs/zoo/<version>``).
    """

    def __init__(self, max_images: int = 32, output_dir: str | None = None) -> None:
        self.max_images = max_images
        self.output_dir = output_dir
        self.paths: list[Path] = []
        self._mistakes: list[tuple[float, int, Tensor, int, int]] = []
        self._order = itertools.count()  # ties on confidence are broken by arrival, never by comparing tensors

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mistakes = []
        self.paths = []

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not isinstance(outputs, Tensor) or not self.max_images:
            return
        images, targets = batch[0], batch[1]
        confidence, predicted = outputs.detach().softmax(dim=-1).max(dim=-1)
        for index in (predicted != targets).nonzero().flatten().tolist():
            image = images[index].detach().cpu()
            if image.dtype != torch.uint8:  # the task turned uint8 into [0, 1] floats on the device
                image = image.clamp(0, 1).mul(255).round().to(torch.uint8)
            # a min-heap on confidence keeps the max_images most confident mistakes in bounded memory
            item = (float(confidence[index]), next(self._order), image, int(targets[index]), int(predicted[index]))
            if len(self._mistakes) < self.max_images:
                heapq.heappush(self._mistakes, item)
            else:
                heapq.heappushpop(self._mistakes, item)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # trainer.log_dir broadcasts from rank 0: every rank must ask, or DDP waits forever
        folder = Path(self.output_dir or trainer.log_dir or ".")
        if not trainer.is_global_zero or getattr(pl_module, "confusion_matrix", None) is None:
            return
        from zoo import plots

        names = list(getattr(pl_module, "class_names", None) or range(len(pl_module.confusion_matrix)))
        matrix = pl_module.confusion_matrix
        total = int(matrix.sum())
        accuracy = float(matrix.diag().sum()) / max(1, total)
        what = f"{pl_module.hparams.get('model_name', type(pl_module).__name__)}, {total:,} test images"
        # a later `zoo test` in the run's folder writes beside the run's own report, not over it
        suffix = next(
            s
            for s in itertools.chain([""], (f"-{n}" for n in itertools.count(2)))  # lazily: the count is endless
            if not (folder / f"confusion_matrix{s}.png").exists() and not (folder / f"misclassified{s}.png").exists()
        )
        self.paths = [
            plots.save(
                plots.confusion_figure(matrix, names, f"Confusion matrix: {what}, top-1 {100 * accuracy:.2f}%"),
                folder / f"confusion_matrix{suffix}.png",
            )
        ]
        if self._mistakes:
            mistakes = sorted(self._mistakes, reverse=True)
            figure = plots.misclassified_figure(
                torch.stack([m[2] for m in mistakes]),
                [m[3] for m in mistakes],
                [m[4] for m in mistakes],
                [m[0] for m in mistakes],
                names,
                f"The {len(mistakes)} most confident mistakes ({what}): true class → predicted (confidence)",
            )
            self.paths.append(plots.save(figure, folder / f"misclassified{suffix}.png"))
        for path in self.paths:
            log.info("wrote %s", path)


def use_best_weights(trainer: Any, model: Any, best: str | None) -> None:
    """Put the best checkpoint's weights into ``model`` and stop weight averaging, before the card's test.

    With Lightning's ``WeightAveraging``/``EMAWeightAveraging`` a checkpoint's ``state_dict`` holds the
    averaged weights (the ones validated and monitored), but ``trainer.test(ckpt_path=...)`` would reload
    the raw ones through the callback, and a later ``validate`` would swap in the last average. So the
    averaged state is loaded here and the callbacks leave the trainer: test and card see the same weights.
    """
    import torch
    from lightning.pytorch.callbacks import WeightAveraging

    trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, WeightAveraging)]
    if best:  # the run's own checkpoint, written by this process
        model.load_state_dict(torch.load(best, map_location=model.device, weights_only=False)["state_dict"])
