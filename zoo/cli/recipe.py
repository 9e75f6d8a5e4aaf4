"""Recipes: the ``LightningCLI`` subclass behind ``zoo fit|validate|test|predict``, and recipe parsing.

``zoo fit --config recipes/<recipe>.yaml`` is Lightning's own ``LightningCLI`` (every ``--trainer.*``,
``--model.*``, ``--data.*`` flag works); zoo adds defaults (rich progress bar, best-val-accuracy
checkpoint + ``last.ckpt``, LR monitor, CSV + TensorBoard logs, the resolved config saved with each
run) and, with ``--card.name arch.tag``, turns the best checkpoint into a weight folder with a card when
``fit`` ends (through the task's own ``save_pretrained``). The craft commands parse recipes with the
same class (:func:`load_recipe`), so a recipe means the same thing to every command.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.cli.checkpoints import SPECIAL_CKPT, check_ckpt_model, check_ckpt_path
from zoo.cli.fit_card import check_card_target, export_card
from zoo.errors import ZooError
from zoo.sources import check_recipe

log = logging.getLogger("zoo")


AUTO = "auto"  # a checkpoint setting taken from the task's description


# ---- LightningCLI ---------------------------------------------------------------------------------
RUNS_DIR = "runs"  # where the zoo's loggers put runs/zoo/<version>/, unless --trainer.default_root_dir says


def _make_cli_class():
    """Built lazily so that ``import zoo.cli`` (and ``zoo list``) does not import Lightning."""
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar, Timer
    from lightning.pytorch.cli import LightningCLI

    from zoo.callbacks import KeepBestEarlyStopping, TestReport, TrainingHistograms
    from zoo.energy import EnergyTracker

    class ZooCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
            parser.set_defaults(
                {
                    # "auto": the task's own metric and direction, from its description (val_acc, val_map...)
                    "checkpoint.monitor": AUTO,
                    "checkpoint.mode": AUTO,
                    "checkpoint.filename": AUTO,
                }
            )
            # Always present, off until asked: --early_stopping.patience N, --histograms.every_n_steps N.
            parser.add_lightning_class_args(KeepBestEarlyStopping, "early_stopping")
            parser.add_lightning_class_args(TrainingHistograms, "histograms")
            parser.add_lightning_class_args(TestReport, "test_report")
            # energy and CO2 of fit, codecarbon offline: --energy.country DEU (default $ZOO_CO2_COUNTRY, else FRA)
            parser.add_lightning_class_args(EnergyTracker, "energy")
            parser.add_argument(
                "--card.name",
                type=str | None,
                default=None,
                help="export the best checkpoint as model_cards/<arch.tag> when fit ends",
            )
            parser.add_argument(
                "--card.output_dir", type=str, default="model_cards", help="folder that receives the weight folder"
            )
            parser.add_argument(
                "--card.overwrite",
                type=bool,
                default=False,
                help="replace an existing weight folder of that name (off: fit refuses before training)",
            )
            parser.add_argument(
                "--card.keep_better",
                type=bool,
                default=False,
                help="replace an existing weight folder of that name only if this run beats it (test top-1, "
                "mAP@0.5 for detectors); otherwise the run's card goes to its run folder",
            )
            parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
            parser.link_arguments("data.class_names", "model.init_args.class_names", apply_on="instantiate")

        def parse_arguments(self, parser, args) -> None:
            with recipe_errors():
                super().parse_arguments(parser, args)

        def _parse_ckpt_path(self) -> None:  # Lightning reads --ckpt_path's hyper-parameters right after parsing
            subcommand = self.config.get("subcommand")
            if subcommand:
                ckpt_path = self.config[subcommand].get("ckpt_path")
                checkpoint = check_ckpt_path(ckpt_path)
                if checkpoint is not None:  # before Lightning swaps the recipe's model for the checkpoint's
                    check_ckpt_model(ckpt_path, checkpoint, self.config[subcommand].get("model"))
            with recipe_errors():
                super()._parse_ckpt_path()

        def instantiate_classes(self) -> None:
            with recipe_errors():
                super().instantiate_classes()

        def before_instantiate_classes(self) -> None:
            config = self.config.get(str(self.subcommand), self.config)
            loggers = config.get("trainer", {}).get("logger")
            # One folder per run for both loggers. DDP workers are re-launched copies of this command
            # (LOCAL_RANK set): they inherit the launcher's version instead of making their own. A run
            # resumed from one of its checkpoints goes on in that run's folder.
            if "LOCAL_RANK" not in os.environ or "ZOO_RUN_VERSION" not in os.environ:
                now = time.time()
                os.environ["ZOO_RUN_VERSION"] = run_version_of(config.get("ckpt_path")) or (
                    time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
                    + f"-{int(now * 1000) % 1000:03d}-{os.getpid()}"  # two runs started at once get two folders
                )
            version = os.environ["ZOO_RUN_VERSION"]
            _checkpoint_by_task_metric(config)
            root = config.get("trainer", {}).get("default_root_dir")
            if root:  # the user's folder for the run, checked before any work
                from zoo.destinations import check_output_folder

                check_output_folder(root, option="--trainer.default_root_dir")
            for logger in loggers if isinstance(loggers, list) else []:
                init = logger.get("init_args", {}) if hasattr(logger, "get") else {}
                if "version" in init and init["version"] is None:
                    init["version"] = version
                if root and init.get("save_dir") == RUNS_DIR:  # the zoo's loggers follow it (else it did nothing)
                    init["save_dir"] = str(root)

        def _instantiate_trainer(self, config: dict[str, Any], callbacks: list) -> L.Trainer:
            # Defaults that must step aside when the user turns their feature off (Lightning refuses
            # a progress bar callback with enable_progress_bar=False, an LR monitor without a logger).
            if config.get("enable_checkpointing") is False:  # the zoo's own --checkpoint.* callback steps aside too
                callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
            else:
                # last.ckpt after every epoch, for --ckpt_path resumes: Lightning 2.6's save_last only
                # writes it when the monitored checkpoint improves, so a separate unmonitored one does it.
                callbacks = [*callbacks, ModelCheckpoint(filename="last", monitor=None, save_top_k=1)]
            # Training time kept in every checkpoint, so a run resumed with --ckpt_path (say, in a later
            # session) reports its whole training time on the card, not the last stretch.
            callbacks = [*callbacks, Timer()]
            if config.get("enable_progress_bar") is not False:
                callbacks = [*callbacks, RichProgressBar(leave=True)]
            if config.get("logger") not in (False, []):
                callbacks = [*callbacks, LearningRateMonitor(logging_interval="step")]
            if config.get("sync_batchnorm"):  # PyTorch's SyncBatchNorm on GPUs, the zoo's on CPU processes
                from zoo.plugins import SyncBatchNormAnyDevice

                plugins = config.get("plugins") or []
                config["plugins"] = [*(plugins if isinstance(plugins, list) else [plugins]), SyncBatchNormAnyDevice()]
            return super()._instantiate_trainer(config, callbacks)

        def before_fit(self) -> None:
            check_ckpt_path(self.config.fit.get("ckpt_path"))
            card = self.config.fit.card
            if card.name:
                check_card_target(self.model, card.name, Path(card.output_dir), card.overwrite or card.keep_better)

        def before_validate(self) -> None:
            check_ckpt_path(self.config.validate.get("ckpt_path"))

        def before_test(self) -> None:
            check_ckpt_path(self.config.test.get("ckpt_path"))

        def before_predict(self) -> None:
            check_ckpt_path(self.config.predict.get("ckpt_path"))

        def after_fit(self) -> None:
            card = self.config.fit.card
            if card.name:
                timer = next(callback for callback in self.trainer.callbacks if isinstance(callback, Timer))
                elapsed = timer.time_elapsed("train")
                export_card(self, card.name, Path(card.output_dir), elapsed, keep_better=card.keep_better)

    defaults = {
        "logger": [
            {
                "class_path": "zoo.loggers.CSVLogger",
                "init_args": {"save_dir": RUNS_DIR, "name": "zoo", "version": None},
            },
            {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": RUNS_DIR, "name": "zoo", "version": None, "default_hp_metric": False},
            },
        ],
    }
    return ZooCLI, defaults, L


def run_version_of(ckpt_path: str | None) -> str | None:
    """The run folder name of a checkpoint under ``<save_dir>/zoo/<version>/checkpoints/``, if it is one."""
    if not ckpt_path or str(ckpt_path) in SPECIAL_CKPT:
        return None
    path = Path(ckpt_path)
    if path.parent.name == "checkpoints" and path.parent.parent.parent.name == "zoo" and path.is_file():
        return path.parent.parent.name
    return None


@contextlib.contextmanager
def recipe_errors():
    """jsonargparse's usage-plus-error text (and its exit) → one ``ZooError`` line with the closest key."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer):
            yield
    except SystemExit as exit_:
        if exit_.code in (0, None):
            raise
        raise ZooError(parser_error_line(buffer.getvalue())) from None
    sys.stderr.write(buffer.getvalue())  # warnings printed while parsing still reach the user


def parser_error_line(text: str) -> str:
    """The line of a jsonargparse error that matters, with the closest valid option where one is near."""
    import difflib

    known = sorted(set(re.findall(r"--([\w.]+)", text.split("error:")[0])))
    option = re.search(r"Problem with given class_path '([\w.]+)':\s*Option '([^']+)' is not accepted", text)
    if option:
        owner, key = option.group(1).rpartition(".")[2], option.group(2)
        accepted = _init_args(option.group(1))
        close = difflib.get_close_matches(key, accepted, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"{owner} has no option {key!r}; {hint}`zoo fit --help` lists the options"
    unknown = re.search(r"unrecognized arguments: (\S+)", text)
    if unknown:
        key = unknown.group(1).lstrip("-").partition("=")[0]
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.7)
        hint = f"; did you mean --{close[0]}?" if close else "; `zoo fit --help` lists the options"
        return f"unknown option --{key}{hint}"
    detail = re.search(r'error: Parser key "([^"]+)":(.*)', text, re.S)
    inner = re.search(r'Parser key "([^"]+)":\s*\n\s*(.+)', detail.group(2)) if detail else None
    if inner and "class_path" in detail.group(2):  # a field of the recipe's model/data section, named in full
        field = f"{detail.group(1)}.init_args.{inner.group(1)}"
        reason = inner.group(2).strip()
        typed = re.match(r"Expected a <class '(\w+)'>\. Got value: (.*)", reason)
        if typed:
            reason = f"expected {'an' if typed.group(1)[0] in 'aeiou' else 'a'} {typed.group(1)}, got {typed.group(2)[:60]!r}"
        return f"--{field} ({inner.group(1)} in the recipe's {detail.group(1)} section): {reason}"
    if detail:
        reasons = [line.strip()[2:] for line in detail.group(2).splitlines() if line.strip().startswith("- ")]
        reasons = [r for r in reasons if r != "Expected a <class 'NoneType'>"] or [
            detail.group(2).strip().splitlines()[0]
        ]
        given = re.search(r"Given value: (.*)", detail.group(2))
        value = f" (given: {given.group(1)[:60]})" if given and "Namespace(" not in given.group(1) else ""
        return f"--{detail.group(1)}: {reasons[0]}{value}"
    lines = [line.strip() for line in text.split("error:", 1)[-1].splitlines() if line.strip()]
    return lines[0] if lines else "the recipe or its options could not be parsed; see zoo fit --help"


def _init_args(class_path: str) -> list[str]:
    import importlib
    import inspect

    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return []
    if hasattr(cls, "task_params"):
        return sorted(cls.task_params())
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


def _checkpoint_by_task_metric(config: Any) -> None:
    """Fill the checkpoint's ``auto`` settings from the recipe's task description: its monitored metric,
    that metric's direction, and a file name that shows it. What a recipe sets itself stays."""
    model, checkpoint = config.get("model"), config.get("checkpoint")
    if not checkpoint or AUTO not in (checkpoint.get("monitor"), checkpoint.get("mode"), checkpoint.get("filename")):
        return
    description = None
    class_path = model.get("class_path") if hasattr(model, "get") else None
    if class_path:
        import importlib

        module, _, name = class_path.rpartition(".")
        try:
            task = getattr(getattr(importlib.import_module(module), name), "task", None)
        except (ImportError, AttributeError, ValueError):  # Lightning names the bad class path itself
            task = None
        if task:
            from zoo.task_descriptions import get_task

            description = get_task(task)
    monitor = description.monitor if description else "val_acc"
    if checkpoint.get("monitor") == AUTO:
        checkpoint["monitor"] = monitor
    if checkpoint.get("mode") == AUTO:
        if description and checkpoint["monitor"] == monitor:
            checkpoint["mode"] = description.mode
        else:  # a metric the recipe chose: losses and errors fall, scores rise
            lower = any(word in checkpoint["monitor"] for word in ("loss", "error", "mae", "mse"))
            checkpoint["mode"] = "min" if lower else "max"
    if checkpoint.get("filename") == AUTO:
        checkpoint["filename"] = "best-{epoch:02d}-{" + checkpoint["monitor"] + ":.4f}"


def run_lightning(argv: list[str]):
    """Run a LightningCLI subcommand; returns the CLI object (its ``trainer``, ``model``, ``datamodule``)."""
    from zoo.tasks.base import ZooTask

    _check_ckpt_kind(argv)
    for option, path in config_files(argv):  # jsonargparse would say "Unexpected config: <the file's text>"
        section = (
            f"give a YAML file of class_path: and init_args: (the recipe's {option[2:]}: section), or a class name"
        )
        check_recipe(path, option, None if option == "--config" else section)
    ZooCLI, defaults, L = _make_cli_class()
    with warnings.catch_warnings():  # the command line arrives through args=, by design
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return _run(ZooCLI, defaults, L, ZooTask, argv)


def _check_ckpt_kind(argv: list[str]) -> None:
    """A ``--ckpt_path`` that is no PyTorch file at all (a text file, an image) is named before the recipe is
    parsed, so that ``zoo test --ckpt_path notes.txt`` says so whatever else is missing; a real checkpoint is
    read once, later (:func:`~zoo.cli.checkpoints.check_ckpt_path`)."""
    from zoo.sources import describe

    for index, arg in enumerate(argv):
        option, _, value = arg.partition("=")
        value = value or (argv[index + 1] if option == "--ckpt_path" and index + 1 < len(argv) else "")
        if option == "--ckpt_path" and value not in SPECIAL_CKPT and Path(value).expanduser().is_file():
            if describe(Path(value).expanduser()).startswith(("a ZIP archive", "a pickle")):
                continue
            check_ckpt_path(value)  # its one line: not a readable PyTorch file, what --ckpt_path takes


SECTION_FILES = ("--model", "--data")  # LightningCLI takes a section from a YAML file too: --model m.yaml


def config_files(argv: list[str]) -> list[tuple[str, str]]:
    """The YAML files of a LightningCLI command line, as (option, file): each ``--config FILE``,
    ``--config=FILE`` or ``-c FILE``, and a ``--model``/``--data`` value that is an existing file."""
    found = []
    for index, arg in enumerate(argv):
        option, _, value = arg.partition("=")
        if not value and index + 1 < len(argv):
            value = argv[index + 1]
        if option in ("--config", "-c") and value:
            found.append(("--config", value))
        elif option in SECTION_FILES and value and Path(value).expanduser().is_file():
            found.append((option, value))
    return found


def _run(ZooCLI, defaults, L, task_base, argv):
    return ZooCLI(
        task_base,  # any task: ImageClassifier, ObjectDetector (the recipe's class_path)
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_defaults=defaults,
        save_config_kwargs={"overwrite": True},
        args=argv,
        auto_configure_optimizers=False,
        parser_kwargs={"prog": "zoo", "description": "Train and evaluate zoo models (LightningCLI)."},
    )


# ---- recipes for the other commands ----------------------------------------------------------------
@dataclass
class Recipe:
    """A recipe resolved by LightningCLI: the instantiated task and datamodule, and the trainer settings."""

    path: Path
    model: Any
    datamodule: Any
    trainer: dict[str, Any]


def load_recipe(config: str, overrides: list[str]) -> Recipe:
    """Parse ``config`` (+ CLI-style ``overrides``) exactly as ``zoo fit`` does, without building a Trainer.

    Going through ``ZooCLI`` keeps every recipe feature (class paths, links such as ``num_classes``
    from the datamodule, seeds); skipping the Trainer keeps these commands from creating log folders.
    """
    from zoo.tasks.base import ZooTask

    check_recipe(config)  # missing, a folder, a text file, a CSV: one line naming it, before LightningCLI
    ZooCLI, _, L = _make_cli_class()

    class RecipeCLI(ZooCLI):
        def instantiate_trainer(self, **kwargs: Any) -> None:
            return None

    with warnings.catch_warnings():  # the recipe arrives through args=, by design, while sys.argv holds the command
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        cli = RecipeCLI(
            ZooTask,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=["--config", config, *overrides],
            run=False,
            auto_configure_optimizers=False,
            parser_kwargs={"prog": "zoo"},
        )
    trainer = cli.config.get("trainer")
    return Recipe(Path(config), cli.model, cli.datamodule, dict(vars(trainer)) if trainer is not None else {})


def tool_trainer(recipe: Recipe, **kwargs: Any):
    """A quiet Trainer for a tool run: the recipe's hardware and optimisation flags, no logs, no checkpoints."""
    import lightning as L

    keep = (
        "accelerator",
        "precision",
        "accumulate_grad_batches",
        "gradient_clip_val",
        "gradient_clip_algorithm",
        "deterministic",
    )
    settings = {key: recipe.trainer[key] for key in keep if recipe.trainer.get(key) is not None}
    settings.update(
        devices=1, logger=False, enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False
    )
    settings.update(kwargs)
    return L.Trainer(**settings)
