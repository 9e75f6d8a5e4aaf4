"""Which convolution kernel eager PyTorch picks on this CPU, and what the other path would give.

For each lite CNN in eval mode, at batch 1 and 64:

1. the kernels ``torch.profiler`` sees: ``aten::thnn_conv2d`` (PyTorch's own im2col + GEMM, the
   "slow" path) against ``aten::mkldnn_convolution`` (oneDNN). PyTorch chooses per call, in
   ``ConvParams::use_mkldnn`` (aten/src/ATen/native/Convolution.cpp): a float CPU input goes to oneDNN
   when the batch is > 1, or the kernel is larger than 3×3, or the convolution is grouped (depthwise),
   or the input holds more than 20,480 values; a 1×1 convolution at batch < 16 on one thread stays
   native. So at batch 1 the 3×3 convolutions of small 28×28 maps take the native path.
2. images/s of eager PyTorch (PyTorch's choice), of the same network with its inputs and weights
   BatchNorm-folded copy (``model.fold_batchnorm()``), and of that copy with its inputs and weights
   converted to oneDNN's own layout (``torch.utils.mkldnn.to_mkldnn``: every convolution then runs in
   oneDNN, whatever the batch), in interleaved rounds; each ratio is over eager in the same round, so
   "folded+oneDNN" over "BN folded" is what the kernel path alone changes.

    python benchmarks/bench_conv_path.py [--threads 1] [--rounds 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics

import torch
from bench_predict import images_per_second  # this folder is on sys.path when run as a script
from torch.profiler import ProfilerActivity, profile
from torch.utils import mkldnn as mkldnn_utils

import zoo

LITE = ["lenet5", "alexnet_lite", "vgg_lite", "resnet20", "efficientnet_lite"]


def kernels(net: torch.nn.Module, images: torch.Tensor) -> str:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        net(images)
    counts = {e.key: e.count for e in prof.key_averages()}
    native, onednn = counts.get("aten::thnn_conv2d", 0), counts.get("aten::mkldnn_convolution", 0)
    return f"{native} native / {onednn} oneDNN"


def onednn_runner(net: torch.nn.Module):
    """The network with weights in oneDNN's layout, or None where a layer has no oneDNN version."""
    try:
        converted = mkldnn_utils.to_mkldnn(copy.deepcopy(net))
        with torch.inference_mode():
            converted(torch.rand(1, 1, 28, 28).to_mkldnn())
    except (RuntimeError, NotImplementedError):
        return None
    return lambda x: converted(x.to_mkldnn()).to_dense()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.threads} thread(s); images/s, median of {args.rounds} interleaved rounds; ratio over eager")
    print(f"{'model':18s} {'batch':>5s}  {'eager kernels':22s} {'eager':>8s} {'BN folded':>10s} {'folded+oneDNN':>14s}")
    for name in LITE:
        model = zoo.create(name).eval()
        net, folded = model.net, model.fold_batchnorm().net
        onednn = onednn_runner(folded)
        for batch in (1, 64):
            images = torch.rand(batch, 1, 28, 28)
            rows: dict[str, list[float]] = {"eager": [], "onednn": [], "folded": []}
            with torch.inference_mode():
                path = kernels(net, images)
                for _ in range(args.rounds):
                    eager = images_per_second(net, images, 0.3)
                    rows["eager"].append(eager)
                    rows["folded"].append(images_per_second(folded, images, 0.3) / eager)
                    if onednn is not None:
                        rows["onednn"].append(images_per_second(onednn, images, 0.3) / eager)
            speed = statistics.median(rows["eager"])
            mk = f"{statistics.median(rows['onednn']):.2f}×" if rows["onednn"] else "n/a (layers)"
            print(f"{name:18s} {batch:5d}  {path:22s} {speed:8.0f} {statistics.median(rows['folded']):9.2f}× {mk:>14s}")


if __name__ == "__main__":
    main()
