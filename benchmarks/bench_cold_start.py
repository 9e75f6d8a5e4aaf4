"""Cold start to a first prediction, each in a fresh Python process (interpreter start included):
`import zoo; zoo.load("lenet5.fmnist")` vs `import timm; timm.create_model("resnet18")`.

Median of `--repeat` runs each, alternating. Goal: ratio zoo/timm ≤ 0.8; `zoo --help` and `zoo list` under 1.5 s.

    python benchmarks/bench_cold_start.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ZOO = "import torch, zoo; m = zoo.load('lenet5.fmnist'); m.predict_proba(torch.rand(1, 1, 28, 28))"
TIMM = "import torch, timm; m = timm.create_model('resnet18').eval(); m(torch.rand(1, 3, 224, 224))"
IMPORT_ONLY = "import zoo"
TORCH_ONLY = "import torch; torch.rand(1)"  # the floor every PyTorch library pays
# what a LightningModule costs before any zoo code runs: lightning.pytorch imports lightning.fabric,
# whose version checks import torchmetrics whole, which imports torchvision.models, whose
# torchvision.ops import torch._dynamo
LIGHTNING_ONLY = "import lightning.pytorch"
TORCHVISION_ONLY = "import torchvision"
CLI = {"zoo --help": ["--help"], "zoo list": ["list"]}


def seconds(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def cli_seconds(args: list[str]) -> float:
    start = time.perf_counter()
    script = Path(sys.executable).with_name("zoo")  # the console script beside this interpreter
    subprocess.run([str(script), *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    seconds(ZOO), seconds(TIMM)  # warm the OS file cache for both
    runs: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        for label, code in (
            ("zoo", ZOO),
            ("timm", TIMM),
            ("import zoo", IMPORT_ONLY),
            ("torch", TORCH_ONLY),
            ("lightning", LIGHTNING_ONLY),
            ("torchvision", TORCHVISION_ONLY),
        ):
            runs.setdefault(label, []).append(seconds(code))
        for label, argv in CLI.items():
            runs.setdefault(label, []).append(cli_seconds(argv))
    median = {label: statistics.median(values) for label, values in runs.items()}
    timm_s = median["timm"]
    print(f"python -c 'import zoo' alone           : {median['import zoo']:.2f} s")
    print(f"python -c 'import torch' alone         : {median['torch']:.2f} s  (ratio {median['torch'] / timm_s:.2f})")
    print(
        f"python -c 'import torchvision' alone   : {median['torchvision']:.2f} s  (ratio {median['torchvision'] / timm_s:.2f})"
    )
    print(
        f"python -c 'import lightning.pytorch'   : {median['lightning']:.2f} s  "
        f"(ratio {median['lightning'] / timm_s:.2f}: the floor of any LightningModule)"
    )
    for label in CLI:
        print(f"{label:39s}: {median[label]:.2f} s  (goal < 1.5 s)")
    print(f"zoo.load('lenet5.fmnist') → prediction : {median['zoo']:.2f} s")
    print(f"timm.create_model('resnet18') → pred.  : {timm_s:.2f} s")
    print(f"ratio zoo/timm                         : {median['zoo'] / timm_s:.2f}  (goal ≤ 0.8)")


if __name__ == "__main__":
    main()
