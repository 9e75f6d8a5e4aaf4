"""The training loss, logged the cheap way (mixed into every zoo task).

Each ``LightningModule.log`` call costs a fixed amount of Python bookkeeping (about half a millisecond
here), which is a few percent of a small network's training step. So a training step only adds the
detached loss, and its parts, to running sums kept on the device (no host sync), and calls ``log``

* on the steps the loggers write (every ``Trainer(log_every_n_steps=...)``, 50 by default, and every
  step under ``fast_dev_run``): ``train_loss_step``, which is also the loss the progress bar shows;
* once at the end of the epoch: ``train_loss_epoch`` and ``train_<part>``, the means over the epoch's
  samples, averaged over processes under DDP.

The logs keep the names and the rows that ``self.log(..., on_step=True, on_epoch=True)`` gave.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor


def _loggers_write_now(trainer: Any) -> bool:
    """Whether the loggers write step metrics after this training step (Lightning's own test)."""
    try:
        return bool(trainer.fast_dev_run) or bool(trainer._logger_connector.should_update_logs)
    except AttributeError:  # another Lightning version: log every step, as self.log would
        return True


class TrainingLog:
    """``log_training(loss, batch_size, parts)`` in ``training_step``; the epoch means follow by themselves."""

    def on_train_epoch_start(self) -> None:
        self._train_sums: dict[str, Tensor] = {}
        self._train_count = 0

    def log_training(self, loss: Tensor, batch_size: int, parts: dict[str, Tensor] | None = None) -> None:
        if not hasattr(self, "_train_sums"):  # a loop that skipped on_train_epoch_start
            self.on_train_epoch_start()
        for key, value in {"loss": loss, **(parts or {})}.items():
            weighted = value.detach() * batch_size
            self._train_sums[key] = self._train_sums[key] + weighted if key in self._train_sums else weighted
        self._train_count += batch_size
        if _loggers_write_now(self.trainer):
            self.log(
                "train_loss_step", loss.detach(), prog_bar=True, on_step=True, on_epoch=False, batch_size=batch_size
            )

    def on_train_epoch_end(self) -> None:
        sums, count = getattr(self, "_train_sums", {}), getattr(self, "_train_count", 0)
        for key, total in sums.items():
            name = "train_loss_epoch" if key == "loss" else f"train_{key}"
            self.log(name, total / count, prog_bar=key == "loss", sync_dist=True)
        self._train_sums, self._train_count = {}, 0
