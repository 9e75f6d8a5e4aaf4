"""The usual first CUDA failure, found on a CPU: a tensor made at forward time without ``device=``.

Reads (``ast``) the forward, loss and metric code under ``zoo/models``, ``zoo/layers`` and ``zoo/tasks``,
follows calls by name from the forward-time entry points (``forward``, the Lightning steps and ``on_*``
hooks, ``predict``, ``detections``...) and reports every tensor factory call (``torch.zeros``,
``torch.arange``, ``torch.tensor``...) in a function it reaches that passes no ``device=``. Such a tensor
lands on the CPU while the model runs on a GPU. The ``*_like`` forms and ``x.new_*`` keep their input's
device and are not factories here. Code reached only from ``__init__`` (a buffer, moved with the module)
is not forward-time. Hits that are fine are in ``ALLOWED`` with the reason; any other hit fails.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("zoo/models", "zoo/layers", "zoo/tasks")
FACTORIES = {
    "zeros",
    "ones",
    "empty",
    "full",
    "arange",
    "range",
    "tensor",
    "as_tensor",
    "rand",
    "randn",
    "randint",
    "randperm",
    "linspace",
    "logspace",
    "eye",
    "empty_strided",
    "scalar_tensor",
    "tril_indices",
    "triu_indices",
    "Tensor",
    "FloatTensor",
    "LongTensor",
    "BoolTensor",
}
ROOTS = {"forward", "training_step", "validation_step", "test_step", "predict_step", "predict", "predict_proba"}
ROOTS |= {"detections", "__call__", "layer_losses"}  # and every Lightning hook: names that start with "on_"

# (file, function, factory) → why it is fine on a GPU
ALLOWED: dict[tuple[str, str, str], str] = {
    ("zoo/tasks/regression.py", "AngleRegressor.on_test_epoch_end", "zeros"): (
        "the empty list of a test run without batches: the per-image errors it stands for are gathered on "
        "the CPU (detach().cpu()) for the median and the per-class table"
    ),
    ("zoo/tasks/matcher.py", "HungarianMatcher.forward", "zeros"): (
        "the empty match of a batch without objects: match indices live on the CPU like scipy's, and "
        "SetCriterion.layer_losses moves them to the logits' device"
    ),
    ("zoo/tasks/matcher.py", "HungarianMatcher.forward", "as_tensor"): (
        "scipy's assignment (numpy, CPU) as index tensors; SetCriterion.layer_losses moves them to the device"
    ),
}


class _Functions(ast.NodeVisitor):
    """Every top-level function and method of a file: the names it calls and its factory calls without device=."""

    def __init__(self, file: str) -> None:
        self.file, self.scope = file, []
        self.calls: dict[str, set[str]] = defaultdict(set)  # qualified name → names it calls
        self.hits: dict[str, list[tuple[int, str]]] = defaultdict(list)  # qualified name → (line, factory)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append((node.name, True))
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.scope.append((node.name, False))
        self.generic_visit(node)
        self.scope.pop()

    def _owner(self) -> str | None:
        """The function a call belongs to: its classes and outermost function (a nested helper counts as it)."""
        depth = next((i for i, (_, is_function) in enumerate(self.scope) if is_function), None)
        return None if depth is None else ".".join(name for name, _ in self.scope[: depth + 1])

    def visit_Call(self, node: ast.Call) -> None:
        owner, func = self._owner(), node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        if owner and name:
            self.calls[owner].add(name)
            is_torch = isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "torch"
            if is_torch and name in FACTORIES and not any(k.arg == "device" for k in node.keywords):
                self.hits[owner].append((node.lineno, name))
        self.generic_visit(node)


def forward_time_hits(files: list[Path], root: Path = REPO) -> list[tuple[str, str, str, int]]:
    """``(file, function, factory, line)`` of every factory call without ``device=`` reachable at forward time."""
    functions: dict[str, list[tuple[str, str]]] = defaultdict(list)  # bare name → (file, qualified name)
    calls, hits = {}, {}
    for path in files:
        file = path.relative_to(root).as_posix()
        visitor = _Functions(file)
        visitor.visit(ast.parse(path.read_text(), filename=file))
        for qualified in set(visitor.calls) | set(visitor.hits):
            functions[qualified.rsplit(".", 1)[-1]].append((file, qualified))
            calls[file, qualified] = visitor.calls.get(qualified, set())
            hits[file, qualified] = visitor.hits.get(qualified, [])
    todo = [key for name, keys in functions.items() if name in ROOTS or name.startswith("on_") for key in keys]
    reached = set(todo)
    while todo:
        for name in calls[todo.pop()]:
            for key in functions.get(name, []):
                if key not in reached and not key[1].endswith("__init__"):
                    reached.add(key)
                    todo.append(key)
    return sorted((file, fn, factory, line) for file, fn in reached for line, factory in hits[file, fn])


def _scanned_files() -> list[Path]:
    return sorted(path for folder in SCANNED for path in (REPO / folder).rglob("*.py"))


def test_no_new_tensor_without_a_device_at_forward_time() -> None:
    found = forward_time_hits(_scanned_files())
    new = [
        f"{file}:{line} {fn}: torch.{factory}(...)"
        for file, fn, factory, line in found
        if (file, fn, factory) not in ALLOWED
    ]
    assert not new, (
        "tensors made at forward time without device= (they land on the CPU while the model is on a GPU); pass "
        "device=x.device (or use torch.zeros_like / x.new_zeros), or list them in ALLOWED with the reason:\n"
        + "\n".join(new)
    )
    stale = set(ALLOWED) - {(file, fn, factory) for file, fn, factory, _ in found}
    assert not stale, f"ALLOWED lists hits that are gone; remove them: {sorted(stale)}"


PLANTED = """
import torch

def grid(n):  # only ever called from __init__: a buffer, moved with the module
    return torch.arange(n)

def offsets(x):
    return torch.arange(x.shape[-1])  # reached from forward: a hit

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("grid", grid(4))
        self.scale = torch.ones(3)

    def forward(self, x):
        mask = torch.zeros(x.shape[0], device=x.device)
        same = torch.zeros_like(x) + x.new_ones(1)
        return x + offsets(x) + mask[:, None] + same + torch.tensor([1.0])

    def on_validation_epoch_end(self):
        self.log("n", torch.tensor(3))
"""


def test_the_check_finds_a_planted_hit_and_leaves_device_like_and_init_code(tmp_path) -> None:
    (tmp_path / "net.py").write_text(PLANTED)
    found = [(fn, factory) for _, fn, factory, _ in forward_time_hits([tmp_path / "net.py"], tmp_path)]
    assert sorted(found) == [
        ("Net.forward", "tensor"),
        ("Net.on_validation_epoch_end", "tensor"),
        ("offsets", "arange"),
    ]


@pytest.mark.parametrize("folder", SCANNED)
def test_the_scanned_folders_exist_and_hold_forward_code(folder: str) -> None:
    files = sorted((REPO / folder).rglob("*.py"))
    assert any("def forward" in path.read_text() or "_step(" in path.read_text() for path in files), folder
