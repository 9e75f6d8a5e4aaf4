"""The model commands: ``zoo list``, ``zoo info``, ``zoo classify``, ``zoo evaluate``.

Plain argparse; heavy libraries load inside each command, so ``zoo --help`` stays light.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from zoo.cli.args import ArgumentParser, natural_int, positive_int
from zoo.errors import ZooError


def _console():
    import shutil

    from rich.console import Console

    # piped output (tests, `| less`) gets a wide table rather than rich's 80-column default
    return Console(width=shutil.get_terminal_size((160, 24)).columns)


# ---- zoo list / info / classify / evaluate --------------------------------------------------------
def cmd_list(argv: list[str]) -> None:
    parser = ArgumentParser(prog="zoo list", description="List registered models and their weights.")
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'res*'")
    parser.add_argument("--pretrained", action="store_true", help="only models with trained weights")
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print a Markdown table with FLOPs and shipped accuracy (for the README)",
    )
    parser.add_argument(
        "--flops", action="store_true", help="add a GFLOPs-per-image column (builds each network on the meta device)"
    )
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(registry_markdown(args.pattern, pretrained=args.pretrained) + "\n")
        return
    from rich.table import Table

    from zoo import catalog

    rows = catalog.read(args.pattern, pretrained=args.pretrained)  # no torch: the registry's catalog
    extra = list(dict.fromkeys(key for row in rows for key in row["columns"]))  # e.g. EfficientNet's φ, multipliers
    table = Table("model", "family", "input", "params", *(["GFLOPs"] if args.flops else []), *extra, "weights")
    for row in rows:
        table.add_row(
            row["name"],
            row["family"],
            "×".join(map(str, row["input_size"])),
            f"{row['num_params']:,}",
            *([f"{_gflops(row['name']):.3f}"] if args.flops else []),
            *(row["columns"].get(k, "") for k in extra),
            ", ".join(f"{row['name']}.{t}" for t in row["weights"]) or "–",
        )
    _console().print(table)


def _gflops(name: str) -> float:
    """FLOPs per image at the model's input size, in billions (shapes only, on the meta device)."""
    import torch

    import zoo.models  # noqa: F401  registers every family
    from zoo.inspect import count_flops
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
            f"{_gflops(name):.3f} | {', '.join(shipped) or '–'} |"
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
    """The epochs, training time and machine columns of the README's tables."""
    return f"{metrics['epochs']} | {metrics['wall_time_s'] / 60:.0f} min | {metrics['hardware'].split(';')[0]}"


def budget_markdown() -> str:
    """The Fashion-MNIST weights trained here: accuracy, budget (epochs, time, hardware) and the published
    reference for their size, read from the cards' metrics.json (README's "weights and their budget")."""
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
    """The short runs that chose a recipe's settings (README's "choosing the recipes"), one row per run,
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
    budget, read from the cards (README's "with and without the pretrained backbone")."""
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


def _print_stages(console: Any, net: Any, input_size: tuple[int, ...], batch_size: int) -> None:
    """The transformer view of ``zoo info``: tokens, parameters, FLOPs and attention size per stage/block."""
    import torch
    from rich.table import Table

    from zoo.inspect import stage_table

    rows = stage_table(net, input_size)
    out = Table(
        "stage", "output", "tokens per attention", "windows", "heads", "params", "FLOPs", "attention values per block"
    )
    for row in rows:
        out.add_row(
            row.name,
            "×".join(map(str, row.output_shape)),
            f"{row.tokens:,}" if row.tokens else "",
            f"{row.windows:,}" if row.windows else "",
            f"{row.heads}" if row.heads else "",
            f"{row.params:,}",
            f"{row.flops:,}",
            f"{row.attention_values:,}" if row.tokens else "",
        )
    console.print(out)
    from zoo.layers.transformer import Attention

    blocks = sum(isinstance(m, (Attention, torch.nn.MultiheadAttention)) for m in net.modules())
    per_image = sum(r.attention_total for r in rows)
    console.print(
        f"attention matrices (softmax(QKᵀ/√d), windows × heads × tokens², kept for backward) over {blocks} blocks: "
        f"{per_image:,} values per image = {_human_bytes(per_image * 4)} fp32, {_human_bytes(per_image * 4 * batch_size)} "
        f"at batch {batch_size}; they grow with the square of the tokens per attention (a ViT at twice the image side: "
        "16×), with the number of windows for Swin (4×)"
    )


def cmd_info(argv: list[str]) -> None:
    parser = ArgumentParser(
        prog="zoo info", description="Per-layer table: output shape, parameters, FLOPs, activation memory."
    )
    parser.add_argument("name", help="model name (zoo list) or arch.tag")
    parser.add_argument("--batch-size", type=positive_int, default=1, help="batch size for the memory totals")
    parser.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"), help="override the input size")
    parser.add_argument("--num-classes", type=natural_int, default=None, help="head size (0: the embedding network)")
    args = parser.parse_args(argv)
    from rich.table import Table

    import zoo.models  # noqa: F401  registers every family
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
        raise ZooError(
            f"{entry.name} cannot take a {'×'.join(map(str, input_size))} input ({str(error).splitlines()[0]}); "
            f"try its default {'×'.join(map(str, entry.input_size))}"
        ) from error
    console = _console()
    console.print(
        f"[bold]{entry.name}[/bold] ({entry.family}) — {entry.paper}" if entry.paper else f"[bold]{entry.name}[/bold]"
    )
    out = Table("layer", "type", "output (C×H×W)", "params", "% params", "FLOPs", "activations")
    for row in table.rows:
        out.add_row(
            row.name,
            row.kind,
            "×".join(map(str, row.output_shape)),
            f"{row.params:,}" if row.params else "",
            f"{100 * row.params / table.total_params:.1f}" if row.params else "",
            f"{row.flops:,}" if row.flops else "",
            f"{row.activations:,}",
        )
    console.print(out)
    memory = table.memory()
    doc = sys.modules[type(net).__module__].__doc__ or ""
    console.print(
        f"input {'×'.join(map(str, input_size))} · parameters [bold]{table.total_params:,}[/bold] · "
        f"FLOPs/image {table.total_flops:,} ({_human_count(table.total_flops / 2)} multiply-adds)"
    )
    console.print(
        f"activations per image {table.activations:,} values = {_human_bytes(table.activations * 4)} fp32 "
        f"(input + every layer's output); {table.new_activations:,} = {_human_bytes(table.new_activations * 4)} "
        "without the outputs that reuse their input's memory (in-place ReLU, Flatten, Identity, eval Dropout)"
    )
    console.print(
        f"at batch {args.batch_size}: weights {_human_bytes(memory['parameters'])}, stored for backward "
        f"{_human_bytes(memory['activations_for_backward'])}, training with SGD+momentum ≈ "
        f"{_human_bytes(memory['train_sgd_momentum'])}, with Adam ≈ {_human_bytes(memory['train_adam'])}"
    )
    console.print("by output size (share of activations / of parameters): " + where_memory_and_parameters_are(table))
    if any(type(m).__name__ in ("Attention", "MultiheadAttention") for m in net.modules()):
        _print_stages(console, net, input_size, args.batch_size)
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


def read_image(path: str):
    """A file as a PIL image, loaded (so that a truncated file fails here, with its name)."""
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        raise ZooError(f"no such image file: {path}; check the path")
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ZooError(f"cannot read image {path} ({err}); give PNG or JPEG files") from None


def image_files(paths: list[str]) -> list[str]:
    """Files as given, folders expanded to the image files inside them (recursively, sorted)."""
    from zoo.data.images import IMAGE_SUFFIXES, find_images

    for path in paths:
        if Path(path).is_dir() and not find_images([path]):
            raise ZooError(
                f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES[:4])}...); give image files or folders of them"
            )
    return [str(p) for p in find_images(paths)]


def classify_files(weights: str, paths: list[str], top_k: int = 1) -> list[list[tuple[str, float]]]:
    """Top-k ``(class name, probability)`` for each image file, prepared by the weights' own ``transforms()``."""
    import torch

    import zoo

    model = zoo.load(weights)
    prepare = model.transforms()
    probs = model.predict_proba(torch.stack([prepare(read_image(path)) for path in paths]))
    top = probs.topk(min(top_k, probs.shape[1]), dim=1)
    return [
        [(model.class_names[i], p) for i, p in zip(indices.tolist(), values.tolist())]
        for values, indices in zip(top.values, top.indices)
    ]


def cmd_classify(argv: list[str]) -> None:
    parser = ArgumentParser(prog="zoo classify", description="Classify image files with trained weights.")
    parser.add_argument("weights", help="arch.tag (zoo list --pretrained) or a weight folder")
    parser.add_argument("images", nargs="+", help="image files, or folders of them (searched recursively)")
    parser.add_argument("--top-k", type=positive_int, default=1)
    args = parser.parse_args(argv)
    from rich.table import Table

    table = Table("image", "prediction", "confidence")
    files = image_files(args.images)
    for path, top in zip(files, classify_files(args.weights, files, args.top_k)):
        table.add_row(
            Path(path).name, " / ".join(name for name, _ in top), " / ".join(f"{100 * p:.1f}%" for _, p in top)
        )
    _console().print(table)


def cmd_evaluate(argv: list[str]) -> None:
    parser = ArgumentParser(
        prog="zoo evaluate",
        description="Measure trained weights on the Fashion-MNIST test set (10,000 images; a detector: the "
        "1,000 test scenes), or on your images.",
    )
    parser.add_argument("weights", help="arch.tag or a weight folder")
    parser.add_argument("--data-root", default=None, help="folder with the Fashion-MNIST IDX files")
    parser.add_argument(
        "--data",
        default=None,
        help="your images instead: a folder of <class>/<image> (its test/ if any) or a CSV; for a detector, "
        "a COCO annotations.json or the folder holding it (and images/)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=500)
    args = parser.parse_args(argv)
    import zoo
    from zoo.evaluate import evaluate_classifier

    model = zoo.load(args.weights)
    if getattr(model, "task", "") == "detection":
        from zoo.evaluate import evaluate_detector

        coco = None
        if args.data:
            from zoo.data.coco import CocoDetection

            size, in_chans = model.input_size[-1], model.input_size[0]
            coco = CocoDetection.for_evaluation(
                args.data, model.class_names, size=size, in_chans=in_chans, batch_size=args.batch_size
            )
        result = evaluate_detector(model, root=args.data_root, batch_size=args.batch_size, datamodule=coco)
        _console().print(
            f"{args.weights}: test mAP@[.5:.95] {100 * result['test_map']:.2f}%, mAP@0.5 {100 * result['test_map_50']:.2f}% "
            f"on {result['test_samples']:,} {'images of ' + args.data if coco else 'Fashion-MNIST scenes'}"
        )
        return
    datamodule = None
    if args.data:
        from zoo.data.folders import ImageFolderDataModule

        datamodule = ImageFolderDataModule.for_evaluation(args.data, model.class_names, batch_size=args.batch_size)
    result = evaluate_classifier(model, root=args.data_root, batch_size=args.batch_size, datamodule=datamodule)
    _console().print(
        f"{args.weights}: test top-1 {100 * result['test_acc']:.2f}%, top-5 {100 * result['test_acc5']:.2f}% "
        f"on {result['test_samples']:,} images"
    )
