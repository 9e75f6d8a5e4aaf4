"""The model registry: names → builders and their metadata, ``name.tag`` parsing, close-name hints.

A family file registers each builder with :func:`register_model`, passing its metadata explicitly
(no module inspection). Weights are named ``arch.tag`` like timm (``lenet5.fmnist``).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zoo.errors import UnknownModelError

if TYPE_CHECKING:
    from torch import nn

    from zoo.weights import Weights


@dataclass(frozen=True)
class ModelEntry:
    """What the zoo knows about one architecture before any weight is loaded."""

    name: str
    builder: Callable[..., nn.Module]
    family: str
    input_size: tuple[int, int, int]  # (C, H, W) the builder's defaults expect
    num_classes: int  # default head size
    num_params: int  # at the default num_classes / in_chans: tests recompute it
    fixed_input_size: bool = False  # True when a flatten→linear head pins H and W
    task: str = "classification"
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    paper: str = ""
    weights: dict[str, Weights] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)  # family facts `zoo list` shows side by side (EfficientNet's φ)


_MODELS: dict[str, ModelEntry] = {}
_FAMILY_MODULES = ("lenet", "alexnet", "vgg", "resnet", "efficientnet")


def register_model(
    *,
    family: str,
    input_size: tuple[int, int, int],
    num_classes: int,
    num_params: int,
    weights: Sequence[Weights] = (),
    **meta: Any,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a builder ``fn(*, num_classes, in_chans, **kw) -> nn.Module`` under its name."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = builder.__name__
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        tags = {w.tag: w for w in weights}
        _MODELS[name] = ModelEntry(
            name=name,
            builder=builder,
            family=family,
            input_size=tuple(input_size),
            num_classes=num_classes,
            num_params=num_params,
            weights=tags,
            **meta,
        )
        return builder

    return wrap


def _ensure_registered() -> None:
    for module in _FAMILY_MODULES:
        importlib.import_module(f"zoo.models.{module}")


def _suggest(name: str) -> str:
    candidates = list(_MODELS) + [f"{m}.{t}" for m, e in _MODELS.items() for t in e.weights]
    close = difflib.get_close_matches(name, candidates, n=4, cutoff=0.5)
    hint = f"closest: {', '.join(close)}" if close else "see `zoo list`"
    return hint


def split_name(name: str) -> tuple[str, str | None]:
    """``"lenet5.fmnist"`` → ``("lenet5", "fmnist")``; ``"lenet5"`` → ``("lenet5", None)``."""
    arch, _, tag = name.partition(".")
    return arch, (tag or None)


def get_entry(name: str) -> ModelEntry:
    """The entry of an architecture name (a ``.tag`` suffix is ignored)."""
    _ensure_registered()
    arch, _ = split_name(name)
    if arch not in _MODELS:
        raise UnknownModelError(f"unknown model {name!r}; {_suggest(name)}")
    return _MODELS[arch]


def get_weights(name: str) -> Weights:
    """The weight metadata of ``arch.tag``; ``arch`` alone picks its first registered tag."""
    entry = get_entry(name)
    _, tag = split_name(name)
    if not entry.weights:
        raise UnknownModelError(f"model {entry.name!r} has no pretrained weights; {_suggest(name)}")
    if tag is None:
        return next(iter(entry.weights.values()))
    if tag not in entry.weights:
        raise UnknownModelError(
            f"unknown weights {name!r}; {entry.name} has: "
            + ", ".join(f"{entry.name}.{t}" for t in entry.weights)
        )
    return entry.weights[tag]


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Registered architecture names matching a shell-style ``pattern`` (``"res*"``).

    ``pretrained=True`` keeps only architectures that have weights.
    """
    _ensure_registered()
    return sorted(
        name
        for name, entry in _MODELS.items()
        if fnmatch.fnmatch(name, pattern) and (entry.weights or not pretrained)
    )


def list_weights(pattern: str = "*") -> list[str]:
    """Every ``arch.tag`` whose architecture matches ``pattern``."""
    return [f"{name}.{tag}" for name in list_models(pattern) for tag in _MODELS[name].weights]


def build_net(name: str, *, num_classes: int | None = None, in_chans: int | None = None, **kwargs: Any) -> nn.Module:
    """The plain ``nn.Module`` of an architecture, randomly initialised."""
    entry = get_entry(name)
    return entry.builder(
        num_classes=entry.num_classes if num_classes is None else num_classes,
        in_chans=entry.input_size[0] if in_chans is None else in_chans,
        **kwargs,
    )


def create(name: str, **kwargs: Any):
    """A randomly initialised LightningModule for ``name``.

    Keyword arguments the task knows (``num_classes``, ``in_chans``, ``lr``, ``optimizer``...) go to the
    task; the rest go to the architecture's builder (``model_kwargs``).
    """
    entry = get_entry(name)
    from zoo.tasks import task_class

    kwargs.setdefault("num_classes", entry.num_classes)  # the task's own default (10) fits only small-image models
    return task_class(entry.task).from_registry(entry.name, **kwargs)
