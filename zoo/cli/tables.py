"""The documentation's generated tables (README.md and docs/models.md, docs/research-notes.md, docs/detection.md),
from the registry and the shipped cards (``tests/test_readme.py`` fails when a page's copy is stale):

* :func:`registry_markdown`: every model, its parameters and FLOPs, its weights' headline score
  (also ``zoo list --markdown``);
* :func:`budget_markdown`: the Fashion-MNIST weights, their budget and the published reference;
* :func:`sweep_markdown`: the short runs that chose the recipes' settings;
* :func:`detection_markdown`: the detectors, with and without the pretrained backbone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def gflops(name: str) -> float:
    """FLOPs per image at the model's input size, in billions (shapes only, on the meta device)."""
    import torch

    import zoo.models  # noqa: F401  registers every family
    from zoo.layer_table import count_flops
    from zoo.registry import build_net, get_entry

    with torch.device("meta"):  # no memory, no arithmetic, even for VGG-19 at 224 px
        return count_flops(build_net(name), get_entry(name).input_size) / 1e9


def registry_markdown(pattern: str = "*", pretrained: bool = False) -> str:
    """The registry as a Markdown table: parameters and FLOPs recomputed, accuracies read from the cards' metrics.json."""
    import zoo.models  # noqa: F401  registers every family
    from zoo.files import METRICS_FILE, bundled_cards_dir
    from zoo.registry import get_entry, list_models

    header = "| model | family | input | params | GFLOPs | weights (test top-1; detectors: mAP@0.5) |"
    lines = [header, "|---|---|---|---:|---:|---|"]
    for name in list_models(pattern, pretrained=pretrained):
        entry = get_entry(name)
        shipped = []
        for tag, weights in entry.weights.items():
            shipped.append(f"`{name}.{tag}`{_headline(bundled_cards_dir() / f'{name}.{tag}' / METRICS_FILE, weights)}")
        family = entry.family + (
            f" ({', '.join(f'{k} {v}' for k, v in entry.columns.items())})" if entry.columns else ""
        )
        lines.append(
            f"| `{name}` | {family} | {'×'.join(map(str, entry.input_size))} | {entry.num_params:,} | "
            f"{gflops(name):.3f} | {', '.join(shipped) or '–'} |"
        )
    return "\n".join(lines)


def _headline(metrics_file: Any, weights: Any) -> str:
    """`` (93.04% fashion_mnist)`` from a card's metrics.json (``mAP@0.5 0.912`` for a detector), or nothing."""
    from zoo.cards import card_score, format_score
    from zoo.files import read_json

    score = card_score(read_json(metrics_file)) if metrics_file.is_file() else None
    return f" ({format_score(score)} {weights.dataset})" if score else ""


# What published models of the same size reach on Fashion-MNIST (test top-1), beside the zoo's weights
PUBLISHED_FMNIST = {
    "lenet5_relu.fmnist": "2-conv CNN < 100K params: 92.5% (Fashion-MNIST benchmark table)",
    "alexnet_lite.fmnist": "CNN with random erasing: 94.7% (Random Erasing paper)",
    "vgg_lite.fmnist": "CNN with random erasing: 94.7% (Random Erasing paper)",
    "resnet20.fmnist": "ResNet-20: 95.6%, 96.0% with random erasing (Random Erasing paper, 300 epochs)",
    "efficientnet_lite.fmnist": "MobileNet: 95.0%",
    "vit_lite_conv.fmnist": "ViT from scratch: 92.3–93.0%",
    "swin_lite.fmnist": "ViT from scratch: 92.3–93.0%",
    "swin_lite_conv.fmnist": "ViT from scratch: 92.3–93.0%",
}


def trained_cards(task: str) -> list[tuple[str, dict[str, Any]]]:
    """``(arch.tag, metrics.json)`` of the shipped weights a zoo recipe trained, for one task."""
    import zoo.models  # noqa: F401  registers every family
    from zoo.files import METRICS_FILE, bundled_cards_dir, read_json
    from zoo.registry import get_entry, get_weights, list_weights, split_name

    cards = []
    for name in list_weights():
        metrics_file = bundled_cards_dir() / name / METRICS_FILE
        if get_weights(name).recipe and get_entry(split_name(name)[0]).task == task and metrics_file.is_file():
            cards.append((name, read_json(metrics_file)))
    return cards


def _budget(metrics: dict[str, Any]) -> str:
    """The epochs, training time and machine columns of the documentation's tables."""
    from zoo.cards import budget_chain

    runs = budget_chain(metrics)  # a weight trained in stages (a warm restart from earlier weights): each one
    epochs = " + ".join(str(run.get("epochs", "?")) for run in runs)
    minutes = " + ".join(f"{(run.get('wall_time_s') or 0) / 60:.0f}" for run in runs)
    from zoo.energy import energy_cell  # the run's energy and CO2 where its card measured them

    return f"{epochs} | {minutes} min{energy_cell(metrics)} | {metrics['hardware'].split(';')[0]}"


def budget_markdown() -> str:
    """The Fashion-MNIST weights trained here: accuracy, budget (epochs, time, hardware) and the published
    reference for their size, read from the cards' metrics.json (docs/models.md's "weights and their budget")."""
    lines = [
        "| weights | test top-1 | params | epochs | training time | measured on | published for the size |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for name, metrics in trained_cards("classification"):
        if metrics.get("dataset") != "fashion_mnist" or "data_classes" in metrics or "test_acc" not in metrics:
            continue  # the 5-class transfer sources have no published counterpart
        lines.append(
            f"| `{name}` | {100 * metrics['test_acc']:.2f}% | {metrics['params']:,} | {_budget(metrics)} | "
            f"{PUBLISHED_FMNIST.get(name, '–')} |"
        )
    return "\n".join(lines)


def sweep_markdown(path: Any) -> str:
    """The short runs that chose a recipe's settings (docs/research-notes.md's "choosing the recipes"), one row per run,
    from ``path``: a JSON list of the runs' own ``metrics.json`` numbers with the setting each one tried."""
    import json

    lines = [
        "| weights | setting | epochs | best val top-1 | test top-1 | time |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for run in json.loads(Path(path).read_text()):
        lines.append(
            f"| `{run['weights']}` | {run['setting']} | {run['epochs']} | {100 * run['val_acc']:.2f}% | "
            f"{100 * run['test_acc']:.2f}% | {run['wall_time_s'] / 60:.1f} min |"
        )
    return "\n".join(lines)


def detection_markdown() -> str:
    """The detection weights trained here: mAP on the fixed test scenes, where the backbone started and the
    budget, read from the cards (docs/detection.md's "with and without the pretrained backbone")."""
    from zoo.cards import backbone_start

    lines = [
        "| weights | backbone started from | test mAP@0.5 | test mAP | epochs | training time | measured on |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for name, metrics in trained_cards("detection"):
        lines.append(
            f"| `{name}` | {backbone_start(metrics)} | {metrics['test_map_50']:.3f} | {metrics['test_map']:.3f} | "
            f"{_budget(metrics)} |"
        )
    return "\n".join(lines)
