"""DETR (Carion et al. 2020, "End-to-end object detection with transformers"), sized for small images.

Detection as set prediction: a CNN backbone makes a feature map; a 1×1 convolution projects it to
``dim`` channels; a 2-D sine positional encoding is added and a Transformer encoder mixes the
``h·w`` tokens; a decoder lets ``num_queries`` learned *object queries* attend to them; each query's
output gives a class (one of the classes or "no object") and a box (centre x, centre y, width,
height, normalised to [0, 1] by a sigmoid). No anchors, no non-maximum suppression: training matches
predictions to ground-truth objects one-to-one (the Hungarian algorithm, :mod:`zoo.tasks.matcher`).

``detr_lite``: a CIFAR ResNet-20 backbone (stride 4: a 64×64 scene gives 16×16 = 256 tokens; the
detection task starts it from ``resnet20.fmnist``), ``dim`` 128, 3 encoder and 3 decoder layers of 8
heads (``torch.nn.TransformerEncoderLayer``/``DecoderLayer``), 10 queries. The positional encoding is
added to the encoder's input and to its output before the decoder reads it (the reference adds it in
every layer); every decoder layer's output is scored, for the auxiliary losses.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from zoo.data.constants import FMNIST_MEAN, FMNIST_STD
from zoo.layers.backbone import split_stages
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


class MLP(nn.Module):
    """``layers`` linear layers with ReLU between them (the box head)."""

    def __init__(self, dim: int, hidden: int, out: int, layers: int) -> None:
        super().__init__()
        sizes = [dim] + [hidden] * (layers - 1) + [out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else torch.relu(layer(x))
        return x


class DETR(nn.Module):
    """Backbone → projection + positions → encoder → decoder over object queries → class and box heads.

    ``(N, C, H, W)`` (normalised) → ``{"pred_logits": (N, Q, classes + 1), "pred_boxes": (N, Q, 4),
    "aux_outputs": [the same per earlier decoder layer]}``; the last class is "no object".

    ``dropout`` acts on the feed-forward layers and residual branches; ``attn_dropout`` on the attention
    weights (the reference uses 0.1 for both). It is 0 by default: on a CPU, attention with dropout takes
    PyTorch's unfused path, 20× slower than the fused one for 256 tokens, for 3/4 of a training step.
    """

    first_conv_name = "backbone.conv1"
    classifier_name = "class_embed"
    head_stages = ("encoder", "decoder", "box_head", "head")  # the transformer learns at the full rate

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        backbone: str = "resnet20",
        dim: int = 128,
        heads: int = 8,
        encoder_layers: int = 3,
        decoder_layers: int = 3,
        feedforward: int = 512,
        num_queries: int = 10,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.backbone = build_net(backbone, num_classes=0, in_chans=in_chans)
        self.backbone_name = backbone
        self.input_proj = nn.Conv2d(self.backbone.num_features, dim, 1)
        layer = nn.TransformerEncoderLayer(dim, heads, feedforward, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, encoder_layers, enable_nested_tensor=False)
        self.query_embed = nn.Embedding(num_queries, dim)
        self.decoder = nn.ModuleList(
            nn.TransformerDecoderLayer(dim, heads, feedforward, dropout, batch_first=True)
            for _ in range(decoder_layers)
        )
        self.decoder_norm = nn.LayerNorm(dim)
        for module in [*self.encoder.modules(), *self.decoder.modules()]:  # attention-weight dropout (class doc)
            if isinstance(module, nn.MultiheadAttention):
                module.dropout = attn_dropout
        self.bbox_embed = MLP(dim, dim, 4, 3)
        self.class_embed = nn.Linear(dim, num_classes + 1)
        self.num_classes, self.num_queries, self.dim = num_classes, num_queries, dim
        self.num_features = dim

    def forward_features(self, x: Tensor) -> Tensor:
        return self.backbone.forward_features(x)

    def forward(self, x: Tensor) -> dict[str, Any]:
        features = self.input_proj(self.forward_features(x))  # (N, dim, h, w)
        n, _, h, w = features.shape
        positions = sine_positions(h, w, self.dim, features.device)
        memory = self.encoder(features.flatten(2).transpose(1, 2) + positions) + positions
        queries = self.query_embed.weight.unsqueeze(0).repeat(n, 1, 1)
        out, outputs = queries, []
        for layer in self.decoder:
            out = layer(out, memory)
            outputs.append(self.decoder_norm(out))
        hidden = torch.stack(outputs)  # (layers, N, Q, dim)
        logits, boxes = self.class_embed(hidden), self.bbox_embed(hidden).sigmoid()
        return {
            "pred_logits": logits[-1],
            "pred_boxes": boxes[-1],
            "aux_outputs": [{"pred_logits": a, "pred_boxes": b} for a, b in zip(logits[:-1], boxes[:-1])],
        }

    def get_classifier(self) -> nn.Module:
        return self.class_embed

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh class head for ``num_classes`` classes (+ "no object")."""
        self.class_embed = nn.Linear(self.dim, num_classes + 1).to(self.class_embed.weight.device)
        self.num_classes = num_classes

    def stages(self) -> list[tuple[str, list[nn.Module]]]:
        backbone = [(f"backbone.{name}", modules) for name, modules in split_stages(self.backbone)[0]]
        backbone[0] = ("stem", backbone[0][1])
        return [
            *backbone,
            ("encoder", [self.input_proj, self.encoder]),
            ("decoder", [self.query_embed, self.decoder, self.decoder_norm]),
            ("box_head", [self.bbox_embed]),
            ("head", [self.class_embed]),
        ]


WEIGHTS = weight_table({})
_NAMES = dict(family="detr", weights=WEIGHTS, paper=PAPER, task="detection")


@register_model(
    input_size=(1, 64, 64), num_classes=10, mean=FMNIST_MEAN, std=FMNIST_STD, num_params=1_704_895, **_NAMES
)
def detr_lite(**kwargs) -> DETR:
    """DETR for 64×64 Fashion-MNIST scenes: ResNet-20 backbone, dim 128, 3+3 layers, 10 queries."""
    return DETR(**kwargs)
