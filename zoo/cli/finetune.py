"""``zoo finetune --model SOURCE --data PATH``: ``zoo fit`` (LightningCLI) started from trained weights.

The command is ``zoo fit`` with the task built from ``SOURCE``'s weights (``--model.pretrained``), the
data from your folder or CSV (:class:`~zoo.data.folders.ImageFolderDataModule`, its classes linked to the
head), and a :class:`~zoo.finetuning.Finetuning` strategy callback; every ``--trainer.*``, ``--model.*``,
``--data.*`` and ``--checkpoint.*`` flag of ``zoo fit`` works, and ``--config`` takes a YAML recipe of them.
``-o DIR`` writes the best validation weights as a weight folder (``zoo.load(DIR)``, ``zoo push DIR``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.errors import ZooError

USAGE = """usage: zoo finetune [--model] SOURCE --data PATH [-o DIR] [--strategy S] [zoo fit options...]

Fine-tune trained weights on your images (a folder of class sub-folders, or a CSV of path,label).

  --model SOURCE         weights to start from: arch.tag, a weight folder or file, hf-hub:org/name
                         (or SOURCE first, without --model)
  --data PATH            folder of <class>/<image> (optionally train/ val/ test/), or a .csv of path,label;
                         --task multilabel: path,labels (';'-separated); --task regression: path,<number>...
                         (one output per column); --task angle-regression: path,angle (degrees)
  -o, --output DIR       write the best validation weights there (weights, config, metrics, card)
  --strategy S           linear_probe | full | freeze_unfreeze | gradual | layer_decay (default full)
  --task T               another task than the weights' own: multilabel, regression, angle-regression
  --lr LR                learning rate, or auto (default): Lightning's LR range test on your data
  --head-init H          auto (default): a classifier's new head starts as the nearest class mean of your
                         images' features when its LR range test says they already tell the classes apart,
                         else as the network drew it; imprint / random: always the one or the other
  --unfreeze_epoch K     freeze_unfreeze: epoch at which the backbone starts learning (default 1)
  --epochs_per_stage K   gradual: epochs between two unfrozen stages (default 1)
  --overwrite            replace an existing weight folder at DIR

Without --trainer.max_epochs the run gets a budget of optimizer steps suited to the data's size, with
early stopping on the task's validation metric (best weights kept; for a kept imprinted head, the lowest
validation loss), and a classifier validates, keeps and tests a moving average of its weights (zoo.callbacks.EMA,
unless the recipe has its own averaging); the choices are printed and the card's metrics.json records them
(finetune_plan).

Every zoo fit option works too: --trainer.max_epochs 10, --model.lr 3e-4, --model.layer_decay 0.7,
--data.batch_size 64, --data.val_fraction 0.1, --config recipe.yaml ... (zoo fit --help lists them).
"""


def _take(argv: list[str], *names: str, flag: bool = False) -> Any:
    """Remove ``--name VALUE`` (or ``--name=VALUE``; a bare flag) from ``argv``; its value, or None."""
    for index, item in enumerate(argv):
        for name in names:
            if item == name:
                if flag:
                    del argv[index]
                    return True
                if index + 1 >= len(argv):
                    raise ZooError(f"{name} needs a value; see zoo finetune --help")
                value = argv[index + 1]
                del argv[index : index + 2]
                return value
            if item.startswith(name + "=") and not flag:
                del argv[index]
                return item.split("=", 1)[1]
    return None


def cmd_finetune(argv: list[str]) -> None:
    argv = list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    source, data = _take(argv, "--model"), _take(argv, "--data")
    if source is None and argv and not argv[0].startswith("-"):  # zoo finetune WEIGHTS --data ...
        source = argv.pop(0)
    if source is None or data is None:
        raise ZooError("zoo finetune needs --model SOURCE and --data PATH; see zoo finetune --help")
    output = _take(argv, "-o", "--output")
    overwrite = bool(_take(argv, "--overwrite", flag=True))
    strategy = _take(argv, "--strategy") or "full"
    task = _take(argv, "--task")
    from zoo.finetuning import Finetuning, strategy_options

    Finetuning(strategy)  # a one-line error for an unknown strategy, before any loading
    unfreeze, per_stage = _take(argv, "--unfreeze_epoch"), _take(argv, "--epochs_per_stage")
    lr = _lr_option(_take(argv, "--lr"), argv)
    head_init = _take(argv, "--head-init") or "auto"
    from zoo.finetune_defaults import FinetuneDefaults

    FinetuneDefaults(head_init=head_init)  # a one-line error for an unknown choice, before any loading
    budget = not _given(argv, "trainer", "max_epochs")
    from zoo import pretrained
    from zoo.task_descriptions import get_task

    record = pretrained.resolve(source)
    description = get_task(task or record.task)  # --task: another task from a classifier's weights (multilabel)
    description.require("finetune", record.name)
    if output:
        from zoo.cards import check_target

        if check_target(Path(output).expanduser(), overwrite=overwrite) == "replace" and not overwrite:
            raise ZooError(f"{output} already holds weights; pass --overwrite to replace them, or another -o")
    _check_validation(argv, data, description)
    args = [
        "fit",
        f"--model={description.module.__module__}.{description.module.__name__}",
        f"--model.model_name={record.arch}",
        f"--model.pretrained={source}",
        *(f"--model.{key}={value}" for key, value in strategy_options(strategy).items()),
        *_data_args(description, data),
        # the budget's early stopping watches the task's metric; a tie is no worse (as for zoo.finetune)
        f"--early_stopping.monitor={description.monitor}",
        f"--early_stopping.mode={description.mode}",
        "--early_stopping.min_delta=-1e-07",
        *([f"--model.lr={lr}"] if lr != "auto" else []),
        *argv,  # the user's own flags (and --config) after the defaults, so they win
        # the strategy after them: a recipe's own trainer.callbacks list must not replace it
        "--trainer.callbacks+=zoo.finetuning.Finetuning",
        f"--trainer.callbacks.strategy={strategy}",
        *([f"--trainer.callbacks.unfreeze_epoch={unfreeze}"] if unfreeze else []),
        *([f"--trainer.callbacks.epochs_per_stage={per_stage}"] if per_stage else []),
        "--trainer.callbacks+=zoo.finetune_defaults.FinetuneDefaults",
        f"--trainer.callbacks.lr={lr}",
        f"--trainer.callbacks.budget={str(budget).lower()}",
        f"--trainer.callbacks.head_init={head_init}",
        # with the budget a classifier's run averages its weights, as zoo.finetune's does, unless told to average
        *(_average_args() if budget and description.finetune_average and not _averages_given(argv) else []),
    ]
    from zoo.cli.recipe import run_lightning

    cli = run_lightning(args)
    if output and cli.trainer.is_global_zero:
        print(export_finetuned(cli, Path(output).expanduser(), source, strategy, overwrite))


def _check_validation(argv: list[str], data: str, description: Any) -> None:
    """``--data.val_fraction 0`` leaves no validation images unless the data has its own (a ``val/`` folder; a COCO
    folder validates on its training images): refused before training, since fine-tuning keeps the weights that
    validate best and its card reports their validation score."""
    for key in ("--data.val_fraction", "--data.init_args.val_fraction"):
        value = _take(list(argv), key)
        try:
            zero = value is not None and float(value) == 0
        except ValueError:
            return  # the datamodule names a value that is no number
        if zero and description.name != "detection" and not (Path(data).expanduser() / "val").is_dir():
            raise ZooError(
                f"{key} 0 leaves no validation images, and zoo finetune keeps the weights that validate best; "
                "give a fraction such as 0.2 (the default), or put validation images in a val/ folder"
            )


def _average_args() -> list[str]:
    """The budget's weight average as flags: what :func:`zoo.finetune_defaults.averaging` adds for the API."""
    from zoo.finetune_defaults import AVERAGE_DECAY

    return ["--trainer.callbacks+=zoo.callbacks.EMA", f"--trainer.callbacks.decay={AVERAGE_DECAY}"]


def _averages_given(argv: list[str]) -> bool:
    """Whether the command line or its ``--config`` recipe(s) name a weight averaging callback (``zoo.callbacks.EMA``,
    Lightning's ``EMAWeightAveraging``, ``WeightAveraging`` or ``StochasticWeightAveraging``)."""
    import re

    texts = [*argv, *(path.read_text() for path in _recipes(argv))]
    return any(re.search(r"\b(EMA|\w*WeightAveraging)\b", text) for text in texts)


def _recipes(argv: list[str]) -> list[Path]:
    """The ``--config FILE`` / ``--config=FILE`` recipes of the command line that exist."""
    found = []
    for index, item in enumerate(argv):
        path = (
            item.split("=", 1)[1]
            if item.startswith("--config=")
            else (argv[index + 1] if item == "--config" and index + 1 < len(argv) else None)
        )
        if path and Path(path).is_file():
            found.append(Path(path))
    return found


def _given(argv: list[str], section: str, key: str) -> bool:
    """Whether the command line or its ``--config`` recipe(s) set ``section.key`` (``model.lr``)."""
    import yaml

    flag = f"--{section}.{key}"
    if any(
        item == flag or item.startswith(flag + "=") or item.startswith(f"--{section}.init_args.{key}") for item in argv
    ):
        return True
    for path in _recipes(argv):
        recipe = yaml.safe_load(path.read_text()) or {}
        part = recipe.get(section) or {}
        if isinstance(part, dict) and (key in part or key in (part.get("init_args") or {})):
            return True
    return False


def _lr_option(value: str | None, argv: list[str]) -> str:
    """``--lr``: ``auto`` (default, unless --model.lr or the recipe sets the rate) or a positive number."""
    if value is None:
        return "given" if _given(argv, "model", "lr") else "auto"
    if value == "auto":
        return value
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number > 0:
        raise ZooError(f"--lr must be a positive number or auto, got {value!r}")
    return repr(number)


def _data_args(description: Any, data: str) -> list[str]:
    """The ``--data`` flags of the task's own datamodule (its description's ``data_class``/``data_arg``)."""
    built = description.datamodule(data)  # the data checked now, in one line, before any weights load or training
    data_class, data_arg = getattr(built, "recipe_data", (description.data_class, description.data_arg))  # shards
    return [f"--data={data_class}", f"--data.{data_arg}={data}"]


def export_finetuned(cli: Any, folder: Path, source: str, strategy: str, overwrite: bool) -> Path:
    """The best validation weights of a ``zoo finetune`` run, validated again, as a weight folder."""
    from lightning.pytorch.callbacks import BaseFinetuning, Timer

    from zoo.callbacks import use_best_weights
    from zoo.finetuning import finetuned_metrics

    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    best = getattr(trainer.checkpoint_callback, "best_model_path", None) or None
    use_best_weights(trainer, model, best)
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    wall = timer.time_elapsed("train") if timer else 0.0
    model.card_metrics = {"license": "apache-2.0"}
    metrics = finetuned_metrics(trainer, model, data, source, strategy, best, wall)
    BaseFinetuning.make_trainable(model.net)
    name = f"{model.hparams.model_name}.{folder.name.replace('.', '_')}"
    return model.save_pretrained(folder, name=name, metrics=metrics, overwrite=overwrite)
