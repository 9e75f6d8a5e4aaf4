"""Out of Python: a task's preprocessing + network as ONNX (run by onnxruntime) or a ``torch.export`` program.

The exported graph takes what the model takes — float pixels in [0, 1], any batch size — because the
normalisation is exported with the network. Its metadata carries the class names, input size,
preprocessing and the sha256 of the weights it came from, so a file found on disk says what it is.

    zoo.export(zoo.load("resnet20.fmnist"), "resnet20.onnx")                 # or format="exported-program"
    session = onnxruntime.InferenceSession("resnet20.onnx"); session.run(None, {"pixels": images})
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from zoo.destinations import check_output_file
from zoo.errors import InvalidValueError, ZooError
from zoo.layers.pixels import Normalize

FORMATS = ("onnx", "exported-program")
SUFFIXES = {"onnx": ".onnx", "exported-program": ".pt2"}
DEFAULT_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "pixels", "logits"


INPUT_DTYPES = {"float32": torch.float32, "uint8": torch.uint8}


class InferenceGraph(nn.Module):
    """What gets exported: the model's own input wrapper (:class:`~zoo.layers.pixels.Normalize`: uint8 or
    [0, 1] floats, then ``(x - mean) / std``) and the plain network, in eval mode."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.net = model.net
        self.normalize = Normalize(model.mean.flatten().tolist(), model.std.flatten().tolist())

    def forward(self, pixels: Tensor) -> Tensor:
        return self.net(self.normalize(pixels))


def metadata(model: Any, input_dtype: str = "float32") -> dict[str, str]:
    """String metadata for the exported file: what the weights are and how their inputs are prepared."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
    sha256 = (model.card_metrics or {}).get("sha256") or hashlib.sha256(
        save(state, metadata={"format": "pt"})
    ).hexdigest()
    return {
        "zoo.name": str(model.weights_name or model.hparams.model_name),
        "zoo.architecture": model.hparams.model_name,
        "zoo.class_names": json.dumps(list(model.class_names)),
        "zoo.input_size": json.dumps(list(model.input_size)),
        "zoo.input": ("uint8 pixels 0-255" if input_dtype == "uint8" else "float32 pixels in [0, 1]")
        + ", shape (batch, C, H, W); normalisation is inside the graph",
        "zoo.preprocessing": json.dumps(model.preprocessing or {"resize_to_input": True}),
        "zoo.weights_sha256": sha256,
    }


def _need(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ZooError(f"exporting needs {module}, which is not installed; pip install 'zoo[export]'") from None


def export(
    model: Any,
    path: str | Path,
    format: str = "onnx",
    *,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
    input_dtype: str = "float32",
) -> Path:
    """Write ``model`` (a zoo task) to ``path`` as ``format``; returns the path.

    The batch axis is dynamic; the spatial size is the model's input size (``model.input_size``).
    ``input_dtype``: ``float32`` (pixels in [0, 1]) or ``uint8`` (0-255, as decoded images come): a graph
    takes one dtype, and the same wrapper as the model's scales uint8 inside it.
    """
    if input_dtype not in INPUT_DTYPES:
        raise InvalidValueError(f"input_dtype must be one of {', '.join(INPUT_DTYPES)}, got {input_dtype!r}")
    if format not in FORMATS:
        raise InvalidValueError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if isinstance(model, (str, Path)):  # weights by name or path, as zoo.load takes them
        from zoo.tasks.factory import load

        model = load(model)
    elif not hasattr(model, "net") or not hasattr(model, "input_size"):
        raise InvalidValueError(
            f"export takes a zoo model or weights (zoo.export(zoo.load('lenet5.fmnist'), path)), got {type(model).__name__}"
        )
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir() and not overwrite:
        raise ZooError(f"{path} already exists; give another file name, or overwrite=True (--overwrite) to replace it")
    check_output_file(path, suffixes=(SUFFIXES[format],), option="")
    if format == "onnx":
        check_opset(opset)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(
        f".{path.stem}.partial{path.suffix}"
    )  # written whole, then renamed: a failure leaves nothing
    graph = InferenceGraph(model).eval()
    example = torch.rand(2, *model.input_size, device=model.mean.device)  # where the model is (a CUDA model too)
    if input_dtype == "uint8":
        example = (example * 255).to(torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=65536)
    meta = metadata(model, input_dtype)
    try:
        if format == "onnx":
            onnx = _need("onnx")
            _need("onnxscript")
            with _converter_messages() as messages, _one_attention_layout():
                program = torch.onnx.export(
                    graph,
                    (example,),
                    dynamo=True,
                    dynamic_shapes={"pixels": {0: batch}},
                    opset_version=opset,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    verbose=False,
                )
            proto = program.model_proto
            written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
            if written != opset:  # the converter logs its failure and keeps its own opset: refused here
                reason = f" ({messages[0][:160]})" if messages else ""
                raise ZooError(
                    f"{meta['zoo.name']} cannot be written as ONNX opset {opset}: the converter produced opset "
                    f"{written}{reason}; give --opset {DEFAULT_OPSET} (the default) or higher"
                )
            for key, value in meta.items():
                proto.metadata_props.add(key=key, value=value)
            onnx.save(proto, str(partial))
        else:
            program = torch.export.export(graph, (example,), dynamic_shapes={"pixels": {0: batch}})
            torch.export.save(program, str(partial), extra_files={"zoo.json": json.dumps(meta)})
        partial.replace(path)
    except ZooError:
        raise
    except Exception as err:  # the exporter's own error: one line naming the model and the format
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ZooError(
            f"{meta['zoo.name']} could not be exported as {format} ({type(err).__name__}: {first[:200]})"
        ) from err
    finally:
        partial.unlink(missing_ok=True)
    return path


def check_opset(opset: Any) -> None:
    """An ONNX opset the installed ``onnx`` knows: a whole number from 7 (the oldest the converter takes)."""
    onnx = _need("onnx")
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not 7 <= opset <= newest:
        raise InvalidValueError(
            f"ONNX opset must be a whole number from 7 to {newest} (the installed onnx's newest), got {opset!r}; "
            f"{DEFAULT_OPSET}, the default, suits every zoo model"
        )


def _one_attention_layout():
    """Attention traced by its math kernel while the ONNX converter runs (``torch.nn.attention.sdpa_kernel``).

    The converter traces the graph again with fake tensors after ``torch.export``: to decompose it, then to
    insert type promotion. ``scaled_dot_product_attention`` with a mask computed in the graph (a relative-
    position bias gathered from its table: timm's MaxViT, ViT-RelPos) gets the CPU flash kernel's output
    layout, (B, L, H, D), in the decomposition and the math kernel's, (B, H, L, D), in the next trace; the
    ``transpose → reshape`` after it, recorded as a view in the first, is refused in the second ("Cannot view
    a tensor with shape ... and strides ..."; pytorch/pytorch#136543, #169732). One kernel in every trace
    gives one layout; the ONNX graph does not depend on the kernel (the attention node itself is converted).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


@contextlib.contextmanager
def _converter_messages():
    """The ONNX version converter's log lines (with their tracebacks) kept from the terminal, as a list."""
    import logging

    messages: list[str] = []

    class Keep(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            error = record.exc_info[1] if record.exc_info else None
            lines = str(error).strip().splitlines() if error is not None else []
            if lines:  # the converter's reason first
                messages.insert(0, f"{type(error).__name__}: {lines[-1]}")
            else:
                messages.append(record.getMessage())
            return False

    keep = Keep()
    loggers = [
        logging.getLogger(name)
        for name in (
            "onnxscript.version_converter",
            "torch.onnx._internal.exporter._compat",  # "Setting ONNX exporter to use operator set version 18 ..."
        )
    ]
    for logger in loggers:
        logger.addFilter(keep)
    try:
        yield messages
    finally:
        for logger in loggers:
            logger.removeFilter(keep)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The zoo metadata of an exported file (ONNX or exported program)."""
    path = Path(path)
    if path.suffix == ".onnx":
        onnx = _need("onnx")
        return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    extra = {"zoo.json": ""}
    torch.export.load(str(path), extra_files=extra)
    return json.loads(extra["zoo.json"] or "{}")


def check_onnx_for(path: str | Path, model: Any) -> None:
    """``path`` is an ONNX file exported from ``model``'s weights (its metadata's sha256), or a one-line error.

    Another model's file would run and print that model's answers under this one's name.
    """
    onnx = _need("onnx")
    path = Path(path).expanduser()
    if path.is_dir():
        raise ZooError(f"--onnx {path} is a folder; give the .onnx file written by zoo export SOURCE -o FILE.onnx")
    if not path.is_file():
        raise ZooError(f"no such ONNX file: {path}; write one with zoo export SOURCE -o FILE.onnx")
    try:
        meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    except Exception as err:  # protobuf's DecodeError and friends: not an ONNX file at all
        from zoo.sources import describe

        raise ZooError(
            f"{path} is {describe(path)}, not a readable ONNX file ({type(err).__name__}); give a file written by "
            "zoo export"
        ) from None
    name = str(model.weights_name or model.hparams.model_name)
    if "zoo.weights_sha256" not in meta:
        raise ZooError(
            f"{path} carries no zoo metadata, so nothing says it holds {name}'s weights; "
            f"export them with zoo export {name} -o {path.stem}.onnx"
        )
    expected = metadata(model)["zoo.weights_sha256"]
    if meta["zoo.weights_sha256"] != expected:
        raise ZooError(
            f"{path} was exported from {meta.get('zoo.name', 'other weights')} (weights sha256 "
            f"{meta['zoo.weights_sha256'][:12]}…), not from {name} ({expected[:12]}…); predict with "
            f"{meta.get('zoo.name', 'those weights')}, or export {name} with zoo export {name} -o FILE.onnx"
        )


def onnx_session(path: str | Path):
    """An onnxruntime session for an exported file (CPU)."""
    ort = _need("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
