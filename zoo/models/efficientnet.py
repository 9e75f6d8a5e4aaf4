"""EfficientNet B0–B7 (Tan, Le 2019, "EfficientNet: rethinking model scaling for convolutional neural networks").

One base network, B0 (found by architecture search), and one rule to make it bigger: **compound
scaling**. With a single coefficient φ, scale

    depth (layers per stage)   d = α^φ,   α = 1.2
    width (channels)           w = β^φ,   β = 1.1
    resolution (input side)    r = γ^φ,   γ = 1.15      with α · β² · γ² ≈ 2,

so that each step of φ roughly doubles the FLOPs (which grow like d · w² · r²). The paper found α, β,
γ by a small grid search on B0 (φ = 1) and then released B1–B7 with hand-picked multipliers that
follow the rule only loosely (within 20%); those are the ones torchvision's (and so these) weights
were trained with, printed beside the rule's values::

    variant  φ  width  depth  resolution | rule: β^φ  α^φ  224·γ^φ   dropout
    B0       0  1.0    1.0    224        |       1.00 1.00  224       0.2
    B1       1  1.0    1.1    240        |       1.10 1.20  258       0.2
    B2       2  1.1    1.2    260        |       1.21 1.44  296       0.3
    B3       3  1.2    1.4    300        |       1.33 1.73  341       0.3
    B4       4  1.4    1.8    380        |       1.46 2.07  392       0.4
    B5       5  1.6    2.2    456        |       1.61 2.49  451       0.4
    B6       6  1.8    2.6    528        |       1.77 2.99  518       0.5
    B7       7  2.0    3.1    600        |       1.95 3.58  596       0.5

(``zoo info efficientnet_b3`` prints a variant's line; ``SCALING`` holds the table.) Channels are
``w · base`` rounded to a multiple of 8, layers per stage ``ceil(d · base)``.

B0 (5,288,548 parameters): a 3×3/2 stem conv of 32 channels, seven stages of **MBConv** blocks, a 1×1
conv to 1280 channels, global average pool, dropout, FC. An MBConv block (from MobileNetV2) is
1×1 expand (×1 or ×6) → k×k depthwise conv → squeeze-and-excitation (global pool → 1×1 reduce to a
quarter of the block's input channels → SiLU → 1×1 → sigmoid, scaling each channel) → 1×1 project,
with BatchNorm after each conv, SiLU (swish) activations, and a residual connection when the shape
is kept. During training the residual branch is dropped per sample with a probability that grows
linearly with depth to 0.2 (stochastic depth). Stages (expand, kernel, stride, channels, layers):
(1,3,1,16,1) (6,3,2,24,2) (6,5,2,40,2) (6,3,2,80,3) (6,5,1,112,3) (6,5,2,192,4) (6,3,1,320,1).
The module layout is torchvision's, so its ImageNet weights load without renaming
(``efficientnet_b0.tv_in1k``).

``efficientnet_lite`` is B0 scaled *down* by the same rule to φ = −4 (width 1.1⁻⁴ = 0.68, depth
1.2⁻⁴ = 0.48, so stages of 1,1,1,2,2,2,1 blocks of 16–216 channels). The resolution the rule would
pick (224 · 1.15⁻⁴ ≈ 128) is not used: Fashion-MNIST images are 28×28, which would mean φ ≈ −15 and
almost no network. Instead its stem has stride 1, as CIFAR-style networks do, so the seven stages
output 28, 14, 7, 4, 4, 2, 2 pixels. With B0's stride-2 stem (``stem_stride=2``, 14, 7, 4, 2, 2, 1, 1 pixels)
a Fashion-MNIST run was still at 84% train / 84% val accuracy after 6 epochs, where ResNet-20 was at 91%:
too few layers saw the image at a useful resolution. Stride 1 costs about 2.6× more per step on a CPU,
where depthwise convolutions are slow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from torch import Tensor, nn

from zoo.data.constants import FMNIST_MEAN, FMNIST_STD, IMAGENET_MEAN, IMAGENET_STD, TORCHVISION_IN1K, TORCHVISION_URL
from zoo.layers.network import Network, linear_or_identity
from zoo.registry import register_model, weight_table

ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15
PAPER = "Tan, Le 2019, EfficientNet: rethinking model scaling for convolutional neural networks"


@dataclass(frozen=True)
class Stage:
    """One row of B0's table: ``layers`` MBConv blocks, the first with ``stride``."""

    expand: int  # expansion ratio of the 1×1 conv (1: no expansion conv)
    kernel: int  # depthwise kernel
    stride: int
    channels: int  # output channels at width 1.0
    layers: int  # blocks at depth 1.0


B0_STAGES = (
    Stage(1, 3, 1, 16, 1),
    Stage(6, 3, 2, 24, 2),
    Stage(6, 5, 2, 40, 2),
    Stage(6, 3, 2, 80, 3),
    Stage(6, 5, 1, 112, 3),
    Stage(6, 5, 2, 192, 4),
    Stage(6, 3, 1, 320, 1),
)
B0_STEM = 32


@dataclass(frozen=True)
class Scaling:
    """A variant's compound-scaling coefficient and the multipliers its published weights use."""

    phi: float
    width: float
    depth: float
    resolution: int
    dropout: float
    bn_eps: float = 1e-5  # B5–B7 were ported from TensorFlow, whose BatchNorm adds 1e-3

    def rule(self) -> dict[str, float]:
        """What α^φ, β^φ, γ^φ give for this φ (the published multipliers are rounded from these)."""
        return {"depth": ALPHA**self.phi, "width": BETA**self.phi, "resolution": 224 * GAMMA**self.phi}

    def metadata(self) -> dict[str, str]:
        rule = self.rule()
        return {
            "compound scaling": f"φ = {self.phi:g}: depth α^φ = {rule['depth']:.2f}, width β^φ = {rule['width']:.2f}, "
            f"resolution 224·γ^φ = {rule['resolution']:.0f} (α=1.2, β=1.1, γ=1.15)",
            "multipliers used": f"depth {self.depth:g}, width {self.width:g}, resolution {self.resolution}, dropout {self.dropout:g}",
        }

    def columns(self) -> dict[str, str]:
        """The multipliers as registry columns, so that ``zoo list 'efficientnet*'`` sets the variants side by side."""
        return {
            "φ": f"{self.phi:g}",
            "depth ×": f"{self.depth:.2g}",
            "width ×": f"{self.width:.2g}",
            "resolution": str(self.resolution),
        }


SCALING = {
    "efficientnet_b0": Scaling(0, 1.0, 1.0, 224, 0.2),
    "efficientnet_b1": Scaling(1, 1.0, 1.1, 240, 0.2),
    "efficientnet_b2": Scaling(2, 1.1, 1.2, 260, 0.3),
    "efficientnet_b3": Scaling(3, 1.2, 1.4, 300, 0.3),
    "efficientnet_b4": Scaling(4, 1.4, 1.8, 380, 0.4),
    "efficientnet_b5": Scaling(5, 1.6, 2.2, 456, 0.4, bn_eps=1e-3),
    "efficientnet_b6": Scaling(6, 1.8, 2.6, 528, 0.5, bn_eps=1e-3),
    "efficientnet_b7": Scaling(7, 2.0, 3.1, 600, 0.5, bn_eps=1e-3),
    "efficientnet_lite": Scaling(-4, BETA**-4, ALPHA**-4, 28, 0.2),
}


def round_channels(channels: float, divisor: int = 8) -> int:
    """``channels`` to the nearest multiple of ``divisor``, never more than 10% below it (as in the paper's code)."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


class MBConv(nn.Module):
    """Inverted residual with squeeze-excitation. ``(N, in_chans, H, W)`` → ``(N, out_chans, H/stride, W/stride)``."""

    def __init__(
        self, in_chans: int, out_chans: int, expand: int, kernel: int, stride: int, drop_path: float, norm: Any
    ) -> None:
        super().__init__()
        # torchvision.ops imported here, not at the top: it pulls in torch._dynamo (~1 s), which
        # `import zoo.models` (every zoo.load) should not pay for a LeNet
        from torchvision.ops import Conv2dNormActivation, SqueezeExcitation, StochasticDepth

        hidden = round_channels(in_chans * expand)
        layers: list[nn.Module] = []
        if hidden != in_chans:
            layers.append(Conv2dNormActivation(in_chans, hidden, 1, norm_layer=norm, activation_layer=nn.SiLU))
        layers.append(
            Conv2dNormActivation(
                hidden, hidden, kernel, stride=stride, groups=hidden, norm_layer=norm, activation_layer=nn.SiLU
            )
        )
        layers.append(SqueezeExcitation(hidden, max(1, in_chans // 4), activation=partial(nn.SiLU, inplace=True)))
        layers.append(Conv2dNormActivation(hidden, out_chans, 1, norm_layer=norm, activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_chans == out_chans
        self.stochastic_depth = StochasticDepth(drop_path, "row")  # drops whole samples' residual branch

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return x + self.stochastic_depth(out) if self.use_residual else out


class EfficientNet(Network):
    """B0 scaled by ``width`` and ``depth``. ``(N, in_chans, H, W)`` → ``(N, num_classes)``; five stride-2 steps, so H/32 (four with ``stem_stride=1``).

    Args:
        width, depth: multipliers of B0's channels and of its blocks per stage.
        dropout: before the final FC layer.
        drop_path: stochastic-depth probability of the last block (linear from 0 at the first).
        bn_eps: BatchNorm epsilon.
        img_size: the resolution the variant is meant for (reported as ``input_size``; not pinned).
        stem_stride: 2 as in the paper; 1 keeps small images (28 px) from shrinking to 1×1 by the last stages.

    Network interface: features are the 1×1 head convolution's map (1280 channels for B0), the embedding
    its global average, feature levels the seven MBConv stages.
    """

    first_conv_name = "features.0.0"
    classifier_name = "classifier.1"

    def __init__(
        self,
        width: float = 1.0,
        depth: float = 1.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        dropout: float = 0.2,
        drop_path: float = 0.2,
        bn_eps: float = 1e-5,
        img_size: int = 224,
        stem_stride: int = 2,
        stages: Sequence[Stage] = B0_STAGES,
        scaling: Scaling | None = None,
    ) -> None:
        super().__init__()
        from torchvision.ops import Conv2dNormActivation

        norm = partial(nn.BatchNorm2d, eps=bn_eps)
        self.input_size = (in_chans, img_size, img_size)
        self.fixed_input_size = False
        self.metadata = scaling.metadata() if scaling is not None else {}
        stem = round_channels(B0_STEM * width)
        layers: list[nn.Module] = [
            Conv2dNormActivation(in_chans, stem, 3, stride=stem_stride, norm_layer=norm, activation_layer=nn.SiLU)
        ]
        repeats = [math.ceil(stage.layers * depth) for stage in stages]
        total, index, channels = sum(repeats), 0, stem
        reduction, self.feature_info = stem_stride, []
        for number, (stage, count) in enumerate(zip(stages, repeats), start=1):
            out_chans = round_channels(stage.channels * width)
            reduction *= stage.stride
            self.feature_info.append(dict(module=f"features.{number}", num_chs=out_chans, reduction=reduction))
            blocks = []
            for position in range(count):
                stride = stage.stride if position == 0 else 1
                blocks.append(
                    MBConv(channels, out_chans, stage.expand, stage.kernel, stride, drop_path * index / total, norm)
                )
                channels, index = out_chans, index + 1
            layers.append(nn.Sequential(*blocks))
        head = 4 * channels  # 1280 for B0
        layers.append(Conv2dNormActivation(channels, head, 1, norm_layer=norm, activation_layer=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout, inplace=True), linear_or_identity(head, num_classes))
        self.num_features = head
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.out_features)
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)  # (N, 4·w·320, H/32, W/32)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.classifier[0](self.avgpool(x).flatten(1))  # dropout
        return x if pre_logits else self.classifier[1](x)

    def stages(self) -> list[tuple[str, list[nn.Module]]]:
        stages = [(f"stage{i}", [self.features[i]]) for i in range(1, len(self.features) - 1)]
        return [
            ("stem", [self.features[0]]),
            *stages,
            ("conv_head", [self.features[-1]]),
            ("head", [self.classifier[1]]),
        ]


def _build(arch: str, **kwargs) -> EfficientNet:
    scaling = SCALING[arch]
    defaults = dict(
        width=scaling.width,
        depth=scaling.depth,
        dropout=scaling.dropout,
        bn_eps=scaling.bn_eps,
        img_size=scaling.resolution,
        scaling=scaling,
    )
    return EfficientNet(**{**defaults, **kwargs})


# ---- weights and registered builders --------------------------------------------------------------
# torchvision's files (ported from the TensorFlow originals by Ross Wightman and Luke Melas-Kyriazi) have
# this module layout: they load without renaming. torchvision evaluates its B2 weights at 288 px, not the
# paper's 260, and so do they here (their input size and the builder's img_size).
_TV = {**TORCHVISION_IN1K, "interpolation": "bicubic"}  # resize / crop per file, as torchvision's transforms
WEIGHTS = weight_table(
    {
        "efficientnet_b0.tv_in1k": dict(
            url=TORCHVISION_URL + "efficientnet_b0_rwightman-7f5810bc.pth",
            **{**_TV, "input_size": (3, 224, 224), "resize": 256},
        ),
        "efficientnet_b1.tv_in1k": dict(
            url=TORCHVISION_URL + "efficientnet_b1_rwightman-bac287d4.pth",
            **{**_TV, "input_size": (3, 240, 240), "resize": 256},
        ),
        "efficientnet_b2.tv_in1k": dict(
            url=TORCHVISION_URL + "efficientnet_b2_rwightman-c35c1473.pth",
            **{**_TV, "input_size": (3, 288, 288), "resize": 288},
            model_kwargs={"img_size": 288},
        ),
        "efficientnet_b3.tv_in1k": dict(
            url=TORCHVISION_URL + "efficientnet_b3_rwightman-b3899882.pth",
            **{**_TV, "input_size": (3, 300, 300), "resize": 320},
        ),
        "efficientnet_b4.tv_in1k": dict(
            url=TORCHVISION_URL + "efficientnet_b4_rwightman-23ab8bcd.pth",
            **{**_TV, "input_size": (3, 380, 380), "resize": 384},
        ),
        "efficientnet_b5.tv_in1k": dict(
            url=TORCHVISION_URL + "efficientnet_b5_lukemelas-1a07897c.pth",
            **{**_TV, "input_size": (3, 456, 456), "resize": 456},
        ),
        "efficientnet_b6.tv_in1k": dict(
            url=TORCHVISION_URL + "efficientnet_b6_lukemelas-24a108a5.pth",
            **{**_TV, "input_size": (3, 528, 528), "resize": 528},
        ),
        "efficientnet_b7.tv_in1k": dict(
            url=TORCHVISION_URL + "efficientnet_b7_lukemelas-c5b4e57e.pth",
            **{**_TV, "input_size": (3, 600, 600), "resize": 600},
        ),
        "efficientnet_lite.fmnist": dict(
            dataset="fashion_mnist", recipe="recipes/efficientnet_lite_fmnist_restart.yaml"
        ),
    }
)
_NAMES = dict(family="efficientnet", weights=WEIGHTS, paper=PAPER)


def _scaled(num_params: int | None, **meta: Any):
    """``register_model`` for a builder whose name keys ``SCALING``: its resolution and φ columns come from there.

    ``num_params``: torchvision's count of the ImageNet model; ``None`` counts the architecture."""

    def wrap(builder):
        scaling = SCALING[builder.__name__]
        imagenet = dict(
            input_size=(3, scaling.resolution, scaling.resolution),
            num_classes=1000,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
        )
        return register_model(num_params=num_params, columns=scaling.columns(), **{**imagenet, **meta}, **_NAMES)(
            builder
        )

    return wrap


@_scaled(5_288_548)
def efficientnet_b0(**kwargs) -> EfficientNet:
    """EfficientNet-B0, the searched base network (φ = 0), 224×224."""
    return _build("efficientnet_b0", **kwargs)


@_scaled(7_794_184)
def efficientnet_b1(**kwargs) -> EfficientNet:
    """EfficientNet-B1 (φ = 1): depth 1.1, 240×240."""
    return _build("efficientnet_b1", **kwargs)


@_scaled(9_109_994)
def efficientnet_b2(**kwargs) -> EfficientNet:
    """EfficientNet-B2 (φ = 2): width 1.1, depth 1.2, 260×260."""
    return _build("efficientnet_b2", **kwargs)


@_scaled(12_233_232)
def efficientnet_b3(**kwargs) -> EfficientNet:
    """EfficientNet-B3 (φ = 3): width 1.2, depth 1.4, 300×300."""
    return _build("efficientnet_b3", **kwargs)


@_scaled(19_341_616)
def efficientnet_b4(**kwargs) -> EfficientNet:
    """EfficientNet-B4 (φ = 4): width 1.4, depth 1.8, 380×380."""
    return _build("efficientnet_b4", **kwargs)


@_scaled(30_389_784)
def efficientnet_b5(**kwargs) -> EfficientNet:
    """EfficientNet-B5 (φ = 5): width 1.6, depth 2.2, 456×456."""
    return _build("efficientnet_b5", **kwargs)


@_scaled(43_040_704)
def efficientnet_b6(**kwargs) -> EfficientNet:
    """EfficientNet-B6 (φ = 6): width 1.8, depth 2.6, 528×528."""
    return _build("efficientnet_b6", **kwargs)


@_scaled(66_347_960)
def efficientnet_b7(**kwargs) -> EfficientNet:
    """EfficientNet-B7 (φ = 7): width 2.0, depth 3.1, 600×600."""
    return _build("efficientnet_b7", **kwargs)


@_scaled(None, input_size=(1, 28, 28), num_classes=10, mean=FMNIST_MEAN, std=FMNIST_STD)
def efficientnet_lite(**kwargs) -> EfficientNet:
    """B0 scaled down by the compound rule to φ = −4 (width 0.68, depth 0.48), stride-1 stem for 28×28 Fashion-MNIST."""
    return _build("efficientnet_lite", **{"stem_stride": 1, **kwargs})
