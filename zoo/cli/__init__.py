"""The ``zoo`` command: the command table and the entry point.

``zoo fit|validate|test|predict`` run the recipe machinery of :mod:`zoo.cli.recipe` (LightningCLI);
the other commands live in :mod:`zoo.cli.models` (list, info, classify, evaluate), :mod:`zoo.cli.craft`
(lr-find, overfit-batch, schedule, plot) and :mod:`zoo.cli.hub` (pull, push). A new command is a
``cmd_<name>(argv)`` function in one of them and one line in ``EXTRA_COMMANDS``.
"""

from __future__ import annotations

import logging
import sys

from zoo.cli import craft, hub, models  # light at import time: heavy libraries load inside the commands
from zoo.errors import ZooError

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")

EXTRA_COMMANDS = {
    "list": models.cmd_list,
    "info": models.cmd_info,
    "classify": models.cmd_classify,
    "evaluate": models.cmd_evaluate,
    "lr-find": craft.cmd_lr_find,
    "overfit-batch": craft.cmd_overfit_batch,
    "schedule": craft.cmd_schedule,
    "plot": craft.cmd_plot,
    "pull": hub.cmd_pull,
    "push": hub.cmd_push,
}


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
    if argv[0] in ("--version", "-V"):
        from zoo._version import __version__

        print(f"zoo {__version__}")
        return
    command, rest = argv[0], argv[1:]
    try:
        if command in LIGHTNING_COMMANDS:
            from zoo.cli.recipe import run_lightning

            run_lightning(argv)
        elif command in EXTRA_COMMANDS:
            EXTRA_COMMANDS[command](rest)
        else:
            import difflib

            close = difflib.get_close_matches(command, [*LIGHTNING_COMMANDS, *EXTRA_COMMANDS], n=1)
            raise ZooError(
                f"unknown command {command!r}" + (f"; did you mean {close[0]!r}?" if close else "; see zoo --help")
            )
    except ZooError as err:
        print(f"zoo: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
