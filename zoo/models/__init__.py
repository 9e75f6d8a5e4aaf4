"""The model families, one file each: blocks, the network, its weight table, registered builders.

``import zoo.models`` registers every family in :mod:`zoo.registry`. A new family is one more file here
and one more name in the import below.
"""

from __future__ import annotations

from zoo.models import (  # each registers its builders
    alexnet,
    detr,
    efficientnet,
    fpn,
    googlenet,
    lenet,
    resnet,
    swin,
    tv_segmentation,
    vgg,
    vit,
)

FAMILIES = (lenet, alexnet, vgg, googlenet, resnet, efficientnet, vit, swin, detr, fpn, tv_segmentation)

from zoo.models import timm_family  # noqa: E402,F401  timm/<name>: resolved on lookup, timm imported then
