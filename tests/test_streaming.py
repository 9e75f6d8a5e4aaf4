"""Streaming shards: `zoo prepare` → LitData shards (local and on a local S3 server), StreamingImages in
training, fine-tuning and evaluation, and exactness across processes (each sample once an epoch, evaluation
once, a kill -9 in mid-epoch resumed from last.ckpt where the loaders were).

The images are real Fashion-MNIST ones written as PNG files, all distinct, so that a batch's images name
the samples it holds (their pixels' digest, augmentation off).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image

from zoo.cli import main
from zoo.data.shards import META, prepare_shards, read_meta
from zoo.data.streaming import StreamingImages
from zoo.errors import ZooError

TRAIN, VAL = 96, 30  # 96 = 2 × 3 × 2 × 8: every training sample once on 2 or 3 processes, batch 8, 2 workers


def digest(image: torch.Tensor) -> str:
    return hashlib.sha1(image.contiguous().numpy().tobytes()).hexdigest()[:16]


@pytest.fixture(scope="module")
def photos(tmp_path_factory, request) -> Path:
    """``train/`` and ``val/`` class folders of distinct Fashion-MNIST test images."""
    request.getfixturevalue("fmnist_root")
    from zoo.data.fashion_mnist import load_split

    root = tmp_path_factory.mktemp("photos") / "photos"
    images, labels = load_split("test")
    seen, counts = set(), {"train": 0, "val": 0}
    for i in range(len(labels)):
        key = digest(images[i][None])
        split = "train" if counts["train"] < TRAIN else "val"
        if key in seen or counts[split] >= {"train": TRAIN, "val": VAL}[split]:
            continue
        seen.add(key)
        folder = root / split / f"c{int(labels[i])}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i].numpy()).save(folder / f"{i:05d}.png")
        counts[split] += 1
        if counts["val"] == VAL:
            break
    return root


def split_digests(root: Path, split: str) -> Counter:
    return Counter(
        digest(torch.from_numpy(__import__("numpy").asarray(Image.open(f)))[None])
        for f in (root / split).rglob("*.png")
    )


def batches(data: StreamingImages, split: str) -> list:
    data.setup("fit")
    loader = data.train_dataloader() if split == "train" else data.val_dataloader()
    return list(loader)


# ---- zoo prepare -------------------------------------------------------------------------------------
def test_prepare_writes_both_formats_that_stream_the_folder_images(photos: Path, tmp_path: Path, capsys) -> None:
    main(["prepare", str(photos), "--out", str(tmp_path / "u8"), "--size", "28", "--channels", "1", "--no-progress"])
    assert "classification, 10 classes, train 96, val 30 (uint8 1x28x28)" in capsys.readouterr().out
    prepare_shards(photos, tmp_path / "enc", num_workers=2, progress=False)
    expected = split_digests(photos, "val")
    for name in ("u8", "enc"):
        meta = read_meta(tmp_path / name)
        assert meta["classes"] == [f"c{i}" for i in range(10)] and meta["splits"] == {"train": TRAIN, "val": VAL}
        data = StreamingImages(str(tmp_path / name), batch_size=8, num_workers=0, input_size=(1, 28, 28))
        assert data.class_names == meta["classes"] and data.num_classes == 10
        got = Counter(digest(x) for images, _ in batches(data, "val") for x in images)
        assert got == expected, f"{name}: the val images, each once, pixel for pixel the PNGs"
        images, labels = batches(data, "train")[0]
        assert images.dtype == torch.uint8 and images.shape == (8, 1, 28, 28) and labels.dtype == torch.long


def test_photo_networks_get_the_folder_datamodules_random_resized_crops(photos: Path, tmp_path: Path) -> None:
    from torchvision.transforms import v2

    prepare_shards(photos, tmp_path / "enc", progress=False)
    data = StreamingImages(str(tmp_path / "enc"), batch_size=8, num_workers=0, input_size=(3, 64, 64))
    images, _ = batches(data, "train")[0]
    assert images.shape == (8, 3, 64, 64) and images.dtype == torch.uint8
    train, val = data.datasets["train"].transform[0], data.datasets["val"].transform[0]
    assert train.size == (3, 74, 74) and val.size == (3, 64, 64), "kept 1.15× the crop for training, as the folder's"
    assert [type(t) for t in train.augment.transforms] == [v2.RandomResizedCrop, v2.RandomHorizontalFlip]
    assert val.augment is None


def test_training_batches_mix_the_classes_of_a_folder_scanned_class_by_class(photos: Path, tmp_path: Path) -> None:
    """Small chunks (about 10 images each), so LitData's shuffle of chunks and of samples within a chunk could
    not mix the classes of a class-ordered write: batches of 8 from a uniform random order of 96 images of
    10 classes (about 10 each) hold 10 × (1 - C(86, 8) / C(96, 8)) = 6.0 classes on average; in class order, 1-2."""
    prepare_shards(photos, tmp_path / "s", size=28, channels=1, chunk_bytes="8KB", progress=False)
    assert len(list((tmp_path / "s" / "train").glob("chunk-*.bin"))) >= 8
    data = StreamingImages(str(tmp_path / "s"), batch_size=8, num_workers=0, input_size=(1, 28, 28))
    per_batch = [len(set(labels.tolist())) for _ in range(3) for _, labels in batches(data, "train")]
    assert sum(per_batch) / len(per_batch) >= 4.5, per_batch


def test_prepare_refuses_existing_output_and_resumes_an_unfinished_one(photos: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "shards"
    prepare_shards(photos, out, size=28, channels=1, progress=False)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    with pytest.raises(SystemExit):
        main(["prepare", str(photos), "--out", str(out), "--size", "28", "--no-progress"])
    assert "already holds prepared shards" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ZooError, match="not empty and holds no zoo shards"):
        prepare_shards(photos, other, size=28, progress=False)
    assert (other / "notes.txt").read_text() == "mine" and {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    (out / META).unlink()  # an interrupted prepare: val never finished
    (out / "val" / "index.json").unlink()
    with pytest.raises(ZooError, match="pass --resume"):
        prepare_shards(photos, out, size=28, channels=1, progress=False)
    with pytest.raises(ZooError, match="other data or settings"):
        prepare_shards(photos, out, size=32, channels=1, resume=True, progress=False)
    train_chunks = {p: p.stat().st_mtime_ns for p in (out / "train").iterdir()}
    prepare_shards(photos, out, size=28, channels=1, resume=True, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (out / "train").iterdir()} == train_chunks, "the finished split kept"
    assert read_meta(out)["splits"]["val"] == VAL and (out / "val" / "index.json").is_file()
    broken = tmp_path / "broken"
    for k, png in enumerate(sorted((photos / "val").rglob("*.png"))[:4]):
        (broken / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
        (broken / f"c{k % 2}" / png.name).write_bytes(png.read_bytes())
    (broken / "c1" / "broken.png").write_text("not an image")
    with pytest.raises(ZooError, match=r"broken\.png could not be read as an image"):
        prepare_shards(broken, tmp_path / "out_broken", size=28, channels=1, val_fraction=0.0, progress=False)


def test_csv_and_coco_folders(photos: Path, tmp_path: Path) -> None:
    from zoo.data.coco import CocoDetection, write_coco
    from zoo.data.scenes import FashionMNISTScenes

    rows = [f"{p.relative_to(photos)},{p.parent.name}" for p in sorted((photos / "val").rglob("*.png"))]
    (photos / "val.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    meta = prepare_shards(photos / "val.csv", tmp_path / "csv", size=28, channels=1, progress=False)
    (photos / "val.csv").unlink()
    assert meta["task"] == "classification" and sum(meta["splits"].values()) == VAL
    scenes = FashionMNISTScenes(batch_size=4, train_scenes=4, val_scenes=4, test_scenes=4)
    scenes.setup()
    write_coco(scenes.datasets["val"], tmp_path / "coco", scenes.class_names)
    meta = prepare_shards(tmp_path / "coco", tmp_path / "det", size=64, channels=1, val_fraction=0.25, progress=False)
    assert meta["task"] == "detection" and meta["splits"] == {"train": 3, "val": 1}
    coco = CocoDetection(str(tmp_path / "coco"), size=64, in_chans=1, val_fraction=0.25)
    coco.setup()
    streamed = StreamingImages(str(tmp_path / "det"), batch_size=4, num_workers=0)
    (images, targets), (want_images, want_targets) = batches(streamed, "val")[0], next(iter(coco.val_dataloader()))
    assert torch.equal(images, want_images), "the same held-out scene, resized as CocoDetection resizes it"
    assert torch.allclose(targets[0]["boxes"], want_targets[0]["boxes"], atol=1e-4)
    assert torch.equal(targets[0]["labels"], want_targets[0]["labels"])


# ---- S3-compatible storage -----------------------------------------------------------------------------
def test_s3_prepare_then_finetune_and_evaluate_from_the_bucket(photos: Path, s3_env, tmp_path: Path) -> None:
    import lightning as L

    import zoo
    from zoo.task_descriptions import get_task

    s3_env.create_bucket("zoo-test")
    url = "s3://zoo-test/fmnist/photos"
    main(["prepare", str(photos), "--out", url, "--size", "28", "--channels", "1", "--workers", "2", "--no-progress"])
    with pytest.raises(ZooError, match="already holds prepared shards"):
        prepare_shards(photos, url, size=28, channels=1, progress=False)
    with pytest.raises(ZooError, match="no prepared shards"):
        StreamingImages("s3://zoo-test/elsewhere")
    model = zoo.finetune("lenet5.fmnist", url, max_epochs=1, batch_size=16, num_workers=1)
    assert model.class_names == [f"c{i}" for i in range(10)]
    assert model.card_metrics["val_samples"] == VAL and model.card_metrics["dataset"] == "photos"
    data = get_task("classification").eval_datamodule(url, model, batch_size=7)
    data.hparams.cache_dir = str(tmp_path / "cache")
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    result = trainer.test(model, datamodule=data, verbose=False)[0]
    assert int(model.confusion_matrix.sum()) == VAL and 0 <= result["test_acc"] <= 1
    assert abs(result["test_acc"] - model.card_metrics["val_acc"]) < 1e-6, "the same 30 images, the same weights"


def test_prepare_to_s3_leaves_other_jobs_staged_chunks_alone(photos: Path, s3_env, tmp_path: Path, monkeypatch) -> None:
    """LitData stages chunks for remote storage in <tempdir>/chunks and <tempdir>/data and empties both when
    it starts; a second job's prepare on the same machine deleted the first one's chunks mid-upload. A file
    another job staged there must survive, and the shards must still read back (the run staged elsewhere)."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for name in ("DATA_OPTIMIZER_CACHE_FOLDER", "DATA_OPTIMIZER_DATA_CACHE_FOLDER"):
        monkeypatch.delenv(name, raising=False)
    staged = [tmp_path / "chunks" / "chunk-0-0.bin", tmp_path / "data" / "other-job.png"]
    for path in staged:
        path.parent.mkdir(parents=True)
        path.write_bytes(b"another job's bytes")
    s3_env.create_bucket("zoo-staging")
    url = "s3://zoo-staging/photos"
    prepare_shards(photos, url, size=28, channels=1, num_workers=2, progress=False)
    assert all(path.read_bytes() == b"another job's bytes" for path in staged)
    assert "DATA_OPTIMIZER_CACHE_FOLDER" not in os.environ, "the private staging folder is not left set"
    data = StreamingImages(url, batch_size=64, num_workers=0, cache_dir=str(tmp_path / "cache"))
    data.setup("fit")
    assert sum(len(y) for _, y in data.val_dataloader()) == VAL


# ---- exactness across processes ------------------------------------------------------------------------
RUN = """
import hashlib, os, sys, time
import lightning as L, torch
import zoo
from zoo.data import StreamingImages

shards, devices, out, ckpt, kill_at = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])

class Data(StreamingImages):  # the batches as the loader gives them (the model normalises them after transfer)
    digests = []
    def on_before_batch_transfer(self, batch, dataloader_idx):
        Data.digests = [hashlib.sha1(x.contiguous().numpy().tobytes()).hexdigest()[:16] for x in batch[0]]
        return batch

class Record(L.Callback):
    def _write(self, trainer, name):
        with open(f"{out}/{name}.rank{trainer.global_rank}.txt", "a") as f:
            f.write("".join(d + "\\n" for d in Data.digests))
    def on_train_start(self, trainer, module):
        open(f"{out}/pid.rank{trainer.global_rank}", "w").write(str(os.getpid()))
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if kill_at and trainer.global_step == kill_at:  # last.ckpt of this step is written: wait for kill -9
            open(f"{out}/ready.rank{trainer.global_rank}", "w").write(str(batch_idx))
            time.sleep(600)
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self._write(trainer, f"train{trainer.current_epoch}")
    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        self._write(trainer, f"val{trainer.current_epoch}")

L.seed_everything(0)
checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=f"{out}/ckpt", every_n_train_steps=2, save_last=True)
trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", max_epochs=2,
                    logger=False, callbacks=[Record(), checkpoint], enable_progress_bar=False,
                    enable_model_summary=False, num_sanity_val_steps=0)
data = Data(shards, batch_size=8, num_workers=2, augment=False, input_size=(1, 28, 28), cache_dir=f"{out}/cache")
trainer.fit(zoo.create("lenet5", num_classes=10), datamodule=data, ckpt_path=None if ckpt == "-" else ckpt)
if trainer.world_size > 1:  # leave together: a rank exiting while gloo still talks aborts the others
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
"""


def killed_and_resumed(tmp_path: Path, shards: str, devices: int, kill_at: int) -> dict[str, Counter]:
    """Train 2 epochs on ``devices`` processes, kill -9 them all after step ``kill_at``, resume from last.ckpt;
    the digests each epoch's training and validation saw, over all ranks and both runs."""
    script, out = tmp_path / "run.py", tmp_path / "run"
    script.write_text(RUN)
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        [sys.executable, str(script), shards, str(devices), str(out), "-", str(kill_at)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    while len(glob.glob(f"{out}/ready.rank*")) < devices:
        assert first.poll() is None, first.stderr.read()[-3000:]
        assert time.time() < deadline, "the run never reached the step to kill it at"
        time.sleep(0.2)
    for pid_file in glob.glob(f"{out}/pid.rank*"):
        os.kill(int(Path(pid_file).read_text()), signal.SIGKILL)
    first.communicate(timeout=60)
    assert (out / "ckpt" / "last.ckpt").is_file()
    assert not glob.glob(f"{out}/train1.*") and not glob.glob(f"{out}/val0.*"), "killed in the first epoch"
    resumed = subprocess.run(
        [sys.executable, str(script), shards, str(devices), str(out), str(out / "ckpt" / "last.ckpt"), "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    seen = {}
    for name in ("train0", "train1", "val0", "val1"):
        lines = [line for f in glob.glob(f"{out}/{name}.rank*") for line in Path(f).read_text().split()]
        seen[name] = Counter(lines)
    seen["ranks"] = {Path(f).name for f in glob.glob(f"{out}/train1.rank*")}
    return seen


def check_exact(seen: dict, photos: Path, devices: int) -> None:
    train, val = split_digests(photos, "train"), split_digests(photos, "val")
    assert seen["train0"] == train, "the killed epoch: before the kill + after the resume = every image once"
    assert seen["train1"] == train, "the next epoch: every image once"
    assert seen["val0"] == val and seen["val1"] == val, "evaluation counts every image once (30 on uneven ranks)"
    assert len(seen["ranks"]) == devices, "each process read its own part"


def test_killed_mid_epoch_resumes_where_the_loader_was(photos: Path, tmp_path: Path) -> None:
    """One process, local shards: the small form of the multi-process test below."""
    prepare_shards(photos, tmp_path / "shards", size=28, channels=1, progress=False)
    check_exact(killed_and_resumed(tmp_path, str(tmp_path / "shards"), 1, kill_at=4), photos, 1)


@pytest.mark.slow
@pytest.mark.parametrize("devices", [2, 3])
def test_ddp_from_s3_every_sample_once_and_resumed_after_kill(photos: Path, s3_env, tmp_path: Path, devices) -> None:
    s3_env.create_bucket(f"zoo-ddp{devices}")
    url = f"s3://zoo-ddp{devices}/photos"
    prepare_shards(photos, url, size=28, channels=1, num_workers=2, progress=False)
    seen = killed_and_resumed(tmp_path, url, devices, kill_at=2)
    check_exact(seen, photos, devices)
    counts = json.loads(json.dumps({k: sum(v.values()) for k, v in seen.items() if k != "ranks"}))
    assert counts == {"train0": TRAIN, "train1": TRAIN, "val0": VAL, "val1": VAL}


@pytest.mark.slow  # ~40 s alone: LightningCLI, a fine-tuning epoch, then zoo evaluate
def test_zoo_finetune_and_evaluate_commands_from_local_shards(
    photos: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    import zoo

    monkeypatch.chdir(tmp_path)
    shards, out = tmp_path / "shards", tmp_path / "my_model"
    prepare_shards(photos, shards, progress=False)  # encoded: decoded at the model's size when read
    flags = ["--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false", "--data.num_workers", "1"]
    main(["finetune", "--model", "lenet5.fmnist", "--data", str(shards), "-o", str(out), *flags])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val_samples"] == VAL and metrics["dataset"] == "shards"
    assert zoo.load(str(out)).class_names == [f"c{i}" for i in range(10)]
    capsys.readouterr()
    main(["evaluate", str(out), "--data", str(shards)])
    assert f"on {VAL} images" in capsys.readouterr().out
