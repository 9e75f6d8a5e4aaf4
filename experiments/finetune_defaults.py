"""Does ``zoo.finetune(weights, data)`` with no other argument match a tuned grid? (issue 36, item 1)

Datasets (small, real, built here; the training images are all the run gets, its validation split is
the default 20% of them; the score is top-1 on held-out test images the run never sees):

* ``fmnist10`` / ``fmnist25`` / ``fmnist100``: 10 / 25 / 100 images per class of Fashion-MNIST's *test*
  split (its first 5,000 images; the last 5,000 score), the classes renamed so the head is new;
* ``digits``: scikit-learn's 8×8 handwritten digits, resized to 28 px (×16 grey levels), 25 per class to
  train, the other ~1,550 to score.

Per model and dataset: the defaults (``lr="auto"``, step budget, early stopping) against a grid of
3 rates × 2 epoch budgets (AdamW, cosine, ``full``), seed 0. Results go to ``docs/finetune_defaults.json``
(one record per run, written as they finish) and the table to stdout.

    OMP_NUM_THREADS=1 python experiments/finetune_defaults.py --models lenet5.fmnist --datasets fmnist10 digits
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
import warnings
from pathlib import Path

import torch

import zoo

DOCS = Path(__file__).resolve().parents[1] / "docs"
RATES = (1e-3, 3e-3, 1e-2)
EPOCHS = (10, 30)
DATASETS = ("fmnist10", "fmnist25", "fmnist100", "digits")


def dataset(name: str):
    """((train images, labels), (test images, labels), class names): uint8 (N, 1, 28, 28)."""
    if name.startswith("fmnist"):
        from zoo.data.fashion_mnist import load_split

        per_class = int(name[len("fmnist") :])
        images, labels = load_split("test")
        pool, test = slice(0, 5000), slice(5000, 10000)
        picked = torch.cat([(labels[pool] == c).nonzero().flatten()[:per_class] for c in range(10)])
        train = images[pool][picked].unsqueeze(1), labels[pool][picked]
        return train, (images[test].unsqueeze(1), labels[test]), [f"garment{c}" for c in range(10)]
    if name == "digits":
        import torch.nn.functional as F
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) * (255 / 16)
        x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).round().clamp(0, 255).byte()
        y = torch.tensor(digits.target)
        picked = torch.cat([(y == c).nonzero().flatten()[:25] for c in range(10)])
        rest = torch.ones(len(y), dtype=torch.bool)
        rest[picked] = False
        return (x[picked], y[picked]), (x[rest], y[rest]), [f"digit{c}" for c in range(10)]
    raise ValueError(name)


@torch.inference_mode()
def accuracy(model, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    correct = sum(
        int((model(images[i : i + 500].float() / 255).argmax(1) == labels[i : i + 500]).sum())
        for i in range(0, len(labels), 500)
    )
    return correct / len(labels)


def run(model_name: str, data: str, lr, epochs) -> dict:
    train, test, names = dataset(data)
    started = time.perf_counter()
    printed = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(printed):
        warnings.simplefilter("ignore")
        model = zoo.finetune(model_name, train, max_epochs=epochs, lr=lr, classes=names, num_workers=0, seed=0)
    plan = model.card_metrics.get("finetune_plan", {})
    return {
        "model": model_name,
        "dataset": data,
        "train_images": len(train[1]),
        "test_images": len(test[1]),
        "lr": lr,
        "max_epochs": epochs,
        "chosen_lr": plan.get("lr"),
        "lowest_loss_lr": plan.get("lowest_loss_lr"),
        "chosen_epochs": plan.get("max_epochs"),
        "epochs_run": model.card_metrics.get("epochs"),
        "best_epoch": model.card_metrics.get("best_epoch"),
        "test_acc": accuracy(model, *test),
        "val_acc": model.card_metrics.get("val_acc"),
        "wall_s": round(time.perf_counter() - started, 1),
        "printed": printed.getvalue().strip(),
    }


def table(results: list[dict]) -> str:
    rows = [
        "| model | dataset | train images | defaults: lr, epochs run | defaults | grid best (lr, epochs) | "
        "defaults − grid best |",
        "|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["model"], r["dataset"]) for r in results}, key=lambda k: (k[0], DATASETS.index(k[1])))
    for model, data in keys:
        runs = [r for r in results if (r["model"], r["dataset"]) == (model, data)]
        default = next((r for r in runs if r["lr"] == "auto" and r["max_epochs"] is None), None)
        grid = [r for r in runs if r["lr"] != "auto"]
        if not default or not grid:
            continue
        best = max(grid, key=lambda r: r["test_acc"])
        rows.append(
            f"| {model} | {data} | {default['train_images']} | {default['chosen_lr']:.3g}, "
            f"{default['epochs_run']} of {default['chosen_epochs']} | {100 * default['test_acc']:.1f} | "
            f"{100 * best['test_acc']:.1f} ({best['lr']:g}, {best['max_epochs']}) | "
            f"{100 * (default['test_acc'] - best['test_acc']):+.1f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lenet5.fmnist", "resnet20.fmnist"])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--output", type=Path, default=DOCS / "finetune_defaults.json")
    parser.add_argument("--defaults-only", action="store_true", help="skip the grid (re-measure the defaults)")
    parser.add_argument("--table", action="store_true", help="print the table of --output and stop")
    args = parser.parse_args(argv)
    results = json.loads(args.output.read_text()) if args.output.exists() else []
    if args.table:
        print(table(results))
        return
    for model_name in args.models:
        for data in args.datasets:
            settings = [("auto", None)]
            if not args.defaults_only:
                settings += [(lr, epochs) for lr in RATES for epochs in EPOCHS]
            for lr, epochs in settings:
                record = run(model_name, data, lr, epochs)
                print(json.dumps({k: v for k, v in record.items() if k != "printed"}), flush=True)
                same = (model_name, data, lr, epochs)
                results = [r for r in results if (r["model"], r["dataset"], r["lr"], r["max_epochs"]) != same]
                results.append(record)
                if args.output.exists():  # another process may have added its runs meanwhile
                    theirs = json.loads(args.output.read_text())
                    mine = {(r["model"], r["dataset"], r["lr"], r["max_epochs"]) for r in results}
                    results += [r for r in theirs if (r["model"], r["dataset"], r["lr"], r["max_epochs"]) not in mine]
                args.output.write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
