"""The backbone interface, tested over the whole registry: one test per property, none per model.

Every family must give: forward_features / forward_head (pre_logits) / num_features / get_classifier /
reset_classifier (0 = embeddings), stages covering every parameter once in order, feature_info levels
that zoo.backbone returns, and the task-level head change and preprocessing that ride on them.
"""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from PIL import Image
from test_registry import MODELS, _test_input

import zoo
from zoo.backbones import backbone
from zoo.layers.features import to_map
from zoo.layers.preprocessing import eval_transforms
from zoo.registry import build_net, get_entry, get_weights, list_weights

SHIPPED = [name for name in list_weights() if name.endswith(".fmnist")]
TORCHVISION = [  # the classifiers' ImageNet files; segmentation weights resize without a crop (test_segmentation.py)
    name
    for name in list_weights()
    if get_weights(name).origin == "torchvision" and get_entry(name.split(".")[0]).task == "classification"
]


def _net(name: str, **kwargs):
    torch.manual_seed(0)
    return build_net(name, **kwargs).eval()


@pytest.mark.parametrize("name", MODELS)
def test_forward_is_head_of_features(name: str) -> None:
    net = _net(name)
    x = torch.rand(2, *_test_input(name))
    with torch.no_grad():
        features = net.forward_features(x)
        assert torch.equal(net(x), net.forward_head(features))
        embedding = net.forward_head(features, pre_logits=True)
    tokens = getattr(net, "token_features", False)  # a ViT's features are its tokens (N, L, D), not a map
    assert features.ndim == (3 if tokens else 4) and embedding.shape == (2, net.num_features)
    assert net.get_classifier() is net.get_submodule(get_entry(name).classifier)


@pytest.mark.parametrize("name", MODELS)
def test_reset_classifier_and_embeddings(name: str) -> None:
    net = _net(name)
    x = torch.rand(2, *_test_input(name))
    with torch.no_grad():
        embedding = net.forward_head(net.forward_features(x), pre_logits=True)
        net.reset_classifier(7)
        assert net(x).shape == (2, 7)
        net.reset_classifier(0)
        assert isinstance(net.get_classifier(), torch.nn.Identity)
        assert torch.equal(net(x), embedding)
        model = zoo.create(name, num_classes=0).eval()  # the timm way: the model returns embeddings
        assert model(x).shape == (2, net.num_features)


@pytest.mark.parametrize("name", MODELS)
def test_stages_cover_every_parameter_once_in_order(name: str) -> None:
    with torch.device("meta"):
        net = build_net(name)
    stages = net.stages()
    assert stages[0][0] == "stem" and stages[-1][0] == "head" and stages[-1][1] == [net.get_classifier()]
    grouped = [id(p) for _, modules in stages for module in modules for p in module.parameters()]
    assert grouped == [id(p) for p in net.parameters()], "every parameter exactly once, from input to output"


@pytest.mark.parametrize("name", MODELS)
def test_feature_pyramid_matches_feature_info(name: str) -> None:
    entry = get_entry(name)
    sizes = [_test_input(name)]
    if not entry.fixed_input_size:
        sizes.append((sizes[0][0], sizes[0][1] + 32, sizes[0][2] + 16))  # a second, non-square size
    features = backbone(name)
    assert [info["module"] for info in features.feature_info] == [i["module"] for i in _net(name).feature_info]
    for size in sizes:
        with torch.no_grad():
            maps = features(torch.rand(1, *size))
        assert len(maps) == len(features.feature_info)
        for fmap, info in zip(maps, features.feature_info):
            assert fmap.shape[1] == info["num_chs"], info
            for side, got in zip(size[1:], fmap.shape[2:]):  # stride `reduction`, less what valid convs/pools trim
                assert side / info["reduction"] / 2 - 1 < got <= math.ceil(side / info["reduction"]), (info, size)


@pytest.mark.parametrize("name", SHIPPED)
def test_pretrained_pyramid_equals_the_models_own_layers(name: str) -> None:
    model = zoo.load(name)
    features = backbone(name, out_indices=(0, -1))
    captured = {}
    x = torch.rand(2, *model.input_size)

    def keep(info):
        def hook(_module, _inputs, out) -> None:  # None: a hook's return value would replace the layer's output
            captured.setdefault(info["module"], to_map(out, info, x.shape[2:]))

        return hook

    hooks = [
        model.net.get_submodule(info["module"]).register_forward_hook(keep(info)) for info in features.feature_info
    ]
    with torch.no_grad():
        model(x)
        maps = features(x)
    for hook in hooks:
        hook.remove()
    for fmap, info in zip(maps, features.feature_info):
        assert torch.allclose(fmap, captured[info["module"]], atol=1e-6)


def test_backbone_refuses_levels_it_does_not_have() -> None:
    with pytest.raises(
        zoo.ZooError, match=r"lenet5 has 2 feature levels \(0, 1: features\.s2, features\.s4\); got out_indices=\(5,\)"
    ):
        backbone("lenet5", out_indices=(5,))


def test_task_backbone_and_head_work_with_lightnings_backbone_finetuning() -> None:
    from lightning.pytorch.callbacks import BackboneFinetuning

    model = zoo.create("resnet20")
    BackboneFinetuning().freeze(model.backbone, train_bn=False)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["net.fc.weight", "net.fc.bias"] and model.head is model.net.fc


@pytest.mark.parametrize("name", ["lenet5.fmnist", "resnet20.fmnist"])
def test_task_reset_classifier_round_trips(name: str, tmp_path) -> None:
    model = zoo.load(name)
    model.reset_classifier(3, class_names=["a", "b", "c"])
    assert model.hparams.num_classes == 3 and model.class_names == ["a", "b", "c"]
    assert model.val_acc.num_classes == 3 and "test_acc" not in model.card_metrics
    loaded = zoo.load(model.save_pretrained(tmp_path / "three"))
    x = torch.rand(2, *model.input_size)
    assert loaded.class_names == ["a", "b", "c"] and torch.equal(loaded(x), model.eval()(x))
    embeddings = zoo.load(name, num_classes=0)
    assert embeddings(x).shape == (2, embeddings.net.num_features)


def _torchvision_weights(url: str):
    for model_name in torchvision.models.list_models(module=torchvision.models):
        for weights in torchvision.models.get_model_weights(model_name):
            if weights.url == url:
                return weights
    raise AssertionError(f"no torchvision weights at {url}")


@pytest.mark.parametrize("name", TORCHVISION)
def test_preprocessing_equals_torchvisions_transforms(name: str) -> None:
    meta = get_weights(name)
    weights = _torchvision_weights(meta.url)
    theirs = weights.transforms()
    if weights.meta.get("transform_input", name.startswith("googlenet")):
        # torchvision's GoogLeNet re-normalises its ImageNet-normalised input to mean = std = 0.5 in its forward
        # (transform_input=True, torchvision/models/googlenet.py): the zoo's weights hold that normalisation
        imagenet_mean, imagenet_std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
        scale, shift = (imagenet_std / 0.5).view(-1, 1, 1), ((imagenet_mean - 0.5) / 0.5).view(-1, 1, 1)
        imagenet = theirs
        theirs = lambda image: imagenet(image) * scale + shift  # noqa: E731
    ours = eval_transforms(meta.input_size, **meta.preprocessing())
    mean, std = torch.tensor(meta.mean).view(-1, 1, 1), torch.tensor(meta.std).view(-1, 1, 1)
    generator = torch.Generator().manual_seed(0)
    for width, height in [(500, 375), (224, 300), (641, 480)]:
        pixels = torch.randint(0, 256, (height, width, 3), dtype=torch.uint8, generator=generator)
        image = Image.fromarray(pixels.numpy())
        assert torch.allclose((ours(image) - mean) / std, theirs(image), atol=1e-6), (name, width, height)


def test_a_loaded_model_prepares_images_as_its_weights_say(tmp_path) -> None:
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    model = zoo.load("resnet18.tv_in1k", file=tmp_path / "r18.pth")
    image = Image.fromarray(torch.randint(0, 256, (300, 400, 3), dtype=torch.uint8).numpy())
    expected = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()(image)
    assert torch.allclose(model.preprocess(model.transforms()(image)[None])[0], expected, atol=1e-6)
    grey = zoo.load("lenet5.fmnist").transforms()(image)  # RGB in, a 1×28×28 grey image out
    assert grey.shape == (1, 28, 28) and grey.dtype == torch.float32 and 0 <= grey.min() and grey.max() <= 1


def test_v2_weights_are_named_tv2_and_the_old_name_still_loads() -> None:
    assert get_weights("resnet50.tv2_in1k").url.endswith("resnet50-11ad3fa6.pth")
    with pytest.warns(FutureWarning, match="resnet50.tv_in1k is now called resnet50.tv2_in1k"):
        assert get_weights("resnet50.tv_in1k") is get_weights("resnet50.tv2_in1k")


def test_timm_style_creation() -> None:
    assert zoo.is_model("resnet20") and not zoo.is_model("resnet21")
    assert zoo.list_models(["lenet*", "vgg1?"], exclude=["*relu"]) == ["lenet5", "vgg11", "vgg13", "vgg16", "vgg19"]
    assert zoo.create("lenet5", pretrained=True).weights_name == "lenet5.fmnist"
    assert zoo.create("resnet20", pretrained="fmnist", num_classes=0).hparams.num_classes == 0
    net = zoo.create("efficientnet_lite", drop_rate=0.3, drop_path_rate=0.05).net
    deepest = max(m.stochastic_depth.p for m in net.modules() if hasattr(m, "stochastic_depth"))
    assert net.classifier[0].p == 0.3 and 0.04 < deepest < 0.05  # linear in depth up to drop_path_rate
    assert zoo.create("lenet5", drop_rate=0.25).net.head.dropout.p == 0.25
    assert zoo.backbone("lenet5", out_indices=[1]).feature_info == [
        {"module": "features.s4", "num_chs": 16, "reduction": 4}
    ]
