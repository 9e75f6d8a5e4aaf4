"""Names that say what they are: no module named like the standard library's, docstrings that name
only registered models, one ``Mlp``, one base class of the networks, one width name for transformers.

Read from the source (the files under ``zoo/``) and from the registry, so a new file or family is
checked with no change here.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
from pathlib import Path

import pytest
import torch

import zoo
import zoo.models  # noqa: F401  (registers the families)
from zoo.layers.network import Network
from zoo.registry import build_net, get_entry, list_weights

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


def _classes() -> dict[str, list[str]]:
    """Class name → the files under ``zoo/`` that define a class of that name."""
    found: dict[str, list[str]] = {}
    for path, tree in _trees().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                found.setdefault(node.name, []).append(str(path.relative_to(PACKAGE.parent)))
    return found


def test_one_mlp() -> None:
    """``Mlp`` (the transformer block's) and DETR's ``MLP`` (its box head, now ``BoxHead``) were two names."""
    mlps = {name: files for name, files in _classes().items() if name.lower() == "mlp"}
    assert mlps == {"Mlp": ["zoo/layers/transformer.py"]}


def test_every_classifier_is_a_network_and_nothing_is_called_backbone() -> None:
    """``Backbone`` was the base of every network; "backbone" now means ``zoo.backbone``'s feature
    extractor (and, for fine-tuning, the stages below the head), never the class of a whole network."""
    assert "Backbone" not in _classes()
    assert not (PACKAGE / "layers" / "backbone.py").exists()
    for name in zoo.list_models():
        if get_entry(name).task == "classification":
            with torch.device("meta"):
                net = build_net(name)
            assert isinstance(net, Network), name


@pytest.mark.parametrize("family", ["vit", "swin"])
def test_transformer_families_call_their_width_embed_dim(family: str) -> None:
    """timm's name, in both families: the builders pass it, the networks keep it as ``embed_dim``."""
    for name in zoo.list_models(f"{family}_*"):
        with torch.device("meta"):
            net = build_net(name)
        assert "embed_dim" in inspect.signature(type(net)).parameters, name
        assert net.embed_dim == net.feature_info[0]["num_chs"], name


def test_detr_calls_its_width_embed_dim_and_dim_still_loads() -> None:
    """The third transformer family uses timm's name too; the old ``dim=`` builds the same network, with a
    FutureWarning, so configs that named it still load."""
    with torch.device("meta"):
        net = build_net("detr_lite", embed_dim=64)
    assert "embed_dim" in inspect.signature(type(net)).parameters
    assert net.embed_dim == 64 and net.query_embed.weight.shape[1] == 64 and net.class_embed.in_features == 64
    with pytest.warns(FutureWarning, match="use embed_dim"), torch.device("meta"):
        old = build_net("detr_lite", dim=64)
    assert {k: v.shape for k, v in old.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}
