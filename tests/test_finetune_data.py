"""Data that cannot be right is refused in one line; what can run but is thin is warned about; every image
mode is scaled to 8 bits as computed here by hand; colour given to a grey model is said once.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.data.folders import ImageFolderDataModule
from zoo.data.image_modes import to_8bit
from zoo.errors import InvalidValueError, ZooError


def _grey_folder(root: Path, counts: dict[str, int], size: int = 28) -> Path:
    """Class folders of grey images whose brightness says their class (a learnable toy set)."""
    generator = torch.Generator().manual_seed(0)
    for k, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for j in range(count):
            base = 40 + 150 * k
            noise = torch.randint(-30, 30, (size, size), generator=generator)
            Image.fromarray((base + noise).clamp(0, 255).to(torch.uint8).numpy()).save(root / name / f"{j}.png")
    return root


# ---- tensors ---------------------------------------------------------------------------------------
def test_tensor_refusals_are_one_line() -> None:
    images = torch.rand(40, 1, 28, 28)
    cases = [
        ((images, torch.arange(30) % 2), r"40 images but 30 labels"),
        ((images, (torch.arange(40) % 2).float()), r"labels must be integers 0\.\.K-1 .* torch\.float32"),
        ((images, torch.zeros(40, dtype=torch.long)), r"has one \(0\) class; .* at least 2"),
        ((images, torch.arange(40) % 2 - 1), r"class indices 0\.\.K-1, got -1"),
        ((images, torch.ones(40, 2, dtype=torch.long)), r"one integer per image"),
    ]
    for data, message in cases:
        with pytest.raises((InvalidValueError, ZooError), match=message) as caught:
            zoo.finetune("lenet5.fmnist", data, max_epochs=1)
        assert "\n" not in str(caught.value)
    with pytest.raises(InvalidValueError, match=r"label 3 is past the 2 classes"):
        ImageFolderDataModule.from_tensors(images, torch.arange(40) % 4, classes=["a", "b"])
    with pytest.raises(InvalidValueError, match=r"10 validation images but 9 labels"):
        ImageFolderDataModule.from_tensors(images, torch.arange(40) % 2, val=(images[:10], torch.arange(9) % 2))


def test_max_epochs_zero_is_refused() -> None:
    data = (torch.rand(20, 1, 28, 28), torch.arange(20) % 2)
    for bad in (0, -1, 2.5):
        with pytest.raises(InvalidValueError, match=r"max_epochs must be"):
            zoo.finetune("lenet5.fmnist", data, max_epochs=bad)


# ---- folders and CSV files -------------------------------------------------------------------------
def test_one_class_folder_is_refused(tmp_path: Path) -> None:
    root = _grey_folder(tmp_path / "one", {"cat": 4})
    with pytest.raises(ZooError, match=r"has one \(cat\) class"):
        ImageFolderDataModule(root, input_size=(1, 28, 28))


def test_csv_refusals(tmp_path: Path) -> None:
    root = _grey_folder(tmp_path / "pics", {"cat": 3, "dog": 3})
    cases = {
        "path,label\ncat/0.png,0\ncat/1.png,dog\n": r"labels mix numbers \(0\) and names \(dog\)",
        "path,label\n": r"lists no images",
        "": r"needs a header line",
        "path,label\ncat/0.png,\n": r"line 2: no label",
        "path,label\n,cat\n": r"line 2: no path",
        "path,label\ncat/0.png,cat\ndog/0.png,dog\ncat/0.png,dog\n": r"line 4: cat/0\.png is labelled 'dog' but line 2",
    }
    for text, message in cases.items():
        (root / "labels.csv").write_text(text)
        with pytest.raises(ZooError, match=message) as caught:
            ImageFolderDataModule(root / "labels.csv", input_size=(1, 28, 28))
        assert "\n" not in str(caught.value)


def test_a_class_too_small_to_validate_is_warned_and_the_card_says_so(tmp_path: Path) -> None:
    root = _grey_folder(tmp_path / "thin", {"cat": 1, "dog": 10, "owl": 10})
    with pytest.warns(UserWarning, match=r"too few images to validate class\(es\) cat \(1\).*validation set is empty"):
        data = ImageFolderDataModule(root, input_size=(1, 28, 28))
    assert data.val_empty_classes == ["cat"]
    assert {y for _, y in data.splits["val"]} == {1, 2}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = zoo.finetune("lenet5.fmnist", root, max_epochs=2, lr=1e-2, batch_size=8, num_workers=0)
    metrics = model.card_metrics
    assert metrics["val_classes_without_images"] == ["cat"]
    # the count the card names is the count measured: re-score the held-out images with the saved weights
    held = data.splits["val"]
    images = torch.stack(
        [torch.from_numpy(np.asarray(Image.open(f), dtype=np.float32) / 255).unsqueeze(0) for f, _ in held]
    )
    with torch.no_grad():
        predicted = model(images).argmax(1)
    truth = torch.tensor([y for _, y in held])
    assert metrics["val_samples"] == len(held) == 4
    assert metrics["val_acc"] == pytest.approx((predicted == truth).float().mean().item(), abs=1e-6)
    folder = model.save_pretrained(tmp_path / "card")
    card = (folder / "README.md").read_text()
    assert "validation set (4 images)" in card and "no image of 1 class(es) (cat)" in card
    assert json.loads((folder / "metrics.json").read_text())["val_classes_without_images"] == ["cat"]


# ---- colour and image modes ------------------------------------------------------------------------
def test_colour_folder_to_grey_model_warns_once_naming_in_chans(tmp_path: Path) -> None:
    root = tmp_path / "colour"
    for name, rgb in (("red", (200, 20, 20)), ("blue", (20, 20, 200))):
        (root / name).mkdir(parents=True)
        for j in range(3):
            Image.new("RGB", (28, 28), rgb).save(root / name / f"{j}.png")
    data = ImageFolderDataModule(root, input_size=(1, 28, 28), num_workers=0, val_fraction=0.0)
    with pytest.warns(UserWarning, match=r"colour but the model takes grey images.*in_chans=3") as record:
        data.setup("fit")
    assert len([w for w in record if "in_chans=3" in str(w.message)]) == 1
    # luma by hand: 0.299 R + 0.587 G + 0.114 B
    expect = {round(0.299 * 200 + 0.587 * 20 + 0.114 * 20), round(0.299 * 20 + 0.587 * 20 + 0.114 * 200)}
    assert set(data.datasets["train"].images.unique().tolist()) == expect
    # grey pictures stored as RGB are not colour: no warning; a colour model gets no warning either
    for sub in root.iterdir():
        for f in sub.iterdir():
            Image.new("RGB", (28, 28), (90, 90, 90)).save(f)
    for size in ((1, 28, 28), (3, 28, 28)):
        quiet = ImageFolderDataModule(root, input_size=size, num_workers=0, val_fraction=0.0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            quiet.setup("fit")
    colour = torch.zeros(6, 3, 28, 28, dtype=torch.uint8)
    colour[:, 0] = 200
    tensors = ImageFolderDataModule.from_tensors(colour, torch.arange(6) % 2, input_size=(1, 28, 28), val_fraction=0)
    with pytest.warns(UserWarning, match=r"6 of 6 .*in_chans=3"):
        tensors.setup("fit")


def _png(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG" if image.mode != "CMYK" else "TIFF")
    buffer.seek(0)
    return Image.open(buffer)


def test_every_mode_is_scaled_as_computed_by_hand(tmp_path: Path) -> None:
    sixteen = _png(Image.fromarray(np.array([[0, 1000, 30000, 65535]], dtype=np.uint16)))
    assert sixteen.mode.startswith("I")
    assert np.asarray(to_8bit(sixteen)).tolist() == [[0, round(1000 / 257), round(30000 / 257), 255]]  # 0 4 117 255
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette.putpixel((1, 0), 1)
    assert np.asarray(to_8bit(_png(palette))).tolist() == [[[0, 0, 0], [10, 200, 30]]]
    cmyk = _png(Image.new("CMYK", (1, 1), (100, 50, 0, 20)))
    by_hand = [round(255 * (1 - c / 255) * (1 - 20 / 255)) for c in (100, 50, 0)]  # 143 189 235
    assert list(to_8bit(cmyk).getpixel((0, 0))) == by_hand
    assert to_8bit(_png(Image.new("RGBA", (1, 1), (200, 100, 50, 0)))).getpixel((0, 0)) == (200, 100, 50)
    assert to_8bit(_png(Image.new("LA", (1, 1), (77, 10)))).getpixel((0, 0)) == 77
    assert to_8bit(Image.new("1", (1, 1), 1)).getpixel((0, 0)) == 255
    floats = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F")
    assert np.asarray(to_8bit(floats)).tolist() == [[0, 128, 255]]
    # end to end: a 16-bit folder reaches the model with 256 levels, not 2
    ramp = (np.arange(28 * 28, dtype=np.float64).reshape(28, 28) * (65535 / (28 * 28 - 1))).round().astype(np.uint16)
    for name in ("a", "b"):
        (tmp_path / "deep" / name).mkdir(parents=True)
        for j in range(2):
            Image.fromarray(ramp).save(tmp_path / "deep" / name / f"{j}.png")
    data = ImageFolderDataModule(tmp_path / "deep", input_size=(1, 28, 28), num_workers=0, val_fraction=0.0)
    data.setup("fit")
    got = data.datasets["train"].images[0, 0].numpy()
    assert np.array_equal(got, np.rint(ramp / 257).astype(np.uint8))
    assert len(np.unique(got)) > 200
