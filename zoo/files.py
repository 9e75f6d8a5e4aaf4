"""The weight-folder format: its file names, hashing, and the safe readers.

A weight lives in a folder laid out like a Hugging Face model repo::

    model_cards/<arch.tag>/
        model.safetensors   the plain network's state dict (keys of ``model.net``)
        config.json         architecture, task, classes, input size, mean/std, builder kwargs
        metrics.json        what the training run measured, the sha256 of model.safetensors and of config.json
        README.md           the card, rendered from the two JSON files

Nothing in a weight folder is ever imported or unpickled: safetensors files are plain tensors, and
``.pt``/``.pth``/``.bin``/``.ckpt`` files are read only with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from zoo.errors import WeightsError

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CARD_FILE = "README.md"
FOLDER_FILES = (CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE, CARD_FILE)  # what a zoo weight folder (or Hub repo) holds
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")  # read only with torch.load(weights_only=True)
CONFIG_HASH_KEY = "config_sha256"  # metrics.json's record of config.json, beside "sha256" (the weights')

log = logging.getLogger(__name__)


def bundled_cards_dir() -> Path:
    """``model_cards/`` of a source checkout or editable install, else the copy inside the wheel."""
    package = Path(__file__).resolve().parent
    for candidate in (package.parent / "model_cards", package / "model_cards"):
        if candidate.is_dir():
            return candidate
    return package.parent / "model_cards"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def config_sha256(config: dict[str, Any]) -> str:
    """The sha256 of a ``config.json``'s content: its values as the loader reads them, in canonical JSON.

    Hashing the parsed values (sorted keys, no spaces) rather than the file's bytes makes the record
    cover everything that decides which network is built, while a checkout that rewrites line endings
    or an editor that re-indents the file leaves it valid.
    """
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file's object; a missing or malformed file is a one-line :class:`WeightsError`."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise WeightsError(f"{path} is missing; a weight folder needs {CONFIG_FILE} and {WEIGHTS_FILE}") from None
    except json.JSONDecodeError as err:
        raise WeightsError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}); restore the file") from None


def check_sha256(
    path: Path, expected: str, *, label: str | None = None, action: str = "delete it and fetch the weights again"
) -> None:
    """Raise if ``path`` (named ``label`` in the message) does not hash to ``expected``."""
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsError(
            f"sha256 of {label or path} is {actual[:12]}…, expected {expected[:12]}…: the file is corrupt or was "
            f"tampered with; {action}"
        )


def verify_config(folder: Path, expected: str | None, *, label: str | None = None) -> None:
    """Raise if ``config.json`` does not hash to the record; warn (one line) when there is no record.

    ``expected`` is ``metrics.json``'s ``config_sha256``; folders written before zoo recorded it carry
    only the weights' sha256, and still load.
    """
    path = folder / CONFIG_FILE
    where = label.rsplit("/", 1)[0] + f"/{CONFIG_FILE}" if label and "/" in label else str(path)
    if expected is None:
        log.warning(
            "%s is not covered by a sha256 (the folder was written by an older zoo); re-save it with "
            "save_pretrained() to record one",
            where,
        )
        return
    actual = config_sha256(read_json(path))
    if actual != expected:
        raise WeightsError(
            f"sha256 of {where} is {actual[:12]}…, expected {expected[:12]}… ({METRICS_FILE}'s "
            f"{CONFIG_HASH_KEY}): the config was edited after the weights were saved, so it may describe "
            "another network; restore the original config.json, or fetch the folder again"
        )


def verify_folder(folder: Path, *, label: str | None = None, action: str | None = None) -> dict[str, Any]:
    """A weight folder's ``metrics.json`` (``{}`` without one), its weights and config checked against it.

    The one place where "the weights and config are the ones the card describes" is checked: on load,
    after a Hub download, and before a push. ``metrics.json`` records the weights' ``sha256`` and the
    config's ``config_sha256`` (:func:`config_sha256`); a folder that records the first but not the
    second (written by an older zoo) loads with a one-line warning.
    """
    metrics_path = folder / METRICS_FILE
    metrics = read_json(metrics_path) if metrics_path.is_file() else {}
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise WeightsError(
            f"{folder} has no {WEIGHTS_FILE}; a weight folder is written by `zoo fit --card.name` or model.save_pretrained()"
        )
    if metrics.get("sha256"):
        kwargs = {"action": action} if action else {}
        check_sha256(weights, metrics["sha256"], label=label, **kwargs)
        verify_config(folder, metrics.get(CONFIG_HASH_KEY), label=label)
    return metrics


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
        from zoo.sources import describe

        raise WeightsError(
            f"{path} is {describe(path)}, not a readable safetensors file ({err}); check the path, or fetch a "
            "damaged download again"
        ) from None


READ_PICKLE_FIX = (
    "expected a file written by torch.save (.pt/.pth/.bin/.ckpt); check the path, or fetch a damaged download again"
)


def read_pickle(path: Path, fix: str = READ_PICKLE_FIX) -> Any:
    """A ``torch.save`` file through ``torch.load(weights_only=True)``: tensors and containers only.

    The restricted unpickler refuses any global it does not know (``os.system``, a model class...)
    before calling it, so a malicious file fails here without running anything. Any other file (a text
    file, an image, a truncated download) is one :class:`WeightsError` line ending in ``fix``.
    """
    import argparse
    import pickle

    import torch

    try:
        # argparse.Namespace: torchvision's reference scripts save their command line beside the weights
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        named = re.search(r"GLOBAL ([\w.]+)", str(err))
        if not named and re.search(r"Unsupported operand|invalid load key|could not find MARK|truncated", str(err)):
            raise WeightsError(f"{path} is not a readable PyTorch file (its bytes are not a pickle); {fix}") from None
        reason = f"it would call {named.group(1)}" if named else "it holds objects that are not tensors"
        raise WeightsError(
            f"refused to load {path}: the pickle asks for more than tensors ({reason}); zoo reads "
            ".pt/.pth/.bin/.ckpt only with torch.load(weights_only=True) — convert trusted files to safetensors"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise WeightsError(f"{path} is not a readable PyTorch file ({first}); {fix}") from None
    except Exception:  # text read as pickle opcodes: KeyError, IndexError, TypeError... from deep in the unpickler
        raise WeightsError(f"{path} is not a readable PyTorch file (its bytes are not a pickle); {fix}") from None


def is_lightning_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict) and "pytorch-lightning_version" in obj


def checkpoint_net_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The network's tensors of a Lightning checkpoint of a zoo task (they sit under ``net.``)."""
    return {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}


def read_weight_file(path: str | Path, sha256: str | None = None) -> dict[str, Any]:
    """The state dict in a weight file: safetensors, or a torch pickle read with ``weights_only=True``.

    A Lightning checkpoint of a zoo task gives its network's tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weight file {path} is missing")
    if path.suffix == ".safetensors":
        return read_safetensors(path, sha256)
    if path.suffix not in PICKLE_SUFFIXES:
        raise WeightsError(f"{path} is not a weight file; give a .safetensors file (or .pt/.pth/.bin/.ckpt)")
    if sha256 is not None:
        check_sha256(path, sha256)
    state = read_pickle(path)
    if is_lightning_checkpoint(state):
        state = checkpoint_net_state(state)
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state dict; save model.state_dict() instead")
    return state
