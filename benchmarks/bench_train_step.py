"""Training-step speed of the Fashion-MNIST lite networks, NCHW vs ``channels_last``, same run.

    python benchmarks/bench_train_step.py                       # batch 128, 28 px, 1 thread, 5 rounds
    python benchmarks/bench_train_step.py --threads 2 --models resnet20 vgg_lite

One step is what ``zoo fit`` does per batch: forward through the task (normalisation inside),
cross-entropy, backward, SGD with momentum. The two memory formats are timed in interleaved rounds
(NCHW, NHWC, NCHW, ...) so that background load slows both alike; each keeps the median of its rounds.
The printed ratio is NCHW time over NHWC time: above 1, the recipes' ``channels_last: true`` pays.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import zoo

LITE = ["alexnet_lite", "vgg_lite", "resnet20", "efficientnet_lite"]


def step_seconds(
    task: torch.nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor, steps: int
) -> float:
    """Mean wall time of ``steps`` training steps."""
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(task(images), labels).backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=LITE)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4, help="steps per round")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"batch {args.batch_size}, {args.threads} thread(s), median of {args.rounds} rounds of {args.steps} steps")
    print(f"{'model':<20}{'NCHW ms/step':>14}{'NHWC ms/step':>14}{'ratio':>8}")
    for name in args.models:
        runs = {}
        for channels_last in (False, True):
            task = zoo.create(name, channels_last=channels_last).train()
            optimizer = torch.optim.SGD(task.parameters(), lr=0.01, momentum=0.9)
            images = torch.rand(args.batch_size, *task.input_size)
            labels = torch.randint(0, task.hparams.num_classes, (args.batch_size,))
            step_seconds(task, optimizer, images, labels, 2)  # warm-up: oneDNN picks its kernels
            runs[channels_last] = (task, optimizer, images, labels, [])
        for _ in range(args.rounds):
            for task, optimizer, images, labels, times in runs.values():
                times.append(step_seconds(task, optimizer, images, labels, args.steps))
        nchw, nhwc = (statistics.median(runs[flag][-1]) for flag in (False, True))
        print(f"{name:<20}{nchw * 1e3:>14.0f}{nhwc * 1e3:>14.0f}{nchw / nhwc:>7.2f}×")


if __name__ == "__main__":
    main()
