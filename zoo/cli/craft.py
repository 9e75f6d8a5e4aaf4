"""Training craft from the course as ``zoo`` commands, each reading an ordinary recipe.

    zoo lr-find --config RECIPE [-o lr_find.png] [--apply new_recipe.yaml]
        Lightning's LR range test (``Tuner.lr_find``): the learning rate grows exponentially over
        ``--num-training`` batches; the suggestion is where the loss falls fastest.
    zoo overfit-batch --config RECIPE [--steps 200] [-o overfit.png]
        Train on one minibatch (``Trainer(overfit_batches=1)``) with regularisation off; a model, loss
        and data pipeline that work drive its loss to ~0 and its accuracy to 100%.
    zoo schedule --config RECIPE [-o lr.png] [--all]
        The learning rate over the whole run, from the task's own scheduler code, before training.

``zoo plot`` draws the curves a run logged (:mod:`zoo.cli.plot`).

Every option after ``--config`` that these commands do not know goes to the recipe as a LightningCLI
override, e.g. ``zoo overfit-batch --config recipes/lenet5_fmnist.yaml --model.init_args.lr 0``.
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
from pathlib import Path
from typing import Any

from zoo.cli.args import ArgumentParser, positive_float, positive_int
from zoo.cli.recipe import Recipe, load_recipe, tool_trainer
from zoo.destinations import IMAGE_SUFFIXES, check_output_file
from zoo.errors import ZooError

log = logging.getLogger("zoo")


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=f"zoo {prog}",
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Other --model.* / --data.* / --trainer.* options override the recipe.",
    )
    parser.add_argument("--config", "-c", required=True, help="recipe YAML, e.g. recipes/lenet5_fmnist.yaml")
    return parser


def _describe(recipe: Recipe) -> str:
    model, data = recipe.model, recipe.datamodule
    batch = getattr(data.hparams, "batch_size", None) if hasattr(data, "hparams") else None
    dataset = getattr(data, "dataset_name", type(data).__name__)
    return f"{model.hparams.model_name} on {dataset}" + (f", batch {batch}" if batch else "")


def _console():
    from rich.console import Console

    return Console()


# ---- zoo lr-find ---------------------------------------------------------------------------------------
def cmd_lr_find(argv: list[str]) -> None:
    parser = _parser(
        "lr-find", "Learning-rate range test (Lightning's Tuner.lr_find): plot loss against LR, suggest an LR."
    )
    parser.add_argument("-o", "--output", default="lr_find.png", help="PNG of loss against learning rate")
    parser.add_argument("--apply", metavar="YAML", help="write a copy of the recipe with the suggested learning rate")
    parser.add_argument("--min-lr", type=positive_float, default=1e-6, help="learning rate of the first batch")
    parser.add_argument("--max-lr", type=positive_float, default=1.0, help="learning rate of the last batch")
    parser.add_argument(
        "--num-training", type=positive_int, default=100, help="batches, each at a larger learning rate"
    )
    args, overrides = parser.parse_known_args(argv)
    if args.apply and Path(args.apply).resolve() == Path(args.config).resolve():
        raise ZooError(f"--apply {args.apply} would overwrite the recipe itself; give a new file name")
    if args.min_lr >= args.max_lr:
        raise ZooError(f"--min-lr {args.min_lr:g} must be below --max-lr {args.max_lr:g}")
    check_output_file(args.output, suffixes=IMAGE_SUFFIXES)
    if args.apply:
        check_output_file(args.apply, suffixes=(".yaml", ".yml"), option="--apply")
    recipe = load_recipe(args.config, overrides)
    result = find_lr(recipe, args.min_lr, args.max_lr, args.num_training, Path(args.output))
    console = _console()
    if result["suggestion"] is None:
        raise ZooError(
            "the LR finder could not suggest a learning rate (too few finite losses); "
            "raise --num-training or lower --max-lr"
        )
    console.print(
        f"LR range test over {len(result['lrs'])} batches ({_describe(recipe)}): suggested learning rate "
        f"[bold]{result['suggestion']:.3g}[/bold] (recipe: {recipe.model.hparams.lr:g})"
    )
    console.print(f"wrote {args.output}")
    if args.apply:
        apply_lr(recipe.path, Path(args.apply), result["suggestion"])
        console.print(f"wrote {args.apply} (the recipe with lr {result['suggestion']:.3g})")


def find_lr(recipe: Recipe, min_lr: float, max_lr: float, num_training: int, output: Path | None) -> dict[str, Any]:
    """Run ``Tuner.lr_find`` on the recipe; returns ``{"suggestion", "lrs", "losses"}`` and draws ``output``."""
    from lightning.pytorch.tuner import Tuner

    from zoo import plots

    trainer = tool_trainer(recipe, max_epochs=1)
    finder = Tuner(trainer).lr_find(
        recipe.model,
        datamodule=recipe.datamodule,
        min_lr=min_lr,
        max_lr=max_lr,
        num_training=num_training,
        update_attr=False,
    )
    suggestion = finder.suggestion()
    if output is not None:
        title = f"LR range test: {_describe(recipe)}, {len(finder.results['lr'])} steps"
        figure = plots.lr_finder_figure(
            finder.results["lr"], finder.results["loss"], suggestion, recipe.model.hparams.lr, title
        )
        plots.save(figure, output)
    return {"suggestion": suggestion, "lrs": finder.results["lr"], "losses": finder.results["loss"]}


def apply_lr(source: Path, target: Path, lr: float) -> None:
    """Copy the recipe YAML with ``model.init_args.lr`` (or ``model.lr``) set to ``lr``."""
    import yaml

    data = yaml.safe_load(source.read_text())
    model = data.setdefault("model", {})
    section = model.setdefault("init_args", {}) if "class_path" in model else model
    section["lr"] = float(f"{lr:.3g}")
    header = f"# {source} with the learning rate suggested by `zoo lr-find --config {source}`\n"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(header + yaml.safe_dump(data, sort_keys=False))


# ---- zoo overfit-batch ---------------------------------------------------------------------------------
# Regularisation fights memorisation, the very thing this check asks for; the schedule could decay the
# learning rate to 0 within the few steps. The course's recipe: switch them off, keep optimizer and LR.
OVERFIT_SETTINGS = {"weight_decay": 0.0, "label_smoothing": 0.0, "scheduler": "constant", "warmup_epochs": 0.0}


def cmd_overfit_batch(argv: list[str]) -> None:
    parser = _parser("overfit-batch", "Sanity check: can the model drive the loss on one minibatch to ~0?")
    parser.add_argument("--steps", type=positive_int, default=200, help="optimizer steps on the one batch")
    parser.add_argument("--loss-below", type=positive_float, default=0.05, help="loss that counts as ~0")
    parser.add_argument("-o", "--output", help="PNG of the loss on the batch, step by step")
    args, overrides = parser.parse_known_args(argv)
    if args.output:
        check_output_file(args.output, suffixes=IMAGE_SUFFIXES)
    recipe = load_recipe(args.config, overrides)
    result = overfit_batch(recipe, args.steps, args.loss_below)
    console = _console()
    if args.output:
        from zoo import plots

        title = f"Overfit one batch: {_describe(recipe)}, {recipe.model.hparams.optimizer} lr {result['lr']:g}"
        figure = plots.overfit_figure(result["losses"], result["final_acc"], args.loss_below, result["verdict"], title)
        plots.save(figure, args.output)
        console.print(f"wrote {args.output}")
    console.print(
        f"overfit one batch of {result['batch_size']} ({_describe(recipe)}, lr {result['lr']:g}; weight decay, "
        f"label smoothing, augmentation and schedule off): loss {result['first_loss']:.4f} → "
        f"{result['final_loss']:.4f}, accuracy {100 * result['final_acc']:.1f}% after {result['steps']} steps"
    )
    console.print(("[bold green]" if result["ok"] else "[bold red]") + result["verdict"])
    if not result["ok"]:  # a script (CI) tells a pass from a fail by the exit code
        raise SystemExit(1)


def overfit_batch(recipe: Recipe, steps: int, loss_below: float = 0.05) -> dict[str, Any]:
    """Train up to ``steps`` steps on the first training batch; returns the losses and a verdict."""
    import torch
    import torch.nn.functional as F
    from lightning.pytorch.callbacks import Callback

    model, data = recipe.model, recipe.datamodule
    for key, value in OVERFIT_SETTINGS.items():
        if key in model.hparams:
            model.hparams[key] = value
    if "augment" in getattr(data, "hparams", {}):
        data.hparams.augment = False

    class Record(Callback):
        def __init__(self) -> None:
            self.losses: list[float] = []
            self.batch: Any = None

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.losses.append(float(outputs["loss"]))
            self.batch = batch
            trainer.should_stop = self.losses[-1] < loss_below / 2  # well below: no need to spend the other steps

    record = Record()
    trainer = tool_trainer(
        recipe,
        overfit_batches=1,
        max_steps=steps,
        max_epochs=-1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[record],
    )
    trainer.fit(model, datamodule=data)
    images, targets = record.batch[0], record.batch[1]
    model.eval()
    with (
        torch.inference_mode()
    ):  # the final check uses eval mode, as the model will be used (dropout off, BN running stats)
        logits = model.net(model.preprocess(images))
        final_loss = float(F.cross_entropy(logits, targets))
        final_acc = float((logits.argmax(dim=1) == targets).float().mean())
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    result = {
        "steps": len(record.losses),
        "batch_size": len(targets),
        "lr": lr,
        "losses": record.losses,
        "first_loss": record.losses[0],
        "final_loss": final_loss,
        "final_acc": final_acc,
    }
    result["ok"], result["verdict"] = overfit_verdict(result, loss_below)
    return result


def overfit_verdict(result: dict[str, Any], loss_below: float) -> tuple[bool, str]:
    """The verdict and what to check, from the loss curve of an overfit-one-batch run."""
    losses, final_loss, final_acc = result["losses"], result["final_loss"], result["final_acc"]
    if final_acc == 1.0 and final_loss < loss_below:
        reached = next((i + 1 for i, loss in enumerate(losses) if loss < loss_below), len(losses))
        return (
            True,
            f"the model can learn: training loss below {loss_below} by step {reached}, 100% accuracy on the batch",
        )
    if not all(math.isfinite(loss) for loss in losses) or not math.isfinite(final_loss):
        bad = next((i for i, loss in enumerate(losses) if not math.isfinite(loss)), None)
        where = f"{losses[bad]} at step {bad + 1}" if bad is not None else f"{final_loss} in eval mode"
        return False, (
            f"something is wrong: the loss became {where}; check the learning rate "
            "(too high: run zoo lr-find), the input data (NaN/inf pixels, normalisation) and the loss"
        )
    if result["lr"] == 0:
        return False, "something is wrong: check the learning rate: it is 0, so no parameter moves"
    if final_loss > 0.9 * result["first_loss"]:
        return False, (
            f"something is wrong: the loss barely moved ({result['first_loss']:.3f} → {final_loss:.3f}); check the "
            "learning rate (too small? run zoo lr-find), that gradients reach the parameters (frozen layers, "
            "detached tensors), the loss function and the labels"
        )
    return False, (
        f"something is wrong: after {len(losses)} steps the loss is {final_loss:.3f} and accuracy "
        f"{100 * final_acc:.1f}%; check the learning rate (zoo lr-find), that the labels match the images, "
        "the loss, the model's capacity, or give it more --steps"
    )


# ---- zoo schedule --------------------------------------------------------------------------------------
def cmd_schedule(argv: list[str]) -> None:
    parser = _parser("schedule", "Plot the learning rate over the whole run, before training.")
    parser.add_argument("-o", "--output", default="lr.png", help="PNG of learning rate against step")
    parser.add_argument(
        "--steps-per-epoch",
        type=positive_int,
        help="optimizer steps per epoch (default: from the datamodule's size)",
    )
    parser.add_argument(
        "--epochs", type=positive_int, help="length of the run (default: the recipe's trainer.max_epochs)"
    )
    parser.add_argument(
        "--all", action="store_true", help="draw every scheduler with the recipe's settings, to compare"
    )
    parser.add_argument("--log-scale", action="store_true", help="logarithmic learning-rate axis")
    parser.add_argument(
        "--world-size",
        type=positive_int,
        default=1,
        help="processes the run will use (devices × nodes): fewer steps per epoch, and lr_scale applied",
    )
    args, overrides = parser.parse_known_args(argv)
    check_output_file(args.output, suffixes=IMAGE_SUFFIXES)
    recipe = load_recipe(args.config, overrides)
    epochs = args.epochs or recipe.trainer.get("max_epochs")
    if not epochs or epochs < 1:
        raise ZooError("the recipe sets no trainer.max_epochs; give --epochs N")
    per_epoch = args.steps_per_epoch or math.ceil(steps_per_epoch(recipe) / args.world_size)
    from zoo import plots
    from zoo.tasks.optim import Scheduler, scaled_lr

    hp = copy.copy(recipe.model.hparams)
    batch = getattr(recipe.datamodule.hparams, "batch_size", 1) * args.world_size
    batch *= recipe.trainer.get("accumulate_grad_batches") or 1
    hp.lr = scaled_lr(hp.lr, hp.lr_scale, batch, hp.lr_reference_batch)
    if args.world_size > 1 or hp.lr_scale != "none":
        _console().print(
            f"world size {args.world_size}: global batch {batch}, {per_epoch} steps per epoch, "
            f"lr {hp.lr:.4g} ({hp.lr_scale} scaling from batch {hp.lr_reference_batch})"
        )
    kinds = list(Scheduler.__args__) if args.all else [hp.scheduler]
    curves = {}
    for kind in kinds:
        label = kind + (f" + {hp.warmup_epochs:g} warm-up epoch(s)" if hp.warmup_epochs and kind != "onecycle" else "")
        if kind == "onecycle":
            label += " (its own warm-up)"
        if kind == "plateau":
            label += f"\n(val_loss never improving: ×{hp.gamma:g} every {hp.plateau_patience + 1} epochs)"
        curves[label] = lr_schedule(hp, kind, epochs, per_epoch)
    what = "every schedule" if args.all else hp.scheduler
    title = f"Learning rate, {what}: {hp.optimizer} lr {hp.lr:g}, {epochs} epochs × {per_epoch} steps"
    plots.save(plots.schedule_figure(curves, per_epoch, title, log_scale=args.log_scale), args.output)
    console = _console()
    for label, lrs in curves.items():
        console.print(
            f"{label.replace(chr(10), ' ')}: start {lrs[0]:.3g}, peak {max(lrs):.3g}, end {lrs[-1]:.3g} "
            f"over {len(lrs):,} steps"
        )
    console.print(f"wrote {args.output}")


def steps_per_epoch(recipe: Recipe) -> int:
    """Optimizer steps per epoch as the Trainer will count them: batches, ``limit_train_batches``, accumulation."""
    data = recipe.datamodule
    data.setup("fit")
    batches = len(data.train_dataloader())
    limit = recipe.trainer.get("limit_train_batches")
    if isinstance(limit, int) and not isinstance(limit, bool):
        batches = min(batches, limit)
    elif isinstance(limit, float):
        batches = max(1, int(batches * limit))
    return max(1, math.ceil(batches / (recipe.trainer.get("accumulate_grad_batches") or 1)))


def lr_schedule(hp: Any, kind: str, epochs: int, per_epoch: int) -> list[float]:
    """Learning rate at each optimizer step of a run, from the task's ``build_scheduler``/``warmup_scheduler``
    stepped on a one-parameter optimizer. ``plateau`` depends on the validation loss, so it is drawn for a
    loss that never improves: the most often the rule can fire."""
    import torch

    from zoo.tasks.optim import build_scheduler, warmup_scheduler

    hp = copy.copy(hp)
    hp.scheduler = kind
    total = epochs * per_epoch
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=hp.lr)
    if kind == "plateau":
        per_step = warmup_scheduler(optimizer, hp, (total, per_epoch)) if hp.warmup_epochs else None
        per_epoch_rule = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=hp.gamma, patience=hp.plateau_patience, min_lr=hp.min_lr
        )
    else:
        per_step, per_epoch_rule = build_scheduler(optimizer, hp, (total, per_epoch)), None
    lrs = []
    for step in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if per_step is not None:
            per_step.step()
        if per_epoch_rule is not None and (step + 1) % per_epoch == 0:
            per_epoch_rule.step(1.0)
    return lrs
