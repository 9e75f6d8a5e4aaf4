"""Detection from streaming shards: a COCO folder of Fashion-MNIST scenes through `zoo prepare`, read by 2
processes (each scene once an epoch, evaluation counting each once, the same mAP as one process reading the
COCO folder), and the shipped detector fine-tuned and evaluated from the test S3 server.

The expected scenes and numbers come from :class:`~zoo.data.coco.CocoDetection` reading the COCO folder's PNG
files, not from the shards.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import lightning as L
import pytest
import torch

import zoo
from zoo.cli import main
from zoo.data.coco import CocoDetection
from zoo.data.shards import prepare_shards
from zoo.data.streaming import StreamingImages

SCENES, VAL_FRACTION = 22, 0.27  # held out: round(22 × 0.27) = 6; train 16 = 2 ranks × 1 worker × batch 4 × 2
TRAIN, VAL = 16, 6


def digest(image: torch.Tensor) -> str:
    return hashlib.sha1(image.contiguous().numpy().tobytes()).hexdigest()[:16]


@pytest.fixture(scope="module")
def coco(tmp_path_factory, fmnist_root) -> Path:
    from zoo.data.coco import write_coco
    from zoo.data.fashion_mnist import CLASS_NAMES
    from zoo.data.scenes import FashionMNISTScenes

    scenes = FashionMNISTScenes(train_scenes=SCENES, augment=False, seed=3).render("train")
    return write_coco(scenes, tmp_path_factory.mktemp("coco") / "scenes", CLASS_NAMES).parent


def from_folder(coco: Path) -> CocoDetection:
    """The same split read from the PNG files, unaugmented: what the shards must hold."""
    data = CocoDetection(str(coco), size=64, in_chans=1, val_fraction=VAL_FRACTION, augment=False, batch_size=4)
    data.setup()
    return data


def split_digests(data: CocoDetection, split: str) -> Counter:
    return Counter(digest(data.datasets[split][i][0]) for i in range(len(data.datasets[split])))


def test_mAP(model, data) -> dict:
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    return trainer.test(model, datamodule=data, verbose=False)[0]


test_mAP.__test__ = False  # a helper, not a test


def test_streamed_training_scenes_get_cocos_box_aware_augmentation(coco: Path, tmp_path: Path) -> None:
    """Training draws are flipped and zoomed with their boxes, as CocoDetection's; evaluation ones untouched."""
    prepare_shards(coco, tmp_path / "shards", size=64, channels=1, val_fraction=VAL_FRACTION, progress=False)
    data = StreamingImages(str(tmp_path / "shards"), batch_size=4, num_workers=0, shuffle=False)
    data.setup("fit")
    folder = from_folder(coco)
    images, targets = next(iter(data.val_dataloader()))
    assert torch.equal(images[0], folder.datasets["val"][0][0]), "validation: the stored scene itself"
    torch.manual_seed(0)
    moved = 0
    for images, targets in data.train_dataloader():
        for image, target in zip(images, targets):
            assert image.shape == (1, 64, 64) and image.dtype == torch.uint8
            assert target["boxes"].shape[0] == target["labels"].shape[0]
            moved += digest(image) not in split_digests(folder, "train")
    assert moved == TRAIN, "every training draw augmented (noise alone changes the pixels)"


RUN = """
import hashlib, json, sys
import lightning as L, torch
import zoo
from zoo.data import StreamingImages

shards, devices, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]

class Data(StreamingImages):  # the batches' scenes as the loader gives them
    digests = []
    def on_before_batch_transfer(self, batch, dataloader_idx):
        Data.digests = [hashlib.sha1(x.contiguous().numpy().tobytes()).hexdigest()[:16] for x in batch[0]]
        return batch

class Record(L.Callback):
    def _write(self, trainer, name):
        with open(f"{out}/{name}.rank{trainer.global_rank}.txt", "a") as f:
            f.write("".join(d + "\\n" for d in Data.digests))
    def on_train_batch_end(self, trainer, *args):
        self._write(trainer, "train")
    def on_validation_batch_end(self, trainer, *args):
        self._write(trainer, "val")
    def on_test_batch_end(self, trainer, *args):
        self._write(trainer, "test")

L.seed_everything(0)
trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp", max_epochs=1, logger=False,
                    callbacks=[Record()], enable_progress_bar=False, enable_model_summary=False,
                    enable_checkpointing=False, num_sanity_val_steps=0)
data = Data(shards, batch_size=4, num_workers=1, augment=False, cache_dir=f"{out}/cache")
model = zoo.load("detr_lite.fmnist_scenes")
result = trainer.test(model, datamodule=data, verbose=False)[0]
if trainer.global_rank == 0:
    open(f"{out}/test.json", "w").write(json.dumps({k: float(v) for k, v in result.items()}))
trainer.fit(model, datamodule=data)
torch.distributed.barrier()  # leave together: a rank exiting while gloo still talks aborts the others
torch.distributed.destroy_process_group()
"""


@pytest.mark.slow  # ~25 s: two gloo processes reading the bucket, a test pass and a training epoch
def test_two_processes_read_each_scene_once_from_s3_and_score_as_one(coco: Path, s3_env, tmp_path: Path) -> None:
    s3_env.create_bucket("zoo-det")
    url = "s3://zoo-det/scenes"
    prepare_shards(coco, url, val_fraction=VAL_FRACTION, num_workers=2, progress=False)  # encoded PNG bytes
    script, out = tmp_path / "run.py", tmp_path / "run"
    script.write_text(RUN)
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, str(script), url, "2", str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    seen = {
        name: Counter(line for f in glob.glob(f"{out}/{name}.rank*") for line in Path(f).read_text().split())
        for name in ("train", "val", "test")
    }
    ranks = {name: len(glob.glob(f"{out}/{name}.rank*")) for name in ("train", "val", "test")}
    folder = from_folder(coco)
    assert ranks == {"train": 2, "val": 2, "test": 2}, "each process read its own part"
    assert seen["train"] == split_digests(folder, "train"), "every training scene once in the epoch"
    assert seen["val"] == split_digests(folder, "val") == seen["test"], "evaluation: every held-out scene once"
    # the test pass of the shipped weights on 2 processes = one process reading the COCO folder's PNGs
    alone = test_mAP(zoo.load("detr_lite.fmnist_scenes"), folder)
    streamed = json.loads((out / "test.json").read_text())
    for key in ("test_map", "test_map_50", "test_map_75"):  # per image; the loss is DETR's per batch
        assert streamed[key] == pytest.approx(alone[key], abs=1e-5), key


def test_the_shipped_detector_scores_the_same_from_the_bucket_as_from_the_coco_folder(coco: Path, s3_env) -> None:
    """The small form of the two below: `zoo prepare` to the bucket, the evaluation datamodule of `zoo evaluate`."""
    from zoo.task_descriptions import get_task

    s3_env.create_bucket("zoo-det-eval")
    url = "s3://zoo-det-eval/scenes"
    prepare_shards(coco, url, size=64, channels=1, val_fraction=VAL_FRACTION, num_workers=1, progress=False)
    model = zoo.load("detr_lite.fmnist_scenes")
    streamed = test_mAP(model, get_task("detection").eval_datamodule(url, model, batch_size=4))
    assert model.measured_test_samples() == VAL
    alone = test_mAP(model, from_folder(coco))
    for key in ("test_map", "test_map_50", "test_loss"):
        assert streamed[key] == pytest.approx(alone[key], abs=1e-5), key


@pytest.mark.slow  # ~40 s on the loaded 2-core machine: the small form is the test above
def test_the_shipped_detector_fine_tunes_and_evaluates_from_s3(coco: Path, s3_env, tmp_path: Path, capsys) -> None:
    """`zoo prepare` to the bucket, zoo.finetune on the URL, `zoo evaluate --data s3://...`."""
    s3_env.create_bucket("zoo-det-ft")
    url = "s3://zoo-det-ft/scenes"
    main(["prepare", str(coco), "--out", url, "--size", "64", "--channels", "1"]
         + ["--val-fraction", str(VAL_FRACTION), "--workers", "2", "--no-progress"])  # fmt: skip
    assert f"detection, 10 classes, train {TRAIN}, val {VAL}" in capsys.readouterr().out
    tuned = zoo.finetune("detr_lite.fmnist_scenes", url, max_epochs=1, lr=1e-4, batch_size=4, num_workers=0)
    assert tuned.card_metrics["val_samples"] == VAL and "val_map" in tuned.card_metrics
    assert tuned.class_names == zoo.load("detr_lite.fmnist_scenes").class_names
    tuned.save_pretrained(tmp_path / "tuned")
    capsys.readouterr()
    main(["evaluate", str(tmp_path / "tuned"), "--data", url])
    said = capsys.readouterr().out
    # the same weights on the same held-out scenes, read from the COCO folder's PNG files
    alone = test_mAP(zoo.load(str(tmp_path / "tuned")), from_folder(coco))
    expected = f"test mAP@[.5:.95] {alone['test_map']:.4f}, mAP@0.5 {alone['test_map_50']:.4f}"
    assert expected in said and f"on {VAL} images" in said, (said, alone)
