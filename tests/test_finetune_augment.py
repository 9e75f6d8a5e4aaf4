"""Photo-grade training augmentation for networks of 64 px and more (random-resized crops of an image cached a
little larger than the crop, flips, an optional policy), deterministic evaluation with the weights' transforms,
and the 28-px grey models' shift and flip kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from zoo.data.folders import ImageFolderDataModule
from zoo.data.photo_augment import CACHE_MARGIN, FINETUNE_SCALE
from zoo.errors import InvalidValueError
from zoo.layers.preprocessing import eval_transforms


def _photos(root: Path, count: int = 3) -> Path:
    """Colour 'photos' (300 × 400) with structure everywhere, so any two crops differ."""
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for j in range(count):
            pixels = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{j}.png")
    return root


def test_a_224_px_network_trains_on_random_resized_crops_and_evaluates_deterministically(tmp_path: Path) -> None:
    root = _photos(tmp_path / "photos")
    data = ImageFolderDataModule(root, input_size=(3, 224, 224), num_workers=0, val_fraction=0.34)
    data.setup("fit")
    train, val = data.datasets["train"], data.datasets["val"]
    side = int(np.ceil(224 * CACHE_MARGIN))  # 258: cached a little larger than the crop
    assert tuple(train.images.shape[1:]) == (3, side, side)
    crop = next(t for t in train.transform.transforms if isinstance(t, v2.RandomResizedCrop))
    assert crop.scale == FINETUNE_SCALE and tuple(crop.size) == (224, 224)
    torch.manual_seed(0)
    draws = [train.transform(train.images[0]) for _ in range(2)]  # two epochs' crops of the same image
    assert all(d.shape == (3, 224, 224) and d.dtype == torch.uint8 for d in draws)
    assert not torch.equal(draws[0], draws[1])
    # a crop is a resized part of the cached image: no draw equals the cached image's centre crop
    centre = v2.CenterCrop(224)(train.images[0])
    assert not any(torch.equal(d, centre) for d in draws)
    # evaluation: the weights' transforms (resize 224, no crop here), the same every time, equal to the file's
    file = data.splits["val"][0][0]
    with Image.open(file) as image:
        expected = (eval_transforms((3, 224, 224))(image) * 255).round().to(torch.uint8)
    assert val.transform is None and torch.equal(val.images[0], expected)


def test_policies_and_the_small_grey_recipe() -> None:
    policy = ImageFolderDataModule(input_size=(3, 96, 96), augment="trivialaugment")._augment((3, 96, 96))
    assert any(isinstance(t, v2.TrivialAugmentWide) for t in policy.transforms)
    rand = ImageFolderDataModule(input_size=(3, 96, 96), augment="randaugment")._augment((3, 96, 96))
    assert any(isinstance(t, v2.RandAugment) for t in rand.transforms)
    small = ImageFolderDataModule(input_size=(1, 28, 28))._augment((1, 28, 28))
    assert [type(t) for t in small.transforms] == [v2.RandomCrop, v2.RandomHorizontalFlip]
    assert small.transforms[0].padding == [2, 2, 2, 2]  # 28 // 14
    assert ImageFolderDataModule(input_size=(3, 96, 96), augment=False)._augment((3, 96, 96)) is None
    with pytest.raises(InvalidValueError, match="augment must be true, false or one of trivialaugment"):
        ImageFolderDataModule(augment="autoaugment")


def test_tensors_for_a_photo_network_are_cached_larger_too() -> None:
    images = torch.randint(0, 256, (10, 3, 120, 160), dtype=torch.uint8)
    data = ImageFolderDataModule.from_tensors(images, torch.arange(10) % 2, input_size=(3, 64, 64), val_fraction=0.2)
    data.setup("fit")
    assert tuple(data.datasets["train"].images.shape[1:]) == (3, 74, 74)  # ceil(64 × 1.15)
    assert tuple(data.datasets["val"].images.shape[1:]) == (3, 64, 64)
    batch, _ = next(iter(data.train_dataloader()))
    assert batch.shape[1:] == (3, 64, 64)


def test_large_jpegs_decode_at_reduced_size_with_the_same_result(tmp_path: Path) -> None:
    from zoo.data.image_modes import DecodeAtLeast

    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (75, 100, 3)), np.ones((16, 16, 1))).astype(np.uint8)  # 1200 × 1600
    Image.fromarray(smooth).save(tmp_path / "big.jpg", quality=95)
    with Image.open(tmp_path / "big.jpg") as image:
        reduced = DecodeAtLeast(short=232)(image)
        reduced.load()
        assert reduced.size == (400, 300)  # 1/4 scale: the smallest still ≥ 232 on the short side (1/8: 150)
    steps = v2.Compose([v2.Resize(232, antialias=True), v2.CenterCrop(224), v2.PILToTensor()])
    with Image.open(tmp_path / "big.jpg") as image:
        full = steps(image.convert("RGB")).float()
    with Image.open(tmp_path / "big.jpg") as image:
        fast = steps(DecodeAtLeast(short=232)(image).convert("RGB")).float()
    assert full.shape == fast.shape == (3, 224, 224)
    assert (full - fast).abs().mean() < 3.0  # grey levels out of 255
    png = tmp_path / "big.png"
    Image.fromarray(smooth).save(png)
    with Image.open(png) as image:
        assert DecodeAtLeast(short=232)(image).size == (1600, 1200)  # only JPEGs are drafted
