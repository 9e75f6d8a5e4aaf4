"""What a task is, said once: :class:`TaskDescription`, one per task, and the table that holds them.

Every place that used to know a task's details reads its description instead: the factory (which
LightningModule serves a registry entry), weight folders (the Hub pipeline name in ``config.json``), cards
and tables (the headline score and the card's rows), ``zoo fit`` and ``zoo.finetune`` (the monitored metric
and its mode), ``zoo evaluate`` (what it measures, and on which data by default) and the commands (which
of them apply to a model, and which one to use instead).

A task is one file in ``zoo/tasks/``: its LightningModule and, beside it, its description, registered
with :func:`register_task`. The zoo's own tasks are registered when :mod:`zoo.tasks.registered` is
imported (one line each); :func:`get_task` imports it on first use, the way timm fills its registry by
importing its model modules, so this low layer never imports a task at module level.

A description is data plus three callables for the data a task takes: ``datamodule`` turns a user's
data (a folder, a CSV, tensors, a COCO folder...) into a LightningDataModule to train on,
``eval_datamodule`` makes the same data a test set for a model's classes, and ``default_datamodule`` gives
the dataset ``zoo evaluate`` measures a model on when no data is given, or refuses in one line when the
model's classes are not that dataset's.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import ZooError

BUILTIN_TASKS = "zoo.tasks.registered"  # imported on first lookup: it registers the zoo's own tasks


@dataclass(frozen=True)
class Score:
    """One number a task reports: its ``metrics.json`` key and how it is shown."""

    key: str  # "test_acc", the key in metrics.json and in Trainer.test's results
    label: str  # "top-1", how tables and `zoo evaluate` name it
    percent: bool = True  # shown as 91.84% (True) or as 0.835 (False)

    def format(self, value: float) -> str:
        """``91.84%`` or ``mAP@0.5 0.835``."""
        return f"{100 * value:.2f}%" if self.percent else f"{self.label} {value:.3f}"

    def cell(self, value: float | None) -> str:
        """The value alone, for a table cell: ``91.84%``, ``0.0123`` or ``–`` (not measured)."""
        if value is None:
            return "–"
        return f"{100 * value:.2f}%" if self.percent else f"{value:.4g}"


@dataclass(frozen=True)
class TaskDescription:
    """Everything the rest of the zoo needs to know about a task (see the module doc)."""

    name: str  # the registry's task name: "classification", the `task=` of register_model
    pipeline: str  # the Hub's pipeline tag, written into config.json: "image-classification"
    module: type  # the LightningModule class (a ZooTask subclass)
    title: str  # "image classification", how messages name it
    monitor: str  # the validation metric the best checkpoint is kept by: "val_acc"
    mode: str  # "max" or "min"
    score: Score  # the number cards, tables, `zoo evaluate` and comparisons show
    model_index: tuple[
        str, str
    ]  # the Hub model-index result (type, name) of the card's first row: ("accuracy", "top-1 accuracy")
    card_rows: tuple[Score, ...]  # the rows of the card's table (label: "{test_samples}" is filled in)
    test_metrics: tuple[Score, ...]  # what the test step and `zoo evaluate` measure, besides test_loss
    data: tuple[str, ...]  # the data it takes, in words: ("class folders", "CSV", "tensors")
    commands: tuple[str, ...]  # the commands that apply to its models: ("classify", "predict", ...)
    data_class: str = (
        ""  # the datamodule recipes and `zoo finetune --data` use: "zoo.data.folders.ImageFolderDataModule"
    )
    data_arg: str = "path"  # its argument that takes the user's data path
    usage: str = ""  # the card's "Use" line after zoo.load; {shape} is the input shape ("1, 28, 28")
    datamodule: Callable[..., Any] | None = None  # (data, **options) -> LightningDataModule to train on
    eval_datamodule: Callable[..., Any] | None = None  # (data, model, batch_size) -> the user's test data
    default_datamodule: Callable[..., Any] | None = None  # (model, root, batch_size) -> the default test data
    aliases: tuple[str, ...] = field(default=())  # other names users type: ("multi-label",)
    model_index_scale: float = 100.0  # the model-index value is the first row's number times this (100: percent)
    # a fine-tuning run with the step budget validates, keeps and tests an exponential moving average of its weights
    # (zoo.finetune_defaults.averaging): measured on classification alone (docs/finetuning.md)
    finetune_average: bool = False
    # `zoo classify`'s answer: (model, images, top_k) -> [(label, probability), ...] per image; None: the top-k
    classify: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("max", "min"):
            raise ValueError(f"task {self.name}: mode must be 'max' or 'min', got {self.mode!r}")

    @property
    def checkpoint_filename(self) -> str:
        """Lightning's ``ModelCheckpoint`` file name for the best checkpoint by this task's metric."""
        return "best-{epoch:02d}-{" + self.monitor + ":.4f}"

    def result_line(self, result: dict[str, Any]) -> str:
        """``test top-1 91.55%, top-5 99.74%``: the test metrics of an evaluation, as ``zoo evaluate`` prints them."""
        shown = [
            f"{s.label} {100 * result[s.key]:.2f}%" if s.percent else f"{s.label} {result[s.key]:.4g}"
            for s in self.test_metrics
            if result.get(s.key) is not None
        ]
        return "test " + ", ".join(shown)

    def better(self, new: float, old: float) -> bool:
        """Whether score ``new`` beats ``old`` in this task's direction."""
        return new > old if self.mode == "max" else new < old

    def require(self, command: str, model_name: str) -> None:
        """Refuse ``zoo <command>`` for a model of this task in one line, naming the command that applies."""
        if command in self.commands:
            return
        instead = next((c for c in self.commands if c in COMMAND_KINDS.get(command, ())), None)
        hint = f"use `zoo {instead}`" if instead else f"its commands are: {', '.join(self.commands)}"
        article = "an" if self.title[:1] in "aeiou" else "a"
        raise ZooError(f"zoo {command} does not apply to {model_name}, {article} {self.title} model; {hint}")


# commands that answer the same question for different tasks: the one a refusal points to
COMMAND_KINDS: dict[str, tuple[str, ...]] = {
    "classify": ("detect", "segment", "tag", "predict"),
    "predict": ("detect", "segment", "classify"),
    "detect": ("classify", "predict", "segment"),
    "attention": (),
}

_TASKS: dict[str, TaskDescription] = {}


def register_task(description: TaskDescription) -> TaskDescription:
    """Add a task to the table (its name, pipeline tag and aliases must be new); returns it."""
    for key in (description.name, description.pipeline, *description.aliases):
        held = _TASKS.get(key)
        if held is not None and held.module is not description.module:
            raise ZooError(f"task name {key!r} is taken by {held.name}; give the new task another name")
    for key in (description.name, description.pipeline, *description.aliases):
        _TASKS[key] = description
    return description


def _load_builtin() -> None:
    importlib.import_module(BUILTIN_TASKS)


def get_task(name: str) -> TaskDescription:
    """The description of a task, by its name, its Hub pipeline tag or an alias; a one-line error otherwise."""
    if name not in _TASKS:
        _load_builtin()
    if name not in _TASKS:
        import difflib

        close = difflib.get_close_matches(str(name), list_tasks(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ZooError(f"unknown task {name!r}; {hint}the zoo has: {', '.join(list_tasks())}")
    return _TASKS[name]


def list_tasks() -> list[str]:
    """The registered tasks' names."""
    _load_builtin()
    return sorted({d.name for d in _TASKS.values()})


def descriptions() -> list[TaskDescription]:
    """Every registered description, once each."""
    return [get_task(name) for name in list_tasks()]


def score_of(metrics: dict[str, Any]) -> tuple[Score, float] | None:
    """The score a ``metrics.json`` holds, from whichever task measured it (``None``: nothing measured)."""
    for description in descriptions():
        value = metrics.get(description.score.key)
        if value is not None:
            return description.score, float(value)
    return None
