"""The interface every zoo network implements, as timm users expect it.

* ``forward_features(x)``: the last feature map (or tokens), before pooling;
* ``forward_head(features, pre_logits=False)``: logits, or the pooled embedding with ``pre_logits=True``;
  ``forward(x) == forward_head(forward_features(x))``;
* ``num_features``: the embedding width; ``get_classifier()``; ``reset_classifier(num_classes)``, where
  ``num_classes=0`` makes the head the identity (the network then returns embeddings);
* ``stages()``: the parameter groups from input to output (stem, stages, pre-logit layers, head), for
  layer-wise learning rates and gradual unfreezing; the last ones, named in ``head_stages`` (``("head",)``
  unless a family says otherwise: a detector's transformer is head too), learn at the full rate and are
  never frozen by a fine-tuning strategy (:func:`split_stages`);
* ``feature_info``: one dict per feature level (``module``, ``num_chs``, ``reduction``) for
  :func:`zoo.backbone` feature pyramids.

A family subclasses :class:`Network`, names its first convolution and classifier (``first_conv_name``,
``classifier_name``: the registry reads them from the class) and writes the four family-specific methods.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn


def linear_or_identity(in_features: int, num_classes: int) -> nn.Module:
    """The classifier of a head: ``nn.Linear``, or ``nn.Identity`` for ``num_classes=0`` (embeddings)."""
    return nn.Linear(in_features, num_classes) if num_classes else nn.Identity()


HEAD_STAGES = ("head",)  # the stages at the full rate and never frozen, unless a family names others


def split_stages(net: nn.Module) -> tuple[list[tuple[str, list[nn.Module]]], list[tuple[str, list[nn.Module]]]]:
    """``net.stages()`` split into the stages below the head and the head's (the names in ``net.head_stages``)."""
    head_names = set(getattr(net, "head_stages", HEAD_STAGES))
    stages = net.stages()
    return [s for s in stages if s[0] not in head_names], [s for s in stages if s[0] in head_names]


class Network(nn.Module):
    """Base of the zoo's networks (see the module doc).

    Not a *backbone*: in the zoo that word means :func:`zoo.backbone`'s feature extractor (timm's idiom),
    and, for fine-tuning, the stages below the head (``ZooTask.backbone``, as Lightning's
    ``BackboneFinetuning`` reads it). A whole classifier or detector is a ``Network``.
    """

    first_conv_name: ClassVar[str] = ""  # module name of the first convolution
    classifier_name: ClassVar[str] = ""  # module name of the final linear layer
    head_stages: ClassVar[tuple[str, ...]] = HEAD_STAGES
    num_features: int  # width of the embedding the classifier reads
    feature_info: list[dict[str, Any]]

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError("abstract: each family returns its last feature map")

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        raise NotImplementedError("abstract: each family pools and classifies")

    def stages(self) -> list[tuple[str, list[nn.Module]]]:
        raise NotImplementedError("abstract: each family lists its parameter groups")

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.get_submodule(self.classifier_name)

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh classifier for ``num_classes`` (0: the identity, so the network returns embeddings)."""
        parent, _, leaf = self.classifier_name.rpartition(".")
        setattr(
            self.get_submodule(parent) if parent else self, leaf, linear_or_identity(self.num_features, num_classes)
        )
