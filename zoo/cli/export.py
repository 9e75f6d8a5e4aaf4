"""``zoo export``: weights out of Python, as ONNX or a torch.export program."""

from __future__ import annotations

from zoo.cli.args import ArgumentParser, positive_int


def cmd_export(argv: list[str]) -> None:
    from zoo.exporting import DEFAULT_OPSET, FORMATS

    parser = ArgumentParser(
        prog="zoo export", description="Export weights with their normalisation, dynamic batch axis."
    )
    parser.add_argument("source", help="arch.tag, a weight folder or file, a checkpoint, hf-hub:org/name")
    parser.add_argument(
        "--format", choices=FORMATS, default="onnx", help="onnx (onnxruntime) or exported-program (torch.export)"
    )
    parser.add_argument("-o", "--output", required=True, help="file to write (.onnx or .pt2)")
    parser.add_argument("--opset", type=positive_int, default=DEFAULT_OPSET, help="ONNX opset version")
    parser.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    parser.add_argument(
        "--input-dtype",
        choices=("float32", "uint8"),
        default="float32",
        help="what the file takes: float32 pixels in [0, 1] (default) or uint8 pixels 0-255",
    )
    args = parser.parse_args(argv)
    import zoo
    from zoo.exporting import export

    model = zoo.load(args.source)
    path = export(
        model, args.output, args.format, opset=args.opset, overwrite=args.overwrite, input_dtype=args.input_dtype
    )
    size = path.stat().st_size / 1e6
    print(
        f"wrote {path} ({args.format}, {size:.1f} MB): "
        f"{'uint8 pixels 0-255' if args.input_dtype == 'uint8' else 'float pixels in [0, 1]'}, shape (batch, "
        f"{', '.join(map(str, model.input_size))}), {len(model.class_names)} classes"
    )
