"""Training-step speed of the Fashion-MNIST lite networks: NCHW, ``channels_last``, and bf16 autocast, same run.

    python benchmarks/bench_train_step.py                       # batch 128, 28 px, 1 thread, 5 rounds
    python benchmarks/bench_train_step.py --threads 2 --models resnet20 vgg_lite

One step is what ``zoo fit`` does per batch: forward through the task (normalisation inside),
cross-entropy, backward, SGD with momentum. Three set-ups are timed in interleaved rounds (NCHW, NHWC,
NHWC + bf16, NCHW, ...) so that background load slows them alike; each keeps the median of its rounds:
float32 in NCHW, float32 in ``channels_last`` (the CNN recipes' ``channels_last: true``; the transformers
hold tokens, where it changes nothing), and ``channels_last`` under ``torch.autocast("cpu", bfloat16)``,
what ``trainer.precision: bf16-mixed`` does (weights and optimizer stay float32). The ratios are NCHW
over NHWC, and NHWC over NHWC + bf16: above 1, the switch pays. bf16 pays on a CPU with native bf16
instructions (AVX512-BF16 or AMX); elsewhere it is emulated and slower.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import zoo

LITE = ["alexnet_lite", "vgg_lite", "resnet20", "efficientnet_lite", "vit_lite_conv", "swin_lite_conv"]
SETUPS = {"NCHW": (False, False), "NHWC": (True, False), "NHWC+bf16": (True, True)}  # channels_last, bf16


def step_seconds(
    task: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    bf16: bool = False,
) -> float:
    """Mean wall time of ``steps`` training steps (forward and loss under bf16 autocast when ``bf16``)."""
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(task(images), labels)
        loss.backward()
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
    header = "".join(f"{setup + ' ms':>15}" for setup in SETUPS)
    print(f"{'model':<20}{header}{'NCHW/NHWC':>11}{'NHWC/bf16':>11}")
    for name in args.models:
        runs = {}
        for setup, (channels_last, bf16) in SETUPS.items():
            torch.manual_seed(0)
            task = zoo.create(name, channels_last=channels_last).train()
            optimizer = torch.optim.SGD(task.parameters(), lr=0.01, momentum=0.9)
            images = torch.rand(args.batch_size, *task.input_size)
            labels = torch.randint(0, task.hparams.num_classes, (args.batch_size,))
            step_seconds(task, optimizer, images, labels, 2, bf16)  # warm-up: oneDNN picks its kernels
            runs[setup] = (task, optimizer, images, labels, bf16, [])
        for _ in range(args.rounds):
            for task, optimizer, images, labels, bf16, times in runs.values():
                times.append(step_seconds(task, optimizer, images, labels, args.steps, bf16))
        nchw, nhwc, mixed = (statistics.median(runs[setup][-1]) for setup in SETUPS)
        cells = "".join(f"{seconds * 1e3:>15.0f}" for seconds in (nchw, nhwc, mixed))
        print(f"{name:<20}{cells}{nchw / nhwc:>10.2f}×{nhwc / mixed:>10.2f}×")


if __name__ == "__main__":
    main()
