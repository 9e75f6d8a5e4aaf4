"""The package imports only downward: a declared order of layers, no import circles.

Every ``import`` of a ``zoo`` module in every file under ``zoo/`` counts, those inside functions too
(they run later, but they are still a dependency). A module may import modules of its own layer or
below; a module whose layer is not declared here fails the test, so a new file must say where it sits.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "zoo"

# lowest first; a name covers the module and everything below it (``zoo.models`` → ``zoo.models.resnet``)
LAYERS: list[tuple[str, ...]] = [
    ("zoo.errors", "zoo._version", "zoo.destinations", "zoo.sources"),
    (
        "zoo.registry",
        "zoo.catalog",
        "zoo.files",
        "zoo.layers",
        "zoo.data",
        "zoo.layer_table",
        "zoo.plots",
        "zoo.task_descriptions",
    ),
    ("zoo.energy",),  # the codecarbon callback, read by cards, fit and finetune
    ("zoo.models", "zoo.hub", "zoo.cards", "zoo.callbacks", "zoo.loggers", "zoo.plugins"),
    ("zoo.pretrained",),
    ("zoo.tasks",),
    (
        "zoo.finetuning",
        "zoo.finetune_defaults",
        "zoo.exporting",
        "zoo.evaluate",
        "zoo.predict",
        "zoo.attention",
        "zoo.detect",
        "zoo.backbones",
    ),
    ("zoo.explainers", "zoo.visualise"),  # zoo.explain (Captum) and its pictures: above zoo.attention, which it calls
    ("zoo",),  # the facade, zoo/__init__.py
    ("zoo.cli",),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    best, depth = None, -1
    for index, names in enumerate(LAYERS):
        for name in names:
            covers = module == name or (name != "zoo" and module.startswith(name + "."))  # "zoo": the facade only
            if covers and name.count(".") > depth:
                best, depth = index, name.count(".")
    if best is None:
        raise AssertionError(f"{module} is in no declared layer; add it to LAYERS in {Path(__file__).name}")
    return best


def imports_of(module: str) -> set[str]:
    """The zoo modules ``module`` imports: ``from zoo import plots`` is ``zoo.plots`` when plots is a module."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:  # zoo.models.resnet.ResNet → zoo.models.resnet
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_go_down(module: str) -> None:
    upward = [
        f"{target} (layer {layer_of(target)})"
        for target in sorted(GRAPH[module])
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, f"{module} (layer {layer_of(module)}) imports upward: {', '.join(upward)}"


def test_no_import_circles() -> None:
    """Depth-first search for a back edge; the message shows the circle."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                circle = path[path.index(target) :] + [target]
                raise AssertionError("import circle: " + " → ".join(circle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


def test_the_check_sees_function_level_and_relative_imports(tmp_path) -> None:
    """The reader is not blind: an import inside a function and a relative import are both found."""
    assert "zoo.tasks.factory" in GRAPH["zoo"]  # zoo/__init__.py imports it inside create()
    assert "zoo.registry" in GRAPH["zoo.models.resnet"]


def test_import_zoo_imports_no_heavy_library() -> None:
    """``import zoo`` stays light: torch, torchvision and Lightning load when a function first needs them."""
    import subprocess
    import sys

    code = (
        "import sys, zoo; print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchvision', 'lightning'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
