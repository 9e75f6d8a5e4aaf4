"""Streaming from LitData shards keeps up with images held in memory, and beats decoding photos every epoch.

    python benchmarks/bench_streaming.py              # 10,000 PNGs at 28 px, 1,000 JPEGs at 640×480

Two comparisons, each timed in this one run (best of ``--repeats`` epochs after a warm-up epoch), as the
data alone (an epoch of batches, images/s) and as a training epoch of ``--model`` (lenet5_relu):

1. the same 10,000 real Fashion-MNIST images (PNG files under class folders): ``StreamingImages`` over
   shards written by ``zoo prepare --size 28`` vs ``ImageFolderDataModule`` with everything decoded into
   memory (its default when the images fit in 2 GB); goal ≥ 0.9×;
2. photo-size JPEGs (Fashion-MNIST images enlarged to 640×480, colour, quality 90) for a 3×32×32 model:
   ``StreamingImages`` over shards written with ``--size 32`` vs ``ImageFolderDataModule(cache=False)``,
   which decodes and resizes every file every epoch (what the folder datamodule does when the decoded set
   would not fit in memory); goal ≥ 2×.

Both sides use ``--workers`` loader workers (the in-memory side none: workers would only copy tensors).
"""

from __future__ import annotations

import argparse
import tempfile
import time
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


def data_epoch(data, repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` passes over the training batches (after one warm-up pass)."""
    data.setup("fit")
    loader = data.train_dataloader()
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        for _batch in loader:
            pass
        times.append(time.perf_counter() - start)
    return min(times[1:])


def train_epoch(model_name: str, data, size: tuple[int, int, int], repeats: int) -> float:
    """Seconds per training epoch of ``model_name`` (the fastest epoch after the first)."""
    model = zoo.create(model_name, num_classes=10, in_chans=size[0], img_size=size[1], optimizer="adamw", lr=1e-3)

    class Clock(L.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_train_epoch_start(self, trainer, module) -> None:
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, module) -> None:
            self.times.append(time.perf_counter() - self.start)

    clock = Clock()
    trainer = L.Trainer(
        max_epochs=repeats + 1,
        accelerator="cpu",
        logger=False,
        callbacks=[clock],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=data)
    return min(clock.times[1:])


def compare(label: str, stream, folder, count: int, model: str, size, repeats: int, goal: float) -> None:
    fast, slow = data_epoch(stream, repeats), data_epoch(folder, repeats)
    print(f"  data alone: streaming {count / fast:9,.0f} images/s vs {label} {count / slow:9,.0f}: {slow / fast:.2f}×")
    fast, slow = train_epoch(model, stream, size, repeats), train_epoch(model, folder, size, repeats)
    print(f"  {model} epoch: streaming {fast:6.2f} s vs {label} {slow:6.2f} s: {slow / fast:.2f}× (goal ≥ {goal}×)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="28-px PNGs of comparison 1")
    parser.add_argument("--photos", type=int, default=1_000, help="photo-size JPEGs of comparison 2")
    parser.add_argument("--photo-size", default="640x480")
    parser.add_argument("--model", default="lenet5_relu")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    photo = tuple(int(v) for v in args.photo_size.split("x"))
    batch, workers = 128, args.workers
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"torch {torch.__version__}, {workers} loader workers, batch {batch}, best of {args.repeats} epochs")
        write_images(tmp / "pngs", args.count, None)
        start = time.perf_counter()
        prepare_shards(tmp / "pngs", tmp / "shards28", size=28, channels=1, val_fraction=0.0, progress=False)
        print(f"1. {args.count:,} PNGs at 28 px (zoo prepare --size 28: {time.perf_counter() - start:.1f} s)")
        size = (1, 28, 28)
        stream = StreamingImages(str(tmp / "shards28"), batch_size=batch, num_workers=workers, input_size=size)
        folder = ImageFolderDataModule(
            tmp / "pngs", input_size=size, val_fraction=0.0, batch_size=batch, num_workers=workers, cache=True
        )
        compare("in-memory folder", stream, folder, args.count, args.model, size, args.repeats, 0.9)

        write_images(tmp / "jpgs", args.photos, photo)
        start = time.perf_counter()
        prepare_shards(tmp / "jpgs", tmp / "shards32", size=32, channels=3, val_fraction=0.0, progress=False)
        print(
            f"2. {args.photos:,} JPEGs at {args.photo_size} → 3×32×32 "
            f"(zoo prepare --size 32: {time.perf_counter() - start:.1f} s, paid once)"
        )
        size = (3, 32, 32)
        stream = StreamingImages(str(tmp / "shards32"), batch_size=batch, num_workers=workers, input_size=size)
        folder = ImageFolderDataModule(
            tmp / "jpgs", input_size=size, val_fraction=0.0, batch_size=batch, num_workers=workers, cache=False
        )
        compare("decode every epoch", stream, folder, args.photos, args.model, size, args.repeats, 2.0)


if __name__ == "__main__":
    main()
