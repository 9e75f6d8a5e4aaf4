"""One LeNet-5 training epoch: `zoo fit` (LightningCLI, default callbacks and loggers) vs a plain PyTorch loop.

Same network, same data (the zoo datamodule's loader), same optimizer and per-step cosine schedule,
same thread count; both measured in this process, one after the other. Goal: ratio ≤ 1.05.

    python benchmarks/bench_fit_overhead.py [--batches N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

REPO = Path(__file__).resolve().parents[1]


def plain_epoch(batches: int) -> float:
    """The loop a student writes by hand: forward, loss, backward, step, scheduler step."""
    import zoo.models  # noqa: F401  registers the families
    from zoo.data import FashionMNISTDataModule
    from zoo.registry import build_net

    torch.manual_seed(0)
    net = build_net("lenet5")
    mean, std = 0.2860, 0.3530
    data = FashionMNISTDataModule(batch_size=128, augment=False, download=False)
    data.setup("fit")
    loader = data.train_dataloader()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=batches)
    net.train()
    start = time.perf_counter()
    for index, (images, targets) in enumerate(loader):
        if index == batches:
            break
        x = (images.float() / 255 - mean) / std
        loss = F.cross_entropy(net(x), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    return time.perf_counter() - start


class EpochTimer(Callback):
    """Wall time of the training epoch alone, as the plain loop measures it."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.start


def zoo_epoch(batches: int) -> float:
    """`zoo fit` on the LeNet-5 recipe with its default callbacks and loggers, validation off."""
    from zoo.cli.recipe import run_lightning

    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            cli = run_lightning(
                [
                    "fit",
                    "--config",
                    str(REPO / "recipes" / "lenet5_fmnist.yaml"),
                    "--trainer.max_epochs=1",
                    f"--trainer.limit_train_batches={batches}",
                    "--trainer.limit_val_batches=0",
                    "--trainer.num_sanity_val_steps=0",
                    "--trainer.deterministic=false",
                    "--data.init_args.augment=false",
                    "--model.init_args.warmup_epochs=0",
                    "--trainer.callbacks+=__main__.EpochTimer",
                    "--card.name=null",
                ]
            )
        finally:
            os.chdir(cwd)
    return next(c for c in cli.trainer.callbacks if isinstance(c, EpochTimer)).seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=430, help="training batches (430 = one full epoch)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of plain / zoo")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    plain_epoch(20)  # warm-up: first-touch of the data and the kernels
    plains, zoos = [], []
    for index in range(args.rounds):  # ABBA order: neither side always runs on a warmer machine
        if index % 2:
            zoos.append(zoo_epoch(args.batches))
            plains.append(plain_epoch(args.batches))
        else:
            plains.append(plain_epoch(args.batches))
            zoos.append(zoo_epoch(args.batches))
        print(f"round {index + 1}: plain {plains[-1]:.2f} s, zoo {zoos[-1]:.2f} s", flush=True)
    ratios = sorted(z / p for z, p in zip(zoos, plains))
    print(f"plain PyTorch loop: {statistics.median(plains):.2f} s for {args.batches} batches (median of {args.rounds})")
    print(f"zoo fit           : {statistics.median(zoos):.2f} s for {args.batches} batches")
    print(
        f"ratio zoo/plain   : {statistics.median(ratios):.3f}  per round {', '.join(f'{r:.3f}' for r in ratios)}  (goal ≤ 1.05)"
    )


if __name__ == "__main__":
    main()
