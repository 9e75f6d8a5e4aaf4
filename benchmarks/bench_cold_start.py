"""Cold start to a first prediction, each in a fresh Python process (interpreter start included):
`import zoo; zoo.load("lenet5.fmnist")` vs `import timm; timm.create_model("resnet18")`.

Median of `--repeat` runs each, alternating. Goal: ratio zoo/timm ≤ 0.5.

    python benchmarks/bench_cold_start.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

ZOO = "import torch, zoo; m = zoo.load('lenet5.fmnist'); m.predict_proba(torch.rand(1, 1, 28, 28))"
TIMM = "import torch, timm; m = timm.create_model('resnet18').eval(); m(torch.rand(1, 3, 224, 224))"
IMPORT_ONLY = "import zoo"
TORCH_ONLY = "import torch; torch.rand(1)"  # the floor every PyTorch library pays


def seconds(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    seconds(ZOO), seconds(TIMM)  # warm the OS file cache for both
    zoo_runs, timm_runs, import_runs, torch_runs = [], [], [], []
    for _ in range(args.repeat):
        zoo_runs.append(seconds(ZOO))
        timm_runs.append(seconds(TIMM))
        import_runs.append(seconds(IMPORT_ONLY))
        torch_runs.append(seconds(TORCH_ONLY))
    zoo_s, timm_s = statistics.median(zoo_runs), statistics.median(timm_runs)
    torch_s = statistics.median(torch_runs)
    print(f"python -c 'import zoo' alone           : {statistics.median(import_runs):.2f} s")
    print(f"python -c 'import torch' alone         : {torch_s:.2f} s  (floor: ratio ≥ {torch_s / timm_s:.2f})")
    print(f"zoo.load('lenet5.fmnist') → prediction : {zoo_s:.2f} s")
    print(f"timm.create_model('resnet18') → pred.  : {timm_s:.2f} s")
    print(f"ratio zoo/timm                         : {zoo_s / timm_s:.2f}  (goal ≤ 0.5)")


if __name__ == "__main__":
    main()
