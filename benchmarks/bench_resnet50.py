"""zoo ``resnet50`` against torchvision's ``resnet50``: inference images/s on the same input, same run.

    python benchmarks/bench_resnet50.py                  # batches of 4 and 16, 224 px, 5 timed rounds (3 min on 2 cores)
    python benchmarks/bench_resnet50.py --batch-size 16 --rounds 15 --compile

Both networks get the same weights (torchvision's random init, converted by the ``resnet50.tv_in1k``
importer) and the same batch. Candidates are timed in interleaved rounds, in a new random order
each round, so that a background process slowing the machine down slows every candidate alike.
A ratio is taken within each round (reference time / candidate time) and the median over rounds is
printed: this machine's speed drifts by ±20% from one minute to the next, which the per-candidate
medians of earlier versions of this script mistook for differences between the candidates. Ratios
are over torchvision's images/s:

* ``zoo net``: the plain ``nn.Module`` (goal: ≥ 1.0, the same convolutions in the same order);
* ``zoo task``: the LightningModule as users call it (input check + normalisation inside);
* ``zoo task, channels_last``: ``zoo.create("resnet50", channels_last=True)``, NHWC activations,
  which oneDNN (CPU) and cuDNN (GPU) convolutions prefer;
* ``zoo task, channels_last + fold_batchnorm``: ``task.fold_batchnorm()``, an inference-only copy with
  each BatchNorm folded into the convolution before it (one pass over the activations fewer per layer);
* ``task.fold_batchnorm(compile=True)`` (``--compile``; 10–20 s to compile on a CPU): the folded copy
  through ``torch.compile`` with inductor's ``freezing``, so weights become constants that inductor
  pre-packs for oneDNN and fuses with the ops around them.

Each batch size gets its own block: on a CPU, NCHW throughput falls as the batch grows (its
activations outgrow the caches) while channels_last's holds, so the switch's gain depends on the batch.

A second torchvision ``resnet50`` with the same weights is timed too: its ratio (an A/A test) shows how
far from 1.0 two identical networks land on this machine, the yardstick for ``zoo net``'s ratio.
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
from zoo.pretrained import convert_state


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired(times: dict[str, list[float]], name: str, reference: str) -> tuple[float, float, float]:
    """Median and quartiles over rounds of the speed-up of ``name`` over ``reference`` in the same round."""
    ratios = sorted(r / t for r, t in zip(times[reference], times[name]))
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return statistics.median(ratios), quartiles[0], quartiles[-1]


Model = Callable[[torch.Tensor], torch.Tensor]


def run_batch(
    nets: dict[str, Model],
    tasks: dict[str, Model],
    pixels: torch.Tensor,
    normalised: torch.Tensor,
    args: argparse.Namespace,
    shuffler: random.Random,
    reference_name: str = "torchvision resnet50",
) -> None:
    """Check that every candidate reproduces torchvision, time them in interleaved rounds, print the ratios.

    ``nets`` (plain networks) take the normalised batch, ``tasks`` the [0, 1] pixels.
    """
    candidates = {name: (lambda model=model: model(normalised)) for name, model in nets.items()}
    candidates |= {name: (lambda model=model: model(pixels)) for name, model in tasks.items()}
    with torch.inference_mode():
        expected = candidates[reference_name]()
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

    batch = pixels.shape[0]
    print(
        f"{reference_name.split()[-1]} inference, batch {batch} × 3×{args.image_size}×{args.image_size}, "
        f"{torch.get_num_threads()} threads, {args.rounds} rounds, torch {torch.__version__}"
    )
    for name, samples in times.items():
        rate = batch / statistics.median(samples)
        ratio, low, high = paired(times, name, reference_name)
        print(f"  {name:<56} {rate:8.1f} images/s   ratio {ratio:5.2f} (quartiles {low:.2f}–{high:.2f})")
    for name in [n for n in times if "channels_last" in n]:
        ratio, low, high = paired(times, name, "zoo task")
        print(
            f"switch '{name.removeprefix('zoo task, ')}' over the zoo task: {ratio:.2f}× (quartiles {low:.2f}–{high:.2f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[4, 16], help="one timed block per batch size")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per candidate")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument(
        "--compile", action="store_true", help="also time fold_batchnorm(compile=True) of the channels-last task"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shuffler = random.Random(0)

    reference = torchvision.models.resnet50(weights=None).eval()
    twin = torchvision.models.resnet50(weights=None).eval()
    twin.load_state_dict(reference.state_dict())
    state = convert_state("resnet50.tv2_in1k", reference.state_dict())
    task = zoo.create("resnet50").eval()
    task.load_net_state(state)
    task_nhwc = zoo.create("resnet50", channels_last=True).eval()
    task_nhwc.load_net_state(state)
    nets: dict[str, Model] = {
        "torchvision resnet50": reference,
        "torchvision resnet50, second copy (A/A)": twin,
        "zoo net": task.net,
    }
    tasks: dict[str, Model] = {
        "zoo task": task,
        "zoo task, channels_last": task_nhwc,
        "zoo task, channels_last + fold_batchnorm": task_nhwc.fold_batchnorm(),
    }
    if args.compile:  # compiled once; a new batch size recompiles on its first (checking) call
        tasks["zoo task, channels_last + fold_batchnorm(compile=True)"] = task_nhwc.fold_batchnorm(compile=True)

    for batch in args.batch_size:
        pixels = torch.rand(batch, 3, args.image_size, args.image_size)  # [0, 1], what the task takes
        run_batch(nets, tasks, pixels, (pixels - task.mean) / task.std, args, shuffler)


if __name__ == "__main__":
    main()
