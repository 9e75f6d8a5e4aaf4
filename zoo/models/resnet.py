"""ResNet (He, Zhang, Ren, Sun 2015, "Deep residual learning for image recognition").

Each block learns a residual ``F(x)`` added to its input: ``y = relu(F(x) + shortcut(x))``. When a
stage halves the size and widens the channels, the shortcut is a 1×1 conv with stride 2 + BatchNorm
(the paper's option B); otherwise it is the identity, so a block can always fall back to passing its
input through, which is why 152 layers still train.

* ``BasicBlock`` (ResNet-18/34): two 3×3 convs.
* ``Bottleneck`` (ResNet-50/101/152): 1×1 reduces the channels 4×, 3×3 works on the narrow map, 1×1
  expands back; the stride sits on the 3×3 conv (torchvision's "ResNet v1.5", +0.5% top-1 over the
  paper, which strided the first 1×1).

ImageNet networks (``resnet18`` … ``resnet152``): 7×7/2 stem conv + 3×3/2 max pool, four stages of
64, 128, 256, 512 base channels, global average pool, one FC layer. Shapes at 224×224: stem 64×56×56,
stages 56, 28, 14, 7. Parameter counts equal torchvision's (ResNet-18 11,689,512; ResNet-50
25,557,032; ResNet-152 60,192,808) and so does the key layout, so torchvision's ImageNet weights load
as they are (``resnet50.tv2_in1k``).

CIFAR networks (``resnet20``, ``resnet32``, ``resnet56``, section 4.2 of the paper): a 3×3 stem
with no pooling, three stages of 16, 32, 64 channels with n BasicBlocks each (6n + 2 weight layers),
for 28–32 pixel images: 28 → 28 → 14 → 7. The paper's CIFAR shortcut was option A (zero-padded
identity, 0.27M parameters for ResNet-20); here the two widening shortcuts are the same 1×1 conv as in
the ImageNet networks (+2.8K parameters).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from zoo.data.constants import FMNIST_MEAN, FMNIST_STD, IMAGENET_MEAN, IMAGENET_STD, TORCHVISION_IN1K, TORCHVISION_URL
from zoo.errors import ZooError
from zoo.layers.network import Network, linear_or_identity
from zoo.registry import register_model, weight_table

PAPER = "He, Zhang, Ren, Sun 2015, Deep residual learning for image recognition"


def _shortcut(in_chans: int, out_chans: int, stride: int) -> nn.Module | None:
    """1×1 conv + BN where the block changes size or width (option B), else None (identity)."""
    if stride == 1 and in_chans == out_chans:
        return None
    return nn.Sequential(nn.Conv2d(in_chans, out_chans, 1, stride=stride, bias=False), nn.BatchNorm2d(out_chans))


class BasicBlock(nn.Module):
    """3×3 conv-BN-ReLU, 3×3 conv-BN, + shortcut, ReLU. ``(N, in_chans, H, W)`` → ``(N, width, H/stride, W/stride)``."""

    expansion = 1

    def __init__(self, in_chans: int, width: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        if dilation > 1:
            raise ZooError("BasicBlock does not support dilation > 1 (as torchvision's); use a Bottleneck ResNet")
        self.conv1 = nn.Conv2d(in_chans, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = _shortcut(in_chans, width, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x if self.downsample is None else self.downsample(x)  # in place: one activation-sized tensor fewer
        return self.relu(out)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (strided), 1×1 expand ×4, + shortcut. ``(N, in_chans, H, W)`` → ``(N, 4·width, H/stride, W/stride)``."""

    expansion = 4

    def __init__(self, in_chans: int, width: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        out_chans = width * self.expansion
        self.conv1 = nn.Conv2d(in_chans, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_chans, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chans)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_chans, out_chans, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)  # in place, as torchvision: ~5% faster on CPU
        return self.relu(out)


class ResNet(Network):
    """Stem, stages of residual blocks, global average pool, FC. ``(N, in_chans, H, W)`` → ``(N, num_classes)``.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        depths: blocks per stage; the first block of every stage but the first has stride 2.
        widths: base channels per stage (a Bottleneck stage outputs 4× as many).
        stem: ``"imagenet"`` (7×7/2 conv + 3×3/2 max pool) or ``"cifar"`` (3×3 conv, no pool).
        zero_init_residual: start every block's last BN at γ = 0, so each block begins as the identity.
        replace_stride_with_dilation: one bool per stage after the first (torchvision's argument): that
            stage keeps the resolution and dilates its 3×3 convs instead (Bottleneck only; ``(False, True,
            True)`` gives output stride 8, as torchvision's FCN and DeepLabV3 backbones).

    Network interface: features are the last stage's map, the embedding its global average (512·expansion
    values for ImageNet nets, 64 for CIFAR nets), feature levels the stem and every stage.
    """

    first_conv_name = "conv1"
    classifier_name = "fc"

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        depths: Sequence[int],
        widths: Sequence[int] = (64, 128, 256, 512),
        num_classes: int = 1000,
        in_chans: int = 3,
        stem: str = "imagenet",
        zero_init_residual: bool = False,
        replace_stride_with_dilation: Sequence[bool] | None = None,
    ) -> None:
        super().__init__()
        if stem not in ("imagenet", "cifar"):
            raise ZooError(f"ResNet stem must be 'imagenet' or 'cifar', got {stem!r}")
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, widths[0], 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(in_chans, widths[0], 3, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        channels = widths[0]
        dilate = list(replace_stride_with_dilation or [False] * (len(depths) - 1))
        if len(dilate) != len(depths) - 1:
            raise ZooError(
                f"replace_stride_with_dilation needs {len(depths) - 1} values, one per stage after the first"
            )
        dilation, strides = 1, []
        for index, (depth, width) in enumerate(zip(depths, widths), start=1):
            blocks, previous, stride = [], dilation, 2 if index > 1 else 1
            if index > 1 and dilate[index - 2]:  # torchvision's _make_layer: the stride becomes dilation
                dilation, stride = dilation * stride, 1
            strides.append(stride)
            for position in range(depth):
                first = position == 0
                blocks.append(block(channels, width, stride if first else 1, previous if first else dilation))
                channels = width * block.expansion
            self.add_module(f"layer{index}", nn.Sequential(*blocks))
        self.num_stages = len(depths)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = linear_or_identity(channels, num_classes)
        self.num_features = channels
        stem_stride = 2 if stem == "imagenet" else 1
        self.feature_info = [dict(module="relu", num_chs=widths[0], reduction=stem_stride)] + [
            dict(
                module=f"layer{i}",
                num_chs=widths[i - 1] * block.expansion,
                reduction=stem_stride * (2 if stem == "imagenet" else 1) * math.prod(strides[:i]),
            )
            for i in range(1, len(depths) + 1)
        ]
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, (BasicBlock, Bottleneck)):
                    last = module.bn3 if isinstance(module, Bottleneck) else module.bn2
                    nn.init.zeros_(last.weight)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N, 64, H/4, W/4) ImageNet stem; (N, 16, H, W) CIFAR
        for index in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{index}")(x)
        return x  # (N, 512·expansion, H/32, W/32) ImageNet; (N, 64, H/4, W/4) CIFAR

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def stages(self) -> list[tuple[str, list[nn.Module]]]:
        layers = [(f"stage{i}", [getattr(self, f"layer{i}")]) for i in range(1, self.num_stages + 1)]
        return [("stem", [self.conv1, self.bn1]), *layers, ("head", [self.fc])]


# ---- weights and registered builders --------------------------------------------------------------
# torchvision's files have this module layout: they load without renaming.
_TV, _TV_URL = TORCHVISION_IN1K, TORCHVISION_URL
_TV2 = {**_TV, "resize": 232}  # V2 weights are evaluated at resize 232, crop 224
WEIGHTS = weight_table(
    {
        "resnet18.tv_in1k": dict(url=_TV_URL + "resnet18-f37072fd.pth", **_TV),
        "resnet34.tv_in1k": dict(url=_TV_URL + "resnet34-b627a593.pth", **_TV),
        # torchvision's IMAGENET1K_V2 files (the newer recipe: +4 points), named tv2 as timm does
        "resnet50.tv2_in1k": dict(url=_TV_URL + "resnet50-11ad3fa6.pth", old_tags=("tv_in1k",), **_TV2),
        "resnet101.tv2_in1k": dict(url=_TV_URL + "resnet101-cd907fc2.pth", old_tags=("tv_in1k",), **_TV2),
        "resnet152.tv2_in1k": dict(url=_TV_URL + "resnet152-f82ba261.pth", old_tags=("tv_in1k",), **_TV2),
        "resnet20.fmnist": dict(dataset="fashion_mnist", recipe="recipes/resnet20_fmnist_restart.yaml"),
        # the source of the transfer experiment (docs/transfer.md): trained on classes 0-4 only
        "resnet20.fmnist_0to4": dict(dataset="fashion_mnist", recipe="recipes/resnet20_fmnist_0to4.yaml"),
        # issue 44's demos of the other output kinds: multi-label garments in a scene (from resnet20.fmnist and from
        # scratch at the same budget) and the angle of a rotated garment as (sin θ, cos θ); their cards say the task
        "resnet20.fmnist_scene_tags": dict(
            dataset="fashion_mnist_scene_tags", recipe="recipes/resnet20_fmnist_scene_tags.yaml"
        ),
        "resnet20.fmnist_scene_tags_scratch": dict(
            dataset="fashion_mnist_scene_tags", recipe="recipes/resnet20_fmnist_scene_tags.yaml"
        ),
        "resnet20.fmnist_rotation": dict(
            dataset="fashion_mnist_rotations", recipe="recipes/resnet20_fmnist_rotation.yaml"
        ),
    }
)
_NAMES = dict(family="resnet", weights=WEIGHTS)
_IMAGENET = dict(
    input_size=(3, 224, 224), num_classes=1000, mean=IMAGENET_MEAN, std=IMAGENET_STD, paper=PAPER, **_NAMES
)
# CIFAR-style networks for 28-32 pixel images (section 4.2 of the paper)
_CIFAR = dict(
    input_size=(1, 28, 28),
    num_classes=10,
    mean=FMNIST_MEAN,
    std=FMNIST_STD,
    paper=PAPER + " (section 4.2, CIFAR-10)",
    **_NAMES,
)


@register_model(num_params=11_689_512, **_IMAGENET)
def resnet18(**kwargs) -> ResNet:
    """ResNet-18: BasicBlocks 2-2-2-2."""
    return ResNet(BasicBlock, (2, 2, 2, 2), **kwargs)


@register_model(num_params=21_797_672, **_IMAGENET)
def resnet34(**kwargs) -> ResNet:
    """ResNet-34: BasicBlocks 3-4-6-3."""
    return ResNet(BasicBlock, (3, 4, 6, 3), **kwargs)


@register_model(num_params=25_557_032, **_IMAGENET)
def resnet50(**kwargs) -> ResNet:
    """ResNet-50: Bottlenecks 3-4-6-3."""
    return ResNet(Bottleneck, (3, 4, 6, 3), **kwargs)


@register_model(num_params=44_549_160, **_IMAGENET)
def resnet101(**kwargs) -> ResNet:
    """ResNet-101: Bottlenecks 3-4-23-3."""
    return ResNet(Bottleneck, (3, 4, 23, 3), **kwargs)


@register_model(num_params=60_192_808, **_IMAGENET)
def resnet152(**kwargs) -> ResNet:
    """ResNet-152: Bottlenecks 3-8-36-3."""
    return ResNet(Bottleneck, (3, 8, 36, 3), **kwargs)


def _cifar(depth: int, **kwargs) -> ResNet:
    n = (depth - 2) // 6
    return ResNet(BasicBlock, (n, n, n), widths=(16, 32, 64), stem="cifar", **kwargs)


@register_model(**_CIFAR)
def resnet20(**kwargs) -> ResNet:
    """CIFAR ResNet-20: 3 stages × 3 BasicBlocks of 16/32/64 channels."""
    return _cifar(20, **kwargs)


@register_model(**_CIFAR)
def resnet32(**kwargs) -> ResNet:
    """CIFAR ResNet-32: 3 stages × 5 BasicBlocks."""
    return _cifar(32, **kwargs)


@register_model(**_CIFAR)
def resnet56(**kwargs) -> ResNet:
    """CIFAR ResNet-56: 3 stages × 9 BasicBlocks."""
    return _cifar(56, **kwargs)
