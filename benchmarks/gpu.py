"""Training and inference speed on one GPU, ratios measured in one run.

    python benchmarks/gpu.py                 # ResNet-50, 224 px, batch 256, bf16, channels_last
    python benchmarks/gpu.py --dry-run       # the same code on the CPU with tiny sizes (seconds)

1. Main figure: ResNet-50 training images/s, ``zoo fit``'s way (the zoo task in a Lightning Trainer with
   ``precision="bf16-mixed"`` and ``channels_last``) against a plain PyTorch loop (the same network, the
   normalisation, cross-entropy and SGD with momentum under bf16 autocast), both on the same synthetic
   batches held in GPU memory, in interleaved rounds after a warm-up (goal ≥ 0.97×).
2. The same training from a real decode path: JPEG files in class folders through
   :class:`~zoo.data.folders.ImageFolderDataModule` (decoded every epoch by DataLoader workers, ``cache=False``),
   against (1)'s resident data: near 1, the model is the bottleneck; well below, the data is.
3. ``zoo predict`` (:func:`zoo.predict.predict_files`: decoding workers, the model's transforms, batches)
   over the same files, against the model alone on a batch already on the GPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import images_per_second  # noqa: E402

import zoo  # noqa: E402
import zoo.models  # noqa: E402, F401  registers the families


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def resident_batches(args, classes: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``--resident`` distinct batches of pixels in [0, 1] and labels, made on the device once."""
    g = torch.Generator(device=args.device).manual_seed(0)
    shape = (args.batch_size, 3, args.image_size, args.image_size)
    return [
        (
            torch.rand(shape, device=args.device, generator=g).contiguous(memory_format=torch.channels_last),
            torch.randint(0, classes, (args.batch_size,), device=args.device, generator=g),
        )
        for _ in range(args.resident)
    ]


def plain_images_per_second(args, batches) -> float:
    """The loop written by hand: normalise, forward and loss under bf16 autocast, backward, SGD step."""
    from zoo.registry import build_net, get_entry

    torch.manual_seed(0)
    entry = get_entry(args.model)
    net = build_net(args.model).to(args.device, memory_format=torch.channels_last).train()
    mean = torch.tensor(entry.mean, device=args.device).view(1, -1, 1, 1)
    std = torch.tensor(entry.std, device=args.device).view(1, -1, 1, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    total = args.warmup + args.steps
    for step in range(total):
        if step == args.warmup:
            synchronize(args.device)
            start = time.perf_counter()
        images, labels = batches[step % len(batches)]
        with torch.autocast(args.device, dtype=torch.bfloat16):
            loss = F.cross_entropy(net((images - mean) / std), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronize(args.device)
    return args.steps * args.batch_size / (time.perf_counter() - start)


class StepTimer(Callback):
    """Images/s over the training batches after ``warmup`` (the GPU synchronised at both ends)."""

    def __init__(self, warmup: int, device: str) -> None:
        self.warmup, self.device, self.images, self.start = warmup, device, 0, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            synchronize(self.device)
            self.start = time.perf_counter()
        if self.start is not None:
            self.images += len(batch[1])

    def on_train_end(self, trainer, pl_module) -> None:
        synchronize(self.device)
        self.speed = self.images / (time.perf_counter() - self.start)


def zoo_images_per_second(args, steps: int, **data) -> float:
    """The zoo task (``channels_last``) in a Lightning Trainer with bf16-mixed, as ``zoo fit`` runs it."""
    import lightning as L

    torch.manual_seed(0)
    model = zoo.create(args.model, channels_last=True, optimizer="sgd", lr=0.01, momentum=0.9)
    timer = StepTimer(args.warmup, args.device)
    trainer = L.Trainer(
        accelerator="gpu" if args.device == "cuda" else "cpu",
        devices=1,
        precision="bf16-mixed",
        max_steps=args.warmup + steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        benchmark=args.device == "cuda",
        callbacks=[timer],
    )
    trainer.fit(model, **data)
    return timer.speed


def write_jpegs(root: Path, count: int, size: int) -> None:
    """``count`` smooth random colour JPEGs of ``size``² pixels in two class folders."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for index in range(count):
        folder = root / f"class{index % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((size, size), Image.BILINEAR).save(folder / f"{index:05d}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per round")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (cuDNN picks its kernels)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of plain / zoo")
    parser.add_argument("--resident", type=int, default=4, help="distinct batches kept in GPU memory")
    parser.add_argument("--files", type=int, default=4096, help="JPEG files for the decode path and zoo predict")
    parser.add_argument("--workers", type=int, default=min(16, max(1, (os.cpu_count() or 2) - 1)))
    parser.add_argument(
        "--dry-run", action="store_true", help="CPU, resnet18 at 32 px, batch 4, a few steps: checks the code"
    )
    args = parser.parse_args()
    if args.dry_run:
        args.image_size, args.batch_size, args.steps, args.warmup, args.rounds = 32, 4, 2, 1, 1
        args.model, args.resident, args.files, args.workers = "resnet18", 2, 8, 1
        torch.set_num_threads(1)  # a shared CI machine: one thread per process is the fast choice
    args.device = "cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"
    if args.device == "cpu" and not args.dry_run:
        raise SystemExit("benchmarks/gpu.py: no CUDA device; run it on a GPU machine, or pass --dry-run")
    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU (dry run)"
    print(f"{name}, torch {torch.__version__}; {args.model} at {args.image_size} px, batch {args.batch_size}, bf16")

    # 1. resident synthetic data: the zoo in a Trainer vs the plain loop, interleaved rounds
    from zoo.registry import get_entry

    batches = resident_batches(args, get_entry(args.model).num_classes)
    plains, zoos = [], []
    for _ in range(args.rounds):
        plains.append(plain_images_per_second(args, batches))
        loader = DataLoader([batches[i % len(batches)] for i in range(args.warmup + args.steps)], batch_size=None)
        zoos.append(zoo_images_per_second(args, args.steps, train_dataloaders=loader))
    ratios = [z / p for z, p in zip(zoos, plains)]
    plain, resident = statistics.median(plains), statistics.median(zoos)
    print(f"plain loop, resident data  : {plain:9.1f} img/s")
    print(f"zoo fit, resident data     : {resident:9.1f} img/s")
    print(
        f"RATIO zoo/plain            : {statistics.median(ratios):.3f}×  rounds {', '.join(f'{r:.3f}' for r in ratios)}"
    )
    del batches

    with tempfile.TemporaryDirectory() as tmp:
        # 2. the same training from JPEG files decoded by the folder datamodule's workers
        from zoo.data.folders import ImageFolderDataModule

        root = Path(tmp) / "photos"
        write_jpegs(root, args.files, max(args.image_size, int(args.image_size * 8 / 7)))
        data = ImageFolderDataModule(
            root,
            input_size=(3, args.image_size, args.image_size),
            val_fraction=0.0,
            batch_size=args.batch_size,
            num_workers=args.workers,
            augment=True,
            cache=False,
        )
        steps = max(1, min(args.steps, args.files // args.batch_size - args.warmup))
        files = zoo_images_per_second(args, steps, datamodule=data)
        print(f"zoo fit, {args.files} JPEGs ({args.workers} workers): {files:9.1f} img/s")
        print(f"RATIO decode path/resident : {files / resident:.3f}×  (near 1: the model is the bottleneck)")

        # 3. zoo predict over the files vs the model alone on a batch already on the device
        from zoo.predict import predict_files

        model = zoo.create(args.model, channels_last=True).to(args.device).eval()
        start = time.perf_counter()
        run = predict_files(model, [str(root)], batch_size=args.batch_size, num_workers=args.workers)
        predicted = len(run.predictions) / (time.perf_counter() - start)
        x = torch.rand(args.batch_size, *model.input_size, device=args.device)
        with torch.inference_mode():
            alone = images_per_second(lambda b: (model(b), synchronize(args.device)), x, 0.2 if args.dry_run else 2)
        print(f"zoo predict, {len(run.predictions)} JPEGs : {predicted:9.1f} img/s; the model alone {alone:.1f} img/s")
        print(f"RATIO predict/model alone  : {predicted / alone:.3f}×")


if __name__ == "__main__":
    main()
