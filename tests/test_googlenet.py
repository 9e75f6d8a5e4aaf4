"""GoogLeNet (Inception v1): the count and the importer against torchvision's own model, the inception module,
the auxiliary classifiers (training only, their loss added by hand), ``zoo info`` and the 28-px lite network.

torchvision's ImageNet file cannot be downloaded here: its random-init model stands in for it, as for the
other importers (tests/test_families.py), with non-trivial BatchNorm statistics.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

import zoo
from zoo.layer_table import count_flops
from zoo.models.googlenet import AUX_WEIGHT, GOOGLENET_PARAMS, Inception
from zoo.pretrained import convert_state
from zoo.registry import build_net, get_entry, get_weights


def _randomise_batchnorm(model: torch.nn.Module) -> None:
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(module.num_features, generator=generator) * 0.1)


@pytest.fixture(scope="module")
def torchvision_googlenet() -> torch.nn.Module:
    """torchvision's GoogLeNet as its ImageNet weights build it (transform_input=True), with aux heads."""
    torch.manual_seed(0)
    theirs = torchvision.models.googlenet(weights=None, aux_logits=True, transform_input=True, init_weights=True)
    _randomise_batchnorm(theirs)
    return theirs.eval()


def _params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_count_is_torchvisions_with_and_without_the_auxiliary_heads() -> None:
    reference = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    assert GOOGLENET_PARAMS == 6_624_904 == _params(reference)
    assert get_entry("googlenet").num_params == _params(build_net("googlenet")) == 6_624_904
    with_aux = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    assert _params(build_net("googlenet", aux_logits=True)) == _params(with_aux) == 13_004_888


def test_about_one_and_a_half_billion_multiply_adds_at_224() -> None:
    flops = count_flops(build_net("googlenet"), (3, 224, 224))
    assert 1.45e9 < flops / 2 < 1.55e9, flops  # the paper's "1.5 billion multiply-adds"; 2 FLOPs each


def test_inception_module_concatenates_four_branches_by_hand() -> None:
    torch.manual_seed(0)
    module = Inception(8, 3, 4, 5, 2, 6, 7).eval()
    x = torch.rand(2, 8, 9, 9)
    out = module(x)
    assert out.shape == (2, 3 + 5 + 6 + 7, 9, 9) and module.out_channels == 21
    pooled = F.max_pool2d(x, 3, stride=1, padding=1)
    by_hand = torch.cat([module.branch1(x), module.branch2(x), module.branch3(x), module.branch4[1](pooled)], dim=1)
    assert torch.allclose(out, by_hand)
    assert module.branch3[1].conv.kernel_size == (5, 5)  # the paper's 5×5 (googlenet: torchvision's 3×3)


def test_importer_reproduces_torchvision_outputs(torchvision_googlenet, tmp_path) -> None:
    weights = get_weights("googlenet.tv_in1k")
    assert weights.url.endswith("googlenet-1378be20.pth") and weights.num_classes == 1000
    assert weights.mean == weights.std == (0.5, 0.5, 0.5)  # what transform_input turns ImageNet statistics into
    path = tmp_path / "googlenet.pth"
    torch.save(torchvision_googlenet.state_dict(), path)  # the published file holds the aux heads too
    model = zoo.load("googlenet.tv_in1k", file=path)
    assert model.net.aux1 is None and model.input_size == (3, 224, 224)
    pixels = torch.rand(2, 3, 224, 224)
    imagenet = torchvision.transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with torch.no_grad():
        theirs = torchvision_googlenet(imagenet(pixels))
        ours = model(pixels)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0), (ours - theirs).abs().max()
    # and the network alone, on a smaller input, through convert_state
    net = build_net("googlenet").eval()
    net.load_state_dict(convert_state("googlenet.tv_in1k", torchvision_googlenet.state_dict()))
    torchvision_googlenet.transform_input = False
    try:
        x = torch.randn(2, 3, 96, 96)
        with torch.no_grad():
            assert torch.allclose(net(x), torchvision_googlenet(x), atol=1e-5, rtol=0)
    finally:
        torchvision_googlenet.transform_input = True


def test_auxiliary_heads_run_in_training_only_and_their_loss_is_added() -> None:
    torch.manual_seed(0)
    model = zoo.create("googlenet", num_classes=5, aux_logits=True)
    assert model.net.aux1.fc2.out_features == model.net.aux2.fc2.out_features == 5  # reset with the head
    images, targets = torch.rand(2, 3, 96, 96), torch.tensor([1, 3])
    model.train()
    loss, logits, _ = model._shared_step((images, targets))
    aux1, aux2 = model.net.aux_outputs
    assert logits.shape == aux1.shape == aux2.shape == (2, 5)
    by_hand = F.cross_entropy(logits, targets) + AUX_WEIGHT * (
        F.cross_entropy(aux1, targets) + F.cross_entropy(aux2, targets)
    )
    assert torch.allclose(loss, by_hand)
    model.eval()
    with torch.no_grad():
        loss, logits, _ = model._shared_step((images, targets))
    assert model.net.aux_outputs == [] and torch.allclose(loss, F.cross_entropy(logits, targets))
    model.reset_classifier(3)
    assert model.net.aux1.fc2.out_features == 3


def test_zoo_info_shows_the_count_beside_the_courses(capsys) -> None:
    from zoo.cli import main

    main(["info", "googlenet"])
    out = " ".join(capsys.readouterr().out.split())
    assert "parameters 6,624,904" in out and "inception5b" in out
    assert "6.4M parameters, 2B FLOPs" in out and "13,004,888" in out  # the course's rounding, explained
    assert "fc 1,025,000 (15.5%) / 1M (0%)" in out and "stem 124,736 (1.9%) / 478M (32%)" in out  # where they sit


def test_googlenet_lite_takes_fashion_mnist_images() -> None:
    torch.manual_seed(0)
    model = zoo.create("googlenet_lite").eval()
    assert model.input_size == (1, 28, 28)
    with torch.no_grad():
        out = model(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    assert 2e5 < _params(model.net) < 1e6
    assert [name for name, _ in model.net.stages()] == ["stem", "stage1", "stage2", "stage3", "head"]
