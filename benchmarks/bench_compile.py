"""``compile: true`` against eager for training: the lite networks' training step, same run.

    python benchmarks/bench_compile.py                     # every lite network, batch 128, 1 thread
    python benchmarks/bench_compile.py --models resnet20 vit_lite --steps 30

For each network: the compile time (the first compiled step, minus an eager step), then eager and
compiled steps timed in interleaved rounds (same weights, same batch, SGD), with the ratio of the
medians (eager time / compiled time: > 1 means compiling pays off) and the break-even: how many steps
the compile time takes to earn back.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import zoo

LITE = ["lenet5", "alexnet_lite", "vgg_lite", "resnet20", "efficientnet_lite", "vit_lite", "swin_lite"]


def step_fn(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> float:
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=LITE)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=15, help="timed steps per candidate")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"training step, batch {args.batch_size}, {args.threads} thread(s), torch {torch.__version__}")
    for name in args.models:
        torch.manual_seed(0)
        eager = zoo.create(name).train().net
        compiled = zoo.create(name).train().net
        compiled.load_state_dict(eager.state_dict())
        size = zoo.create(name).input_size
        x, y = torch.rand(args.batch_size, *size), torch.randint(0, 10, (args.batch_size,))
        run_eager, run_compiled = step_fn(eager, x, y), step_fn(compiled, x, y)
        run_eager()
        compiled.compile()
        first = run_compiled()
        times = {"eager": [], "compiled": []}
        for _ in range(args.steps):
            times["eager"].append(run_eager())
            times["compiled"].append(run_compiled())
        e, c = statistics.median(times["eager"]), statistics.median(times["compiled"])
        compile_s = first - c
        gain = e - c
        even = f"{compile_s / gain:,.0f} steps" if gain > 0 else "never"
        print(
            f"  {name:<18} eager {1000 * e:7.1f} ms  compiled {1000 * c:7.1f} ms  ratio {e / c:5.2f}×  "
            f"compile {compile_s:5.1f} s  break-even {even}"
        )


if __name__ == "__main__":
    main()
