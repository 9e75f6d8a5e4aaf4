"""``--ckpt_path`` checked before any work: a readable Lightning checkpoint, of the recipe's own model.

LightningCLI reads a checkpoint's hyper-parameters over the recipe's (``LightningCLI._parse_ckpt_path``),
so a checkpoint of another architecture would silently replace the recipe's network. :func:`check_ckpt_model`
refuses that in one line, naming both models (and both tasks when they differ).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.errors import ZooError

SPECIAL_CKPT = ("last", "best", "hpc", "registry")


def check_ckpt_path(ckpt_path: str | None) -> dict[str, Any] | None:
    """``--ckpt_path`` must be a readable checkpoint, checked before any work (safely: weights_only).

    Returns the checkpoint (``None`` without a file: no ``--ckpt_path``, or Lightning's ``last``/``best``...).
    """
    if not ckpt_path or str(ckpt_path) in SPECIAL_CKPT:
        return None
    from zoo.files import is_lightning_checkpoint, read_pickle

    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise ZooError(f"no such checkpoint file: {ckpt_path}; give a runs/zoo/<run>/checkpoints/*.ckpt file")
    fix = "--ckpt_path takes a .ckpt file written by zoo fit (runs/zoo/<run>/checkpoints/*.ckpt)"
    checkpoint = read_pickle(path, fix=fix)  # a refused or unreadable pickle raises its one line here
    if not is_lightning_checkpoint(checkpoint):
        raise ZooError(f"{ckpt_path} is not a Lightning checkpoint; {fix}")
    return checkpoint


def _model_and_task(model_name: str, class_path: str | None) -> tuple[str, str | None]:
    """A model name and its task (the registry's, else the task class's name; ``None``: unknown)."""
    from zoo.errors import UnknownModelError
    from zoo.registry import get_entry

    try:
        import zoo.models  # noqa: F401  registers the families

        return model_name, get_entry(model_name).task
    except UnknownModelError:  # the recipe's own typo is reported by the parser, with the closest name
        return model_name, class_path.rpartition(".")[2] if class_path else None


def check_ckpt_model(ckpt_path: str, checkpoint: dict[str, Any], model: Any) -> None:
    """Refuse a checkpoint of another architecture or task than the recipe's model, before any work.

    Lightning reads ``--ckpt_path``'s hyper-parameters over the recipe's, so without this check a ResNet-20
    recipe given a LeNet-5 checkpoint trains (and exports) a LeNet-5, and exits 0.
    """
    hparams = checkpoint.get("hyper_parameters") or {}
    theirs = hparams.get("model_name")
    init = model.get("init_args") if hasattr(model, "get") else None
    ours = init.get("model_name") if hasattr(init, "get") else None
    if not isinstance(theirs, str) or not isinstance(ours, str):  # not a zoo task on one side: Lightning decides
        return
    their_class, our_class = hparams.get("_class_path"), model.get("class_path")
    if theirs == ours and (not their_class or not our_class or their_class == our_class):
        return
    (_, their_task), (_, our_task) = _model_and_task(theirs, their_class), _model_and_task(ours, our_class)
    if their_class and our_class and their_class != our_class and their_task == our_task:
        their_task, our_task = their_class.rpartition(".")[2], our_class.rpartition(".")[2]  # two task classes
    if their_task != our_task:
        theirs, ours = f"{theirs} ({their_task})", f"{ours} ({our_task})"
    raise ZooError(
        f"--ckpt_path {ckpt_path} is a checkpoint of {theirs}, but the recipe builds {ours}; resuming would "
        f"train the checkpoint's model instead: give a checkpoint of this recipe's runs, or the recipe of that run"
    )
