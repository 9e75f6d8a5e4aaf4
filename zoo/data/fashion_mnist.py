"""Fashion-MNIST (Xiao, Rasul, Vollgraf 2017) as a LightningDataModule.

Where the IDX files come from, first found wins:
  1. ``root`` (``--data.root``), 2. ``$ZOO_DATA``, 3. ``/usr/share/datasets/fashion-mnist``
  (Debian package ``dataset-fashion-mnist``), each searched as given and in torchvision's
  ``FashionMNIST/raw`` layout, gzipped or not; 4. torchvision's download into ``root`` (or the zoo
  cache) when ``download=True`` and the machine is online.

The files are decoded once into uint8 tensors; batches are sliced from them (no PIL image per sample)
and handed over as uint8 ``(N, 1, 28, 28)``: the task scales them to [0, 1] after the transfer to
the device. Train/val is a fixed seeded 55,000/5,000 split of the 60,000 training images; test is
the official 10,000.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from zoo.errors import DatasetNotFoundError, InvalidValueError

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> Tensor:
    """An IDX file (gzipped or not) as a uint8 tensor of the shape its header declares."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DatasetNotFoundError(f"{path} is not a uint8 IDX file; re-install the dataset")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return torch.frombuffer(bytearray(raw[4 + 4 * ndim :]), dtype=torch.uint8).view(*shape)


def _find(directory: Path, stem: str) -> Path | None:
    for folder in (directory, directory / "FashionMNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def candidate_dirs(root: str | os.PathLike | None) -> list[Path]:
    """Where to look: the folder the user named and nothing else, or ``$ZOO_DATA`` then the system copy."""
    if root:
        return [Path(root).expanduser()]
    dirs = [Path(os.environ["ZOO_DATA"]).expanduser()] if os.environ.get("ZOO_DATA") else []
    return [*dirs, SYSTEM_DIR]


def default_download_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(os.environ.get("ZOO_HOME", user_cache_dir("zoo"))) / "data"


def load_split(split: str, root: str | os.PathLike | None = None, download: bool = False) -> tuple[Tensor, Tensor]:
    """``(images uint8 (N, 28, 28), labels int64 (N,))`` of the ``train`` or ``test`` split."""
    image_stem, label_stem = FILES[split]
    if root and Path(root).expanduser().is_file():
        from zoo.sources import describe

        raise DatasetNotFoundError(
            f"the data root {root} is {describe(Path(root).expanduser())}, not a folder; give the folder that holds "
            f"the Fashion-MNIST IDX files ({image_stem}[.gz] ...), or leave --data.root out to use $ZOO_DATA"
        )
    for directory in candidate_dirs(root):
        images, labels = _find(directory, image_stem), _find(directory, label_stem)
        if images and labels:
            return read_idx(images), read_idx(labels).long()
    if download:
        target = Path(root).expanduser() if root else default_download_dir()
        created = [p for p in (target, target / "FashionMNIST") if not p.exists()]
        try:
            from torchvision.datasets import FashionMNIST

            FashionMNIST(str(target), train=split == "train", download=True)
        except Exception:  # offline: fall through to the message that says how to get the data
            import shutil

            for folder in reversed(created):  # leave no empty folder behind
                shutil.rmtree(folder, ignore_errors=True)
        else:
            return load_split(split, target, download=False)
    if root:
        raise DatasetNotFoundError(
            f"--data.root {root} has no Fashion-MNIST {split} files ({image_stem}[.gz] and {label_stem}[.gz], there "
            "or in FashionMNIST/raw/); give the folder that holds them, or leave --data.root out to use $ZOO_DATA "
            "or `apt-get install dataset-fashion-mnist`"
        )
    searched = ", ".join(str(d) for d in candidate_dirs(root))
    raise DatasetNotFoundError(
        f"Fashion-MNIST {split} files not found (searched {searched}): pass --data.root DIR with the IDX files, "
        "set $ZOO_DATA, or `apt-get install dataset-fashion-mnist` (online, download=True fetches them)"
    )


def passthrough(batch: Any) -> Any:
    """Collate function for datasets whose ``__getitems__`` already returns a whole batch."""
    return batch


class TensorImageDataset(Dataset):
    """Images ``(N, H, W)`` or ``(N, C, H, W)`` uint8 + labels, sliced a batch at a time.

    ``transform`` (transforms v2 on uint8 tensors) is applied per image, only when given.
    """

    def __init__(self, images: Tensor, labels: Tensor, transform: Any = None) -> None:
        self.images = images if images.ndim == 4 else images.unsqueeze(1)
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = self.images[index]
        return (self.transform(image) if self.transform else image), self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        index = torch.as_tensor(indices)
        images = self.images[index]
        if self.transform is not None:
            images = torch.stack([self.transform(image) for image in images])
        return images, self.labels[index]


def train_augmentation(size: int = 28, padding: int = 2, random_erasing: float = 0.0):
    """Random shift (pad + crop) and horizontal flip on uint8 tensors: clothes are left/right symmetric.

    ``padding`` 0 leaves the flip alone: the lightest augmentation, which suits networks too small to
    use shifted copies (LeNet-5: see docs/research-notes.md's comparison of settings).

    ``random_erasing`` > 0 then blanks a random rectangle (2-33% of the image, aspect 0.3-3.3) with that
    probability (Zhong et al. 2017, Random Erasing Data Augmentation), filled with 0 (the background).
    """
    from torchvision.transforms import v2

    steps = [v2.RandomCrop(size, padding=padding)] if padding else []
    steps.append(v2.RandomHorizontalFlip())
    if random_erasing:
        steps.append(v2.RandomErasing(p=random_erasing, value=0))
    return v2.Compose(steps)


class FashionMNISTDataModule(L.LightningDataModule):
    """Fashion-MNIST: 55k train / 5k val (seeded) / 10k test, uint8 batches ``(N, 1, 28, 28)``.

    Args:
        root: folder with the IDX files (see the module docstring for the search order).
        batch_size: images per batch (per process under DDP).
        num_workers: DataLoader worker processes; 0 is fastest for in-memory tensors on few cores.
        val_size: images held out of the 60k training set for validation.
        split_seed: seed of the train/val split (fixed, so every run validates on the same images).
        augment: random shift + horizontal flip on training images.
        shift_padding: the largest shift of ``augment`` in pixels (pad, then crop back to 28); 0: flip only.
        random_erasing: probability of random erasing after the shift and flip (needs ``augment``).
        shuffle: reshuffle the training images every epoch (off: a fixed order, for exact comparisons).
        classes: keep only these classes (indices 0-9), relabelled 0..k-1 in the order given: e.g.
            ``[0, 1, 2, 3, 4]`` to pretrain on T-shirt…coat before a transfer to the other five.
        download: let torchvision download the files when none are found (needs internet).
    """

    dataset_name = "fashion_mnist"
    in_chans = 1

    def __init__(
        self,
        root: str | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        val_size: int = 5000,
        split_seed: int = 0,
        augment: bool = False,
        shift_padding: int = 2,
        random_erasing: float = 0.0,
        download: bool = True,
        shuffle: bool = True,
        classes: list[int] | None = None,
    ) -> None:
        super().__init__()
        if classes is not None and (
            not classes
            or len(set(classes)) != len(classes)
            or any(isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < 10 for c in classes)
        ):
            raise InvalidValueError(f"classes must be distinct class indices in 0..9, got {classes!r}")
        for option, value, low in (
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
            ("val_size", val_size, 1),
            ("shift_padding", shift_padding, 0),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < low
                or (option == "val_size" and value >= 60_000)
            ):
                limit = "between 1 and 59,999" if option == "val_size" else f"a whole number ≥ {low}"
                raise InvalidValueError(f"{option} must be {limit}, got {value!r}")
        if not 0 <= random_erasing <= 1:
            raise InvalidValueError(f"random_erasing is a probability in [0, 1], got {random_erasing!r}")
        self.save_hyperparameters()
        self.datasets: dict[str, TensorImageDataset] = {}

    @property
    def class_names(self) -> list[str]:
        chosen = self.hparams.get("classes") if hasattr(self, "hparams") else None
        return [CLASS_NAMES[c] for c in chosen] if chosen else list(CLASS_NAMES)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _keep(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The chosen classes only, relabelled 0..k-1."""
        chosen = self.hparams.classes
        if not chosen:
            return images, labels
        mapping = torch.full((10,), -1, dtype=labels.dtype)
        mapping[torch.tensor(chosen)] = torch.arange(len(chosen), dtype=labels.dtype)
        keep = mapping[labels] >= 0
        return images[keep], mapping[labels[keep]]

    def prepare_data(self) -> None:
        for split in FILES:
            load_split(split, self.hparams.root, self.hparams.download)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        hp = self.hparams
        images, labels = self._keep(*load_split("train", hp.root, hp.download))
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(hp.split_seed))
        train, val = order[: len(labels) - hp.val_size], order[len(labels) - hp.val_size :]
        self.datasets["train"] = TensorImageDataset(
            images[train],
            labels[train],
            train_augmentation(padding=hp.shift_padding, random_erasing=hp.random_erasing) if hp.augment else None,
        )
        self.datasets["val"] = TensorImageDataset(images[val], labels[val])
        self.datasets["test"] = TensorImageDataset(*self._keep(*load_split("test", hp.root, hp.download)))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        sampler = None
        if (
            split != "train"
            and torch.distributed.is_available()
            and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1
        ):
            # Lightning's DistributedSampler pads the evaluation set to a multiple of the world size, so
            # 10,000 test images on 3 processes would count 2 twice; this one splits them without repeats.
            from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

            sampler = UnrepeatedDistributedSampler(self.datasets[split], shuffle=False)
        elif (
            split == "train" and not shuffle and torch.distributed.is_available() and torch.distributed.is_initialized()
        ):
            # Lightning always shuffles a training set it splits across processes; a fixed order stays fixed
            from torch.utils.data import DistributedSampler

            sampler, shuffle = DistributedSampler(self.datasets[split], shuffle=False), False
        return DataLoader(
            self.datasets[split],
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.hparams.num_workers,
            collate_fn=passthrough,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # every process would otherwise draw the same crops, flips and erasures: seed each one apart
            base = int(os.environ.get("PL_GLOBAL_SEED", torch.initial_seed() % 2**31))
            torch.manual_seed(base + 1000 * torch.distributed.get_rank())
        return self._loader("train", shuffle=self.hparams.shuffle)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
