"""The ``zoo`` command: the command table and the entry point.

``zoo fit|validate|test|predict`` run the recipe machinery of :mod:`zoo.cli.recipe` (LightningCLI);
the other commands live in :mod:`zoo.cli.models` (list, info, classify, evaluate), :mod:`zoo.cli.craft`
(lr-find, overfit-batch, schedule), :mod:`zoo.cli.plot` and :mod:`zoo.cli.hub` (pull, push). A new command is a
``cmd_<name>(argv)`` function in one of them and one line in ``EXTRA_COMMANDS``.
"""

from __future__ import annotations

import logging
import sys

from zoo.cli import (  # light at import time: heavy libraries load inside the commands
    craft,
    explain,
    export,
    finetune,
    hub,
    models,
    plot,
    predict,
    prepare,
    segment,
)
from zoo.errors import ZooError

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
TRAINING_COMMANDS = (*LIGHTNING_COMMANDS, "finetune")  # runs whose hardware and stopping lines describe the run

EXTRA_COMMANDS = {
    "list": models.cmd_list,
    "info": models.cmd_info,
    "classify": models.cmd_classify,
    "evaluate": models.cmd_evaluate,
    "lr-find": craft.cmd_lr_find,
    "overfit-batch": craft.cmd_overfit_batch,
    "schedule": craft.cmd_schedule,
    "plot": plot.cmd_plot,
    "pull": hub.cmd_pull,
    "export": export.cmd_export,
    "attention": predict.cmd_attention,
    "explain": explain.cmd_explain,
    "filters": explain.cmd_filters,
    "activations": explain.cmd_activations,
    "dream": explain.cmd_dream,
    "finetune": finetune.cmd_finetune,
    "detect": predict.cmd_detect,
    "push": hub.cmd_push,
    "prepare": prepare.cmd_prepare,
    "segment": segment.cmd_segment,
}


def overview() -> str:
    return """usage: zoo COMMAND [options]     (zoo COMMAND --help for each)

Training (LightningCLI; every --trainer.*, --model.*, --data.* flag works):
  fit        train from a recipe:        zoo fit --config recipes/lenet5_fmnist.yaml
  validate   validate a model/checkpoint
  test       test a model/checkpoint
  finetune   fine-tune weights on your images: zoo finetune --model resnet20.fmnist --data photos/ -o my_model
             [--strategy linear_probe|full|freeze_unfreeze|gradual|layer_decay] (zoo finetune --help)
  prepare    images → LitData shards to stream, local or S3: zoo prepare photos/ --out s3://bucket/photos [--size 64]
  predict    classify image files/folders: zoo predict lenet5.fmnist samples/ [--top-k 3] [--json|--csv] [--onnx F];
             with --config first, LightningCLI's predict over a datamodule

Models and weights:
  list       registered models (zoo list 'res*' --pretrained)
  info       per-layer table: shapes, parameters, FLOPs, memory (zoo info lenet5)
  classify   classify image files (zoo classify lenet5.fmnist samples/*.png)
  evaluate   re-measure shipped weights on the Fashion-MNIST test set
  export     ONNX / torch.export file of weights (zoo export resnet20.fmnist -o resnet20.onnx)
  detect     boxes of a detector, drawn into a PNG (zoo detect MODEL scenes/*.png -o found.png)
  segment    per-pixel classes, drawn with a legend or as index PNGs (zoo segment MODEL scenes/ -o masks.png)
  attention  where a ViT/Swin looks, as a PNG (zoo attention MODEL samples/*.png -o att.png)
  explain    where the evidence for a class lies (zoo explain MODEL samples/ -o explain.png --method gradcam)
  filters    the first layer's filters as a grid (zoo filters MODEL -o filters.png)
  activations  one layer's feature maps for an image (zoo activations MODEL image.png --layer layer1 -o act.png)
  dream      the input a class likes best, by gradient ascent (zoo dream MODEL --class Sneaker -o dream.png)
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
    """``zoo COMMAND ...``: any error is one ``zoo: error:`` line and exit code 2; ``--debug`` (anywhere on
    the line, or ``ZOO_DEBUG=1``) shows the traceback instead. A command's own exit (``zoo predict`` with
    unreadable files, a failed ``zoo overfit-batch``) keeps its code."""
    import os

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("ZOO_DEBUG", "") not in ("", "0")
    argv = [arg for arg in argv if arg != "--debug"]
    _setup_logging()
    if not argv or argv[0] in ("-h", "--help"):
        print(overview(), end="")
        return
    if argv[0] in ("--version", "-V"):
        from zoo._version import __version__

        print(f"zoo {__version__}")
        return
    from zoo.cli.quiet import quiet_lightning

    command = argv[0]
    try:
        with quiet_lightning(training=command in TRAINING_COMMANDS):
            run_command(command, argv[1:])
    except KeyboardInterrupt:
        if debug:
            raise
        print("zoo: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except BrokenPipeError:  # `zoo predict ... --csv | head`: the reader has what it wanted; leave quietly
        if debug:
            raise
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's flush at exit would fail again on the closed pipe
        raise SystemExit(141) from None  # the shell's code for a writer stopped by SIGPIPE
    except Exception as err:
        if debug:
            raise
        print(f"zoo: error: {error_line(err)}", file=sys.stderr)
        raise SystemExit(2) from None


def run_command(command: str, rest: list[str]) -> None:
    """Dispatch ``zoo COMMAND REST...`` to its function (errors propagate to :func:`main`)."""
    if command == "predict" and predict.is_file_prediction(rest):  # zoo predict SOURCE PATH...
        predict.cmd_predict(rest)
    elif command == "predict" and rest and rest[0] in ("-h", "--help"):  # both forms, then LightningCLI's
        predict.print_help()
    elif command in LIGHTNING_COMMANDS:
        from zoo.cli.recipe import run_lightning

        run_lightning([command, *rest])
    elif command in EXTRA_COMMANDS:
        EXTRA_COMMANDS[command](rest)
    else:
        import difflib

        close = difflib.get_close_matches(command, [*LIGHTNING_COMMANDS, *EXTRA_COMMANDS], n=1)
        raise ZooError(
            f"unknown command {command!r}" + (f"; did you mean {close[0]!r}?" if close else "; see zoo --help")
        )


def error_line(err: BaseException) -> str:
    """The one line shown for ``err``: the zoo's own message, or ``<Type>: <first line>`` for anything else."""
    line = user_error_line(err)
    if line is not None:
        return line
    text = str(err).strip()
    first = text.splitlines()[0][:300] if text else "(no message)"
    return f"{type(err).__name__}: {first} (run with --debug for the traceback)"


def user_error_line(err: BaseException) -> str | None:
    """One line for an error caused by the user's input; ``None`` for anything else."""
    cause: BaseException | None = err
    while cause is not None:  # jsonargparse wraps errors raised while it builds the recipe's classes
        if isinstance(cause, ZooError):
            return " ".join(str(cause).split("\n")[0].split()) or type(cause).__name__
        cause = cause.__cause__ or cause.__context__
    if isinstance(err, FileNotFoundError):
        return f"no such file or folder: {err.filename or err}; check the path"
    if isinstance(err, PermissionError):
        return f"permission denied: {err.filename or err}; choose a path you can write to"
    for kind, what in (
        (NotADirectoryError, "is not a folder"),
        (IsADirectoryError, "is a folder"),
        (FileExistsError, "exists"),
    ):
        if isinstance(err, kind):
            return f"{err.filename or err} {what}; check the path"
    if type(err).__name__ == "MisconfigurationException":  # Lightning's word for settings that do not fit
        return str(err).strip().splitlines()[0] + " (see zoo fit --help)"
    return None


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (a test's capture, a redirect), not the one at creation."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _setup_logging() -> None:
    """zoo's INFO lines once each, without a handler on the root logger (Lightning has its own)."""
    logger = logging.getLogger("zoo")
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)  # the root logger gets no handler, so nothing prints twice


if __name__ == "__main__":
    main()
