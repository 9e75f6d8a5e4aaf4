"""Probes of ``zoo.finetune``'s default rules (issue 36): each patches one rule of ``zoo.finetune_defaults`` (or
what it reads) for the runs of ``experiments/finetune_defaults.py --variant NAME --what defaults --output
docs/finetune_probes.json``, kept apart from the shipped rules' runs. ``docs/finetuning.md`` gives their
numbers, and which was adopted."""

from __future__ import annotations

import contextlib

# each probe gives the patches (target → new value) of its rule
PROBES = {
    # twice the step budget and the epoch cap (a drawn head's run often has its best epoch last)
    "budget1200": lambda: {"zoo.finetune_defaults.STEP_BUDGET": 1200, "zoo.finetune_defaults.MAX_EPOCHS": 400},
    # the best epoch (checkpoint and early stopping alike): the lowest validation loss, not the highest accuracy,
    # for every run (the rule adopted is this for a kept imprinted head alone: zoo.finetune_defaults)
    "val_loss_monitor": lambda: _val_loss_monitor(),
    # an exponential moving average of the weights (zoo.callbacks.EMA, every step, decay 0.99: a horizon of 100 steps,
    # a sixth of the step budget): validated, kept and tested are the averaged weights. Adopted for classifiers
    # (zoo.finetune_defaults.averaging), whose runs it now leaves as the rule makes them
    "ema": lambda: _ema(0.99),
}


@contextlib.contextmanager
def probe(variant: str | None):
    """The patches of ``PROBES[variant]``, for the duration of one run (nothing for other variants)."""
    from unittest import mock

    with contextlib.ExitStack() as stack:
        for target, new in PROBES[variant]().items() if variant in PROBES else ():
            stack.enter_context(mock.patch(target, new))
        yield


def _val_loss_monitor() -> dict:
    """The patch of the ``val_loss_monitor`` probe: fine-tuning a classifier monitors ``val_loss`` (lowest best)."""
    import dataclasses

    from zoo import task_descriptions

    get_task = task_descriptions.get_task

    def by_loss(name):
        found = get_task(name)
        return dataclasses.replace(found, monitor="val_loss", mode="min") if found.name == "classification" else found

    return {"zoo.task_descriptions.get_task": by_loss}


def _ema(decay: float) -> dict:
    """The patch of the ``ema`` probe: ``zoo.finetune``'s callbacks get :class:`zoo.callbacks.EMA` at ``decay``, unless
    they average already (the rule adopted adds the same)."""
    from zoo import energy
    from zoo.callbacks import EMA
    from zoo.finetune_defaults import AVERAGING

    tracked = energy.with_energy_tracker

    def with_ema(callbacks, **kwargs):
        averaged = any(isinstance(c, AVERAGING) for c in callbacks)
        return tracked([*callbacks, *([] if averaged else [EMA(decay=decay)])], **kwargs)

    return {"zoo.energy.with_energy_tracker": with_ema}
