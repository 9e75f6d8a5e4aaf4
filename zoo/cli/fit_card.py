"""The end of ``zoo fit --card.name``: the best checkpoint, tested and validated, becomes a weight folder.

Its ``metrics.json`` carries what the run measured and the settings it trained with (``training``); a
card it replaces is summarised under ``replaces`` (its score, sha256, date and settings), so that the new
card says what changed. With ``--card.keep_better`` the old card stays unless the run beats it.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

from zoo.errors import ZooError

log = logging.getLogger("zoo")

# The recipe settings a card lists, by where they live in the resolved config. The speed switches
# (channels_last, compile, and the trainer's precision) are listed too: they do not change what is
# learnt in principle, but they say how the run was made, and bf16 changes its arithmetic.
_MODEL_SETTINGS = (
    "optimizer",
    "lr",
    "lr_scale",
    "momentum",
    "nesterov",
    "weight_decay",
    "scheduler",
    "warmup_epochs",
    "min_lr",
    "label_smoothing",
    "mixup",
    "cutmix",
    "model_kwargs",
    "pretrained",
    "channels_last",
    "compile",
)
_DATA_SETTINGS = ("batch_size", "augment", "shift_padding", "random_erasing")


def training_settings(config: Any) -> dict[str, Any]:
    """The settings of a ``fit`` config that shape the weights (optimiser, schedule, regularisation,
    augmentation, batch, epochs, callbacks such as the EMA with their arguments) and the speed switches
    (precision, channels_last, compile)."""

    def plain(value: Any) -> Any:
        if hasattr(value, "as_dict"):
            return value.as_dict()
        return value

    model = plain(config.get("model") or {})
    data = plain(config.get("data") or {})
    trainer = plain(config.get("trainer") or {})
    model_args, data_args = model.get("init_args") or {}, data.get("init_args") or {}
    settings: dict[str, Any] = {key: model_args[key] for key in _MODEL_SETTINGS if model_args.get(key) is not None}
    settings.update({key: data_args[key] for key in _DATA_SETTINGS if key in data_args})
    settings["max_epochs"] = trainer.get("max_epochs")
    settings["precision"] = trainer.get("precision")
    callbacks = trainer.get("callbacks") or []
    for callback in callbacks if isinstance(callbacks, list) else [callbacks]:
        if isinstance(callback, dict) and callback.get("class_path"):
            name = callback["class_path"].rsplit(".", 1)[-1]
            args = {k: v for k, v in (callback.get("init_args") or {}).items() if v is not None}
            settings[f"callback {name}"] = args
    return {key: value for key, value in settings.items() if value is not None}


def replaced_card(folder: Path) -> dict[str, Any] | None:
    """What a card about to be replaced was: its score, sha256, date and settings (``None``: no card)."""
    from zoo.cards import card_score
    from zoo.files import METRICS_FILE, read_json

    if not (folder / METRICS_FILE).is_file():
        return None
    try:
        old = read_json(folder / METRICS_FILE)
    except ZooError:  # an unreadable card is replaced all the same; the new one cannot say what it was
        return None
    score = card_score(old)
    summary = {"score": list(score) if score else None, "sha256": old.get("sha256"), "date": old.get("date")}
    summary.update({"recipe": old.get("recipe"), "epochs": old.get("epochs"), "training": old.get("training")})
    return summary


def check_card_name(model: Any, name: str) -> None:
    """``--card.name`` is ``<this model's architecture>.<tag>``, or a one-line error."""
    from zoo.registry import split_name

    arch, tag = split_name(name)
    if arch != model.hparams.model_name or tag is None:
        raise ZooError(f"--card.name must be '{model.hparams.model_name}.<tag>' for this model, got {name!r}")


def check_card_target(model: Any, name: str, output_dir: Path, overwrite: bool) -> None:
    """Before training: ``--card.name`` fits the model, and its folder is new unless ``--card.overwrite``."""
    from zoo.cards import check_target
    from zoo.destinations import check_output_folder

    check_card_name(model, name)
    check_output_folder(output_dir, option="--card.output_dir")  # a file there would fail only after training
    folder = output_dir.expanduser() / name
    try:
        target = check_target(folder)
    except ZooError as err:
        if "overwrite=True" not in str(err):
            raise
        raise ZooError(  # --card.overwrite replaces a weight folder; it never writes into a folder of other files
            f"{folder} already holds files that are not zoo weights, and fit writes a card only into a new "
            "folder or over a weight folder (--card.overwrite too); give another --card.name or --card.output_dir"
        ) from None
    if target == "replace" and not overwrite:
        raise ZooError(
            f"{folder} already exists and fit would replace it; pass --card.overwrite true (or --card.keep_better "
            "true: replaced only if this run beats it), another --card.name, or --card.output_dir elsewhere "
            "(--card.name null writes no card)"
        )


def export_card(cli: Any, name: str, output_dir: Path, wall_time: float, *, keep_better: bool = False) -> Path | None:
    """Best checkpoint → test + validate with it → ``output_dir/<name>/`` (weights, config, metrics, card).

    With ``keep_better`` an existing card there is replaced only when this run's score (:func:`zoo.cards.card_score`)
    is higher; otherwise the new card is written to ``<run folder>/cards/<name>`` and the old one stays.
    """
    from zoo.cards import FLOAT32, card_score, format_score, is_float32
    from zoo.energy import energy_of
    from zoo.loggers import hardware
    from zoo.registry import get_weights

    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    check_card_name(model, name)
    best = getattr(trainer.checkpoint_callback, "best_model_path", None) or None
    from zoo.callbacks import use_best_weights

    use_best_weights(trainer, model, best)
    if is_float32(trainer.precision) or trainer.world_size > 1:  # several processes test together, as trained
        test = trainer.test(model, datamodule=data, verbose=False)[0]
        val = trainer.validate(model, datamodule=data, verbose=False)[0]
        measured, measured_in = {**model.card_test_metrics(test, val), **model.card_test_details()}, trainer.precision
    else:  # trained in bf16/fp16: the card's numbers as zoo evaluate measures them, in float32
        from zoo.evaluate import measure_for_card

        limits = {key: getattr(trainer, key) for key in ("limit_test_batches", "limit_val_batches")}
        measured, measured_in = measure_for_card(model, data, **limits), FLOAT32
    if not trainer.is_global_zero:
        return None
    details = model.card_test_details()
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
        **{k: v for k, v in measured.items() if k not in details},  # the task's numbers: accuracy, or mAP
        "epochs": trainer.current_epoch,
        "best_epoch": int(match.group(1)) + 1 if match else trainer.current_epoch,
        "wall_time_s": round(wall_time, 1),
        "hardware": hardware(),
        **energy_of(trainer),  # codecarbon's energy and CO2 of the fit (zoo.energy)
        "precision": str(trainer.precision),
        "test_precision": str(measured_in),
        "devices": trainer.num_devices,
        "recipe": str(recipes[-1].relative if hasattr(recipes[-1], "relative") else recipes[-1]) if recipes else None,
        "seed": cli.config.fit.get("seed_everything"),
        "license": license_,
        "date": time.strftime("%Y-%m-%d"),
        **{k: v for k, v in measured.items() if k in details},  # a confusion matrix, AP per class
    }
    subset = getattr(getattr(data, "hparams", None), "get", lambda key: None)("classes")
    if subset:  # trained and measured on some classes only (Fashion-MNIST 0-4 for the transfer experiment)
        metrics["data_classes"] = list(subset)
    if getattr(data, "test_split", "test") != "test":  # your data without a test set: the card says so
        metrics["test_split"] = data.test_split
    metrics["training"] = training_settings(cli.config.fit)
    if getattr(model, "started_from", None):  # trained on from earlier weights: their card's budget comes along
        metrics["started_from"] = model.started_from
    score, target = card_score(metrics), output_dir / name
    replaced = replaced_card(target)
    old = tuple(replaced["score"]) if replaced and replaced["score"] else None
    if keep_better and old is not None and score is not None and not model.description.better(score[1], old[1]):
        target = Path(trainer.log_dir or trainer.default_root_dir) / "cards" / name
        log.info(
            "kept %s (%s): this run's %s does not beat it; its card is in %s",
            output_dir / name,
            format_score(old),
            format_score(score),
            target,
        )
    elif replaced is not None:
        metrics["replaces"] = replaced
    folder = model.save_pretrained(target, name=name, metrics=metrics)
    beaten = f", replacing {format_score(old)}" if old is not None and target == output_dir / name else ""
    log.info("wrote %s (%s%s)", folder, format_score(score) if score else "not measured", beaten)
    return folder
