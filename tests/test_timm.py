"""timm's architectures as zoo models: names, the adapter, timm's transforms, timm's Hub repos.

Offline: timm's tiny ``test_*`` architectures at random init, and Hub repos written by timm's own
``save_for_hf`` served by the Hub emulator (``tests/hub_emulator.py``) to the real huggingface_hub client.
The registry-wide suite over every ``test_*`` architecture is ``tests/test_timm_suite.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from zoo.errors import UnknownArgumentError, UnknownModelError, WeightsError
from zoo.registry import get_entry, list_models

timm = pytest.importorskip("timm")
REPO_ROOT = Path(__file__).resolve().parents[1]


def _pixels(n: int = 2, size: int = 160, chans: int = 3) -> torch.Tensor:
    return torch.rand(n, chans, size, size, generator=torch.Generator().manual_seed(3))


def _normalised(model, x: torch.Tensor) -> torch.Tensor:
    return (x - model.mean) / model.std


def serve_timm_repo(tmp_path: Path, arch: str, tag: str, seed: int = 0, **kwargs) -> tuple[str, torch.nn.Module]:
    """A Hub repo ``timm/<arch>.<tag>`` written by timm's ``save_for_hf`` (random weights), uploaded to the
    emulator the ``hub_env`` fixture points huggingface_hub at; returns its id and the timm model."""
    from huggingface_hub import HfApi
    from timm.models._hub import save_for_hf

    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, **kwargs).eval()
    folder = tmp_path / f"timm-{arch}-{tag}"
    save_for_hf(model, str(folder), safe_serialization="both")
    repo_id = f"timm/{arch}.{tag}"
    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=folder)
    return repo_id, model


# ---- names -------------------------------------------------------------------------------------------
def test_timm_names_resolve_on_lookup_without_importing_timm_or_listing_it() -> None:
    code = "import sys, zoo.models, zoo.registry as r; print('timm' in sys.modules, len(r.list_models('timm/*')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert out.stdout.split() == ["False", "0"]  # importing the zoo neither imports timm nor enumerates it
    entry = get_entry("timm/test_vit.r160_in1k")
    cfg = timm.models.get_pretrained_cfg("test_vit.r160_in1k")
    assert (entry.name, entry.family, entry.input_size, entry.num_classes) == (
        "timm/test_vit",
        "timm",
        (3, 160, 160),
        1000,
    )
    assert (entry.mean, entry.std, entry.classifier, entry.first_conv) == (
        cfg.mean,
        cfg.std,
        "head",
        "patch_embed.proj",
    )
    assert list(entry.weights) == ["r160_in1k"] and entry.weights["r160_in1k"].hf_hub_id == "timm/test_vit.r160_in1k"
    assert not any(name.startswith("timm/") for name in list_models())  # the zoo's own list stays its own
    with pytest.raises(
        UnknownModelError, match=r"timm has no architecture 'convnxt_tiny'; closest: timm/convnext_tiny"
    ):
        zoo.create("timm/convnxt_tiny")


def test_create_is_a_zoo_task_around_timms_network() -> None:
    model = zoo.create("timm/test_convnext", num_classes=5, in_chans=1, drop_path_rate=0.1)
    reference = timm.create_model("test_convnext", num_classes=5, in_chans=1, drop_path_rate=0.1)
    assert isinstance(model, zoo.tasks.base.ZooTask) and type(model.net.model) is type(reference)
    assert list(model.net.state_dict()) == list(reference.state_dict())  # timm's keys, no wrapper prefix
    drop_paths = [m.drop_prob for m in model.net.modules() if type(m).__name__ == "DropPath"]
    assert drop_paths and max(drop_paths) == pytest.approx(0.1)
    assert model.input_size == (1, 160, 160) and model.hparams.num_classes == 5
    reference.load_state_dict(model.net.state_dict())
    model.eval(), reference.eval()
    x = _pixels(chans=1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(_normalised(model, x)), rtol=0, atol=1e-6)
        features = model.net.forward_features(_normalised(model, x))
        torch.testing.assert_close(model.net.forward_head(features), reference(_normalised(model, x)))
    assert model.net.num_features == reference.num_features and model.net.feature_info == reference.feature_info
    model.reset_classifier(0)  # timm's reset_classifier: embeddings
    assert model(x).shape == (2, reference.num_features)
    with pytest.raises(UnknownArgumentError, match="drop_pth_rate"):
        zoo.create("timm/test_convnext", drop_pth_rate=0.1)


@pytest.mark.parametrize(
    ("arch", "overlay"),
    [
        ("test_vit", None),  # bicubic, crop 0.95, centre
        ("test_resnet", None),  # bilinear
        ("test_mambaout", None),  # crop 1.0
        ("test_efficientnet", {"crop_mode": "squash", "crop_pct": 0.9}),  # dm_nfnet's squash
    ],
)
def test_transforms_equal_timms_eval_transform_on_real_images(arch, overlay) -> None:
    from PIL import Image
    from sklearn.datasets import load_sample_image
    from timm.data import create_transform, resolve_data_config

    kwargs = {"pretrained_cfg_overlay": overlay} if overlay else {}
    model = zoo.create(f"timm/{arch}", **kwargs)
    config = resolve_data_config({}, model=timm.create_model(arch, **kwargs))
    reference = create_transform(**config, is_training=False)
    ours = model.transforms()
    for name in ("china.jpg", "flower.jpg"):
        image = Image.fromarray(load_sample_image(name))
        expected = reference(image)
        got = _normalised(model, ours(image)[None])[0]
        assert got.shape == expected.shape == (3, *model.input_size[1:])
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


# ---- timm's Hub repos --------------------------------------------------------------------------------
def test_load_timm_repo_through_the_zoo_cache_equals_timms_own_loading(hub_env, tmp_path) -> None:
    repo_id, _ = serve_timm_repo(tmp_path, "test_vit", "r160_in1k", seed=1)
    reference = timm.create_model(f"hf-hub:{repo_id}", pretrained=True).eval()
    x = _pixels()
    for source in (f"hf-hub:{repo_id}", "timm/test_vit.r160_in1k"):
        model = zoo.load(source)
        assert model.weights_name == "timm/test_vit.r160_in1k" and model.hparams.model_name == "timm/test_vit"
        with torch.no_grad():
            torch.testing.assert_close(model(x), reference(_normalised(model, x)), rtol=0, atol=1e-4)
        assert "/hub/models--timm--test_vit.r160_in1k/" in model.weights_source  # the Hugging Face cache
    assert hub_env.downloads("model.safetensors") == 1  # one file in huggingface_hub's cache, shared with timm
    assert hub_env.downloads("pytorch_model.bin") == 0  # never the pickle
    assert model.preprocessing == {"resize": 168, "interpolation": "bicubic"}  # 160 / 0.95, timm's crop


def test_recipe_pretrained_and_create_pretrained_start_from_timms_weights(hub_env, tmp_path) -> None:
    from zoo.tasks.classification import ImageClassifier

    _, reference = serve_timm_repo(tmp_path, "test_efficientnet", "r160_in1k", seed=4)
    # a recipe's model: pretrained= timm's weights, a fresh 3-class head, everything below it timm's
    model = ImageClassifier(
        model_name="timm/test_efficientnet", pretrained="timm/test_efficientnet.r160_in1k", num_classes=3
    )
    ours, theirs = model.net.state_dict(), reference.state_dict()
    assert ours["classifier.weight"].shape == (3, theirs["classifier.weight"].shape[1])
    assert all(torch.equal(ours[k], v) for k, v in theirs.items() if not k.startswith("classifier."))
    assert model.preprocessing == {"resize": 168, "interpolation": "bicubic"} and model.hparams.pretrained is None
    same = zoo.create("timm/test_efficientnet", pretrained=True)  # timm-style: its first tag
    assert same.weights_name == "timm/test_efficientnet.r160_in1k"
    assert all(torch.equal(same.net.state_dict()[k], v) for k, v in theirs.items())


def test_timm_repo_offline_from_the_cache_and_refused_when_not_cached(hub_env, tmp_path, monkeypatch) -> None:
    from huggingface_hub import constants

    serve_timm_repo(tmp_path, "test_resnet", "r160_in1k", seed=2)
    loaded = zoo.load("timm/test_resnet.r160_in1k")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hub_env.reset_counts()
    again = zoo.load("hf-hub:timm/test_resnet.r160_in1k")
    assert hub_env.downloads("") == 0
    assert torch.equal(again.net.state_dict()["fc.weight"], loaded.net.state_dict()["fc.weight"])
    with pytest.raises(WeightsError, match=r"offline mode is on .*run `zoo pull timm/test_convnext.r160_in1k`"):
        zoo.load("timm/test_convnext.r160_in1k")


def test_timm_repo_weights_held_to_the_hubs_sha256(hub_env, tmp_path) -> None:
    repo_id, _ = serve_timm_repo(tmp_path, "test_convnext", "r160_in1k", seed=3)
    repo = hub_env.repos[repo_id]
    _, key = repo.commits[repo.branches["main"]]["model.safetensors"]
    good = hub_env.blobs[key]
    hub_env.blobs[key] = good[:-4] + b"\0\0\0\0"  # same size, same advertised sha256, other bytes
    try:
        with pytest.raises(WeightsError, match=r"sha256 of timm/test_convnext.r160_in1k@\w+/model.safetensors is"):
            zoo.load(f"hf-hub:{repo_id}")
    finally:
        hub_env.blobs[key] = good
    assert not list((Path(hub_env_cache()) / "models--timm--test_convnext.r160_in1k" / "blobs").glob(key))
    assert zoo.load(f"hf-hub:{repo_id}").weights_name == "timm/test_convnext.r160_in1k"  # fetched afresh


def hub_env_cache() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def test_zoo_list_timm_lists_timms_names_without_downloading(capsys, monkeypatch) -> None:
    import huggingface_hub

    from zoo.cli import main

    def no_network(*args, **kwargs):
        raise AssertionError("zoo list --timm must not download")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    main(["list", "--timm", "convnext_t*"])
    out = capsys.readouterr().out
    assert "timm/convnext_tiny" in out and "convnext_tiny.fb_in1k" in out and "timm/convnext_small" not in out
    main(["list", "--timm", "test_*"])
    out = capsys.readouterr().out
    assert all(f"timm/{name}" in out for name in timm.list_models("test_*"))
