"""VGG (Simonyan, Zisserman 2014, "Very deep convolutional networks for large-scale image recognition").

Only 3×3 convolutions (stride 1, pad 1: the size stays) and 2×2 max pools (stride 2: the size halves),
in five stages of 64, 128, 256, 512, 512 filters, then three FC layers. Two stacked 3×3 convs see a
5×5 window, three see 7×7, with fewer parameters than one large kernel and a ReLU between each.
Configurations A, B, D, E of the paper are ``vgg11``, ``vgg13``, ``vgg16``, ``vgg19`` (the number of
weight layers); ``_bn`` adds BatchNorm after each conv (not in the paper, which trained the deeper
nets starting from the shallower ones instead).

Where the parameters and the memory are, for ``vgg16`` at 224×224 (``zoo info vgg16``)::

    stage   output        conv params       stored outputs (conv + pool)
    1       64×224×224        38,720        2 × 3.2M + 0.8M
    2       128×112×112      221,440        2 × 1.6M + 0.4M
    3       256×56×56      1,475,328        3 × 0.8M + 0.2M
    4       512×28×28      5,899,776        3 × 0.4M + 0.1M
    5       512×14×14      7,079,424        3 × 0.1M + 25K
    fc      4096, 4096, 1000   123,642,856  9K
                        total 138,357,544

89% of the parameters sit in the three FC layers (fc6 alone: 25088·4096 = 102.8M), while 70% of
the activation memory is in the first two stages (224×224 and 112×112 maps), whose convs hold 0.2%
of the parameters.

The course's hand count says "24M values ≈ 96 MB per image (forward)"; its own per-layer entries
(input, every conv, pool and FC output) add up to 15.3M values = 61 MB, and counting each ReLU's
output as a tensor of its own (what autograd keeps when the ReLU is not in place) gives 28.8M
values = 115 MB: the slide's total lies between the two ways of counting, and ``zoo info`` prints both.

Like torchvision, an adaptive average pool to 7×7 sits before fc6, so inputs other than 224×224 work
(and the layout — ``features.<i>``, ``classifier.0/3/6`` — is torchvision's, so its ImageNet weights
load without renaming: ``vgg16.tv_in1k``).

``vgg_lite`` keeps the VGG recipe (3×3 convs doubled per stage, 2×2 pools, three FC layers with
dropout) for 28×28 Fashion-MNIST: three stages of 24, 48, 96 filters (28 → 14 → 7 → 3) with
BatchNorm, and 256-wide FC layers — sized to train an epoch in about two minutes on two CPU cores.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from zoo.data.constants import FMNIST_MEAN, FMNIST_STD, IMAGENET_MEAN, IMAGENET_STD, TORCHVISION_IN1K, TORCHVISION_URL
from zoo.layer_table import fc_parameter_share
from zoo.layers.network import Network, linear_or_identity
from zoo.registry import register_model, weight_table

# Filters per conv, "M" for a 2×2 max pool: the columns A, B, D, E of the paper's Table 1.
CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
    "vgg_lite": [24, "M", 48, 48, "M", 96, 96, "M"],
}


class VGG(Network):
    """A stack of 3×3 convs and 2×2 max pools, then three FC layers. ``(N, in_chans, H, W)`` → ``(N, num_classes)``.

    Args:
        config: filters per conv and ``"M"`` for max pools (see ``CONFIGS``).
        batch_norm: BatchNorm after each conv.
        pool_size: side of the adaptive average pool before fc6 (7 for 224×224 inputs).
        hidden: width of the two hidden FC layers.

    Network interface: features are the last pool's map, the embedding is the second hidden FC layer's
    output (``hidden`` values), one feature level per max pool; each pool-to-pool block is a stage.
    """

    first_conv_name = "features.0"
    classifier_name = "classifier.6"

    def __init__(
        self,
        config: Sequence[int | str],
        num_classes: int = 1000,
        in_chans: int = 3,
        batch_norm: bool = False,
        pool_size: int = 7,
        hidden: int = 4096,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_chans
        self.feature_info = []
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                reduction = 2 ** (len(self.feature_info) + 1)
                self.feature_info.append(
                    dict(module=f"features.{len(layers) - 1}", num_chs=channels, reduction=reduction)
                )
                continue
            layers.append(nn.Conv2d(channels, int(item), kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(int(item)))
            layers.append(nn.ReLU(inplace=True))
            channels = int(item)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(pool_size)  # identity at the design size, keeps other sizes working
        self.classifier = nn.Sequential(
            nn.Linear(channels * pool_size * pool_size, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            linear_or_identity(hidden, num_classes),
        )
        self.num_features = hidden
        for module in self.modules():  # the initialisation torchvision's weights were trained from
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    @property
    def metadata(self) -> dict[str, str]:
        """Shown by ``zoo info``: the course's point that the FC layers hold most of the parameters."""
        return fc_parameter_share(self, self.classifier)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)  # (N, 512, H/32, W/32) for the ImageNet configurations

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.avgpool(x).flatten(1)
        for layer in list(self.classifier)[:-1]:  # two hidden FC layers with ReLU and dropout
            x = layer(x)
        return x if pre_logits else self.classifier[6](x)

    def stages(self) -> list[tuple[str, list[nn.Module]]]:
        blocks, start = [], 0
        for info in self.feature_info:  # the layers up to and including each pool
            end = int(info["module"].rpartition(".")[2]) + 1
            blocks.append(list(self.features[start:end]))
            start = end
        names = ["stem", *(f"stage{i}" for i in range(1, len(blocks)))]
        return [
            *zip(names, blocks),
            ("pre_logits", [self.classifier[0], self.classifier[3]]),
            ("head", [self.classifier[6]]),
        ]


# ---- weights and registered builders --------------------------------------------------------------
# torchvision's files have this module layout (features.<i>, classifier.0/3/6): they load without renaming.
WEIGHTS = weight_table(
    {
        "vgg11.tv_in1k": dict(url=TORCHVISION_URL + "vgg11-8a719046.pth", **TORCHVISION_IN1K),
        "vgg13.tv_in1k": dict(url=TORCHVISION_URL + "vgg13-19584684.pth", **TORCHVISION_IN1K),
        "vgg16.tv_in1k": dict(url=TORCHVISION_URL + "vgg16-397923af.pth", **TORCHVISION_IN1K),
        "vgg19.tv_in1k": dict(url=TORCHVISION_URL + "vgg19-dcbb9e9d.pth", **TORCHVISION_IN1K),
        "vgg11_bn.tv_in1k": dict(url=TORCHVISION_URL + "vgg11_bn-6002323d.pth", **TORCHVISION_IN1K),
        "vgg13_bn.tv_in1k": dict(url=TORCHVISION_URL + "vgg13_bn-abd245e5.pth", **TORCHVISION_IN1K),
        "vgg16_bn.tv_in1k": dict(url=TORCHVISION_URL + "vgg16_bn-6c64b313.pth", **TORCHVISION_IN1K),
        "vgg19_bn.tv_in1k": dict(url=TORCHVISION_URL + "vgg19_bn-c79401a0.pth", **TORCHVISION_IN1K),
        "vgg_lite.fmnist": dict(dataset="fashion_mnist", recipe="recipes/vgg_lite_fmnist.yaml"),
    }
)
_PAPER = "Simonyan, Zisserman 2014, Very deep convolutional networks for large-scale image recognition"
_NAMES = dict(family="vgg", weights=WEIGHTS, paper=_PAPER)
_IMAGENET = dict(input_size=(3, 224, 224), num_classes=1000, mean=IMAGENET_MEAN, std=IMAGENET_STD, **_NAMES)


@register_model(num_params=132_863_336, **_IMAGENET)
def vgg11(**kwargs) -> VGG:
    """VGG configuration A: 8 convs + 3 FC."""
    return VGG(CONFIGS["vgg11"], **kwargs)


@register_model(num_params=133_047_848, **_IMAGENET)
def vgg13(**kwargs) -> VGG:
    """VGG configuration B: 10 convs + 3 FC."""
    return VGG(CONFIGS["vgg13"], **kwargs)


@register_model(num_params=138_357_544, **_IMAGENET)
def vgg16(**kwargs) -> VGG:
    """VGG configuration D: 13 convs + 3 FC, 138,357,544 parameters."""
    return VGG(CONFIGS["vgg16"], **kwargs)


@register_model(num_params=143_667_240, **_IMAGENET)
def vgg19(**kwargs) -> VGG:
    """VGG configuration E: 16 convs + 3 FC."""
    return VGG(CONFIGS["vgg19"], **kwargs)


@register_model(num_params=132_868_840, **_IMAGENET)
def vgg11_bn(**kwargs) -> VGG:
    """VGG-11 with BatchNorm after each conv."""
    return VGG(CONFIGS["vgg11"], batch_norm=True, **kwargs)


@register_model(num_params=133_053_736, **_IMAGENET)
def vgg13_bn(**kwargs) -> VGG:
    """VGG-13 with BatchNorm after each conv."""
    return VGG(CONFIGS["vgg13"], batch_norm=True, **kwargs)


@register_model(num_params=138_365_992, **_IMAGENET)
def vgg16_bn(**kwargs) -> VGG:
    """VGG-16 with BatchNorm after each conv."""
    return VGG(CONFIGS["vgg16"], batch_norm=True, **kwargs)


@register_model(num_params=143_678_248, **_IMAGENET)
def vgg19_bn(**kwargs) -> VGG:
    """VGG-19 with BatchNorm after each conv."""
    return VGG(CONFIGS["vgg19"], batch_norm=True, **kwargs)


@register_model(input_size=(1, 28, 28), num_classes=10, mean=FMNIST_MEAN, std=FMNIST_STD, **_NAMES)
def vgg_lite(**kwargs) -> VGG:
    """VGG's recipe for 28×28 Fashion-MNIST: 24-48-48-96-96 3×3 convs with BatchNorm, 256-wide FC layers."""
    return VGG(CONFIGS["vgg_lite"], **{"batch_norm": True, "pool_size": 3, "hidden": 256, **kwargs})
