"""LightningDataModules for the zoo's datasets, and the tables they share (class names, statistics).

``zoo.data.FashionMNISTDataModule`` imports Lightning on first use, so that the family files can read
``zoo.data.constants`` without it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FashionMNISTDataModule", "ImageFolderDataModule", "StreamingImages"]


def __getattr__(name: str) -> Any:
    if name == "FashionMNISTDataModule":
        from zoo.data.fashion_mnist import FashionMNISTDataModule

        return FashionMNISTDataModule
    if name == "ImageFolderDataModule":
        from zoo.data.folders import ImageFolderDataModule

        return ImageFolderDataModule
    if name == "StreamingImages":
        from zoo.data.streaming import StreamingImages

        return StreamingImages
    raise AttributeError(f"module 'zoo.data' has no attribute {name!r}")
