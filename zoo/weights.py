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


@dataclass(frozen=True)
class Weights:
    """One trained weight of an architecture, registered beside its builder.

    Weights trained by a zoo recipe live in ``model_cards/<arch.tag>/``; their numbers (accuracy,
    epochs, hash) are not typed here but read from the card's ``metrics.json``, which the run wrote.
    Weights published elsewhere (torchvision / timm ImageNet files) name where to fetch them, the
    sha256 of the published file, and how to convert its state dict into this zoo's module.
    """

    tag: str  # "fmnist" in "lenet5.fmnist"
    dataset: str  # the dataset it was trained and measured on
    recipe: str | None = None  # recipes/<file>.yaml that produced it (zoo-trained weights)
    license: str = "apache-2.0"
    url: str | None = None  # https:// address of a published weight file
    hf_hub_id: str | None = None  # "org/repo" on the Hugging Face Hub (optionally "@revision")
    filename: str | None = None  # file inside that hub repo
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


def read_safetensors(path: Path, sha256: str | None = None) -> dict[str, Any]:
    """The tensors of a safetensors file, after checking its sha256 when one is expected."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise WeightsError(f"weight file {path} is missing")
    if sha256 is not None:
        actual = sha256_file(path)
        if actual != sha256:
            raise WeightsError(
                f"sha256 of {path} is {actual[:12]}…, expected {sha256[:12]}…: the file is corrupt or was "
                "tampered with; delete it and fetch the weights again"
            )
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for bad headers and truncation
        raise WeightsError(f"{path} is not a readable safetensors file ({err}); delete it and fetch it again") from None


def load_folder(folder: str | Path, **overrides: Any):
    """The LightningModule stored in a card folder, in eval mode."""
    from zoo.registry import create, get_entry

    folder = Path(folder)
    config = read_json(folder / CONFIG_FILE)
    metrics_path = folder / METRICS_FILE
    expected = read_json(metrics_path).get("sha256") if metrics_path.exists() else None
    arch = config.get("architecture")
    if not isinstance(arch, str):
        raise WeightsError(f"{folder / CONFIG_FILE} names no 'architecture'; it must be a registered model name")
    get_entry(arch)  # only registered architectures, never an importable class path
    state = read_safetensors(folder / WEIGHTS_FILE, expected)
    task_args = {
        "num_classes": config["num_classes"],
        "in_chans": config["in_chans"],
        "mean": config.get("mean"),
        "std": config.get("std"),
        "class_names": config.get("class_names"),
        **config.get("model_kwargs", {}),
    }
    task_args.update(overrides)
    model = create(arch, **task_args)
    model.load_net_state(state)
    model.weights_name = config.get("name", arch)
    return model.eval()


def load(source: str, **overrides: Any):
    """A model with trained weights, in eval mode: ``"arch.tag"`` or a card folder path."""
    path = Path(source)
    if path.is_dir():
        return load_folder(path, **overrides)
    from zoo.registry import get_weights, split_name

    weights = get_weights(source)
    arch, _ = split_name(source)
    folder = bundled_cards_dir() / f"{arch}.{weights.tag}"
    if not folder.is_dir():
        raise WeightsError(f"weights {arch}.{weights.tag} are not in {folder.parent}; train them with `zoo fit --config {weights.recipe}`")
    return load_folder(folder, **overrides)
