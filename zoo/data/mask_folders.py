"""Your own image/mask pairs as a LightningDataModule, for segmentation.

::

    my_masks/
      images/  street1.jpg  street2.png ...      any format PIL reads, grey or colour, any size
      masks/   street1.png  street2.png ...      the same names (any suffix): one mask per image
      classes.txt                                optional: the names of values 1..K, one a line

A mask is an *index* PNG (mode ``L``: each pixel's value is its class) or a *palette* PNG (mode ``P``,
as Pascal VOC's: each pixel's palette index is its class), of its image's size: 0 is the background,
1..K the classes, 255 a pixel left unscored (VOC's borders). The classes are ``classes.txt``'s lines (a
first line ``background`` is skipped), or ``classes=``; without either, 1..K up to the largest value found.
With ``train/`` and ``val/`` (or ``validation/``) sub-folders, each holding ``images/`` and ``masks/``,
those are the splits (and ``test/`` the test set); otherwise a seeded ``val_fraction`` of the pairs is held
out, as :class:`~zoo.data.folders.ImageFolderDataModule` does. Every problem is refused in one line before
any training: a mask value that is not a class, an image without a mask or a mask without an image, a mask
of another size than its image, a colour (RGB) mask.

Pairs are decoded once, resized to the model's input size (images bilinear, masks nearest) and kept as
``(uint8 (C, H, W), int64 (H, W))``; training pairs get the same random crop (padded) and horizontal flip
(torchvision v2 on ``tv_tensors.Image`` + ``tv_tensors.Mask``; padded mask pixels are 255, unscored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from zoo.data.labelled_files import VAL_NAMES
from zoo.errors import DatasetNotFoundError, InvalidValueError, ZooError

IGNORE = 255
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def _files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}


def read_mask(path: Path) -> np.ndarray:
    """An index (L) or palette (P) PNG as its class values ``(H, W)``; any other mode refused in one line."""
    from PIL import Image

    with Image.open(path) as image:
        if image.mode not in ("L", "P", "I", "I;16"):
            raise InvalidValueError(
                f"{path} is a {image.mode} image; a mask must be an index (mode L) or palette (mode P) PNG "
                "whose pixel values are classes"
            )
        return np.asarray(image).astype(np.int64)


def scan_pairs(folder: Path) -> list[tuple[Path, Path]]:
    """``(image, mask)`` pairs of ``folder/images`` and ``folder/masks`` by name; a missing or extra one refused."""
    images_dir, masks_dir = folder / "images", folder / "masks"
    for needed in (images_dir, masks_dir):
        if not needed.is_dir():
            raise DatasetNotFoundError(f"{folder} has no {needed.name}/ folder; segmentation data is images/ + masks/")
    images, masks = _files(images_dir), _files(masks_dir)
    if not images:
        raise DatasetNotFoundError(f"{images_dir} holds no images")
    lonely = sorted(set(images) - set(masks))
    if lonely:
        raise InvalidValueError(
            f"{images[lonely[0]]} has no mask ({masks_dir}/{lonely[0]}.png)"
            + (f" and {len(lonely) - 1} more images neither" if len(lonely) > 1 else "")
        )
    extra = sorted(set(masks) - set(images))
    if extra:
        raise InvalidValueError(
            f"{masks[extra[0]]} has no image in {images_dir}"
            + (f" and {len(extra) - 1} more masks neither" if len(extra) > 1 else "")
        )
    return [(images[name], masks[name]) for name in sorted(images)]


def check_pair(image_path: Path, mask: np.ndarray, mask_path: Path, num_classes: int | None) -> int:
    """Refuse a size mismatch or a value that is not a class; returns the largest class value in the mask."""
    from PIL import Image

    with Image.open(image_path) as image:
        width, height = image.size
    if mask.shape != (height, width):
        raise InvalidValueError(
            f"{mask_path} is {mask.shape[1]}×{mask.shape[0]} but its image {image_path.name} is {width}×{height}; "
            "a mask must be its image's size"
        )
    values = np.unique(mask)
    values = values[values != IGNORE]
    limit = IGNORE - 1 if num_classes is None else num_classes
    wrong = values[(values < 0) | (values > limit)]
    if len(wrong):
        y, x = np.argwhere(mask == wrong[0])[0]
        classes = f"0 (background) to {num_classes}" if num_classes is not None else "0 to 254"
        raise InvalidValueError(
            f"{mask_path} has value {int(wrong[0])} at (x={x}, y={y}), which is not a class: the values are "
            f"{classes}, and {IGNORE} for an unscored pixel"
        )
    return int(values.max()) if len(values) else 0


class PairDataset(Dataset):
    """``(image uint8 (C, H, W), mask int64 (H, W))``, both through ``augment`` when given."""

    def __init__(self, images: Tensor, masks: Tensor, augment: Any = None) -> None:
        self.images, self.masks, self.augment = images, masks, augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, mask = self.images[index], self.masks[index]
        if self.augment is not None:
            from torchvision import tv_tensors

            image, mask = self.augment(tv_tensors.Image(image), tv_tensors.Mask(mask))
            image, mask = image.as_subclass(Tensor), mask.as_subclass(Tensor)
        return image, mask


class MaskFolderDataModule(L.LightningDataModule):
    """Image/mask folders for segmentation (see the module doc).

    Args:
        path: the folder (``images/`` + ``masks/``, or ``train/``, ``val/`` and ``test/`` each holding them).
        classes: names of the values 1..K (default: ``classes.txt``, else 1..K found in the masks).
        input_size: ``(C, H, W)`` pairs are resized to (default: the model being trained's).
        val_fraction, split_seed: the share of pairs held out for validation without a ``val/`` folder.
        batch_size, num_workers: DataLoader settings. augment: a random crop (padded) and a horizontal flip.
    """

    def __init__(
        self,
        path: str,
        classes: list[str] | None = None,
        input_size: tuple[int, int, int] | None = None,
        val_fraction: float = 0.2,
        split_seed: int = 0,
        batch_size: int = 16,
        num_workers: int = 0,
        augment: bool = True,
    ) -> None:
        super().__init__()
        if not 0 <= val_fraction < 1:
            raise InvalidValueError(f"val_fraction must be in [0, 1), got {val_fraction!r} (e.g. 0.2)")
        self.save_hyperparameters()
        root = Path(path).expanduser()
        if not root.is_dir():
            raise DatasetNotFoundError(f"{path} is not a folder (segmentation data is a folder of images/ + masks/)")
        self.dataset_name = root.name
        named = list(classes) if classes else self._class_file(root)
        splits = {s: root / s for s in ("train", *VAL_NAMES, "test") if (root / s / "images").is_dir()}
        val = next((splits[s] for s in VAL_NAMES if s in splits), None)
        if "train" in splits:
            self.pairs = {"train": scan_pairs(splits["train"])}
            if val is not None:
                self.pairs["val"] = scan_pairs(val)
            if "test" in splits:
                self.pairs["test"] = scan_pairs(splits["test"])
        else:
            self.pairs = {"train": scan_pairs(root)}
        self.masks, largest = {}, 0
        for split, pairs in self.pairs.items():  # every mask read and checked now: refusals before any training
            self.masks[split] = [read_mask(m) for _, m in pairs]
            for (image, mask_path), mask in zip(pairs, self.masks[split]):
                largest = max(largest, check_pair(image, mask, mask_path, len(named) if named else None))
        self.class_names = named or [str(v) for v in range(1, largest + 1)]
        if not self.class_names:
            raise InvalidValueError(f"the masks in {path} hold only background (0); there is no class to learn")
        if "val" not in self.pairs and val_fraction > 0:
            order = torch.randperm(len(self.pairs["train"]), generator=torch.Generator().manual_seed(split_seed))
            held = max(1, round(val_fraction * len(order))) if len(order) > 1 else 0
            keep, out = sorted(order[held:].tolist()), sorted(order[:held].tolist())
            for key, chosen in (("val", out), ("train", keep)):
                self.pairs[key] = [self.pairs["train"][i] for i in chosen]
                self.masks[key] = [self.masks["train"][i] for i in chosen]
        self.datasets: dict[str, PairDataset] = {}

    @staticmethod
    def _class_file(root: Path) -> list[str]:
        listed = root / "classes.txt"
        if not listed.is_file():
            return []
        names = [line.strip() for line in listed.read_text().splitlines() if line.strip()]
        return names[1:] if names and names[0].lower() == "background" else names

    @classmethod
    def for_evaluation(cls, path: str, model: Any, batch_size: int = 64) -> MaskFolderDataModule:
        """Every pair of ``path`` (or its ``test/``) as a test set for ``model``'s classes."""
        return cls(
            str(path),
            classes=list(model.class_names),
            input_size=tuple(model.input_size),
            val_fraction=0.0,
            batch_size=batch_size,
            augment=False,
        )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def test_split(self) -> str:
        """The split the test step scores: ``test/``, else the validation pairs, else every pair."""
        return next(s for s in ("test", "val", "train") if self.pairs.get(s))

    def _input_size(self) -> tuple[int, int, int]:
        if self.hparams.input_size is not None:
            return tuple(self.hparams.input_size)
        module = getattr(getattr(self, "trainer", None), "lightning_module", None)
        if module is None or not hasattr(module, "input_size"):
            raise ZooError(
                "MaskFolderDataModule needs input_size=(C, H, W), or a zoo model being trained to take it from"
            )
        return tuple(module.input_size)

    def _decode(self, split: str, size: tuple[int, int, int]) -> tuple[Tensor, Tensor]:
        from PIL import Image

        images, masks = [], []
        for (image_path, _), mask in zip(self.pairs[split], self.masks[split]):
            with Image.open(image_path) as image:
                image = image.convert("L" if size[0] == 1 else "RGB")
                pixels = torch.from_numpy(np.asarray(image).copy())
            pixels = pixels[None] if pixels.ndim == 2 else pixels.permute(2, 0, 1)
            pixels = F.interpolate(pixels[None].float(), size[1:], mode="bilinear", antialias=True)[0]
            images.append(pixels.round().clamp(0, 255).to(torch.uint8))
            masks.append(F.interpolate(torch.from_numpy(mask)[None, None].float(), size[1:], mode="nearest")[0, 0])
        return torch.stack(images), torch.stack(masks).long()

    def _augment(self, size: tuple[int, int, int]) -> Any:
        if not self.hparams.augment:
            return None
        from torchvision import tv_tensors
        from torchvision.transforms import v2

        fill = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE}
        pad = max(1, size[1] // 14)
        return v2.Compose([v2.RandomCrop(size[1:], padding=pad, fill=fill), v2.RandomHorizontalFlip()])

    def setup(self, stage: str | None = None) -> None:
        size = self._input_size()
        for split in self.pairs:
            if split not in self.datasets and self.pairs[split]:
                images, masks = self._decode(split, size)
                augment = self._augment(size) if split == "train" else None
                self.datasets[split] = PairDataset(images, masks, augment)

    def _loader(self, split: str, shuffle: bool) -> DataLoader | list:
        if split not in self.datasets:
            return []
        hp = self.hparams
        return DataLoader(self.datasets[split], batch_size=hp.batch_size, shuffle=shuffle, num_workers=hp.num_workers)

    def train_dataloader(self) -> DataLoader | list:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader | list:
        return self._loader(self.test_split, False)
