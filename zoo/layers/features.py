"""Feature pyramids: chosen intermediate maps of a network, as timm's ``features_only`` models return them.

The maps are taken with torchvision's ``create_feature_extractor`` (a ``torch.fx`` graph cut after the
last level asked for, so the layers after it never run), named by the ``module`` of each
``feature_info`` entry the family declares. Every level comes out as an ``(N, C, h, w)`` map: a level
whose ``fmt`` is ``"NHWC"`` (Swin's stages) is permuted, and one with ``prefix_tokens`` (a ViT block's
``(N, prefix + h·w, C)`` tokens) loses its class token and is laid out on its patch grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from zoo.layers.pixels import Normalize


class FeatureExtractor(nn.Module):
    """``[0, 1]`` pixels → a list of feature maps, one per level of ``feature_info``.

    Normalisation (``mean``/``std``, per channel) happens inside, as in the zoo's tasks; uint8 input is
    scaled to [0, 1] first. ``feature_info`` is the list of the levels returned (``module``, ``num_chs``,
    ``reduction``: the stride of the map with respect to the input).
    """

    def __init__(
        self, net: nn.Module, feature_info: Sequence[dict[str, Any]], mean: Sequence[float], std: Sequence[float]
    ) -> None:
        super().__init__()
        from torchvision.models.feature_extraction import create_feature_extractor

        self.feature_info = [dict(info) for info in feature_info]
        nodes = {info["module"]: str(index) for index, info in enumerate(self.feature_info)}
        self.body = create_feature_extractor(net, return_nodes=nodes)
        self.normalize = Normalize(mean, std)

    def channels(self) -> list[int]:
        return [info["num_chs"] for info in self.feature_info]

    def reduction(self) -> list[int]:
        return [info["reduction"] for info in self.feature_info]

    def forward(self, x: Tensor) -> list[Tensor]:
        out = self.body(self.normalize(x))
        return [to_map(out[str(index)], info, x.shape[2:]) for index, info in enumerate(self.feature_info)]


def to_map(out: Tensor, info: dict[str, Any], size: Sequence[int]) -> Tensor:
    """A level's output as an ``(N, C, h, w)`` map, for an input of ``size`` (H, W) pixels."""
    if "prefix_tokens" in info:  # ViT tokens: drop the class token, put the patches back on their grid
        stride = info["reduction"]
        grid = (size[0] // stride, size[1] // stride)
        return out[:, info["prefix_tokens"] :].transpose(1, 2).reshape(out.shape[0], out.shape[2], *grid)
    if info.get("fmt") == "NHWC":
        return out.permute(0, 3, 1, 2)
    return out
