"""Inference speed out of Python and over files, ratios measured in one run.

    python benchmarks/bench_predict.py                  # lenet5.fmnist and resnet20.fmnist, batches 1 and 64
    python benchmarks/bench_predict.py --files 10000    # also zoo predict over 10,000 PNGs written out

1. images/s of onnxruntime (the ``zoo export`` file) and of ``fold_batchnorm(compile=True)`` against eager
   PyTorch (the task in eval mode), in interleaved rounds; the ratio is their speed over eager's (goal:
   onnxruntime ≥ 2× eager at batch 1 for the lite networks).
2. ``zoo predict``'s pipeline (PNG decoding in DataLoader workers, the weights' transforms, batches of 256)
   over a folder of real test images, against the same model on the same images pre-loaded as one tensor
   (goal ≥ 0.8×: loading must not be the bottleneck).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import zoo
from zoo.exporting import export, onnx_session


def images_per_second(run, images: torch.Tensor, seconds: float = 0.6) -> float:
    """Images/s of ``run(batch)`` repeated for about ``seconds``."""
    run(images)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run(images)
        count += len(images)
    return count / (time.perf_counter() - start)


def engines(model, folder: Path) -> dict:
    session = onnx_session(export(model, folder / f"{model.weights_name}.onnx", overwrite=True))
    folded = model.fold_batchnorm(compile=True)
    return {
        "eager": lambda x: model(x),
        "onnxruntime": lambda x: session.run(None, {"pixels": x.numpy()})[0],
        "fold+compile": lambda x: folded(x),
    }


def bench_engines(names: list[str], batches: list[int], rounds: int) -> None:
    print(f"{'weights':<26}{'batch':>6}{'eager img/s':>13}{'onnxruntime':>13}{'fold+compile':>14}")
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        for name in names:
            model = zoo.load(name)
            runs = engines(model, Path(tmp))
            for batch in batches:
                images = torch.rand(batch, *model.input_size)
                speeds = {key: [] for key in runs}
                for _ in range(rounds):
                    for key, run in runs.items():
                        speeds[key].append(images_per_second(run, images))
                eager = statistics.median(speeds["eager"])
                ratios = {k: statistics.median(a / b for a, b in zip(v, speeds["eager"])) for k, v in speeds.items()}
                print(
                    f"{name:<26}{batch:>6}{eager:>13.0f}{ratios['onnxruntime']:>12.2f}×{ratios['fold+compile']:>13.2f}×"
                )


def bench_files(name: str, count: int, workers: int) -> None:
    from PIL import Image

    from zoo.data.fashion_mnist import load_split
    from zoo.predict import predict_files

    images, _ = load_split("test")
    images = images[:count]
    model = zoo.load(name)
    with tempfile.TemporaryDirectory() as tmp:
        for i, image in enumerate(images):
            Image.fromarray(image.numpy()).save(Path(tmp) / f"{i:05d}.png")
        with torch.inference_mode():
            batch = images.unsqueeze(1).float() / 255
            start = time.perf_counter()
            for chunk in batch.split(256):
                model(chunk)
            alone = len(images) / (time.perf_counter() - start)
        start = time.perf_counter()
        run = predict_files(model, [tmp], batch_size=256, num_workers=workers)
        files = len(run.predictions) / (time.perf_counter() - start)
    print(
        f"zoo predict over {count:,} PNGs ({workers} workers): {files:,.0f} img/s; the model alone on a pre-loaded "
        f"tensor: {alone:,.0f} img/s; ratio {files / alone:.2f}×"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="+", default=["lenet5.fmnist", "resnet20.fmnist"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--files", type=int, default=0, help="also time zoo predict over this many PNG files")
    parser.add_argument("--files-weights", default="resnet20.fmnist")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.threads} thread(s); ratios are medians over {args.rounds} interleaved rounds (speed / eager's)")
    bench_engines(args.weights, args.batches, args.rounds)
    if args.files:
        bench_files(args.files_weights, args.files, args.workers)


if __name__ == "__main__":
    main()
