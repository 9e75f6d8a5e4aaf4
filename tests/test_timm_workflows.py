"""What the zoo does, on timm's networks: recipes and ``zoo fit``, the fine-tuning strategies and layer decay
over timm's groups, ``zoo.backbone`` through ``forward_intermediates``, ``zoo info``, ``zoo export``, and
``save_pretrained`` / ``push_to_hub`` folders that timm loads too (``timm.create_model("hf-hub:...")``)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

import zoo
from zoo.finetuning import STRATEGIES, Finetuning
from zoo.tasks.optim import stage_param_groups

timm = pytest.importorskip("timm")
X = torch.rand(2, 3, 160, 160, generator=torch.Generator().manual_seed(5))


def _normalised(model, x: torch.Tensor) -> torch.Tensor:
    return (x - model.mean) / model.std


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Three classes of small random RGB images (any size: the model's transforms() prepare them)."""
    root = tmp_path_factory.mktemp("timm-photos") / "photos"
    generator = torch.Generator().manual_seed(0)
    for k, name in enumerate(["red", "green", "blue"]):
        (root / name).mkdir(parents=True)
        for j in range(5):
            pixels = torch.randint(0, 96, (40, 48, 3), generator=generator, dtype=torch.uint8)
            pixels[..., k] += 150  # each class its own dominant channel: learnable in a step or two
            Image.fromarray(pixels.numpy()).save(root / name / f"{j}.png")
    return root


# ---- stages, strategies, layer decay ------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["test_vit", "test_convnext"])
def test_layer_decay_groups_equal_timms_param_groups_layer_decay(arch: str) -> None:
    from timm.optim import param_groups_layer_decay

    net = zoo.create(f"timm/{arch}", num_classes=4).net
    hp = SimpleNamespace(lr=1.0, weight_decay=0.05, layer_decay=0.7, backbone_lr_factor=1.0)
    ours = {id(p): (g["lr_scale"], g["weight_decay"]) for g in stage_param_groups(net, hp) for p in g["params"]}
    theirs = param_groups_layer_decay(
        net.model, weight_decay=0.05, no_weight_decay_list=getattr(net.model, "no_weight_decay", set)(), layer_decay=0.7
    )
    expected = {id(p): (g["lr_scale"], g["weight_decay"]) for g in theirs for p in g["params"]}
    assert ours.keys() == expected.keys() == {id(p) for p in net.parameters()}  # every parameter, once
    for index in (0, 1):  # each parameter's learning-rate scale, then its weight decay
        assert {k: v[index] for k, v in ours.items()} == pytest.approx({k: v[index] for k, v in expected.items()})
    names = [name for name, _ in net.stages()]
    assert names[0] == "stem" and names[-1] == "head" and len(names) == len(set(names)) > 3
    head = {id(p) for _, modules in net.stages()[-1:] for m in modules for p in m.parameters()}
    assert {id(p) for p in net.get_classifier().parameters()} <= head


def test_every_strategy_freezes_timms_groups() -> None:
    net = zoo.create("timm/test_vit", num_classes=4).net
    module = SimpleNamespace(net=net)
    stages = [name for name, _ in net.stages() if name != "head"]
    expect = {
        "linear_probe": lambda epoch: stages,
        "full": lambda epoch: [],
        "layer_decay": lambda epoch: [],
        "freeze_unfreeze": lambda epoch: stages if epoch < 2 else [],
        "gradual": lambda epoch: stages[: max(0, len(stages) - epoch)],
    }
    for strategy in STRATEGIES:
        callback = Finetuning(strategy, unfreeze_epoch=2)
        for epoch in range(len(stages) + 2):
            callback._apply(module, epoch)
            frozen = set(expect[strategy](epoch))
            assert callback.frozen_at(module, epoch) == expect[strategy](epoch), (strategy, epoch)
            for stage, modules in net.stages():  # cls_token / pos_embed (on the root) freeze with the stem
                assert {p.requires_grad for m in modules for p in m.parameters()} == {stage not in frozen}


def test_finetune_with_layer_decay_then_save_and_load_equal_outputs(photos, tmp_path) -> None:
    start = zoo.create("timm/test_resnet", num_classes=3)
    before = {k: v.clone() for k, v in start.net.state_dict().items()}
    model = zoo.finetune(start, photos, strategy="layer_decay", max_epochs=1, batch_size=8, augment=False, lr=1e-3)
    assert model.class_names == ["blue", "green", "red"] and model.hparams.layer_decay == 0.7
    moved = [k for k, v in model.net.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert any(k.startswith("conv1.") for k in moved) and any(k.startswith("fc.") for k in moved)
    folder = model.save_pretrained(tmp_path / "finetuned")
    loaded = zoo.load(folder)
    with torch.no_grad():
        assert torch.equal(loaded(X), model(X))
    assert loaded.class_names == model.class_names and loaded.preprocessing == model.preprocessing
    # the folder is timm's too: architecture, pretrained_cfg and the class names, read by timm itself
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "test_resnet" and config["pretrained_cfg"]["num_classes"] == 3
    reference = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    assert reference.pretrained_cfg["label_names"] == model.class_names
    with torch.no_grad():
        torch.testing.assert_close(reference(_normalised(model, X)), model(X), rtol=0, atol=1e-5)


def test_recipe_and_zoo_fit_on_a_timm_model(photos, tmp_path, monkeypatch) -> None:
    from zoo.cli import main

    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "timm_resnet.yaml"
    recipe.write_text(
        "seed_everything: 0\n"
        "model:\n  class_path: zoo.tasks.classification.ImageClassifier\n  init_args:\n"
        "    model_name: timm/test_resnet\n    num_classes: 3\n    optimizer: adamw\n    lr: 0.001\n"
        "    layer_decay: 0.8\n    model_kwargs:\n      drop_path_rate: 0.05\n"
        f"data:\n  class_path: zoo.data.ImageFolderDataModule\n  init_args:\n    path: {photos}\n    batch_size: 8\n"
        "    augment: false\n"
        "trainer:\n  max_epochs: 1\n  accelerator: cpu\n  logger: false\n  enable_progress_bar: false\n"
        "  enable_model_summary: false\n"
    )
    main(
        [
            "fit",
            "--config",
            str(recipe),
            "--card.output_dir",
            str(tmp_path / "cards"),
            "--card.name",
            "timm/test_resnet.mine",
        ]
    )
    folder = tmp_path / "cards" / "timm" / "test_resnet.mine"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and 0 <= metrics["test_acc"] <= 1 and metrics["recipe"].endswith("timm_resnet.yaml")
    loaded = zoo.load(folder)
    assert loaded.hparams.model_name == "timm/test_resnet" and loaded.class_names == ["blue", "green", "red"]
    assert loaded.hparams.model_kwargs == {"drop_path_rate": 0.05}


# ---- feature pyramids, info, export, the Hub --------------------------------------------------------------
@pytest.mark.parametrize(("arch", "indices"), [("test_convnext", (1, 2, 3)), ("test_vit", (-2, -1))])
def test_backbone_is_timms_forward_intermediates(arch: str, indices: tuple[int, ...]) -> None:
    model = zoo.create(f"timm/{arch}").eval()
    features = zoo.backbone(model, out_indices=indices)
    reference = timm.create_model(arch).eval()
    reference.load_state_dict(model.net.state_dict())
    levels = [i % len(reference.feature_info) for i in indices]
    with torch.no_grad():
        maps = features(X)
        expected = reference.forward_intermediates(_normalised(model, X), indices=levels, intermediates_only=True)
    assert features.feature_info == [reference.feature_info[i] for i in levels]
    for got, want, info in zip(maps, expected, features.feature_info):
        assert got.shape == (2, info["num_chs"], 160 // info["reduction"], 160 // info["reduction"])
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    only = timm.create_model(arch, features_only=True, out_indices=levels)  # timm's features_only agrees on shapes
    assert features.channels() == only.feature_info.channels() and features.reduction() == only.feature_info.reduction()


def test_zoo_info_counts_timms_parameters(capsys) -> None:
    from zoo.cli import main

    main(["info", "timm/test_convnext", "--num-classes", "7"])
    out = capsys.readouterr().out
    count = sum(p.numel() for p in timm.create_model("test_convnext", num_classes=7).parameters())
    assert f"parameters {count:,}" in out and "stages.3" in out


def test_export_onnx_runs_in_onnxruntime_with_equal_outputs(tmp_path) -> None:
    from zoo.exporting import onnx_session, read_metadata

    model = zoo.create("timm/test_resnet", num_classes=4).eval()
    path = zoo.export(model, tmp_path / "resnet.onnx")
    got = onnx_session(path).run(None, {"pixels": X.numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), model(X), rtol=0, atol=1e-4)
    assert read_metadata(path)["zoo.architecture"] == "timm/test_resnet"


def test_pushed_folder_is_a_zoo_card_and_a_timm_repo(hub_env, tmp_path) -> None:
    model = zoo.create("timm/test_convnext", num_classes=2, class_names=["cat", "dog"]).eval()
    model.push_to_hub("org/timm-convnext")
    with torch.no_grad():
        expected = model(X)
        pulled = zoo.load("hf-hub:org/timm-convnext")
        assert torch.equal(pulled(X), expected) and pulled.class_names == ["cat", "dog"]
        reference = timm.create_model("hf-hub:org/timm-convnext", pretrained=True).eval()
        torch.testing.assert_close(reference(_normalised(model, X)), expected, rtol=0, atol=1e-5)
    assert reference.pretrained_cfg["label_names"] == ["cat", "dog"]
    card = (Path(pulled.weights_source) / "README.md").read_text()
    assert "library_name: zoo" in card
