"""Writing a weight folder (``model_cards/<arch.tag>/``) and rendering its model card.

Every number in a card comes from ``metrics.json``, which the training run (or an evaluation run)
wrote; the README is rendered from ``config.json`` + ``metrics.json`` and never edited by hand. The
task hands over both dictionaries (its ``config.json`` and what was measured); nothing is computed here.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from zoo.destinations import check_output_folder
from zoo.errors import ZooError
from zoo.files import (
    CARD_FILE,
    CONFIG_FILE,
    CONFIG_HASH_KEY,
    FOLDER_FILES,
    METRICS_FILE,
    WEIGHTS_FILE,
    config_sha256,
    sha256_file,
)
from zoo.task_descriptions import Score, descriptions, get_task, score_of


def card_score(metrics: dict[str, Any]) -> tuple[str, float] | None:
    """The number weights of one task are compared by, from their ``metrics.json``: ``("top-1", 0.9184)``
    for a classifier, ``("mAP@0.5", 0.835)`` for a detector (the task description's ``score``, the figure
    the tests re-measure); ``None`` for weights nobody measured."""
    found = score_of(metrics)
    return (found[0].label, found[1]) if found else None


START_KEYS = ("sha256", "epochs", "wall_time_s", "hardware", "recipe", "date", "started_from")


def start_summary(source: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """What a training run started from (``pretrained=``): the source, and what its card says of it (score,
    sha256, epochs, wall time, and what *it* started from), so that a weight's card carries its whole budget."""
    score = card_score(metrics)
    summary: dict[str, Any] = {"source": str(source), "score": list(score) if score else None}
    summary.update({key: metrics[key] for key in START_KEYS if metrics.get(key) is not None})
    return summary


def budget_chain(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs behind a weight, first run first: the ``started_from`` chain, then this card's own run."""
    chain = [metrics]
    while isinstance(chain[-1].get("started_from"), dict):
        chain.append(chain[-1]["started_from"])
    return chain[::-1]


def _start_line(start: dict[str, Any]) -> str:
    score = format_score(tuple(start["score"])) if start.get("score") else "not measured"
    runs = budget_chain(start)
    epochs = sum(run.get("epochs") or 0 for run in runs)
    minutes = sum(run.get("wall_time_s") or 0 for run in runs) / 60
    budget = f", {epochs} epoch{'s' if epochs != 1 else ''}, {minutes:.1f} min" if epochs else ""
    sha = f"; sha256 `{start['sha256'][:12]}…`" if start.get("sha256") else ""
    return f"| started from | `{start['source']}` ({score}{budget}{sha}) |"


def format_score(score: tuple[str, float]) -> str:
    """``91.84%`` (top-1 accuracy) or ``mAP@0.5 0.835``, as the task whose score it is shows it."""
    label, value = score
    shown = next((d.score for d in descriptions() if d.score.label == label), Score(label, label, percent=False))
    return shown.format(value)


def backbone_start(metrics: dict[str, Any]) -> str:
    """Where a detector's backbone started: zoo weights, or a random initialisation."""
    start = metrics.get("backbone_weights")
    return f"`{start}`" if start else "random initialisation"


def _fmt_pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def _load_line(name: str) -> str:
    """The card's ``zoo.load`` line: the name where the registry knows it, else this folder's path (a
    fine-tuned ``resnet20.my_digits`` is no registered name, so ``zoo.load("resnet20.my_digits")`` would fail)."""
    from zoo.registry import list_weights

    if name in list_weights():
        return f'model = zoo.load("{name}")          # LightningModule in eval mode, normalisation inside'
    return (
        f'model = zoo.load("path/to/{name}")  # this folder (or "hf-hub:ORG/REPO" once pushed); eval mode, '
        "normalisation inside"
    )


def render_card(config: dict[str, Any], metrics: dict[str, Any]) -> str:
    """The README.md of a weight folder, Hugging Face model-card style (YAML metadata first)."""
    name = config["name"]
    dataset = metrics.get("dataset", "")
    task = config.get("task", "image-classification")
    description = get_task(task)
    from huggingface_hub import EvalResult, ModelCardData

    from zoo.energy import co2_eq_emissions

    headline = description.card_rows[0].key  # the first row: the model-index result
    kind, label = description.model_index
    results = []
    if metrics.get(headline) is not None:  # weights nobody measured yet have no results
        results.append(
            EvalResult(
                task_type=task,
                dataset_type=dataset,
                dataset_name=dataset,
                dataset_split="test",
                metric_type=kind,
                metric_value=round(
                    description.model_index_scale * metrics[headline], 4 if description.model_index_scale == 1 else 2
                ),
                metric_name=label,
            )
        )
    card_data = ModelCardData(  # huggingface_hub builds and checks the metadata, model-index included
        library_name="zoo",
        license=metrics.get("license", "apache-2.0"),
        tags=[task, "zoo", "lightning", config["architecture"]],
        datasets=[dataset] if dataset else None,
        metrics=[kind],
        model_name=name if results else None,
        eval_results=results or None,
        co2_eq_emissions=co2_eq_emissions(metrics),  # measured runs only (zoo.energy); None is left out
    )
    lines = ["---", card_data.to_yaml().rstrip(), "---", "", f"# {name}", ""]
    if metrics.get("finetuned_from"):
        origin = (
            f"`{config['architecture']}` fine-tuned from `{metrics['finetuned_from']}` with the "
            f"`{metrics.get('strategy', 'full')}` strategy on {dataset}; the numbers below were measured on its "
            f"validation set ({metrics.get('val_samples', '?')} images) and written to `metrics.json`."
        )
        if metrics.get("val_classes_without_images"):
            missing = metrics["val_classes_without_images"]
            origin += (
                f" The validation set holds no image of {len(missing)} class(es) ({', '.join(missing)}): "
                "its accuracy measures the other classes only."
            )
    elif metrics.get("recipe"):
        subset = metrics.get("data_classes")
        on = f"{dataset} (classes {', '.join(map(str, subset))} only)" if subset else dataset
        origin = (
            f"`{config['architecture']}` trained on {on} by the recipe `{metrics['recipe']}`; every number "
            "below was measured by that run and written to `metrics.json`."
        )
    else:
        origin = f"`{config['architecture']}` weights saved with zoo; numbers not measured yet are shown as –."
    if metrics.get("test_split") == "val":
        origin += (
            " The data had no separate test set: the test rows were measured on the validation images,"
            " which also chose the best checkpoint."
        )
    lines += [
        origin,
        "",
        "| metric | value |",
        "| --- | --- |",
        *(
            f"| {row.label.format(test_samples=metrics.get('test_samples', '?'))} | {row.cell(metrics.get(row.key))} |"
            for row in description.card_rows
            if not (metrics.get("finetuned_from") and metrics.get(row.key) is None)  # a fine-tune measures val only
        ),
        *([f"| backbone started from | {backbone_start(metrics)} |"] if "backbone_weights" in metrics else []),
        f"| parameters | {metrics.get('params', 0):,} |",
        f"| FLOPs per image (forward) | {metrics.get('flops', 0):,} |",
        f"| input | {' × '.join(str(s) for s in config['input_size'])}, pixels in [0, 1] |",
        f"| epochs (best at) | {metrics.get('epochs', '?')} ({metrics.get('best_epoch', '?')}) |",
        f"| training wall time | {metrics.get('wall_time_s', 0) / 60:.1f} min on {metrics.get('hardware', '?')} |",
        *([_start_line(metrics["started_from"])] if isinstance(metrics.get("started_from"), dict) else []),
        *_precision_rows(metrics, description.score),
        f"| weights sha256 | `{metrics.get('sha256', '')}` |",
        "",
        "## Use",
        "",
        "```python",
        "import zoo",
        _load_line(name),
        description.usage.format(shape=", ".join(str(s) for s in config["input_size"])),
        "```",
        "",
        f"Classes: {', '.join(config['class_names'])}.",
        "",
        "Normalisation (inside the model): mean "
        + ", ".join(f"{m:.4f}" for m in config["mean"])
        + ", std "
        + ", ".join(f"{s:.4f}" for s in config["std"])
        + ".",
    ]
    lines += _training_lines(metrics)
    per_class = metrics.get("map_per_class")
    if per_class:
        lines += ["", "## Test AP per class (mAP@[.5:.95])", "", "| class | AP |", "| --- | --- |"]
        lines += [f"| {cls} | {_fmt_pct(ap)} |" for cls, ap in per_class.items()]
    confusion = metrics.get("confusion_matrix")
    if confusion:
        short = [c.split("/")[0][:8] for c in config["class_names"]]
        lines += ["", "## Test confusion matrix (rows: true class, columns: predicted)", ""]
        lines += ["| | " + " | ".join(short) + " |", "|---" * (len(short) + 1) + "|"]
        lines += [f"| **{short[i]}** | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(confusion)]
    return "\n".join(lines) + "\n"


FLOAT32 = "32-true"  # Lightning's name of the precision zoo evaluate, zoo.load and predict_proba run in


def measured_precision(metrics: dict[str, Any]) -> str:
    """The precision a card's test and validation numbers were measured in: ``test_precision``, or, on a card
    written before that was recorded, the training run's (its Trainer tested in it)."""
    return str(metrics.get("test_precision") or metrics.get("precision") or FLOAT32)


def is_float32(precision: str | None) -> bool:
    return str(precision) in (FLOAT32, "32", "32-true")


def _precision_rows(metrics: dict[str, Any], score: Score) -> list[str]:
    """The card's precision row, where the run trained or measured in anything but float32: which one the
    numbers above are, and what the other measurement gave."""
    trained, measured = metrics.get("precision"), measured_precision(metrics)
    if is_float32(trained) and is_float32(measured):
        return []
    if not is_float32(measured):
        return [
            f"| precision | measured in {measured}, as trained; `zoo evaluate` measures in float32 and may "
            "differ by a few images |"
        ]
    earlier = metrics.get("earlier_measurement") or {}
    before = earlier.get(score.key)
    under = f"; measured in {earlier['precision']} its test {score.label} was {score.cell(before)}" if before else ""
    return [f"| precision | measured in float32, as `zoo evaluate` measures (trained in {trained}{under}) |"]


def remeasured(metrics: dict[str, Any], measured: dict[str, Any], precision: str = FLOAT32) -> dict[str, Any]:
    """``metrics`` with the numbers of a new measurement (``measured``: the task's ``card_test_metrics`` and
    ``card_test_details``) in ``precision``; the numbers it replaces are kept under ``earlier_measurement``
    with the precision they were measured in. The weights, their sha256 and the run's settings stay."""
    earlier = {key: metrics[key] for key in measured if key in metrics and metrics[key] != measured[key]}
    new = {**metrics, **measured, "test_precision": str(precision)}
    if earlier and measured_precision(metrics) != str(precision):
        new["earlier_measurement"] = {"precision": measured_precision(metrics), **earlier}
    return new


def rewrite_measurement(folder: str | Path, measured: dict[str, Any], precision: str = FLOAT32) -> dict[str, Any]:
    """Write a new measurement of a weight folder's own weights into its ``metrics.json`` and re-render its
    card (:func:`remeasured`, :func:`render_card`); the weight file is not touched. Refused in one line if the
    weights are not the ones the card names (a measurement of other weights must not land on this card)."""
    from zoo.files import read_json

    folder = Path(folder)
    config, metrics = read_json(folder / CONFIG_FILE), read_json(folder / METRICS_FILE)
    if sha256_file(folder / WEIGHTS_FILE) != metrics.get("sha256"):
        raise ZooError(f"{folder / WEIGHTS_FILE} is not the file {folder / METRICS_FILE} describes; restore it first")
    metrics = remeasured(metrics, measured, precision)
    for name, text in ((METRICS_FILE, json.dumps(metrics, indent=2) + "\n"), (CARD_FILE, render_card(config, metrics))):
        staging = folder / f".{name}.tmp"
        staging.write_text(text)
        os.replace(staging, folder / name)
    return metrics


def _setting(value: Any) -> str:
    return f"`{value if isinstance(value, str) else json.dumps(value)}`"


def _training_lines(metrics: dict[str, Any]) -> list[str]:
    """The card's "Training" section: the run's settings, and what changed from the card it replaced."""
    settings = metrics.get("training")
    if not settings:
        return []
    lines = ["", "## Training", "", "| setting | value |", "| --- | --- |"]
    lines += [f"| {key} | {_setting(value)} |" for key, value in settings.items()]
    old = metrics.get("replaces")
    if old:
        score = format_score(tuple(old["score"])) if old.get("score") else "not measured"
        sha = (old.get("sha256") or "")[:12]
        n = old.get("epochs")
        epochs = f"{n} epoch{'s' if n != 1 else ''}, " if n else ""
        lines += [
            "",
            f"These weights replace earlier ones of this name ({score}, {epochs}sha256 `{sha}…`, {old.get('date')}; "
            "git history has them).",
        ]
        before = old.get("training")
        if before:
            changed = [
                f"{key} {_setting(before.get(key, '–'))} → {_setting(settings.get(key, '–'))}"
                for key in dict.fromkeys([*before, *settings])
                if before.get(key) != settings.get(key)
            ]
            lines.append("Changed settings: " + ("; ".join(changed) if changed else "none") + ".")
        else:
            lines.append(
                f"Their settings were not recorded; they were trained by `{old.get('recipe')}` as it stood then."
            )
    return lines


def check_target(folder: Path, *, overwrite: bool = False) -> str:
    """What writing a weight folder at ``folder`` would do: ``"new"``, ``"replace"`` (a zoo weight folder,
    whose own four files are replaced) or ``"add"`` (``overwrite=True`` into a folder of other files, which
    stay); anything else is a one-line :class:`~zoo.errors.ZooError` and nothing is written.
    """
    if folder.is_file() or (folder.exists() and not folder.is_dir()):
        raise ZooError(f"{folder} is a file, not a folder; give a new folder name for the weights")
    check_output_folder(folder)  # a file above it: refused before any training, not when the weights are written
    if not folder.exists():
        return "new"
    others = sorted(p.name for p in folder.iterdir() if p.name not in FOLDER_FILES)
    if not others:  # empty, or only the files of the layout
        return "replace" if any(folder.iterdir()) else "new"
    if not overwrite:
        shown = ", ".join(others[:3]) + (f" (+{len(others) - 3} more)" if len(others) > 3 else "")
        raise ZooError(
            f"{folder} already holds files that are not zoo weights ({shown}); give a new or empty folder, "
            "or pass overwrite=True to add the weight files beside them"
        )
    return "add"


def write_folder(
    folder: str | Path,
    state: dict[str, Any],
    config: dict[str, Any],
    metrics: dict[str, Any],
    *,
    overwrite: bool = False,
) -> Path:
    """Write a complete weight folder atomically: built beside the target, then swapped in.

    ``metrics`` gets the weights file's sha256 and size, and the config's ``config_sha256``. An existing zoo weight folder is replaced only
    once the new one is complete, so an interrupted run never leaves a half-written card behind. A folder
    holding other files is refused (see :func:`check_target`); with ``overwrite=True`` only the four weight
    files are written into it, the others left as they are.
    """
    from safetensors.torch import save_file

    folder = Path(folder).expanduser()
    mode = check_target(folder, overwrite=overwrite)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    except OSError as err:
        raise ZooError(
            f"cannot write the weights to {folder} ({err.strerror}); choose a folder you can write to"
        ) from None
    try:
        weights = staging / WEIGHTS_FILE
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(weights), metadata={"format": "pt"})
        metrics = {**metrics, "sha256": sha256_file(weights), "file_size": weights.stat().st_size}
        metrics[CONFIG_HASH_KEY] = config_sha256(config)  # an edited config.json is refused on load
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        (staging / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
        (staging / CARD_FILE).write_text(render_card(config, metrics))
        if mode == "add":  # the user's files stay: the weight files move in one by one, the weights last
            for name in (CONFIG_FILE, METRICS_FILE, CARD_FILE, WEIGHTS_FILE):
                os.replace(staging / name, folder / name)
            return folder
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
        os.replace(staging, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
