"""What the zoo costs on a timm network: its forward and training step against the plain timm model, one run.

    python benchmarks/bench_timm.py                                  # timm's test_convnext/test_vit/test_resnet
    python benchmarks/bench_timm.py --models resnet18 convnext_tiny --batch-size 16 --size 224

The zoo side is ``zoo.create("timm/<name>")``, a LightningModule: its forward takes [0, 1] pixels, checks them
(shape; in eval mode also their range) and normalises inside (the task's ``Normalize``), then runs the
adapter (:class:`zoo.models.timm_family.TimmNetwork`), which calls timm's network. The plain side is
``timm.create_model(name)`` with the same weights, fed the same normalisation ``(x - mean) / std`` in front
(a timm user does it in the data pipeline; it is the same work). Forward: eval mode under ``no_grad``.
Training step: forward, cross-entropy, backward, SGD with momentum, in train mode. Both sides are timed in
interleaved rounds (zoo, timm, zoo, ...) so that background load slows them alike; each keeps the median of
its rounds. The ratio is zoo over timm: the issue's goal is at most 1.05×.
"""

from __future__ import annotations

import argparse
import statistics
import time

import timm
import torch

import zoo

MODELS = ["test_convnext", "test_vit", "test_resnet"]


def forward_seconds(call, images: torch.Tensor, steps: int) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(steps):
            call(images)
    return (time.perf_counter() - start) / steps


def step_seconds(call, optimizer, images: torch.Tensor, labels: torch.Tensor, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(call(images), labels).backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def sides(name: str, size: int | None):
    """(zoo task, plain timm model, the plain side's call) with equal weights."""
    torch.manual_seed(0)
    task = zoo.create(f"timm/{name}", num_classes=10)
    plain = timm.create_model(name, num_classes=10)
    plain.load_state_dict(task.net.state_dict())
    mean, std = task.mean.clone(), task.std.clone()
    return task, plain, (lambda x: plain((x - mean) / std))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS, help="timm names (without timm/)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=None, help="image side (default: the model's input size)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3, help="steps per round")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"timm {timm.__version__}, torch {torch.__version__}; batch {args.batch_size}, {args.threads} thread(s), "
        f"median of {args.rounds} interleaved rounds of {args.steps} steps"
    )
    print(
        f"{'model':<18}{'fwd zoo ms':>12}{'fwd timm ms':>13}{'ratio':>8}{'step zoo ms':>13}{'step timm ms':>14}{'ratio':>8}"
    )
    worst = 0.0
    for name in args.models:
        task, plain, plain_call = sides(name, args.size)
        size = args.size or task.input_size[1]
        images = torch.rand(args.batch_size, task.input_size[0], size, size)
        labels = torch.randint(0, 10, (args.batch_size,))
        times: dict[str, list[float]] = {"fz": [], "ft": [], "sz": [], "st": []}
        task.eval(), plain.eval()
        forward_seconds(task, images, 1), forward_seconds(plain_call, images, 1)  # warm-up
        for _ in range(args.rounds):
            times["fz"].append(forward_seconds(task, images, args.steps))
            times["ft"].append(forward_seconds(plain_call, images, args.steps))
        task.train(), plain.train()
        zoo_opt = torch.optim.SGD(task.parameters(), lr=0.01, momentum=0.9)
        timm_opt = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9)
        step_seconds(task, zoo_opt, images, labels, 1), step_seconds(plain_call, timm_opt, images, labels, 1)
        for _ in range(args.rounds):
            times["sz"].append(step_seconds(task, zoo_opt, images, labels, args.steps))
            times["st"].append(step_seconds(plain_call, timm_opt, images, labels, args.steps))
        fz, ft, sz, st = (statistics.median(times[key]) * 1e3 for key in ("fz", "ft", "sz", "st"))
        worst = max(worst, fz / ft, sz / st)
        print(f"{name:<18}{fz:>12.1f}{ft:>13.1f}{fz / ft:>7.3f}×{sz:>13.1f}{st:>14.1f}{sz / st:>7.3f}×")
    print(f"worst ratio zoo/timm: {worst:.3f}× (goal ≤ 1.05×)")


if __name__ == "__main__":
    main()
