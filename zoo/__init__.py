"""zoo: a PyTorch Lightning model zoo.

    import zoo
    zoo.list_models("lenet*")                 # registered architectures
    model = zoo.create("lenet5_relu")          # LightningModule, random init
    model = zoo.load("lenet5.fmnist")          # trained weights, eval mode, normalisation inside
    model = zoo.load("hf-hub:org/name")        # or a hub repo, a URL, a folder, a .safetensors file
    probs = model.predict_proba(images)        # images: float (N, C, H, W) in [0, 1]

Heavy libraries (torch, Lightning) are imported on first use, so ``import zoo`` stays fast.
"""

from __future__ import annotations

from typing import Any

from zoo.errors import DatasetNotFoundError, InputShapeError, UnknownModelError, WeightsError, ZooError

__version__ = "0.1.0"
__all__ = [
    "DatasetNotFoundError",
    "InputShapeError",
    "UnknownModelError",
    "WeightsError",
    "ZooError",
    "create",
    "list_models",
    "list_weights",
    "load",
    "prefetch",
    "pull",
    "push",
]


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Registered architecture names matching ``pattern``; ``pretrained=True``: only those with weights."""
    from zoo.registry import list_models as _list_models

    return _list_models(pattern, pretrained=pretrained)


def list_weights(pattern: str = "*") -> list[str]:
    """Every trained weight ``arch.tag`` whose architecture matches ``pattern``."""
    from zoo.registry import list_weights as _list_weights

    return _list_weights(pattern)


def create(name: str, **kwargs: Any):
    """A randomly initialised LightningModule (``num_classes=``, ``in_chans=``, task and builder options)."""
    from zoo.registry import create as _create

    return _create(name, **kwargs)


def load(source: str, **overrides: Any):
    """A LightningModule with trained weights, in eval mode.

    ``source``: ``"arch.tag"``, ``"hf-hub:org/repo[@revision]"``, an ``https://`` URL, a weight folder or
    a ``.safetensors`` file; ``file=PATH`` reads registered weights from a local copy. See ``zoo.weights.load``.
    """
    from zoo.weights import load as _load

    return _load(source, **overrides)


def prefetch(*sources: str) -> list:
    """Download weights (``arch.tag``, ``hf-hub:...``, URLs) into the caches for offline use; their local paths."""
    from zoo.hub import prefetch as _prefetch

    return _prefetch(*sources)


def pull(source: str):
    """``prefetch`` for one source: its local folder or file."""
    from zoo.hub import pull as _pull

    return _pull(source)


def push(folder: str, repo_id: str, **kwargs: Any) -> str:
    """Upload a weight folder to the Hugging Face Hub (``private=``, ``revision=``, ``commit_message=``, ``token=``)."""
    from zoo.hub import push as _push

    return _push(folder, repo_id, **kwargs)
