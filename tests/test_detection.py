"""DETR-lite: the matcher and the set loss, the network and the task over every registered detector, the
Fashion-MNIST scenes and COCO files, saving/loading, and ``zoo detect``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torchvision.ops import box_convert

import zoo
from zoo.data.coco import CocoDetection, write_coco
from zoo.data.scenes import FashionMNISTScenes, make_scene
from zoo.errors import DatasetNotFoundError, ZooError
from zoo.models.detr import sine_positions
from zoo.registry import build_net, get_entry, list_models
from zoo.tasks.optim import stage_lr_scales, stage_param_groups

DETECTORS = [m for m in list_models() if get_entry(m).task == "detection"]


# ---- the network and the task, for every registered detector -------------------------------------------
@pytest.mark.parametrize("name", DETECTORS)
def test_detector_outputs_and_predictions(name: str) -> None:
    torch.manual_seed(0)
    model = zoo.create(name).eval()
    entry = get_entry(name)
    x = torch.rand(2, *entry.input_size)
    with torch.no_grad():
        out = model(x)
    queries = model.net.num_queries
    assert out["pred_logits"].shape == (2, queries, entry.num_classes + 1) and out["pred_boxes"].shape == (
        2,
        queries,
        4,
    )
    assert ((out["pred_boxes"] >= 0) & (out["pred_boxes"] <= 1)).all() and len(out["aux_outputs"]) >= 1
    found = model.predict(x, threshold=0.0)  # every (query, class) pair, best first
    pairs = min(queries * entry.num_classes, model.MAX_DETECTIONS)
    assert len(found) == 2 and set(found[0]) == {"boxes", "scores", "labels"} and found[0]["boxes"].shape == (pairs, 4)
    assert (found[0]["boxes"][:, 2:] >= found[0]["boxes"][:, :2]).all()  # xyxy pixels
    probs = out["pred_logits"].softmax(-1)[..., :-1]
    assert (found[0]["scores"].diff() <= 0).all() and torch.allclose(found[0]["scores"][0], probs[0].max())
    # above 0.5 a softmax has one class at most: each query's best class, as DETR's own post-processing
    logits = torch.zeros_like(out["pred_logits"])
    logits[:, ::2, 3] = 5.0  # every other query sure of class 3 (p = 0.94), the rest unsure of all (p = 0.09)
    confident = model.detections({**out, "pred_logits": logits}, tuple(x.shape[-2:]), threshold=0.5)[1]
    assert confident["labels"].tolist() == [3] * len(range(0, queries, 2))
    height, width = x.shape[-2:]
    expected = box_convert(out["pred_boxes"][1, ::2], "cxcywh", "xyxy") * torch.tensor([width, height, width, height])
    assert torch.allclose(confident["boxes"], expected)
    assert sum(p.numel() for p in build_net(name).parameters()) == entry.num_params


@pytest.mark.parametrize("name", DETECTORS)
def test_backbone_weights_come_from_the_zoo(name: str) -> None:
    model = zoo.create(name, backbone_weights="resnet20.fmnist")
    reference = zoo.load("resnet20.fmnist")
    assert torch.equal(model.net.backbone.layer3[2].conv2.weight, reference.net.layer3[2].conv2.weight)
    with pytest.raises(ZooError, match="are lenet5 weights; this backbone is resnet20"):
        zoo.create(name, backbone_weights="lenet5.fmnist")


@pytest.mark.parametrize("name", DETECTORS)
def test_only_the_cnn_backbone_learns_slower_or_freezes(name: str) -> None:
    """``backbone_lr_factor`` and the fine-tuning strategies act on the CNN; the transformer is head."""
    model = zoo.create(name, optimizer="adamw", lr=1e-3, backbone_lr_factor=0.1)
    rates = {g["name"]: g["lr"] for g in stage_param_groups(model.net, model.hparams)}
    cnn = {n: lr for n, lr in rates.items() if n.startswith(("stem", "backbone."))}
    rest = {n: lr for n, lr in rates.items() if n not in cnn}
    assert cnn and all(lr == pytest.approx(1e-4) for lr in cnn.values()), cnn
    assert {"encoder", "decoder", "box_head", "head"} <= set(rest) and set(rest.values()) == {1e-3}, rest
    cnn_params = {id(p) for p in model.net.backbone.parameters()}
    assert {id(p) for p in model.backbone.parameters()} == cnn_params
    decayed = stage_lr_scales([n for n, _ in model.net.stages()], 0.5, 0.1, model.net.head_stages)
    assert decayed["backbone.stage3"] == pytest.approx(0.05) and decayed["stem"] == pytest.approx(0.1 * 0.5**4)
    assert all(decayed[n] == 1.0 for n in ("encoder", "decoder", "box_head", "head")), decayed


@pytest.mark.parametrize("name", DETECTORS)
def test_untrained_queries_start_at_their_anchors_and_have_no_order(name: str) -> None:
    """Every box starts at its query's anchor point, ``size_prior`` wide; the queries are a set: permuting
    their embeddings and anchors together permutes the predictions and nothing else."""
    torch.manual_seed(0)
    net = build_net(name).eval()
    x = torch.rand(2, *get_entry(name).input_size)
    with torch.no_grad():
        out = net(x)
        anchors = net.reference_points.weight.clamp(1e-5, 1 - 1e-5)
        assert torch.allclose(out["pred_boxes"][..., :2], anchors.expand(2, -1, -1), atol=1e-5)
        assert torch.allclose(out["pred_boxes"][..., 2:], torch.full_like(out["pred_boxes"][..., 2:], net.size_prior))
        assert len(set(anchors[:, 0].tolist())) == net.num_queries  # spread, not all at the centre
        torch.nn.init.normal_(net.bbox_embed.layers[-1].weight, std=0.1)  # boxes that depend on the content
        before = net(x)
        order = torch.randperm(net.num_queries)
        net.query_embed.weight.copy_(net.query_embed.weight[order])
        net.reference_points.weight.copy_(net.reference_points.weight[order])
        after = net(x)
    for key in ("pred_logits", "pred_boxes"):
        assert torch.allclose(after[key], before[key][:, order], atol=1e-5), key


def test_sine_positions_tell_every_cell_apart() -> None:
    positions = sine_positions(7, 5, 32)
    assert positions.shape == (35, 32)
    assert torch.cdist(positions, positions).add(torch.eye(35) * 10).min() > 0.1


# ---- data --------------------------------------------------------------------------------------------
def test_scenes_are_seeded_and_their_boxes_are_tight(fmnist_root) -> None:
    a = FashionMNISTScenes(train_scenes=20, val_scenes=4, test_scenes=4, augment=False)
    b = FashionMNISTScenes(train_scenes=20, val_scenes=4, test_scenes=4, augment=False)
    a.setup(), b.setup()
    assert torch.equal(a.datasets["train"].images, b.datasets["train"].images)
    for image, target in (a.datasets["train"][i] for i in range(20)):
        assert 1 <= len(target["labels"]) <= 4 and target["boxes"].shape[1] == 4
        covered = torch.zeros(image.shape[1:], dtype=torch.bool)
        for x0, y0, x1, y1 in target["boxes"].long().tolist():
            covered[y0:y1, x0:x1] = True
        outside = image[0][~covered]
        assert not len(outside) or int(outside.max()) <= 20, "no garment pixel outside the boxes"
    generator = torch.Generator().manual_seed(0)
    _, boxes, _ = make_scene(
        torch.full((1, 28, 28), 255, dtype=torch.uint8), torch.tensor([3]), generator, 56, 1, (28, 28)
    )
    assert (boxes[0, 2:] - boxes[0, :2]).tolist() == [28.0, 28.0]


def test_flips_mirror_the_boxes(fmnist_root) -> None:
    data = FashionMNISTScenes(train_scenes=8, val_scenes=2, test_scenes=2)
    data.setup()
    torch.manual_seed(0)
    seen = {data.datasets["train"][0][1]["boxes"][0, 0].item() for _ in range(20)}
    image, target = data.datasets["train"].images[0], data.datasets["train"].targets[0]
    assert len(seen) == 2 and {target["boxes"][0, 0].item(), 64 - target["boxes"][0, 2].item()} == seen
    del image


def test_fresh_training_scenes_change_every_epoch_and_repeat_on_resume(fmnist_root) -> None:
    from types import SimpleNamespace

    data = FashionMNISTScenes(train_scenes=6, val_scenes=2, test_scenes=2, fresh_train_scenes=True, augment=False)
    data.setup()
    first, val = data.datasets["train"].images.clone(), data.datasets["val"].images.clone()
    epochs = []
    for epoch in (0, 1, 2, 1):
        data.trainer = SimpleNamespace(current_epoch=epoch, reload_dataloaders_every_n_epochs=1)
        epochs.append(data.train_dataloader().dataset.images)  # the loader shuffles: compare the scenes
    assert torch.equal(epochs[0], first) and not torch.equal(epochs[1], epochs[0])
    assert not torch.equal(epochs[2], epochs[1]) and torch.equal(epochs[3], epochs[1]), "epoch e: its own seed"
    assert torch.equal(data.datasets["val"].images, val)
    data.trainer = SimpleNamespace(current_epoch=0, reload_dataloaders_every_n_epochs=0)
    with pytest.raises(ZooError, match="add --trainer.reload_dataloaders_every_n_epochs 1"):
        data.train_dataloader()


def test_the_sample_scenes_are_the_first_fixed_test_scenes(fmnist_root) -> None:
    """``samples/scenes`` (the README's `zoo detect` / `zoo evaluate --data` example) is a COCO folder of
    the first 6 of the 1,000 fixed test scenes, pixels and boxes."""
    folder = Path(__file__).resolve().parents[1] / "samples" / "scenes"
    samples = CocoDetection(str(folder / "annotations.json"), val_fraction=0.0, augment=False)  # the files as they are
    samples.setup()
    test = FashionMNISTScenes(test_scenes=6).render("test")
    assert len(samples.datasets["train"]) == 6 and samples.class_names == FashionMNISTScenes.class_names
    for i in range(6):
        image, target = samples.datasets["train"][i]
        assert torch.equal(image, test[i][0]) and torch.allclose(target["boxes"], test[i][1]["boxes"])
        assert torch.equal(target["labels"], test[i][1]["labels"])


def test_coco_files_round_trip_and_bad_ones_are_named(tmp_path: Path, fmnist_root) -> None:
    scenes = FashionMNISTScenes(train_scenes=6, val_scenes=2, test_scenes=2, augment=False)
    scenes.setup()
    path = write_coco(scenes.datasets["train"], tmp_path / "coco", scenes.class_names)
    data = CocoDetection(str(path), str(tmp_path / "coco"), size=64, val_fraction=0.0, augment=False)
    data.setup()
    assert data.class_names == scenes.class_names and data.num_classes == 10
    image, target = data.datasets["train"][0]
    original = scenes.datasets["train"][0]
    assert torch.equal(image, original[0]) and torch.allclose(target["boxes"], original[1]["boxes"])
    assert torch.equal(target["labels"], original[1]["labels"])
    with pytest.raises(DatasetNotFoundError):
        CocoDetection(str(tmp_path / "none.json"), str(tmp_path))
    (tmp_path / "bad.json").write_text(json.dumps({"images": []}))
    with pytest.raises(ZooError, match="has no 'annotations' list"):
        CocoDetection(str(tmp_path / "bad.json"), str(tmp_path))
    held = CocoDetection(
        str(path), val_fraction=0.5, augment=False
    )  # no val_json: half of the images held out, none in both
    held.setup()
    train_ids, val_ids = set(held.datasets["train"].indices), set(held.datasets["val"].indices)
    assert len(val_ids) == 3 and not train_ids & val_ids and len(train_ids | val_ids) == 6
    assert held.test_split == "val" and CocoDetection(str(path), test_json=str(path)).test_split == "test"
    most = CocoDetection(str(path), val_fraction=0.95)
    most.setup()
    assert len(most.datasets["train"]) == 1, "never every image held out"
    (tmp_path / "empty.json").write_text(
        json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]})
    )
    with pytest.raises(ZooError, match="lists no images"):
        CocoDetection(str(tmp_path / "empty.json"), str(tmp_path)).setup()
    with pytest.raises(ZooError, match="val_images needs val_json"):
        CocoDetection(str(path), val_images=str(tmp_path))


# ---- training, saving, zoo detect ----------------------------------------------------------------------
def test_a_short_fit_lowers_the_loss_then_saves_loads_and_draws(tmp_path: Path, fmnist_root) -> None:
    import lightning as L

    from zoo.cli import main

    torch.manual_seed(0)
    model = zoo.create(
        "detr_lite", backbone_weights="resnet20.fmnist", optimizer="adamw", lr=3e-4, giou_weight=2.5, cost_giou=1.5
    )
    data = FashionMNISTScenes(train_scenes=64, val_scenes=16, test_scenes=16, batch_size=16)
    data.setup()
    images, targets = next(iter(data.train_dataloader()))
    model.train()

    def loss() -> float:
        return model.criterion.total(model.criterion(model(images.float() / 255), model._normalised(targets, (64, 64))))

    before = loss().item()
    trainer = L.Trainer(
        max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(model, datamodule=data)
    logged = trainer.callback_metrics  # the total and every unweighted term of every layer, train and val
    for stage in ("train", "val"):
        assert {f"{stage}_{t}{s}" for t in ("loss_ce", "loss_bbox", "loss_giou") for s in ("", "_0", "_1")} <= set(
            logged
        ), sorted(logged)
    assert "val_loss" in logged and "train_loss_epoch" in logged
    model.train()
    after = loss().item()
    assert after < before
    result = trainer.test(model, datamodule=data, verbose=False)[0]
    # the test step's mAP equals one computed here from the model's own detections over the test scenes
    from torchmetrics.detection import MeanAveragePrecision

    metric, model = MeanAveragePrecision(iou_type="bbox"), model.eval()
    with torch.no_grad():
        for images, targets in data.test_dataloader():
            found = model.detections(model(images.float() / 255), (64, 64), threshold=0.0)
            metric.update(found, targets)
    expected = metric.compute()
    assert result["test_map"] == pytest.approx(float(expected["map"]), abs=1e-6)
    assert result["test_map_50"] == pytest.approx(float(expected["map_50"]), abs=1e-6)
    folder = model.save_pretrained(tmp_path / "detr", name="detr_lite.test")
    again = zoo.load(str(folder))
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x)["pred_boxes"], model.eval()(x)["pred_boxes"])
    write_coco(data.datasets["test"], tmp_path / "scenes", data.class_names)
    main(
        [
            "detect",
            str(folder),
            str(tmp_path / "scenes" / "00000.png"),
            "-o",
            str(tmp_path / "found.png"),
            "--threshold",
            "0",
        ]
    )
    assert (tmp_path / "found.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit):  # a classifier is not a detector: one line
        main(["detect", "lenet5.fmnist", str(tmp_path / "scenes" / "00000.png")])


def test_boxes_come_back_in_each_images_own_pixels(tmp_path: Path, capsys) -> None:
    """DETR's post-processing: a 128-px copy of a sample scene gets boxes twice those of the 64-px scene,
    through ``predict(sizes=)``, ``predict`` of images at their own sizes, and ``zoo detect``."""
    from PIL import Image

    from zoo.cli import main

    model = zoo.load("detr_lite.fmnist_scenes")
    scene = Path(__file__).resolve().parents[1] / "samples" / "scenes" / "00003.png"  # four garments, all found
    with Image.open(scene) as image:
        x = model.transforms()(image)[None]
        image.resize((128, 128), Image.NEAREST).save(tmp_path / "big.png")
    small = model.predict(x)[0]
    assert small["labels"].tolist() == [1, 9, 2, 5] and small["boxes"].max() <= 64
    twice = model.predict(x, sizes=[(128, 128)])[0]  # the batch was resized from 128 px
    assert torch.allclose(twice["boxes"], 2 * small["boxes"]) and torch.equal(twice["scores"], small["scores"])
    wide = model.predict(x, sizes=torch.tensor([[64, 128]]))[0]["boxes"]  # only x doubles
    assert torch.allclose(wide, small["boxes"] * torch.tensor([2.0, 1.0, 2.0, 1.0]))
    big = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    own = model.predict([x[0], (big[0] * 255).round().to(torch.uint8)])  # any sizes; resized for the network
    assert torch.allclose(own[0]["boxes"], small["boxes"], atol=1e-3) and torch.equal(own[1]["labels"], small["labels"])
    assert (own[1]["boxes"] - 2 * small["boxes"]).abs().max() < 3  # 1.5 px of the 64-px scene
    assert torch.equal(model.predict(big)[0]["labels"], own[1]["labels"])  # a 128-px batch: the same
    capsys.readouterr()
    main(["detect", "detr_lite.fmnist_scenes", str(scene), str(tmp_path / "big.png"), "--json"])
    rows = {Path(r["path"]).name: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["big.png"]["labels"] == rows["00003.png"]["labels"] == ["Trouser", "Ankle boot", "Pullover", "Sandal"]
    found, expected = torch.tensor(rows["big.png"]["boxes"]), 2 * torch.tensor(rows["00003.png"]["boxes"])
    assert (found - expected).abs().max() < 3 and found.max() > 64


@pytest.mark.slow
def test_your_own_coco_folder_trains_evaluates_and_detects(tmp_path: Path, fmnist_root, capsys, monkeypatch) -> None:
    """A user's COCO folder (annotations.json + images/, 3 categories of their own) through the CLI."""
    from zoo.cli import main

    monkeypatch.chdir(tmp_path)  # the run's logs go to ./runs

    scenes = FashionMNISTScenes(train_scenes=60, val_scenes=2, test_scenes=2, max_objects=2, augment=False)
    scenes.setup()
    keep = [i for i, t in enumerate(scenes.datasets["train"].targets) if int(t["labels"].max()) < 3][:8]
    subset = torch.utils.data.Subset(scenes.datasets["train"], keep)
    names = ["tee", "trousers", "pullover"]
    write_coco(subset, tmp_path / "mine" / "images", names)
    (tmp_path / "mine" / "images" / "annotations.json").rename(tmp_path / "mine" / "annotations.json")
    main(
        [
            "fit",
            "--model", "zoo.tasks.detection.ObjectDetector",
            "--model.init_args.backbone_weights", "resnet20.fmnist",
            "--data", "zoo.data.coco.CocoDetection",
            "--data.init_args.train_json", str(tmp_path / "mine"),
            "--data.init_args.batch_size", "4",
            "--data.init_args.val_fraction", "0.25",
            "--trainer.max_steps", "4",
            "--trainer.accelerator", "cpu",
            "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(tmp_path / "runs"),
            "--card.name", "detr_lite.mine",
            "--card.output_dir", str(tmp_path / "cards"),
        ]
    )  # fmt: skip
    card = tmp_path / "cards" / "detr_lite.mine"
    model = zoo.load(str(card))
    assert model.class_names == names and model.net.class_embed.out_features == 4  # 3 classes + "no object"
    metrics = json.loads((card / "metrics.json").read_text())
    assert len(keep) == 8 and metrics["test_samples"] == 2 and set(metrics["map_per_class"]) <= set(names)
    assert metrics["test_split"] == "val"  # no test_json: the card says its test rows are the validation images
    text = (card / "README.md").read_text()
    assert "| backbone started from | `resnet20.fmnist` |" in text and "no separate test set" in text
    capsys.readouterr()
    main(["evaluate", str(card), "--data", str(tmp_path / "mine" / "annotations.json")])
    assert "on 8 images of" in capsys.readouterr().out  # every image of the folder
    main(["detect", str(card), str(tmp_path / "mine" / "images" / "00000.png"), "-o", str(tmp_path / "f.png")])
    assert (tmp_path / "f.png").is_file()
    with pytest.raises(SystemExit):  # a threshold that is not a score: one line, nothing drawn
        main(
            ["detect", str(card), str(tmp_path / "mine" / "images"), "--threshold", "50", "-o", str(tmp_path / "g.png")]
        )
    assert "threshold 50.0 is not a score" in capsys.readouterr().err and not (tmp_path / "g.png").exists()
    with pytest.raises(SystemExit):  # another dataset's categories: one line, not a wrong mAP
        main(["evaluate", str(card), "--data", str(write_coco(subset, tmp_path / "other", ["a", "b", "c"]))])
    assert "are not the model's classes (tee, trousers, pullover)" in capsys.readouterr().err


def test_zoo_info_splits_detr_into_backbone_encoder_decoder_and_heads(capsys) -> None:
    from zoo.cli import main

    main(["info", "detr_lite"])
    out = capsys.readouterr().out
    for stage in ("backbone.stage3", "encoder", "decoder", "box_head", "head"):
        assert f"│ {stage} " in out
    # encoder: 8 heads × 64² per layer × 3; decoder: 8 × (10² self + 10·64 cross) × 3
    assert f"{3 * 8 * 64**2 + 3 * 8 * (10 * 10 + 10 * 64):,} values per image" in out
