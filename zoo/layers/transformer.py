"""The pieces of a Transformer encoder block, written out as the course teaches them.

* :class:`Attention`: multi-head self-attention. One linear layer makes the queries, keys and values
  of every head at once (``qkv``); each head computes ``softmax(Q Kᵀ / √d) V`` over the tokens;
  the heads are concatenated and mixed by ``proj``. The product itself goes through
  ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels) unless the attention weights
  are asked for (``keep_attention``: attention pictures), when it is computed term by term.
* :class:`Mlp`: the position-wise feed-forward network, ``fc1 → GELU → fc2``.
* :func:`drop_path`: stochastic depth (Huang et al. 2016), timm's ``DropPath`` when the rate is > 0.
* :func:`conv_stem`: the two convolutions a hybrid transformer puts before its patches.

The names (``qkv``, ``proj``, ``fc1``, ``fc2``) are timm's, so timm's files load without renaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Attention(nn.Module):
    """Multi-head self-attention over ``(N, L, dim)`` tokens (optionally with an additive ``bias``).

    Args:
        dim: token width; split into ``num_heads`` heads of ``dim / num_heads``.
        qkv_bias: biases on the query/key/value projection (ViT and Swin have them).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.keep_attention = False  # True: store the attention weights (N, heads, L, L) in .attention
        self.attention: Tensor | None = None

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        n, length, dim = x.shape
        # (N, L, 3·dim) → 3 × (N, heads, L, head_dim)
        q, k, v = self.qkv(x).reshape(n, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        # term by term when the weights are wanted, and under torch.export / ONNX export (whose
        # replay of the fused kernel's output strides fails for masked windows; plain matmuls export everywhere)
        if self.keep_attention or torch.compiler.is_exporting():
            scores = (q * self.scale) @ k.transpose(-2, -1)  # (N, heads, L, L): every query against every key
            if bias is not None:
                scores = scores + bias
            weights = scores.softmax(dim=-1)
            if self.keep_attention:
                self.attention = weights.detach()
            out = weights @ v
        else:
            dropout = self.attn_drop if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))  # heads side by side, then mixed


class Mlp(nn.Module):
    """``fc1 → GELU → dropout → fc2 → dropout``: each token on its own, widened ``hidden`` then back."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def drop_path(rate: float) -> nn.Module:
    """Stochastic depth: timm's ``DropPath(rate)`` (a residual branch dropped per sample), identity at 0.

    timm is imported only when the rate is > 0, so that building a network for inference stays light.
    """
    if not rate:
        return nn.Identity()
    from timm.layers import DropPath

    return DropPath(rate)


def stochastic_depth_rates(rate: float, depth: int) -> list[float]:
    """The per-block rates of stochastic depth: 0 at the first block, rising linearly to ``rate`` at the last."""
    return [rate * i / max(1, depth - 1) for i in range(depth)]


def conv_stem(in_chans: int, chans: int) -> nn.Sequential:
    """A hybrid transformer's stem: 3×3 conv-BN-ReLU to ``chans/2``, then a stride-2 3×3 conv-BN-ReLU to
    ``chans`` (the ViT paper's hybrid, section 3.1; Xiao et al. 2021: early convolutions help transformers
    train on small data). Patches are then cut from its half-resolution map."""
    half = chans // 2
    return nn.Sequential(
        nn.Conv2d(in_chans, half, 3, padding=1, bias=False),
        nn.BatchNorm2d(half),
        nn.ReLU(inplace=True),
        nn.Conv2d(half, chans, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(chans),
        nn.ReLU(inplace=True),
    )
