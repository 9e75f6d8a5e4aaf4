"""A light FPN / U-Net decoder over the feature pyramid of any zoo network (Lin et al. 2017, "Feature
pyramid networks for object detection"; Ronneberger et al. 2015, "U-Net"), for semantic segmentation.

The encoder is a zoo classifier cut after its last ``feature_info`` level asked for (torchvision's
``create_feature_extractor``, as :func:`zoo.backbone` does): its module names and state-dict keys are the
classifier's under ``encoder.``, so a classifier's weights start it (the segmentation task's
``backbone_weights=``). The decoder goes top-down: a 1×1 *lateral* conv brings every level to ``dim``
channels; each coarser map is upsampled ×2 (bilinear), added to the next finer lateral, and mixed by a
3×3 conv-BN-ReLU (U-Net's merge, with a sum instead of a concatenation). A 1×1 ``classifier`` gives
``num_classes + 1`` channels (0: background) at the finest level's stride, upsampled to the input size.

``(N, C, H, W)`` → ``(N, num_classes + 1, H, W)`` logits. Stages: the encoder's (stem, stage1...) and
then ``decoder`` and ``head``, both head stages: they start untrained even when the encoder is pretrained.

``fpn_resnet20``: the CIFAR ResNet-20 encoder (levels ``layer1``-``layer3``: strides 1, 2, 4, 16/32/64
channels), ``dim`` 32, for 64×64 Fashion-MNIST scenes; its encoder takes ``resnet20.fmnist``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from zoo.data.constants import FMNIST_MEAN, FMNIST_STD
from zoo.layers.network import Network, split_stages
from zoo.registry import build_net, register_model, weight_table

PAPER = "Lin et al. 2017, Feature pyramid networks for object detection; Ronneberger et al. 2015, U-Net"


def conv_bn_relu(in_chans: int, out_chans: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=False), nn.BatchNorm2d(out_chans), nn.ReLU())


class FPN(Network):
    """Encoder levels → top-down decoder → per-pixel logits (see the module doc).

    Args:
        encoder: a registered zoo network with ``feature_info`` (``resnet20``, ``resnet18``...).
        levels: the indices of its ``feature_info`` the decoder reads, finest first.
        dim: the decoder's width. num_classes: classes besides the background. in_chans: input channels.
    """

    first_conv_name = "encoder.conv1"  # a ResNet encoder's; another encoder's builder declares its own
    classifier_name = "classifier"
    head_stages = ("decoder", "head")

    def __init__(
        self,
        encoder: str = "resnet20",
        levels: Sequence[int] = (1, 2, 3),
        dim: int = 32,
        num_classes: int = 10,
        in_chans: int = 1,
    ) -> None:
        super().__init__()
        from torchvision.models.feature_extraction import create_feature_extractor

        net = build_net(encoder, num_classes=0, in_chans=in_chans)
        self.feature_info = [dict(net.feature_info[i]) for i in levels]
        names = {id(m): n for n, m in net.named_modules()}
        self.encoder_name = encoder
        self._encoder_stages = [(stage, [names[id(m)] for m in modules]) for stage, modules in split_stages(net)[0]]
        nodes = {info["module"]: str(i) for i, info in enumerate(self.feature_info)}
        self.encoder = create_feature_extractor(net, return_nodes=nodes)
        self.lateral = nn.ModuleList(nn.Conv2d(info["num_chs"], dim, 1) for info in self.feature_info)
        self.merge = nn.ModuleList(conv_bn_relu(dim, dim) for _ in self.feature_info)
        self.classifier = nn.Conv2d(dim, num_classes + 1, 1)
        self.num_classes, self.num_features, self.dim = num_classes, dim, dim

    def forward_features(self, x: Tensor) -> Tensor:
        """The decoder's finest map ``(N, dim, H/s, W/s)``, ``s`` the finest level's stride."""
        maps = self.encoder(x)
        out = self.merge[-1](self.lateral[-1](maps[str(len(self.feature_info) - 1)]))
        for i in range(len(self.feature_info) - 2, -1, -1):
            lateral = self.lateral[i](maps[str(i)])
            out = F.interpolate(out, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            out = self.merge[i](out + lateral)
        return out

    def forward_head(self, x: Tensor, pre_logits: bool = False, size: Sequence[int] | None = None) -> Tensor:
        if pre_logits:
            return x
        logits = self.classifier(x)
        if size is not None and tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
        return logits

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x), size=x.shape[-2:])

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh 1×1 classifier for ``num_classes`` classes + the background."""
        self.classifier = nn.Conv2d(self.dim, num_classes + 1, 1).to(self.classifier.weight.device)
        self.num_classes = num_classes

    def stages(self) -> list[tuple[str, list[nn.Module]]]:
        held = dict(self.encoder.named_modules())  # the cut graph keeps the encoder's module names
        encoder = [(stage, [held[n] for n in names if n in held]) for stage, names in self._encoder_stages]
        encoder = [(stage, modules) for stage, modules in encoder if modules]
        return [*encoder, ("decoder", [self.lateral, self.merge]), ("head", [self.classifier])]


WEIGHTS = weight_table(
    {
        # the two runs of issue 39 at the same budget: the encoder from resnet20.fmnist, and from random weights
        "fpn_resnet20.fmnist_scenes": dict(
            dataset="fashion_mnist_scenes", recipe="recipes/fpn_resnet20_fmnist_scenes.yaml"
        ),
        "fpn_resnet20.fmnist_scenes_scratch": dict(
            dataset="fashion_mnist_scenes", recipe="recipes/fpn_resnet20_fmnist_scenes_scratch.yaml"
        ),
    }
)
_NAMES = dict(family="fpn", weights=WEIGHTS, paper=PAPER, task="segmentation")


@register_model(input_size=(1, 64, 64), num_classes=10, mean=FMNIST_MEAN, std=FMNIST_STD, **_NAMES)
def fpn_resnet20(**kwargs) -> FPN:
    """FPN decoder (dim 32) over CIFAR ResNet-20's layer1-3, for 64×64 Fashion-MNIST scenes."""
    return FPN(encoder="resnet20", levels=(1, 2, 3), **kwargs)
