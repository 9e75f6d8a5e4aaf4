"""The pictures of training: LR range test, LR schedule, train/val curves, confusion matrix, mistakes.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot (no GUI backend, no global
state: safe in tests, servers and DataLoader workers); :func:`save` writes it as a PNG with the Agg
canvas. Learning rates are drawn on a log axis wherever they span decades.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch import Tensor


def new_figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, axes


def save(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG (creating the folder); returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from zoo.destinations import IMAGE_SUFFIXES, check_output_file

    path = check_output_file(path, suffixes=IMAGE_SUFFIXES, option="")
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi)
    return path


def lr_finder_figure(
    lrs: Sequence[float],
    losses: Sequence[float],
    suggestion: float | None,
    current_lr: float | None,
    title: str,
    skip_begin: int = 10,
) -> Figure:
    """Smoothed loss against learning rate from Lightning's LR finder, the suggestion marked.

    The first ``skip_begin`` points are left out, as ``_LRFinder.suggestion`` leaves them out: the
    finder's running average of the loss is still warming up there and reads too low.
    """
    fig, ax = new_figure(7, 4.5)
    ax.plot(lrs[skip_begin:], losses[skip_begin:], color="tab:blue", linewidth=1.6, label="loss (running average)")
    if suggestion is not None:
        loss = losses[list(lrs).index(suggestion)]
        ax.plot([suggestion], [loss], "o", color="tab:red", markersize=9)
        ax.axvline(
            suggestion,
            color="tab:red",
            linestyle="--",
            linewidth=1,
            label=f"suggestion {suggestion:.2g} (steepest descent)",
        )
    if current_lr:
        ax.axvline(current_lr, color="0.4", linestyle=":", linewidth=1.5, label=f"recipe lr {current_lr:g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left")
    return fig


def schedule_figure(
    curves: dict[str, Sequence[float]], steps_per_epoch: int, title: str, log_scale: bool = False
) -> Figure:
    """Learning rate per optimizer step, epochs on the top axis; several schedules get a panel each."""
    columns = min(4, len(curves))
    rows = -(-len(curves) // columns)
    fig, _ = new_figure(7 if columns == 1 else 3.6 * columns, 4.2 if rows == 1 else 2.9 * rows + 0.4)
    fig.clear()
    grid = fig.subplots(rows, columns, squeeze=False, sharex=True, sharey=True)
    for ax, (name, lrs) in zip(grid.flat, curves.items()):
        ax.plot(range(len(lrs)), lrs, color="tab:blue", linewidth=1.6)
        if log_scale:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        if len(curves) > 1:
            ax.set_title(name, fontsize="medium")
        top = ax.secondary_xaxis("top", functions=(lambda s: s / steps_per_epoch, lambda e: e * steps_per_epoch))
        top.set_xlabel("epoch", fontsize="small")
    for ax in grid.flat[len(curves) :]:
        ax.set_axis_off()
    for ax in grid[-1]:
        ax.set_xlabel("optimizer step")
    for ax in grid[:, 0]:
        ax.set_ylabel("learning rate" + (" (log)" if log_scale else ""))
    fig.suptitle(title if len(curves) > 1 else f"{title}\n{next(iter(curves))}")
    return fig


def overfit_figure(losses: Sequence[float], accuracy: float, loss_below: float, verdict: str, title: str) -> Figure:
    """Training loss on the one batch, step by step (log scale), with the "~0" line and the verdict."""
    fig, ax = new_figure(7, 4.2)
    finite = [loss if loss == loss and loss not in (float("inf"), float("-inf")) else None for loss in losses]
    ax.plot(range(1, len(losses) + 1), finite, color="tab:blue", linewidth=1.6, label="loss on the batch")
    ax.axhline(loss_below, color="0.4", linestyle=":", label=f"~0 (loss {loss_below:g})")
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step (always the same batch)")
    ax.set_ylabel("training loss (log scale)")
    fig.suptitle(title)
    ok = verdict.startswith("the model can learn")
    ax.set_title(
        f"{verdict.split(':')[0]} (accuracy on the batch {100 * accuracy:.0f}%)",
        color="tab:green" if ok else "tab:red",
        fontweight="bold",
        fontsize="medium",
    )
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best")
    return fig


def curves_figure(runs: Sequence[dict[str, Any]], title: str) -> Figure:
    """Loss, accuracy and learning rate of one or more runs (dicts from ``zoo.cli.plot.read_metrics``).

    One run: training blue (faint per-step loss under the per-epoch means), validation orange.
    Several runs: one colour per run, validation solid and training dashed, one legend entry per run.
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig, (loss_ax, acc_ax, lr_ax) = new_figure(13, 4, ncols=3)
    single = len(runs) == 1
    for index, run in enumerate(runs):
        colors = {"train": "tab:blue", "val": "tab:orange"} if single else {"train": f"C{index}", "val": f"C{index}"}
        if single and run["train_loss_step"]:
            loss_ax.plot(*run["train_loss_step"], color="tab:blue", alpha=0.25, linewidth=0.8, label="train (per step)")
        for ax, keys, scale in (
            (loss_ax, ("train_loss_epoch", "val_loss"), 1),
            (acc_ax, ("train_acc", "val_acc"), 100),
        ):
            for key, name, style in zip(keys, ("train", "val"), ("--", "-")):
                if run[key]:
                    x, y = run[key]
                    label = name if single else (run["label"] if name == "val" else None)
                    ax.plot(x, [scale * v for v in y], style, marker="o", markersize=3, color=colors[name], label=label)
        if run["lr"]:
            lr_ax.plot(*run["lr"], color="tab:green" if single else f"C{index}", label=run["label"])
        if single and run["val_loss"]:  # where early stopping's "keep the best θ" would take the weights from
            epochs, losses = run["val_loss"]
            best = epochs[min(range(len(losses)), key=losses.__getitem__)]
            for ax in (loss_ax, acc_ax):
                ax.axvline(best, color="0.5", linestyle=":", label=f"best val loss (epoch {best:g})")
    loss_ax.set(title="cross-entropy loss", xlabel="epoch", ylabel="loss")
    acc_ax.set(title="top-1 accuracy", xlabel="epoch", ylabel="accuracy (%)")
    lr_ax.set(title="learning rate", xlabel="epoch", ylabel="learning rate")
    if not any(run["lr"] for run in runs):  # an empty panel would look like a plotting bug
        lr_ax.text(
            0.5,
            0.5,
            "no learning-rate rows in the log:\nthe run had fewer steps than\n--trainer.log_every_n_steps (50)",
            ha="center",
            va="center",
            transform=lr_ax.transAxes,
            color="0.4",
        )
    lr_ax.set_ylim(bottom=0)
    for ax in (loss_ax, acc_ax, lr_ax):
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if single:
        loss_ax.legend(fontsize="small")
        acc_ax.legend(fontsize="small")
    else:
        styles = [
            Line2D([], [], color="0.3", linestyle="-", label="validation"),
            Line2D([], [], color="0.3", linestyle="--", label="training"),
        ]
        loss_ax.legend(handles=[*loss_ax.get_legend_handles_labels()[0], *styles], fontsize="small")
        acc_ax.legend(handles=[*acc_ax.get_legend_handles_labels()[0], *styles], fontsize="small")
    fig.suptitle(title)
    return fig


def confusion_figure(matrix: Tensor, class_names: Sequence[str], title: str) -> Figure:
    """Counts of (true, predicted) pairs; colour is the share of each true class (row-normalised)."""
    counts = matrix.cpu().numpy()
    shares = counts / counts.sum(axis=1, keepdims=True).clip(min=1)
    num_classes = len(counts)
    size = min(12, 3 + 0.55 * num_classes)
    fig, ax = new_figure(size + 1, size)
    fig.set_layout_engine("compressed")  # made for fixed-aspect images: keeps room for the tick and axis labels
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    if num_classes <= 30:
        ax.set_xticks(range(num_classes), class_names, rotation=45, ha="right")
        ax.set_yticks(range(num_classes), class_names)
    if num_classes <= 20:
        for true in range(num_classes):
            for pred in range(num_classes):
                if counts[true, pred]:
                    ax.text(
                        pred,
                        true,
                        f"{counts[true, pred]:,}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if shares[true, pred] > 0.5 else "black",
                    )
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    return fig


def misclassified_figure(
    images: Tensor,
    true: Sequence[int],
    predicted: Sequence[int],
    confidence: Sequence[float],
    class_names: Sequence[str],
    title: str,
    columns: int = 8,
) -> Figure:
    """A grid of uint8 images ``(N, C, H, W)``, each captioned ``true → predicted (confidence)``."""
    count = len(images)
    rows = max(1, -(-count // columns))
    fig, axes = new_figure(1.6 * columns, 1.75 * rows + 0.5)
    axes.remove()
    grid = fig.subplots(rows, columns, squeeze=False)
    for index, ax in enumerate(grid.flat):
        ax.set_axis_off()
        if index >= count:
            continue
        image = images[index].permute(1, 2, 0).numpy()
        if image.shape[2] == 1:
            ax.imshow(image[:, :, 0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(image)
        ax.set_title(
            f"{class_names[true[index]]}\n→ {class_names[predicted[index]]} ({100 * confidence[index]:.0f}%)",
            fontsize=7.5,
            color="tab:red",
        )
    fig.suptitle(title)
    return fig


def attention_figure(
    images: Tensor,
    maps: Tensor,
    captions: Sequence[str],
    title: str,
    windows: dict[str, int] | None = None,
    columns: int = 6,
) -> Figure:
    """Each image ``(N, C, H, W)`` in [0, 1] above its attention map ``(N, H, W)`` (in [0, 1]) laid over it.

    ``windows`` (``size`` and ``offset`` in pixels): draw the attention windows' borders (Swin).
    """
    count = len(images)
    columns = min(columns, count)
    rows = -(-count // columns)
    fig, axes = new_figure(1.9 * columns, 3.9 * rows + 0.4)
    axes.remove()
    grid = fig.subplots(2 * rows, columns, squeeze=False)
    for ax in grid.flat:
        ax.set_axis_off()
    for index in range(count):
        top, bottom = grid[2 * (index // columns), index % columns], grid[2 * (index // columns) + 1, index % columns]
        image = images[index].permute(1, 2, 0).numpy()
        gray = image[:, :, 0] if image.shape[2] == 1 else image.mean(axis=2)
        top.imshow(image[:, :, 0] if image.shape[2] == 1 else image, cmap="gray", vmin=0, vmax=1)
        top.set_title(captions[index], fontsize=7.5)
        bottom.imshow(gray, cmap="gray", vmin=0, vmax=1)
        bottom.imshow(maps[index].numpy(), cmap="inferno", alpha=0.6, vmin=0, vmax=1)
        if windows:
            height, width = gray.shape
            # a shifted block's windows start `offset` pixels in (the roll), plain ones at the origin
            for line in range(windows["offset"] or windows["size"], max(height, width), windows["size"]):
                bottom.axhline(line - 0.5, color="cyan", linewidth=0.6)
                bottom.axvline(line - 0.5, color="cyan", linewidth=0.6)
    fig.suptitle(title, fontsize=9)
    return fig
