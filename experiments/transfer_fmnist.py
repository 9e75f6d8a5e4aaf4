"""The transfer experiment (docs/transfer.md): does starting from pretrained weights beat training from scratch?

Source: networks trained on Fashion-MNIST classes 0-4 only (T-shirt/top, trouser, pullover, dress, coat:
``lenet5_relu.fmnist_0to4``, ``resnet20.fmnist_0to4``, recipes ``recipes/*_fmnist_0to4.yaml``).
Target: classes 5-9 (sandal, shirt, sneaker, bag, ankle boot), which the source never saw, with N
training images per class (10, 25, 100) taken from the training split, 50 per class more for
validation (best epoch), and the 5,000 real test images of those classes to score. Methods, at the
same budget (epochs, AdamW, cosine): linear probe, full fine-tuning, full with layer-wise decay, and
the same network from random weights.

    python experiments/transfer_fmnist.py                      # the table's runs and the plot (3 seeds)
    python experiments/transfer_fmnist.py --per-class 25 --seeds 0 --archs lenet5_relu   # one cell

It writes ``docs/transfer.json`` (every run) and ``docs/transfer.png``, and prints the table;
``python tests/test_readme.py`` then rewrites the table of ``docs/transfer.md`` from the JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

import zoo
from zoo.data.fashion_mnist import load_split

TARGET = [5, 6, 7, 8, 9]
NAMES = ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
METHODS = ("linear_probe", "full", "layer_decay", "scratch")
SOURCES = {"lenet5_relu": "lenet5_relu.fmnist_0to4", "resnet20": "resnet20.fmnist_0to4"}
DOCS = Path(__file__).resolve().parents[1] / "docs"


def target_data(per_class: int, seed: int, val_per_class: int = 50):
    """(train images, labels), (val images, labels), (test images, labels) of classes 5-9, relabelled 0-4."""
    images, labels = load_split("train")
    test_images, test_labels = load_split("test")
    generator = torch.Generator().manual_seed(seed)
    train, val = [], []
    for cls in TARGET:
        members = (labels == cls).nonzero().flatten()
        order = members[torch.randperm(len(members), generator=generator)]
        train.append(order[:per_class])
        val.append(order[per_class : per_class + val_per_class])
    relabel = torch.full((10,), -1, dtype=torch.long)
    relabel[torch.tensor(TARGET)] = torch.arange(5)
    pick = lambda idx: (images[idx].unsqueeze(1), relabel[labels[idx]])  # noqa: E731
    keep = relabel[test_labels] >= 0
    test = test_images[keep].unsqueeze(1), relabel[test_labels[keep]]
    return pick(torch.cat(train)), pick(torch.cat(val)), test


@torch.inference_mode()
def accuracy(model, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    correct = sum(
        int((model(images[i : i + 500]).argmax(1) == labels[i : i + 500]).sum()) for i in range(0, len(labels), 500)
    )
    return correct / len(labels)


def run(arch: str, method: str, per_class: int, seed: int, epochs: int) -> dict:
    (train_x, train_y), val, test = target_data(per_class, seed)
    data = zoo.data.ImageFolderDataModule.from_tensors(train_x, train_y, classes=NAMES, val=val, batch_size=32)
    if method == "scratch":
        torch.manual_seed(seed)
        source, strategy = zoo.create(arch, num_classes=5, class_names=NAMES), "full"
    else:
        source, strategy = SOURCES[arch], method
    started = time.perf_counter()
    model = zoo.finetune(
        source, data, strategy=strategy, max_epochs=epochs, seed=seed, trainer={"enable_progress_bar": False}
    )
    return {
        "arch": arch,
        "method": method,
        "per_class": per_class,
        "seed": seed,
        "epochs": epochs,
        "test_acc": accuracy(model, *test),
        "val_acc": model.card_metrics["val_acc"],
        "seconds": round(time.perf_counter() - started, 1),
    }


def table(results: list[dict]) -> str:
    """Markdown: mean ± sd test accuracy per (architecture, images per class) and method."""
    lines = [
        "| source → target | images / class | " + " | ".join(METHODS) + " | best fine-tune − scratch |",
        "|---|---|" + "---|" * (len(METHODS) + 1),
    ]
    for arch in dict.fromkeys(r["arch"] for r in results):
        for n in sorted({r["per_class"] for r in results if r["arch"] == arch}):
            cells, means = [], {}
            for method in METHODS:
                accs = [r["test_acc"] for r in results if (r["arch"], r["per_class"], r["method"]) == (arch, n, method)]
                if not accs:
                    cells.append("–")
                    continue
                means[method] = statistics.mean(accs)
                sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
                cells.append(f"{100 * means[method]:.1f} ± {100 * sd:.1f}")
            tuned = max((v for k, v in means.items() if k != "scratch"), default=None)
            gap = f"{100 * (tuned - means['scratch']):+.1f}" if tuned is not None and "scratch" in means else "–"
            lines.append(f"| {SOURCES[arch]} | {n} | " + " | ".join(cells) + f" | {gap} |")
    seeds = len({r["seed"] for r in results})
    return (
        "\n".join(lines)
        + f"\n\nTest top-1 accuracy (%) on the 5,000 test images of classes 5-9, mean ± sd over {seeds} seed(s).\n"
    )


def figure(results: list[dict], path: Path) -> Path:
    from zoo.plots import new_figure, save

    archs = list(dict.fromkeys(r["arch"] for r in results))
    fig, axes = new_figure(5.2 * len(archs), 3.8, ncols=len(archs))
    axes = axes if len(archs) > 1 else [axes]
    for ax, arch in zip(axes, archs):
        for method, style in zip(METHODS, ("o--", "s-", "^-", "x:")):
            points = sorted({r["per_class"] for r in results if (r["arch"], r["method"]) == (arch, method)})
            means = [
                100
                * statistics.mean(
                    r["test_acc"] for r in results if (r["arch"], r["method"], r["per_class"]) == (arch, method, n)
                )
                for n in points
            ]
            ax.plot(points, means, style, label=method.replace("_", " "))
        ax.set_xscale("log")
        ax.set_xticks([10, 25, 100], ["10", "25", "100"])
        ax.set_xlabel("training images per class (classes 5-9)")
        ax.set_ylabel("test top-1 accuracy (%)")
        ax.set_title(f"{SOURCES[arch]} → sandal…ankle boot", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Pretrained on classes 0-4, fine-tuned on 5-9, vs the same network from scratch", fontsize=10)
    return save(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    parser.add_argument("--per-class", nargs="+", type=int, default=[10, 25, 100])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=DOCS)
    parser.add_argument("--append", action="store_true", help="add to the runs already in OUT/transfer.json")
    args = parser.parse_args(argv)
    results = []
    if args.append and (args.out / "transfer.json").is_file():
        results = [r for r in json.loads((args.out / "transfer.json").read_text()) if r["arch"] not in args.archs]
    for arch in args.archs:
        for n in args.per_class:
            for method in args.methods:
                for seed in args.seeds:
                    results.append(run(arch, method, n, seed, args.epochs))
                    print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "transfer.json").write_text(json.dumps(results, indent=1) + "\n")
    figure(results, args.out / "transfer.png")
    print(table(results))


if __name__ == "__main__":
    main()
