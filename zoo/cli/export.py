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
    args = parser.parse_args(argv)
    import zoo
    from zoo.exporting import export

    model = zoo.load(args.source)
    path = export(model, args.output, args.format, opset=args.opset, overwrite=args.overwrite)
    size = path.stat().st_size / 1e6
    print(
        f"wrote {path} ({args.format}, {size:.1f} MB): float pixels in [0, 1], shape (batch, "
        f"{', '.join(map(str, model.input_size))}), {len(model.class_names)} classes"
    )
