"""``zoo plot RUN_DIR [RUN_DIR ...] [-o curves.png]``: the curves a training run logged.

Train/val loss, accuracy and learning rate from the runs' CSV logs (``runs/zoo/<version>/metrics.csv``,
Lightning's ``CSVLogger``), placed on a fractional-epoch axis, one colour per run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.cli.args import ArgumentParser
from zoo.destinations import IMAGE_SUFFIXES, check_output_file
from zoo.errors import ZooError
from zoo.sources import check_metrics_csv


def cmd_plot(argv: list[str]) -> None:
    parser = ArgumentParser(prog="zoo plot", description="Draw train/val curves from runs' CSV logs into a PNG.")
    parser.add_argument(
        "runs",
        nargs="+",
        help="run folders (runs/zoo/<version>) or their metrics.csv; a folder of runs means its newest",
    )
    parser.add_argument("-o", "--output", default="curves.png", help="image to write (.png, .pdf, .svg, .jpg)")
    parser.add_argument(
        "--labels", nargs="+", help="one legend label per run (default: model and init from hparams.yaml)"
    )
    parser.add_argument("--title", help="figure title")
    args = parser.parse_args(argv)
    if args.labels and len(args.labels) != len(args.runs):
        raise ZooError(f"--labels got {len(args.labels)} labels for {len(args.runs)} runs; give one per run")
    check_output_file(args.output, suffixes=IMAGE_SUFFIXES)
    from zoo import plots

    runs = [read_metrics(find_metrics(run)) for run in args.runs]
    for index, run in enumerate(runs):
        if args.labels:
            run["label"] = args.labels[index]
    single = f"Training curves: {runs[0]['label']} ({runs[0]['path'].parent.name})"
    title = args.title or (single if len(runs) == 1 else "Training curves")
    plots.save(plots.curves_figure(runs, title), args.output)
    from rich.console import Console

    console = Console()
    for run in runs:
        if run["val_loss"]:
            best = min(range(len(run["val_loss"][1])), key=run["val_loss"][1].__getitem__)
            acc = (
                f", val acc {100 * run['val_acc'][1][best]:.2f}%"
                if run["val_acc"] and best < len(run["val_acc"][1])
                else ""
            )
            console.print(
                f"{run['label']}: best val loss {run['val_loss'][1][best]:.4f} at epoch {run['val_loss'][0][best]:g}{acc}"
            )
    console.print(f"wrote {args.output}")


def find_metrics(path: str | Path) -> Path:
    """``metrics.csv`` of a run folder, a folder of runs (its newest), or the file itself."""
    path = Path(path)
    if path.is_file():
        return path
    if (path / "metrics.csv").is_file():
        return path / "metrics.csv"
    found = sorted(path.glob("*/metrics.csv"), key=lambda p: p.stat().st_mtime) if path.is_dir() else []
    if found:
        return found[-1]
    raise ZooError(
        f"no metrics.csv in {path}; give a run folder such as runs/zoo/<version> (written by zoo fit's CSV logger)"
    )


def read_metrics(path: Path) -> dict[str, Any]:
    """Curves from a Lightning ``CSVLogger`` file, against fractional epochs.

    Epoch-level values (validation, per-epoch means) are placed at the end of their epoch; step-level
    values (per-step loss, learning rate) between the epoch boundaries, from the steps the log records.
    """
    import numpy as np

    rows = check_metrics_csv(path)  # a text file, an image, a CSV of something else: one line naming it
    if not rows:
        raise ZooError(f"{path} has no rows yet; let the run log at least one step")

    def column(key: str) -> list[tuple[float, float, float]]:
        """(epoch, step, value) of the rows that hold ``key``; the LR monitor's rows carry no epoch (NaN)."""
        return [
            (float(r["epoch"] or "nan"), float(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")
        ]

    lr_key = next((k for k in rows[0] if k.startswith("lr-")), None)
    # The test/validate that follow fit (--card.name) log at epoch = max_epochs, one past the last trained
    # epoch: those rows are not a training epoch and are left out of the curves.
    trained = {int(e) for key in ("train_loss_step", "train_loss_epoch") for e, _, _ in column(key) if e == e}
    if trained:
        last = max(trained)
        rows = [r for r in rows if not r.get("epoch") or float(r["epoch"]) <= last]
    # the step at which each epoch ended, from the epoch-level rows Lightning writes at that point
    ends: dict[int, float] = {}
    for epoch, step, _ in column("train_loss_epoch") or column("val_loss"):
        ends[int(epoch)] = max(ends.get(int(epoch), 0.0), step + 1)
    boundaries = [0.0] + [ends[e] for e in sorted(ends)]

    def by_step(key: str) -> tuple[list[float], list[float]] | None:
        # one value per step: under gradient accumulation the LR monitor logs every batch of a step
        values = sorted({s: v for _, s, v in column(key)}.items()) if key else []
        if not values:
            return None
        steps = [s for s, _ in values]
        x = np.interp(steps, boundaries, range(len(boundaries))) if len(boundaries) > 1 else steps
        return list(map(float, x)), [v for _, v in values]

    def by_epoch(key: str) -> tuple[list[float], list[float]] | None:
        values = sorted({e: v for e, _, v in column(key)}.items())  # one per epoch: the last one logged
        return ([e + 1 for e, _ in values], [v for _, v in values]) if values else None

    label = path.parent.name
    hparams = path.parent / "hparams.yaml"
    if hparams.is_file():
        import yaml

        try:
            hp = yaml.safe_load(hparams.read_text())
        except (yaml.YAMLError, UnicodeDecodeError):  # a damaged hparams.yaml costs the label, not the plot
            hp = None
        hp = hp if isinstance(hp, dict) else {}
        if isinstance(hp.get("model_name"), str):
            label = hp["model_name"] + (f" ({hp['init']} init)" if hp.get("init", "default") != "default" else "")
    return {
        "path": path,
        "label": label,
        "train_loss_step": by_step("train_loss_step"),
        "train_loss_epoch": by_epoch("train_loss_epoch"),
        "val_loss": by_epoch("val_loss"),
        "train_acc": by_epoch("train_acc"),
        "val_acc": by_epoch("val_acc"),
        "lr": by_step(lr_key),
    }
