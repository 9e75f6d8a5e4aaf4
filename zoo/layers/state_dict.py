"""State dicts from other layouts and other shapes: unwrapping, the key report, input-conv adaptation.

Every ImageNet importer (``alexnet_tv.tv_in1k``, ``resnet50.tv2_in1k``...) is a renaming of keys (or
none, where the zoo network already has torchvision's layout) followed by one check, done when the
weights are loaded into the network: exactly its keys, the same shape under each (:func:`key_report`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def listing(keys: list[str], limit: int = 4) -> str:
    shown = repr(keys[:limit])
    return f"{shown} (+{len(keys) - limit} more)" if len(keys) > limit else shown


def unwrap_state(state: dict[str, Any]) -> dict[str, Any]:
    """A saved state dict without its wrappers: ``{"state_dict": ...}`` / ``{"model": ...}`` and DDP's ``module.``."""
    for wrapper in ("state_dict", "model"):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    return {key.removeprefix("module."): value for key, value in state.items()}


def key_report(expected: Mapping[str, Any], state: Mapping[str, Any]) -> str:
    """What keeps ``state`` from loading into a module whose state dict is ``expected`` ("" when it fits).

    Missing keys, unexpected keys and keys whose shapes differ, each listed by name.
    """
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{key} {tuple(state[key].shape)}≠{tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and tuple(state[key].shape) != tuple(value.shape)
    ]
    problems = [
        f"missing {listing(missing)}" if missing else "",
        f"unexpected {listing(unexpected)}" if unexpected else "",
        f"shape mismatch {listing(mismatched)}" if mismatched else "",
    ]
    return "; ".join(p for p in problems if p)


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
