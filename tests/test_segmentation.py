"""Segmentation, the zoo's third task: the task, the FPN family, the scene masks (issue 39)."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import zoo
from zoo.data.scene_masks import FashionMNISTSceneMasks, make_masked_scene, paste
from zoo.data.scenes import make_scene
from zoo.errors import ZooError
from zoo.finetuning import STRATEGIES, Finetuning
from zoo.task_descriptions import get_task
from zoo.tasks.segmentation import SemanticSegmenter, dice_loss


@pytest.fixture(scope="module")
def model() -> SemanticSegmenter:
    torch.manual_seed(0)
    return zoo.create("fpn_resnet20").eval()


# ---- the task ------------------------------------------------------------------------------------
def test_forward_is_background_plus_classes_at_the_input_size(model) -> None:
    assert model(torch.rand(2, 1, 64, 64)).shape == (2, 11, 64, 64)
    assert model(torch.rand(1, 1, 48, 80)).shape == (1, 11, 48, 80)  # fully convolutional: any size
    assert model.label_names[0] == "background" and len(model.label_names) == 11


def test_predict_gives_each_image_its_own_size(model) -> None:
    images = [torch.rand(1, 64, 64), torch.randint(0, 256, (1, 37, 90), dtype=torch.uint8)]
    maps = model.predict(images)
    assert [tuple(m.shape) for m in maps] == [(64, 64), (37, 90)]
    assert all(m.dtype == torch.int64 and 0 <= int(m.min()) and int(m.max()) <= 10 for m in maps)
    # the 64×64 image's map is the argmax of the forward's logits
    assert torch.equal(maps[0], model(images[0][None]).argmax(1)[0])


def test_dice_loss_against_hand_computation() -> None:
    logits = torch.zeros(1, 2, 1, 2)
    logits[0, 1, 0, 0] = float(np.log(3.0))  # pixel 0: p = (1/4, 3/4); pixel 1: p = (1/2, 1/2)
    masks = torch.tensor([[[1, 0]]])
    # class 0: inter 1/2, total (1/4 + 1/2) + 1 → dice 1 / 1.75; class 1: inter 3/4, total 5/4 + 1 → 1.5 / 2.25
    expected = 1 - (1 / 1.75 + 1.5 / 2.25) / 2
    assert dice_loss(logits, masks).item() == pytest.approx(expected, abs=1e-6)
    masks_ignored = torch.tensor([[[1, 255]]])  # pixel 1 unscored: class 0 only predicted (p 1/4) → dice 0
    assert dice_loss(logits, masks_ignored).item() == pytest.approx(1 - (0 + 1.5 / 1.75) / 2, abs=1e-6)


class _Masks(L.LightningDataModule):
    def __init__(self, images, masks) -> None:
        super().__init__()
        self.images, self.masks = images, masks

    def test_dataloader(self):
        return DataLoader(TensorDataset(self.images, self.masks), batch_size=3)


def test_test_metrics_equal_a_confusion_matrix_by_hand(model) -> None:
    torch.manual_seed(1)
    images = torch.randint(0, 256, (5, 1, 64, 64), dtype=torch.uint8)
    masks = torch.randint(0, 11, (5, 64, 64))
    masks[0, :4] = 255  # ignored pixels
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    result = trainer.test(model, datamodule=_Masks(images, masks), verbose=False)[0]
    pred = model(images.float() / 255).argmax(1).numpy().ravel()
    true = masks.numpy().ravel()
    pred, true = pred[true != 255], true[true != 255]
    confusion = np.zeros((11, 11))
    np.add.at(confusion, (true, pred), 1)
    inter = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0)
    assert result["test_miou"] == pytest.approx(iou.mean(), abs=1e-5)
    assert result["test_pixel_acc"] == pytest.approx(inter.sum() / confusion.sum(), abs=1e-5)
    assert list(model.iou_per_class.values()) == pytest.approx(list(iou), abs=1e-5)
    assert model.measured_test_samples() == 5


def test_description_is_what_cards_and_evaluate_read() -> None:
    description = get_task("segmentation")
    assert description is get_task("image-segmentation") and description.module is SemanticSegmenter
    assert description.score.key == "test_miou" and description.monitor == "val_miou"
    assert "segment" in description.commands and "classify" not in description.commands


def test_backbone_weights_start_the_encoder() -> None:
    model = SemanticSegmenter(backbone_weights="resnet20.fmnist")
    source = zoo.load("resnet20.fmnist").net.state_dict()
    encoder = model.net.encoder.state_dict()
    assert set(encoder) == {k for k in source if not k.startswith("fc.")}
    assert all(torch.equal(encoder[k], source[k]) for k in encoder)
    with pytest.raises(ZooError, match="this encoder is resnet20"):
        SemanticSegmenter(backbone_weights="lenet5.fmnist")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_five_strategies_over_its_stages(model, strategy) -> None:
    stages = [name for name, _ in model.net.stages()]
    assert stages == ["stem", "stage1", "stage2", "stage3", "decoder", "head"]
    callback = Finetuning(strategy)
    frozen = callback.frozen_at(model, 0)
    assert "decoder" not in frozen and "head" not in frozen  # the decoder is a head stage: it always learns
    expected = {"linear_probe": 4, "freeze_unfreeze": 4, "gradual": 4, "full": 0, "layer_decay": 0}
    assert len(frozen) == expected[strategy]


# ---- the scene masks -------------------------------------------------------------------------------
def test_mask_of_a_hand_built_two_garment_scene() -> None:
    canvas, mask = torch.zeros(6, 6, dtype=torch.uint8), torch.zeros(6, 6, dtype=torch.long)
    shirt = torch.full((3, 4), 200, dtype=torch.uint8)  # label 6 (Shirt): a solid 3×4 block at x=0, y=0
    bag = torch.tensor([[9, 9, 9], [9, 0, 9], [9, 9, 9]], dtype=torch.uint8)  # label 8 (Bag): a ring at (2, 1)
    paste(canvas, mask, shirt, 6, 0, 0)
    paste(canvas, mask, bag, 8, 2, 1)
    expected = [
        [7, 7, 7, 7, 0, 0],
        [7, 7, 9, 9, 9, 0],
        [7, 7, 9, 7, 9, 0],  # the ring's hole shows the shirt under it
        [0, 0, 9, 9, 9, 0],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
    ]
    assert mask.tolist() == expected
    assert canvas[2, 3] == 200 and canvas[1, 2] == 9


def test_masked_scenes_are_the_detection_scenes(fmnist_root) -> None:
    from zoo.data.fashion_mnist import load_split

    images, labels = load_split("test", fmnist_root)
    for seed in range(5):
        image, mask, boxes, classes = make_masked_scene(
            images, labels, torch.Generator().manual_seed(seed), 64, 4, (14, 28)
        )
        same, same_boxes, same_classes = make_scene(
            images, labels, torch.Generator().manual_seed(seed), 64, 4, (14, 28)
        )
        assert torch.equal(image, same) and torch.equal(boxes, same_boxes) and torch.equal(classes, same_classes)
        assert torch.equal(mask > 0, image[0] > 0)  # every drawn pixel is a garment's, nothing else
        assert set(mask.unique().tolist()) - {0} <= set((classes + 1).tolist())
        last = classes[-1] + 1  # the top garment keeps all its drawn pixels
        x0, y0, x1, y1 = boxes[-1].long().tolist()
        assert (mask[y0:y1, x0:x1] == last).any()


def test_scene_masks_datamodule_flips_image_and_mask_together(fmnist_root) -> None:
    data = FashionMNISTSceneMasks(root=fmnist_root, train_scenes=16, val_scenes=4, test_scenes=4, batch_size=16)
    data.setup("fit")
    torch.manual_seed(0)
    images, masks = next(iter(data.train_dataloader()))
    assert images.shape == (16, 1, 64, 64) and masks.shape == (16, 64, 64) and masks.dtype == torch.int64
    assert torch.equal(masks > 0, images[:, 0] > 0)  # flipped or not, the mask still fits its image
    raw = data.datasets["train"]
    flipped = sum(not torch.equal(raw[i][1], raw.masks[i]) for i in range(16))
    assert 0 < flipped < 16


# ---- torchvision's FCN and DeepLabV3 over the zoo's dilated ResNet ---------------------------------------
def _random_batchnorm(net: torch.nn.Module) -> None:
    generator = torch.Generator().manual_seed(0)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(module.num_features, generator=generator) * 0.1)


@pytest.mark.parametrize("name", ["fcn_resnet50", "deeplabv3_resnet50"])
def test_torchvision_segmentation_files_give_torchvisions_outputs(tmp_path, name: str) -> None:
    import torchvision

    from zoo.registry import get_entry, get_weights

    torch.manual_seed(0)
    builder = getattr(torchvision.models.segmentation, name)
    theirs = builder(weights=None, weights_backbone=None, num_classes=21, aux_loss=True).eval()
    _random_batchnorm(theirs)
    path = tmp_path / f"{name}.pth"
    torch.save(theirs.state_dict(), path)
    model = zoo.load(f"{name}.tv_coco_voc", file=path)  # the zoo's one path: record → task → network
    assert isinstance(model, SemanticSegmenter) and model.label_names[1] == "aeroplane" and len(model.label_names) == 21
    weights = get_weights(f"{name}.tv_coco_voc")
    assert weights.url.startswith("https://download.pytorch.org/models/") and weights.input_size == (3, 520, 520)
    x = torch.rand(1, 3, 72, 64)
    with torch.no_grad():
        ours, expected = model(x), theirs((x - model.mean) / model.std)["out"]
    assert ours.shape == expected.shape == (1, 21, 72, 64)
    assert (ours - expected).abs().max().item() < 1e-4
    aux = sum(p.numel() for p in theirs.aux_classifier.parameters())  # the training-only head, not imported
    assert get_entry(name).num_params == sum(p.numel() for p in theirs.parameters()) - aux


def test_dilated_resnet_equals_torchvisions() -> None:
    import torchvision

    from zoo.models.resnet import resnet50

    theirs = torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True]).eval()
    ours = resnet50(replace_stride_with_dilation=(False, True, True)).eval()
    ours.load_state_dict(theirs.state_dict())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5, rtol=0)
    assert [info["reduction"] for info in ours.feature_info] == [2, 4, 8, 8, 8]
    assert ours.layer4[1].conv2.dilation == (4, 4) and ours.layer4[0].conv2.dilation == (2, 2)


def test_torchvision_segmentation_preprocessing_and_a_fresh_head(tmp_path) -> None:
    import torchvision
    from PIL import Image

    from zoo.registry import get_weights

    theirs = torchvision.models.segmentation.FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1
    assert get_weights("fcn_resnet50.tv_coco_voc").url == theirs.url
    model = zoo.load("fcn_resnet50.tv_coco_voc", file=_tv_file(tmp_path), num_classes=3, class_names=["a", "b", "c"])
    image = Image.fromarray(torch.randint(0, 256, (600, 600, 3), dtype=torch.uint8).numpy())  # square: no stretch
    ours = model.preprocess(model.transforms()(image)[None])[0]
    assert torch.allclose(ours, theirs.transforms()(image), atol=1e-6)
    wide = model.transforms()(Image.fromarray(torch.zeros(300, 800, 3, dtype=torch.uint8).numpy()))
    assert wide.shape == (3, 520, 520)  # no crop: every pixel of the file is segmented
    # other classes: new class rows, the learned background row kept
    state = torch.load(tmp_path / "fcn.pth")
    assert model.label_names == ["background", "a", "b", "c"]
    assert torch.equal(model.net.classifier[4].background.weight, state["classifier.4.weight"][:1])
    assert model.net.classifier[4].classes.weight.shape == (3, 512, 1, 1)


def _tv_file(tmp_path):
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None, aux_loss=True)
    torch.save(net.state_dict(), tmp_path / "fcn.pth")
    return tmp_path / "fcn.pth"


def test_readme_numbers_are_the_cards() -> None:
    """The README's segmentation table quotes each card's metrics.json (mIoU, pixel accuracy, epochs)."""
    import re

    from docs_text import docs_text

    from zoo.files import bundled_cards_dir, read_json

    readme = docs_text()  # the README and every docs/ page
    rows = re.findall(r"^\| `(fpn_resnet20\.\w+)` \| [^|]+ \| ([\d.]+) \| ([\d.]+)% \| (\d+) \|", readme, re.M)
    trained = {n for n in zoo.list_weights() if n.startswith("fpn_resnet20.") and (bundled_cards_dir() / n).is_dir()}
    assert "fpn_resnet20.fmnist_scenes" in trained and {name for name, *_ in rows} == trained
    for name, miou, accuracy, epochs in rows:
        metrics = read_json(bundled_cards_dir() / name / "metrics.json")
        assert miou == f"{metrics['test_miou']:.3f}" and accuracy == f"{100 * metrics['test_pixel_acc']:.2f}"
        assert int(epochs) == metrics["epochs"]
