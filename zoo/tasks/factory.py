"""From a name or a source to the right task: ``create`` (random init) and ``load`` (with weights).

The registry entry names its task (``classification``...); :func:`task_class` maps it to the
LightningModule subclass of :class:`~zoo.tasks.base.ZooTask` that serves it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo import pretrained
from zoo.errors import ZooError
from zoo.registry import full_name, get_entry
from zoo.tasks.base import ZooTask
from zoo.tasks.classification import ImageClassifier
from zoo.tasks.detection import ObjectDetector

TASKS: dict[str, type[ZooTask]] = {ImageClassifier.task: ImageClassifier, ObjectDetector.task: ObjectDetector}


def task_class(task: str) -> type[ZooTask]:
    """The LightningModule class of a registry entry's ``task``."""
    if task not in TASKS:
        raise ZooError(f"unknown task {task!r}; the zoo has: {', '.join(TASKS)}")
    return TASKS[task]


def create(name: str, pretrained: bool | str = False, **kwargs: Any) -> ZooTask:
    """A randomly initialised LightningModule for ``name`` (``pretrained=True``: its first registered weights,
    ``pretrained="tag"``: those weights, as timm's ``create_model``).

    Keyword arguments the task knows (``num_classes``, ``in_chans``, ``lr``, ``optimizer``...) go to the
    task; the rest go to the architecture's builder (``model_kwargs``; timm's ``drop_rate`` and
    ``drop_path_rate`` name the family's dropout and stochastic depth); any other is a one-line error.
    """
    entry = get_entry(name)
    if pretrained:
        tag = pretrained if isinstance(pretrained, str) else None
        return load(full_name(f"{entry.name}.{tag}" if tag else entry.name), **kwargs)
    kwargs.setdefault("num_classes", entry.num_classes)  # the task's own default (10) fits only small-image models
    return task_class(entry.task).from_registry(entry.name, **kwargs)


def load(source: str | Path, *, file: str | Path | None = None, arch: str | None = None, **overrides: Any) -> ZooTask:
    """A model with trained weights, in eval mode, from any source :func:`zoo.pretrained.resolve` takes.

    ``file=PATH`` loads registered weights ``source`` from a local copy instead of downloading them
    (converted when needed; a user's file is not held to the published hash); ``arch=`` names the
    architecture of a lone weight file. Other keyword arguments go to :func:`create`: a different
    ``num_classes`` keeps the backbone and gives a fresh head, a different ``in_chans`` adapts the first
    convolution.
    """
    record = pretrained.resolve(source, file=file, arch=arch)
    return task_class(record.task).from_record(record, **overrides)
