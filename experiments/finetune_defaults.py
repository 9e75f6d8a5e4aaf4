"""Does ``zoo.finetune(weights, data)`` with no other argument match a tuned grid, and beat training from
scratch? (issue 36, item 1)

Datasets (small, real, built here; the training images are all the run gets, its validation split is
the default 20% of them; the score is top-1 on held-out test images the run never sees). The *tuning*
sets are the ones the rule's divisor (``LR_DIVISOR``) was chosen on:

* ``fmnist10`` / ``fmnist25`` / ``fmnist100``: 10 / 25 / 100 images per class of Fashion-MNIST's *test*
  split (its first 5,000 images; the last 5,000 score), the classes renamed so the head is new;
* ``digits``: scikit-learn's 8×8 handwritten digits, resized to 28 px (×16 grey levels), 25 per class to
  train, the other ~1,550 to score.

The *held-out* sets were not looked at when the divisor was chosen:

* ``digits10``: the same digits at another size, 10 per class drawn at random (seed 1), the rest score;
* ``fmnist5to9``: 25 per class of Fashion-MNIST's *training* split, classes 5-9 only (seed 7), fine-tuned
  from the weights trained on classes 0-4 (``*.fmnist_0to4``, which never saw these classes; the
  transfer experiment's task), scored on the 5,000 test images of those classes;
* ``fmnistinv10``: 10 per class of the training split (seed 3), inverted (255 − x) and turned 90°, scored on
  the last 5,000 test images turned alike: the garments the sources know, in a look they never saw.

The head's rule (``head_init="auto"``) was first a threshold on the imprinted start's LR range test, chosen on
the seven sets above; four more were built after it to check it (``finetune_datasets``): ``fmnist50b``,
``fmnist0to4own10`` (from the ``*_0to4`` weights, on their own classes), ``fmnistnoise25`` (σ = 0.15 noise)
and ``digitsinv25`` (inverted digits). The step budget's cap then went from 100 epochs to 200 (a set of 80
training images got 300 of its 600 steps, and on ``fmnistinv10`` the grid gained with every longer run), and
three sets were built after that to check it and the head's rule: ``fmnistcoarse24`` (the sources' garments
merged into four classes), ``fmnistblur25`` (blurred) and ``fmnistrot10`` (turned 90°). A second head rule, a
threshold on the features' class separation (Fisher's between / within ratio, which unlike the range test does
not move with the seed), was chosen on the eleven sets before them and withdrawn after them: on
``fmnistcoarse24`` it drew the head for both models where imprinting gained 3.2 and 6.7 points (a merged class
spreads wide about its mean and still imprints well), while the range test's rule imprints both; its runs are
kept apart (``docs/finetune_defaults_withdrawn_head_rule.json``). Deciding on the median of several range tests
was probed next (``experiments/finetune_head_draws.py``) and not adopted; two sets were built after that probe,
with the rules unchanged: ``fmnistsmall15`` (shrunk into a corner) and ``fmnisttops20`` (the four tops, the
sources' own classes they confuse most). The grid runs take the head as the defaults do; the ``random`` and
``imprint`` variants always draw / always imprint it (``head_table``). Probes of one rule each then ran
(``PROBES``: ``--variant NAME --what defaults --output docs/finetune_probes.json``, the rule patched for their
runs): twice the step budget (``budget1200``, every pair at seeds 1-3; not adopted) and the validation loss
as the best epoch's measure (``val_loss_monitor``), adopted for a kept imprinted head: the defaults runs whose
head was imprinted are that probe's runs (``measured_as``; the probe's patch is the rule's code path, and a
test runs one again with the rule), and the previous rule's runs with ``lr="auto"``, the head's variants
with them, are kept in ``docs/finetune_defaults_accuracy_rule.json`` (the head table reads them). A moving average
of the weights (``ema``, every pair at seeds 1-3) was adopted for classifiers next: the defaults runs are that
probe's runs, the loss rule's before it are in ``docs/finetune_defaults_unaveraged.json``, and two sets were
built after it to check it (``AVERAGE_HELD_OUT``: ``fmnistdim20``, dimmed, and ``fmnistzoom25``, zoomed in),
their defaults run with the rules themselves.

Per model and dataset: the defaults (``lr="auto"``, step budget, early stopping, ``head_init="auto"``) against a
grid of rates × epoch budgets (AdamW, cosine, ``full``), and the same architecture from random weights (``zoo.create``)
over its own grid (``SCRATCH_RATES`` × ``SCRATCH_EPOCHS``; best validation weights kept as always), seed 0.
The grids' best is the best *test* score (an oracle: generous to the grid and to scratch). Results go to
``docs/finetune_defaults.json`` (one record per run, written as each finishes; ``--resume`` skips those
done) and the table to stdout. The margins to beat scratch by are the transfer table's
(``docs/transfer.json``: best fine-tuning mean − scratch mean at the same images per class; LeNet-5 takes
``lenet5_relu``'s).

    OMP_NUM_THREADS=1 python experiments/finetune_defaults.py --models lenet5.fmnist --datasets fmnist10 digits
    OMP_NUM_THREADS=1 python experiments/finetune_defaults.py --what scratch --resume   # scratch grids only
    OMP_NUM_THREADS=1 python experiments/finetune_defaults.py --what defaults best --seeds 2 3 --resume

The last line runs the defaults and each pair's best grid setting at two more seeds (the range test, the new
head and the batches change with the seed): one run each is one draw, and the grid's best is the luckiest of
ten (LeNet-5: fifteen) draws. A second table gives both at every seed, and their means.

Runs from the weights are at seeds 1, 2, 3, never 0: the weights were trained at seed 0, and ``zoo.finetune``
builds the network (new head included) from the run's seed before loading them, so at seed 0 the new head
starts as the pretraining's own first head, which the trained layers grew aligned with. On the sets whose
classes are the sources' own in the same order, that head already knows them: LeNet-5 scores 87.9% on
``fmnist10`` at seed 0 after one epoch at lr 1e-12, and 7.6% and 2.9% at seeds 1 and 2; on other classes it
starts systematically wrong. Runs from random weights (scratch) learn nothing from it and stay at seed 0.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import statistics
import time
import warnings
from pathlib import Path

import torch
from finetune_datasets import (
    AVERAGE_HELD_OUT,
    CAP_HELD_OUT,
    DATASETS,
    HEAD_HELD_OUT,
    HELD_OUT,
    MEDIAN_HELD_OUT,
    PER_CLASS,
    TUNING,
    dataset,
    weights_for,
)
from finetune_probes import PROBES, probe

import zoo

DOCS = Path(__file__).resolve().parents[1] / "docs"
RATES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)  # 3e-4, then 1e-4: the best rate sat at the low edge of the grid before
EPOCHS = (10, 30)
SCRATCH_RATES = (1e-3, 3e-3, 1e-2)
SCRATCH_EPOCHS = (30, 100)
# probes kept apart from the table: LP-FT (Kumar et al. 2022), the head first, then all layers at one rate; imprint
LPFT_EPOCHS = 10
SEED = 1  # the tables' seed for runs from the weights (2 and 3 repeat them); never 0 (module doc)
VARIANTS = {"lpft": {"strategy": "freeze_unfreeze", "unfreeze_epoch": LPFT_EPOCHS, "backbone_lr_factor": 1.0}}
# the new head always starts as the nearest class mean / as drawn (the defaults' "auto" chooses: zoo.finetune_defaults)
VARIANTS.update({"imprint": {"head_init": "imprint"}, "random": {"head_init": "random"}})
MARGIN_ARCH = {"lenet5": "lenet5_relu", "lenet5_relu": "lenet5_relu", "resnet20": "resnet20"}


@torch.inference_mode()
def accuracy(model, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    correct = sum(
        int((model(images[i : i + 500].float() / 255).argmax(1) == labels[i : i + 500]).sum())
        for i in range(0, len(labels), 500)
    )
    return correct / len(labels)


def run(
    model_name: str, data: str, lr, epochs, init: str = "pretrained", variant: str | None = None, seed: int = SEED
) -> dict:
    """One ``zoo.finetune`` run: from ``model_name``'s weights, or (``init="scratch"``) its architecture;
    ``variant="lpft"``: the head alone for ``LPFT_EPOCHS`` epochs, then everything at the same rate (a probe);
    ``seed``: the run's seed (the new head, the batches' order and augmentation, the range test's batches)."""
    if init == "pretrained" and seed == 0:
        raise ValueError("runs from the weights are at seeds >= 1: the weights were trained at seed 0 (module doc)")
    train, test, names = dataset(data)
    weights = weights_for(model_name, data)
    started = time.perf_counter()
    printed = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(printed):
        warnings.simplefilter("ignore")
        if init == "scratch":
            torch.manual_seed(seed)
            source = zoo.create(weights.split(".")[0], num_classes=len(names), class_names=names)
        else:
            source = weights
        extra = VARIANTS.get(variant, {}) if variant else {}
        with probe(variant):
            model = zoo.finetune(
                source, train, max_epochs=epochs, lr=lr, classes=names, num_workers=0, seed=seed, **extra
            )
    plan = model.card_metrics.get("finetune_plan", {})
    return {
        "model": weights,
        "dataset": data,
        "init": init,
        **({"variant": variant} if variant else {}),
        "seed": seed,
        "train_images": len(train[1]),
        "val_images": model.card_metrics.get("val_samples"),
        "test_images": len(test[1]),
        "lr": lr,
        "max_epochs": epochs,
        "head_init": plan.get("head_init", "kept"),
        **({"best_epoch_by": plan["best_epoch_by"]} if "best_epoch_by" in plan else {}),
        **({"weights_averaged": plan["weights_averaged"]} if "weights_averaged" in plan else {}),
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


def key(record: dict) -> tuple:
    init = record.get("init", "pretrained")
    seed = record.get("seed", 0)
    return record["model"], record["dataset"], init, record["lr"], record["max_epochs"], record.get("variant"), seed


def margins(transfer: list[dict]) -> dict[tuple[str, int], float]:
    """(architecture, images per class) → the transfer table's margin: best fine-tuning mean − scratch mean."""
    means: dict[tuple[str, int], dict[str, float]] = {}
    for arch, n, method in {(r["arch"], r["per_class"], r["method"]) for r in transfer}:
        accs = [r["test_acc"] for r in transfer if (r["arch"], r["per_class"], r["method"]) == (arch, n, method)]
        means.setdefault((arch, n), {})[method] = statistics.mean(accs)
    return {
        cell: max(v for k, v in by.items() if k != "scratch") - by["scratch"]
        for cell, by in means.items()
        if "scratch" in by and len(by) > 1
    }


def summary(results: list[dict], transfer: list[dict] | None = None) -> list[dict]:
    """Per (model, dataset) with a defaults run: the defaults, the grid's best, scratch's best, the margin."""
    if transfer is None:
        path = DOCS / "transfer.json"
        transfer = json.loads(path.read_text()) if path.exists() else []
    margin = margins(transfer)
    rows = []
    for model, data in sorted(
        {(r["model"], r["dataset"]) for r in results}, key=lambda k: (k[0], DATASETS.index(k[1]))
    ):
        mine = [r for r in results if (r["model"], r["dataset"]) == (model, data) and not r.get("variant")]
        default = next((r for r in mine if key(r)[2:] == ("pretrained", "auto", None, None, SEED)), None)
        if not default:
            continue
        grid = [r for r in mine if key(r)[2] == "pretrained" and r["lr"] != "auto" and key(r)[-1] == SEED]
        scratch = [r for r in mine if r.get("init") == "scratch"]
        row = {"model": model, "dataset": data, "group": _group(data), "defaults": default}
        row["grid_best"] = max(grid, key=lambda r: r["test_acc"]) if grid else None
        row["scratch_best"] = max(scratch, key=lambda r: r["test_acc"]) if scratch else None
        row["margin"] = margin.get((MARGIN_ARCH.get(model.split(".")[0], ""), PER_CLASS[data]))
        row["seeds"] = repeats(mine, row["grid_best"])
        rows.append(row)
    return rows


GROUPS = {
    "tuning": "Sets the divisor was chosen on",
    "held_out": "Sets held out from the divisor (the head's threshold was chosen on these and the sets above)",
    "head_held_out": "Sets built after the divisor and the head's threshold, to check them",
    "cap_held_out": "Sets built after the 200-epoch cap, to check it and the head's rule",
    "median_held_out": "Sets built after the repeated range tests were probed (the rules unchanged), to check them again",
    "average_held_out": "Sets built after the weight average was adopted, to check it",
}


def _group(data: str) -> str:
    """The key of :data:`GROUPS` whose sets ``data`` is one of."""
    sets = (TUNING, HELD_OUT, HEAD_HELD_OUT, CAP_HELD_OUT, MEDIAN_HELD_OUT, AVERAGE_HELD_OUT)
    return next(group for group, members in zip(GROUPS, sets) if data in members)


def repeats(runs: list[dict], grid_best: dict | None) -> dict[str, list[dict]] | None:
    """The defaults and the grid's best setting (picked on ``SEED``'s test score) at every seed both were run at:
    ``{"seeds": [...], "defaults": [runs], "grid_best": [runs]}``, or None when only ``SEED`` was."""
    if not grid_best:
        return None
    defaults = {key(r)[-1]: r for r in runs if key(r)[2:5] == ("pretrained", "auto", None)}
    setting = ("pretrained", grid_best["lr"], grid_best["max_epochs"])
    grid = {key(r)[-1]: r for r in runs if key(r)[2:5] == setting}
    seeds = sorted(set(defaults) & set(grid))
    if len(seeds) < 2:
        return None
    return {"seeds": seeds, "defaults": [defaults[k] for k in seeds], "grid_best": [grid[k] for k in seeds]}


def seeds_table(results: list[dict]) -> str:
    """Per pair run at several seeds: the defaults and the grid's best setting at each seed, and their means."""
    head = (
        "| model | dataset | seeds | defaults, each seed | defaults, mean | grid's best setting (lr, epochs), "
        "each seed | its mean | defaults − grid, mean |"
    )
    out = [head, "|---" * 8 + "|"]
    for s in summary(results):
        found = s["seeds"]
        if not found:
            continue
        mine, grid = ([r["test_acc"] for r in found[k]] for k in ("defaults", "grid_best"))
        cells = [
            s["model"],
            s["dataset"],
            ", ".join(map(str, found["seeds"])),
            " / ".join(f"{100 * a:.1f}" for a in mine),
            f"{100 * statistics.mean(mine):.1f}",
            " / ".join(f"{100 * a:.1f}" for a in grid) + f" ({s['grid_best']['lr']:g}, {s['grid_best']['max_epochs']})",
            f"{100 * statistics.mean(grid):.1f}",
            f"{100 * (statistics.mean(mine) - statistics.mean(grid)):+.1f}",
        ]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) if len(out) > 2 else ""


def table(results: list[dict]) -> str:
    head = (
        "| model | dataset | images given | defaults: lr, epochs run | defaults | grid best (lr, epochs) | "
        "defaults − grid best | scratch best (lr, epochs) | defaults − scratch | transfer margin | margin met |"
    )
    out = []
    for group, title in GROUPS.items():
        rows = [s for s in summary(results) if s["group"] == group]
        if not rows:
            continue
        out += ["" if out else None, f"{title}:", "", head, "|---" * 11 + "|"]
        for s in rows:
            d, g, b, m = s["defaults"], s["grid_best"], s["scratch_best"], s["margin"]
            cells = [
                s["model"],
                s["dataset"],
                str(d["train_images"]),
                f"{d['chosen_lr']:.3g}, {d['epochs_run']} of {d['chosen_epochs']}",
                f"{100 * d['test_acc']:.1f}",
                f"{100 * g['test_acc']:.1f} ({g['lr']:g}, {g['max_epochs']})" if g else "–",
                f"{100 * (d['test_acc'] - g['test_acc']):+.1f}" if g else "–",
                f"{100 * b['test_acc']:.1f} ({b['lr']:g}, {b['max_epochs']})" if b else "–",
                f"{100 * (d['test_acc'] - b['test_acc']):+.1f}" if b else "–",
                f"+{100 * m:.1f}" if m is not None else "–",
                ("yes" if d["test_acc"] - b["test_acc"] >= m else "**no**") if b and m is not None else "–",
            ]
            out.append("| " + " | ".join(cells) + " |")
    repeated = seeds_table(results)
    if repeated:
        out += ["", "The same pairs at three seeds (the grid's best setting picked on seed 1, as above):", "", repeated]
    return "\n".join(line for line in out if line is not None)


def head_lowest(record: dict) -> float | None:
    """The imprinted start's range-test minimum that ``head_init="auto"`` decided on, from what the run printed."""
    import re

    found = re.search(r"the imprinted start's LR range test: lowest at ([0-9.e+-]+)", record.get("printed", ""))
    return float(found.group(1)) if found else None


def head_table(results: list[dict]) -> str:
    """Per pair at seed ``SEED``: where the imprinted start's range test bottomed out, what the defaults
    (``head_init="auto"``) chose, and the defaults' score against the same run with the head always drawn
    (``random`` variant) and always imprinted (``imprint`` variant)."""
    rows = [
        "| model | dataset | imprinted start: lowest-loss rate | auto chose | defaults (auto) | always drawn | "
        "always imprinted |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in summary(results):
        pair, auto = (s["model"], s["dataset"]), s["defaults"]
        found = {
            r.get("variant"): r
            for r in results
            if (r["model"], r["dataset"]) == pair and key(r)[3:5] == ("auto", None) and r["seed"] == SEED
        }
        lowest = head_lowest(auto)
        cells = [*pair, f"{lowest:.3g}" if lowest is not None else "–", auto["head_init"]]
        cells += [f"{100 * r['test_acc']:.1f}" if r else "–" for r in (auto, found.get("random"), found.get("imprint"))]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def settings(what: list[str], rates, epochs, scratch_rates, scratch_epochs, best: dict | None = None) -> list[tuple]:
    """(init, lr, max_epochs) of the runs asked for; ``best``: the pair's best grid run at ``SEED`` (``"best"``)."""
    runs = [("pretrained", "auto", None)] if "defaults" in what else []
    runs += [("pretrained", best["lr"], best["max_epochs"])] if "best" in what and best else []
    runs += [("pretrained", lr, e or None) for lr in rates for e in epochs] if "grid" in what else []
    runs += [("scratch", lr, e) for lr in scratch_rates for e in scratch_epochs] if "scratch" in what else []
    return runs


def save(path: Path, results: list[dict], record: dict) -> list[dict]:
    """Add ``record`` (replacing its key's) to what is on disk now, and return that: another process may have
    added or measured again other runs, and the disk's version of those wins over ``results``, this process's
    copy (the read and the write hold a lock, so two processes measuring at once lose nothing)."""
    import fcntl
    import tempfile

    with open(Path(tempfile.gettempdir()) / f"{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        on_disk = json.loads(path.read_text()) if path.exists() else []
        merged = [r for r in on_disk if key(r) != key(record)] + [record]
        known = {key(r) for r in merged}
        merged += [r for r in results if key(r) not in known]  # this process's runs the disk lacks
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(merged, indent=1) + "\n")
        partial.replace(path)  # a run stopped while writing leaves the file whole
    return merged


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lenet5.fmnist", "resnet20.fmnist"])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--output", type=Path, default=DOCS / "finetune_defaults.json")
    parser.add_argument(
        "--what",
        nargs="+",
        default=["defaults", "grid", "scratch"],
        choices=["defaults", "grid", "scratch", "best"],
        help="best: the grid's best setting of the pair, picked on its seed-1 runs (for --seeds)",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[SEED], help="run each setting at these seeds")
    parser.add_argument("--rates", nargs="+", type=float, default=list(RATES))
    parser.add_argument("--epochs", nargs="+", type=int, default=list(EPOCHS))
    parser.add_argument("--scratch-rates", nargs="+", type=float, default=list(SCRATCH_RATES))
    parser.add_argument("--scratch-epochs", nargs="+", type=int, default=list(SCRATCH_EPOCHS))
    parser.add_argument("--resume", action="store_true", help="skip the runs already in --output")
    parser.add_argument(
        "--variant", choices=sorted({*VARIANTS, *PROBES}), help="grid runs of a variant (kept out of the table)"
    )
    parser.add_argument("--fresh", action="store_true", help="measure again even what --resume would skip")
    parser.add_argument("--table", action="store_true", help="print the table of --output and stop")
    args = parser.parse_args(argv)
    results = json.loads(args.output.read_text()) if args.output.exists() else []
    if args.table:
        print(table(results))
        return
    for model_name in args.models:
        for data in args.datasets:
            pair = (weights_for(model_name, data), data)
            best = next((s["grid_best"] for s in summary(results) if (s["model"], s["dataset"]) == pair), None)
            chosen = settings(args.what, args.rates, args.epochs, args.scratch_rates, args.scratch_epochs, best)
            # scratch is seed 0 whatever --seeds says (module doc): once, not once per seed
            runs = dict.fromkeys(
                (init, lr, epochs, 0 if init == "scratch" else seed)
                for (init, lr, epochs), seed in itertools.product(chosen, args.seeds)
            )
            for init, lr, epochs, seed in runs:
                wanted = (*pair, init, lr, epochs, args.variant, seed)
                if args.resume and not args.fresh and wanted in {key(r) for r in results}:
                    continue
                record = run(model_name, data, lr, epochs, init, args.variant, seed)
                print(json.dumps({k: v for k, v in record.items() if k != "printed"}), flush=True)
                results = save(args.output, results, record)
    print(table(results))


if __name__ == "__main__":
    main()
