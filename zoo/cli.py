"""The ``zoo`` command.

``zoo fit|validate|test|predict --config recipes/<recipe>.yaml`` is Lightning's own ``LightningCLI``
(every ``--trainer.*``, ``--model.*``, ``--data.*`` flag works); zoo adds defaults (rich progress bar,
best-val-accuracy checkpoint + ``last.ckpt``, LR monitor, CSV + TensorBoard logs, the resolved config
saved with each run) and, with ``--card.name arch.tag``, turns the best checkpoint into a weight folder
with a card when ``fit`` ends. The other commands (``list``, ``info``, ``classify``, ``evaluate``)
are plain argparse.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

from zoo import craft  # light at import time: Lightning and matplotlib load inside the commands
from zoo import hub  # light at import time: huggingface_hub loads inside the commands
from zoo.errors import ZooError

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
log = logging.getLogger("zoo")


def _console():
    import shutil

    from rich.console import Console

    # piped output (tests, `| less`) gets a wide table rather than rich's 80-column default
    return Console(width=shutil.get_terminal_size((160, 24)).columns)


# ---- LightningCLI ---------------------------------------------------------------------------------
def hardware() -> str:
    """A short description of what ran: accelerator, processor, core count, library versions."""
    import lightning
    import torch

    if torch.cuda.is_available():
        device = f"{torch.cuda.device_count()}× {torch.cuda.get_device_name(0)}"
    else:
        cpu = platform.processor() or platform.machine()
        try:
            cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
        device = f"CPU {cpu}, {os.cpu_count()} cores"
    return f"{device}, {torch.get_num_threads()} threads; torch {torch.__version__}, lightning {lightning.__version__}"


def _make_cli_class():
    """Built lazily so that ``import zoo.cli`` (and ``zoo list``) does not import Lightning."""
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar, Timer
    from lightning.pytorch.cli import LightningCLI

    from zoo.callbacks import KeepBestEarlyStopping, TestReport, TrainingHistograms

    class ZooCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
            parser.set_defaults(
                {
                    "checkpoint.monitor": "val_acc",
                    "checkpoint.mode": "max",
                    "checkpoint.filename": "best-{epoch:02d}-{val_acc:.4f}",
                }
            )
            # Always present, off until asked: --early_stopping.patience N, --histograms.every_n_steps N.
            parser.add_lightning_class_args(KeepBestEarlyStopping, "early_stopping")
            parser.add_lightning_class_args(TrainingHistograms, "histograms")
            parser.add_lightning_class_args(TestReport, "test_report")
            parser.add_argument("--card.name", type=str | None, default=None, help="export the best checkpoint as model_cards/<arch.tag> when fit ends")
            parser.add_argument("--card.output_dir", type=str, default="model_cards", help="folder that receives the weight folder")
            parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
            parser.link_arguments("data.class_names", "model.init_args.class_names", apply_on="instantiate")

        def before_instantiate_classes(self) -> None:
            config = self.config.get(str(self.subcommand), self.config)
            loggers = config.get("trainer", {}).get("logger")
            # One folder per run for both loggers. DDP workers are re-launched copies of this command
            # (LOCAL_RANK set): they inherit the launcher's version instead of making their own.
            if "LOCAL_RANK" not in os.environ or "ZOO_RUN_VERSION" not in os.environ:
                now = time.time()
                os.environ["ZOO_RUN_VERSION"] = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f"-{int(now * 1000) % 1000:03d}"
            version = os.environ["ZOO_RUN_VERSION"]
            for logger in loggers if isinstance(loggers, list) else []:
                init = logger.get("init_args", {}) if hasattr(logger, "get") else {}
                if "version" in init and init["version"] is None:
                    init["version"] = version

        def _instantiate_trainer(self, config: dict[str, Any], callbacks: list) -> L.Trainer:
            # Defaults that must step aside when the user turns their feature off (Lightning refuses
            # a progress bar callback with enable_progress_bar=False, an LR monitor without a logger).
            if config.get("enable_checkpointing") is not False:
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
            return super()._instantiate_trainer(config, callbacks)

        def after_fit(self) -> None:
            name = self.config.fit.card.name
            if name:
                timer = next(callback for callback in self.trainer.callbacks if isinstance(callback, Timer))
                export_card(self, name, Path(self.config.fit.card.output_dir), timer.time_elapsed("train"))

    defaults = {
        "logger": [
            {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "runs", "name": "zoo", "version": None}},
            {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": "runs", "name": "zoo", "version": None, "default_hp_metric": False},
            },
        ],
    }
    return ZooCLI, defaults, L


def export_card(cli: Any, name: str, output_dir: Path, wall_time: float) -> Path | None:
    """Best checkpoint → test + validate with it → ``output_dir/<name>/`` (weights, config, metrics, card)."""
    from zoo.cards import model_config, write_folder
    from zoo.inspect import count_flops
    from zoo.registry import get_weights, split_name

    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    arch, tag = split_name(name)
    if arch != model.hparams.model_name or tag is None:
        raise ZooError(f"--card.name must be '{model.hparams.model_name}.<tag>' for this model, got {name!r}")
    best = trainer.checkpoint_callback.best_model_path or None
    use_best_weights(trainer, model, best)
    test = trainer.test(model, datamodule=data, verbose=False)[0]
    val = trainer.validate(model, datamodule=data, verbose=False)[0]
    if not trainer.is_global_zero:
        return None
    match = re.search(r"epoch=(\d+)", Path(best).name) if best else None
    recipes = cli.config.fit.get("config") or []
    try:
        weights_meta = get_weights(name)
        license_ = weights_meta.license
    except ZooError:  # a new tag that the registry does not list yet
        license_ = "apache-2.0"
    metrics = {
        "name": name,
        "dataset": getattr(data, "dataset_name", type(data).__name__),
        "test_acc": test["test_acc"],
        "test_acc5": test["test_acc5"],
        "test_loss": test["test_loss"],
        "test_samples": int(model.confusion_matrix.sum()),
        "val_acc": val["val_acc"],
        "val_loss": val["val_loss"],
        "params": sum(p.numel() for p in model.net.parameters()),
        "flops": count_flops(model.net, model.input_size),
        "epochs": trainer.current_epoch,
        "best_epoch": int(match.group(1)) + 1 if match else trainer.current_epoch,
        "wall_time_s": round(wall_time, 1),
        "hardware": hardware(),
        "precision": str(trainer.precision),
        "devices": trainer.num_devices,
        "recipe": str(recipes[-1].relative if hasattr(recipes[-1], "relative") else recipes[-1]) if recipes else None,
        "seed": cli.config.fit.get("seed_everything"),
        "license": license_,
        "date": time.strftime("%Y-%m-%d"),
        "confusion_matrix": model.confusion_matrix.tolist(),
    }
    state = model.net.state_dict()
    folder = write_folder(output_dir / name, state, model_config(model, name), metrics)
    log.info("wrote %s (test top-1 %.2f%%)", folder, 100 * metrics["test_acc"])
    return folder


def use_best_weights(trainer: Any, model: Any, best: str | None) -> None:
    """Put the best checkpoint's weights into ``model`` and stop weight averaging, before the card's test.

    With Lightning's ``WeightAveraging``/``EMAWeightAveraging`` a checkpoint's ``state_dict`` holds the
    averaged weights (the ones validated and monitored), but ``trainer.test(ckpt_path=...)`` would reload
    the raw ones through the callback, and a later ``validate`` would swap in the last average. So the
    averaged state is loaded here and the callbacks leave the trainer: test and card see the same weights.
    """
    import torch
    from lightning.pytorch.callbacks import WeightAveraging

    trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, WeightAveraging)]
    if best:  # the run's own checkpoint, written by this process
        model.load_state_dict(torch.load(best, map_location=model.device, weights_only=False)["state_dict"])


def run_lightning(argv: list[str]):
    """Run a LightningCLI subcommand; returns the CLI object (its ``trainer``, ``model``, ``datamodule``)."""
    from zoo.tasks.classification import ImageClassifier

    ZooCLI, defaults, L = _make_cli_class()
    return ZooCLI(
        ImageClassifier,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_defaults=defaults,
        save_config_kwargs={"overwrite": True},
        args=argv,
        auto_configure_optimizers=False,
        parser_kwargs={"prog": "zoo", "description": "Train and evaluate zoo models (LightningCLI)."},
    )


# ---- zoo list / info / classify / evaluate --------------------------------------------------------
def cmd_list(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="zoo list", description="List registered models and their weights.")
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'res*'")
    parser.add_argument("--pretrained", action="store_true", help="only models with trained weights")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table with FLOPs and shipped accuracy (for the README)")
    parser.add_argument("--flops", action="store_true", help="add a GFLOPs-per-image column (builds each network on the meta device)")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(registry_markdown(args.pattern, pretrained=args.pretrained) + "\n")
        return
    from rich.table import Table

    from zoo.registry import get_entry, list_models

    entries = [get_entry(name) for name in list_models(args.pattern, pretrained=args.pretrained)]
    extra = list(dict.fromkeys(key for entry in entries for key in entry.columns))  # e.g. EfficientNet's φ, multipliers
    table = Table("model", "family", "input", "params", *(["GFLOPs"] if args.flops else []), *extra, "weights")
    for entry in entries:
        table.add_row(entry.name, entry.family, "×".join(map(str, entry.input_size)), f"{entry.num_params:,}",
                      *([f"{_gflops(entry.name):.3f}"] if args.flops else []), *(entry.columns.get(k, "") for k in extra),
                      ", ".join(f"{entry.name}.{t}" for t in entry.weights) or "–")
    _console().print(table)


def _gflops(name: str) -> float:
    """FLOPs per image at the model's input size, in billions (shapes only, on the meta device)."""
    import torch

    from zoo.inspect import count_flops
    from zoo.registry import build_net, get_entry

    with torch.device("meta"):  # no memory, no arithmetic, even for VGG-19 at 224 px
        return count_flops(build_net(name), get_entry(name).input_size) / 1e9


def registry_markdown(pattern: str = "*", pretrained: bool = False) -> str:
    """The registry as a Markdown table: parameters and FLOPs recomputed, accuracies read from the cards' metrics.json."""
    from zoo.registry import get_entry, list_models
    from zoo.weights import METRICS_FILE, bundled_cards_dir, read_json

    lines = ["| model | family | input | params | GFLOPs | weights (test top-1) |", "|---|---|---|---:|---:|---|"]
    for name in list_models(pattern, pretrained=pretrained):
        entry = get_entry(name)
        shipped = []
        for tag, weights in entry.weights.items():
            metrics = bundled_cards_dir() / f"{name}.{tag}" / METRICS_FILE
            accuracy = f" ({100 * read_json(metrics)['test_acc']:.2f}% {weights.dataset})" if metrics.is_file() else ""
            shipped.append(f"`{name}.{tag}`{accuracy}")
        family = entry.family + (f" ({', '.join(f'{k} {v}' for k, v in entry.columns.items())})" if entry.columns else "")
        lines.append(f"| `{name}` | {family} | {'×'.join(map(str, entry.input_size))} | {entry.num_params:,} | "
                     f"{_gflops(name):.3f} | {', '.join(shipped) or '–'} |")
    return "\n".join(lines)


def _human_count(n: float) -> str:
    for unit in ("", "K", "M", "G"):
        if n < 1000 or unit == "G":
            return f"{n:.3g}{unit}"
        n /= 1000
    return f"{n:.3g}G"


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} GB"


def cmd_info(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="zoo info", description="Per-layer table: output shape, parameters, FLOPs, activation memory.")
    parser.add_argument("name", help="model name (zoo list) or arch.tag")
    parser.add_argument("--batch-size", type=int, default=1, help="batch size for the memory totals")
    parser.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"), help="override the input size")
    parser.add_argument("--num-classes", type=int, default=None)
    args = parser.parse_args(argv)
    from rich.table import Table

    from zoo.inspect import layer_table
    from zoo.registry import build_net, get_entry

    entry = get_entry(args.name)
    kwargs: dict = {}
    if args.input_size:
        kwargs["in_chans"] = args.input_size[0]
        if entry.fixed_input_size:  # a flatten→linear head: build the network for that size (alexnet: 227 or 224)
            kwargs["img_size"] = args.input_size[1]
    net = build_net(entry.name, num_classes=args.num_classes, **kwargs)
    input_size = tuple(args.input_size) if args.input_size else tuple(getattr(net, "input_size", entry.input_size))
    try:
        table = layer_table(net, input_size, batch_size=args.batch_size)
    except (RuntimeError, ValueError) as error:  # e.g. an image too small for the pools
        raise ZooError(f"{entry.name} cannot take a {'×'.join(map(str, input_size))} input ({str(error).splitlines()[0]}); "
                       f"try its default {'×'.join(map(str, entry.input_size))}") from error
    console = _console()
    console.print(f"[bold]{entry.name}[/bold] ({entry.family}) — {entry.paper}" if entry.paper else f"[bold]{entry.name}[/bold]")
    out = Table("layer", "type", "output (C×H×W)", "params", "% params", "FLOPs", "activations")
    for row in table.rows:
        out.add_row(row.name, row.kind, "×".join(map(str, row.output_shape)), f"{row.params:,}" if row.params else "",
                    f"{100 * row.params / table.total_params:.1f}" if row.params else "", f"{row.flops:,}" if row.flops else "",
                    f"{row.activations:,}")
    console.print(out)
    memory = table.memory()
    doc = (sys.modules[type(net).__module__].__doc__ or "")
    console.print(f"input {'×'.join(map(str, input_size))} · parameters [bold]{table.total_params:,}[/bold] · "
                  f"FLOPs/image {table.total_flops:,} ({_human_count(table.total_flops / 2)} multiply-adds)")
    console.print(f"activations per image {table.activations:,} values = {_human_bytes(table.activations * 4)} fp32 "
                  f"(input + every layer's output); {table.new_activations:,} = {_human_bytes(table.new_activations * 4)} "
                  "without the outputs that reuse their input's memory (in-place ReLU, Flatten, Identity, eval Dropout)")
    console.print(f"at batch {args.batch_size}: weights {_human_bytes(memory['parameters'])}, stored for backward "
                  f"{_human_bytes(memory['activations_for_backward'])}, training with SGD+momentum ≈ "
                  f"{_human_bytes(memory['train_sgd_momentum'])}, with Adam ≈ {_human_bytes(memory['train_adam'])}")
    console.print("by output size (share of activations / of parameters): " + where_memory_and_parameters_are(table))
    for key, value in getattr(net, "metadata", {}).items():  # family-specific facts, e.g. EfficientNet's scaling
        console.print(f"{key}: {value}")
    note = re.search(r"The course's hand count[^\n]*(?:\n(?!\n)[^\n]*)*", doc)
    if note:
        console.print(note.group(0).replace("\n", " "))


def where_memory_and_parameters_are(table) -> str:
    """Each output resolution's share of the activations and of the parameters (the layers that output it)."""
    groups: dict[str, list[int]] = {}
    for row in table.rows:
        shape = tuple(row.output_shape)
        key = (shape[-2], shape[-1]) if len(shape) == 3 else (0, 0)  # (0, 0): vectors (FC layers, pooled features)
        acts, params = groups.setdefault(key, [0, 0])
        groups[key] = [acts + row.activations, params + row.params]
    acts_total = sum(a for a, _ in groups.values()) or 1
    params_total = sum(p for _, p in groups.values()) or 1
    return " · ".join(
        f"{f'{h}×{w}' if h else 'vectors'} {100 * a / acts_total:.0f}% / {100 * p / params_total:.1f}%"
        for (h, w), (a, p) in sorted(groups.items(), key=lambda item: -item[0][0] * item[0][1])
    )


def read_image(path: str, channels: int):
    """A file as a uint8 ``(C, H, W)`` tensor with the model's channel count (grey or RGB)."""
    from torchvision.io import ImageReadMode, decode_image

    mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
    if not Path(path).is_file():
        raise ZooError(f"image file {path} does not exist; check the path")
    try:
        return decode_image(path, mode=mode)
    except (RuntimeError, OSError, ValueError) as err:
        raise ZooError(f"cannot read image {path} ({err}); give PNG or JPEG files") from None


def classify_files(weights: str, paths: list[str], top_k: int = 1) -> list[list[tuple[str, float]]]:
    """Top-k ``(class name, probability)`` for each image file, resized to the model's input if needed."""
    import torch
    from torchvision.transforms.v2.functional import resize

    import zoo

    model = zoo.load(weights)
    channels, height, width = model.input_size
    images = []
    for path in paths:
        image = read_image(path, channels)
        if image.shape[1:] != (height, width):
            image = resize(image, [height, width], antialias=True)
        images.append(image)
    probs = model.predict_proba(torch.stack(images).float() / 255)
    top = probs.topk(min(top_k, probs.shape[1]), dim=1)
    return [
        [(model.class_names[i], p) for i, p in zip(indices.tolist(), values.tolist())]
        for values, indices in zip(top.values, top.indices)
    ]


def cmd_classify(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="zoo classify", description="Classify image files with trained weights.")
    parser.add_argument("weights", help="arch.tag (zoo list --pretrained) or a weight folder")
    parser.add_argument("images", nargs="+", help="PNG/JPEG files")
    parser.add_argument("--top-k", type=int, default=1)
    args = parser.parse_args(argv)
    from rich.table import Table

    table = Table("image", "prediction", "confidence")
    for path, top in zip(args.images, classify_files(args.weights, args.images, args.top_k)):
        table.add_row(Path(path).name, " / ".join(name for name, _ in top), " / ".join(f"{100 * p:.1f}%" for _, p in top))
    _console().print(table)


def cmd_evaluate(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="zoo evaluate", description="Measure trained weights on the Fashion-MNIST test set (10,000 images).")
    parser.add_argument("weights", help="arch.tag or a weight folder")
    parser.add_argument("--data-root", default=None, help="folder with the Fashion-MNIST IDX files")
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args(argv)
    import zoo
    from zoo.evaluate import evaluate_classifier

    model = zoo.load(args.weights)
    result = evaluate_classifier(model, root=args.data_root, batch_size=args.batch_size)
    _console().print(f"{args.weights}: test top-1 {100 * result['test_acc']:.2f}%, top-5 {100 * result['test_acc5']:.2f}% "
                     f"on {result['test_samples']:,} images")


EXTRA_COMMANDS = {"list": cmd_list, "info": cmd_info, "classify": cmd_classify, "evaluate": cmd_evaluate,
                  "lr-find": craft.cmd_lr_find, "overfit-batch": craft.cmd_overfit_batch,
                  "schedule": craft.cmd_schedule, "plot": craft.cmd_plot,
                  "pull": hub.cmd_pull, "push": hub.cmd_push}


def overview() -> str:
    return """usage: zoo COMMAND [options]     (zoo COMMAND --help for each)

Training (LightningCLI; every --trainer.*, --model.*, --data.* flag works):
  fit        train from a recipe:        zoo fit --config recipes/lenet5_fmnist.yaml
  validate   validate a model/checkpoint
  test       test a model/checkpoint
  predict    run predict_step over a datamodule

Models and weights:
  list       registered models (zoo list 'res*' --pretrained)
  info       per-layer table: shapes, parameters, FLOPs, memory (zoo info lenet5)
  classify   classify image files (zoo classify lenet5.fmnist samples/*.png)
  evaluate   re-measure shipped weights on the Fashion-MNIST test set
  pull       download weights for offline use (zoo pull resnet18.tv_in1k hf-hub:org/name)
  push       upload a weight folder to the Hugging Face Hub (zoo push model_cards/lenet5.fmnist --repo org/name)

Training craft (the recipe's options can be overridden as with fit):
  lr-find        LR range test, PNG + suggestion (zoo lr-find --config R -o lr_find.png --apply R2.yaml)
  overfit-batch  can the model learn one minibatch? (zoo overfit-batch --config R --steps 200)
  schedule       plot the LR schedule before training (zoo schedule --config R -o lr.png [--all])
  plot           train/val curves from a run's CSV log (zoo plot runs/zoo/<version> -o curves.png)
  fit flags      --early_stopping.patience 5 (keeps the best weights), --histograms.every_n_steps 50,
                 --trainer.accumulate_grad_batches 4, --trainer.gradient_clip_val 1.0
"""


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not argv or argv[0] in ("-h", "--help"):
        print(overview(), end="")
        return
    command, rest = argv[0], argv[1:]
    try:
        if command in LIGHTNING_COMMANDS:
            run_lightning(argv)
        elif command in EXTRA_COMMANDS:
            EXTRA_COMMANDS[command](rest)
        else:
            import difflib

            close = difflib.get_close_matches(command, [*LIGHTNING_COMMANDS, *EXTRA_COMMANDS], n=1)
            raise ZooError(f"unknown command {command!r}" + (f"; did you mean {close[0]!r}?" if close else "; see zoo --help"))
    except ZooError as err:
        print(f"zoo: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
