"""``zoo prepare SRC --out DIR|s3://bucket/prefix``: your images as LitData shards to stream from."""

from __future__ import annotations

import argparse

from zoo.cli.args import ArgumentParser, positive_int
from zoo.destinations import check_output_folder

DESCRIPTION = """Write a class folder, a path,label CSV or a COCO folder as LitData shards (train/, val/, test/ and
zoo_shards.json with the classes), locally or on S3-compatible storage (the endpoint and credentials from the
standard AWS environment variables, e.g. AWS_ENDPOINT_URL). Stream them with
  zoo fit --config R --data zoo.data.StreamingImages --data.init_args.input_dir OUT
  zoo.finetune(weights, OUT)
An OUT that holds anything is refused; --resume finishes an interrupted prepare of the same data."""


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="zoo prepare", description=DESCRIPTION, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("src", help="folder of <class>/<image> (optionally train/ val/ test/), a .csv, or a COCO folder")
    p.add_argument("--out", required=True, help="a new folder, or s3://bucket/prefix")
    p.add_argument(
        "--size",
        type=positive_int,
        default=None,
        help="store decoded uint8 images of this side (default: the encoded files)",
    )
    p.add_argument("--channels", type=int, default=3, choices=(1, 3), help="with --size: 1 grey, 3 colour (default)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="held out per class when there is no val/ (0.2)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of that split (0)")
    p.add_argument("--classes", default=None, help="comma-separated class names, in order (default: sorted)")
    p.add_argument(
        "--workers", type=positive_int, default=None, help="writer processes (default: CPU count, at most 8)"
    )
    p.add_argument("--chunk-bytes", default="64MB", help="size of one shard file (64MB)")
    p.add_argument("--resume", action="store_true", help="finish an interrupted prepare into the same --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def cmd_prepare(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    if "://" not in args.out:  # a local --out under or onto a file fails here, before any image is read
        check_output_folder(args.out, option="--out")
    from zoo.data.shards import prepare_shards

    meta = prepare_shards(
        args.src,
        args.out,
        size=args.size,
        channels=args.channels,
        val_fraction=args.val_fraction,
        split_seed=args.split_seed,
        classes=args.classes.split(",") if args.classes else None,
        num_workers=args.workers,
        chunk_bytes=args.chunk_bytes,
        resume=args.resume,
        progress=not args.no_progress,
    )
    counts = ", ".join(f"{split} {n}" for split, n in meta["splits"].items())
    stored = f"uint8 {'x'.join(map(str, meta['input_size']))}" if meta["input_size"] else "encoded files"
    print(f"wrote {args.out}: {meta['task']}, {len(meta['classes'])} classes, {counts} ({stored})")
