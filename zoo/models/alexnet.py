"""AlexNet (Krizhevsky, Sutskever, Hinton 2012, "ImageNet classification with deep convolutional neural networks").

``alexnet`` is the network of the course table, on one device (the paper split conv2/4/5 into two
groups across two GPUs; the course counts the ungrouped network)::

    layer   output (C×H×W)   parameters  C_out · (C_in · K_h · K_w + 1)
    input     3×227×227
    conv1    96×55×55          34,944    96 · (3 · 11·11 + 1)       11×11, stride 4
    pool1    96×27×27                    max 3×3, stride 2
    conv2   256×27×27         614,656   256 · (96 · 5·5 + 1)        5×5, pad 2
    pool2   256×13×13
    conv3   384×13×13         885,120   384 · (256 · 3·3 + 1)       3×3, pad 1
    conv4   384×13×13       1,327,488   384 · (384 · 3·3 + 1)
    conv5   256×13×13         884,992   256 · (384 · 3·3 + 1)
    pool5   256×6×6  = 9,216
    fc6          4,096     37,752,832   4096 · (9216 + 1)
    fc7          4,096     16,781,312   4096 · (4096 + 1)
    fc8          1,000      4,097,000   1000 · (4096 + 1)
                     total 62,378,344   of which the three FC layers 58,631,144 = 94.0%

Output size of each conv and pool: ``floor((W − K + 2P) / S) + 1``; 227 is the size at which
conv1 lands exactly ((227 − 11) / 4 + 1 = 55). The paper's "224×224" needs 2 pixels of padding
for the same 55 (``alexnet(img_size=224)``). Differences from the paper, as in every modern copy:
no local response normalisation (later work found it does not help) and no two-GPU grouping.

``alexnet_tv`` is torchvision's variant (after Krizhevsky's 2014 "One weird trick" paper): 64, 192,
384, 256, 256 filters, padding 2, and an adaptive average pool to 6×6 so any input of at least
63×63 works: 61,100,840 parameters. Its ImageNet weights import with ``alexnet_tv.tv_in1k``.

``alexnet_lite`` keeps the AlexNet recipe — a large first kernel, a 5×5 layer, three 3×3 layers,
overlapping 3×3 max pools with stride 2, two wide dropout FC layers — sized for 28×28 Fashion-MNIST:
stride 1 instead of 4 (a 28-pixel image has no pixels to spare) and BatchNorm after each conv where
AlexNet had local response normalisation, which lets it train at a high learning rate (its recipe
runs 40 epochs, about 70 s each on two CPU cores; the card has the measured total).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from zoo.data.constants import FMNIST_MEAN, FMNIST_STD, IMAGENET_MEAN, IMAGENET_STD, TORCHVISION_IN1K, TORCHVISION_URL
from zoo.errors import InputShapeError
from zoo.layer_table import fc_parameter_share
from zoo.layers.network import Network, linear_or_identity
from zoo.registry import register_model, weight_table

ALEXNET_PARAMS = 62_378_344
ALEXNET_TV_PARAMS = 61_100_840


def _out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    return (size - kernel + 2 * padding) // stride + 1


class AlexNet(Network):
    """Five convolutions, three max pools, three FC layers. Input ``(N, in_chans, H, W)`` → logits ``(N, num_classes)``.

    Args:
        widths: filters of conv1..conv5.
        conv1: (kernel, stride, padding) of conv1; conv2 is 5×5 pad 2, conv3-5 3×3 pad 1.
        img_size: the input side the network is built for (pins H and W unless ``adaptive_pool``).
        hidden: width of fc6 and fc7.
        adaptive_pool: average-pool conv5's map to ``pool_size`` so any large-enough input works.
        batch_norm: BatchNorm after every conv (the lite variant; AlexNet itself had none).

    Network interface: features are conv5's map before pool5, the embedding is fc7's output (``hidden``
    values), feature levels pool1, pool2, pool5.
    """

    first_conv_name = "features.conv1"
    classifier_name = "classifier.fc8"

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        widths: Sequence[int] = (96, 256, 384, 384, 256),
        conv1: tuple[int, int, int] = (11, 4, 0),
        img_size: int = 227,
        hidden: int = 4096,
        dropout: float = 0.5,
        adaptive_pool: bool = False,
        pool_size: int = 6,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        kernel, stride, padding = conv1
        side = _out(_out(_out(_out(_out(img_size, kernel, stride, padding), 3, 2), 5, 1, 2), 3, 2), 3, 2)
        if side < 1:
            raise InputShapeError(
                f"AlexNet with conv1 {conv1} needs larger images than {img_size}×{img_size}; resize the images"
            )
        if not adaptive_pool and side != pool_size:
            raise InputShapeError(
                f"without adaptive_pool, pool5 gives {side}×{side} at img_size={img_size}, not {pool_size}×{pool_size}; pass adaptive_pool=True"
            )
        self.input_size = (in_chans, img_size, img_size)
        self.fixed_input_size = not adaptive_pool  # fc6 takes exactly C5·6·6 inputs
        layers: list[tuple[str, nn.Module]] = []
        channels = in_chans
        specs = [(kernel, stride, padding, True), (5, 1, 2, True), (3, 1, 1, False), (3, 1, 1, False), (3, 1, 1, True)]
        for index, (width, (k, s, p, pool)) in enumerate(zip(widths, specs), start=1):
            layers.append((f"conv{index}", nn.Conv2d(channels, width, k, stride=s, padding=p, bias=not batch_norm)))
            if batch_norm:
                layers.append((f"bn{index}", nn.BatchNorm2d(width)))
            layers.append((f"relu{index}", nn.ReLU(inplace=True)))
            if pool:
                layers.append((f"pool{index}", nn.MaxPool2d(kernel_size=3, stride=2)))
            channels = width
        self.features = nn.Sequential(OrderedDict(layers))
        self.avgpool = nn.AdaptiveAvgPool2d(pool_size) if adaptive_pool else nn.Identity()
        self.classifier = nn.Sequential(
            OrderedDict(
                flatten=nn.Flatten(),
                drop6=nn.Dropout(dropout),
                fc6=nn.Linear(channels * pool_size * pool_size, hidden),
                relu6=nn.ReLU(inplace=True),
                drop7=nn.Dropout(dropout),
                fc7=nn.Linear(hidden, hidden),
                relu7=nn.ReLU(inplace=True),
                fc8=linear_or_identity(hidden, num_classes),
            )
        )
        self.num_features = hidden
        self.feature_info = [
            dict(module=f"features.pool{i}", num_chs=widths[i - 1], reduction=stride * 2**k)
            for k, i in enumerate((1, 2, 5), start=1)
        ]

    @property
    def metadata(self) -> dict[str, str]:
        """Shown by ``zoo info``: the course's point that the FC layers hold most of the parameters."""
        return fc_parameter_share(self, self.classifier)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)  # (N, conv5 channels, 6, 6) at the design size

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.avgpool(x)
        for layer in list(self.classifier)[:-1]:  # flatten, fc6, fc7 with their ReLU and dropout
            x = layer(x)
        return x if pre_logits else self.classifier.fc8(x)

    def stages(self) -> list[tuple[str, list[nn.Module]]]:
        def conv(i: int) -> list[nn.Module]:
            return [getattr(self.features, n) for n in (f"conv{i}", f"bn{i}") if hasattr(self.features, n)]

        return [
            ("stem", conv(1)),
            *((f"stage{i - 1}", conv(i)) for i in range(2, 6)),
            ("pre_logits", [self.classifier.fc6, self.classifier.fc7]),
            ("head", [self.classifier.fc8]),
        ]


# ---- torchvision importer ------------------------------------------------------------------------
# torchvision numbers the layers of two nn.Sequential; the zoo names them as in the course table.
_TV_FEATURES = {0: "conv1", 3: "conv2", 6: "conv3", 8: "conv4", 10: "conv5"}
_TV_CLASSIFIER = {1: "fc6", 4: "fc7", 6: "fc8"}


def _tv_key(key: str) -> str:
    block, index, param = key.split(".") if key.count(".") == 2 else (key, "", "")
    table = {"features": _TV_FEATURES, "classifier": _TV_CLASSIFIER}.get(block)
    if table is None or not index.isdigit() or int(index) not in table:
        return key  # left as is: the check names it as unexpected
    return f"{block}.{table[int(index)]}.{param}"


def convert_torchvision(state: dict[str, Any]) -> dict[str, Tensor]:
    """A state dict of ``torchvision.models.alexnet`` → ``alexnet_tv``'s keys (any head size).

    Keys already in the zoo's layout pass unchanged; the load names whatever is left over.
    """
    return {_tv_key(key): value for key, value in state.items()}


# ---- weights and registered builders --------------------------------------------------------------
WEIGHTS = weight_table(
    {
        "alexnet_tv.tv_in1k": dict(
            url=TORCHVISION_URL + "alexnet-owt-7be5be79.pth", convert=convert_torchvision, **TORCHVISION_IN1K
        ),
        "alexnet_lite.fmnist": dict(dataset="fashion_mnist", recipe="recipes/alexnet_lite_fmnist_restart.yaml"),
    }
)
_NAMES = dict(family="alexnet", weights=WEIGHTS)
_IMAGENET = dict(num_classes=1000, mean=IMAGENET_MEAN, std=IMAGENET_STD, **_NAMES)
_PAPER = "Krizhevsky, Sutskever, Hinton 2012, ImageNet classification with deep convolutional neural networks"


@register_model(input_size=(3, 227, 227), num_params=ALEXNET_PARAMS, fixed_input_size=True, paper=_PAPER, **_IMAGENET)
def alexnet(*, img_size: int = 227, **kwargs) -> AlexNet:
    """The course's AlexNet: 96 first filters, 227×227 input (``img_size=224`` pads conv1 by 2)."""
    padding = {227: 0, 224: 2}.get(img_size)
    if padding is None:
        raise InputShapeError(
            f"alexnet takes 227×227 or 224×224 images (got {img_size}); use alexnet_tv for other sizes"
        )
    return AlexNet(img_size=img_size, conv1=(11, 4, padding), **kwargs)


@register_model(
    input_size=(3, 224, 224),
    num_params=ALEXNET_TV_PARAMS,
    paper=_PAPER + "; Krizhevsky 2014, One weird trick for parallelizing CNNs",
    **_IMAGENET,
)
def alexnet_tv(**kwargs) -> AlexNet:
    """torchvision's AlexNet: 64 first filters, adaptive 6×6 pool before the FC layers."""
    defaults = dict(widths=(64, 192, 384, 256, 256), conv1=(11, 4, 2), img_size=224, adaptive_pool=True)
    return AlexNet(**{**defaults, **kwargs})


# 28 → conv1 28 → pool 13 → conv2 13 → pool 6 → conv3-5 6 → pool 2: fc6 sees 48·2·2 = 192 values
ALEXNET_LITE = dict(widths=(24, 48, 64, 64, 48), conv1=(5, 1, 2), img_size=28, hidden=512, pool_size=2, batch_norm=True)


@register_model(
    input_size=(1, 28, 28),
    num_classes=10,
    fixed_input_size=True,
    mean=FMNIST_MEAN,
    std=FMNIST_STD,
    paper=_PAPER,
    **_NAMES,
)
def alexnet_lite(**kwargs) -> AlexNet:
    """AlexNet's layer recipe for 28×28 Fashion-MNIST: stride-1 5×5 conv1, BatchNorm, 512-wide FC layers."""
    return AlexNet(**{**ALEXNET_LITE, **kwargs})
