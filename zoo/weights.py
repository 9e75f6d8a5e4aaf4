"""Weight metadata, the card folder layout, and resolve → verify → load.

A weight lives in a folder laid out like a Hugging Face model repo::

    model_cards/<arch.tag>/
        model.safetensors   the plain network's state dict (keys of ``model.net``)
        config.json         arch, num_classes, in_chans, input_size, mean/std, class names, builder kwargs
        metrics.json        what the training run measured, and the sha256 of model.safetensors
        README.md           the card, rendered from the two JSON files

``config.json`` can only name a registered architecture: nothing in a weight folder is ever imported
or unpickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import WeightsError

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CARD_FILE = "README.md"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")  # read only with torch.load(weights_only=True)


@dataclass(frozen=True)
class Weights:
    """One trained weight of an architecture, registered beside its builder.

    Weights trained by a zoo recipe live in ``model_cards/<arch.tag>/``; their numbers (accuracy,
    epochs, hash) are not typed here but read from the card's ``metrics.json``, which the run wrote.
    Weights published elsewhere (torchvision / timm ImageNet files) name where to fetch them, the
    sha256 of the published file, and how to convert its state dict into this zoo's module.

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
    convert: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # published state dict → zoo's ``net`` keys
    num_classes: int | None = None  # head size of the published weights (default: the entry's)
    input_size: tuple[int, int, int] | None = None  # (C, H, W) the published weights were trained at
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    class_names: str | None = None  # name of a class list in zoo.data.class_names ("imagenet-1k")
    model_kwargs: dict[str, Any] = field(default_factory=dict)


def bundled_cards_dir() -> Path:
    """``model_cards/`` of a source checkout or editable install, else the copy inside the wheel."""
    package = Path(__file__).resolve().parent
    for candidate in (package.parent / "model_cards", package / "model_cards"):
        if candidate.is_dir():
            return candidate
    return package.parent / "model_cards"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise WeightsError(f"{path} is missing; a weight folder needs {CONFIG_FILE} and {WEIGHTS_FILE}") from None
    except json.JSONDecodeError as err:
        raise WeightsError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}); restore the file") from None


def check_sha256(path: Path, expected: str, *, label: str | None = None, action: str = "delete it and fetch the weights again") -> None:
    """Raise if ``path`` (named ``label`` in the message) does not hash to ``expected``."""
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsError(
            f"sha256 of {label or path} is {actual[:12]}…, expected {expected[:12]}…: the file is corrupt or was "
            f"tampered with; {action}"
        )


def read_safetensors(path: Path, sha256: str | None = None) -> dict[str, Any]:
    """The tensors of a safetensors file, after checking its sha256 when one is expected."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise WeightsError(f"weight file {path} is missing")
    if sha256 is not None:
        check_sha256(path, sha256)
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for bad headers and truncation
        raise WeightsError(f"{path} is not a readable safetensors file ({err}); delete it and fetch it again") from None


def _read_pickle(path: Path) -> dict[str, Any]:
    """A ``torch.save`` file through ``torch.load(weights_only=True)``: tensors and containers only.

    The restricted unpickler refuses any global it does not know (``os.system``, a model class...)
    before calling it, so a malicious file fails here without running anything.
    """
    import argparse
    import pickle

    import torch

    try:
        # argparse.Namespace: torchvision's reference scripts save their command line beside the weights
        with torch.serialization.safe_globals([argparse.Namespace]):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        named = re.search(r"GLOBAL ([\w.]+)", str(err))
        reason = f"it would call {named.group(1)}" if named else "it holds objects that are not tensors"
        raise WeightsError(
            f"refused to load {path}: the pickle asks for more than tensors ({reason}); zoo reads "
            ".pt/.pth/.bin/.ckpt only with torch.load(weights_only=True) — convert trusted files to safetensors"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise WeightsError(f"{path} is not a readable PyTorch file ({str(err).splitlines()[0]}); delete it and fetch it again") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict) and "pytorch-lightning_version" in state:
        # a Lightning checkpoint of a zoo task: the network's tensors sit under "net."
        state = {k.removeprefix("net."): v for k, v in state["state_dict"].items() if k.startswith("net.")}
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state dict; save model.state_dict() instead")
    return state


def read_weight_file(path: str | Path, sha256: str | None = None) -> dict[str, Any]:
    """The state dict in a weight file: safetensors, or a torch pickle read with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weight file {path} is missing")
    if path.suffix == ".safetensors":
        return read_safetensors(path, sha256)
    if path.suffix not in PICKLE_SUFFIXES:
        raise WeightsError(f"{path} is not a weight file; give a .safetensors file (or .pt/.pth/.bin/.ckpt)")
    if sha256 is not None:
        check_sha256(path, sha256)
    return _read_pickle(path)


def _loaded(model: Any, name: str, source: str, metrics: dict[str, Any] | None = None):
    model.weights_name = name
    model.weights_source = source
    model.card_metrics = dict(metrics or {})
    return model.eval()


def _build(arch: str, task_args: dict[str, Any], overrides: dict[str, Any], state: dict[str, Any]):
    """The task for ``arch`` with ``state`` loaded; overrides of ``num_classes``/``in_chans`` adapt the weights."""
    from zoo.registry import create

    args = {**task_args, **overrides}
    if args.get("num_classes") != task_args.get("num_classes") and "class_names" not in overrides:
        args["class_names"] = None  # the published names belong to the published head
    model = create(arch, **args)
    model.load_net_state(state, source_num_classes=task_args.get("num_classes"), source_in_chans=task_args.get("in_chans"))
    return model


def config_task_args(config: dict[str, Any], where: Path) -> tuple[str, dict[str, Any]]:
    """``config.json`` → (registered architecture, task arguments). Nothing named in it is imported."""
    from zoo.registry import get_entry

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
    args.update(mean=config.get("mean"), std=config.get("std"), class_names=config.get("class_names"), **model_kwargs)
    return arch, args


def load_folder(folder: str | Path, **overrides: Any):
    """The LightningModule stored in a card folder, in eval mode.

    The weights are checked against the sha256 in ``metrics.json`` when the folder has one.
    """
    folder = Path(folder)
    config = read_json(folder / CONFIG_FILE)
    arch, task_args = config_task_args(config, folder / CONFIG_FILE)
    metrics_path = folder / METRICS_FILE
    metrics = read_json(metrics_path) if metrics_path.exists() else {}
    state = read_safetensors(folder / WEIGHTS_FILE, metrics.get("sha256"))
    model = _build(arch, task_args, overrides, state)
    return _loaded(model, config.get("name", arch), str(folder), metrics)


def _published_task_args(arch: str, weights: Weights) -> dict[str, Any]:
    """Task arguments for weights published elsewhere, from their registry metadata."""
    from zoo.registry import get_entry

    entry = get_entry(arch)
    args: dict[str, Any] = {
        "num_classes": weights.num_classes or entry.num_classes,
        "in_chans": (weights.input_size or entry.input_size)[0],
        "mean": list(weights.mean or entry.mean),
        "std": list(weights.std or entry.std),
        **weights.model_kwargs,
    }
    if weights.class_names:
        from zoo.data.class_names import class_names

        args["class_names"] = class_names(weights.class_names)
    return args


def _load_published(name: str, weights: Weights, path: Path, overrides: dict[str, Any]):
    """A published file (torchvision / timm layout, or zoo's own) → converted → the task."""
    from zoo.registry import build_net, split_name

    arch, _ = split_name(name)
    state = read_weight_file(path)
    task_args = _published_task_args(arch, weights)
    if weights.convert is not None:
        import torch

        with torch.device("meta"):
            own = build_net(arch, num_classes=task_args["num_classes"], in_chans=task_args["in_chans"], **weights.model_kwargs)
        if set(state) != set(own.state_dict()):  # a file already in zoo's layout needs no conversion
            state = weights.convert(state)
    head = _head_size(state)
    if head and head != task_args["num_classes"]:  # a user's fine-tuned copy: its own head, not ImageNet's classes
        task_args.update(num_classes=head, class_names=None)
    metrics = {"name": name, "dataset": weights.dataset, "license": weights.license, "source": weights.url or weights.hf_hub_id}
    return _loaded(_build(arch, task_args, overrides, state), name, str(path), metrics)


def _load_registered(name: str, file: str | Path | None, overrides: dict[str, Any]):
    from zoo import hub
    from zoo.registry import get_weights, split_name

    weights = get_weights(name)
    arch, _ = split_name(name)
    name = f"{arch}.{weights.tag}"
    folder = bundled_cards_dir() / name
    if file is not None:  # the user's own copy: converted if needed, not held to the published hash
        if folder.is_dir():
            return _load_with_config(folder / CONFIG_FILE, Path(file), overrides)
        return _load_published(name, weights, Path(file), overrides)
    if folder.is_dir():
        return load_folder(folder, **overrides)
    if weights.hf_hub_id and not weights.filename:  # a repo laid out like model_cards/<name>/
        return load_folder(hub.hf_folder(weights.hf_hub_id, name=name), **overrides)
    if weights.url or weights.hf_hub_id:
        return _load_published(name, weights, hub.fetch_weights(name, weights), overrides)  # verified on fetch
    raise WeightsError(
        f"weights {name} are not in {folder.parent} and have no download source; "
        f"train them with `zoo fit --config {weights.recipe}`"
    )


def _load_with_config(config_path: Path, file: Path, overrides: dict[str, Any]):
    """A weight file read with the classes and normalisation of a ``config.json`` (no hash: the user's file)."""
    config = read_json(config_path)
    arch, task_args = config_task_args(config, config_path)
    model = _build(arch, task_args, overrides, read_weight_file(file))
    return _loaded(model, config.get("name", arch), str(file))


def _load_single_file(path: Path, arch: str | None, overrides: dict[str, Any]):
    """A lone weight file: its architecture comes from ``arch=``, else from a ``config.json`` beside it."""
    from zoo.registry import get_entry

    if arch is None:
        if (path.parent / CONFIG_FILE).is_file():
            return _load_with_config(path.parent / CONFIG_FILE, path, overrides)
        raise WeightsError(
            f"{path.name} does not say which architecture it holds; pass arch='<model>' (zoo list), "
            "or use zoo.load('<arch.tag>', file=...) for a copy of registered weights"
        )
    entry = get_entry(arch)
    state = read_weight_file(path)
    head = _head_size(state)
    task_args = {"num_classes": head or entry.num_classes, "in_chans": entry.input_size[0]}
    return _loaded(_build(entry.name, task_args, overrides, state), entry.name, str(path))


def _head_size(state: dict[str, Any]) -> int | None:
    """The output size of the last 2-D weight in a state dict: the classifier of a plain network."""
    matrices = [v for v in state.values() if getattr(v, "ndim", 0) == 2]
    return int(matrices[-1].shape[0]) if matrices else None


def load(source: str | Path, *, file: str | Path | None = None, arch: str | None = None, **overrides: Any):
    """A model with trained weights, in eval mode. ``source`` is one of:

    - ``"arch.tag"``: registered weights — the bundled card folder, else the local cache, else their
      download source (Hugging Face Hub or URL), checked against the published sha256;
    - ``"hf-hub:org/repo"`` or ``"hf-hub:org/repo@revision"``: a repo laid out like ``model_cards/<x>/``;
    - an ``https://`` URL of a weight file (``arch=`` names the architecture unless the URL is registered);
    - a local card folder, or a single ``.safetensors`` / ``.pt`` file (``arch=`` as for URLs).

    ``file=PATH`` loads registered weights ``source`` from a local copy instead of downloading them
    (converted when the weights have a converter; a user's file is not held to the published hash).
    Other keyword arguments go to :func:`zoo.create`: a different ``num_classes`` keeps the backbone
    and gives a fresh head, a different ``in_chans`` adapts the first convolution.
    """
    from zoo import hub

    text = str(source)
    if file is not None:
        return _load_registered(text, file, overrides)
    if text.startswith(hub.HF_PREFIX):
        return load_folder(hub.hf_folder(text.removeprefix(hub.HF_PREFIX)), **overrides)
    if text.startswith(("https://", "http://")):
        registered = hub.registered_url(text)
        if registered is not None:
            return _load_registered(registered, None, overrides)
        return _load_single_file(hub.download_url(text), arch, overrides)
    path = Path(text).expanduser()
    if path.is_dir():
        return load_folder(path, **overrides)
    if path.suffix in (".safetensors", *PICKLE_SUFFIXES):
        return _load_single_file(path, arch, overrides)
    return _load_registered(text, None, overrides)


def adapt_input_conv(weight: Any, in_chans: int) -> Any:
    """A first-convolution weight ``(C_out, C_in, K, K)`` for ``in_chans`` input channels.

    One channel: the sum over the pretrained channels (a grey image seen as R = G = B gives the same
    response). More channels: the pretrained channels repeated, scaled by ``C_in / in_chans`` so that
    the activation keeps its magnitude (timm's ``adapt_input_conv`` does the same).
    """
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_chans // weight.shape[1])
    return weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (weight.shape[1] / in_chans)
