"""The registry-wide suite over every one of timm's tiny ``test_*`` architectures (``timm.list_models("test_*")``),
at random init: forward, the backbone interface, stages and layer decay, the strategies, feature pyramids,
save/load, timm's Hub repos through ``zoo.load`` (the Hub emulator), and export (slow: ONNX and torch.export)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import zoo
from zoo.finetuning import Finetuning
from zoo.layers.network import Network
from zoo.tasks.optim import stage_param_groups

timm = pytest.importorskip("timm")
ARCHS = timm.list_models("test_*")


def _pixels(model) -> torch.Tensor:
    return torch.rand(2, *model.input_size, generator=torch.Generator().manual_seed(7))


def _normalised(model, x: torch.Tensor) -> torch.Tensor:
    return (x - model.mean) / model.std


def _reference(arch: str, model) -> torch.nn.Module:
    """timm's own network with the zoo model's weights (its state dict loads as is: timm's keys)."""
    reference = timm.create_model(arch, num_classes=model.hparams.num_classes).eval()
    reference.load_state_dict(model.net.state_dict())
    return reference


def test_the_suite_covers_timms_tiny_architectures() -> None:
    assert len(ARCHS) >= 18 and {"test_vit", "test_convnext", "test_resnet", "test_efficientnet"} <= set(ARCHS)


@pytest.mark.parametrize("arch", ARCHS)
def test_timm_architecture_passes_the_registry_suite(arch: str, hub_env, tmp_path) -> None:
    from timm.models._hub import save_for_hf
    from timm.optim import param_groups_layer_decay

    torch.manual_seed(0)
    model = zoo.create(f"timm/{arch}", num_classes=3).eval()
    reference, x = _reference(arch, model), _pixels(model)
    net = model.net
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(out, reference(_normalised(model, x)), rtol=0, atol=1e-5)
        # the backbone interface: forward = head(features); pre-logits embeddings of num_features
        features = net.forward_features(_normalised(model, x))
        torch.testing.assert_close(net.forward_head(features), out, rtol=0, atol=1e-5)
        assert net.forward_head(features, pre_logits=True).shape == (2, net.num_features)
    assert isinstance(net, Network)
    assert type(net.get_classifier()) is type(reference.get_classifier())

    # stages: every parameter once, stem first, head last with the classifier; layer decay as timm's
    stages = net.stages()
    ids = [id(p) for _, modules in stages for m in modules for p in m.parameters()]
    assert sorted(ids) == sorted(id(p) for p in net.parameters()) and len(ids) == len(set(ids))
    assert stages[0][0] == "stem" and stages[-1][0] == "head" and len(stages) >= 3
    assert {id(p) for p in net.get_classifier().parameters()} <= {id(p) for m in stages[-1][1] for p in m.parameters()}
    hp = SimpleNamespace(lr=1.0, weight_decay=0.05, layer_decay=0.75, backbone_lr_factor=1.0)
    ours = {id(p): g["lr_scale"] for g in stage_param_groups(net, hp) for p in g["params"]}
    theirs = param_groups_layer_decay(
        net.model,
        weight_decay=0.05,
        no_weight_decay_list=getattr(net.model, "no_weight_decay", set)(),
        layer_decay=0.75,
    )
    assert ours == pytest.approx({id(p): g["lr_scale"] for g in theirs for p in g["params"]})

    # strategies: a linear probe trains the head alone; gradual unfreezes the top stage first
    holder = SimpleNamespace(net=net)
    Finetuning("linear_probe")._apply(holder, 0)
    trainable = {name for name, modules in stages if any(p.requires_grad for m in modules for p in m.parameters())}
    assert trainable == {"head"}
    Finetuning("gradual")._apply(holder, 1)
    trainable = {name for name, modules in stages if any(p.requires_grad for m in modules for p in m.parameters())}
    assert trainable == {"head", stages[-2][0]}
    Finetuning("full")._apply(holder, 0)
    assert all(p.requires_grad for p in net.parameters())

    # feature pyramids: every level of feature_info, as timm's forward_intermediates gives them
    extractor = zoo.backbone(model)
    with torch.no_grad():
        maps = extractor(x)
        expected = reference.forward_intermediates(_normalised(model, x), intermediates_only=True)
    assert extractor.feature_info == [dict(info) for info in reference.feature_info]
    assert [m.shape[1] for m in maps] == extractor.channels()
    for got, want in zip(maps, expected):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)

    # save_pretrained → zoo.load: equal outputs
    loaded = zoo.load(model.save_pretrained(tmp_path / "saved"))
    with torch.no_grad():
        assert torch.equal(loaded(x), out)

    # a repo written by timm's save_for_hf on the (emulated) Hub: zoo.load gives timm's own loading's outputs
    from huggingface_hub import HfApi

    tag = reference.pretrained_cfg.get("tag")  # timm's naming: the repo is arch.tag (test_mambaout has none)
    repo_id = f"timm/{arch}" + (f".{tag}" if tag else "")
    save_for_hf(reference, str(tmp_path / "timm-repo"), safe_serialization="both")
    HfApi().create_repo(repo_id, exist_ok=True)
    HfApi().upload_folder(repo_id=repo_id, folder_path=tmp_path / "timm-repo")
    pulled = zoo.load(f"hf-hub:{repo_id}")
    hub_reference = timm.create_model(f"hf-hub:{repo_id}", pretrained=True).eval()
    assert pulled.weights_name == repo_id and pulled.hparams.num_classes == 3
    with torch.no_grad():
        torch.testing.assert_close(pulled(x), hub_reference(_normalised(pulled, x)), rtol=0, atol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_timm_architecture_fine_tunes_with_layer_decay(arch: str) -> None:
    """One training step through the optimiser the zoo builds (``configure``, as ``zoo fit``/``zoo.finetune``):
    every parameter moves by timm's own rates, ``p - lr·scale·(grad + wd·p)`` with the scale and weight decay
    of timm's ``param_groups_layer_decay``."""
    from timm.optim import param_groups_layer_decay

    from zoo.tasks.optim import configure

    torch.manual_seed(0)
    lr, wd, decay = 0.1, 0.05, 0.75
    model = zoo.create(
        f"timm/{arch}", num_classes=3, optimizer="sgd", momentum=0.0, lr=lr, weight_decay=wd, layer_decay=decay
    )
    optimizer = configure(model, model.hparams, (1, 1))
    theirs = param_groups_layer_decay(
        model.net.model,
        weight_decay=wd,
        no_weight_decay_list=getattr(model.net.model, "no_weight_decay", set)(),
        layer_decay=decay,
    )
    rates = {id(p): (lr * g["lr_scale"], g["weight_decay"]) for g in theirs for p in g["params"]}
    before = {id(p): p.detach().clone() for p in model.parameters()}
    model.train()
    x = _pixels(model)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 2]))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert rates.keys() == {id(p) for p in model.parameters()}
    moved = 0
    for p in model.parameters():
        if p.grad is None:  # not on this input's path (an unused distillation token)
            assert torch.equal(p, before[id(p)])
            continue
        step, weight_decay = rates[id(p)]
        expected = before[id(p)] - step * (p.grad + weight_decay * before[id(p)])
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-7)
        moved += 1
    assert moved >= len(rates) - 2 and len({step for step, _ in rates.values()}) >= 3


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_timm_architecture_exports_with_equal_outputs(arch: str, tmp_path) -> None:
    from zoo.exporting import onnx_session

    model = zoo.create(f"timm/{arch}", num_classes=3).eval()
    program = torch.export.load(str(zoo.export(model, tmp_path / "m.pt2", format="exported-program"))).module()
    session = onnx_session(zoo.export(model, tmp_path / "m.onnx"))
    for batch in (2, 3):  # the traced batch and another: the batch axis is dynamic in both formats
        x = torch.rand(batch, *model.input_size, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = model(x)
        torch.testing.assert_close(program(x), expected, rtol=0, atol=1e-4)
        got = session.run(None, {"pixels": x.numpy()})[0]
        torch.testing.assert_close(torch.from_numpy(got), expected, rtol=0, atol=1e-4)
