"""The Fashion-MNIST datamodule: real files, fixed split, uint8 batches, clear error when missing."""

from __future__ import annotations

import gzip
import os
import shutil

import pytest
import torch

from zoo.data import FashionMNISTDataModule
from zoo.data import fashion_mnist as fm
from zoo.errors import DatasetNotFoundError, InvalidValueError


def test_splits_sizes_and_types(fmnist_root) -> None:
    data = FashionMNISTDataModule(root=fmnist_root, batch_size=256, download=False)
    data.setup("fit")
    assert [len(data.datasets[s]) for s in ("train", "val", "test")] == [55_000, 5_000, 10_000]
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape == (256, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and 0 <= labels.min() and labels.max() <= 9
    # every class is present in the validation split, in roughly equal numbers
    counts = torch.bincount(data.datasets["val"].labels, minlength=10)
    assert counts.min() > 400


def test_split_is_seeded_and_disjoint(fmnist_root) -> None:
    a, b = (FashionMNISTDataModule(root=fmnist_root, download=False) for _ in range(2))
    a.setup(), b.setup()
    assert torch.equal(a.datasets["val"].images, b.datasets["val"].images)
    train = {bytes(x.numpy()) for x in a.datasets["train"].images[:2000]}
    assert not any(bytes(x.numpy()) in train for x in a.datasets["val"].images[:2000])


def test_augmentation_keeps_shape_and_dtype(fmnist_root) -> None:
    data = FashionMNISTDataModule(root=fmnist_root, batch_size=64, augment=True, download=False)
    data.setup("fit")
    images, _ = next(iter(data.train_dataloader()))
    assert images.shape == (64, 1, 28, 28) and images.dtype == torch.uint8


def test_shift_padding_zero_only_flips(fmnist_root) -> None:
    """shift_padding=0: every training image is itself or its mirror; the default shifts some of them."""
    torch.manual_seed(0)
    for padding, only_flips in ((0, True), (2, False)):
        data = FashionMNISTDataModule(root=fmnist_root, augment=True, shift_padding=padding, download=False)
        data.setup("fit")
        train = data.datasets["train"]
        augmented, _ = train[torch.arange(64)]
        raw = train.images[:64]
        same = [torch.equal(a, x) or torch.equal(a, x.flip(-1)) for a, x in zip(augmented, raw)]
        assert all(same) if only_flips else not all(same)
    with pytest.raises(InvalidValueError, match="shift_padding must be a whole number ≥ 0"):
        FashionMNISTDataModule(shift_padding=-1)


def _skip_or_fail(reason: str) -> None:
    """In CI (CI=true) the dataset must be there: a missing one fails the run instead of skipping."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must have the real dataset: {reason}")
    pytest.skip(reason)


def test_data_root_is_the_only_place_searched_when_given(tmp_path) -> None:
    """--data.root names a folder: no silent fallback to $ZOO_DATA or the system copy."""
    with pytest.raises(DatasetNotFoundError, match="leave --data.root out"):
        fm.load_split("test", root=tmp_path / "missing")
    assert not (tmp_path / "missing").exists(), "a failed download leaves no folder behind"


def test_finds_files_in_root_gz_or_raw(tmp_path, monkeypatch) -> None:
    """A root with torchvision's FashionMNIST/raw layout, uncompressed, is found first."""
    src = fm.SYSTEM_DIR
    if not (src / "t10k-images-idx3-ubyte.gz").exists():
        _skip_or_fail("needs the Debian dataset files to copy from")
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in fm.FILES["test"]:
        (raw / stem).write_bytes(gzip.decompress((src / f"{stem}.gz").read_bytes()))
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "nowhere")
    images, labels = fm.load_split("test", root=tmp_path)
    assert images.shape == (10_000, 28, 28) and labels.shape == (10_000,)


def test_zoo_data_env_is_searched(tmp_path, monkeypatch) -> None:
    src = fm.SYSTEM_DIR
    if not (src / "t10k-labels-idx1-ubyte.gz").exists():
        _skip_or_fail("needs the Debian dataset files to copy from")
    for stem in fm.FILES["test"]:
        shutil.copy(src / f"{stem}.gz", tmp_path)
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "nowhere")
    monkeypatch.setenv("ZOO_DATA", str(tmp_path))
    assert fm.load_split("test")[0].shape == (10_000, 28, 28)


def test_missing_dataset_says_the_three_ways(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "nowhere")
    monkeypatch.delenv("ZOO_DATA", raising=False)
    with pytest.raises(DatasetNotFoundError) as info:
        FashionMNISTDataModule(root=str(tmp_path), download=False).setup("fit")
    message = str(info.value)
    assert "\n" not in message
    for way in ("--data.root", "$ZOO_DATA", "apt-get install dataset-fashion-mnist"):
        assert way in message


def test_corrupt_idx_file_is_reported(tmp_path, monkeypatch) -> None:
    for stem in fm.FILES["test"]:
        (tmp_path / stem).write_bytes(b"\x01\x02\x03\x04not an idx file")
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "nowhere")
    with pytest.raises(DatasetNotFoundError, match="not a uint8 IDX file"):
        fm.load_split("test", root=tmp_path)
