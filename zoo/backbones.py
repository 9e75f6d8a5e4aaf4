"""``zoo.backbone``: any architecture or weights as a feature-pyramid extractor (timm's ``features_only``).

features = zoo.backbone("resnet20.fmnist", out_indices=(1, 2, 3))
maps = features(images)                  # [0, 1] pixels in, a list of maps out
features.feature_info                    # [{'module': 'layer1', 'num_chs': 16, 'reduction': 1}, ...]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from zoo import pretrained
from zoo.errors import InvalidValueError, UnknownModelError
from zoo.layers.features import FeatureExtractor
from zoo.registry import build_net, get_entry, split_name


def backbone(source: str, out_indices: Sequence[int] | None = None, **kwargs: Any) -> FeatureExtractor:
    """A :class:`~zoo.layers.features.FeatureExtractor` over the levels ``out_indices`` of ``source``.

    ``source`` is what :func:`zoo.create` (an architecture name: random weights) or :func:`zoo.load` (any
    weights) accept. ``out_indices`` index the family's ``feature_info`` (default: every level); other
    keyword arguments go to the builder (``in_chans``, ``img_size``...) or, for weights, adapt them.
    """
    text = str(source)
    arch, tag = split_name(text)
    try:
        is_arch = tag is None and get_entry(arch) is not None and "/" not in text
    except UnknownModelError:
        is_arch = False
    if is_arch:
        entry = get_entry(arch)
        net = build_net(arch, **kwargs)
        channels = kwargs.get("in_chans", entry.input_size[0])
        mean, std = _per_channel(entry.mean, channels), _per_channel(entry.std, channels)
    else:
        record = pretrained.resolve(text)
        entry = get_entry(record.arch)
        args = {**record.task_args, **kwargs}
        model_kwargs = dict(args.pop("model_kwargs", None) or {})
        net = build_net(record.arch, num_classes=args["num_classes"], in_chans=args["in_chans"], **model_kwargs)
        pretrained.load_net_state(
            net,
            record.arch,
            record.state,
            num_classes=args["num_classes"],
            in_chans=args["in_chans"],
            source_num_classes=record.task_args["num_classes"],
            source_in_chans=record.task_args["in_chans"],
            label=record.label,
        )
        mean = _per_channel(args.get("mean") or entry.mean, args["in_chans"])
        std = _per_channel(args.get("std") or entry.std, args["in_chans"])
    levels = list(net.feature_info)
    indices = list(range(len(levels))) if out_indices is None else list(out_indices)
    if not indices or any(not -len(levels) <= i < len(levels) for i in indices):
        raise InvalidValueError(
            f"{entry.name} has {len(levels)} feature levels ({', '.join(str(i) for i in range(len(levels)))}: "
            f"{', '.join(info['module'] for info in levels)}); got out_indices={tuple(indices)}"
        )
    return FeatureExtractor(net.eval(), [levels[i] for i in indices], mean, std).eval()


def _per_channel(values: Sequence[float], channels: int) -> list[float]:
    values = list(values)
    return values if len(values) == channels else [sum(values) / len(values)] * channels
