"""zoo ``vit_b_16`` against torchvision's ``vit_b_16``: inference images/s on the same input, same run.

    python benchmarks/bench_vit.py                 # batch 4 at 224 px, 7 timed rounds (2 min on 2 cores)
    python benchmarks/bench_vit.py --batch-size 1 8 --rounds 11

Both get the same weights (torchvision's random init, converted by the ``vit_b_16.tv_in1k`` importer;
the outputs are checked to agree first). torchvision's encoder runs ``nn.MultiheadAttention``; the
zoo's writes the attention out (one ``qkv`` projection, heads, ``scaled_dot_product_attention``) for
students to read: this shows what that costs, if anything (goal ≥ 1.0×). Rounds are interleaved in a
random order and ratios taken within each round, as in ``bench_resnet50.py`` (whose helpers are used),
with a second torchvision copy as the A/A yardstick.
"""

from __future__ import annotations

import argparse
import random

import torch
import torchvision
from bench_resnet50 import Model, run_batch

import zoo
from zoo.pretrained import convert_state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[4], help="one timed block per batch size")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per candidate")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    reference = torchvision.models.vit_b_16(weights=None).eval()
    torch.nn.init.normal_(reference.heads.head.weight, std=0.02)  # torchvision starts the head at 0
    twin = torchvision.models.vit_b_16(weights=None).eval()
    twin.load_state_dict(reference.state_dict())
    task = zoo.create("vit_b_16").eval()
    task.load_net_state(convert_state("vit_b_16.tv_in1k", reference.state_dict()))
    nets: dict[str, Model] = {
        "torchvision vit_b_16": reference,
        "torchvision vit_b_16, second copy (A/A)": twin,
        "zoo net": task.net,
    }
    tasks: dict[str, Model] = {"zoo task": task}
    for batch in args.batch_size:
        pixels = torch.rand(batch, 3, args.image_size, args.image_size)
        run_batch(
            nets,
            tasks,
            pixels,
            (pixels - task.mean) / task.std,
            args,
            random.Random(0),
            reference_name="torchvision vit_b_16",
        )


if __name__ == "__main__":
    main()
