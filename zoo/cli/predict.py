"""``zoo predict SOURCE PATH...``: top-k classes for image files and folders, as a table, JSON or CSV.

``zoo predict --config RECIPE ...`` (options first) is LightningCLI's own ``predict`` over a datamodule.
"""

from __future__ import annotations

import csv
import json
import sys

from zoo.cli.args import ArgumentParser, float_at_least, natural_int, positive_int
from zoo.destinations import check_output_file


def is_file_prediction(argv: list[str]) -> bool:
    """``zoo predict SOURCE ...`` (a positional first) rather than LightningCLI's ``zoo predict --config ...``."""
    return bool(argv) and not argv[0].startswith("-")


def predict_parser() -> ArgumentParser:
    """The options of ``zoo predict SOURCE PATH...``."""
    from zoo.predict import default_workers

    parser = ArgumentParser(
        prog="zoo predict",
        description="Predict the classes of image files and folders (recursively).",
        epilog="zoo predict --config RECIPE [options] is LightningCLI's predict over a datamodule instead "
        "(zoo predict --config RECIPE --help lists its options).",
    )
    parser.add_argument("source", help="arch.tag, a weight folder or file, a checkpoint, hf-hub:org/name")
    parser.add_argument("paths", nargs="+", help="image files or folders")
    parser.add_argument("--top-k", type=positive_int, default=1, help="classes shown per image (default 1)")
    parser.add_argument(
        "--batch-size", type=positive_int, default=64, help="images per forward pass (default 64; lower it on OOM)"
    )
    parser.add_argument("--num-workers", type=natural_int, default=default_workers(), help="image-decoding processes")
    parser.add_argument("--onnx", metavar="FILE", help="run this exported ONNX file in onnxruntime instead of PyTorch")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON object per file")
    output.add_argument("--csv", action="store_true", help="CSV: path, then label/probability pairs")
    return parser


def print_help() -> None:
    """``zoo predict --help``: the file-prediction options (--onnx, --json, --csv) and the recipe form."""
    predict_parser().print_help()


def cmd_predict(argv: list[str]) -> None:
    parser = predict_parser()
    args = parser.parse_args(argv)
    import zoo
    from zoo.predict import iter_predictions

    model = zoo.load(args.source)
    if getattr(model, "task", "") == "detection":  # a detector's predictions are boxes: zoo detect prints them
        return cmd_detect([args.source, *args.paths, *(["--json"] if args.json else [])])
    unreadable: list[str] = []
    rows = iter_predictions(
        model,
        args.paths,
        top_k=args.top_k,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        onnx=args.onnx,
        progress=sys.stderr.isatty(),
        unreadable=unreadable,
    )
    if args.json:
        for row in rows:
            print(json.dumps({"path": row.path, "labels": row.labels, "probs": [round(p, 6) for p in row.probs]}))
    elif args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(["path", *[f"{kind}{i + 1}" for i in range(args.top_k) for kind in ("label", "prob")]])
        for row in rows:
            writer.writerow([row.path, *[v for pair in zip(row.labels, (f"{p:.6f}" for p in row.probs)) for v in pair]])
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table("image", "prediction", "confidence")
        for row in rows:
            table.add_row(row.path, " / ".join(row.labels), " / ".join(f"{100 * p:.1f}%" for p in row.probs))
        Console().print(table)
    for path in unreadable:
        print(f"zoo: warning: skipped {path}: not a readable image", file=sys.stderr)
    if unreadable:
        print(f"zoo: {len(unreadable)} file(s) could not be read", file=sys.stderr)
        raise SystemExit(1)


def cmd_attention(argv: list[str]) -> None:
    parser = ArgumentParser(
        prog="zoo attention",
        description="Draw where a ViT or Swin model looks: attention rollout (ViT) or one block's window "
        "attention (Swin) over each image, saved as a PNG.",
    )
    parser.add_argument("source", help="ViT/Swin weights: arch.tag, a weight folder or file, hf-hub:org/name")
    parser.add_argument("paths", nargs="+", help="image files or folders")
    parser.add_argument("-o", "--output", default="attention.png", help="PNG to write (default attention.png)")
    parser.add_argument(
        "--block",
        type=int,
        help="Swin: the block shown, counted over all blocks (default: the first whose window covers the whole image)",
    )
    args = parser.parse_args(argv)
    from zoo.attention import save_attention

    print(save_attention(args.source, args.paths, args.output, block=args.block))


def cmd_detect(argv: list[str]) -> None:
    parser = ArgumentParser(
        prog="zoo detect",
        description="Detect objects in image files: boxes (xyxy, in each file's own pixels), labels, scores.",
    )
    parser.add_argument("source", help="detection weights: arch.tag, a weight folder, hf-hub:org/name")
    parser.add_argument("paths", nargs="+", help="image files or folders")
    parser.add_argument("-o", "--output", help="also draw the boxes into this PNG")
    parser.add_argument("--threshold", type=float_at_least(0.0), default=0.5, help="lowest score shown (default 0.5)")
    parser.add_argument("--json", action="store_true", help="one JSON object per file")
    args = parser.parse_args(argv)
    if args.output:
        check_output_file(args.output, suffixes=(".png",))  # before the model runs: a folder, under a file, .jpg
    from zoo.detect import detect_files

    results, bad = detect_files(args.source, args.paths, threshold=args.threshold, out=args.output)
    for row in results:
        if args.json:
            print(json.dumps({"path": row.path, "boxes": row.boxes, "labels": row.labels, "scores": row.scores}))
        else:
            found = ", ".join(
                f"{label} {score:.2f} at {box}" for box, label, score in zip(row.boxes, row.labels, row.scores)
            )
            print(f"{row.path}: {found or 'nothing above the threshold'}")
    if args.output:
        print(f"wrote {args.output}", file=sys.stderr)
    if bad:
        print(f"zoo: {len(bad)} unreadable file(s): {', '.join(bad[:5])}", file=sys.stderr)
        raise SystemExit(1)
