"""Out of Python: a task's preprocessing + network as ONNX (run by onnxruntime) or a ``torch.export`` program.

The exported graph takes what the model takes — float pixels in [0, 1], any batch size — because the
normalisation is exported with the network. Its metadata carries the class names, input size,
preprocessing and the sha256 of the weights it came from, so a file found on disk says what it is.

    zoo.export(zoo.load("resnet20.fmnist"), "resnet20.onnx")                 # or format="exported-program"
    session = onnxruntime.InferenceSession("resnet20.onnx"); session.run(None, {"pixels": images})
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from zoo.errors import InvalidValueError, ZooError

FORMATS = ("onnx", "exported-program")
DEFAULT_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "pixels", "logits"


class InferenceGraph(nn.Module):
    """What gets exported: ``(x - mean) / std`` then the plain network, in eval mode."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.net = model.net
        self.register_buffer("mean", model.mean.detach().clone())
        self.register_buffer("std", model.std.detach().clone())

    def forward(self, pixels: Tensor) -> Tensor:
        return self.net((pixels - self.mean) / self.std)


def metadata(model: Any) -> dict[str, str]:
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
        "zoo.input": "float32 pixels in [0, 1], shape (batch, C, H, W); normalisation is inside the graph",
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
    model: Any, path: str | Path, format: str = "onnx", *, opset: int = DEFAULT_OPSET, overwrite: bool = False
) -> Path:
    """Write ``model`` (a zoo task) to ``path`` as ``format``; returns the path.

    The batch axis is dynamic; the spatial size is the model's input size (``model.input_size``).
    """
    if format not in FORMATS:
        raise InvalidValueError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    path = Path(path).expanduser()
    if path.exists() and not overwrite:
        raise ZooError(f"{path} already exists; give another file name, or overwrite=True (--overwrite) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = InferenceGraph(model).eval()
    example = torch.rand(2, *model.input_size)
    batch = torch.export.Dim("batch", min=1, max=65536)
    meta = metadata(model)
    try:
        if format == "onnx":
            onnx = _need("onnx")
            _need("onnxscript")
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
            for key, value in meta.items():
                proto.metadata_props.add(key=key, value=value)
            onnx.save(proto, str(path))
        else:
            program = torch.export.export(graph, (example,), dynamic_shapes={"pixels": {0: batch}})
            torch.export.save(program, str(path), extra_files={"zoo.json": json.dumps(meta)})
    except ZooError:
        raise
    except Exception as err:  # the exporter's own error: one line naming the model and the format
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ZooError(
            f"{meta['zoo.name']} could not be exported as {format} ({type(err).__name__}: {first[:200]})"
        ) from err
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    """The zoo metadata of an exported file (ONNX or exported program)."""
    path = Path(path)
    if path.suffix == ".onnx":
        onnx = _need("onnx")
        return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    extra = {"zoo.json": ""}
    torch.export.load(str(path), extra_files=extra)
    return json.loads(extra["zoo.json"] or "{}")


def onnx_session(path: str | Path):
    """An onnxruntime session for an exported file (CPU)."""
    ort = _need("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
