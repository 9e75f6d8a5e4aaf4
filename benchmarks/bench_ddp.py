"""DDP on this machine's CPU cores: 2 processes × 1 thread vs 1 process × 2 threads, same run.

    python benchmarks/bench_ddp.py                    # resnet20, 60 training batches of 128 (global) each way
    python benchmarks/bench_ddp.py --batches 430      # a whole Fashion-MNIST epoch

1. ``zoo fit`` time per training batch of the same global batch (128): one process with 2 threads, and 2 DDP
   processes (gloo) with 1 thread and batch 64 each. Start-up is taken out by timing a short and a long run
   and dividing the difference by the batches between them. Ratio = DDP time / single-process time (goal:
   within 1.1× here, where the two cores are the limit; on a GPU machine the figure to compare).
2. The all-reduce share of a DDP step: a plain PyTorch DDP loop over the same network timed with gradient
   synchronisation and under ``no_sync()``; share = 1 − no-sync time / synced time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "resnet20_fmnist.yaml"


def fit_seconds(batches: int, devices: int, threads: int, batch: int, cwd: str) -> float:
    cmd = [
        sys.executable,
        "-m",
        "zoo.cli",
        "fit",
        "--config",
        str(RECIPE),
        "--card.name=null",
        f"--trainer.limit_train_batches={batches}",
        "--trainer.limit_val_batches=0",
        "--trainer.max_epochs=1",
        "--trainer.logger=false",
        "--trainer.enable_checkpointing=false",
        "--trainer.enable_progress_bar=false",
        f"--data.init_args.batch_size={batch}",
        f"--trainer.devices={devices}",
        "--trainer.accelerator=cpu",
    ]
    if devices > 1:
        cmd.append("--trainer.strategy=ddp")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def per_batch(batches: int, devices: int, threads: int, batch: int, cwd: str) -> float:
    short = fit_seconds(5, devices, threads, batch, cwd)
    long = fit_seconds(batches + 5, devices, threads, batch, cwd)
    return (long - short) / batches


def _allreduce_worker(rank: int, world: int, port: int, steps: int, batch: int, queue) -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    import zoo

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    model = DistributedDataParallel(zoo.create("resnet20").net)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    images, labels = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))

    def run(sync: bool) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            optimizer.zero_grad()
            if sync:
                torch.nn.functional.cross_entropy(model(images), labels).backward()
            else:
                with model.no_sync():
                    torch.nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()
        return (time.perf_counter() - start) / steps

    run(True)  # warm-up
    synced, local = run(True), run(False)
    if rank == 0:
        queue.put((synced, local))
    dist.destroy_process_group()


def allreduce_share(steps: int, batch: int) -> tuple[float, float]:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    queue = mp.get_context("spawn").SimpleQueue()
    mp.start_processes(_allreduce_worker, args=(2, port, steps, batch, queue), nprocs=2, start_method="spawn")
    return queue.get()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=60, help="training batches timed (after 5 of start-up)")
    parser.add_argument("--batch-size", type=int, default=128, help="global batch")
    parser.add_argument("--steps", type=int, default=20, help="steps of the plain DDP loop")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        single = per_batch(args.batches, 1, 2, args.batch_size, tmp)
        ddp = per_batch(args.batches, 2, 1, args.batch_size // 2, tmp)
    print(
        f"resnet20, global batch {args.batch_size}, {args.batches} batches: 1 process × 2 threads "
        f"{single * 1e3:.0f} ms/batch; 2 DDP processes × 1 thread {ddp * 1e3:.0f} ms/batch; ratio {ddp / single:.2f}×"
    )
    synced, local = allreduce_share(args.steps, args.batch_size // 2)
    print(
        f"plain DDP step (batch {args.batch_size // 2} per process): {synced * 1e3:.0f} ms synced, {local * 1e3:.0f} ms "
        f"under no_sync(); all-reduce share {100 * (1 - local / synced):.0f}%"
    )


if __name__ == "__main__":
    main()
