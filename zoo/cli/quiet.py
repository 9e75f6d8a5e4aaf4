"""Lightning's chatter off around the zoo's answers; real warnings stay.

Lightning prints a tip about its cloud logger, its hardware summary ("GPU available: ..."), and
deprecation notes of its own internals (``_pytree``'s ``LeafSpec``, the ``on_after_batch_transfer``
hook every zoo task overrides on purpose). None of it is the user's business. Training commands keep
the hardware summary and the seed line (they describe the run); the one-line commands drop them too.
Warnings about the user's own settings (Lightning's or PyTorch's) are not touched.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator

# warnings about the internals of Lightning, PyTorch and the zoo, never about the user's input
CHATTER_WARNINGS = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"You have overridden `on_after_batch_transfer` in `LightningModule`",
    r"LightningCLI's args parameter",
)
# lines Lightning logs at INFO that no zoo command needs: its tips, and the LR finder's own temporary
# checkpoint (saved and restored by Tuner.lr_find; a user's --ckpt_path was read with weights_only=True first)
CHATTER_LINES = re.compile(r"💡 Tip|litlogger|LitLogger|`weights_only` was not set|\.lr_find_[\w-]+\.ckpt")
# the run's description: kept for training, dropped around a one-line answer
RUN_LINES = re.compile(r"^(GPU|TPU|HPU|IPU) available|^Seed set to|^`Trainer\(|^LOCAL_RANK|^Trainer already configured")
# what Lightning says of the few steps a tool (lr-find, overfit-batch) runs for its answer, which says it better
TOOL_LINES = re.compile(
    r"^Loading `train_dataloader` to estimate|^`Trainer.fit` stopped: `max_steps=|^Failed to compute suggestion"
)
# warnings about settings a tool makes itself (overfit-batch sets overfit_batches), not the user
TOOL_WARNINGS = (r"You requested to overfit but enabled",)
# a logger's filter sees only the records made at that logger, so the emitting loggers are named
LIGHTNING_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning_utilities.core.rank_zero",
    "lightning.fabric.utilities.seed",
    "lightning.pytorch.accelerators.cuda",
    "lightning.pytorch",
    "lightning.fabric",
    "lightning.pytorch.tuner.lr_finder",
    "lightning.pytorch.trainer.connectors.checkpoint_connector",
)


class _DropChatter(logging.Filter):
    def __init__(self, training: bool) -> None:
        super().__init__()
        self.training = training

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if CHATTER_LINES.search(text):
            return False
        if self.training:
            return True
        return not TOOL_LINES.search(text) and (record.levelno >= logging.WARNING or not RUN_LINES.search(text))


@contextlib.contextmanager
def quiet_lightning(training: bool) -> Iterator[None]:
    """Within the block: Lightning's tips and internal deprecation notes dropped; with ``training=False``
    its run summary too. Filters and warning settings are restored afterwards."""
    drop = _DropChatter(training)
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    for logger in loggers:  # placeholders until Lightning is imported: the same objects then
        logger.addFilter(drop)
    try:
        with warnings.catch_warnings():
            for pattern in CHATTER_WARNINGS + (() if training else TOOL_WARNINGS):
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop)
