"""From weights to a model, one way: the construction half of :class:`~zoo.tasks.base.ZooTask`.

Mixed into the base. Every source of weights (name, ``arch.tag``, folder, file, checkpoint, Hub id, URL,
or a live model through :meth:`FromWeights.as_record`) arrives here as a :class:`~zoo.pretrained.Pretrained`
record, and :meth:`FromWeights.from_record` builds the model from it: the task from the record (or ``task=``,
through its description), the options checked by the task's own constructor (:meth:`from_registry` routes
them), one rule for a fresh head (:func:`fresh_head_needed`), and :func:`zoo.pretrained.load_net_state` to
load the state. :meth:`from_pretrained` is the same with ``huggingface_hub``'s keyword names.
"""

from __future__ import annotations

import contextlib
import inspect
from pathlib import Path
from typing import Any

from zoo import pretrained
from zoo.errors import InvalidValueError, ZooError
from zoo.registry import check_kwargs, get_entry
from zoo.task_descriptions import get_task


class FromWeights:
    """``task_params``, ``from_registry``, ``from_record``, ``load_record``, ``as_record``, ``from_pretrained``."""

    @classmethod
    def task_params(cls) -> set[str]:
        """The keyword arguments of this task's ``__init__``, its base classes' included."""
        params: set[str] = set()
        for klass in cls.__mro__:
            if "__init__" not in vars(klass) or not issubclass(klass, FromWeights):
                continue
            signature = inspect.signature(klass.__init__).parameters.values()
            params |= {p.name for p in signature if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
            if not any(p.kind is p.VAR_KEYWORD for p in signature):
                break
        return params - {"self"}

    @classmethod
    def from_registry(cls, model_name: str, **kwargs: Any) -> FromWeights:
        """Route ``kwargs``: this task's arguments to the task, the builder's to ``model_kwargs``.

        An argument neither takes is a one-line :class:`~zoo.errors.UnknownArgumentError` naming both lists.
        """
        own = cls.task_params() - {"model_name", "model_kwargs"}
        model_kwargs = dict(kwargs.pop("model_kwargs", None) or {})
        model_kwargs.update({k: kwargs.pop(k) for k in list(kwargs) if k not in own})
        check_kwargs(model_name, model_kwargs, also=own, what=f"{cls.__name__}({model_name!r})")
        with _own_hyperparameters():
            return cls(model_name=model_name, model_kwargs=model_kwargs, **kwargs)

    @classmethod
    def from_record(cls, record: pretrained.Pretrained, *, task: str | None = None, **options: Any) -> FromWeights:
        """The task for a :class:`~zoo.pretrained.Pretrained` record, its network built once, in eval mode.

        The one place weights become a model: :func:`zoo.load`, ``zoo.create(pretrained=)``, ``zoo.backbone``,
        ``zoo.finetune`` (from a name or a live model) and a detector's backbone all end here. On the base class
        the record's task (or ``task=``) picks the LightningModule; on a subclass it must be that task. Options
        are the task's and the builder's, checked by the task as for :func:`zoo.create`; ``num_classes``,
        ``class_names`` or another task give a fresh head (:func:`fresh_head_needed`), ``in_chans`` adapts the
        first convolution.
        """
        wanted = task or (cls.task if cls.task else record.task)
        check_task_switch(record, wanted)
        if cls.task and wanted != cls.task:
            raise ZooError(f"{record.name} would be a {wanted} model; load it with zoo.load, not {cls.__name__}")
        klass = cls if cls.task else get_task(wanted).module
        args = {**record.task_args, **options}
        saved_options = args.pop("task_options", None) or {}  # config.json's task_options: the head's own settings
        if wanted != record.task and "num_classes" not in options:
            args.pop("num_classes", None)  # another task's head: its own default size (a regressor's 1 output)
        fresh = fresh_head_needed(record, wanted, args.get("num_classes"), options.get("class_names"))
        if fresh and "class_names" not in options:
            args["class_names"] = None  # the published names belong to the published head
        if not fresh:
            args = {**saved_options, **args}
        model = klass.from_registry(record.arch, **args)
        model.load_record(record, fresh_head=fresh)
        model.weights_name, model.weights_source, model.card_metrics = record.name, record.source, dict(record.metrics)
        model.preprocessing = dict(record.preprocessing)
        if fresh and model.card_metrics:  # numbers measured for the old head no longer hold
            model.card_metrics = {k: v for k, v in model.card_metrics.items() if k in pretrained.DESCRIPTIVE_METRICS}
        return model.eval()

    def load_record(self, record: pretrained.Pretrained, *, fresh_head: bool) -> None:
        """Load a record's network state into ``.net``: the head kept fresh when ``fresh_head``, the first
        convolution adapted to this model's channels (see :func:`zoo.pretrained.load_net_state`). ``head_is_new``
        says which (fine-tuning starts a new head as the nearest class mean: ``zoo.finetune_defaults``)."""
        self.head_is_new = bool(fresh_head)
        pretrained.load_net_state(
            self.net,
            self.hparams.model_name,
            record.state,
            num_classes=self.hparams.num_classes,
            in_chans=self.input_size[0],
            source_num_classes=record.task_args.get("num_classes"),
            source_in_chans=record.task_args.get("in_chans"),
            label=record.label,
            fresh_head=fresh_head,
        )

    def as_record(self) -> pretrained.Pretrained:
        """This model as the record its saved folder would give: ``zoo.finetune(model)`` builds from it
        exactly as from ``model.save_pretrained(folder)`` then ``zoo.load(folder)``."""
        config = self.model_config(self.weights_name or self.hparams.model_name)
        args = {key: config[key] for key in ("num_classes", "in_chans", "mean", "std", "class_names", "model_kwargs")}
        if "task_options" in config:
            args["task_options"] = dict(config["task_options"])
        return pretrained.Pretrained(
            self.hparams.model_name,
            args,
            {k: v.detach().clone() for k, v in self.net.state_dict().items()},
            config["name"],
            self.weights_source or "a model in memory",
            dict(self.card_metrics or {}),
            label=self.hparams.model_name,
            task=self.task,
            preprocessing=dict(self.preprocessing),
        )

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        force_download: bool = False,
        **overrides: Any,
    ) -> FromWeights:
        """:func:`zoo.load` for this task, with ``huggingface_hub``'s keyword names.

        A bare ``"org/repo"`` (or ``"org/repo@revision"``) that is not a local path means the Hub;
        ``revision`` pins a branch, tag or commit there. ``file=``/``arch=`` and the overrides are
        :func:`zoo.load`'s.
        """
        text = str(source)
        if hub_repo_like(text) and not Path(text).expanduser().exists():
            text = "hf-hub:" + text
        if revision:
            if not text.startswith("hf-hub:"):
                raise InvalidValueError(f"revision= applies to Hub repos; {source!r} is not one")
            text = text.partition("@")[0] + "@" + revision
        options = dict(
            token=token, cache_dir=cache_dir, local_files_only=local_files_only, force_download=force_download
        )
        file, arch = overrides.pop("file", None), overrides.pop("arch", None)
        return cls.from_record(pretrained.resolve(text, file=file, arch=arch, hub_options=options), **overrides)


@contextlib.contextmanager
def _own_hyperparameters():
    """A model built here records its own arguments as ``hparams``. LightningCLI hands the arguments of the
    module it is instantiating to every ``save_hyperparameters`` call through a context variable, so a model
    built inside another one's ``__init__`` (a detector's backbone weights) would otherwise record the
    outer model's arguments as its own."""
    from lightning.pytorch.core.mixins import hparams_mixin

    given = getattr(hparams_mixin, "_given_hyperparameters", None)
    token = given.set(None) if given is not None else None
    try:
        yield
    finally:
        if token is not None:
            given.reset(token)


def fresh_head_needed(
    record: pretrained.Pretrained, task: str, num_classes: int | None, class_names: list[str] | None
) -> bool:
    """The one rule for replacing the head of loaded weights: another task, another number of classes, or
    other class names (even as many as before). Otherwise the weights' own head is kept."""
    if task != record.task:
        return True
    if num_classes is not None and num_classes != record.task_args.get("num_classes"):
        return True
    source_names = record.task_args.get("class_names")
    return bool(class_names) and bool(source_names) and list(class_names) != list(source_names)


def check_task_switch(record: pretrained.Pretrained, task: str) -> None:
    """Weights of one task may start another only from an image classifier (its network is a feature
    extractor with a head); a detector's weights cannot become a classifier, nor the other way."""
    if task == record.task:
        return
    description = get_task(task)
    if record.task != "classification" or get_entry(record.arch).task != "classification":
        raise ZooError(
            f"{record.name} holds {get_task(record.task).title} weights; they cannot start a {description.title} "
            f"model (only image classifiers' weights can start another task)"
        )


def hub_repo_like(text: str) -> bool:
    """``org/name`` or ``org/name@revision``: how the Hub names a repo."""
    from zoo.hub import REPO_ID

    return bool(REPO_ID.fullmatch(text.partition("@")[0]))
