"""Which parameters train with weight decay: one rule (:func:`zoo.tasks.optim.no_decay_names`), as timm's.

Biases and normalisation weights are exempt, and so is what a family declares in ``no_weight_decay()``
(ViT's position embedding and class token, Swin's relative-position tables), as in timm and in
torchvision's reference recipes. The groups are checked against timm's own builder on timm's own
networks of the same shape, against names written out by hand, and through the task's optimiser.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

import zoo
from zoo.models.swin import SwinTransformer
from zoo.models.vit import VisionTransformer, convert_timm
from zoo.registry import build_net
from zoo.tasks import optim
from zoo.tasks.optim import decay_split, no_decay_names, param_groups

timm = pytest.importorskip("timm")
from timm.optim import param_groups_weight_decay  # noqa: E402

TINY_VIT = dict(img_size=28, patch_size=4, in_chans=1, embed_dim=32, depth=2, num_heads=2, num_classes=10)
TINY_SWIN = dict(patch_size=2, in_chans=1, embed_dim=16, depths=(2, 2), num_heads=(1, 2), mlp_ratio=2.0, num_classes=10)


def timm_no_decay(model: nn.Module) -> set[str]:
    """The parameter names timm's ``param_groups_weight_decay`` puts in its weight-decay-0 group."""
    names = {id(p): name for name, p in model.named_parameters()}
    groups = param_groups_weight_decay(model, 0.05, no_weight_decay_list=model.no_weight_decay())
    return {names[id(p)] for group in groups if group["weight_decay"] == 0 for p in group["params"]}


def test_vit_groups_equal_timms_on_timms_vit() -> None:
    ours = VisionTransformer(**TINY_VIT)
    theirs = timm.models.vision_transformer.VisionTransformer(**TINY_VIT)
    assert set(convert_timm(dict(theirs.named_parameters()))) == set(dict(ours.named_parameters())), "same layout"
    expected = set(convert_timm(dict.fromkeys(timm_no_decay(theirs))))
    assert {"embed.pos_embed", "embed.cls_token"} <= expected
    assert no_decay_names(ours) == expected


def test_swin_groups_equal_timms_on_timms_swin() -> None:
    ours = SwinTransformer(window=7, **TINY_SWIN)
    theirs = timm.models.swin_transformer.SwinTransformer(img_size=28, window_size=7, **TINY_SWIN)
    expected = {name.replace("head.fc.", "head.") for name in timm_no_decay(theirs)}  # timm's head is head.fc
    assert no_decay_names(ours) == expected


def test_swin_lite_tables_are_exempt_by_name() -> None:
    """Written out by hand: 3 stages of 2 blocks, one table each; every Linear/conv weight decays."""
    net = build_net("swin_lite")
    tables = {f"layers.{i}.blocks.{j}.attn.relative_position_bias_table" for i in range(3) for j in range(2)}
    assert net.no_weight_decay() == tables
    matrices = {name for name, p in net.named_parameters() if p.ndim > 1} - tables
    assert "layers.0.blocks.0.mlp.fc1.weight" in matrices and "patch_embed.proj.weight" in matrices
    assert no_decay_names(net) == set(dict(net.named_parameters())) - matrices


def _decay_of(groups: list[dict], param: torch.Tensor) -> float:
    (decay,) = [g["weight_decay"] for g in groups if any(p is param for p in g["params"])]
    return decay


@pytest.mark.parametrize("staged", [False, True], ids=["one_rate", "layer_decay"])
@pytest.mark.parametrize("name", ["vit_lite", "swin_lite"])
def test_the_tasks_optimizer_exempts_positions_and_decays_linear_weights(name: str, staged: bool) -> None:
    """Through ``configure`` as a fit calls it: both the plain and the per-stage group builders."""
    model = zoo.create(name, optimizer="adamw", weight_decay=0.05, layer_decay=0.75 if staged else 1.0)
    hp = copy.copy(model.hparams)
    configured = optim.configure(model, hp, (10, 5))
    optimizer = configured["optimizer"] if isinstance(configured, dict) else configured
    groups = optimizer.param_groups
    assert sorted(id(p) for g in groups for p in g["params"]) == sorted(id(p) for p in model.parameters())
    net = model.net
    if name == "vit_lite":
        exempt = [net.embed.pos_embed, net.embed.cls_token]
        linear = net.blocks[0].mlp.fc1.weight
    else:
        exempt = [block.attn.relative_position_bias_table for stage in net.layers for block in stage.blocks]
        linear = net.layers[0].blocks[0].attn.qkv.weight
    assert all(_decay_of(groups, p) == 0.0 for p in exempt)
    assert _decay_of(groups, linear) == 0.05
    assert _decay_of(groups, net.norm.weight) == 0.0 and _decay_of(groups, net.head.bias) == 0.0


def test_a_declared_name_that_is_no_parameter_is_refused() -> None:
    class Renamed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def no_weight_decay(self) -> set[str]:
            return {"pos_embed"}

    with pytest.raises(ValueError, match="pos_embed"):
        param_groups(nn.Sequential(Renamed()), 0.05)


def test_declarations_of_nested_modules_are_prefixed() -> None:
    """A family inside a wrapper (the task's ``net``, a detector's backbone) keeps its exemptions."""
    wrapper = nn.ModuleDict({"net": VisionTransformer(**TINY_VIT)})
    assert {"net.embed.pos_embed", "net.embed.cls_token"} <= no_decay_names(wrapper)
    (_, _, decayed), (_, _, exempt) = decay_split(wrapper, 0.1)
    pos_embed = wrapper["net"].embed.pos_embed
    assert any(p is pos_embed for p in exempt) and not any(p is pos_embed for p in decayed)


def test_vit_dim_is_a_deprecated_alias_of_embed_dim() -> None:
    new = VisionTransformer(**TINY_VIT)
    kwargs = {k: v for k, v in TINY_VIT.items() if k != "embed_dim"}
    with pytest.warns(FutureWarning, match="embed_dim"):
        old = VisionTransformer(dim=32, **kwargs)
    assert {k: v.shape for k, v in old.state_dict().items()} == {k: v.shape for k, v in new.state_dict().items()}
    assert old.embed_dim == new.embed_dim == 32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        VisionTransformer(**TINY_VIT)  # the new name warns nothing


def test_both_loaders_resample_position_embeddings_alike() -> None:
    """``load_state_dict`` and ``adapt_state`` (the zoo's loaders) go through one resampler."""
    torch.manual_seed(0)
    small = VisionTransformer(**TINY_VIT)
    big = VisionTransformer(**{**TINY_VIT, "img_size": 56})
    adapted = big.adapt_state(small.state_dict())
    assert adapted["embed.pos_embed"].shape == big.embed.pos_embed.shape == (1, 1 + 14 * 14, 32)
    big.load_state_dict(small.state_dict())
    assert torch.equal(big.embed.pos_embed.detach(), adapted["embed.pos_embed"].detach())
    own = big.state_dict()
    assert big.adapt_state(own)["embed.pos_embed"] is own["embed.pos_embed"]  # already this size: untouched
