"""What the zoo costs on a timm network: its forward and training step against the plain timm model, one run.

    python benchmarks/bench_timm.py                                  # timm's test_convnext/test_vit/test_resnet
    python benchmarks/bench_timm.py --models resnet18 convnext_tiny --batch-size 16 --size 224

The zoo side is ``zoo.create("timm/<name>")``, a LightningModule: its forward takes [0, 1] pixels, checks them
(shape; in eval mode also their range and finiteness, one ``aminmax`` pass) and normalises inside (the task's
``Normalize``), then runs the adapter (:class:`zoo.models.timm_family.TimmNetwork`), which calls timm's
network. The plain side is ``timm.create_model(name)`` with the same weights, fed the same normalisation
``(x - mean) / std`` in front (a timm user does it in the data pipeline; it is the same work). Forward: eval
mode under ``no_grad``. Training step: forward, cross-entropy, backward, SGD with momentum, in train mode.

Measured for a machine that other work loads: both sides in this process, on one thread, pinned to one core
(``--cpu``; the last core this process may use, unless ``--cpu -1``), timed by the process's CPU time
(``time.process_time``: time spent waiting for a busy core is not counted; ``--clock wall`` for wall time).
After warm-up, ``--rounds`` rounds each time zoo and timm back to back, in alternating order (zoo-timm,
timm-zoo, ...) so that a drift in the load falls on both alike, the garbage collector off while timing.
Printed per architecture: the median of the per-round ratios (each round's pair ran back to back: the
headline) and the ratio of the minimums (each side's least disturbed round; on a loaded machine one side's
minimum can come from a quiet moment the other side never had). The issue's goal is at most 1.05×.
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import statistics
import time

import timm
import torch

import zoo

MODELS = ["test_convnext", "test_vit", "test_resnet"]


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
clock = CLOCKS["cpu"]


def forward_seconds(call, images: torch.Tensor, steps: int) -> float:
    start = clock()
    with torch.no_grad():
        for _ in range(steps):
            call(images)
    return (clock() - start) / steps


def step_seconds(call, optimizer, images: torch.Tensor, labels: torch.Tensor, steps: int) -> float:
    start = clock()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(call(images), labels).backward()
        optimizer.step()
    return (clock() - start) / steps


def sides(name: str):
    """(zoo task, plain timm model, the plain side's call) with equal weights."""
    torch.manual_seed(0)
    task = zoo.create(f"timm/{name}", num_classes=10)
    plain = timm.create_model(name, num_classes=10)
    plain.load_state_dict(task.net.state_dict())
    mean, std = task.mean.clone(), task.std.clone()
    return task, plain, (lambda x: plain((x - mean) / std))


def interleaved(zoo_run, timm_run, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds of each side per round, the order alternating round by round; gc off while timing."""
    zoo_times, timm_times = [], []
    for i in range(rounds):
        gc.collect()
        gc.disable()
        try:
            if i % 2 == 0:
                zoo_times.append(zoo_run())
                timm_times.append(timm_run())
            else:
                timm_times.append(timm_run())
                zoo_times.append(zoo_run())
        finally:
            gc.enable()
    return zoo_times, timm_times


def ratios(zoo_times: list[float], timm_times: list[float]) -> tuple[float, float]:
    """(ratio of the minimums, median of the per-round ratios), zoo over timm."""
    paired = statistics.median(z / t for z, t in zip(zoo_times, timm_times))
    return min(zoo_times) / min(timm_times), paired


def measure(name: str, args: argparse.Namespace) -> list[tuple[float, float, float, float]]:
    """[(zoo s, timm s, ratio of minimums, median ratio)] for the forward and the training step of ``name``."""
    task, plain, plain_call = sides(name)
    size = args.size or task.input_size[1]
    images = torch.rand(args.batch_size, task.input_size[0], size, size)
    labels = torch.randint(0, 10, (args.batch_size,))
    row = []

    task.eval(), plain.eval()
    forward_seconds(task, images, args.warmup), forward_seconds(plain_call, images, args.warmup)
    zoo_times, timm_times = interleaved(
        functools.partial(forward_seconds, task, images, args.steps),
        functools.partial(forward_seconds, plain_call, images, args.steps),
        args.rounds,
    )
    row.append((min(zoo_times), min(timm_times), *ratios(zoo_times, timm_times)))

    task.train(), plain.train()
    zoo_opt = torch.optim.SGD(task.parameters(), lr=0.01, momentum=0.9)
    timm_opt = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9)
    step_seconds(task, zoo_opt, images, labels, args.warmup)
    step_seconds(plain_call, timm_opt, images, labels, args.warmup)
    zoo_times, timm_times = interleaved(
        functools.partial(step_seconds, task, zoo_opt, images, labels, args.steps),
        functools.partial(step_seconds, plain_call, timm_opt, images, labels, args.steps),
        args.rounds,
    )
    row.append((min(zoo_times), min(timm_times), *ratios(zoo_times, timm_times)))
    return row


def pin(cpu: int | None) -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity here)"
    if cpu is None:
        cpu = max(os.sched_getaffinity(0))
    if cpu < 0:
        return "not pinned"
    os.sched_setaffinity(0, {cpu})
    return f"pinned to core {cpu}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS, help="timm names (without timm/)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=None, help="image side (default: the model's input size)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cpu", type=int, default=None, help="core to pin to (default: the last allowed; -1: none)")
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds per measurement")
    parser.add_argument("--steps", type=int, default=1, help="steps per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per side first")
    parser.add_argument("--clock", choices=CLOCKS, default="cpu", help="the process's CPU time (default) or wall time")
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    pinned = pin(args.cpu)
    print(
        f"timm {timm.__version__}, torch {torch.__version__}; batch {args.batch_size}, {args.threads} thread(s), "
        f"{pinned}; {args.clock} time, {args.rounds} interleaved rounds of {args.steps} steps per side"
    )
    width = max(16, *(len(name) + 2 for name in args.models))
    print(f"{'':<{width}}{'forward (eval, no_grad)':^46}{'training step':^46}")
    columns = f"{'zoo ms':>10}{'timm ms':>10}{'min ratio':>12}{'median ratio':>14}"
    print(f"{'model':<{width}}{columns}{columns}")
    worst_min = worst_median = 0.0
    for name in args.models:
        row = measure(name, args)
        worst_min = max(worst_min, row[0][2], row[1][2])
        worst_median = max(worst_median, row[0][3], row[1][3])
        cells = "".join(f"{z * 1e3:>10.1f}{t * 1e3:>10.1f}{r:>11.3f}×{m:>13.3f}×" for z, t, r, m in row)
        print(f"{name:<{width}}{cells}", flush=True)
    print(
        f"worst zoo/timm: median of per-round ratios {worst_median:.3f}×, ratio of minimums {worst_min:.3f}× "
        "(goal ≤ 1.05×)"
    )


if __name__ == "__main__":
    main()
