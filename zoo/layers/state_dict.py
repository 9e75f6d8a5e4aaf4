"""Turning a state dict saved in another library's layout into a zoo network's, checked key by key.

Every ImageNet importer (``alexnet_tv.tv_in1k``, ``resnet50.tv_in1k``...) is a renaming of keys
followed by the same check: the renamed dict must have exactly the keys of the zoo network and the
same shape under each key. The check runs against a network built on the ``meta`` device, so it
costs no memory even for VGG-19; the head size is read from the file, so a torchvision model that a
user fine-tuned to 37 classes converts as well as the published 1000-class file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from zoo.errors import WeightsError


def _listing(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown} (+{len(keys) - limit} more)" if len(keys) > limit else shown


def convert_state_dict(
    state: dict[str, Any],
    *,
    build: Callable[[int], nn.Module],
    head: str,
    rename: Callable[[str], str] = lambda key: key,
    source: str,
) -> dict[str, Tensor]:
    """``state`` (another library's keys) → the keys of ``build(num_classes)``, or a ``WeightsError``.

    Args:
        state: the loaded state dict; a ``"module."`` prefix (DDP) and a ``{"state_dict": ...}`` /
            ``{"model": ...}`` wrapper are removed first.
        build: the zoo network for a head of ``num_classes`` (called on the meta device).
        head: key of the source's classifier weight, whose first dimension is ``num_classes``.
        rename: source key → zoo key.
        source: what the state dict should be (``"torchvision resnet50"``), for the error message.
    """
    for wrapper in ("state_dict", "model"):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    state = {key.removeprefix("module."): value for key, value in state.items()}
    if head not in state or not isinstance(state[head], Tensor):
        raise WeightsError(
            f"this state dict is not a {source} checkpoint: it has no {head!r} "
            f"(its first keys: {_listing(list(state))}); convert only files saved from {source}"
        )
    with torch.device("meta"):
        expected = build(int(state[head].shape[0])).state_dict()
    converted = {rename(key): value for key, value in state.items()}
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    mismatched = [
        f"{key} {tuple(converted[key].shape)}≠{tuple(value.shape)}"
        for key, value in expected.items()
        if key in converted and tuple(converted[key].shape) != tuple(value.shape)
    ]
    problems = [
        f"missing {_listing(missing)}" if missing else "",
        f"unexpected {_listing(unexpected)}" if unexpected else "",
        f"shape mismatch {_listing(mismatched)}" if mismatched else "",
    ]
    if any(problems):
        raise WeightsError(
            f"this state dict does not fit {source}: " + "; ".join(p for p in problems if p)
            + " (is it a checkpoint of another architecture or depth?)"
        )
    return {key: converted[key] for key in expected}


def same_keys_converter(source: str, build: Callable[[int], nn.Module], head: str) -> Callable[[dict[str, Any]], dict[str, Tensor]]:
    """The converter of files whose keys already are the zoo network's (torchvision's ResNet, VGG,
    EfficientNet): nothing renamed, everything checked."""

    def convert(state: dict[str, Any]) -> dict[str, Tensor]:
        return convert_state_dict(state, build=build, head=head, source=source)

    convert.__name__ = "convert_" + source.replace(" ", "_")
    return convert
