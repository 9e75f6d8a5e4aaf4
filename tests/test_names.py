"""Names that say what they are: no module named like the standard library's, docstrings that name
only registered models, one ``Mlp``, one base class of the networks, one width name for transformers.

Read from the source (the files under ``zoo/``) and from the registry, so a new file or family is
checked with no change here.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import zoo
import zoo.models  # noqa: F401  (registers the families)
from zoo.registry import list_weights

PACKAGE = Path(__file__).resolve().parent.parent / "zoo"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def _trees() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(), str(path)) for path in SOURCES}


def test_no_module_is_named_like_a_standard_library_module() -> None:
    """``zoo/inspect.py`` shadowed ``inspect`` for any script run from inside ``zoo/``; names must not clash."""
    clashes = [
        str(path.relative_to(PACKAGE.parent))
        for path in SOURCES + [p for p in PACKAGE.rglob("*") if p.is_dir()]
        if path.stem in sys.stdlib_module_names and path.name != "__init__.py"
    ]
    assert not clashes, f"modules named like standard-library modules: {clashes}"


def _docstrings(tree: ast.Module) -> list[str]:
    nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef))]
    return [doc for doc in map(ast.get_docstring, nodes) if doc]


def _mentioned_models(text: str, prefixes: set[str]) -> set[str]:
    """``name`` or ``name.tag`` in double backquotes whose letters start like a registered family's names."""
    found = set()
    for token in re.findall(r"``([a-z][a-z0-9_]*(?:\.[a-z0-9_]+)?)``", text):
        if re.match(r"[a-z]+", token).group() in prefixes:
            found.add(token)
    return found


def test_every_model_a_family_docstring_names_is_registered() -> None:
    """The ViT module doc listed ``vit_h_14``, which was never registered."""
    names, weights = set(zoo.list_models()), set(list_weights())
    prefixes = {re.match(r"[a-z]+", name).group() for name in names}
    mentioned = {}
    for path, tree in _trees().items():
        if path.parent.name == "models":
            for text in _docstrings(tree):
                for token in _mentioned_models(text, prefixes):
                    mentioned.setdefault(token, path.name)
    assert len(mentioned) > 20, "the scan finds the families' names"
    stale = {t: f for t, f in mentioned.items() if (t not in weights if "." in t else t not in names)}
    assert not stale, f"docstrings name unregistered models or weights: {stale}"


def test_the_scan_would_catch_an_unregistered_name() -> None:
    prefixes = {"vit", "swin"}
    assert _mentioned_models("ImageNet networks: ``vit_b_16``, ``vit_h_14``; ``dim`` wide", prefixes) == {
        "vit_b_16",
        "vit_h_14",
    }
