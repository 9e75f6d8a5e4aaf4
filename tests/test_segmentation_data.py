"""Segmentation on your own data (issue 39): image/mask folders, their refusals, zoo.finetune, zoo finetune
--data, zoo segment."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.cli import main
from zoo.data.fashion_mnist import CLASS_NAMES
from zoo.data.mask_folders import MaskFolderDataModule
from zoo.data.scene_masks import make_masked_scene
from zoo.errors import ZooError
from zoo.tasks.segmentation import SemanticSegmenter


def _write_pairs(folder, count: int, root, seed: int = 0) -> list[np.ndarray]:
    from zoo.data.fashion_mnist import load_split

    images, labels = load_split("test", root)
    generator = torch.Generator().manual_seed(seed)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    masks = []
    for i in range(count):
        image, mask, _, _ = make_masked_scene(images, labels, generator, 64, 4, (14, 28))
        Image.fromarray(image[0].numpy()).save(folder / "images" / f"scene{i:02d}.png")
        Image.fromarray(mask.to(torch.uint8).numpy(), mode="L").save(folder / "masks" / f"scene{i:02d}.png")
        masks.append(mask.numpy())
    (folder / "classes.txt").write_text("background\n" + "\n".join(CLASS_NAMES) + "\n")
    return masks


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, fmnist_root):
    folder = tmp_path_factory.mktemp("my_masks")
    masks = _write_pairs(folder, 12, fmnist_root)
    return folder, masks


def test_folder_reads_index_and_palette_masks(pairs, tmp_path) -> None:
    folder, masks = pairs
    data = MaskFolderDataModule(str(folder), input_size=(1, 64, 64), val_fraction=0.25, augment=False)
    assert data.class_names == list(CLASS_NAMES) and data.num_classes == 10
    assert len(data.pairs["train"]) == 9 and len(data.pairs["val"]) == 3
    data.setup("fit")
    names = [p.stem for p, _ in data.pairs["train"]]
    assert all(np.array_equal(data.datasets["train"].masks[i].numpy(), masks[int(n[-2:])]) for i, n in enumerate(names))
    # the same masks as palette PNGs (VOC's format) read to the same values
    copy = tmp_path / "palette"
    (copy / "masks").mkdir(parents=True)
    (copy / "images").symlink_to(folder / "images")
    for i, mask in enumerate(masks):
        image = Image.fromarray(mask.astype(np.uint8), mode="P")
        image.putpalette([v for c in range(256) for v in (c * 40 % 256, c * 90 % 256, c * 20 % 256)])
        image.save(copy / "masks" / f"scene{i:02d}.png")
    palette = MaskFolderDataModule(str(copy), classes=list(CLASS_NAMES), input_size=(1, 64, 64), val_fraction=0)
    palette.setup("fit")
    assert torch.equal(palette.datasets["train"].masks, torch.as_tensor(np.stack(masks)))


def test_augmentation_moves_image_and_mask_together(pairs) -> None:
    folder, _ = pairs
    data = MaskFolderDataModule(str(folder), input_size=(1, 64, 64), val_fraction=0)
    data.setup("fit")
    torch.manual_seed(0)
    for _ in range(4):
        images, masks = next(iter(data.train_dataloader()))
        drawn = masks != 255
        assert torch.equal((masks > 0) & drawn, (images[:, 0] > 0) & drawn)  # shifted and flipped as one
        assert (masks == 255).any()  # the padded border is unscored


def _broken(tmp_path, fmnist_root, name: str):
    folder = tmp_path / name
    _write_pairs(folder, 3, fmnist_root)
    return folder


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            "value",
            r"scene01\.png has value 11 at \(x=5, y=7\), which is not a class: the values are 0 \(background\) to 10",
        ),
        ("missing", r"images/scene02\.png has no mask"),
        ("extra", r"masks/scene09\.png has no image"),
        ("size", r"scene00\.png is 32×32 but its image scene00\.png is 64×64"),
        ("rgb", r"scene00\.png is a RGB image; a mask must be an index"),
    ],
)
def test_folder_refusals_are_one_line(tmp_path, fmnist_root, damage: str, message: str) -> None:
    folder = _broken(tmp_path, fmnist_root, damage)
    masks = folder / "masks"
    if damage == "value":
        mask = np.asarray(Image.open(masks / "scene01.png")).copy()
        mask[7, 5] = 11
        Image.fromarray(mask, mode="L").save(masks / "scene01.png")
    elif damage == "missing":
        (masks / "scene02.png").unlink()
    elif damage == "extra":
        Image.new("L", (64, 64)).save(masks / "scene09.png")
    elif damage == "size":
        Image.new("L", (32, 32)).save(masks / "scene00.png")
    else:
        Image.new("RGB", (64, 64)).save(masks / "scene00.png")
    with pytest.raises(ZooError, match=message) as caught:
        MaskFolderDataModule(str(folder))
    assert "\n" not in str(caught.value)


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    torch.manual_seed(0)
    model = SemanticSegmenter(backbone_weights="resnet20.fmnist")
    folder = tmp_path_factory.mktemp("start") / "seg"
    model.save_pretrained(folder)
    return folder


def test_finetune_from_the_api_on_a_mask_folder(pairs, start) -> None:
    folder, _ = pairs
    tuned = zoo.finetune(str(start), str(folder), max_epochs=2, lr=2e-3, batch_size=8, val_fraction=0.25)
    assert isinstance(tuned, SemanticSegmenter) and tuned.class_names == list(CLASS_NAMES)
    # the card's val_miou is the saved weights' mIoU on the held-out pairs, measured again here
    data = MaskFolderDataModule(str(folder), input_size=(1, 64, 64), val_fraction=0.25, augment=False)
    data.setup("fit")
    val = data.datasets["val"]
    from torchmetrics.classification import MulticlassJaccardIndex

    miou = MulticlassJaccardIndex(11, average="macro", ignore_index=255)
    with torch.no_grad():
        miou.update(tuned(val.images.float() / 255).argmax(1), val.masks)
    assert tuned.card_metrics["val_miou"] == pytest.approx(float(miou.compute()), abs=1e-5)


def test_finetune_and_segment_from_the_cli(pairs, start, tmp_path, capsys) -> None:
    folder, masks = pairs
    out = tmp_path / "tuned"
    main(["finetune", "--model", str(start), "--data", str(folder), "-o", str(out), "--trainer.max_epochs", "1",
          "--lr", "1e-3", "--data.batch_size", "8"])  # fmt: skip
    model = zoo.load(out)
    assert model.task == "segmentation" and model.class_names == list(CLASS_NAMES)
    capsys.readouterr()
    drawn, index = tmp_path / "masks.png", tmp_path / "index"
    main(["segment", str(out), str(folder / "images"), "-o", str(drawn), "--out-dir", str(index)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 12 and lines[0].startswith(str(folder / "images" / "scene00.png"))
    picture = Image.open(drawn)
    assert picture.mode == "RGB" and picture.height > 3 * 64 * 4  # 3 rows of 4 images at 4×, and the legend
    written = np.asarray(Image.open(index / "scene03.png"))
    image = torch.as_tensor(np.asarray(Image.open(folder / "images" / "scene03.png")).copy())[None]
    assert np.array_equal(written, model.predict([image])[0].numpy())
    # the index PNGs are a mask folder again
    (index.parent / "again").mkdir()
    (index.parent / "again" / "images").symlink_to(folder / "images")
    (index.parent / "again" / "masks").symlink_to(index)
    assert MaskFolderDataModule(str(index.parent / "again"), classes=list(CLASS_NAMES)).num_classes == 10


def test_other_commands_point_to_segment(pairs, start, capsys) -> None:
    folder, _ = pairs
    with pytest.raises(SystemExit) as caught:
        main(["classify", str(start), str(folder / "images" / "scene00.png")])
    assert caught.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("zoo: error: zoo classify does not apply") and "use `zoo segment`" in error
