"""DETR (Carion et al. 2020, "End-to-end object detection with transformers"), sized for small images.

Detection as set prediction: a CNN backbone makes a feature map; a convolution projects it to ``embed_dim``
channels (``token_stride`` 2: one token per 2×2 cells of the map); a Transformer encoder mixes the
``h·w`` tokens; a decoder lets ``num_queries`` learned *object queries* attend to them; each query's
output gives a class (one of the classes or "no object") and a box (centre x, centre y, width, height,
normalised to [0, 1] by a sigmoid). No anchor grid, no non-maximum suppression: training matches
predictions to ground-truth objects one-to-one (the Hungarian algorithm, :mod:`zoo.tasks.matcher`).

The layers are written out as in the reference implementation (post-norm, ``nn.MultiheadAttention``):

* every encoder layer adds the 2-D sine positions to its queries and keys (not to its values);
* the decoder's content starts at zero and each query's learned embedding is its *position*, added to
  the queries and keys of the self-attention and to the queries of the cross-attention, whose keys
  carry the image positions;
* every decoder layer's output is scored, for the auxiliary losses;
* each query also owns a learned *reference point* (an anchor, as in Deformable DETR, Zhu et al. 2021):
  the box head predicts the box centre as an offset from it (in logit space) and the size from a prior
  of 0.3 of the image. The queries start spread over the image, not all at its centre, so the
  one-to-one matching has distinct guesses to choose from at the first steps.

``detr_lite``: a CIFAR ResNet-20 backbone (stride 4: a 64×64 scene gives a 16×16 map, then 8×8 = 64
tokens; the detection task starts it from ``resnet20.fmnist``), ``embed_dim`` 128, 3 encoder and 3 decoder
layers of 8 heads, 10 queries.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from zoo.data.constants import FMNIST_MEAN, FMNIST_STD
from zoo.layers.network import split_stages
from zoo.registry import build_net, register_model, weight_table

PAPER = "Carion et al. 2020, End-to-end object detection with transformers"


def sine_positions(height: int, width: int, dim: int, device: torch.device | None = None) -> Tensor:
    """``(height·width, dim)``: sines and cosines of the normalised row (first half) and column positions."""
    half = dim // 2
    rows = (torch.arange(height, device=device, dtype=torch.float) + 0.5) / height * 2 * math.pi
    cols = (torch.arange(width, device=device, dtype=torch.float) + 0.5) / width * 2 * math.pi
    freqs = 10000 ** (2 * (torch.arange(half, device=device) // 2) / half)

    def encode(values: Tensor) -> Tensor:
        angles = values[:, None] / freqs
        return torch.stack([angles[:, 0::2].sin(), angles[:, 1::2].cos()], dim=2).flatten(1)

    y, x = encode(rows), encode(cols)  # (H, half), (W, half)
    return torch.cat([y[:, None].expand(-1, width, -1), x[None].expand(height, -1, -1)], dim=2).flatten(0, 1)


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    x = x.clamp(eps, 1 - eps)
    return torch.log(x / (1 - x))


class BoxHead(nn.Module):
    """``layers`` linear layers with ReLU between them: the box head (the reference's ``MLP``; the zoo's one
    ``Mlp`` is the transformer block's, :class:`zoo.layers.transformer.Mlp`)."""

    def __init__(self, dim: int, hidden: int, out: int, layers: int) -> None:
        super().__init__()
        sizes = [dim] + [hidden] * (layers - 1) + [out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else torch.relu(layer(x))
        return x


def feed_forward(dim: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, dim))


class EncoderLayer(nn.Module):
    """``x ← LN(x + SelfAttention(q = k = x + pos, v = x))``, then ``x ← LN(x + FFN(x))``."""

    def __init__(self, dim: int, heads: int, feedforward: int, dropout: float, attn_dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=attn_dropout, batch_first=True)
        self.ffn = feed_forward(dim, feedforward, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        q = k = x + pos
        x = self.norm1(x + self.dropout(self.self_attn(q, k, x, need_weights=False)[0]))
        return self.norm2(x + self.dropout(self.ffn(x)))


class DecoderLayer(nn.Module):
    """Self-attention among the queries, cross-attention from the queries to the image tokens, FFN.

    ``query_pos`` (the queries' learned embeddings) joins the queries and keys of the self-attention and
    the queries of the cross-attention; ``memory_pos`` (the image positions) joins its keys.
    """

    def __init__(self, dim: int, heads: int, feedforward: int, dropout: float, attn_dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=attn_dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, heads, dropout=attn_dropout, batch_first=True)
        self.ffn = feed_forward(dim, feedforward, dropout)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor, query_pos: Tensor, memory_pos: Tensor) -> Tensor:
        q = k = x + query_pos
        x = self.norm1(x + self.dropout(self.self_attn(q, k, x, need_weights=False)[0]))
        attended = self.cross_attn(x + query_pos, memory + memory_pos, memory, need_weights=False)[0]
        x = self.norm2(x + self.dropout(attended))
        return self.norm3(x + self.dropout(self.ffn(x)))


class DETR(nn.Module):
    """Backbone → projection → encoder → decoder over object queries → class and box heads.

    ``(N, C, H, W)`` (normalised) → ``{"pred_logits": (N, Q, classes + 1), "pred_boxes": (N, Q, 4),
    "aux_outputs": [the same per earlier decoder layer]}``; the last class is "no object".

    ``dropout`` acts on the feed-forward layers and residual branches; ``attn_dropout`` on the attention
    weights (the reference uses 0.1 for both). It is 0 by default: on a CPU, attention with dropout takes
    PyTorch's unfused path, many times slower than the fused one.
    """

    first_conv_name = "backbone.conv1"
    classifier_name = "class_embed"
    head_stages = ("encoder", "decoder", "box_head", "head")  # the transformer learns at the full rate
    size_prior = 0.3  # the boxes' width and height before any training, as a fraction of the image

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        backbone: str = "resnet20",
        embed_dim: int = 128,
        heads: int = 8,
        encoder_layers: int = 3,
        decoder_layers: int = 3,
        feedforward: int = 512,
        num_queries: int = 10,
        token_stride: int = 2,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        dim: int | None = None,
    ) -> None:
        super().__init__()
        if dim is not None:  # the width's old name: timm's, ViT's and Swin's is embed_dim
            warnings.warn("DETR(dim=...) is deprecated: use embed_dim", FutureWarning, stacklevel=2)
            embed_dim = dim
        dim = embed_dim
        self.backbone = build_net(backbone, num_classes=0, in_chans=in_chans)
        self.backbone_name = backbone
        self.input_proj = nn.Conv2d(self.backbone.num_features, dim, token_stride, stride=token_stride)
        args = (dim, heads, feedforward, dropout, attn_dropout)
        self.encoder = nn.ModuleList(EncoderLayer(*args) for _ in range(encoder_layers))
        self.query_embed = nn.Embedding(num_queries, dim)
        self.reference_points = nn.Embedding(num_queries, 2)  # (cx, cy) in [0, 1]: one anchor per query
        nn.init.uniform_(self.reference_points.weight, 0.05, 0.95)
        self.decoder = nn.ModuleList(DecoderLayer(*args) for _ in range(decoder_layers))
        self.decoder_norm = nn.LayerNorm(dim)
        self.bbox_embed = BoxHead(dim, dim, 4, 3)
        nn.init.zeros_(self.bbox_embed.layers[-1].weight)  # every query starts at its anchor, size_prior wide
        nn.init.zeros_(self.bbox_embed.layers[-1].bias)
        self.class_embed = nn.Linear(dim, num_classes + 1)
        self.num_classes, self.num_queries, self.embed_dim = num_classes, num_queries, dim
        self.num_features = dim

    def forward_features(self, x: Tensor) -> Tensor:
        return self.backbone.forward_features(x)

    def forward(self, x: Tensor) -> dict[str, Any]:
        features = self.input_proj(self.forward_features(x))  # (N, dim, h, w)
        n, _, h, w = features.shape
        positions = sine_positions(h, w, self.embed_dim, features.device)
        memory = features.flatten(2).transpose(1, 2)  # (N, h·w, dim)
        for layer in self.encoder:
            memory = layer(memory, positions)
        # a copy, not a view: under no_grad, module hooks (FLOP counters) refuse a view of a parameter
        query_pos = self.query_embed.weight.unsqueeze(0).repeat(n, 1, 1)
        out, outputs = torch.zeros_like(query_pos), []
        for layer in self.decoder:
            out = layer(out, memory, query_pos, positions)
            outputs.append(self.decoder_norm(out))
        hidden = torch.stack(outputs)  # (layers, N, Q, dim)
        logits, offsets = self.class_embed(hidden), self.bbox_embed(hidden)
        prior = torch.cat(
            [
                inverse_sigmoid(self.reference_points.weight),
                inverse_sigmoid(offsets.new_full((1, 2), self.size_prior)).expand(self.num_queries, -1),
            ],
            dim=1,
        )  # (Q, 4): each query's anchor box in logit space
        boxes = (offsets + prior).sigmoid()
        return {
            "pred_logits": logits[-1],
            "pred_boxes": boxes[-1],
            "aux_outputs": [{"pred_logits": a, "pred_boxes": b} for a, b in zip(logits[:-1], boxes[:-1])],
        }

    def get_classifier(self) -> nn.Module:
        return self.class_embed

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh class head for ``num_classes`` classes (+ "no object")."""
        self.class_embed = nn.Linear(self.embed_dim, num_classes + 1).to(self.class_embed.weight.device)
        self.num_classes = num_classes

    def stages(self) -> list[tuple[str, list[nn.Module]]]:
        backbone = [(f"backbone.{name}", modules) for name, modules in split_stages(self.backbone)[0]]
        backbone[0] = ("stem", backbone[0][1])
        return [
            *backbone,
            ("encoder", [self.input_proj, self.encoder]),
            ("decoder", [self.query_embed, self.reference_points, self.decoder, self.decoder_norm]),
            ("box_head", [self.bbox_embed]),
            ("head", [self.class_embed]),
        ]


WEIGHTS = weight_table(
    {
        # the recipe's two runs: the backbone from resnet20.fmnist, and (its header's command) from scratch
        "detr_lite.fmnist_scenes": dict(dataset="fashion_mnist_scenes", recipe="recipes/detr_lite_fmnist_scenes.yaml"),
        "detr_lite.fmnist_scenes_scratch": dict(
            dataset="fashion_mnist_scenes", recipe="recipes/detr_lite_fmnist_scenes.yaml"
        ),
    }
)
_NAMES = dict(family="detr", weights=WEIGHTS, paper=PAPER, task="detection")


@register_model(input_size=(1, 64, 64), num_classes=10, mean=FMNIST_MEAN, std=FMNIST_STD, **_NAMES)
def detr_lite(**kwargs) -> DETR:
    """DETR for 64×64 Fashion-MNIST scenes: ResNet-20 backbone, embed_dim 128, 3+3 layers, 10 queries."""
    return DETR(**kwargs)
