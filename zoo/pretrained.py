"""Pretrained weights: any source → one record, and a state dict → a plain network.

:func:`resolve` turns every kind of source into one :class:`Pretrained` record (architecture, task
arguments, state dict, name, measured metrics); :func:`load_net_state` loads a state dict into a plain
network, replacing the head and adapting the first convolution by the module names the registry entry
declares (``classifier``, ``first_conv``, like timm's). The task layer builds the network once and
calls both; :func:`prefetch` and :func:`push` share the same resolution and checks.

Sources, in the order they are tried (:func:`locate`):

- ``file=PATH`` with a registered ``arch.tag``: the user's copy of those weights (converted if needed,
  not held to the published hash), read with the bundled card's classes when there is one;
- ``hf-hub:org/repo[@revision]``: a Hub repo laid out like ``model_cards/<arch.tag>/``, or the repo of
  registered weights published as one file there (``hf-hub:timm/vit_base_patch16_224.augreg2_in21k_ft_in1k``);
- an ``https://`` URL: registered weights published there (hash and converter apply), else a lone file;
- a local folder (a card folder) or a weight file (``.safetensors``, ``.pt``/``.pth``/``.bin``/``.ckpt``);
- ``arch.tag``: the bundled card folder, else the Hub repo or the published file it names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zoo.models  # noqa: F401  registers every family
from zoo import hub
from zoo.errors import WeightsError, ZooError
from zoo.files import (
    CONFIG_FILE,
    PICKLE_SUFFIXES,
    WEIGHTS_FILE,
    bundled_cards_dir,
    checkpoint_net_state,
    is_lightning_checkpoint,
    read_json,
    read_pickle,
    read_safetensors,
    read_weight_file,
    verify_folder,
)
from zoo.layers.state_dict import adapt_input_conv, key_report, listing, unwrap_state
from zoo.models import timm_family
from zoo.registry import ModelEntry, Weights, full_name, get_entry, get_weights, list_weights, resolved_prefix
from zoo.task_descriptions import get_task, list_tasks

log = logging.getLogger("zoo")

DESCRIPTIVE_METRICS = ("dataset", "license", "recipe", "source")  # still true once the weights change
CHECKPOINT_TASK_KEY = "zoo_task"  # a zoo task's Lightning checkpoint names its task here


@dataclass
class Pretrained:
    """What a source holds, before any network is built."""

    arch: str  # registered architecture
    task_args: dict[str, Any]  # num_classes, in_chans, mean, std, class_names, model_kwargs
    state: dict[str, Any]  # the plain network's state dict, in the zoo's keys
    name: str  # "lenet5.fmnist", or the architecture for anonymous files
    source: str  # where it was read from
    metrics: dict[str, Any] = field(default_factory=dict)  # what the run that made it measured
    label: str = ""  # what the state dict claims to be, for the key report ("torchvision resnet50")
    task: str = "classification"
    preprocessing: dict[str, Any] = field(default_factory=dict)  # resize / interpolation of evaluation images


@dataclass(frozen=True)
class Located:
    kind: str  # "folder", "published", "file"
    path: Path
    name: str | None = None  # registered weights' arch.tag
    weights: Weights | None = None


# ---- where a source is ---------------------------------------------------------------------------
def registered_url(url: str) -> str | None:
    """The ``arch.tag`` whose published file is at ``url``, if any (so its hash and converter apply)."""
    return next((name for name in list_weights() if get_weights(name).url == url), None)


def registered_hf_file(repo: str) -> str | None:
    """The ``arch.tag`` published as one file of the hub repo ``repo`` (timm's ``hf-hub:timm/...`` ids), if any."""
    return next(
        (n for n in list_weights() if get_weights(n).filename and get_weights(n).hf_hub_id == repo),
        None,
    )


def _fetch_published(name: str, weights: Weights, hub_options: dict[str, Any]) -> Path:
    """The local file of registered weights published at a URL or as one file of a hub repo, verified."""
    if weights.url:
        prefix = None if weights.sha256 else hub.published_hash_prefix(weights.url)
        return hub.download_url(weights.url, sha256=weights.sha256, hash_prefix=prefix, name=name)
    repo_id, revision = hub.parse_hf(weights.hf_hub_id or "")
    return hub.hf_file_verified(
        repo_id, weights.filename or WEIGHTS_FILE, revision, weights.sha256, pull=name, **hub_options
    )


def _locate_registered(name: str, file: str | Path | None = None, hub_options: dict[str, Any] | None = None) -> Located:
    hub_options = hub_options or {}
    weights = get_weights(name)
    name = full_name(name)
    folder = bundled_cards_dir() / name
    if file is not None:  # the user's own copy: converted if needed, not held to the published hash
        return Located("file" if folder.is_dir() else "published", Path(file).expanduser(), name, weights)
    if folder.is_dir():
        return Located("folder", folder, name, weights)
    if weights.hf_hub_id and not weights.filename:  # a repo laid out like model_cards/<name>/
        return Located("folder", hub.hf_folder(weights.hf_hub_id, name=name, **hub_options), name, weights)
    if weights.url or weights.hf_hub_id:
        return Located("published", _fetch_published(name, weights, hub_options), name, weights)  # verified on fetch
    raise WeightsError(
        f"weights {name} are not in {folder.parent} and have no download source; "
        f"train them with `zoo fit --config {weights.recipe}`"
    )


def locate(source: str | Path, *, file: str | Path | None = None, hub_options: dict[str, Any] | None = None) -> Located:
    """Where ``source`` is on this machine, downloading it first if needed (the order in the module doc).

    ``hub_options``: ``huggingface_hub``'s ``token``, ``cache_dir``, ``force_download``, ``local_files_only``.
    """
    hub_options = hub_options or {}
    text = str(source)
    if file is not None:
        return _locate_registered(text, file, hub_options)
    if text.startswith(hub.HF_PREFIX):
        registered = registered_hf_file(text.removeprefix(hub.HF_PREFIX))
        if registered is not None:  # a published file the registry knows (timm's weights): its converter applies
            return _locate_registered(registered, hub_options=hub_options)
        return Located("folder", hub.hf_folder(text.removeprefix(hub.HF_PREFIX), **hub_options))
    if text.startswith(("https://", "http://")):
        registered = registered_url(text)
        if registered is not None:
            return _locate_registered(registered, hub_options=hub_options)
        return Located("file", hub.download_url(text))
    path = Path(text).expanduser()
    if path.is_dir():
        return Located("folder", path)
    if path.is_file() and path.suffix not in (".safetensors", *PICKLE_SUFFIXES) and text not in list_weights():
        if path.name == CONFIG_FILE:  # a weight folder's config.json: the folder is meant
            return Located("folder", path.parent)
        from zoo.sources import describe

        onnx = "; an ONNX file runs with zoo predict WEIGHTS IMAGES --onnx FILE" if path.suffix == ".onnx" else ""
        raise WeightsError(
            f"{text} is {describe(path)}, not weights; give a weight folder (config.json + model.safetensors), a "
            f".safetensors/.pt/.pth/.bin/.ckpt file, an arch.tag (zoo list --pretrained) or hf-hub:org/name{onnx}"
        )
    if path.suffix in (".safetensors", *PICKLE_SUFFIXES):
        if not path.is_file():
            raise WeightsError(f"no such weight file: {text}; check the path")
        return Located("file", path)
    # never sent to the Hub or the registry: a typo'd folder is a missing folder ("timm/<name>" is a name)
    if _path_like(text) and resolved_prefix(text) is None:
        raise WeightsError(
            f"no such file or folder: {text}; give an existing weight folder or file, an arch.tag (zoo list --pretrained) "
            "or hf-hub:org/name"
        )
    return _locate_registered(text, hub_options=hub_options)


def _path_like(text: str) -> bool:
    """A source written as a path: with a separator, starting with . or ~, or with a file suffix."""
    import os

    return (
        any(sep and sep in text for sep in (os.sep, os.altsep))
        or text.startswith((".", "~"))
        or Path(text).suffix.lower() in (".json", ".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".onnx")
    )


def prefetch(*sources: str) -> list[Path]:
    """Download weights into the caches ahead of going offline; returns where each one is.

    Each source is ``arch.tag``, ``hf-hub:org/repo[@revision]`` or an ``https://`` URL, as for
    :func:`zoo.load`. Bundled weights need nothing and return their folder.
    """
    return [locate(source).path for source in sources]


def pull(source: str) -> Path:
    """:func:`prefetch` for one source: its local folder or file."""
    return prefetch(source)[0]


# ---- what a source holds -------------------------------------------------------------------------
def config_task_args(config: dict[str, Any], where: Path) -> tuple[str, dict[str, Any]]:
    """``config.json`` → (registered architecture, task arguments). Nothing named in it is imported."""
    if timm_family.is_timm_config(config):  # timm's layout (save_for_hf, or a zoo folder of a timm network)
        return timm_family.config_task_args(config, where)
    arch = config.get("architecture")
    if not isinstance(arch, str):
        raise WeightsError(f"{where} names no 'architecture'; it must be a registered model name")
    get_entry(arch)  # only registered architectures, never an importable class path
    model_kwargs = config.get("model_kwargs", {})
    if not isinstance(model_kwargs, dict):
        raise WeightsError(f"{where}: 'model_kwargs' must be a mapping of builder options")
    try:
        args = {"num_classes": int(config["num_classes"]), "in_chans": int(config["in_chans"])}
    except (KeyError, TypeError, ValueError):
        raise WeightsError(f"{where} needs integer 'num_classes' and 'in_chans'") from None
    args.update(
        mean=config.get("mean"),
        std=config.get("std"),
        class_names=config.get("class_names"),
        model_kwargs=dict(model_kwargs),
    )
    if isinstance(config.get("task_options"), dict):  # a task's own saved settings (a multi-label model's thresholds)
        args["task_options"] = dict(config["task_options"])
    return arch, args


def _published_task_args(entry: ModelEntry, weights: Weights) -> dict[str, Any]:
    """Task arguments for weights published elsewhere, from their registry metadata."""
    args: dict[str, Any] = {
        "num_classes": weights.num_classes or entry.num_classes,
        "in_chans": (weights.input_size or entry.input_size)[0],
        "mean": list(weights.mean or entry.mean),
        "std": list(weights.std or entry.std),
        "model_kwargs": dict(weights.model_kwargs),
        "class_names": None,
    }
    if weights.class_names:
        from zoo.data.class_names import class_names

        args["class_names"] = class_names(weights.class_names)
    return args


def _shapes_from_state(entry: ModelEntry, state: dict[str, Any], label: str) -> tuple[int | None, int | None]:
    """(head size, input channels) a state dict was saved with, read at the entry's declared names."""
    head = state.get(f"{entry.classifier}.weight")
    conv = state.get(f"{entry.first_conv}.weight")
    if head is None and entry.classifier:
        raise WeightsError(
            f"this state dict is not a {label} checkpoint: it has no '{entry.classifier}.weight' "
            f"(its first keys: {listing(list(state))}); convert only files saved from {label}"
        )
    return (int(head.shape[0]) if head is not None else None), (int(conv.shape[1]) if conv is not None else None)


def _read_folder(folder: Path, name: str | None) -> Pretrained:
    config = read_json(folder / CONFIG_FILE)
    arch, task_args = config_task_args(config, folder / CONFIG_FILE)
    metrics = verify_folder(folder)
    state = read_safetensors(folder / WEIGHTS_FILE)
    timm_layout = timm_family.is_timm_config(config)
    return Pretrained(
        arch,
        task_args,
        state,
        config.get("name", name or (timm_family.config_name(config) if timm_layout else arch)),
        str(folder),
        metrics,
        label=arch,
        task=config_task(config, arch, folder / CONFIG_FILE),
        preprocessing=timm_family.config_preprocessing(config) if timm_layout else {},
    )


def config_task(config: dict[str, Any], arch: str, where: Path) -> str:
    """The task a ``config.json`` names (its Hub pipeline tag), else the architecture's registered task."""
    named = config.get("task")
    if named is None:
        return get_entry(arch).task
    if not isinstance(named, str):
        raise WeightsError(f"{where}: 'task' must be a task name such as 'image-classification'")
    try:
        return get_task(named).name
    except ZooError:
        raise WeightsError(
            f"{where} names the task {named!r}, which this zoo does not have ({', '.join(list_tasks())})"
        ) from None


def convert_state(name: str, state: dict[str, Any]) -> dict[str, Any]:
    """A published state dict of registered weights ``name`` in zoo's keys (wrappers and ``module.`` removed).

    Keys already in zoo's layout pass through unchanged; whether they fit is checked when they load.
    """
    weights = get_weights(name)
    state = unwrap_state(state)
    return weights.convert(state) if weights.convert is not None else state


def _read_published(path: Path, name: str, weights: Weights) -> Pretrained:
    """A published file (torchvision / timm layout, or zoo's own) → renamed into zoo's keys."""
    entry = get_entry(name)
    state = convert_state(name, read_weight_file(path))
    label = f"{weights.origin} {entry.name}"
    head, _ = _shapes_from_state(entry, state, label)
    task_args = _published_task_args(entry, weights)
    if head and head != task_args["num_classes"]:  # a user's fine-tuned copy: its own head, not ImageNet's classes
        task_args.update(num_classes=head, class_names=None)
    metrics = {
        "name": name,
        "dataset": weights.dataset,
        "license": weights.license,
        "source": weights.url or weights.hf_hub_id,
    }
    return Pretrained(
        entry.name,
        task_args,
        state,
        name,
        str(path),
        metrics,
        label=label,
        task=entry.task,
        preprocessing=weights.preprocessing(),
    )


def _read_checkpoint_args(checkpoint: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(architecture, task arguments) from the hyper-parameters a zoo task saved in its Lightning checkpoint."""
    hp = checkpoint.get("hyper_parameters") or {}
    if not isinstance(hp.get("model_name"), str):
        return None
    entry = get_entry(hp["model_name"])
    args = {key: hp.get(key) for key in ("num_classes", "in_chans", "mean", "std", "class_names")}
    args["num_classes"] = args["num_classes"] or entry.num_classes
    args["model_kwargs"] = dict(hp.get("model_kwargs") or {})
    return entry.name, args


def _read_file(path: Path, arch: str | None, config_path: Path | None = None) -> Pretrained:
    """A lone weight file: its architecture from ``arch=``, a ``config.json`` beside it, or its checkpoint."""
    if config_path is None and arch is None and (path.parent / CONFIG_FILE).is_file():
        config_path = path.parent / CONFIG_FILE
    if config_path is not None and arch is None:  # a file read with the classes and normalisation of a config.json
        config = read_json(config_path)
        found, task_args = config_task_args(config, config_path)
        state = read_weight_file(path)
        task = config_task(config, found, config_path)
        return Pretrained(found, task_args, state, config.get("name", found), str(path), label=found, task=task)
    if not path.is_file():
        raise WeightsError(f"weight file {path} is missing")
    if arch is None and path.suffix in PICKLE_SUFFIXES:
        checkpoint = read_pickle(path)
        found = _read_checkpoint_args(checkpoint) if is_lightning_checkpoint(checkpoint) else None
        if found is not None:
            found_arch, task_args = found
            return Pretrained(
                found_arch,
                task_args,
                checkpoint_net_state(checkpoint),
                found_arch,
                str(path),
                label=found_arch,
                task=checkpoint.get(CHECKPOINT_TASK_KEY) or get_entry(found_arch).task,
            )
    if arch is None:
        read_weight_file(path)  # a file that is no weight file at all says so first
        raise WeightsError(
            f"{path.name} does not say which architecture it holds; pass arch='<model>' (zoo list), "
            "or use zoo.load('<arch.tag>', file=...) for a copy of registered weights"
        )
    entry = get_entry(arch)
    state = unwrap_state(read_weight_file(path))
    head, chans = _shapes_from_state(entry, state, entry.name)
    task_args = {"num_classes": head or entry.num_classes, "in_chans": chans or entry.input_size[0]}
    return Pretrained(entry.name, task_args, state, entry.name, str(path), label=entry.name, task=entry.task)


def resolve(
    source: str | Path,
    *,
    file: str | Path | None = None,
    arch: str | None = None,
    hub_options: dict[str, Any] | None = None,
) -> Pretrained:
    """The :class:`Pretrained` record of any source (see the module doc for the kinds and their order)."""
    where = locate(source, file=file, hub_options=hub_options)
    if where.kind == "folder":
        return _read_folder(where.path, where.name)
    if where.kind == "published":
        return _read_published(where.path, where.name, where.weights)
    config = bundled_cards_dir() / where.name / CONFIG_FILE if where.name else None
    return _read_file(where.path, arch, config)


# ---- a state dict into a network -----------------------------------------------------------------
def load_net_state(
    net: Any,
    arch: str,
    state: dict[str, Any],
    *,
    num_classes: int | None,
    in_chans: int,
    source_num_classes: int | None = None,
    source_in_chans: int | None = None,
    label: str | None = None,
    fresh_head: bool | None = None,
) -> None:
    """Load ``state`` into ``net``, naming every missing, unexpected or mis-shaped key.

    Weights saved with ``source_num_classes`` classes load into a net with another ``num_classes`` by
    keeping the net's fresh head (every tensor under the entry's ``classifier``); ``fresh_head=True`` keeps
    it whatever the counts (other classes, as many as before); weights for
    ``source_in_chans`` channels get the entry's ``first_conv`` adapted (summed to 1 channel, or
    repeated and rescaled). Both are logged. A network with an ``adapt_state`` method resizes what depends
    on the image size first (a ViT's position embeddings).
    """
    entry = get_entry(arch)
    own, state = net.state_dict(), dict(state)
    fresh, adapted = [], []
    if fresh_head is None:
        fresh_head = source_num_classes not in (None, num_classes)
    if fresh_head and entry.classifier:
        prefix = entry.classifier + "."
        state = {k: v for k, v in state.items() if not k.startswith(prefix)}
        fresh = [k for k in own if k.startswith(prefix)]
        state.update({k: own[k] for k in fresh})
    conv_key = f"{entry.first_conv}.weight"
    if source_in_chans not in (None, in_chans) and conv_key in state and getattr(state[conv_key], "ndim", 0) == 4:
        state[conv_key] = adapt_input_conv(state[conv_key], in_chans)
        adapted.append(conv_key)
    if hasattr(net, "adapt_state"):  # family-specific resizing, e.g. a ViT's position embeddings to its image size
        state = net.adapt_state(state)
    problems = key_report(own, state)
    if problems:
        raise WeightsError(
            f"this state dict does not fit {label or arch}: {problems} (were the weights saved for another architecture or num_classes?)"
        )
    net.load_state_dict(state)
    if fresh:
        log.info(
            "%s: pretrained backbone loaded; new %s-class head %s (the weights have %s classes)",
            arch,
            num_classes,
            ", ".join(fresh),
            source_num_classes,
        )
    if adapted:
        log.info(
            "%s: first convolution %s adapted from %d to %d input channels",
            arch,
            ", ".join(adapted),
            source_in_chans,
            in_chans,
        )


# ---- upload --------------------------------------------------------------------------------------
def check_folder(folder: Path) -> str:
    """A folder about to be pushed must load: registered architecture, weights matching metrics.json."""
    if not Path(folder).is_dir():
        from zoo.sources import describe

        raise ZooError(
            f"{folder} is {describe(folder)}, not a weight folder; push uploads a folder of config.json, "
            "model.safetensors, metrics.json and README.md (written by zoo fit --card.name or save_pretrained)"
        )
    config = read_json(folder / CONFIG_FILE)
    arch, _ = config_task_args(config, folder / CONFIG_FILE)
    verify_folder(folder)
    return str(config.get("name", arch))


def push(folder: str | Path, repo_id: str, **kwargs: Any) -> str:
    """Check a weight folder, then upload it to the Hub (``private``, ``revision``, ``commit_message``,
    ``token``, ``create_pr``); returns the commit URL."""
    folder = Path(folder).expanduser()
    return hub.push_folder(folder, repo_id, check_folder(folder), **kwargs)
