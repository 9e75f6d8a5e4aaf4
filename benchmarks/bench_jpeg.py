"""Photo-size JPEGs prepared for a 224-px weight: the folder datamodule (reduced-size JPEG decoding, PIL
``draft``) against torchvision's ``ImageFolder`` with the same weights' transforms, on the same workers.

The JPEGs are made here from scikit-learn's two sample photos (china.jpg, flower.jpg): random crops, flips
and tints, upscaled to 1200-1800 px a side, saved at quality 90 in two class folders. Both pipelines decode
every file once and produce the 224 × 224 image the weights evaluate on (resize of the short side to 232,
centre crop, as ``resnet50.tv_in1k``'s ``transforms()``); the ratio is of wall times in one run.

    OMP_NUM_THREADS=1 python benchmarks/bench_jpeg.py --images 1000 --workers 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

RESIZE, CROP = 232, 224


def make_jpegs(root: Path, count: int, seed: int = 0) -> Path:
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(p) for p in load_sample_images().images]
    for i in range(count):
        photo = photos[i % 2]
        w, h = photo.size
        cw, ch = int(w * rng.uniform(0.6, 1)), int(h * rng.uniform(0.6, 1))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        side = int(rng.integers(1200, 1801))
        crop = photo.crop((x, y, x + cw, y + ch)).resize((side, int(side * ch / cw)), Image.BICUBIC)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        tint = np.clip(np.asarray(crop, dtype=np.float32) * rng.uniform(0.8, 1.2, 3), 0, 255).astype(np.uint8)
        folder = root / ("china" if i % 2 == 0 else "flower")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(tint).save(folder / f"{i:05d}.jpg", quality=90)
    return root


def torchvision_folder(root: Path, workers: int) -> float:
    from torchvision import datasets
    from torchvision.transforms import v2

    transform = v2.Compose(
        [v2.Resize(RESIZE, antialias=True), v2.CenterCrop(CROP), v2.PILToTensor()]
    )  # the weights' eval transforms, to uint8 as the zoo keeps them
    dataset = datasets.ImageFolder(str(root), transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, num_workers=workers)
    started = time.perf_counter()
    count = sum(len(x) for x, _ in loader)
    assert count == len(dataset)
    return time.perf_counter() - started


def zoo_folder(root: Path, workers: int) -> float:
    from zoo.data.folders import ImageFolderDataModule

    data = ImageFolderDataModule(root, input_size=(3, CROP, CROP), val_fraction=0.0, num_workers=workers, augment=False)
    data.trainer = type("T", (), {"lightning_module": type("M", (), {"preprocessing": {"resize": RESIZE}})()})()
    started = time.perf_counter()
    data.setup("fit")
    assert tuple(data.datasets["train"].images.shape[1:]) == (3, CROP, CROP)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        root = make_jpegs(Path(scratch) / "photos", args.images)
        sizes = [min(__import__("PIL.Image").Image.open(p).size) for p in sorted(root.rglob("*.jpg"))[:50]]
        print(f"{args.images} JPEGs, short side {min(sizes)}-{max(sizes)} px (first 50), {args.workers} workers")
        reference = torchvision_folder(root, args.workers)
        ours = zoo_folder(root, args.workers)
    print(f"torchvision ImageFolder + transforms: {reference:.1f} s ({args.images / reference:.0f} images/s)")
    print(f"zoo ImageFolderDataModule (draft):    {ours:.1f} s ({args.images / ours:.0f} images/s)")
    print(f"ratio: {reference / ours:.2f}x")


if __name__ == "__main__":
    main()
