"""The model registry: names → builders and their metadata, weight records, ``name.tag`` parsing, hints.

A leaf: it imports nothing of zoo but ``errors``. A family file (``zoo/models/<family>.py``) registers
each builder with :func:`register_model`, passing its metadata explicitly, and lists its trained
weights in one :func:`weight_table` (like timm's ``default_cfgs``); ``import zoo.models`` registers every
family. Weights are named ``arch.tag`` like timm (``lenet5.fmnist``).
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zoo.errors import InvalidValueError, UnknownArgumentError, UnknownModelError

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Weights:
    """One trained weight of an architecture, listed in its family's weight table.

    Weights trained by a zoo recipe live in ``model_cards/<arch.tag>/``; their numbers (accuracy,
    epochs, hash) are not typed here but read from the card's ``metrics.json``, which the run wrote.
    Weights published elsewhere (torchvision / timm ImageNet files) name where to fetch them, the
    sha256 of the published file, and how to rename its keys into this zoo's module (``convert``).

    Sources, in the order ``zoo.load("arch.tag")`` tries them: the bundled ``model_cards/<arch.tag>/``;
    ``hf_hub_id`` without ``filename``, a hub repo laid out like a card folder; ``url``, or
    ``hf_hub_id`` + ``filename``, one published file passed through ``convert``. Without ``sha256``, a
    torchvision-style file name (``resnet18-f37072fd.pth``) is held to the hash prefix it carries.
    """

    tag: str  # "fmnist" in "lenet5.fmnist"
    dataset: str  # the dataset it was trained and measured on
    recipe: str | None = None  # recipes/<file>.yaml that produced it (zoo-trained weights)
    license: str = "apache-2.0"
    url: str | None = None  # https:// address of a published weight file
    hf_hub_id: str | None = None  # "org/repo" on the Hugging Face Hub (optionally "@revision")
    filename: str | None = None  # one published file inside that hub repo (None: the repo is a card folder)
    sha256: str | None = None  # of the published file, checked before it is used
    origin: str = "zoo"  # whose layout a published file is in ("torchvision"), for messages
    convert: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # published keys → zoo's ``net`` keys
    num_classes: int | None = None  # head size of the published weights (default: the entry's)
    input_size: tuple[int, int, int] | None = None  # (C, H, W) the published weights were trained at
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    class_names: str | None = None  # name of a class list in zoo.data.class_names ("imagenet-1k")
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # how evaluation images were prepared (torchvision's ``weights.transforms()``): resize the short side
    # to ``resize``, centre-crop the input size, with ``interpolation``; no ``resize``: resize to the input size
    resize: int | None = None
    interpolation: str = "bilinear"
    old_tags: tuple[str, ...] = ()  # earlier names of these weights, still loaded with a warning

    def preprocessing(self) -> dict[str, Any]:
        return {"resize": self.resize, "interpolation": self.interpolation} if self.resize else {}


@dataclass(frozen=True)
class ModelEntry:
    """What the zoo knows about one architecture before any weight is loaded."""

    name: str
    builder: Callable[..., nn.Module]
    family: str
    input_size: tuple[int, int, int]  # (C, H, W) the builder's defaults expect
    num_classes: int  # default head size
    first_conv: str = ""  # module name of the first convolution (adapted to other in_chans), like timm's
    classifier: str = ""  # module name of the classification head (replaced for other num_classes)
    fixed_input_size: bool = False  # True when a flatten→linear head pins H and W
    task: str = "classification"
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    paper: str = ""
    weights: dict[str, Weights] = field(default_factory=dict)
    columns: dict[str, str] = field(
        default_factory=dict
    )  # family facts `zoo list` shows side by side (EfficientNet's φ)
    # a count published with the architecture (torchvision's), which tests hold the build to; None: counted
    published_params: int | None = None

    @functools.cached_property
    def num_params(self) -> int:
        """Parameters at the default ``num_classes`` / ``in_chans``.

        The published count where the family has one (torchvision's ImageNet models: the tests build both
        and compare); otherwise counted on the architecture itself, built on the meta device (no memory, no
        initialisation), so that no typed number can drift from the network.
        """
        if self.published_params is not None:
            return self.published_params
        import torch

        with torch.device("meta"):
            net = self.builder(num_classes=self.num_classes, in_chans=self.input_size[0])
        return sum(p.numel() for p in net.parameters())


_MODELS: dict[str, ModelEntry] = {}
_TABLES: list[dict[str, list[Weights]]] = []


def weight_table(table: Mapping[str, Mapping[str, Any]]) -> dict[str, list[Weights]]:
    """A family's weights, ``{"arch.tag": {Weights fields}}`` → ``{arch: [Weights, ...]}`` in table order.

    Pass the result to every :func:`register_model` of the family: each builder takes the rows of its own
    name, so each name is written once, in the table. Rows that name no registered builder are listed
    by :func:`unclaimed_weights` (a test keeps that list empty).
    """
    grouped: dict[str, list[Weights]] = {}
    for name, fields in table.items():
        arch, tag = split_name(name)
        if tag is None:
            raise ValueError(f"weight table key {name!r} must be 'arch.tag'")
        grouped.setdefault(arch, []).append(Weights(tag=tag, **fields))
    _TABLES.append(grouped)
    return grouped


def unclaimed_weights() -> list[str]:
    """``arch.tag`` rows of the weight tables whose architecture was never registered (typos)."""
    return [f"{arch}.{w.tag}" for table in _TABLES for arch, rows in table.items() if arch not in _MODELS for w in rows]


def register_model(
    *,
    family: str,
    input_size: tuple[int, int, int],
    num_classes: int,
    num_params: int | None = None,
    weights: Sequence[Weights] | Mapping[str, Sequence[Weights]] = (),
    **meta: Any,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a builder ``fn(*, num_classes, in_chans, **kw) -> nn.Module`` under its name.

    ``weights``: this builder's weights, or the family's :func:`weight_table` (its rows for this name).
    ``num_params``: only a count published elsewhere (torchvision's); without it the entry counts the
    architecture (:attr:`ModelEntry.num_params`).
    """

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = builder.__name__
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        rows = weights.get(name, ()) if isinstance(weights, Mapping) else weights
        network = _returned_class(builder)
        for attribute in ("first_conv", "classifier"):  # declared once, on the network class
            declared = getattr(network, f"{attribute}_name", None)
            if attribute not in meta and isinstance(declared, str):
                meta[attribute] = declared
        _MODELS[name] = ModelEntry(
            name=name,
            builder=builder,
            family=family,
            input_size=tuple(input_size),
            num_classes=num_classes,
            published_params=num_params,
            weights={w.tag: w for w in rows},
            **meta,
        )
        return builder

    return wrap


def _suggest(name: str, weights_only: bool = False) -> str:
    if not _MODELS:  # the registry is filled by importing the families
        return "no family is registered yet: `import zoo.models` first (zoo.create/zoo.load do it)"
    weights = [f"{m}.{t}" for m, e in _MODELS.items() for t in e.weights]
    close = difflib.get_close_matches(name, weights if weights_only else list(_MODELS) + weights, n=4, cutoff=0.5)
    listing = "`zoo list --pretrained`" if weights_only else "`zoo list`"
    return f"closest{' weights' if weights_only else ''}: {', '.join(close)}" if close else f"see {listing}"


def split_name(name: str) -> tuple[str, str | None]:
    """``"lenet5.fmnist"`` → ``("lenet5", "fmnist")``; ``"lenet5"`` → ``("lenet5", None)``."""
    if not isinstance(name, str):
        raise InvalidValueError(
            f"a model name is a string such as 'lenet5' or 'lenet5.fmnist', got {type(name).__name__} {name!r}"
        )
    arch, _, tag = name.partition(".")
    return arch, (tag or None)


# name prefixes resolved on lookup ("timm/" → timm's catalogue), so that a catalogue of a thousand models
# is not enumerated at import; an entry, once resolved, is kept here and not in ``list_models()``
_RESOLVERS: dict[str, Callable[[str], ModelEntry]] = {}
_RESOLVED: dict[str, ModelEntry] = {}


def register_resolver(prefix: str, resolve: Callable[[str], ModelEntry]) -> None:
    """Names starting with ``prefix`` are entries made by ``resolve(arch)`` on first lookup (it raises
    :class:`UnknownModelError` for a name its catalogue lacks)."""
    _RESOLVERS[prefix] = resolve


def resolved_prefix(name: str) -> str | None:
    """The resolver prefix ``name`` starts with (``"timm/"``), if any: such names contain a ``/`` but are no paths."""
    return next((prefix for prefix in _RESOLVERS if isinstance(name, str) and name.startswith(prefix)), None)


def get_entry(name: str) -> ModelEntry:
    """The entry of an architecture name (a ``.tag`` suffix is ignored)."""
    arch, _ = split_name(name)
    if arch in _MODELS:
        return _MODELS[arch]
    prefix = resolved_prefix(arch)
    if prefix is not None:
        if arch not in _RESOLVED:
            _RESOLVED[arch] = _RESOLVERS[prefix](arch)
        return _RESOLVED[arch]
    raise UnknownModelError(f"unknown model {name!r}; {_suggest(name)}")


def get_weights(name: str) -> Weights:
    """The weight metadata of ``arch.tag``; ``arch`` alone picks its first registered tag."""
    entry = get_entry(name)
    _, tag = split_name(name)
    if not entry.weights:
        raise UnknownModelError(
            f"model {entry.name!r} has no pretrained weights (zoo.create({entry.name!r}) builds it untrained); "
            + _suggest(name, weights_only=True)
        )
    if tag is None:
        return next(iter(entry.weights.values()))
    if tag not in entry.weights:
        renamed = next((w for w in entry.weights.values() if tag in w.old_tags), None)
        if renamed is not None:
            import warnings

            warnings.warn(
                f"{entry.name}.{tag} is now called {entry.name}.{renamed.tag}; the old name will be removed",
                FutureWarning,
                stacklevel=3,
            )
            return renamed
        raise UnknownModelError(
            f"unknown weights {name!r}; {entry.name} has: " + ", ".join(f"{entry.name}.{t}" for t in entry.weights)
        )
    return entry.weights[tag]


def full_name(name: str) -> str:
    """``arch.tag`` of registered weights named ``arch.tag`` or ``arch`` (its first tag)."""
    return f"{get_entry(name).name}.{get_weights(name).tag}"


def _strings(values: Any, option: str) -> list[str]:
    """``values`` as a list of shell-style patterns, or a one-line error (``list_models(5)``)."""
    try:
        items = list(values)
    except TypeError:
        items = [values]
    if not all(isinstance(item, str) for item in items):
        raise InvalidValueError(f"{option} takes a name pattern such as 'res*' (or a list of them), got {values!r}")
    return items


def name_matches(
    name: str,
    has_weights: bool,
    pattern: str | Iterable[str] = "*",
    pretrained: bool = False,
    exclude: Iterable[str] = (),
) -> bool:
    """The rule of :func:`list_models` for one architecture (shared with the catalog ``zoo list`` reads)."""
    patterns = [pattern] if isinstance(pattern, str) else list(_strings(pattern, "pattern"))
    excluded = [exclude] if isinstance(exclude, str) else list(_strings(exclude, "exclude"))
    return (
        any(fnmatch.fnmatch(name, p) for p in patterns)
        and not any(fnmatch.fnmatch(name, p) for p in excluded)
        and (has_weights or not pretrained)
    )


def list_models(pattern: str | Iterable[str] = "*", pretrained: bool = False, exclude: Iterable[str] = ()) -> list[str]:
    """Registered architecture names matching a shell-style ``pattern`` (``"res*"``) or any of several.

    ``pretrained=True`` keeps only architectures that have weights; ``exclude`` drops matching names.
    """
    return sorted(
        name for name, entry in _MODELS.items() if name_matches(name, bool(entry.weights), pattern, pretrained, exclude)
    )


def list_weights(pattern: str | Iterable[str] = "*") -> list[str]:
    """Every ``arch.tag`` whose architecture matches ``pattern``."""
    return [f"{name}.{tag}" for name in list_models(pattern) for tag in _MODELS[name].weights]


def _returned_class(builder: Callable[..., Any]) -> type | None:
    """The class a builder's return annotation names (``def resnet20(**kw) -> ResNet``), if it resolves."""
    try:
        returned = typing.get_type_hints(builder).get("return")
    except Exception:  # an annotation that does not resolve
        return None
    return returned if isinstance(returned, type) else None


def builder_params(name: str) -> set[str] | None:
    """The keyword arguments an architecture's builder takes (``None``: any, it cannot tell).

    A builder ``def resnet20(**kwargs) -> ResNet`` passes its keywords on to the class it returns, so
    that class's ``__init__`` arguments are the builder's too.
    """
    entry = get_entry(name)

    def named(fn: Callable[..., Any]) -> tuple[set[str], bool]:
        params = inspect.signature(fn).parameters.values()
        keep = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"}
        return keep, any(p.kind is p.VAR_KEYWORD for p in params)

    accepted, open_ended = named(entry.builder)
    if open_ended:
        returned = _returned_class(entry.builder)
        if returned is None:  # cannot tell: accept anything
            return None
        more, open_ended = named(returned.__init__)
        accepted |= more
        if open_ended:
            return None
    return accepted - {"num_classes", "in_chans"}


# timm's names for the regularisation every family calls by its own name
TIMM_ALIASES = {"drop_rate": "dropout", "drop_path_rate": "drop_path"}


def with_aliases(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` with timm's ``drop_rate`` / ``drop_path_rate`` renamed to the builder's own argument."""
    accepted = builder_params(name)
    out = dict(kwargs)
    if getattr(get_entry(name).builder, "takes_timm_names", False):  # timm's own networks: its names are theirs
        return out
    for alias, own in TIMM_ALIASES.items():
        if alias in out and (accepted is None or alias not in accepted) and (accepted is None or own in accepted):
            out[own] = out.pop(alias)
    return out


def check_kwargs(name: str, kwargs: Mapping[str, Any], also: Iterable[str] = (), what: str | None = None) -> None:
    """Raise a one-line :class:`UnknownArgumentError` for keywords neither the builder nor ``also`` takes."""
    accepted = builder_params(name)
    if accepted is None:
        return
    accepted |= {alias for alias, own in TIMM_ALIASES.items() if own in accepted}
    accepted |= {"num_classes", "in_chans", *also}
    unknown = [key for key in kwargs if key not in accepted]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, accepted, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownArgumentError(
            f"{what or get_entry(name).name} takes no argument {key!r}; {hint}it takes: {', '.join(sorted(accepted))}"
        )


def build_net(name: str, *, num_classes: int | None = None, in_chans: int | None = None, **kwargs: Any) -> nn.Module:
    """The plain ``nn.Module`` of an architecture, randomly initialised."""
    entry = get_entry(name)
    check_kwargs(entry.name, kwargs)
    kwargs = with_aliases(entry.name, kwargs)
    return entry.builder(
        num_classes=entry.num_classes if num_classes is None else num_classes,
        in_chans=entry.input_size[0] if in_chans is None else in_chans,
        **kwargs,
    )
