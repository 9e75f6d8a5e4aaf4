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

from zoo._version import __version__
from zoo.errors import DatasetNotFoundError, InputShapeError, InputValueError, UnknownModelError, WeightsError, ZooError

__all__ = [
    "DatasetNotFoundError",
    "InputShapeError",
    "InputValueError",
    "UnknownModelError",
    "WeightsError",
    "ZooError",
    "__version__",
    "attention_maps",
    "backbone",
    "create",
    "explain",
    "export",
    "finetune",
    "is_model",
    "list_models",
    "list_weights",
    "load",
    "prefetch",
    "pull",
    "push",
    "save_attention",
]


def _registry():
    import zoo.models  # noqa: F401  registers every family
    from zoo import registry

    return registry


def list_models(pattern: str | list[str] = "*", pretrained: bool = False, exclude: str | list[str] = ()) -> list[str]:
    """Registered architecture names matching ``pattern`` (or any of a list); ``pretrained=True``: only those
    with weights; ``exclude``: patterns to leave out."""
    return _registry().list_models(pattern, pretrained=pretrained, exclude=exclude)


def list_weights(pattern: str | list[str] = "*") -> list[str]:
    """Every trained weight ``arch.tag`` whose architecture matches ``pattern``."""
    return _registry().list_weights(pattern)


def is_model(name: str) -> bool:
    """True for a registered architecture name (``"resnet50"``), as ``timm.is_model``."""
    return name in _registry().list_models()


def create(name: str, **kwargs: Any):
    """A randomly initialised LightningModule (``num_classes=``, ``in_chans=``, task and builder options)."""
    from zoo.tasks.factory import create as _create

    return _create(name, **kwargs)


def load(source: str, **overrides: Any):
    """A LightningModule with trained weights, in eval mode.

    ``source``: ``"arch.tag"``, ``"hf-hub:org/repo[@revision]"``, an ``https://`` URL, a weight folder, a
    ``.safetensors`` file or a Lightning checkpoint; ``file=PATH`` reads registered weights from a local
    copy, ``arch=`` names a lone file's architecture. See ``zoo.pretrained``.
    """
    from zoo.tasks.factory import load as _load

    return _load(source, **overrides)


def backbone(source: str, out_indices=None, **kwargs: Any):
    """A feature-pyramid extractor of an architecture or weights: [0, 1] pixels in, a list of maps out,
    with ``feature_info`` (``num_chs``, ``reduction``, ``module`` per level), like timm's ``features_only``."""
    from zoo.backbones import backbone as _backbone

    return _backbone(source, out_indices=out_indices, **kwargs)


def export(model: Any, path: str, format: str = "onnx", **kwargs: Any):
    """Write a model's preprocessing + network as ``onnx`` or ``exported-program`` (see ``zoo.exporting``)."""
    from zoo.exporting import export as _export

    return _export(model, path, format, **kwargs)


def finetune(
    source: Any,
    data: Any,
    num_classes: int | None = None,
    strategy: str = "full",
    max_epochs: int | None = None,
    **options: Any,
):
    """Fine-tune weights on your images (a folder of class sub-folders, a ``path,label`` CSV, tensors or a
    datamodule) with a strategy of the course: ``linear_probe``, ``full``, ``freeze_unfreeze``, ``gradual``,
    ``layer_decay``. Returns the model in eval mode with its best validation weights (``zoo.finetuning``).
    Without ``max_epochs``, a step budget suited to the data's size (early stopping on); ``lr="auto"`` (default):
    Lightning's LR range test; ``head_init="auto"`` (default): a new classifier head starts as the nearest class
    mean of the training images' features when their range test says the features already tell the classes
    apart, else as drawn (``"imprint"`` / ``"random"``: always the one or the other)."""
    from zoo.finetuning import finetune as _finetune

    return _finetune(source, data, num_classes, strategy, max_epochs, **options)


def prefetch(*sources: str) -> list:
    """Download weights (``arch.tag``, ``hf-hub:...``, URLs) into the caches for offline use; their local paths."""
    from zoo.pretrained import prefetch as _prefetch

    return _prefetch(*sources)


def pull(source: str):
    """``prefetch`` for one source: its local folder or file."""
    from zoo.pretrained import pull as _pull

    return _pull(source)


def push(folder: str, repo_id: str, **kwargs: Any) -> str:
    """Upload a weight folder to the Hugging Face Hub (``private=``, ``revision=``, ``commit_message=``, ``token=``)."""
    from zoo.pretrained import push as _push

    return _push(folder, repo_id, **kwargs)


def attention_maps(model: Any, images: Any, block: int | None = None):
    """Where a ViT/Swin model looks: ``(maps (N, H, W) in [0, 1], logits)`` for images in [0, 1] (``zoo.attention``)."""
    from zoo.attention import attention_maps as _maps

    return _maps(model, images, block=block)


def explain(model: Any, images: Any, method: str = "gradcam", target: Any = None, **options: Any):
    """Where the evidence for ``target`` (default: the predicted class) lies: ``(N, H, W)`` maps at the input
    size, by ``gradcam``, ``integrated_gradients``, ``saliency`` or ``occlusion`` (Captum; ``zoo.explainers``)."""
    from zoo.explainers import explain as _explain

    return _explain(model, images, method, _class_indices(model, target), **options)


def _class_indices(model: Any, target: Any) -> Any:
    """``target`` with class names (``"Sneaker"``, one or one per image) as the model's class indices."""
    names = [str(name).lower() for name in getattr(model, "class_names", None) or []]
    wanted = [target] if isinstance(target, str) else target
    if not isinstance(wanted, (list, tuple)) or not any(isinstance(item, str) for item in wanted):
        return target  # indices, tensors, None: the explainer checks them
    found = []
    for item in wanted:
        if isinstance(item, str) and item.lower() not in names:
            from zoo.errors import InvalidValueError

            shown = ", ".join(model.class_names)
            raise InvalidValueError(f"unknown class {item!r}; the model's classes are {shown}")
        found.append(names.index(item.lower()) if isinstance(item, str) else item)
    return found[0] if isinstance(target, str) else found


def save_attention(source: Any, paths: list, out: str, block: int | None = None):
    """A PNG of the attention of ``source`` (weights or a loaded ViT/Swin model) over image files."""
    from zoo.attention import save_attention as _save

    return _save(source, paths, out, block=block)
