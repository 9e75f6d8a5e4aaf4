"""LightningDataModules for the zoo's datasets."""

from zoo.data.fashion_mnist import FashionMNISTDataModule

__all__ = ["FashionMNISTDataModule"]
