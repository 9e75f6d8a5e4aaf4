"""Detection fine-tuning on a COCO folder: box-aware augmentation (boxes follow the pixels), the detector's
monitor, the strategies over its stages, boxes back in each image's pixels, the API and the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import zoo
from zoo.data.box_augment import BoxAugmented, PixelNoise
from zoo.data.coco import CocoDetection, write_coco


class OneRectangle(torch.utils.data.Dataset):
    """64-px images, each a bright rectangle on black whose box is the target."""

    def __init__(self, count: int = 6) -> None:
        g = torch.Generator().manual_seed(1)
        self.items = []
        for _ in range(count):
            x0, y0 = torch.randint(8, 28, (2,), generator=g).tolist()
            w, h = torch.randint(12, 24, (2,), generator=g).tolist()
            image = torch.zeros(1, 64, 64, dtype=torch.uint8)
            image[:, y0 : y0 + h, x0 : x0 + w] = 200
            box = torch.tensor([[x0, y0, x0 + w, y0 + h]], dtype=torch.float)
            self.items.append((image, {"boxes": box, "labels": torch.tensor([3])}))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def _bright_box(image: torch.Tensor) -> list[float]:
    ys, xs = (image[0].float() > image[0].float().max() / 2).nonzero(as_tuple=True)
    return [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


def test_boxes_follow_the_pixels_through_flips_and_scale_jitter() -> None:
    augmented = BoxAugmented(OneRectangle(), sigma=0.0)
    torch.manual_seed(0)
    flipped = moved = 0
    for _ in range(4):
        for i in range(len(augmented)):
            image, target = augmented[i]
            original = augmented.dataset[i][1]["boxes"][0]
            assert image.shape == (1, 64, 64) and image.dtype == torch.uint8
            assert target["labels"].tolist() == [3] and target["boxes"].shape == (1, 4)
            box = target["boxes"][0].tolist()
            assert box == pytest.approx(_bright_box(image), abs=1.6), (i, box, _bright_box(image))
            flipped += abs((box[0] + box[2]) / 2 - (64 - (original[0] + original[2]) / 2).item()) < 4
            moved += not torch.allclose(target["boxes"][0], original, atol=0.5)
    assert flipped > 0 and moved > 0  # the draws do flip and move


def test_pixel_noise_strength() -> None:
    torch.manual_seed(0)
    image = torch.full((1, 64, 64), 128, dtype=torch.uint8)
    spreads = [PixelNoise(0.2)(image, {})[0].float().div(255).std().item() for _ in range(50)]
    assert 0 <= min(spreads) and max(spreads) <= 0.2 * 1.1 and max(spreads) > 0.1
    assert torch.equal(PixelNoise(0.0)(image, {})[0], image)


@pytest.fixture(scope="module")
def boxes(tmp_path_factory, fmnist_root) -> Path:
    from zoo.data.fashion_mnist import CLASS_NAMES
    from zoo.data.scenes import FashionMNISTScenes

    scenes = FashionMNISTScenes(train_scenes=12, augment=False).render("train")
    return write_coco(scenes, tmp_path_factory.mktemp("coco") / "boxes", CLASS_NAMES).parent


def test_a_detector_fine_tunes_on_a_coco_folder(boxes: Path) -> None:
    source = zoo.load("detr_lite.fmnist_scenes")
    data = CocoDetection(str(boxes))
    assert data.train_count() == 12 - round(12 * 0.1)  # what the step budget reads: 11
    tuned = zoo.finetune("detr_lite.fmnist_scenes", str(boxes), strategy="linear_probe", max_epochs=1, lr=1e-4)
    metrics = tuned.card_metrics
    assert "val_map" in metrics and metrics["strategy"] == "linear_probe" and metrics["val_samples"] == 1
    # linear_probe over the detector's stages: its CNN backbone kept, its transformer and heads learnt
    frozen = [n for n, _ in tuned.net.stages() if n not in tuned.net.head_stages]
    before = dict(source.net.named_parameters())
    names = {id(p): k for k, p in tuned.net.named_parameters()}
    for name, modules in tuned.net.stages():
        learnt = [p for m in modules for p in m.parameters()]
        assert learnt, name
        same = all(torch.equal(before[names[id(p)]], p) for p in learnt)
        assert same == (name in frozen), name
    # boxes in each image's own pixels: x by the width's ratio (256 / 64), y by the height's (128 / 64)
    image = CocoDetection.for_evaluation(str(boxes), tuned.class_names)
    image.setup("test")
    scene = image.datasets[image.test_split][0][0].float().div(255).unsqueeze(0)
    small = tuned.predict(scene, threshold=0.0)[0]["boxes"]
    large = tuned.predict(scene, threshold=0.0, sizes=[(128, 256)])[0]["boxes"]  # a 128 × 256 file, resized
    assert len(small) > 0 and torch.allclose(large, small * torch.tensor([4.0, 2.0, 4.0, 2.0]), atol=1e-4)


def test_the_command_fine_tunes_a_detector(boxes: Path, tmp_path: Path, monkeypatch) -> None:
    from zoo.cli import main

    monkeypatch.chdir(tmp_path)
    args = ["--data", str(boxes), "-o", "out", "--lr", "1e-4", "--trainer.max_epochs", "1"]
    main(["finetune", "--model", "detr_lite.fmnist_scenes", *args])
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert "val_map" in metrics and metrics["finetune_plan"]["lr"] == 1e-4
    assert metrics["finetune_plan"]["max_epochs"] == 1 and metrics["epochs"] == 1
