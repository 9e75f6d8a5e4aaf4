"""zoo ``resnet50`` against torchvision's ``resnet50``: inference images/s on the same input, same run.

    python benchmarks/bench_resnet50.py                  # batch 4, 224 px, 5 timed rounds (a minute on 2 cores)
    python benchmarks/bench_resnet50.py --batch-size 32 --rounds 20 --compile

Both networks get the same weights (torchvision's random init, converted by the ``resnet50.tv_in1k``
importer) and the same batch. Candidates are timed in interleaved rounds, in a new random order
each round, so that a background process slowing the machine down slows every candidate alike;
each candidate's time is the median of its rounds. Printed ratios are images/s over torchvision's images/s:

* ``zoo net``: the plain ``nn.Module`` (goal: ≥ 1.0, the same convolutions in the same order);
* ``zoo task``: the LightningModule as users call it (input check + normalisation inside);
* ``zoo task, channels_last``: ``zoo.create("resnet50", channels_last=True)``, NHWC activations,
  which oneDNN (CPU) and cuDNN (GPU) convolutions prefer;
* ``zoo task, channels_last + fold_batchnorm``: ``task.fold_batchnorm()``, an inference-only copy with
  each BatchNorm folded into the convolution before it (one pass over the activations fewer per layer);
* ``torch.compile`` of the channels-last task (``--compile``; slow to compile on CPU), with inductor's
  ``freezing`` on: weights become constants, so inductor folds BatchNorm and pre-packs the weights.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import torch
import torchvision

import zoo
from zoo.registry import get_weights


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per candidate")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the channels-last task")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shuffler = random.Random(0)

    reference = torchvision.models.resnet50(weights=None).eval()
    state = get_weights("resnet50.tv_in1k").convert(reference.state_dict())
    task = zoo.create("resnet50").eval()
    task.load_net_state(state)
    task_nhwc = zoo.create("resnet50", channels_last=True).eval()
    task_nhwc.load_net_state(state)
    task_folded = task_nhwc.fold_batchnorm()

    pixels = torch.rand(args.batch_size, 3, args.image_size, args.image_size)  # [0, 1], what the task takes
    normalised = (pixels - task.mean) / task.std  # what the plain networks take
    candidates: dict[str, Callable[[], object]] = {
        "torchvision resnet50": lambda: reference(normalised),
        "zoo net": lambda: task.net(normalised),
        "zoo task": lambda: task(pixels),
        "zoo task, channels_last": lambda: task_nhwc(pixels),
        "zoo task, channels_last + fold_batchnorm": lambda: task_folded(pixels),
    }
    if args.compile:
        from torch._inductor import config as inductor_config

        inductor_config.freezing = True  # inference only: parameters become constants
        compiled = torch.compile(task_nhwc)
        candidates["zoo task, channels_last + torch.compile"] = lambda: compiled(pixels)

    with torch.inference_mode():
        expected = reference(normalised)
        for name, fn in candidates.items():
            if not torch.allclose(fn(), expected, atol=1e-3, rtol=1e-3):
                raise SystemExit(f"{name} does not reproduce torchvision's outputs")
        for _ in range(args.warmup):
            for fn in candidates.values():
                fn()
        times: dict[str, list[float]] = {name: [] for name in candidates}
        order = list(candidates)
        for _ in range(args.rounds):
            shuffler.shuffle(order)  # no candidate always runs first (after the others have warmed the caches)
            for name in order:
                times[name].append(_time(candidates[name]))

    base = args.batch_size / statistics.median(times["torchvision resnet50"])
    print(f"resnet50 inference, batch {args.batch_size} × 3×{args.image_size}×{args.image_size}, "
          f"{torch.get_num_threads()} threads, {args.rounds} rounds, torch {torch.__version__}")
    for name, samples in times.items():
        rate = args.batch_size / statistics.median(samples)
        print(f"  {name:<42} {rate:8.1f} images/s   ratio {rate / base:5.2f}")
    task_time = statistics.median(times["zoo task"])
    for name in [n for n in times if "channels_last" in n]:
        print(f"switch '{name.removeprefix('zoo task, ')}' over the zoo task: {task_time / statistics.median(times[name]):.2f}×")


if __name__ == "__main__":
    main()
