"""Swin Transformer (Liu et al. 2021, "Hierarchical vision transformer using shifted windows").

A ViT attends over all tokens (cost ∝ L²); Swin attends inside non-overlapping ``M×M`` windows (cost
∝ L·M²) and makes a pyramid like a CNN's:

* patch partition: 4×4 patches → ``C``-wide tokens on an ``H/4 × W/4`` grid (a conv of stride 4 + LN);
* window attention, with a learned bias per relative position inside the window ((2M−1)² per head;
  like timm's, the network names these tables in ``no_weight_decay()``, so they train without decay);
* shifted windows: every second block rolls the grid by ``M/2`` first, so windows straddle the previous
  block's borders and information crosses windows; a mask stops tokens that the roll brought together
  from opposite edges of the image from attending to each other;
* patch merging between stages: each 2×2 group of tokens concatenated (4C) and projected to 2C, so
  the grid halves and the width doubles (strides 4, 8, 16, 32 like a ResNet's last four stages).

ImageNet networks: ``swin_t`` (28,288,354 parameters like torchvision's), ``swin_s``, ``swin_b``; their
torchvision files load through a converter. ``swin_lite`` for 28×28 Fashion-MNIST: 2×2 patches (a
14×14 grid), windows of 7, three stages 14 → 7 → 4 of widths 48, 96, 192 with 2 blocks each (an odd grid is padded
before merging, as torchvision does); the shifted windows act in the first stage, where there are 2×2
windows (later grids fit in one window, where Swin, like torchvision, does not shift).
``swin_lite_conv`` is the hybrid of the same stages: a two-convolution stem (28 → 14) and 1×1 patches
instead of the 2×2 patch projection, as ``vit_lite_conv`` is for the ViT.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.data.constants import FMNIST_MEAN, FMNIST_STD, IMAGENET_MEAN, IMAGENET_STD, TORCHVISION_IN1K, TORCHVISION_URL
from zoo.layers.network import Network, linear_or_identity
from zoo.layers.transformer import Attention, Mlp, conv_stem, drop_path, stochastic_depth_rates
from zoo.registry import register_model, weight_table

PAPER = "Liu et al. 2021, Swin Transformer: Hierarchical vision transformer using shifted windows"


def relative_position_index(window: int) -> Tensor:
    """``(M², M²)`` indices into the ``(2M−1)²`` bias table: one entry per (Δrow, Δcol) inside a window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    delta = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)  # (M², M², 2), ≥ 0
    return delta[..., 0] * (2 * window - 1) + delta[..., 1]


def shift_mask(height: int, width: int, window: int, shift: int, device: torch.device) -> Tensor:
    """``(windows, M², M²)``: 0 between tokens from the same image region after the roll, −100 otherwise.

    Built once per (map size, window, shift, device) and kept: every shifted block at that size shares
    it. While torch.compile or torch.export traces the network it is built afresh, as part of the graph.
    """
    if torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return _build_shift_mask(height, width, window, shift, device)
    with torch.inference_mode(False), torch.no_grad():  # an ordinary tensor, usable in training too
        return _cached_shift_mask(height, width, window, shift, device)


def _build_shift_mask(height: int, width: int, window: int, shift: int, device: torch.device) -> Tensor:
    region = torch.zeros(height, width, device=device)
    bounds = ((0, -window), (-window, -shift), (-shift, None))
    for index, (rows, cols) in enumerate((r, c) for r in bounds for c in bounds):
        region[rows[0] : rows[1], cols[0] : cols[1]] = index
    region = region.view(height // window, window, width // window, window).permute(0, 2, 1, 3).reshape(-1, window**2)
    different = region.unsqueeze(1) != region.unsqueeze(2)
    return torch.zeros_like(different, dtype=torch.float).masked_fill(different, -100.0)


_cached_shift_mask = functools.lru_cache(maxsize=64)(_build_shift_mask)


def window_attention(attn: Attention, x: Tensor, window: int, shift: int, bias: Tensor) -> Tensor:
    """Self-attention of ``x`` ``(N, H, W, C)`` inside ``window×window`` windows, rolled by ``shift`` first.

    The map is padded to a multiple of the window; a map that fits in one window is not shifted.
    """
    n, height, width, channels = x.shape
    pad_h, pad_w = (-height) % window, (-width) % window
    x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    big_h, big_w = height + pad_h, width + pad_w
    if window >= big_h and window >= big_w:
        shift = 0
    if shift:
        x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
    rows, cols = big_h // window, big_w // window
    # (N, H, W, C) → (N·windows, M², C): each window's tokens in a row
    x = x.view(n, rows, window, cols, window, channels).permute(0, 1, 3, 2, 4, 5).reshape(-1, window**2, channels)
    mask = bias.unsqueeze(0)  # (1, heads, M², M²)
    if shift:
        per_window = shift_mask(big_h, big_w, window, shift, x.device)  # (windows, M², M²)
        mask = mask + per_window.repeat(n, 1, 1).unsqueeze(1)  # (N·windows, heads, M², M²)
    x = attn(x, mask)
    x = x.view(n, rows, cols, window, window, channels).permute(0, 1, 3, 2, 4, 5).reshape(n, big_h, big_w, channels)
    if shift:
        x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
    return x[:, :height, :width].contiguous()


def merge_patches(x: Tensor) -> Tensor:
    """``(N, H, W, C)`` → ``(N, ⌈H/2⌉, ⌈W/2⌉, 4C)``: each 2×2 group side by side (an odd side is padded)."""
    x = F.pad(x, (0, 0, 0, x.shape[2] % 2, 0, x.shape[1] % 2))
    return torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)


torch.fx.wrap("window_attention")  # shape-dependent: leaves when zoo.backbone traces the network
torch.fx.wrap("merge_patches")


class PatchEmbed(nn.Module):
    """Patch partition: ``(N, C, H, W)`` → ``(N, H/P, W/P, dim)`` tokens (a P×P conv of stride P, then LN).

    ``stem_chans`` > 0 cuts the patches from a two-convolution stem's half-resolution map instead
    (:func:`~zoo.layers.transformer.conv_stem`): tokens on an ``H/2P × W/2P`` grid.
    """

    def __init__(self, in_chans: int, dim: int, patch_size: int, stem_chans: int = 0) -> None:
        super().__init__()
        self.stem = conv_stem(in_chans, stem_chans) if stem_chans else nn.Identity()
        self.proj = nn.Conv2d(stem_chans or in_chans, dim, patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(dim)
        self.stride = patch_size * (2 if stem_chans else 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.proj(self.stem(x)).permute(0, 2, 3, 1))


class SwinBlock(nn.Module):
    """``x + WindowAttention(LN(x))``, then ``x + MLP(LN(x))``, on an ``(N, H, W, C)`` map."""

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float, drop_path_rate: float):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.attn.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.attn.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        nn.init.trunc_normal_(self.attn.relative_position_bias_table, std=0.02)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = drop_path(drop_path_rate)

    def relative_bias(self) -> Tensor:
        """``(heads, M², M²)``: the learned bias of every (query, key) pair of a window."""
        table, index = self.attn.relative_position_bias_table, self.attn.relative_position_index
        return table[index.flatten()].view(index.shape[0], index.shape[1], -1).permute(2, 0, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(
            window_attention(self.attn, self.norm1(x), self.window, self.shift, self.relative_bias())
        )
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2×2 neighbours concatenated (4C), LayerNorm, linear to 2C: ``(N, H, W, C)`` → ``(N, H/2, W/2, 2C)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.reduction(self.norm(merge_patches(x)))


class Stage(nn.Module):
    """Patch merging (every stage but the first), then blocks alternating plain and shifted windows."""

    def __init__(
        self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float, rates: Sequence[float], merge: bool
    ) -> None:
        super().__init__()
        self.downsample = PatchMerging(dim // 2) if merge else nn.Identity()
        self.blocks = nn.Sequential(
            *(SwinBlock(dim, num_heads, window, (i % 2) * (window // 2), mlp_ratio, rates[i]) for i in range(depth))
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.downsample(x))


class SwinTransformer(Network):
    """Patch partition, stages of (shifted) window attention joined by patch merging, LN, pool, linear.

    Args:
        patch_size: side of the first patches (4 for ImageNet).
        embed_dim: width of the first stage; each later stage doubles it.
        depths, num_heads: blocks and heads per stage.
        window: window side ``M`` (7).
        drop_path_rate: stochastic depth at the last block, rising linearly from 0 across all blocks.
        stem_chans: channels of a convolutional stem before the patches (0: none, Swin as published).

    Network interface: ``forward_features`` returns the normalised last-stage map ``(N, C, H/32, W/32)``
    (ImageNet sizes); ``zoo.backbone`` returns every stage's map, as ``(N, C, h, w)``.
    """

    first_conv_name = "patch_embed.proj"
    classifier_name = "head"

    def __init__(
        self,
        patch_size: int = 4,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window: int = 7,
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_path_rate: float = 0.0,
        stem_chans: int = 0,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim  # the first stage's width, timm's name
        self.patch_embed = PatchEmbed(in_chans, embed_dim, patch_size, stem_chans)
        rates = stochastic_depth_rates(drop_path_rate, sum(depths))
        self.layers = nn.Sequential()
        self.feature_info = []
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            dim = embed_dim * 2**i
            stage_rates = rates[sum(depths[:i]) : sum(depths[: i + 1])]
            self.layers.append(Stage(dim, depth, heads, window, mlp_ratio, stage_rates, merge=i > 0))
            self.feature_info.append(
                dict(module=f"layers.{i}", num_chs=dim, reduction=self.patch_embed.stride * 2**i, fmt="NHWC")
            )
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(self.num_features)
        self.head = linear_or_identity(self.num_features, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)  # (N, H/P, W/P, C) tokens
        return self.norm(self.layers(x)).permute(0, 3, 1, 2)  # (N, C_last, h, w)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.head(x)

    def stages(self) -> list[tuple[str, list[nn.Module]]]:
        layers = [(f"stage{i + 1}", [stage]) for i, stage in enumerate(self.layers)]
        return [("stem", [self.patch_embed]), *layers, ("pre_logits", [self.norm]), ("head", [self.head])]

    def attention_blocks(self) -> list[Attention]:
        """The attention layer of every block, stage by stage from the input up (for attention pictures)."""
        return [block.attn for stage in self.layers for block in stage.blocks]

    def no_weight_decay(self) -> set[str]:
        """The parameters trained without weight decay besides biases and norms (timm's and torchvision's
        choice): every block's relative-position bias table."""
        return {name for name, _ in self.named_parameters() if name.endswith(".relative_position_bias_table")}


class HybridSwinTransformer(SwinTransformer):
    """A Swin whose patches are cut from a small convolutional stem's map (``stem_chans`` > 0)."""

    first_conv_name = "patch_embed.stem.0"


# ---- torchvision importer ------------------------------------------------------------------------
def convert_torchvision(state: dict[str, Any]) -> dict[str, Tensor]:
    """A state dict of ``torchvision.models.swin_{t,s,b}`` → this module's keys.

    torchvision numbers one ``features`` Sequential: 0 the patch partition, then blocks and patch
    merging in turn (1 blocks, 2 merging, 3 blocks, ...); here stage ``i`` holds its merging and blocks.
    """
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "features" and parts[1] == "0":  # features.0.0 conv, features.0.2 LayerNorm
            key = "patch_embed." + {"0": "proj", "2": "norm"}[parts[2]] + "." + parts[3]
        elif parts[0] == "features":
            index = int(parts[1])
            if index % 2:  # blocks of stage (index - 1) / 2
                rest = ".".join(parts[3:]).replace("mlp.0.", "mlp.fc1.").replace("mlp.3.", "mlp.fc2.")
                key = f"layers.{(index - 1) // 2}.blocks.{parts[2]}.{rest}"
            else:  # the merging before stage index / 2
                key = f"layers.{index // 2}.downsample." + ".".join(parts[2:])
        if key.endswith("relative_position_index"):
            continue  # a buffer the zoo recomputes
        out[key] = value
    return out


# ---- weights and registered builders --------------------------------------------------------------
def _tv(file: str, resize: int) -> dict[str, Any]:
    return {
        **TORCHVISION_IN1K,
        "url": TORCHVISION_URL + file,
        "convert": convert_torchvision,
        "resize": resize,
        "interpolation": "bicubic",
    }


WEIGHTS = weight_table(
    {
        "swin_t.tv_in1k": _tv("swin_t-704ceda3.pth", 232),
        "swin_s.tv_in1k": _tv("swin_s-5e29d889.pth", 246),
        "swin_b.tv_in1k": _tv("swin_b-68c6b09e.pth", 238),
        "swin_lite.fmnist": dict(dataset="fashion_mnist", recipe="recipes/swin_lite_fmnist.yaml"),
        "swin_lite_conv.fmnist": dict(dataset="fashion_mnist", recipe="recipes/swin_lite_conv_fmnist.yaml"),
    }
)
_NAMES = dict(family="swin", weights=WEIGHTS, paper=PAPER)
_IMAGENET = dict(input_size=(3, 224, 224), num_classes=1000, mean=IMAGENET_MEAN, std=IMAGENET_STD, **_NAMES)


@register_model(num_params=28_288_354, **_IMAGENET)
def swin_t(**kwargs) -> SwinTransformer:
    """Swin-T: C = 96, blocks 2-2-6-2, heads 3-6-12-24."""
    return SwinTransformer(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), **kwargs)


@register_model(num_params=49_606_258, **_IMAGENET)
def swin_s(**kwargs) -> SwinTransformer:
    """Swin-S: C = 96, blocks 2-2-18-2."""
    return SwinTransformer(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), **kwargs)


@register_model(num_params=87_768_224, **_IMAGENET)
def swin_b(**kwargs) -> SwinTransformer:
    """Swin-B: C = 128, blocks 2-2-18-2, heads 4-8-16-32."""
    return SwinTransformer(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), **kwargs)


SWIN_LITE = dict(patch_size=2, embed_dim=48, depths=(2, 2, 2), num_heads=(2, 4, 8), window=7, mlp_ratio=2.0)


@register_model(input_size=(1, 28, 28), num_classes=10, mean=FMNIST_MEAN, std=FMNIST_STD, **_NAMES)
def swin_lite(**kwargs) -> SwinTransformer:
    """Swin for 28×28: 2×2 patches, windows of 7, stages 14 → 7 → 4 of widths 48-96-192, 2 blocks each."""
    return SwinTransformer(**{**SWIN_LITE, **kwargs})


@register_model(input_size=(1, 28, 28), num_classes=10, mean=FMNIST_MEAN, std=FMNIST_STD, **_NAMES)
def swin_lite_conv(**kwargs) -> HybridSwinTransformer:
    """``swin_lite``'s stages behind a two-convolution stem (28 → 14, 48 channels) and 1×1 patches: the same
    14 → 7 → 4 token grids, whose first tokens come from convolutions instead of a 2×2 patch projection."""
    return HybridSwinTransformer(**{**SWIN_LITE, "patch_size": 1, "stem_chans": 48, **kwargs})
