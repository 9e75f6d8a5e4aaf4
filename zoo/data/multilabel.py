"""Multi-label data: every image has a set of classes (possibly none), as a ``(N, K)`` 0/1 target.

* :func:`scan_tags_csv`: a CSV of ``path,labels`` whose label cell holds class names separated by ``;``
  (``cat;dog``), an empty cell for an image with no label; paths relative to the CSV's folder;
* :class:`MultiLabelDataModule`: that CSV, or ``(images, targets)`` tensors, prepared at the size of the
  model being trained (as :class:`~zoo.data.folders.ImageFolderDataModule` does), a seeded validation split;
* :class:`FashionMNISTSceneTags`: the Fashion-MNIST scenes of :mod:`zoo.data.scenes` with "which garments are
  in this scene" as the target (a scene of a shirt and two bags is ``{shirt, bag}``), resized to the model's
  input; the same fixed scenes on every machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from zoo.data.fashion_mnist import CLASS_NAMES
from zoo.errors import InvalidValueError, ZooError
from zoo.sources import read_csv

SEPARATOR = ";"


def scan_tags_csv(path: Path, classes: Sequence[str] | None = None) -> tuple[list[Path], Tensor, list[str]]:
    """The files of a ``path,labels`` CSV, their ``(N, K)`` 0/1 targets and the class names (sorted by default)."""
    root = path.parent.resolve()
    header, table = read_csv(path, "a multi-label CSV is UTF-8 text of path,labels rows")
    fields = set(header)
    column = "labels" if "labels" in fields else "label"
    if "path" not in fields or column not in fields:
        raise ZooError(
            f"{path} needs a header line 'path,labels' (got {header}); one image per row, "
            f"its classes separated by '{SEPARATOR}' (an empty cell: no label)"
        )
    rows = [(line, (row["path"] or "").strip(), row[column] or "") for line, row in enumerate(table, start=2)]
    if not rows:
        raise ZooError(f"{path} lists no images; add rows of path,labels")
    tags = []
    for line, file, cell in rows:
        if not file:
            raise ZooError(f"{path}, line {line}: no path; every row is path,labels")
        names = [name.strip() for name in cell.split(SEPARATOR) if name.strip()]
        if len(set(names)) != len(names):
            raise ZooError(f"{path}, line {line}: a class named twice in {cell!r}; name each class once")
        tags.append(names)
    classes = list(classes) if classes is not None else sorted({name for names in tags for name in names})
    if not classes:
        raise ZooError(f"{path}: no image has a label; name each image's classes, separated by '{SEPARATOR}'")
    index = {name: i for i, name in enumerate(classes)}
    files, targets = [], torch.zeros(len(rows), len(classes))
    for row, ((line, file, _), names) in enumerate(zip(rows, tags)):
        unknown = [name for name in names if name not in index]
        if unknown:
            raise ZooError(f"{path}, line {line}: {unknown[0]!r} is not in the class list {classes}")
        target = (root / file).resolve()
        if not target.is_relative_to(root):
            raise ZooError(f"{path}, line {line}: {file} is outside {root}; keep the images in the CSV's folder")
        files.append(target)
        targets[row, [index[name] for name in names]] = 1
    return files, targets, classes


def check_targets(images: Tensor, targets: Tensor, classes: Sequence[str] | None, what: str = "") -> Tensor:
    """``(N, K)`` targets of 0 and 1 for ``N`` images, as floats; one line otherwise."""
    targets = torch.as_tensor(targets)
    if targets.ndim != 2:
        raise InvalidValueError(
            f"multi-label {what}targets must be (N, classes) of 0 and 1, got shape {tuple(targets.shape)}"
        )
    if len(targets) != len(images):
        raise InvalidValueError(f"{len(images)} {what}images but {len(targets)} target rows; give one row per image")
    if classes is not None and targets.shape[1] != len(classes):
        raise InvalidValueError(f"{targets.shape[1]} target columns for {len(classes)} classes; one column per class")
    if not bool(((targets == 0) | (targets == 1)).all()):
        raise InvalidValueError(f"multi-label {what}targets hold 0 or 1 (absent or present)")
    return targets.float()


class TensorTags(Dataset):
    """``(image uint8 (C, H, W), target (K,))`` pairs, with an optional augmentation of the image."""

    def __init__(self, images: Tensor, targets: Tensor, augment: Any = None) -> None:
        self.images, self.targets, self.augment = images, targets, augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = self.images[index]
        return (self.augment(image) if self.augment is not None else image), self.targets[index]


class _TagsBase(L.LightningDataModule):
    """Loaders over ``self.datasets`` of :class:`TensorTags`, the model's input size, flips when augmenting."""

    class_names: list[str]

    def model_input_size(self) -> tuple[int, int, int]:
        if self.hparams.get("input_size") is not None:
            return tuple(self.hparams.input_size)
        module = getattr(getattr(self, "trainer", None), "lightning_module", None)
        if module is None or not hasattr(module, "input_size"):
            raise ZooError(f"{type(self).__name__} needs input_size=(C, H, W), or a zoo model being trained")
        return tuple(module.input_size)

    def _flip(self):
        if not self.hparams.get("augment"):
            return None
        from torchvision.transforms import v2

        return v2.RandomHorizontalFlip()

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(self.datasets[split], batch_size=self.hparams.batch_size, shuffle=shuffle)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", False) if "val" in self.datasets else []

    @property
    def test_split(self) -> str:
        return "test" if "test" in self.datasets else "val"

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_split, False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class MultiLabelDataModule(_TagsBase):
    """Your multi-label images: a ``path,labels`` CSV (see :func:`scan_tags_csv`) or tensors.

    Args:
        path: the CSV. classes: the class names in order (default: every name in the CSV, sorted).
        input_size: ``(C, H, W)``; default: the model being trained's.
        val_fraction, split_seed: the share of images held out for validation, and the split's seed.
        batch_size: images per batch. augment: horizontal flips of training images.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        classes: list[str] | None = None,
        input_size: tuple[int, int, int] | None = None,
        val_fraction: float = 0.2,
        split_seed: int = 0,
        batch_size: int = 32,
        augment: bool = True,
    ) -> None:
        super().__init__()
        if not 0 <= val_fraction < 1:
            raise InvalidValueError(f"val_fraction must be in [0, 1), got {val_fraction!r} (e.g. 0.2)")
        self.save_hyperparameters(ignore=["path"])
        self.hparams["path"] = None if path is None else str(path)
        self.dataset_name = "tags"
        self.datasets: dict[str, TensorTags] = {}
        self._files: dict[str, tuple[list[Path], Tensor]] = {}
        self._tensors: dict[str, tuple[Tensor, Tensor]] = {}
        self.class_names = list(classes) if classes else []
        if path is not None:
            path = Path(path).expanduser()
            if path.suffix.lower() != ".csv" or not path.is_file():
                raise ZooError(f"{path} is not a CSV file; multi-label data is a path,labels CSV (or tensors)")
            files, targets, self.class_names = scan_tags_csv(path, classes)
            train, val = self._split(len(files), str(path))
            self._files = {"train": ([files[i] for i in train], targets[train])}
            if val:
                self._files["val"] = ([files[i] for i in val], targets[val])

    @property
    def train_count(self) -> int | None:
        """How many training images (``zoo.finetune``'s step budget reads it)."""
        part = self._files.get("train") or self._tensors.get("train")
        return len(part[1]) if part else None

    def _split(self, count: int, where: str = "the data") -> tuple[list[int], list[int]]:
        """Seeded (train, val) indices; with a ``val_fraction`` at least one image is held out (as for regression)."""
        if self.hparams.val_fraction and count < 2:
            raise ZooError(f"{where} lists one image; give at least two (one is held out for validation)")
        order = torch.randperm(count, generator=torch.Generator().manual_seed(self.hparams.split_seed)).tolist()
        held = min(count - 1, max(1, round(self.hparams.val_fraction * count))) if self.hparams.val_fraction else 0
        return sorted(order[held:]), sorted(order[:held])

    @classmethod
    def from_tensors(cls, images: Tensor, targets: Tensor, classes: list[str] | None = None, **kwargs: Any):
        """In-memory images ``(N, C, H, W)`` (uint8, or floats in [0, 1]) and ``(N, K)`` 0/1 targets."""
        from zoo.data.folders import _as_uint8

        data = cls(classes=classes, **kwargs)
        targets = check_targets(images, targets, classes)
        data.class_names = list(classes) if classes else [str(i) for i in range(targets.shape[1])]
        images = _as_uint8(images)
        train, val = data._split(len(images))
        data._tensors = {"train": (images[train], targets[train])}
        if val:
            data._tensors["val"] = (images[val], targets[val])
        data.dataset_name = "tensors"
        return data

    @classmethod
    def for_evaluation(cls, path: str | Path, classes: list[str], **kwargs: Any) -> MultiLabelDataModule:
        """Every image of the CSV as the test set, for a model's classes."""
        data = cls(path, classes=classes, val_fraction=0.0, augment=False, **kwargs)
        data._files = {"test": data._files["train"]}
        return data

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        from zoo.data.folders import _resize_tensor

        size = self.model_input_size()
        for split, (images, targets) in self._tensors.items():
            self.datasets[split] = TensorTags(
                _resize_tensor(images, size), targets, self._flip() if split == "train" else None
            )
        for split, (files, targets) in self._files.items():
            self.datasets[split] = TensorTags(
                decode_files(files, size), targets, self._flip() if split == "train" else None
            )


def decode_files(files: Sequence[Path], size: tuple[int, int, int]) -> Tensor:
    """Image files as uint8 ``(N, C, H, W)`` at the model's channels and size; one line for an unreadable file."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms import v2

    from zoo.layers.preprocessing import eval_transforms

    steps = v2.Compose(eval_transforms(size).transforms[:-1])  # to the model's channels and size, uint8
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                images.append(steps(image.convert("RGB" if size[0] == 3 else "L")))
        except (OSError, UnidentifiedImageError) as error:
            raise ZooError(f"cannot read {file} ({error}); fix it or remove its row") from None
    return torch.stack(images)


class FashionMNISTSceneTags(_TagsBase):
    """The Fashion-MNIST scenes (1 to ``max_objects`` garments on a 64×64 canvas) labelled with the set of
    garment classes in each, resized to the model's input (``input_size``, default the model's).

    Args:
        train_scenes, val_scenes, test_scenes: how many of each (fixed by ``seed``; the test scenes are made of
            Fashion-MNIST's test images, validation scenes of 5,000 held-out training images).
        size, max_objects, min_scale, max_scale: the scenes' canvas and garments (:class:`FashionMNISTScenes`).
        batch_size: scenes per batch. augment: horizontal flips of training scenes.
    """

    dataset_name = "fashion_mnist_scene_tags"
    class_names = list(CLASS_NAMES)

    def __init__(
        self,
        train_scenes: int = 3_000,
        val_scenes: int = 1_000,
        test_scenes: int = 1_000,
        size: int = 64,
        max_objects: int = 4,
        min_scale: int = 14,
        max_scale: int = 28,
        seed: int = 0,
        input_size: tuple[int, int, int] | None = None,
        batch_size: int = 64,
        augment: bool = True,
        root: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.datasets: dict[str, TensorTags] = {}

    def scenes(self, split: str) -> tuple[Tensor, Tensor]:
        """One split's scenes at 64×64 (uint8 ``(N, 1, size, size)``) and their ``(N, 10)`` garment sets."""
        from zoo.data.scenes import FashionMNISTScenes

        hp = self.hparams
        source = FashionMNISTScenes(
            size=hp.size,
            max_objects=hp.max_objects,
            min_scale=hp.min_scale,
            max_scale=hp.max_scale,
            train_scenes=hp.train_scenes,
            val_scenes=hp.val_scenes,
            test_scenes=hp.test_scenes,
            seed=hp.seed,
            augment=False,
            root=hp.root,
        )
        rendered = source.render(split)
        targets = torch.zeros(len(rendered.images), len(CLASS_NAMES))
        for row, target in enumerate(rendered.targets):
            targets[row, target["labels"]] = 1
        return rendered.images, targets

    def setup(self, stage: str | None = None) -> None:
        from zoo.data.folders import _resize_tensor

        size = self.model_input_size()
        splits = ("test",) if stage == "test" else ("train", "val", "test")
        for split in splits:
            if split not in self.datasets:
                images, targets = self.scenes(split)
                augment = self._flip() if split == "train" else None
                self.datasets[split] = TensorTags(_resize_tensor(images, size), targets, augment)
