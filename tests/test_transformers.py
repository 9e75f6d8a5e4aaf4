"""ViT and Swin: parameter counts, torchvision/timm importers, position-embedding resampling, attention.

The generic network properties (shapes, gradients, backbone interface, stages) come from the
registry-wide suites; this file holds what only the transformer families have. Importers are tested
with randomly initialised reference models (no download): torchvision's built here, timm's served
by the local Hub emulator as its published ``model.safetensors``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

import zoo
from zoo.errors import WeightsError
from zoo.files import sha256_file
from zoo.models.vit import resample_pos_embed
from zoo.pretrained import convert_state
from zoo.registry import build_net, get_entry, get_weights, list_weights, split_name


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", ["vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "swin_t", "swin_s", "swin_b"])
def test_parameter_counts_equal_torchvision(name: str) -> None:
    with torch.device("meta"):
        assert _count(build_net(name)) == _count(getattr(torchvision.models, name)()) == get_entry(name).num_params


@pytest.mark.parametrize(
    ("name", "timm_name"), [("vit_ti_16", "vit_tiny_patch16_224"), ("vit_s_16", "vit_small_patch16_224")]
)
def test_parameter_counts_equal_timm(name: str, timm_name: str) -> None:
    import timm

    with torch.device("meta"):
        assert _count(build_net(name)) == _count(timm.create_model(timm_name)) == get_entry(name).num_params


def _random_head(model: torch.nn.Module, head: torch.nn.Linear) -> None:
    """torchvision and timm start the ViT head at zero: a random one makes the logits say something."""
    torch.nn.init.normal_(head.weight, std=0.02)
    torch.nn.init.normal_(head.bias, std=0.02)


@pytest.mark.parametrize(("name", "size"), [("vit_b_16", (224, 224)), ("swin_t", (224, 224)), ("swin_t", (200, 168))])
def test_torchvision_importer_reproduces_outputs(name: str, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)().eval()
    _random_head(theirs, theirs.heads.head if name.startswith("vit") else theirs.head)
    ours = build_net(name).eval()
    ours.load_state_dict(convert_state(f"{name}.tv_in1k", theirs.state_dict()))
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5, rtol=0)


def test_a_users_torchvision_vit_checkpoint_loads_with_its_head(tmp_path) -> None:
    torch.manual_seed(0)
    theirs = torchvision.models.vit_b_32(num_classes=5).eval()
    _random_head(theirs, theirs.heads.head)
    torch.save({"model": theirs.state_dict(), "epoch": 3}, tmp_path / "tuned.pth")  # torchvision's scripts' layout
    model = zoo.load("vit_b_32.tv_in1k", file=tmp_path / "tuned.pth")
    assert model.hparams.num_classes == 5
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(model(x), theirs((x - model.mean) / model.std), atol=1e-5, rtol=0)
    with pytest.raises(WeightsError):
        torch.save(torchvision.models.swin_t().state_dict(), tmp_path / "swin.pth")
        zoo.load("vit_b_32.tv_in1k", file=tmp_path / "swin.pth")


def test_timm_weights_from_the_hub_equal_timms_model(hub_env, monkeypatch, tmp_path) -> None:
    """``vit_ti_16.augreg_in21k_ft_in1k`` is timm's published ``model.safetensors``, converted on load."""
    import timm
    from huggingface_hub import HfApi
    from safetensors.torch import save_file

    torch.manual_seed(0)
    reference = timm.create_model("vit_tiny_patch16_224").eval()
    _random_head(reference, reference.head)
    save_file(reference.state_dict(), str(tmp_path / "model.safetensors"))
    weights = get_weights("vit_ti_16.augreg_in21k_ft_in1k")
    assert (weights.hf_hub_id, weights.filename) == (
        "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k",
        "model.safetensors",
    )
    HfApi().create_repo(weights.hf_hub_id)
    HfApi().upload_file(
        path_or_fileobj=str(tmp_path / "model.safetensors"), path_in_repo="model.safetensors", repo_id=weights.hf_hub_id
    )
    entry = get_entry("vit_ti_16")
    monkeypatch.setitem(  # the served file is not the published one: declare its hash
        entry.weights,
        "augreg_in21k_ft_in1k",
        dataclasses.replace(weights, sha256=sha256_file(tmp_path / "model.safetensors")),
    )
    x = torch.rand(2, 3, 224, 224)
    for source in ("vit_ti_16.augreg_in21k_ft_in1k", "hf-hub:" + weights.hf_hub_id):  # timm's own id too
        model = zoo.load(source)
        with torch.no_grad():
            assert torch.allclose(model(x), reference((x - 0.5) / 0.5), atol=1e-5, rtol=0)
    # timm's evaluation preprocessing for these weights: bicubic resize to 248, centre crop 224
    resize = [t for t in model.transforms().transforms if isinstance(t, torchvision.transforms.v2.Resize)][0]
    assert resize.size == [248] and resize.interpolation.name == "BICUBIC"


def test_position_embeddings_follow_the_image_size() -> None:
    """A 224-px network runs at 384 px; 224-px weights loaded into a 384-px network are resampled the same way."""
    torch.manual_seed(0)
    at_224 = build_net("vit_ti_16").eval()
    at_384 = build_net("vit_ti_16", img_size=384).eval()
    at_384.load_state_dict(at_224.state_dict())
    assert at_384.embed.pos_embed.shape == (1, 1 + 24 * 24, 192)
    expected = resample_pos_embed(at_224.embed.pos_embed.detach(), (24, 24))
    assert torch.allclose(at_384.embed.pos_embed, expected)
    x = torch.rand(1, 3, 384, 384)
    with torch.no_grad():
        assert torch.allclose(at_224(x), at_384(x), atol=1e-5)
        grid = resample_pos_embed(at_224.embed.pos_embed, (14, 14))
    assert grid is at_224.embed.pos_embed  # the size it was made for: untouched


@pytest.mark.parametrize("name", ["vit_lite", "swin_lite", "swin_lite_conv"])
def test_explicit_attention_equals_the_fused_kernel(name: str) -> None:
    """The term-by-term attention (kept for pictures) and scaled_dot_product_attention agree."""
    torch.manual_seed(0)
    net = build_net(name).eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        fused = net(x)
        for attn in net.attention_blocks():
            attn.keep_attention = True
        explicit = net(x)
    assert torch.allclose(fused, explicit, atol=1e-5)
    weights = [attn.attention for attn in net.attention_blocks()]
    assert all(torch.allclose(w.sum(-1), torch.ones(())) for w in weights)  # each query's weights sum to 1
    if name.startswith("swin"):  # first stage: 2×2 windows of 7×7 tokens per image, 2 heads
        assert weights[0].shape == (2 * 4, 2, 49, 49)
        # the shifted block's mask: a token never attends to one that the roll brought from the far edge
        assert (weights[1][3] < 1e-30).any() and not (weights[0] < 1e-30).any()
    else:
        assert weights[0].shape == (2, 4, 50, 50)


@pytest.mark.parametrize("name", ["swin_lite", "swin_lite_conv"])
def test_swin_token_grids_in_pixels(name: str) -> None:
    """Both lite Swins work on 14 → 7 → 4 grids at 28 px: 2, 4, 8 pixels per token (the hybrid's stem halves,
    its 1×1 patches keep), which is how the attention pictures place windows on the image."""
    from zoo.attention import swin_grid

    net = build_net(name)
    assert [swin_grid(net, block, (28, 28)) for block in (0, 2, 4)] == [(14, 14, 2), (7, 7, 4), (4, 4, 8)]
    assert [info["reduction"] for info in net.feature_info] == [2, 4, 8]


# ---- attention pictures and zoo info ------------------------------------------------------------
SAMPLES = Path(__file__).resolve().parents[1] / "samples"
TRAINED = [name for name in list_weights("vit*") + list_weights("swin*") if name.endswith(".fmnist")]


def test_zoo_attention_writes_a_png_for_vit_and_swin(tmp_path) -> None:
    from zoo.cli import main

    for name in ("vit_lite", "swin_lite", "swin_lite_conv"):  # the hybrid Swin: 2 pixels per stem cell
        torch.manual_seed(0)
        folder = zoo.create(name).save_pretrained(tmp_path / name)
        out = tmp_path / f"{name}.png"
        main(["attention", str(folder), str(SAMPLES), "-o", str(out)])
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit) as error:  # a CNN has no attention: one line, nothing written
        main(["attention", "lenet5.fmnist", str(SAMPLES), "-o", str(tmp_path / "no.png")])
    assert error.value.code != 0 and not (tmp_path / "no.png").exists()


# Attention per garment pixel over attention per background pixel, at least. Measured on the shipped weights
# (metrics in the closing notes): Swin-lite's global block 2.4×; the ViT hybrid's rollout 1.3×: it lies on
# the garments' ends, collars and soles, and a few background tokens light up too (the background tokens
# a ViT uses as scratch space: Darcet et al. 2023, "Vision transformers need registers"). A regression
# check on the shipped weights, not a proof of learning: untrained networks range from 0.6× to 2.9×.
# The hybrid Swin's block 2: 1.18× (40-epoch weights; 1.26× for the 30-epoch ones): on the garments too
# (the boot's sole, the dress, the bag's body, the collars), but its top row and left edge, where the stem's
# zero padding meets the image border, light up as scratch space, as the ViT's background tokens do. Its
# next block (--block 3) is 1.61× and dark on the background; swin_lite's block 3 is 1.28× (block 2: 2.38×).
GARMENT_RATIO = {"vit": 1.2, "swin": 1.5, "swin_lite_conv.fmnist": 1.15}


@pytest.mark.parametrize("name", TRAINED)
def test_trained_attention_falls_on_the_garment(name: str, tmp_path) -> None:
    """Trained weights look at the garment: more attention per pixel on it than on the black background."""
    from zoo.attention import attention_maps, save_attention

    model = zoo.load(name)
    images = torch.stack([model.transforms()(Image.open(p)) for p in sorted(SAMPLES.glob("*.png"))])
    maps, logits = attention_maps(model, images)
    garment = images[:, 0] > 0.1
    on, off = (maps * garment).sum() / garment.sum(), (maps * ~garment).sum() / (~garment).sum()
    floor = GARMENT_RATIO.get(name, GARMENT_RATIO[get_entry(split_name(name)[0]).family])
    assert on > floor * off, (float(on), float(off))
    assert save_attention(model, [SAMPLES], tmp_path / "attention.png").stat().st_size > 10_000


def test_zoo_info_shows_tokens_and_the_quadratic_attention_term(capsys) -> None:
    from zoo.cli import main

    main(["info", "vit_lite"])
    out = capsys.readouterr().out
    assert "tokens per attention" in out and "block6" in out
    # 49 patches + the class token, 4 heads: 4 × 50² = 10,000 attention values per block, 6 blocks
    assert "10,000" in out and "60,000 values per image" in out
    main(["info", "vit_lite", "--input-size", "1", "56", "56"])  # twice the side: 196 + 1 tokens
    assert f"{6 * 4 * 197**2:,} values per image" in capsys.readouterr().out
