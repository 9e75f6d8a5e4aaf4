"""torchvision's semantic segmentation networks over the zoo's ResNet: FCN (Long, Shelhamer, Darrell 2015,
"Fully convolutional networks for semantic segmentation") and DeepLabV3 (Chen et al. 2017, "Rethinking
atrous convolution for semantic image segmentation").

Both take a ResNet-50 whose last two stages trade their stride for dilation (``replace_stride_with_dilation
= (False, True, True)``: output stride 8, a 520-pixel image gives a 65×65 map of 2048 channels) and a head:

* FCN: 3×3 conv to 512 channels, BN, ReLU, dropout 0.1, 1×1 conv to the classes;
* DeepLabV3: ASPP (atrous spatial pyramid pooling: a 1×1 conv, three 3×3 convs dilated 12, 24 and 36, and the
  image's global average, each to 256 channels, concatenated and projected to 256), then 3×3 conv, BN, ReLU
  and the 1×1 classifier.

The logits are upsampled (bilinear) to the input size: ``(N, 3, H, W)`` → ``(N, num_classes + 1, H, W)``,
channel 0 the background. The module layout is torchvision's (``backbone.layer4...``, ``classifier.0...``),
so their files load with two changes (``convert``): the auxiliary FCN head on ``layer3``, which only adds a
training loss, is dropped, and the last 1×1 conv is split into the background row and the classes' rows
(``classifier.4.background`` / ``classifier.4.classes``), so that a fresh head for other classes keeps the
learned background. The ``*.tv_coco_voc`` weights: trained on COCO's images with the 20 Pascal VOC classes,
evaluated at 520 pixels.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.data.constants import IMAGENET_MEAN, IMAGENET_STD, TORCHVISION_URL
from zoo.layers.network import Network, split_stages
from zoo.models.resnet import Bottleneck, ResNet
from zoo.registry import register_model, weight_table

PAPERS = {
    "fcn": "Long, Shelhamer, Darrell 2015, Fully convolutional networks for semantic segmentation",
    "deeplabv3": "Chen et al. 2017, Rethinking atrous convolution for semantic image segmentation",
}


def conv_bn_relu(in_chans: int, out_chans: int, kernel: int = 3, dilation: int = 1) -> list[nn.Module]:
    padding = dilation if kernel == 3 else 0
    conv = nn.Conv2d(in_chans, out_chans, kernel, padding=padding, dilation=dilation, bias=False)
    return [conv, nn.BatchNorm2d(out_chans), nn.ReLU()]


class PixelClassifier(nn.Module):
    """A 1×1 conv to ``num_classes + 1`` channels, as two: the background row and the classes' rows."""

    def __init__(self, in_chans: int, num_classes: int) -> None:
        super().__init__()
        self.background = nn.Conv2d(in_chans, 1, 1)
        self.classes = nn.Conv2d(in_chans, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.background(x), self.classes(x)], dim=1)


class ASPPPooling(nn.Sequential):
    """The image-level branch of ASPP: global average, 1×1 conv, BN, ReLU, spread back over the map."""

    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), *conv_bn_relu(in_chans, out_chans, kernel=1))

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(super().forward(x), size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabV3): parallel 1×1, dilated 3×3 and image-level branches."""

    def __init__(self, in_chans: int, rates: tuple[int, ...] = (12, 24, 36), out_chans: int = 256) -> None:
        super().__init__()
        branches = [nn.Sequential(*conv_bn_relu(in_chans, out_chans, kernel=1))]
        branches += [nn.Sequential(*conv_bn_relu(in_chans, out_chans, dilation=rate)) for rate in rates]
        self.convs = nn.ModuleList([*branches, ASPPPooling(in_chans, out_chans)])
        self.project = nn.Sequential(*conv_bn_relu(out_chans * (len(rates) + 2), out_chans, kernel=1), nn.Dropout(0.5))

    def forward(self, x: Tensor) -> Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class TVSegmentation(Network):
    """A dilated zoo ResNet and an FCN or DeepLabV3 head (see the module doc)."""

    first_conv_name = "backbone.conv1"
    classifier_name = "classifier.4.classes"
    head_stages = ("decoder", "head")

    def __init__(
        self, head: str = "deeplabv3", depths: tuple[int, ...] = (3, 4, 6, 3), num_classes: int = 20, in_chans: int = 3
    ) -> None:
        super().__init__()
        self.backbone = ResNet(
            Bottleneck, depths, num_classes=0, in_chans=in_chans, replace_stride_with_dilation=(False, True, True)
        )
        channels = self.backbone.num_features
        if head == "fcn":
            width, layers = 512, [*conv_bn_relu(channels, 512), nn.Dropout(0.1)]
        else:
            width, layers = 256, [ASPP(channels), *conv_bn_relu(256, 256)]
        self.classifier = nn.Sequential(*layers, PixelClassifier(width, num_classes))
        self.feature_info = self.backbone.feature_info
        self.num_classes, self.num_features, self.head_kind = num_classes, width, head

    def forward_features(self, x: Tensor) -> Tensor:
        return self.classifier[:4](self.backbone.forward_features(x))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return x if pre_logits else self.classifier[4](x)

    def forward(self, x: Tensor) -> Tensor:
        logits = self.forward_head(self.forward_features(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def reset_classifier(self, num_classes: int) -> None:
        """Fresh rows for ``num_classes`` classes; the background row is kept."""
        old = self.classifier[4].classes
        self.classifier[4].classes = nn.Conv2d(old.in_channels, num_classes, 1).to(old.weight.device)
        self.num_classes = num_classes

    def stages(self) -> list[tuple[str, list[nn.Module]]]:
        backbone = [(f"backbone.{name}", modules) for name, modules in split_stages(self.backbone)[0]]
        backbone[0] = ("stem", backbone[0][1])
        return [*backbone, ("decoder", [self.classifier[:4]]), ("head", [self.classifier[4]])]


def from_torchvision(state: dict[str, Any]) -> dict[str, Any]:
    """torchvision's FCN / DeepLabV3 state dict → this module's: the auxiliary head dropped, the last conv
    split into its background row and its classes' rows. Keys already in the zoo's layout pass through."""
    out = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
    for kind in ("weight", "bias"):
        last = out.pop(f"classifier.4.{kind}", None)
        if last is not None:
            out[f"classifier.4.background.{kind}"], out[f"classifier.4.classes.{kind}"] = last[:1], last[1:]
    return out


_VOC = dict(
    dataset="coco-voc",
    license="bsd-3-clause",
    origin="torchvision",
    num_classes=20,
    input_size=(3, 520, 520),
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    class_names="pascal-voc",
    # evaluated at 520 px: torchvision resizes the short side to 520 and keeps the aspect ratio; the zoo resizes
    # to 520×520 (no crop: every pixel of a file gets a class, mapped back to the file's own size)
    convert=from_torchvision,
)
WEIGHTS = weight_table(
    {
        "fcn_resnet50.tv_coco_voc": dict(url=TORCHVISION_URL + "fcn_resnet50_coco-1167a1af.pth", **_VOC),
        "deeplabv3_resnet50.tv_coco_voc": dict(url=TORCHVISION_URL + "deeplabv3_resnet50_coco-cd0a2569.pth", **_VOC),
    }
)
_META = dict(
    input_size=(3, 520, 520), num_classes=20, mean=IMAGENET_MEAN, std=IMAGENET_STD, task="segmentation", weights=WEIGHTS
)


@register_model(family="fcn", paper=PAPERS["fcn"], **_META)
def fcn_resnet50(**kwargs) -> TVSegmentation:
    """FCN over a ResNet-50 dilated to output stride 8 (torchvision's ``fcn_resnet50``, without its aux head)."""
    return TVSegmentation("fcn", **kwargs)


@register_model(family="deeplabv3", paper=PAPERS["deeplabv3"], **_META)
def deeplabv3_resnet50(**kwargs) -> TVSegmentation:
    """DeepLabV3 (ASPP 12/24/36) over a ResNet-50 dilated to output stride 8 (torchvision's, without its aux head)."""
    return TVSegmentation("deeplabv3", **kwargs)
