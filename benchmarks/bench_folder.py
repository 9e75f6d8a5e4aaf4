"""Fine-tuning from a folder of image files runs at the speed of the model, not of PIL.

    python benchmarks/bench_folder.py                 # 10,000 PNGs (real Fashion-MNIST), lenet5_relu and resnet20

Writes 10,000 real Fashion-MNIST test images as PNG files under class sub-folders, then for each model
times (1) ``ImageFolderDataModule.setup``: every file decoded once, by worker processes, into uint8
tensors, and (2) one training epoch over them, against (3) the same epoch over the same images given
as in-memory tensors (``ImageFolderDataModule.from_tensors``). The ratio (2)/(3) is the cost of the
files once decoded (goal ≈ 1.0); (1) is paid once per run, whatever the number of epochs.
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
from zoo.data.fashion_mnist import CLASS_NAMES, load_split
from zoo.data.folders import ImageFolderDataModule


def write_pngs(root: Path, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_split("test")
    images, labels = images[:count], labels[:count]
    for i, (image, label) in enumerate(zip(images, labels.tolist())):
        folder = root / CLASS_NAMES[label].replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.numpy()).save(folder / f"{i:05d}.png")
    return images.unsqueeze(1), labels


def epoch_seconds(model_name: str, data) -> float:
    model = zoo.create(model_name, num_classes=10, optimizer="adamw", lr=1e-3)
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--models", nargs="+", default=["lenet5_relu", "resnet20"])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        images, labels = write_pngs(root, args.count)
        names = sorted(p.name for p in root.iterdir())
        order = {n: i for i, n in enumerate(names)}
        labels = torch.tensor([order[CLASS_NAMES[y].replace("/", "-")] for y in labels.tolist()])
        print(f"{args.count} PNG files, {args.workers} decoding workers, torch {torch.__version__}")
        for name in args.models:
            folder = ImageFolderDataModule(
                root, input_size=(1, 28, 28), val_fraction=0.0, batch_size=128, num_workers=args.workers
            )
            start = time.perf_counter()
            folder.setup("fit")
            decode = time.perf_counter() - start
            files = epoch_seconds(name, folder)
            tensors = ImageFolderDataModule.from_tensors(
                images, labels, classes=names, val=(images[:1], labels[:1]), input_size=(1, 28, 28), batch_size=128
            )
            memory = epoch_seconds(name, tensors)
            print(
                f"  {name:<12} decode once {decode:5.1f} s ({args.count / decode:,.0f} files/s); epoch from the folder "
                f"{files:5.1f} s vs in-memory tensors {memory:5.1f} s: ratio {files / memory:.2f}×"
            )


if __name__ == "__main__":
    main()
