"""Your own images as a LightningDataModule: a folder of class sub-folders, a CSV of ``path,label``, or tensors.

* ``photos/<class>/<image>``: one sub-folder per class (any format PIL reads, grey or colour, any size);
  with ``photos/train/`` and ``photos/val/`` (or ``validation/``), those are the splits (and
  ``photos/test/`` the test set); otherwise a seeded, per-class ``val_fraction`` is held out.
* ``labels.csv`` with a ``path,label`` header: paths relative to the CSV's folder (never outside it),
  labels as class names or as integers 0..K-1.
* :meth:`ImageFolderDataModule.from_tensors`: images ``(N, C, H, W)`` (uint8, or float in [0, 1]) + labels.

Images are prepared to the model's input (its ``transforms()``: channels, resize, crop) and kept as
uint8 tensors: each file is decoded once, by worker processes, when the data is set up (``cache``), or
once per epoch when the decoded set would not fit in memory. Training batches then get a random shift
and a horizontal flip (networks under 64 px), or a random-resized crop of the image cached a little larger
than the crop, a flip and optionally TrivialAugment/RandAugment (64 px and more; :mod:`zoo.data.photo_augment`). An unreadable image is skipped with a warning that names it (``strict=True``:
an error); the class counts are logged, with a warning when they are imbalanced.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from zoo.data.checks import check_classes, check_tensors, empty_validation
from zoo.data.fashion_mnist import TensorImageDataset, passthrough
from zoo.data.image_modes import DecodeAtLeast, colour_files, grey_model_warning, to_8bit
from zoo.data.labelled_files import VAL_NAMES, scan_csv, scan_folder, split_per_class
from zoo.data.photo_augment import cache_side, cache_steps, check_augment, is_photo, train_augment
from zoo.errors import DatasetNotFoundError, InvalidValueError, ZooError

log = logging.getLogger(__name__)
CACHE_BYTES = 2 * 1024**3  # decoded images kept in memory up to this size (cache=None)


class DecodedFiles(Dataset):
    """``(index, uint8 tensor or None)`` per file: decoded and prepared, ``None`` when unreadable."""

    def __init__(self, files: Sequence[Path], prepare: Callable[[Any], Tensor]) -> None:
        self.files, self.prepare = list(files), prepare

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[int, Tensor | None]:
        from PIL import Image

        try:
            with Image.open(self.files[index]) as image:
                return index, self.prepare(image)
        except (OSError, ValueError, SyntaxError):
            return index, None


class FileImageDataset(Dataset):
    """The images decoded every epoch (data too large to cache); an unreadable file fails its batch."""

    def __init__(self, items: Sequence[tuple[Path, int]], prepare: Callable[[Any], Tensor], augment: Any = None):
        self.files = DecodedFiles([f for f, _ in items], prepare)
        self.labels = torch.tensor([y for _, y in items])
        self.augment = augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        _, image = self.files[index]
        if image is None:
            raise ZooError(f"{self.files.files[index]} could not be read as an image")
        return (self.augment(image) if self.augment else image), self.labels[index]


class ImageFolderDataModule(L.LightningDataModule):
    """Train, validate and test on your images (see the module doc for the layouts).

    Args:
        path: a folder of class sub-folders (optionally ``train/``, ``val/``, ``test/``) or a ``.csv``.
        classes: the class names in order (default: the sub-folders, or the CSV's labels, sorted).
        input_size: ``(C, H, W)`` to prepare images for; default: the model's (``transforms()`` of the
            LightningModule being trained), so nothing needs saying when a zoo model trains.
        val_fraction: share of each class held out for validation when there is no ``val/`` folder.
        split_seed: seed of that split.
        batch_size, num_workers: DataLoader settings (workers decode the files).
        augment: training augmentation by the model's size (:mod:`zoo.data.photo_augment`): below 64 px a
            random shift and flip; from 64 px a random-resized crop and flip (``"trivialaugment"`` or
            ``"randaugment"`` add that policy); ``False``: none.
        strict: an unreadable image is an error instead of a warning and a skip.
        cache: keep the decoded images in memory (default: when they fit in 2 GB).
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        classes: list[str] | None = None,
        input_size: tuple[int, int, int] | None = None,
        val_fraction: float = 0.2,
        split_seed: int = 0,
        batch_size: int = 32,
        num_workers: int | None = None,
        augment: bool | str = True,
        strict: bool = False,
        cache: bool | None = None,
    ) -> None:
        super().__init__()
        check_augment(augment)
        if not 0 <= val_fraction < 1:
            raise InvalidValueError(f"val_fraction must be in [0, 1), got {val_fraction!r} (e.g. 0.2)")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidValueError(f"batch_size must be a whole number ≥ 1, got {batch_size!r}")
        self.save_hyperparameters(ignore=["path"])
        self.hparams["path"] = None if path is None else str(path)  # plain text: checkpoints load with weights_only
        self.splits: dict[str, list[tuple[Path, int]]] = {}
        self._tensors: dict[str, tuple[Tensor, Tensor]] = {}
        self.datasets: dict[str, Dataset] = {}
        self.prepare: Callable[[Any], Tensor] | None = None
        self.dataset_name = "images"
        self.class_names: list[str] = list(classes) if classes else []
        self.val_empty_classes: list[str] = []  # classes the validation split holds no image of
        if path is not None:
            self._scan(Path(path).expanduser(), classes)

    @classmethod
    def from_tensors(
        cls,
        images: Tensor,
        labels: Tensor,
        classes: list[str] | None = None,
        val: tuple[Tensor, Tensor] | None = None,
        **kwargs: Any,
    ) -> ImageFolderDataModule:
        """In-memory images ``(N, C, H, W)`` (uint8, or float in [0, 1]) and integer labels ``(N,)``."""
        data = cls(classes=classes, **kwargs)
        images, labels = check_tensors(images, labels, classes)
        images = _as_uint8(images)
        count = int(labels.max()) + 1 if classes is None else len(classes)
        data.class_names = list(classes) if classes else [str(i) for i in range(count)]
        if val is not None:
            val = check_tensors(val[0], val[1], data.class_names, what="validation ")
        if val is None:
            indices = list(range(len(labels)))
            train, held = split_per_class(
                [(i, int(labels[i])) for i in indices], kwargs.get("val_fraction", 0.2), kwargs.get("split_seed", 0)
            )
            val = images[[i for i, _ in held]], labels[[i for i, _ in held]]
            images, labels = images[[i for i, _ in train]], labels[[i for i, _ in train]]
        data._tensors = {"train": (images, labels), "val": (_as_uint8(val[0]), torch.as_tensor(val[1]).long())}
        data.dataset_name = "tensors"
        data._report({split: t[1].tolist() for split, t in data._tensors.items()})
        return data

    @classmethod
    def for_evaluation(cls, path: str | os.PathLike, classes: list[str], **kwargs: Any) -> ImageFolderDataModule:
        """Every image of ``path`` (its ``test/`` folder when it has one) as the test set, for a model's classes."""
        data = cls(path, classes=classes, val_fraction=0.0, augment=False, **kwargs)
        data.splits = {"test": data.splits.get("test") or [item for items in data.splits.values() for item in items]}
        return data

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # ---- finding the files -----------------------------------------------------------------------
    def _scan(self, path: Path, classes: Sequence[str] | None) -> None:
        if not path.exists():
            raise DatasetNotFoundError(f"no such folder or CSV file: {path}")
        self.dataset_name = path.stem if path.is_file() else path.name
        if path.is_file():
            if path.suffix.lower() != ".csv":
                raise ZooError(f"{path} is neither a folder of class sub-folders nor a .csv file of path,label")
            items, names = scan_csv(path, classes)
            self.splits["train"], self.splits["val"] = split_per_class(
                items, self.hparams.val_fraction, self.hparams.split_seed
            )
        elif (path / "train").is_dir():
            items, names = scan_folder(path / "train", classes)
            val_dir = next((path / n for n in VAL_NAMES if (path / n).is_dir()), None)
            if val_dir is not None:
                self.splits["train"] = items
                self.splits["val"] = scan_folder(val_dir, names)[0]
            else:
                self.splits["train"], self.splits["val"] = split_per_class(
                    items, self.hparams.val_fraction, self.hparams.split_seed
                )
            if (path / "test").is_dir():
                self.splits["test"] = scan_folder(path / "test", names)[0]
        else:
            items, names = scan_folder(path, classes)
            self.splits["train"], self.splits["val"] = split_per_class(
                items, self.hparams.val_fraction, self.hparams.split_seed
            )
        self.class_names = names
        self._report({split: [y for _, y in items] for split, items in self.splits.items()})

    def _report(self, labels: dict[str, list[int]]) -> None:
        check_classes(self.class_names, f"the data ({self.dataset_name})")
        counts = [labels["train"].count(i) for i in range(len(self.class_names))]
        sizes = ", ".join(f"{split} {len(v)}" for split, v in labels.items())
        log.info(
            "%d classes, %s images; training images per class: %s",
            len(counts),
            sizes,
            dict(zip(self.class_names, counts)),
        )
        empty = [name for name, n in zip(self.class_names, counts) if n == 0]
        if empty:
            raise ZooError(f"no training images for class(es) {', '.join(empty)}; every class needs at least one")
        self.val_empty_classes = empty_validation(self.class_names, labels["train"], labels.get("val", []))
        if max(counts) > 2 * min(counts):
            warnings.warn(
                f"imbalanced classes: {max(counts)} training images of {self.class_names[counts.index(max(counts))]} "
                f"but {min(counts)} of {self.class_names[counts.index(min(counts))]}; accuracy will favour the large "
                "classes (collect more, or weigh the loss)",
                stacklevel=2,
            )

    # ---- Lightning hooks -------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        size = self._input_size()
        if self._tensors:
            for split, (images, labels) in self._tensors.items():
                if split == "train" and size[0] == 1 and images.ndim == 4 and images.shape[1] == 3:
                    colour = int((images.amax(1) - images.amin(1)).flatten(1).amax(1).gt(2).sum())
                    if colour:
                        warnings.warn(grey_model_warning(colour, len(images)), stacklevel=2)
                photo = split == "train" and self.hparams.augment and is_photo(size)
                images = _resize_tensor(images, (size[0], cache_side(size), cache_side(size)) if photo else size)
                self.datasets[split] = TensorImageDataset(
                    images, labels, self._augment(size) if split == "train" else None
                )
            return
        from torchvision.transforms import v2

        self.prepare = self._prepare(size)
        if size[0] == 1:  # a grey model: colour files are turned grey, said once
            files = [f for f, _ in self.splits.get("train", [])]
            colour, checked = colour_files(files)
            if colour:
                warnings.warn(grey_model_warning(colour, checked), stacklevel=2)
        total = sum(len(v) for v in self.splits.values())
        cache = (
            self.hparams.cache if self.hparams.cache is not None else total * size[0] * size[1] * size[2] <= CACHE_BYTES
        )
        for split, items in self.splits.items():
            if not items:  # val_fraction=0: no validation split
                continue
            augment = self._augment(size) if split == "train" else None
            # a photo network's training images are kept a little larger than its crop (random-resized crops)
            if augment and is_photo(size):
                prepare = v2.Compose([DecodeAtLeast(short=cache_side(size)), to_8bit, *cache_steps(size)])
            else:
                prepare = self.prepare
            if cache:
                images, labels = self._decode(items, prepare)
                self.datasets[split] = TensorImageDataset(images, labels, augment)
            else:  # decoded every epoch: the unreadable files are found and left out now
                self.datasets[split] = FileImageDataset(self._readable(items), prepare, augment)

    def _input_size(self) -> tuple[int, int, int]:
        if self.hparams.input_size is not None:
            return tuple(self.hparams.input_size)
        module = getattr(getattr(self, "trainer", None), "lightning_module", None)
        if module is None or not hasattr(module, "input_size"):
            raise ZooError(
                "ImageFolderDataModule needs input_size=(C, H, W), or a zoo model being trained to take it from"
            )
        return tuple(module.input_size)

    def _prepare(self, size: tuple[int, int, int]) -> Callable[[Any], Tensor]:
        """The model's evaluation preprocessing, to uint8 (so the decoded set stays 4× smaller)."""
        from torchvision.transforms import v2

        from zoo.layers.preprocessing import eval_transforms

        module = getattr(getattr(self, "trainer", None), "lightning_module", None)
        preprocessing = getattr(module, "preprocessing", {}) if module is not None else {}
        steps = eval_transforms(size, **preprocessing).transforms[:-1]  # everything but the float conversion
        resize = preprocessing.get("resize")  # a JPEG is decoded at the smallest scale the resize still needs
        draft = DecodeAtLeast(short=resize) if resize else DecodeAtLeast(size=(size[2], size[1]))
        return v2.Compose([draft, to_8bit, *steps])  # 16-bit, palette, CMYK, alpha: scaled to 8 bits first

    def _augment(self, size: tuple[int, int, int]):
        return train_augment(size, self.hparams.augment)

    def _decode(self, items: list[tuple[Path, int]], prepare: Callable[[Any], Tensor]) -> tuple[Tensor, Tensor]:
        """Every file decoded once (worker processes), unreadable ones skipped and named (or an error)."""
        loader = DataLoader(
            DecodedFiles([f for f, _ in items], prepare),
            batch_size=64,
            num_workers=self._workers(),
            collate_fn=passthrough,
        )
        images, labels, bad = [], [], []
        for batch in loader:
            for index, image in batch:
                if image is None:
                    bad.append(items[index][0])
                else:
                    images.append(image)
                    labels.append(items[index][1])
        self._unreadable(bad)
        if not images:
            from zoo.data.images import unreadable_error

            raise unreadable_error(bad)
        return torch.stack(images), torch.tensor(labels)

    def _unreadable(self, bad: list[Path]) -> None:
        """Name the unreadable files: a warning (they are left out), or the error of ``strict=True``."""
        if not bad:
            return
        shown = ", ".join(str(p) for p in bad[:5]) + (f" (+{len(bad) - 5} more)" if len(bad) > 5 else "")
        if self.hparams.strict:
            raise ZooError(f"{len(bad)} image(s) could not be read: {shown}; fix or remove them (or strict=False)")
        warnings.warn(f"skipped {len(bad)} unreadable image(s): {shown}", stacklevel=3)

    def _readable(self, items: list[tuple[Path, int]]) -> list[tuple[Path, int]]:
        """The items whose file PIL can open and verify (without decoding it)."""
        from PIL import Image

        good, bad = [], []
        for item in items:
            try:
                with Image.open(item[0]) as image:
                    image.verify()
                good.append(item)
            except (OSError, ValueError, SyntaxError):
                bad.append(item[0])
        self._unreadable(bad)
        return good

    def _workers(self) -> int:
        if self.hparams.num_workers is not None:
            return self.hparams.num_workers
        return min(4, max(0, (os.cpu_count() or 1) - 1))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        cached = isinstance(dataset, TensorImageDataset)
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            num_workers=0 if cached else self._workers(),  # in-memory tensors: workers would only add copies
            collate_fn=passthrough if cached else None,
            persistent_workers=not cached and self._workers() > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", shuffle=False) if "val" in self.datasets else []

    @property
    def test_split(self) -> str:
        """Where the test numbers come from: the ``test`` images, else the validation ones."""
        return "test" if "test" in self.datasets else "val"

    def test_dataloader(self) -> DataLoader | list:
        return self._loader(self.test_split, shuffle=False) if self.test_split in self.datasets else []


def _as_uint8(images: Tensor) -> Tensor:
    images = torch.as_tensor(images)
    if images.dtype == torch.uint8:
        return images
    if images.is_floating_point():
        if images.min() < 0 or images.max() > 1:
            raise InvalidValueError("float images must be in [0, 1]; scale them (or pass uint8 images)")
        return (images * 255).round().to(torch.uint8)
    raise InvalidValueError(f"images must be uint8 or float in [0, 1], got {images.dtype}")


def _resize_tensor(images: Tensor, size: tuple[int, int, int]) -> Tensor:
    """In-memory images to the model's channels and size."""
    import torch.nn.functional as F

    if images.ndim == 3:
        images = images.unsqueeze(1)
    channels = images.shape[1]
    if channels != size[0]:
        if size[0] == 1:
            images = (
                (images.float() * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1))
                .sum(1, keepdim=True)
                .round()
                .to(torch.uint8)
            )
        else:
            images = images.expand(-1, size[0], -1, -1).contiguous()
    if tuple(images.shape[2:]) != tuple(size[1:]):
        images = (
            F.interpolate(images.float(), size=size[1:], mode="bilinear", antialias=True, align_corners=False)
            .round()
            .clamp(0, 255)
            .to(torch.uint8)
        )
    return images
