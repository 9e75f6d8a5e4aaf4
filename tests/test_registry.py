"""One suite over every registered model: shapes, NaNs, gradients, declared metadata, names."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.registry import build_net, get_entry

# Per-model exceptions, in one place. "input": a smaller test input for models without a fixed input
# size (full ImageNet-size networks are slow on CPU); "backward": False skips the gradient test for
# networks too large to train in a CPU test.
TEST_OVERRIDES: dict[str, dict] = {
    "alexnet": {"backward": False},
    "alexnet_tv": {"input": (3, 64, 64), "backward": False},
    **{name: {"input": (3, 32, 32), "backward": False} for name in ("vgg11", "vgg13", "vgg16", "vgg19")},
    **{f"{name}_bn": {"input": (3, 32, 32), "backward": False} for name in ("vgg11", "vgg13", "vgg16", "vgg19")},
    "resnet18": {"input": (3, 64, 64)},
    "resnet34": {"input": (3, 64, 64)},
    "resnet50": {"input": (3, 64, 64)},
    "resnet101": {"input": (3, 64, 64), "backward": False},
    "resnet152": {"input": (3, 64, 64), "backward": False},
    **{f"efficientnet_b{i}": {"input": (3, 64, 64), "backward": i < 3} for i in range(8)},
    **{name: {"input": (3, 64, 64)} for name in ("vit_ti_16", "vit_s_16", "swin_t")},
    **{name: {"input": (3, 64, 64), "backward": False} for name in ("vit_b_16", "vit_b_32", "swin_s", "swin_b")},
    **{name: {"input": (3, 32, 32), "backward": False} for name in ("vit_l_16", "vit_l_32")},
}

ALL_MODELS = zoo.list_models()
MODELS = [m for m in ALL_MODELS if get_entry(m).task == "classification"]  # logits out; detectors: test_detection


def _test_input(name: str) -> tuple[int, ...]:
    entry = get_entry(name)
    return (
        tuple(TEST_OVERRIDES.get(name, {}).get("input", entry.input_size))
        if not entry.fixed_input_size
        else entry.input_size
    )


@pytest.mark.parametrize("name", MODELS)
def test_forward_shape_and_finite(name: str) -> None:
    torch.manual_seed(0)
    model = zoo.create(name).eval()
    x = torch.rand(2, *_test_input(name))
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, get_entry(name).num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", [m for m in MODELS if TEST_OVERRIDES.get(m, {}).get("backward", True)])
def test_backward_reaches_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    model = zoo.create(name, num_classes=7)
    x = torch.rand(2, *_test_input(name))
    out = model(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient reached {missing}"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_declared_num_params(name: str) -> None:
    entry = get_entry(name)
    net = build_net(name)
    assert sum(p.numel() for p in net.parameters()) == entry.num_params


def test_only_published_parameter_counts_are_typed() -> None:
    """The lite models' counts come from their architecture (on the meta device), never typed into a builder;
    a typed count is a published one (torchvision's), which test_families/test_transformers hold the build to."""
    lite = [m for m in ALL_MODELS if get_entry(m).input_size[0] == 1]
    assert len(lite) >= 10 and not [m for m in lite if get_entry(m).published_params is not None]
    typed = [m for m in ALL_MODELS if get_entry(m).published_params is not None]
    assert typed and all(get_entry(m).input_size[1] >= 224 for m in typed), typed


@pytest.mark.parametrize("name", MODELS)
def test_in_chans_option(name: str) -> None:
    entry = get_entry(name)
    model = zoo.create(name, in_chans=3).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, *_test_input(name)[1:]))
    assert out.shape == (1, entry.num_classes)


def test_list_models_pattern_and_pretrained() -> None:
    assert "lenet5" in zoo.list_models("lenet*")
    assert zoo.list_models("nothing-matches-this*") == []
    assert set(zoo.list_models(pretrained=True)) <= set(zoo.list_models())
    assert all("." in w for w in zoo.list_weights())


def test_unknown_model_lists_closest_names() -> None:
    with pytest.raises(zoo.UnknownModelError, match=r"unknown model 'lenet'.*closest: lenet5"):
        zoo.create("lenet")
    with pytest.raises(zoo.UnknownModelError, match="lenet5.fmnist"):
        zoo.load("lenet5.imagenet")


def test_duplicate_registration_is_refused() -> None:
    from zoo.registry import register_model

    with pytest.raises(ValueError, match="registered twice"):

        @register_model(family="lenet", input_size=(1, 28, 28), num_classes=10, num_params=0)
        def lenet5(**kwargs):  # noqa: F811
            raise AssertionError("never built")


@pytest.mark.parametrize("name", MODELS)
def test_fold_batchnorm_keeps_outputs(name: str) -> None:
    torch.manual_seed(0)
    model = zoo.create(name).eval()
    batchnorms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in batchnorms:  # trained-looking statistics, so that folding has something to fold
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    folded = model.fold_batchnorm()
    assert not [m for m in folded.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len([m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]) == len(batchnorms)
    x = torch.rand(2, *_test_input(name))
    with torch.no_grad():
        expected, got = model(x), folded(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


def test_fold_batchnorm_compile_keeps_outputs() -> None:
    """``fold_batchnorm(compile=True)``: torch.compile with inductor freezing, same outputs, source model untouched."""
    torch.manual_seed(0)
    model = zoo.create("resnet20", channels_last=True).eval()
    compiled = model.fold_batchnorm(compile=True)
    assert isinstance(compiled.net, torch._dynamo.eval_frame.OptimizedModule)
    assert not isinstance(model.net, torch._dynamo.eval_frame.OptimizedModule)
    x = torch.rand(4, 1, 28, 28)
    with torch.inference_mode():
        expected, got = model(x), compiled(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    with pytest.raises(zoo.InputShapeError, match="1-channel"):
        compiled(torch.rand(4, 3, 28, 28))  # the input check stays in front of the compiled network


def test_folded_model_refuses_to_train() -> None:
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    folded = zoo.create("resnet20").fold_batchnorm()
    data = DataLoader(TensorDataset(torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))), batch_size=2)
    trainer = L.Trainer(
        fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    with pytest.raises(zoo.ZooError, match="inference only"):
        trainer.fit(folded, data)


@pytest.mark.parametrize("name", MODELS)
def test_declared_first_conv_and_classifier_exist(name: str) -> None:
    """The names the loader adapts by (timm's ``first_conv`` / ``classifier``) point at real layers."""
    entry = get_entry(name)
    with torch.device("meta"):
        net = build_net(name)
    conv, head = net.get_submodule(entry.first_conv), net.get_submodule(entry.classifier)
    assert isinstance(conv, torch.nn.Conv2d) and conv.in_channels == entry.input_size[0]
    assert isinstance(head, torch.nn.Linear) and head.out_features == entry.num_classes


def test_every_weight_table_row_names_a_registered_model() -> None:
    from zoo.registry import unclaimed_weights

    assert unclaimed_weights() == []


def test_unknown_keyword_is_one_line_naming_the_accepted_ones() -> None:
    with pytest.raises(zoo.errors.UnknownArgumentError) as info:
        zoo.create("lenet5", dropuot=0.5)
    message = str(info.value)
    assert "\n" not in message and "'dropuot'" in message and "did you mean 'dropout'" in message
    assert "lr" in message and "batch_norm" in message  # the task's and the builder's arguments
    with pytest.raises(TypeError):  # still a TypeError for code that catches one
        zoo.create("resnet20", depthh=3)


def test_unknown_option_value_is_refused_at_creation() -> None:
    with pytest.raises(zoo.ZooError, match="unknown optimizer 'sgdd'; did you mean 'sgd'"):
        zoo.create("lenet5", optimizer="sgdd")


def test_catalog_matches_the_registry_and_zoo_list_needs_no_torch() -> None:
    """``zoo list`` reads zoo/catalog.json; it must say what the registry says, and start without torch."""
    import subprocess
    import sys

    from zoo import catalog

    assert catalog.read() == catalog.rows_from_registry(), (
        f"zoo/catalog.json is stale: refresh it with {catalog.REFRESH}"
    )
    for query in ({"pattern": "res*", "pretrained": True}, {"pattern": ["vit*", "swin*"], "exclude": ["*_lite*"]}):
        assert [row["name"] for row in catalog.read(**query)] == zoo.list_models(**query), query
    code = (
        "import sys; from zoo.cli import main; main(['list', 'vit*']); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchvision', 'lightning'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "vit_b_16" in out and "86,567,656" in out and out.strip().endswith("[]")
