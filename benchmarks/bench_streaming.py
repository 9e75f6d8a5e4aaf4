"""Streaming from LitData shards keeps up with images held in memory, and beats decoding photos every epoch.

    python benchmarks/bench_streaming.py                    # 10,000 PNGs at 28 px, 1,000 JPEGs at 640×480
    taskset -c 0,1 python benchmarks/bench_streaming.py --threads 1 --workers 2 --repeats 5

Two comparisons, every side timed in this one process, in alternation (A, B, A, B, ... after one discarded
round), each reported as the ratio of the fastest epochs and the ratio of the median ones, as the data alone
(an epoch of batches) and as a training epoch of ``--model`` (lenet5_relu, a Lightning ``Trainer``):

1. the same 10,000 real Fashion-MNIST images (PNG files under class folders): ``StreamingImages`` over shards
   written by ``zoo prepare --size 28 --channels 1`` (uint8, pre-resized: no decoding when read) vs
   ``ImageFolderDataModule`` with everything decoded into memory (its default when the images fit in 2 GB;
   its loader has no workers, which would only copy in-memory tensors); streaming with ``--workers`` loader
   workers and with none (goal ≥ 0.9×);
2. photo-size JPEGs (Fashion-MNIST images enlarged to 640×480, colour, quality 90) for a 3×32×32 model:
   ``StreamingImages`` over shards written with ``--size 32`` vs ``ImageFolderDataModule(cache=False)``,
   which decodes and resizes every file every epoch (what the folder datamodule does when the decoded set
   would not fit in memory); both with ``--workers`` loader workers (goal ≥ 2×).

Every side does the same per-image augmentation (random shift and flip). ``--threads`` sets torch's threads
of the training process (the same for both sides); pin the whole run to cores with ``taskset``.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from PIL import Image

import zoo
from zoo.data.fashion_mnist import load_split
from zoo.data.folders import ImageFolderDataModule
from zoo.data.shards import prepare_shards
from zoo.data.streaming import StreamingImages


def write_images(root: Path, count: int, photo: tuple[int, int] | None) -> None:
    images, labels = load_split("test")
    tint = torch.tensor([1.0, 0.8, 0.6]).view(3, 1, 1)
    for i in range(count):
        folder = root / f"c{int(labels[i % len(labels)])}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = images[i % len(labels)]
        if photo is None:
            Image.fromarray(pixels.numpy()).save(folder / f"{i:05d}.png")
        else:  # a photo-size colour JPEG of a real garment
            big = torch.nn.functional.interpolate(pixels[None, None].float(), size=photo[::-1], mode="bilinear")[0]
            rgb = (big * tint).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
            Image.fromarray(rgb).save(folder / f"{i:05d}.jpg", quality=90)


class DataEpoch:
    """One pass over a datamodule's training batches, the same loader every time (epochs advance)."""

    def __init__(self, data) -> None:
        data.setup("fit")
        self.loader = data.train_dataloader()

    def __call__(self) -> float:
        start = time.perf_counter()
        for _batch in self.loader:
            pass
        return time.perf_counter() - start


class Clock(L.Callback):
    def on_train_epoch_start(self, trainer, module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        self.seconds = time.perf_counter() - self.start


class TrainEpoch:
    """One training epoch of the model on the datamodule (a fresh ``Trainer``; its start-up not timed)."""

    def __init__(self, model_name: str, data, size: tuple[int, int, int]) -> None:
        self.data = data
        self.model = zoo.create(model_name, num_classes=10, in_chans=size[0], img_size=size[1], optimizer="adamw")

    def __call__(self) -> float:
        clock = Clock()
        trainer = L.Trainer(
            max_epochs=1,
            accelerator="cpu",
            logger=False,
            callbacks=[clock],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
        )
        trainer.fit(self.model, datamodule=self.data)
        return clock.seconds


def alternate(sides: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds per side: ``repeats`` rounds of every side in turn, after one discarded warm-up round."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for round_ in range(repeats + 1):
        for name, run in sides.items():
            seconds = run()
            if round_:
                times[name].append(seconds)
    return times


def report(what: str, times: dict[str, list[float]], baseline: str, count: int, goal: float) -> None:
    base = times[baseline]
    for name, seconds in times.items():
        if name == baseline:
            continue
        best, median = min(base) / min(seconds), statistics.median(base) / statistics.median(seconds)
        print(
            f"  {what:<13} {name:<22} {count / min(seconds):8,.0f} images/s vs {baseline} "
            f"{count / min(base):8,.0f}: {best:.2f}× fastest, {median:.2f}× median (goal ≥ {goal}×)"
        )
    rounds = "; ".join(f"{name} " + " ".join(f"{s:.2f}" for s in v) for name, v in times.items())
    print(f"    seconds per round: {rounds}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="28-px PNGs of comparison 1")
    parser.add_argument("--photos", type=int, default=1_000, help="photo-size JPEGs of comparison 2")
    parser.add_argument("--photo-size", default="640x480")
    parser.add_argument("--model", default="lenet5_relu")
    parser.add_argument("--workers", type=int, default=2, help="loader workers of the streaming and file sides")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (after one warm-up round)")
    parser.add_argument("--skip-training", action="store_true", help="time the data alone")
    parser.add_argument("--comparisons", default="1,2", help="which to run: 1 (in memory), 2 (JPEGs) or both")
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # each round's Trainer banner
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    photo = tuple(int(v) for v in args.photo_size.split("x"))
    batch, workers = args.batch_size, args.workers
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(
        f"torch {torch.__version__}, cores {cores}, {args.threads} torch thread(s), {workers} loader workers, "
        f"batch {batch}; {args.repeats} alternating rounds after a warm-up; load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        which = {int(v) for v in args.comparisons.split(",")}
        if 1 in which:
            in_memory(args, tmp)
        if 2 in which:
            photos(args, tmp, photo)


def compare(args: argparse.Namespace, data: dict, size: tuple, baseline: str, count: int, goal: float) -> None:
    """The data loaders alone, then a training epoch of ``args.model`` on each (unless --skip-training)."""
    times = alternate({name: DataEpoch(d) for name, d in data.items()}, args.repeats)
    report("data alone", times, baseline, count, goal)
    if not args.skip_training:
        times = alternate({name: TrainEpoch(args.model, d, size) for name, d in data.items()}, args.repeats)
        report(f"{args.model}", times, baseline, count, goal)


def in_memory(args: argparse.Namespace, tmp: Path) -> None:
    batch, workers = args.batch_size, args.workers
    write_images(tmp / "pngs", args.count, None)
    start = time.perf_counter()
    prepare_shards(tmp / "pngs", tmp / "shards28", size=28, channels=1, val_fraction=0.0, progress=False)
    print(f"1. {args.count:,} PNGs at 28 px (zoo prepare --size 28: {time.perf_counter() - start:.1f} s)")
    size = (1, 28, 28)
    data = {
        f"streaming {workers} workers": StreamingImages(
            str(tmp / "shards28"), batch_size=batch, num_workers=workers, input_size=size
        ),
        "streaming 0 workers": StreamingImages(str(tmp / "shards28"), batch_size=batch, num_workers=0, input_size=size),
        "in-memory": ImageFolderDataModule(
            tmp / "pngs", input_size=size, val_fraction=0.0, batch_size=batch, num_workers=workers, cache=True
        ),
    }
    compare(args, data, size, "in-memory", args.count, 0.9)


def photos(args: argparse.Namespace, tmp: Path, photo: tuple[int, int]) -> None:
    batch, workers = args.batch_size, args.workers
    write_images(tmp / "jpgs", args.photos, photo)
    start = time.perf_counter()
    prepare_shards(tmp / "jpgs", tmp / "shards32", size=32, channels=3, val_fraction=0.0, progress=False)
    print(
        f"2. {args.photos:,} JPEGs at {args.photo_size} → 3×32×32 "
        f"(zoo prepare --size 32: {time.perf_counter() - start:.1f} s, paid once)"
    )
    size = (3, 32, 32)
    data = {
        f"streaming {workers} workers": StreamingImages(
            str(tmp / "shards32"), batch_size=batch, num_workers=workers, input_size=size
        ),
        "decode every epoch": ImageFolderDataModule(
            tmp / "jpgs", input_size=size, val_fraction=0.0, batch_size=batch, num_workers=workers, cache=False
        ),
    }
    compare(args, data, size, "decode every epoch", args.photos, 2.0)


if __name__ == "__main__":
    main()
