"""``zoo.backbone``: any architecture or weights as a feature-pyramid extractor (timm's ``features_only``).

features = zoo.backbone("resnet20.fmnist", out_indices=(1, 2, 3))
maps = features(images)                  # [0, 1] pixels in, a list of maps out
features.feature_info                    # [{'module': 'layer1', 'num_chs': 16, 'reduction': 1}, ...]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from zoo.errors import InvalidValueError
from zoo.layers.features import FeatureExtractor


def backbone(source: Any, out_indices: Sequence[int] | None = None, **kwargs: Any) -> FeatureExtractor:
    """A :class:`~zoo.layers.features.FeatureExtractor` over the levels ``out_indices`` of ``source``.

    ``source`` is what :func:`zoo.create` (an architecture name: random weights) or :func:`zoo.load` (any
    weights, or a zoo model) accept, built by the same path (:func:`zoo.tasks.factory.build`). ``out_indices``
    index the family's ``feature_info`` (default: every level); other keyword arguments go to the builder
    (``in_chans``, ``img_size``...) or, for weights, adapt them.
    """
    from zoo.tasks.factory import build

    model = build(source, **kwargs)
    net, name = model.net, model.hparams.model_name
    levels = list(net.feature_info)
    indices = list(range(len(levels))) if out_indices is None else _indices(out_indices)
    if not indices or any(not -len(levels) <= i < len(levels) for i in indices):
        raise InvalidValueError(
            f"{name} has {len(levels)} feature levels ({', '.join(str(i) for i in range(len(levels)))}: "
            f"{', '.join(info['module'] for info in levels)}); got out_indices={tuple(indices)}"
        )
    mean, std = model.mean.flatten().tolist(), model.std.flatten().tolist()
    if callable(getattr(net, "pyramid", None)):  # a network with its own extractor (timm's forward_intermediates)
        return net.eval().pyramid([i % len(levels) for i in indices], mean, std).eval()
    return FeatureExtractor(net.eval(), [levels[i] for i in indices], mean, std).eval()


def _indices(out_indices: Any) -> list[int]:
    """``out_indices`` as a list of whole numbers (a tuple or list of ints, or one int), else a one-line error."""
    if isinstance(out_indices, int) and not isinstance(out_indices, bool):
        return [out_indices]
    if isinstance(out_indices, (list, tuple)) and all(
        isinstance(i, int) and not isinstance(i, bool) for i in out_indices
    ):
        return list(out_indices)
    raise InvalidValueError(
        f"out_indices must be a tuple of whole numbers (feature levels, e.g. (1, 2, 3)), got {out_indices!r}"
    )
