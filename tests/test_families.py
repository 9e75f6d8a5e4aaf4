"""The course's reference numbers for AlexNet, VGG, ResNet and EfficientNet, and the ImageNet importers.

Importer tests build torchvision's own model with random weights (no download), convert its state
dict and compare outputs on the same input.
"""

from __future__ import annotations

import pytest
import torch
import torchvision

from zoo.errors import WeightsError
from zoo.layer_table import layer_table
from zoo.pretrained import convert_state
from zoo.registry import build_net, get_entry, get_weights


def _meta_params(name: str, **kwargs) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in build_net(name, **kwargs).parameters())


# ---- exact parameter counts -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("lenet5", 61_706),  # the course's LeNet-5 (the registry counts it from the architecture)
        ("alexnet", 62_378_344),
        ("alexnet_tv", 61_100_840),
        ("vgg16", 138_357_544),
        ("resnet18", 11_689_512),
        ("resnet50", 25_557_032),
        ("resnet152", 60_192_808),
        ("efficientnet_b0", 5_288_548),
    ],
)
def test_course_parameter_counts(name: str, expected: int) -> None:
    assert get_entry(name).num_params == expected
    assert _meta_params(name) == expected


@pytest.mark.parametrize(
    ("name", "tv_name"),
    [(f"vgg{d}{bn}", f"vgg{d}{bn}") for d in (11, 13, 16, 19) for bn in ("", "_bn")]
    + [(f"resnet{d}", f"resnet{d}") for d in (18, 34, 50, 101, 152)]
    + [(f"efficientnet_b{i}", f"efficientnet_b{i}") for i in range(8)]
    + [("alexnet_tv", "alexnet")],
)
def test_parameter_counts_equal_torchvision(name: str, tv_name: str) -> None:
    with torch.device("meta"):
        theirs = sum(p.numel() for p in getattr(torchvision.models, tv_name)().parameters())
    assert _meta_params(name) == theirs == get_entry(name).num_params


def test_cifar_resnet_depths_are_6n_plus_2() -> None:
    for depth in (20, 32, 56):
        net = build_net(f"resnet{depth}")
        weight_layers = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        shortcuts = 2  # the two 1×1 projection convs are not counted in 6n + 2
        assert len(weight_layers) - shortcuts == depth
    assert 0.27e6 <= get_entry("resnet20").num_params <= 0.275e6
    # He et al. 2015, table 6: 0.27M, 0.46M, 0.85M parameters (truncated) for ResNet-20/32/56
    assert [get_entry(f"resnet{d}").num_params // 10_000 for d in (20, 32, 56)] == [27, 46, 85]


# ---- the AlexNet table of the course --------------------------------------------------------------
ALEXNET_ROWS = [  # layer, output (C, H, W) or (features,), parameters
    ("conv1", (96, 55, 55), 34_944),
    ("pool1", (96, 27, 27), 0),
    ("conv2", (256, 27, 27), 614_656),
    ("pool2", (256, 13, 13), 0),
    ("conv3", (384, 13, 13), 885_120),
    ("conv4", (384, 13, 13), 1_327_488),
    ("conv5", (256, 13, 13), 884_992),
    ("pool5", (256, 6, 6), 0),
    ("fc6", (4096,), 37_752_832),
    ("fc7", (4096,), 16_781_312),
    ("fc8", (1000,), 4_097_000),
]


@pytest.mark.parametrize("img_size", [227, 224])
def test_alexnet_table_row_by_row(img_size: int) -> None:
    net = build_net("alexnet", img_size=img_size)
    table = layer_table(net, (3, img_size, img_size))
    rows = {row.name.split(".")[-1]: row for row in table.rows}
    assert [n for n, *_ in ALEXNET_ROWS] == [
        r.name.split(".")[-1] for r in table.rows if r.kind in ("Conv2d", "MaxPool2d", "Linear")
    ]
    for name, shape, params in ALEXNET_ROWS:
        assert rows[name].output_shape == shape, name
        assert rows[name].params == params, name
    assert table.total_params == 62_378_344
    fc_share = sum(r.params for r in table.rows if r.kind == "Linear") / table.total_params
    assert fc_share == pytest.approx(0.94, abs=0.005)
    assert rows["pool5"].activations == 9216
    assert net.metadata["parameters in the FC layers"] == "58,631,144 of 62,378,344 = 94.0%"


def test_layer_table_of_a_failing_forward_leaves_no_flop_counter_behind() -> None:
    """A layer that raises (an image too small for VGG-16) must close the per-layer FLOP counters it opened:
    a leaked FlopCounterMode would stay on the dispatch stack and its global module hooks on every module."""
    from torch.nn.modules import module as nn_module
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    with pytest.raises(RuntimeError, match="too small"):
        layer_table(build_net("vgg16"), (3, 16, 16))
    assert _get_current_dispatch_mode_stack() == []
    assert not nn_module._global_forward_hooks and not nn_module._global_forward_pre_hooks
    assert len(layer_table(build_net("vgg11"), (3, 32, 32)).rows) > 0  # and the next table is whole


def test_alexnet_rejects_other_sizes() -> None:
    with pytest.raises(ValueError, match="227×227 or 224×224"):
        build_net("alexnet", img_size=200)


# ---- where VGG-16 keeps its parameters and its memory ------------------------------------------------
def test_vgg16_memory_and_parameters() -> None:
    table = layer_table(build_net("vgg16"), (3, 224, 224))
    input_values = 3 * 224 * 224
    # The course's count: the input and every conv / pool / FC output (a ReLU in place adds no tensor).
    course_count = input_values + sum(r.activations for r in table.rows if r.kind in ("Conv2d", "MaxPool2d", "Linear"))
    assert course_count == pytest.approx(15.26e6, rel=0.005)
    # the in-place ReLUs, Flatten and eval Dropout add no tensor; the 7×7 adaptive pool (torchvision's) copies 25,088
    assert table.new_activations == course_count + 512 * 7 * 7
    # zoo info's count: every layer's output, ReLUs included (what autograd keeps for out-of-place ReLUs).
    assert table.activations == pytest.approx(28.8e6, rel=0.005)
    # The slide's total, 24M values ≈ 96 MB, lies between the two counts (docstring of zoo.models.vgg).
    assert course_count < 24e6 < table.activations
    assert 24e6 * 4 / 1e6 == pytest.approx(96)
    fc = sum(r.params for r in table.rows if r.kind == "Linear")
    assert fc / table.total_params > 0.89
    first_two_stages = [
        r for r in table.rows if r.output_shape and len(r.output_shape) == 3 and r.output_shape[1] >= 112
    ]
    memory_share = sum(r.activations for r in first_two_stages) / table.activations
    param_share = sum(r.params for r in first_two_stages) / table.total_params
    assert memory_share == pytest.approx(0.70, abs=0.01) and param_share < 0.002


# ---- EfficientNet: one base network, compound scaling ------------------------------------------------
RESOLUTIONS = [224, 240, 260, 300, 380, 456, 528, 600]


@pytest.mark.parametrize("phi", range(8))
def test_efficientnet_variants_follow_compound_scaling(phi: int) -> None:
    from zoo.models.efficientnet import ALPHA, BETA, SCALING

    name = f"efficientnet_b{phi}"
    scaling = SCALING[name]
    assert scaling.phi == phi and scaling.resolution == RESOLUTIONS[phi]
    assert get_entry(name).input_size == (3, RESOLUTIONS[phi], RESOLUTIONS[phi])
    rule = scaling.rule()
    assert rule["depth"] == pytest.approx(ALPHA**phi) and rule["width"] == pytest.approx(BETA**phi)
    # the published multipliers follow the rule loosely (within 20%) and grow with φ
    assert scaling.depth == pytest.approx(rule["depth"], rel=0.2)
    assert scaling.width == pytest.approx(rule["width"], rel=0.2)
    assert scaling.resolution == pytest.approx(rule["resolution"], rel=0.2)
    if phi:
        smaller = SCALING[f"efficientnet_b{phi - 1}"]
        assert (
            scaling.depth >= smaller.depth
            and scaling.width >= smaller.width
            and scaling.resolution > smaller.resolution
        )
    with torch.device("meta"):
        net = build_net(name)
    assert net.input_size == (3, RESOLUTIONS[phi], RESOLUTIONS[phi])
    assert f"φ = {phi}" in net.metadata["compound scaling"]
    assert f"resolution {RESOLUTIONS[phi]}" in net.metadata["multipliers used"]


def test_efficientnet_constants_and_flops_grow_about_2x_per_phi() -> None:
    from zoo.layer_table import count_flops
    from zoo.models.efficientnet import ALPHA, BETA, GAMMA

    assert ALPHA * BETA**2 * GAMMA**2 == pytest.approx(2, abs=0.1)
    b0 = count_flops(build_net("efficientnet_b0"), (3, 224, 224))
    b1 = count_flops(build_net("efficientnet_b1"), (3, 240, 240))
    assert b0 == pytest.approx(0.39e9 * 2, rel=0.05)  # the paper's 0.39 B multiply-adds
    assert 1.3 < b1 / b0 < 2.3


def test_efficientnet_lite_is_b0_scaled_down() -> None:
    from zoo.models.efficientnet import SCALING

    lite = SCALING["efficientnet_lite"]
    assert lite.phi == -4 and lite.width == pytest.approx(1.1**-4) and lite.depth == pytest.approx(1.2**-4)
    net = build_net("efficientnet_lite")
    assert [len(stage) for stage in net.features[1:-1]] == [1, 1, 1, 2, 2, 2, 1]
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    sizes, x = [], torch.rand(1, 1, 28, 28)
    for stage in net.features[:-1]:
        x = stage(x)
        sizes.append(x.shape[-1])
    assert sizes == [28, 28, 14, 7, 4, 4, 2, 2], "stride-1 stem: small images keep a 2×2 map to the end"


# ---- torchvision importers ------------------------------------------------------------------------
IMPORTERS = [  # zoo name, torchvision builder, input size
    ("alexnet_tv", "alexnet", (3, 96, 96)),
    ("vgg11", "vgg11", (3, 32, 32)),
    ("vgg11_bn", "vgg11_bn", (3, 32, 32)),
    ("resnet18", "resnet18", (3, 64, 64)),
    ("resnet50", "resnet50", (3, 64, 64)),
    ("resnet152", "resnet152", (3, 64, 64)),
    ("vgg16_bn", "vgg16_bn", (3, 32, 32)),
    ("efficientnet_b0", "efficientnet_b0", (3, 64, 64)),
    ("efficientnet_b5", "efficientnet_b5", (3, 32, 32)),  # BatchNorm eps 1e-3 from here on
]


def _randomise_batchnorm(model: torch.nn.Module) -> None:
    """Non-trivial running statistics, so that a wrongly mapped BN buffer changes the outputs."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(module.num_features, generator=generator) * 0.1)


@pytest.mark.parametrize(("name", "tv_name", "input_size"), IMPORTERS)
def test_torchvision_importer_reproduces_outputs(name: str, tv_name: str, input_size: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, tv_name)(weights=None).eval()
    _randomise_batchnorm(theirs)
    weights = get_weights(f"{name}.tv_in1k")
    assert weights.num_classes == 1000 and weights.class_names == "imagenet-1k"
    assert weights.url.startswith("https://download.pytorch.org/models/") and weights.sha256 is None
    ours = build_net(name, num_classes=1000).eval()
    ours.load_state_dict(convert_state(f"{name}.tv_in1k", theirs.state_dict()))
    x = torch.rand(2, *input_size)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5, rtol=0)


def test_importer_converts_a_fine_tuned_head() -> None:
    theirs = torchvision.models.resnet18(weights=None)
    theirs.fc = torch.nn.Linear(512, 37)
    state = convert_state(
        "resnet18.tv_in1k", {"state_dict": {f"module.{k}": v for k, v in theirs.state_dict().items()}}
    )
    assert state["fc.weight"].shape == (37, 512)
    build_net("resnet18", num_classes=37).load_state_dict(state)


@pytest.mark.parametrize(("name", "tv_name"), [("resnet18", "resnet18"), ("efficientnet_b0", "efficientnet_b0")])
def test_load_a_users_fine_tuned_torchvision_file(tmp_path, name: str, tv_name: str) -> None:
    import argparse

    import zoo

    torch.manual_seed(0)
    theirs = getattr(torchvision.models, tv_name)(weights=None, num_classes=37).eval()
    _randomise_batchnorm(theirs)
    path = tmp_path / "fine_tuned.pth"
    # what torchvision's reference training scripts save: weights, optimizer, epoch, and the command line
    torch.save({"model": theirs.state_dict(), "epoch": 9, "args": argparse.Namespace(lr=0.1, model=tv_name)}, path)
    model = zoo.load(f"{name}.tv_in1k", file=path)
    assert model.hparams.num_classes == 37 and model.class_names[:2] == ["0", "1"]
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(
            model.net((x - model.mean) / model.std), theirs((x - model.mean) / model.std), atol=1e-5, rtol=0
        )


def test_efficientnet_b2_weights_take_torchvisions_eval_size(tmp_path) -> None:
    import zoo

    path = tmp_path / "b2.pth"
    torch.save(torchvision.models.efficientnet_b2(weights=None).state_dict(), path)
    model = zoo.load("efficientnet_b2.tv_in1k", file=path)
    assert model.input_size == (3, 288, 288) == get_weights("efficientnet_b2.tv_in1k").input_size
    assert zoo.create("efficientnet_b2").input_size == (3, 260, 260)  # the paper's resolution for φ = 2


@pytest.mark.parametrize("name", ["alexnet_tv", "vgg16", "resnet50"])
def test_importer_refuses_another_architecture(name: str, tmp_path) -> None:
    import zoo

    wrong = torchvision.models.resnet18(weights=None).state_dict() if name != "resnet50" else None
    if wrong is None:
        wrong = torchvision.models.resnet34(weights=None).state_dict()
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(WeightsError, match="not a torchvision|does not fit torchvision"):
        zoo.load(f"{name}.tv_in1k", file=tmp_path / "wrong.pth")


def test_importer_names_a_shape_mismatch(tmp_path) -> None:
    import zoo

    state = torchvision.models.resnet18(weights=None).state_dict()
    state["layer1.0.conv1.weight"] = state["layer1.0.conv1.weight"][:32]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match=r"shape mismatch \['layer1\.0\.conv1\.weight"):
        zoo.load("resnet18.tv_in1k", file=tmp_path / "bad.pth")


# ---- what the CLI shows ---------------------------------------------------------------------------
def test_zoo_info_prints_efficientnet_scaling(capsys) -> None:
    from zoo.cli.models import cmd_info

    cmd_info(["efficientnet_b1", "--input-size", "3", "64", "64"])
    out = " ".join(capsys.readouterr().out.split())
    assert "φ = 1: depth α^φ = 1.20, width β^φ = 1.10" in out
    assert "depth 1.1, width 1, resolution 240" in out


def test_registry_markdown_table() -> None:
    from zoo.cli.tables import registry_markdown

    lines = registry_markdown("resnet*").splitlines()
    assert lines[0].startswith("| model | family | input | params | GFLOPs |")
    row = next(line for line in lines if line.startswith("| `resnet50` "))
    assert "| 25,557,032 | 8.178 |" in row and "`resnet50.tv2_in1k`" in row


def test_registry_markdown_headline_is_accuracy_or_map(tmp_path) -> None:
    """A classifier's card gives its test top-1, a detector's its mAP@0.5 (a detector card has no test_acc)."""
    import json
    from types import SimpleNamespace

    from zoo.cli.tables import _headline

    weights = SimpleNamespace(dataset="some_data")
    (tmp_path / "a.json").write_text(json.dumps({"test_acc": 0.93041}))
    (tmp_path / "b.json").write_text(json.dumps({"test_map_50": 0.9123, "test_map": 0.6}))
    assert _headline(tmp_path / "a.json", weights) == " (93.04% some_data)"
    assert _headline(tmp_path / "b.json", weights) == " (mAP@0.5 0.912 some_data)"
    assert _headline(tmp_path / "missing.json", weights) == ""
