"""Every registered model's export status, tested: ONNX (run in onnxruntime) and torch.export programs
match PyTorch within 1e-4 at batch sizes 1 and 3, or the test names why a model is not exported here."""

from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import zoo
from zoo.exporting import export, onnx_session, read_metadata
from zoo.registry import build_net, get_entry

REPO = Path(__file__).resolve().parent.parent
SMALL = 2_000_000  # parameters: every model this small is exported (seconds each)
LIMIT = 65_000_000  # a larger model is exported only when no exported model has the same modules
MODELS = [m for m in zoo.list_models() if get_entry(m).task == "classification"]  # logits out (not DETR's dict)


def _meta(name: str):
    with torch.device("meta"):
        return build_net(name)


def _plan() -> dict[str, str | None]:
    """Each model → ``None`` (exported by the test) or the exported model whose module types cover its own."""
    plan: dict[str, str | None] = {}
    types = {name: {type(m) for m in _meta(name).modules()} for name in MODELS}
    exported: list[str] = []
    for name in sorted(MODELS, key=lambda m: get_entry(m).num_params):
        size = get_entry(name).num_params
        cover = next((m for m in exported if types[name] <= types[m] and size > SMALL), None)
        if cover is None and size > LIMIT:
            raise AssertionError(f"{name} is too large to export in CI and no exported model has its modules")
        plan[name] = cover
        if cover is None:
            exported.append(name)
    return plan


PLAN = _plan()
EXPORTED = [m for m in MODELS if PLAN[m] is None]
COVERED = [m for m in MODELS if PLAN[m] is not None]


def representative(name: str) -> str | None:
    return PLAN[name]


def support_markdown() -> str:
    lines = ["| model | ONNX (onnxruntime) | torch.export |", "|---|---|---|"]
    for name in MODELS:
        rep = representative(name)
        cell = "✓ tested" if rep is None else f"✓ same module types as `{rep}`, which is tested"
        lines.append(f"| `{name}` | {cell} | {cell} |")
    return "\n".join(lines)


@pytest.mark.parametrize("fmt", ["onnx", "exported-program"])
@pytest.mark.parametrize("name", EXPORTED)
def test_export_matches_pytorch(name: str, fmt: str, tmp_path) -> None:
    torch.manual_seed(0)
    model = zoo.create(name, num_classes=7).eval()
    path = export(model, tmp_path / ("m.onnx" if fmt == "onnx" else "m.pt2"), fmt)
    meta = read_metadata(path)
    assert meta["zoo.architecture"] == name and json.loads(meta["zoo.input_size"]) == list(model.input_size)
    assert len(json.loads(meta["zoo.class_names"])) == 7 and re.fullmatch(r"[0-9a-f]{64}", meta["zoo.weights_sha256"])
    run = (
        (lambda x: torch.from_numpy(onnx_session(path).run(None, {"pixels": x.numpy()})[0]))
        if fmt == "onnx"
        else torch.export.load(str(path)).module()
    )
    for batch in (1, 3):
        x = torch.rand(batch, *model.input_size)
        with torch.no_grad():
            expected = model(x)
            got = run(x)
        assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-4, rtol=1e-4), (
            batch,
            (got - expected).abs().max(),
        )


class _OpRecorder(TorchDispatchMode):
    """The ATen operators a forward pass calls (what an exporter has to translate)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


@functools.cache
def _aten_ops(name: str) -> frozenset[str]:
    """The operators of one forward pass of ``name`` at its input size, run on the meta device (no memory).

    Memoised helpers of zoo (Swin's shift masks) are emptied first: what they build is part of the graph an
    exporter traces, and must not hide behind a result another model cached.
    """
    for module in [m for key, m in sys.modules.items() if key.startswith("zoo.")]:
        for value in list(vars(module).values()):
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()
    with torch.device("meta"):
        net, x = build_net(name).eval(), torch.empty(2, *get_entry(name).input_size)
    with torch.no_grad(), _OpRecorder() as recorder:
        net(x)
    return frozenset(recorder.ops)


@pytest.mark.parametrize("name", COVERED)
def test_other_models_are_covered_by_an_exported_model_of_the_same_network(name: str) -> None:
    """The README's "same module types as X" claim is chosen by module types (``_plan``); it is checked here
    by another rule: every ATen operator the model's forward pass calls is one the exported model's calls."""
    rep = representative(name)
    assert rep in EXPORTED and type(_meta(rep)) is type(_meta(name)), (name, rep)
    missing = _aten_ops(name) - _aten_ops(rep)
    assert not missing, f"{name} calls operators that {rep}'s tested export never met: {sorted(missing)}"


def test_shipped_weights_export_with_their_card(tmp_path) -> None:
    model = zoo.load("lenet5.fmnist")
    meta = read_metadata(export(model, tmp_path / "lenet.onnx"))
    assert meta["zoo.weights_sha256"] == model.card_metrics["sha256"] and "T-shirt/top" in meta["zoo.class_names"]


def test_export_refuses_to_overwrite_and_unknown_formats(tmp_path) -> None:
    (tmp_path / "keep.onnx").write_bytes(b"mine")
    model = zoo.create("lenet5")
    with pytest.raises(zoo.ZooError, match="already exists"):
        export(model, tmp_path / "keep.onnx")
    assert (tmp_path / "keep.onnx").read_bytes() == b"mine"
    with pytest.raises(zoo.ZooError, match="choose one of onnx, exported-program"):
        export(model, tmp_path / "x.bin", "torchscript")


def test_missing_extra_names_the_install_line(tmp_path, monkeypatch) -> None:
    import builtins

    real = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    monkeypatch.delitem(__import__("sys").modules, "onnx", raising=False)
    with pytest.raises(zoo.ZooError, match=r"pip install 'zoo\[export\]'"):
        export(zoo.create("lenet5"), tmp_path / "x.onnx")


def test_cli_export(tmp_path, capsys) -> None:
    from zoo.cli import main

    main(["export", "resnet20.fmnist", "--format", "exported-program", "-o", str(tmp_path / "r20.pt2")])
    assert "wrote" in capsys.readouterr().out and (tmp_path / "r20.pt2").is_file()


def test_readme_support_table_is_current() -> None:
    from docs_text import block

    assert block("export") == support_markdown(), "stale: run python tests/test_readme.py"
