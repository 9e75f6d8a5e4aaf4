"""Fashion-MNIST loading: the zoo datamodule vs torchvision `FashionMNIST` + `ToTensor`, images per second.

Both read the same IDX files, iterate the 60k training images once in batches of 128 with a shuffling
DataLoader (num_workers=0, one thread), and produce what a model needs (a batch tensor and labels); measured in
this process one after the other. Goal: ratio ≥ 3.

    python benchmarks/bench_data.py
"""

from __future__ import annotations

import gzip
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from zoo.data.fashion_mnist import FILES, SYSTEM_DIR, FashionMNISTDataModule


def images_per_second(loader: DataLoader) -> float:
    count, start = 0, time.perf_counter()
    for images, _ in loader:
        count += len(images)
    return count / (time.perf_counter() - start)


def torchvision_loader(root: Path) -> DataLoader:
    from torchvision.datasets import FashionMNIST
    from torchvision.transforms import ToTensor

    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in (*FILES["train"], *FILES["test"]):  # torchvision reads the uncompressed files
        (raw / stem).write_bytes(gzip.decompress((SYSTEM_DIR / f"{stem}.gz").read_bytes()))
    dataset = FashionMNIST(str(root), train=True, transform=ToTensor(), download=False)
    return DataLoader(dataset, batch_size=128, shuffle=True)


def main() -> None:
    # Loading is single-threaded work (as in a DataLoader worker): one intra-op thread for both sides,
    # so neither pays for thread wake-ups on a busy machine.
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = FashionMNISTDataModule(batch_size=128, val_size=0, download=False)
    data.setup("fit")
    ours = images_per_second(data.train_dataloader())
    with tempfile.TemporaryDirectory() as tmp:
        theirs = images_per_second(torchvision_loader(Path(tmp)))
    print(f"torchvision FashionMNIST + ToTensor: {theirs:12,.0f} images/s")
    print(f"zoo FashionMNISTDataModule        : {ours:12,.0f} images/s")
    print(f"ratio zoo/torchvision             : {ours / theirs:.1f}  (goal ≥ 3)")


if __name__ == "__main__":
    main()
