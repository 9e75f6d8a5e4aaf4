"""DDP on this machine's CPU cores: 2 processes × 1 thread vs 1 process × 2 threads, same run.

    python benchmarks/bench_ddp.py                    # resnet20, 60 training batches of 128 (global) each way
    python benchmarks/bench_ddp.py --batches 430      # a whole Fashion-MNIST epoch

1. ``zoo fit`` time per training batch of the same global batch (128): one process with 2 threads, and 2 DDP
   processes (gloo) with 1 thread and batch 64 each. Start-up is taken out by timing a short and a long run
   and dividing the difference by the batches between them, after a discarded warm-up run and in
   alternation, median of ``--repeats`` pairs. Ratio = DDP time / single-process time (goal:
   within 1.1× here, where the two cores are the limit; on a GPU machine the figure to compare).
2. The all-reduce share of a DDP step: a plain PyTorch DDP loop over the same network timed with gradient
   synchronisation and under ``no_sync()``; share = 1 − no-sync time / synced time.
3. Where the rest goes: the same plain step without DDP in one process with 2 threads at the global batch
   and with 1 thread at the per-process batch (what each DDP rank computes), so that the ratio splits into
   the one-thread compute, the communication and the training loop's own share.
"""

from __future__ import annotations

import argparse
import os
import statistics
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


def per_batch_both(batches: int, batch: int, repeats: int, cwd: str) -> tuple[float, float]:
    """Median seconds per batch of (1 process × 2 threads, 2 DDP processes × 1 thread), the two timed in
    alternation after a discarded warm-up run: the first process of a session reads torch and the dataset
    from disk, which would otherwise be counted in whichever short run came first."""
    fit_seconds(5, 1, 2, batch, cwd)
    single, ddp = [], []
    for _ in range(repeats):
        single.append(per_batch(batches, 1, 2, batch, cwd))
        ddp.append(per_batch(batches, 2, 1, batch // 2, cwd))
    return statistics.median(single), statistics.median(ddp)


def _allreduce_worker(rank: int, world: int, port: int, steps: int, batch: int, queue, threads: int = 1) -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    import zoo

    torch.set_num_threads(threads)
    net = zoo.create("resnet20", channels_last=True).net  # as the recipe trains it
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
        model = DistributedDataParallel(net)
    else:
        model = net
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    images, labels = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))

    def run(sync: bool) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            optimizer.zero_grad()
            if sync:
                torch.nn.functional.cross_entropy(model(images), labels).backward()
            elif world == 1:
                torch.nn.functional.cross_entropy(model(images), labels).backward()
            else:
                with model.no_sync():
                    torch.nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()
        return (time.perf_counter() - start) / steps

    images = images.contiguous(memory_format=torch.channels_last)
    run(True)  # warm-up
    synced, local = run(True), run(False)
    if rank == 0:
        queue.put((synced, local))
    if world > 1:
        dist.destroy_process_group()


def plain_steps(steps: int, batch: int, world: int = 2, threads: int = 1) -> tuple[float, float]:
    """(synced, no-sync) seconds per plain step: ``world`` DDP processes, or one process without DDP."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    queue = mp.get_context("spawn").SimpleQueue()
    args = (world, port, steps, batch, queue, threads)
    mp.start_processes(_allreduce_worker, args=args, nprocs=world, start_method="spawn")
    return queue.get()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=60, help="training batches timed (after 5 of start-up)")
    parser.add_argument("--batch-size", type=int, default=128, help="global batch")
    parser.add_argument("--steps", type=int, default=20, help="steps of the plain DDP loop")
    parser.add_argument("--repeats", type=int, default=2, help="timed (short, long) pairs each way; the median")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        single, ddp = per_batch_both(args.batches, args.batch_size, args.repeats, tmp)
    print(
        f"resnet20, global batch {args.batch_size}, {args.batches} batches: 1 process × 2 threads "
        f"{single * 1e3:.0f} ms/batch; 2 DDP processes × 1 thread {ddp * 1e3:.0f} ms/batch; ratio {ddp / single:.2f}×"
    )
    half = args.batch_size // 2
    synced, local = plain_steps(args.steps, half)
    print(
        f"plain DDP step (batch {half} per process): {synced * 1e3:.0f} ms synced, {local * 1e3:.0f} ms "
        f"under no_sync(); all-reduce share {100 * (1 - local / synced):.0f}%"
    )
    two_threads, _ = plain_steps(args.steps, args.batch_size, world=1, threads=2)
    one_thread, _ = plain_steps(args.steps, half, world=1, threads=1)
    print(
        f"plain step without DDP: batch {args.batch_size} on 2 threads {two_threads * 1e3:.0f} ms; batch {half} on 1 "
        f"thread {one_thread * 1e3:.0f} ms ({one_thread / two_threads:.2f}×: the one-thread compute of a rank); "
        f"zoo fit over the plain loop: {single / two_threads:.2f}× single, {ddp / synced:.2f}× DDP"
    )


if __name__ == "__main__":
    main()
