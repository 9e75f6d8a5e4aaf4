"""The model commands: ``zoo list``, ``zoo info``, ``zoo classify``, ``zoo evaluate``.

Plain argparse; heavy libraries load inside each command, so ``zoo --help`` stays light.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from zoo.cli.args import ArgumentParser, natural_int, positive_int
from zoo.cli.tables import gflops, registry_markdown
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
    parser.add_argument(
        "--timm",
        action="store_true",
        help="timm's architectures instead (zoo.create('timm/<name>'), zoo.load('timm/<name>.<tag>')); nothing is downloaded",
    )
    args = parser.parse_args(argv)
    if args.timm:
        _list_timm(args.pattern, args.pretrained)
        return
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
            *([f"{gflops(row['name']):.3f}"] if args.flops else []),
            *(row["columns"].get(k, "") for k in extra),
            ", ".join(f"{row['name']}.{t}" for t in row["weights"]) or "–",
        )
    _console().print(table)


def _list_timm(pattern: str, pretrained: bool) -> None:
    """timm's names matching ``pattern`` and their weights, from timm's own registry (no download)."""
    from rich.table import Table

    from zoo.models.timm_family import PREFIX, list_timm

    weights: dict[str, list[str]] = {}
    for name in list_timm(pattern, pretrained=True):
        weights.setdefault(name.partition(".")[0], []).append(name.removeprefix(PREFIX))
    names = sorted(weights) if pretrained else list_timm(pattern)
    if not names:
        raise ZooError(f"timm has no architecture matching {pattern!r}; try a wider pattern, e.g. 'convnext*'")
    table = Table("model", "weights (zoo.load('timm/<weights>'))")
    for name in names:
        table.add_row(name, ", ".join(weights.get(name, [])) or "–")
    _console().print(table)


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

    from zoo.layer_table import stage_table

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
    parser.add_argument(
        "--input-size", type=positive_int, nargs=3, metavar=("C", "H", "W"), help="override the input size"
    )
    parser.add_argument("--num-classes", type=natural_int, default=None, help="head size (0: the embedding network)")
    args = parser.parse_args(argv)
    from rich.table import Table

    import zoo.models  # noqa: F401  registers every family
    from zoo.layer_table import layer_table
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
    model.description.require("classify", weights)
    prepare = model.transforms()
    images = torch.stack([prepare(read_image(path)) for path in paths])
    if model.description.classify is not None:  # the task's own answer: a multi-label model's labels above threshold
        return model.description.classify(model, images, top_k)
    probs = model.predict_proba(images)
    top = probs.topk(min(top_k, probs.shape[1]), dim=1)
    return [
        [(model.class_names[i], p) for i, p in zip(indices.tolist(), values.tolist())]
        for values, indices in zip(top.values, top.indices)
    ]


def cmd_classify(argv: list[str]) -> None:
    parser = ArgumentParser(prog="zoo classify", description="Classify image files with trained weights.")
    parser.add_argument("weights", help="arch.tag (zoo list --pretrained) or a weight folder")
    parser.add_argument("images", nargs="+", help="image files, or folders of them (searched recursively)")
    parser.add_argument("--top-k", type=positive_int, default=1, help="classes shown per image (default 1)")
    args = parser.parse_args(argv)
    from rich.table import Table

    table = Table("image", "prediction", "confidence")
    files = image_files(args.images)
    for path, top in zip(files, classify_files(args.weights, files, args.top_k)):
        table.add_row(
            Path(path).name,
            " / ".join(name for name, _ in top) or "(no label above its threshold)",
            " / ".join(f"{100 * p:.1f}%" for _, p in top),
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
    parser.add_argument("--batch-size", type=positive_int, default=500, help="images per forward pass (default 500)")
    args = parser.parse_args(argv)
    import zoo
    from zoo.evaluate import evaluate

    model = zoo.load(args.weights)
    description = model.description
    description.require("evaluate", args.weights)
    result = evaluate(model, args.data, root=args.data_root, batch_size=args.batch_size)
    on = (
        f"images of {args.data}"
        if args.data
        else f"images of {getattr(model, 'card_metrics', {}).get('dataset') or 'the default test set'}"
    )
    _console().print(f"{args.weights}: {description.result_line(result)} on {result['test_samples']:,} {on}")
