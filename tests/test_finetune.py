"""Fine-tuning: the strategies over the whole registry, the learning rates the Trainer really used, the
user-data paths (folders, CSV, tensors) and their bad inputs, the CLI, and the saved folder.

The images are real Fashion-MNIST ones written as PNG files (some as RGB, some resized), classes 5-9.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from PIL import Image
from test_registry import ALL_MODELS

import zoo
from zoo.data.folders import ImageFolderDataModule
from zoo.errors import DatasetNotFoundError, InvalidValueError, ZooError
from zoo.finetuning import STRATEGIES, Finetuning
from zoo.registry import build_net
from zoo.tasks.optim import stage_lr_scales, stage_param_groups

NAMES = ["sandal", "shirt", "sneaker", "bag", "ankle_boot"]


def _write_folder(root: Path, per_class: int, offset: int = 0) -> Path:
    from zoo.data.fashion_mnist import load_split

    images, labels = load_split("train")
    for k, cls in enumerate(range(5, 10)):
        (root / NAMES[k]).mkdir(parents=True, exist_ok=True)
        for j, i in enumerate((labels == cls).nonzero().flatten()[offset : offset + per_class].tolist()):
            image = Image.fromarray(images[i].numpy())
            if j % 3 == 1:  # mixed modes and sizes, as a user's folder has
                image = image.convert("RGB").resize((40, 36))
            image.save(root / NAMES[k] / f"{j:03d}.png")
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory, request) -> Path:
    request.getfixturevalue("fmnist_root")
    return _write_folder(tmp_path_factory.mktemp("photos") / "photos", per_class=12)


# ---- the strategies, over every architecture -------------------------------------------------------
@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_strategy_freezes_by_stage_on_every_architecture(name: str) -> None:
    with torch.device("meta"):
        net = build_net(name)
    module = SimpleNamespace(net=net)
    stages = [stage for stage, _ in net.stages() if stage not in net.head_stages]  # a detector's: its CNN
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
            assert callback.frozen_at(module, epoch) == expect[strategy](epoch), (strategy, epoch)
            frozen = {stage for stage in expect[strategy](epoch)}
            for stage, modules in net.stages():
                grads = {p.requires_grad for m in modules for p in m.parameters()}
                assert grads <= {stage not in frozen}, (strategy, epoch, stage)
    hp = SimpleNamespace(lr=1.0, weight_decay=0.05, layer_decay=0.5, backbone_lr_factor=1.0)
    groups = stage_param_groups(net, hp)
    assert sorted(id(p) for g in groups for p in g["params"]) == sorted(id(p) for p in net.parameters())
    lrs = [g["lr"] for g in groups if not g["name"].endswith("/no_decay")]
    assert lrs == sorted(lrs) and lrs[-1] == 1.0, "rates rise from the stem to the head"


def test_layer_decay_and_backbone_factor_scales() -> None:
    scales = stage_lr_scales(["stem", "stage1", "stage2", "head"], 0.5, 0.1)
    assert scales == {"stem": 0.0125, "stage1": 0.025, "stage2": 0.05, "head": 1.0}


class RecordLR(L.Callback):
    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.steps.append({g["name"]: g["lr"] for g in trainer.optimizers[0].param_groups})


@pytest.mark.parametrize(
    ("name", "scheduler"),
    [
        ("resnet20", "cosine"),
        ("resnet20", "onecycle"),
        ("lenet5", "step"),
        ("vit_lite", "exponential"),
        ("swin_lite", "sgdr"),
        ("lenet5", "plateau"),
    ],
)
def test_layer_wise_rates_hold_under_every_scheduler(name: str, scheduler: str, photos: Path) -> None:
    """The rates the optimizer really used, step by step: each stage keeps its share of the head's rate."""
    torch.manual_seed(0)
    model = zoo.create(
        name,
        num_classes=5,
        optimizer="adamw",
        lr=1e-3,
        scheduler=scheduler,
        warmup_epochs=1,
        layer_decay=0.6,
        step_epochs=1,
    )
    data = ImageFolderDataModule(photos, batch_size=16)
    record = RecordLR()
    trainer = L.Trainer(
        max_epochs=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[record],
    )
    trainer.fit(model, datamodule=data)
    scales = stage_lr_scales([stage for stage, _ in model.net.stages()], 0.6, 1.0)
    assert len(record.steps) == 3 * 4 and len({round(s["head"], 12) for s in record.steps}) > 2  # the schedule moved
    for step in record.steps:
        for group, lr in step.items():
            assert lr == pytest.approx(step["head"] * scales[group.split("/")[0]], rel=1e-6), (group, step)


def test_linear_probe_keeps_the_backbone_and_its_batchnorm_statistics(photos: Path) -> None:
    base = zoo.load("resnet20.fmnist")
    before = {k: v.clone() for k, v in base.net.state_dict().items() if not k.startswith("fc.")}
    model = zoo.finetune(base, photos, strategy="linear_probe", max_epochs=2, batch_size=16)
    after = model.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "backbone weights and BN running statistics unchanged"
    assert model.net.fc.out_features == 5 and model.class_names == sorted(NAMES) and not model.training
    assert all(p.requires_grad for p in model.parameters())  # handed back whole


def test_freeze_unfreeze_resumes_with_the_right_layers_frozen(photos: Path, tmp_path: Path) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    def run(epochs: int, ckpt: str | None = None):
        torch.manual_seed(0)
        model = zoo.load("lenet5_relu.fmnist", num_classes=5, optimizer="adamw", lr=1e-2, backbone_lr_factor=0.1)
        saver = ModelCheckpoint(dirpath=tmp_path, filename="last", save_top_k=-1, every_n_epochs=1)
        trainer = L.Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            logger=False,
            enable_progress_bar=False,
            callbacks=[Finetuning("freeze_unfreeze", unfreeze_epoch=2), saver],
        )
        trainer.fit(model, datamodule=ImageFolderDataModule(photos, batch_size=16), ckpt_path=ckpt)
        return model, trainer

    first, trainer = run(1)  # epoch 0: the backbone frozen
    reference = zoo.load("lenet5_relu.fmnist")
    assert torch.equal(first.net.features.c1.weight, reference.net.features.c1.weight)
    groups = [(g["name"], g["lr"]) for g in trainer.optimizers[0].param_groups]
    resumed, trainer = run(3, ckpt=str(tmp_path / "last.ckpt"))  # resumed at epoch 1 (frozen), unfrozen at 2
    assert [g["name"] for g in trainer.optimizers[0].param_groups] == [name for name, _ in groups]
    assert not torch.equal(resumed.net.features.c1.weight, reference.net.features.c1.weight)
    head, stem = (next(g["lr"] for g in trainer.optimizers[0].param_groups if g["name"] == n) for n in ("head", "stem"))
    assert stem == pytest.approx(0.1 * head)


def test_batchnorm_modes_follow_the_frozen_stages_and_a_loaded_model_trains_in_train_mode(photos: Path) -> None:
    """Frozen stages keep pretrained BN statistics (eval mode) through validation; unfrozen ones learn again."""
    seen: list[tuple[int, bool, bool, bool]] = []

    class Modes(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            stem, head = pl_module.net.bn1, pl_module.net.fc
            seen.append((trainer.current_epoch, stem.training, head.training, pl_module.net.layer3[0].bn1.training))

    model = zoo.load("resnet20.fmnist", num_classes=5)
    assert not model.training  # zoo.load gives an inference model
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        callbacks=[Finetuning("freeze_unfreeze", unfreeze_epoch=1), Modes()],
    )
    trainer.fit(model, datamodule=ImageFolderDataModule(photos, batch_size=16))
    assert {row[1:] for row in seen if row[0] == 0} == {(False, True, False)}  # frozen BN eval, head training
    assert {row[1:] for row in seen if row[0] == 1} == {(True, True, True)}  # unfrozen: batch statistics again

    plain = zoo.load("resnet20.fmnist", num_classes=5)
    L.Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        callbacks=[Modes()],
    ).fit(plain, datamodule=ImageFolderDataModule(photos, batch_size=16))
    assert seen[-1][1:] == (True, True, True)


# ---- your data -----------------------------------------------------------------------------------
def test_folder_with_mixed_images_is_prepared_for_the_model(photos: Path) -> None:
    data = ImageFolderDataModule(photos, input_size=(1, 28, 28), batch_size=8, val_fraction=0.25)
    data.setup("fit")
    assert data.class_names == sorted(NAMES) and data.num_classes == 5
    assert len(data.datasets["train"]) == 45 and len(data.datasets["val"]) == 15  # 3 of each class's 12 held out
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape == (8, 1, 28, 28) and images.dtype == torch.uint8 and labels.dtype == torch.int64


def test_train_val_test_subfolders_and_csv_and_tensors(tmp_path: Path, photos: Path) -> None:
    import shutil

    for split, offset in (("train", 0), ("val", 20)):
        _write_folder(tmp_path / "split" / split, per_class=4, offset=offset)
    shutil.copytree(tmp_path / "split" / "val", tmp_path / "split" / "test")
    data = ImageFolderDataModule(tmp_path / "split", input_size=(1, 28, 28))
    assert [len(data.splits[s]) for s in ("train", "val", "test")] == [20, 20, 20]
    rows = ["path,label"] + [f"photos/{n}/000.png,{n}" for n in NAMES] * 2
    (photos.parent / "labels.csv").write_text("\n".join(rows) + "\n")
    csv_data = ImageFolderDataModule(photos.parent / "labels.csv", input_size=(1, 28, 28), val_fraction=0.5)
    assert csv_data.class_names == sorted(NAMES) and len(csv_data.splits["val"]) == 5
    (photos.parent / "ints.csv").write_text(
        "path,label\n" + "".join(f"photos/{n}/001.png,{i}\n" for i, n in enumerate(NAMES)) * 2
    )
    assert ImageFolderDataModule(photos.parent / "ints.csv", input_size=(1, 28, 28)).class_names == [
        "0",
        "1",
        "2",
        "3",
        "4",
    ]
    images, labels = torch.rand(30, 3, 20, 20), torch.arange(30) % 3
    tensors = ImageFolderDataModule.from_tensors(images, labels, input_size=(1, 28, 28), batch_size=4)
    tensors.setup("fit")
    batch, _ = next(iter(tensors.train_dataloader()))
    assert batch.shape == (4, 1, 28, 28) and tensors.class_names == ["0", "1", "2"]


def test_bad_data_gets_one_line_errors(tmp_path: Path, photos: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="has no class sub-folders"):
        ImageFolderDataModule(tmp_path / "empty")
    with pytest.raises(DatasetNotFoundError, match="no such folder or CSV"):
        ImageFolderDataModule(tmp_path / "nowhere")
    (tmp_path / "classes" / "cat").mkdir(parents=True)
    (tmp_path / "classes" / "dog").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "classes" / "cat" / "a.png")
    with pytest.raises(ZooError, match=r"class folder .*dog has no images"):
        ImageFolderDataModule(tmp_path / "classes")
    (tmp_path / "bad.csv").write_text("path,label\nphotos/bag/000.png,bag\n")
    with pytest.raises(ZooError, match="label 'bag' is not in the class list"):
        ImageFolderDataModule(tmp_path / "bad.csv", classes=["cat"])
    (photos.parent / "escape.csv").write_text("path,label\n../../etc/passwd,a\n")
    with pytest.raises(ZooError, match="outside"):
        ImageFolderDataModule(photos.parent / "escape.csv")
    (photos.parent / "noheader.csv").write_text("a.png,cat\n")
    with pytest.raises(ZooError, match="header line 'path,label'"):
        ImageFolderDataModule(photos.parent / "noheader.csv")
    with pytest.raises(InvalidValueError, match="val_fraction"):
        ImageFolderDataModule(photos, val_fraction=1.5)


def test_unreadable_images_are_skipped_and_named_or_refused_when_strict(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "photos", per_class=4)
    (root / "bag" / "broken.png").write_bytes(b"not a png at all")
    data = ImageFolderDataModule(root, input_size=(1, 28, 28), num_workers=0)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\): .*broken\.png"):
        data.setup("fit")
    assert sum(len(d) for d in data.datasets.values()) == 20
    strict = ImageFolderDataModule(root, input_size=(1, 28, 28), num_workers=0, strict=True)
    with pytest.raises(ZooError, match=r"1 image\(s\) could not be read: .*broken\.png"):
        strict.setup("fit")


def test_imbalanced_classes_are_reported(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "photos", per_class=9)
    for extra in sorted((root / "bag").iterdir())[2:]:
        extra.unlink()
    with pytest.warns(UserWarning, match="imbalanced classes"):
        ImageFolderDataModule(root, input_size=(1, 28, 28), val_fraction=0.0)


# ---- the command and the saved folder --------------------------------------------------------------
def test_zoo_finetune_command_writes_a_folder_zoo_load_reads(photos: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from zoo.cli import main

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "my_model"
    main(
        [
            "finetune",
            "--model",
            "lenet5_relu.fmnist",
            "--data",
            str(photos),
            "-o",
            str(out),
            "--strategy",
            "gradual",
            "--trainer.max_epochs",
            "2",
            "--trainer.enable_progress_bar",
            "false",
            "--data.batch_size",
            "16",
        ]
    )
    config, metrics = (json.loads((out / f).read_text()) for f in ("config.json", "metrics.json"))
    assert config["class_names"] == sorted(NAMES) and config["num_classes"] == 5
    assert metrics["finetuned_from"] == "lenet5_relu.fmnist" and metrics["strategy"] == "gradual"
    card = (out / "README.md").read_text()
    assert "fine-tuned from `lenet5_relu.fmnist` with the `gradual` strategy" in card
    model = zoo.load(str(out))
    assert model.class_names == sorted(NAMES)
    # the card's val_acc is the saved weights' accuracy on the held-out images, re-measured here
    held_out = ImageFolderDataModule(photos, input_size=(1, 28, 28), batch_size=64)
    held_out.setup("fit")
    hits = [(model.predict_proba(x).argmax(1) == y).sum().item() for x, y in held_out.val_dataloader()]
    assert metrics["val_samples"] == len(held_out.val_dataloader().dataset) > 0
    assert metrics["val_acc"] == pytest.approx(sum(hits) / metrics["val_samples"], abs=1e-6)
    main(["evaluate", str(out), "--data", str(photos)])  # the second command of the README's tutorial
    assert "on 60 images" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # an existing folder is not replaced without --overwrite
        main(["finetune", "--model", "lenet5_relu.fmnist", "--data", str(photos), "-o", str(out)])
    with pytest.raises(SystemExit):
        main(["finetune", "--model", "lenet5_relu.fmnist", "--data", str(photos), "--strategy", "linear_prob"])


def test_finetuned_model_saves_and_reloads_with_its_classes(photos: Path, tmp_path: Path) -> None:
    model = zoo.finetune("lenet5_relu.fmnist", photos, strategy="full", max_epochs=1, batch_size=16)
    folder = model.save_pretrained(tmp_path / "tuned")
    again = zoo.load(str(folder))
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    assert again.class_names == sorted(NAMES)
    assert json.loads((folder / "metrics.json").read_text())["strategy"] == "full"


def test_channels_and_input_size_adapt(photos: Path) -> None:
    """RGB input for a grey network (first conv repeated), and a ViT at twice its size (positions resampled)."""
    quick = dict(max_epochs=1, batch_size=16, lr=1e-3, head_init="random")  # no range test: not what is tested
    rgb = zoo.finetune("resnet20.fmnist", photos, in_chans=3, **quick)
    assert rgb.input_size == (3, 28, 28) and rgb.net.conv1.weight.shape[1] == 3
    torch.manual_seed(0)
    vit = zoo.create("vit_lite", num_classes=5)
    folder = vit.save_pretrained(photos.parent / "vit_source")
    big = zoo.finetune(str(folder), photos, model_kwargs={"img_size": 56}, **quick)
    assert big.input_size == (1, 56, 56) and big.net.embed.pos_embed.shape == (1, 1 + 14 * 14, 128)
    assert big(torch.rand(2, 1, 56, 56)).shape == (2, 5)


def test_a_finetuned_folder_goes_to_the_hub_and_back(hub_env, photos: Path, tmp_path: Path) -> None:
    model = zoo.finetune("lenet5_relu.fmnist", photos, strategy="linear_probe", max_epochs=1, batch_size=16)
    folder = model.save_pretrained(tmp_path / "tuned")
    zoo.push(str(folder), "me/fmnist-shoes")
    back = zoo.load("hf-hub:me/fmnist-shoes")
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
    assert back.class_names == sorted(NAMES)


def test_the_head_is_new_for_new_classes_even_when_as_many(photos: Path) -> None:
    """The 0-4 source has 5 classes like the photos, but other ones: its head must not be kept."""
    source = zoo.load("lenet5_relu.fmnist_0to4")
    # max_epochs=0 is refused now: one linear-probe epoch at a rate too small to move the head from its start
    still = dict(max_epochs=1, strategy="linear_probe", lr=1e-12)
    tuned = zoo.finetune(source.__class__.from_pretrained("lenet5_relu.fmnist_0to4"), photos, **still)
    assert not torch.equal(tuned.net.get_classifier().weight, source.net.get_classifier().weight)
    kept = zoo.finetune("lenet5_relu.fmnist_0to4", photos, **still)
    assert not torch.equal(kept.net.get_classifier().weight, source.net.get_classifier().weight)
    assert torch.equal(kept.net.features.c1.weight, source.net.features.c1.weight)


def test_review_fixes_val_fraction_zero_integer_csv_labels_and_uncached_unreadable(
    tmp_path: Path, photos: Path
) -> None:
    everything = ImageFolderDataModule(photos, input_size=(1, 28, 28), val_fraction=0.0)
    assert len(everything.splits["train"]) == 60 and everything.splits["val"] == []
    (photos.parent / "ints_named.csv").write_text(
        "path,label\n" + "".join(f"photos/{n}/002.png,{i}\n" for i, n in enumerate(sorted(NAMES)))
    )
    data = ImageFolderDataModule(
        photos.parent / "ints_named.csv", classes=sorted(NAMES), input_size=(1, 28, 28), val_fraction=0.0
    )
    assert [y for _, y in data.splits["train"]] == [0, 1, 2, 3, 4]
    root = _write_folder(tmp_path / "photos", per_class=3)
    (root / "bag" / "broken.png").write_bytes(b"not a png")
    uncached = ImageFolderDataModule(root, input_size=(1, 28, 28), cache=False, num_workers=0)
    with pytest.warns(UserWarning, match=r"broken\.png"):
        uncached.setup("fit")
    assert sum(len(d) for d in uncached.datasets.values()) == 15


def test_finetune_leaves_a_given_model_and_its_source_alone(photos: Path) -> None:
    base = zoo.load("lenet5_relu.fmnist")
    before = {k: v.clone() for k, v in base.state_dict().items()}
    tuned = zoo.finetune(base, photos, max_epochs=1, batch_size=16)
    assert tuned is not base and base.hparams.num_classes == 10
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    from zoo.tasks.classification import ImageClassifier

    started = ImageClassifier("lenet5_relu", num_classes=5, pretrained="lenet5_relu.fmnist", class_names=NAMES)
    assert (
        started.hparams.pretrained is None and started.weights_source == "lenet5_relu.fmnist"
    )  # a resume needs no source
