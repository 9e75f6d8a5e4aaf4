"""From any source to a task with its network: :func:`build`, the one path, and ``create``/``load`` on it.

Sources: an architecture name (random weights), ``arch.tag``, a weight folder or file, a Hub id, a
Lightning checkpoint, a URL (all through :func:`zoo.pretrained.resolve`), or a live zoo model (through
its :meth:`~zoo.tasks.base.ZooTask.as_record`). Every one becomes a :class:`~zoo.pretrained.Pretrained`
record and then a model in :meth:`ZooTask.from_record <zoo.tasks.base.ZooTask.from_record>`, so options are
checked once, in the same way for every source, and one rule says when the head is replaced. The task's
LightningModule comes from its :class:`~zoo.task_descriptions.TaskDescription`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo import pretrained
from zoo.errors import UnknownModelError
from zoo.registry import full_name, get_entry, resolved_prefix, split_name
from zoo.task_descriptions import get_task
from zoo.tasks.base import ZooTask


def task_class(task: str) -> type[ZooTask]:
    """The LightningModule class of a task (its name or Hub pipeline tag)."""
    return get_task(task).module


def is_architecture(source: Any) -> bool:
    """Whether ``source`` names a registered architecture (random weights), not weights."""
    if not isinstance(source, str) or "\\" in source or ("/" in source and resolved_prefix(source) is None):
        return False  # a path, not a name ("timm/convnext_tiny" is a name)
    arch, tag = split_name(source)
    if tag is not None or Path(source).expanduser().exists():
        return False
    try:
        get_entry(arch)
    except UnknownModelError:
        return False
    return True


def build(
    source: str | Path | ZooTask,
    *,
    task: str | None = None,
    file: str | Path | None = None,
    arch: str | None = None,
    hub_options: dict[str, Any] | None = None,
    **options: Any,
) -> ZooTask:
    """A task with its network from any source (see the module doc); options as :func:`zoo.create` takes.

    An architecture name gives random weights (``num_classes`` defaults to the entry's); a live model is
    copied, never changed; anything else is loaded in eval mode, like :func:`zoo.load`.
    """
    if isinstance(source, ZooTask):
        return ZooTask.from_record(source.as_record(), task=task, **options)
    if is_architecture(source):
        entry = get_entry(str(source))
        if task in (None, entry.task):  # the entry's head size (1000 for ImageNet sizes); another task has its own
            options.setdefault("num_classes", entry.num_classes)
        return task_class(task or entry.task).from_registry(entry.name, **options)
    record = pretrained.resolve(source, file=file, arch=arch, hub_options=hub_options)
    return ZooTask.from_record(record, task=task, **options)


def create(name: str, pretrained: bool | str = False, **kwargs: Any) -> ZooTask:
    """A randomly initialised LightningModule for ``name`` (``pretrained=True``: its first registered weights,
    ``pretrained="tag"``: those weights, as timm's ``create_model``).

    Keyword arguments the task knows (``num_classes``, ``in_chans``, ``lr``, ``optimizer``...) go to the
    task; the rest go to the architecture's builder (``model_kwargs``; timm's ``drop_rate`` and
    ``drop_path_rate`` name the family's dropout and stochastic depth); any other is a one-line error.
    ``task=`` serves the architecture with another task's head.
    """
    entry = get_entry(name)
    if pretrained:
        tag = pretrained if isinstance(pretrained, str) else None
        return build(full_name(f"{entry.name}.{tag}" if tag else entry.name), **kwargs)
    return build(entry.name, **kwargs)


def load(source: str | Path, *, file: str | Path | None = None, arch: str | None = None, **overrides: Any) -> ZooTask:
    """A model with trained weights, in eval mode, from any source :func:`zoo.pretrained.resolve` takes.

    ``file=PATH`` loads registered weights ``source`` from a local copy instead of downloading them
    (converted when needed; a user's file is not held to the published hash); ``arch=`` names the
    architecture of a lone weight file. Other keyword arguments go to :func:`create`: a different
    ``num_classes`` keeps the backbone and gives a fresh head, a different ``in_chans`` adapts the first
    convolution.
    """
    task = overrides.pop("task", None)
    record = pretrained.resolve(source, file=file, arch=arch)  # "lenet5": its first registered weights
    return ZooTask.from_record(record, task=task, **overrides)
