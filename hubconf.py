"""torch.hub entry points: one per registered architecture.

    model = torch.hub.load("path/to/zoo", "lenet5", source="local", pretrained=True)
    model = torch.hub.load("path/to/zoo", "resnet18", source="local", num_classes=10)  # random init

``pretrained=True`` loads the architecture's first registered weights (``zoo list --pretrained``), or
the tag given as ``tag="..."``; other keyword arguments go to :func:`zoo.create` / :func:`zoo.load`
(``num_classes`` gives a fresh head on a pretrained backbone). The returned LightningModule takes
images in [0, 1] and normalises them itself; ``model.net`` is the plain ``nn.Module``.
"""

from __future__ import annotations

from typing import Any

import zoo

dependencies = ["torch", "torchvision", "lightning", "torchmetrics", "safetensors", "huggingface_hub"]


def _entry_point(name: str):
    def entry(pretrained: bool = False, tag: str | None = None, **kwargs: Any):
        if pretrained or tag:
            from zoo.registry import get_weights

            weights = get_weights(f"{name}.{tag}" if tag else name)
            return zoo.load(f"{name}.{weights.tag}", **kwargs)
        return zoo.create(name, **kwargs)

    entry.__name__ = name
    entry.__doc__ = f"zoo's {name}: trained weights with pretrained=True (tag= picks which), else random init."
    return entry


globals().update({name: _entry_point(name) for name in zoo.list_models()})
