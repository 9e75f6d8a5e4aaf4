"""GoogLeNet, Inception v1 (Szegedy et al. 2014, "Going deeper with convolutions").

Wider rather than deeper: each inception module runs four branches side by side on the same input and
concatenates their outputs along the channels::

    input ─┬─ 1×1 ───────────────┐
           ├─ 1×1 reduce → 3×3 ──┤
           ├─ 1×1 reduce → 5×5 ──┼─ concat → next module
           └─ 3×3 max pool → 1×1 ┘

The 1×1 "reduce" convolutions shrink the channels before the expensive 3×3 and 5×5 kernels, which is
what keeps nine such modules at a few million parameters. Then one global average pool and a single
FC layer (1024 → 1000) replace AlexNet's and VGG's large FC layers. Two auxiliary classifiers (after
4a and 4d: avg pool to 4×4, 1×1 conv to 128, FC 2048 → 1024 → classes, dropout 0.7) push gradient into
the middle of the network during training (``aux_logits=True``; their loss is added with weight 0.3)
and are dropped at inference.

``googlenet`` is torchvision's layout (so ``googlenet.tv_in1k`` loads torchvision's ImageNet file with
no renaming): BatchNorm after every conv (added later, in Inception v2; the 2014 network had none) and,
like the Caffe-to-TensorFlow port torchvision copied, a 3×3 kernel in the "5×5" branch. Where the
parameters and the FLOPs sit at 224×224 (``zoo info googlenet``; 1 multiply-add = 2 FLOPs)::

    part                 output       parameters  share  multiply-adds  share
    stem (conv1-3)       192×56×56       124,736   1.9%       478M      32%
    inception 3a, 3b     480×28×28       496,096   7.5%       387M      26%
    inception 4a-4e      832×14×14     2,653,088  40.0%       519M      35%
    inception 5a, 5b     1024×7×7      2,325,984  35.1%       114M       8%
    fc                   1000          1,025,000  15.5%         1M       0%
                                 total 6,624,904            1,498M = 3.0 GFLOPs

The FC layer that held 94% of AlexNet's parameters holds 15% here; the stem, 2% of the parameters,
does a third of the arithmetic on the large early maps.

The course's hand count (comparison table: 6.4M parameters, 2B FLOPs) matches no layout built here.
Counted: torchvision's layout has 6,624,904 parameters without the auxiliary heads (13,004,888 with
them); the paper's own network, true 5×5 kernels and conv biases instead of BatchNorm, has 6,998,552
and 1.58G multiply-adds. The paper says "1.5 billion multiply-adds" (torchvision's layout: 1.50G);
2B lies between that and the 3.0 GFLOPs of counting the multiply and the add separately.

``googlenet_lite`` keeps the layout (a stem, two 3x modules, a pool, five 4x modules, a pool, two 5x
modules, global pool, one FC) for 28×28 Fashion-MNIST: a one-conv 3×3 stem, a quarter of the widths,
true 5×5 kernels, and the three pools taking 28 → 14 → 7 → 4.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from zoo.data.constants import FMNIST_MEAN, FMNIST_STD, TORCHVISION_IN1K, TORCHVISION_URL
from zoo.layers.network import Network, linear_or_identity
from zoo.registry import register_model, weight_table

GOOGLENET_PARAMS = 6_624_904  # torchvision's count, without the auxiliary heads
AUX_WEIGHT = 0.3  # the paper's weight of each auxiliary classifier's loss

# Each module: 1×1, 3×3 reduce, 3×3, 5×5 reduce, 5×5, pool projection (the paper's Table 1)
MODULES: dict[str, tuple[int, int, int, int, int, int]] = {
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}
STAGES = (("stage1", ("3a", "3b")), ("stage2", ("4a", "4b", "4c", "4d", "4e")), ("stage3", ("5a", "5b")))


class BasicConv2d(nn.Module):
    """conv (no bias) → BatchNorm (eps 1e-3) → ReLU, named as torchvision's (``.conv``, ``.bn``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """Four parallel branches concatenated: 1×1; 1×1 → 3×3; 1×1 → k×k (``kernel5``: 5, or torchvision's 3);
    3×3 max pool → 1×1. Output channels: ``ch1x1 + ch3x3 + ch5x5 + pool_proj``."""

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        kernel5: int = 5,
    ) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, 1)
        self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3red, 1), BasicConv2d(ch3x3red, ch3x3, 3, padding=1))
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, 1), BasicConv2d(ch5x5red, ch5x5, kernel5, padding=kernel5 // 2)
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), BasicConv2d(in_channels, pool_proj, 1)
        )
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)


class InceptionAux(nn.Module):
    """An auxiliary classifier: avg pool to 4×4 → 1×1 conv 128 → FC 2048 → 1024 → classes (dropout 0.7)."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 1024, dropout: float = 0.7) -> None:
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(nn.functional.adaptive_avg_pool2d(x, (4, 4)))
        return self.fc2(self.dropout(torch.relu(self.fc1(torch.flatten(x, 1)))))


class GoogLeNet(Network):
    """Stem, nine inception modules in three stages, global average pool, dropout, one FC layer.

    Args:
        width: multiplier of every module's channels (1: the paper's).
        stem: ``"imagenet"`` (7×7/2 conv, pool, 1×1, 3×3, pool: 224 → 28) or ``"small"`` (one 3×3 conv, no
            pool: 28-px images keep their pixels).
        kernel5: kernel of the "5×5" branch (torchvision's layout: 3).
        aux_logits: build the two auxiliary classifiers. In training mode their logits are kept in
            ``aux_outputs`` after each forward (the classification task adds ``AUX_WEIGHT`` × their loss);
            the forward pass returns the main logits either way, and in eval mode the heads do not run.
        dropout: before the FC layer (torchvision: 0.2; the paper: 0.4).

    Network interface: features are 5b's map, the embedding is its global average (``num_features``
    channels), feature levels the outputs of 3b, 4e and 5b.
    """

    first_conv_name = "conv1.conv"
    classifier_name = "fc"
    aux_weight = AUX_WEIGHT

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        width: float = 1.0,
        stem: str = "imagenet",
        kernel5: int = 3,
        aux_logits: bool = False,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        scaled = {name: tuple(max(4, round(c * width)) for c in spec) for name, spec in MODULES.items()}
        stem_width = max(8, round(192 * width))
        if stem == "imagenet":
            self.conv1 = BasicConv2d(in_chans, max(8, round(64 * width)), 7, stride=2, padding=3)
            self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            self.conv2 = BasicConv2d(self.conv1.bn.num_features, max(8, round(64 * width)), 1)
            self.conv3 = BasicConv2d(self.conv2.bn.num_features, stem_width, 3, padding=1)
            self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            reductions = (8, 16, 32)
        else:  # one 3×3 conv at full resolution: 28 → 14 (maxpool3) → 7 (maxpool4), as 224 → 28 → 14 → 7
            self.conv1 = BasicConv2d(in_chans, stem_width, 3, padding=1)
            self.maxpool1 = self.conv2 = self.conv3 = self.maxpool2 = nn.Identity()
            self.maxpool2 = nn.MaxPool2d(3, stride=2, padding=1)
            reductions = (2, 4, 8)
        channels = stem_width
        for name, spec in scaled.items():
            module = Inception(channels, *spec, kernel5=kernel5)
            setattr(self, name, module)
            channels = module.out_channels
            if name == "inception3b":
                self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            if name == "inception4e":
                self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.aux1 = InceptionAux(self.inception4a.out_channels, num_classes) if aux_logits else None
        self.aux2 = InceptionAux(self.inception4d.out_channels, num_classes) if aux_logits else None
        self.aux_outputs: list[Tensor] = []
        self.input_size = (in_chans, 224, 224) if stem == "imagenet" else (in_chans, 28, 28)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = linear_or_identity(channels, num_classes)
        self.num_features = channels
        self.feature_info = [
            dict(module=f"inception{name}", num_chs=getattr(self, f"inception{name}").out_channels, reduction=r)
            for name, r in zip(("3b", "4e", "5b"), reductions)
        ]

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        aux_on = self.training and self.aux1 is not None
        self.aux_outputs = []
        x = self.inception4a(x)
        if aux_on:
            self.aux_outputs.append(self.aux1(x))
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        if aux_on:
            self.aux_outputs.append(self.aux2(x))
        x = self.maxpool4(self.inception4e(x))
        return self.inception5b(self.inception5a(x))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.dropout(torch.flatten(self.avgpool(x), 1))
        return x if pre_logits else self.fc(x)

    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        for name in ("aux1", "aux2"):
            aux = getattr(self, name)
            if aux is not None:
                aux.fc2 = nn.Linear(aux.fc1.out_features, num_classes) if num_classes else nn.Identity()

    def stages(self) -> list[tuple[str, list[nn.Module]]]:
        stem = [m for m in (self.conv1, self.conv2, self.conv3) if not isinstance(m, nn.Identity)]
        groups = [("stem", stem)]
        groups += [(stage, [getattr(self, f"inception{n}") for n in names]) for stage, names in STAGES]
        aux = [m for m in (self.aux1, self.aux2) if m is not None]
        return [*groups, ("head", [self.fc, *aux])]

    @property
    def metadata(self) -> dict[str, str]:
        """Shown by ``zoo info``: the parameters and multiply-adds of the stem, each stage of modules and the FC."""
        from zoo.layer_table import stage_table

        rows = stage_table(self, self.input_size)
        params, flops = sum(r.params for r in rows) or 1, sum(r.flops for r in rows) or 1
        names = {"stage1": "inception 3a-3b", "stage2": "inception 4a-4e", "stage3": "inception 5a-5b", "head": "fc"}
        parts = [
            f"{names.get(r.name, r.name)} {r.params:,} ({100 * r.params / params:.1f}%) / "
            f"{r.flops / 2e6:,.0f}M ({100 * r.flops / flops:.0f}%)"
            for r in rows
        ]
        return {"parameters / multiply-adds by part": " · ".join(parts)}


# ---- torchvision importer ------------------------------------------------------------------------
def convert_torchvision(state: dict[str, Any]) -> dict[str, Tensor]:
    """A state dict of ``torchvision.models.googlenet`` → ``googlenet``'s keys: the same names; the auxiliary
    heads are dropped, as torchvision drops them when it loads these weights with ``aux_logits=False``."""
    return {key: value for key, value in state.items() if not key.startswith(("aux1.", "aux2."))}


# torchvision's googlenet weights come from Google's TensorFlow model, which takes (x - 0.5) / 0.5: torchvision
# normalises with ImageNet's statistics and undoes it inside the network (transform_input=True); the zoo's
# normalisation buffer holds the statistics the weights really expect.
WEIGHTS = weight_table(
    {
        "googlenet.tv_in1k": dict(
            url=TORCHVISION_URL + "googlenet-1378be20.pth",
            convert=convert_torchvision,
            **{**TORCHVISION_IN1K, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
        ),
        "googlenet_lite.fmnist": dict(dataset="fashion_mnist", recipe="recipes/googlenet_lite_fmnist_restart.yaml"),
    }
)
_NAMES = dict(family="googlenet", weights=WEIGHTS)
_PAPER = "Szegedy et al. 2014, Going deeper with convolutions"


@register_model(
    input_size=(3, 224, 224),
    num_classes=1000,
    num_params=GOOGLENET_PARAMS,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    paper=_PAPER,
    **_NAMES,
)
def googlenet(**kwargs) -> GoogLeNet:
    """torchvision's GoogLeNet: BatchNorm, 3×3 in the "5×5" branch; ``aux_logits=True`` adds the training heads."""
    return GoogLeNet(**kwargs)


@register_model(input_size=(1, 28, 28), num_classes=10, mean=FMNIST_MEAN, std=FMNIST_STD, paper=_PAPER, **_NAMES)
def googlenet_lite(**kwargs) -> GoogLeNet:
    """GoogLeNet's modules at a quarter width for 28×28 images: a 3×3 stem, true 5×5 kernels, dropout 0.2."""
    return GoogLeNet(**{**dict(width=0.25, stem="small", kernel5=5), **kwargs})
