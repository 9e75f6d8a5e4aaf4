"""Vision Transformer (Dosovitskiy et al. 2020, "An image is worth 16x16 words").

An image is cut into ``P×P`` patches; each patch is flattened and projected to an ``embed_dim``-wide token (a
``P×P`` convolution of stride ``P`` does both at once). A learned class token is put in front, a learned
position embedding is added (attention itself knows no order), and a stack of pre-norm encoder blocks
mixes the tokens::

    x = x + Attention(LayerNorm(x))      # every token looks at every other: cost grows with L²
    x = x + MLP(LayerNorm(x))            # each token on its own

The classifier reads the class token after a last LayerNorm (``global_pool="token"``, the paper's) or
the mean of the patch tokens (``"avg"``). Position embeddings are resampled (bicubic) when an image has
another size than the one the network was built for, so 224-px weights run at 384 px; loading weights
trained at another size resamples them the same way (:meth:`Embedding.resized_entries`, for both).
Like timm's, the network names its position embedding and class token in ``no_weight_decay()``, and
the optimiser's parameter groups train them without weight decay.

ImageNet networks: ``vit_ti_16``, ``vit_s_16`` (timm's sizes), ``vit_b_16``, ``vit_l_16``, ``vit_b_32``,
``vit_l_32`` (torchvision's; ``vit_b_16`` has 86,567,656 parameters like torchvision's).
torchvision's and timm's weight files load through a converter / as they are.

Fashion-MNIST networks (28×28): ``vit_lite``, the pure ViT with 4×4 patches (49 tokens + class token,
width 128, depth 6, 4 heads), and ``vit_lite_conv``, the same encoder behind a two-convolution stem
(the "hybrid" ViT of the paper, section 3.1; Xiao et al. 2021 show such early convolutions make ViTs
train better on small data): 3×3 conv + BN + ReLU at 28×28, a stride-2 one to 14×14, then 2×2 patches
→ 7×7 tokens. Its classifier reads the mean token.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.data.constants import FMNIST_MEAN, FMNIST_STD, IMAGENET_MEAN, IMAGENET_STD, TORCHVISION_IN1K, TORCHVISION_URL
from zoo.errors import ZooError
from zoo.layers.network import Network, linear_or_identity
from zoo.layers.transformer import Attention, Mlp, conv_stem, drop_path, stochastic_depth_rates
from zoo.registry import register_model, weight_table

PAPER = "Dosovitskiy et al. 2020, An image is worth 16x16 words: Transformers for image recognition at scale"


def resample_pos_embed(pos_embed: Tensor, grid: tuple[int, int], prefix: int = 1) -> Tensor:
    """Position embeddings ``(1, prefix + h·w, D)`` resampled (bicubic) to a ``grid`` of patches.

    The ``prefix`` tokens (the class token) keep their embedding; the patch part is laid out as its
    square grid, interpolated, and flattened back.
    """
    cls_pos, patch_pos = pos_embed[:, :prefix], pos_embed[:, prefix:]
    old = int(math.isqrt(patch_pos.shape[1]))
    if (old, old) == tuple(grid):
        return pos_embed
    patch_pos = patch_pos.reshape(1, old, old, -1).permute(0, 3, 1, 2)
    patch_pos = F.interpolate(patch_pos, size=grid, mode="bicubic", align_corners=False)
    return torch.cat([cls_pos, patch_pos.permute(0, 2, 3, 1).flatten(1, 2)], dim=1)


torch.fx.wrap("resample_pos_embed")  # shape-dependent: a leaf when zoo.backbone traces the network


class Embedding(nn.Module):
    """Pixels ``(N, C, H, W)`` → tokens ``(N, 1 + h·w, embed_dim)``: patches projected, class token, positions.

    ``stem_chans`` > 0 puts a two-convolution stem (3×3 conv-BN-ReLU, 3×3/2 conv-BN-ReLU) before the
    patch projection, the hybrid ViT: its patches are then cut from the stem's map.
    """

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int, stem_chans: int = 0) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        stride = 2 if stem_chans else 1
        self.grid = (img_size // stride // patch_size,) * 2
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid[0] * self.grid[1], embed_dim))
        self.stem = conv_stem(in_chans, stem_chans) if stem_chans else nn.Identity()
        in_chans = stem_chans or in_chans
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.patch_size, self.stride = patch_size, stride * patch_size
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(self.stem(x))  # (N, embed_dim, h, w): one vector per patch
        grid = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)  # (N, h·w, embed_dim)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + resample_pos_embed(self.pos_embed, grid)

    def resized_entries(self, state: dict[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
        """``{prefix + "pos_embed": resampled}`` when ``state``'s was trained at another size, else ``{}``.

        The one place weights are fitted to this grid: ``load_state_dict`` (through
        ``_load_from_state_dict``) and :meth:`VisionTransformer.adapt_state` (the zoo's loaders, which
        check every key's shape before loading) both call it.
        """
        key = prefix + "pos_embed"
        if key in state and state[key].shape != self.pos_embed.shape:
            return {key: resample_pos_embed(state[key], self.grid)}
        return {}

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        state_dict.update(self.resized_entries(state_dict, prefix))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class Block(nn.Module):
    """Pre-norm encoder block: ``x + Attention(LN(x))``, then ``x + MLP(LN(x))``. Tokens in, tokens out."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop: float = 0.0, drop_path_rate: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.drop = nn.Dropout(drop)
        self.drop_path = drop_path(drop_path_rate)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.drop(self.attn(self.norm1(x))))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class VisionTransformer(Network):
    """Patch embedding, class token, ``depth`` encoder blocks, LayerNorm, linear classifier.

    ``(N, in_chans, img_size, img_size)`` → ``(N, num_classes)``; other image sizes (multiples of the
    patch) work, with resampled position embeddings.

    Args:
        img_size, patch_size: the image the position embeddings are made for, and the patch side.
        embed_dim, depth, num_heads, mlp_ratio: token width, blocks, heads per block, MLP width /
            ``embed_dim``. ``dim`` is a deprecated alias of ``embed_dim`` (timm's name, Swin's too).
        global_pool: ``"token"`` (class token) or ``"avg"`` (mean of the patch tokens).
        stem_chans: channels of a convolutional stem before the patches (0: none, the pure ViT).
        drop_rate, drop_path_rate: dropout after attention/MLP, and stochastic depth at the last block.

    Network interface: ``forward_features`` returns the normalised tokens ``(N, 1 + h·w, embed_dim)``;
    ``zoo.backbone`` returns the patch tokens of chosen blocks as ``(N, embed_dim, h, w)`` maps.
    """

    first_conv_name = "embed.proj"
    classifier_name = "head"
    token_features = True  # forward_features returns tokens, not a map

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        global_pool: str = "token",
        stem_chans: int = 0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        dim: int | None = None,
    ) -> None:
        super().__init__()
        if dim is not None:
            warnings.warn("VisionTransformer(dim=...) is deprecated: use embed_dim", FutureWarning, stacklevel=2)
            embed_dim = dim
        if global_pool not in ("token", "avg"):
            raise ZooError(f"ViT global_pool must be 'token' or 'avg', got {global_pool!r}")
        self.global_pool = global_pool
        self.embed = Embedding(img_size, patch_size, in_chans, embed_dim, stem_chans)
        self.pos_drop = nn.Dropout(drop_rate)
        rates = stochastic_depth_rates(drop_path_rate, depth)
        self.blocks = nn.Sequential(*(Block(embed_dim, num_heads, mlp_ratio, drop_rate, rate) for rate in rates))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = linear_or_identity(embed_dim, num_classes)
        self.num_features = self.embed_dim = embed_dim
        self.input_size = (in_chans, img_size, img_size)  # what the position embeddings are made for
        reduction = self.embed.stride
        self.feature_info = [
            dict(module=f"blocks.{i}", num_chs=embed_dim, reduction=reduction, prefix_tokens=1) for i in range(depth)
        ]
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        if isinstance(self.head, nn.Linear):
            nn.init.zeros_(self.head.weight)  # a zero head, as timm and torchvision start it

    def forward_features(self, x: Tensor) -> Tensor:
        return self.norm(self.blocks(self.pos_drop(self.embed(x))))  # (N, 1 + h·w, embed_dim)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = x[:, 0] if self.global_pool == "token" else x[:, 1:].mean(dim=1)
        return x if pre_logits else self.head(x)

    def stages(self) -> list[tuple[str, list[nn.Module]]]:
        blocks = [(f"block{i + 1}", [block]) for i, block in enumerate(self.blocks)]
        return [("stem", [self.embed]), *blocks, ("pre_logits", [self.norm]), ("head", [self.head])]

    def attention_blocks(self) -> list[Attention]:
        """The attention layer of every block, from the input up (for attention pictures)."""
        return [block.attn for block in self.blocks]

    def no_weight_decay(self) -> set[str]:
        """The parameters trained without weight decay besides biases and norms (timm's and torchvision's
        choice): the position embedding and the class token."""
        return {"embed.pos_embed", "embed.cls_token"}

    def adapt_state(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Weights trained at another image size: their position embeddings resampled to this grid."""
        return {**state, **self.embed.resized_entries(state, "embed.")}


class HybridVisionTransformer(VisionTransformer):
    """A ViT whose patches are cut from a small convolutional stem's map (see the module doc)."""

    first_conv_name = "embed.stem.0"


# ---- torchvision importer ------------------------------------------------------------------------
_TV_RENAMES = (
    ("conv_proj.", "embed.proj."),
    ("class_token", "embed.cls_token"),
    ("encoder.pos_embedding", "embed.pos_embed"),
    ("encoder.ln.", "norm."),
    ("heads.head.", "head."),
    (".ln_1.", ".norm1."),
    (".ln_2.", ".norm2."),
    (".self_attention.in_proj_", ".attn.qkv."),
    (".self_attention.out_proj.", ".attn.proj."),
    (".mlp.0.", ".mlp.fc1."),
    (".mlp.3.", ".mlp.fc2."),
    ("encoder.layers.encoder_layer_", "blocks."),
)


def convert_torchvision(state: dict[str, Any]) -> dict[str, Tensor]:
    """A state dict of ``torchvision.models.vit_*`` → this module's keys (q, k, v stay in one matrix)."""
    out = {}
    for key, value in state.items():
        for old, new in _TV_RENAMES:
            key = key.replace(old, new)
        out[key] = value
    return out


def convert_timm(state: dict[str, Any]) -> dict[str, Tensor]:
    """A state dict of timm's ``vit_*`` (its published ``model.safetensors``) → this module's keys."""
    renames = (("patch_embed.proj.", "embed.proj."), ("cls_token", "embed.cls_token"), ("pos_embed", "embed.pos_embed"))
    out = {}
    for key, value in state.items():
        for old, new in renames:
            key = new + key[len(old) :] if key.startswith(old) else key
        out[key] = value
    return out


# ---- weights and registered builders --------------------------------------------------------------
# timm's AugReg weights (Steiner et al. 2021): pixels normalised to [-1, 1], crop 0.9, bicubic
_TIMM = dict(
    dataset="imagenet-1k",
    origin="timm",
    filename="model.safetensors",
    convert=convert_timm,
    num_classes=1000,
    class_names="imagenet-1k",
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    resize=248,
    interpolation="bicubic",
)


def _tv(file: str, resize: int = 256) -> dict[str, Any]:
    return {**TORCHVISION_IN1K, "url": TORCHVISION_URL + file, "convert": convert_torchvision, "resize": resize}


def _timm(repo: str) -> dict[str, Any]:
    return {**_TIMM, "hf_hub_id": "timm/" + repo}


WEIGHTS = weight_table(
    {
        "vit_ti_16.augreg_in21k_ft_in1k": _timm("vit_tiny_patch16_224.augreg_in21k_ft_in1k"),
        "vit_s_16.augreg_in21k_ft_in1k": _timm("vit_small_patch16_224.augreg_in21k_ft_in1k"),
        "vit_b_16.tv_in1k": _tv("vit_b_16-c867db91.pth"),
        "vit_b_16.augreg2_in21k_ft_in1k": _timm("vit_base_patch16_224.augreg2_in21k_ft_in1k"),
        "vit_b_32.tv_in1k": _tv("vit_b_32-d86f8d99.pth"),
        "vit_l_16.tv_in1k": _tv("vit_l_16-852ce7e3.pth", resize=242),
        "vit_l_32.tv_in1k": _tv("vit_l_32-c7638314.pth"),
        "vit_lite_conv.fmnist": dict(dataset="fashion_mnist", recipe="recipes/vit_lite_conv_fmnist.yaml"),
    }
)
_NAMES = dict(family="vit", weights=WEIGHTS, paper=PAPER)
_IMAGENET = dict(input_size=(3, 224, 224), num_classes=1000, mean=IMAGENET_MEAN, std=IMAGENET_STD, **_NAMES)
_FMNIST = dict(input_size=(1, 28, 28), num_classes=10, mean=FMNIST_MEAN, std=FMNIST_STD, **_NAMES)


@register_model(num_params=5_717_416, **_IMAGENET)
def vit_ti_16(**kwargs) -> VisionTransformer:
    """ViT-Ti/16 (timm's tiny): width 192, 12 blocks, 3 heads."""
    return VisionTransformer(patch_size=16, embed_dim=192, depth=12, num_heads=3, **kwargs)


@register_model(num_params=22_050_664, **_IMAGENET)
def vit_s_16(**kwargs) -> VisionTransformer:
    """ViT-S/16 (timm's small): width 384, 12 blocks, 6 heads."""
    return VisionTransformer(patch_size=16, embed_dim=384, depth=12, num_heads=6, **kwargs)


@register_model(num_params=86_567_656, **_IMAGENET)
def vit_b_16(**kwargs) -> VisionTransformer:
    """ViT-B/16: width 768, 12 blocks, 12 heads, 196 patches of 16×16 at 224 px."""
    return VisionTransformer(patch_size=16, embed_dim=768, depth=12, num_heads=12, **kwargs)


@register_model(num_params=88_224_232, **_IMAGENET)
def vit_b_32(**kwargs) -> VisionTransformer:
    """ViT-B/32: ViT-B on 49 patches of 32×32."""
    return VisionTransformer(patch_size=32, embed_dim=768, depth=12, num_heads=12, **kwargs)


@register_model(num_params=304_326_632, **_IMAGENET)
def vit_l_16(**kwargs) -> VisionTransformer:
    """ViT-L/16: width 1024, 24 blocks, 16 heads."""
    return VisionTransformer(patch_size=16, embed_dim=1024, depth=24, num_heads=16, **kwargs)


@register_model(num_params=306_535_400, **_IMAGENET)
def vit_l_32(**kwargs) -> VisionTransformer:
    """ViT-L/32: ViT-L on 32×32 patches."""
    return VisionTransformer(patch_size=32, embed_dim=1024, depth=24, num_heads=16, **kwargs)


_LITE = dict(img_size=28, embed_dim=128, depth=6, num_heads=4, mlp_ratio=2.0)


@register_model(**_FMNIST)
def vit_lite(**kwargs) -> VisionTransformer:
    """The pure ViT for 28×28: 4×4 patches (49 tokens + class token), width 128, 6 blocks of 4 heads."""
    return VisionTransformer(**{**_LITE, "patch_size": 4, **kwargs})


@register_model(**_FMNIST)
def vit_lite_conv(**kwargs) -> HybridVisionTransformer:
    """``vit_lite``'s encoder behind a two-convolution stem (28 → 14), 2×2 patches → 7×7 tokens, mean pooling."""
    return HybridVisionTransformer(**{**_LITE, "patch_size": 2, "stem_chans": 64, "global_pool": "avg", **kwargs})
