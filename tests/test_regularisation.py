"""The regularisation options every recipe can switch on: MixUp/CutMix, stochastic depth, weight EMA.

(Random erasing and label smoothing are tested with the datamodule and the bad-input table.)
"""

from __future__ import annotations

import lightning as L
import pytest
import torch

import zoo
from zoo.errors import InvalidValueError
from zoo.registry import get_entry


def _batch(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=generator), torch.arange(n) % 10


def _fit(model: L.LightningModule, epochs: int, batch_size: int = 32, callbacks=()) -> L.Trainer:
    """Fit ``model`` on 64 random images, quietly, and return its trainer."""
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*_batch(64)), batch_size=batch_size)
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=list(callbacks),
    )
    trainer.fit(model, loader)
    return trainer


@pytest.mark.parametrize("options", [{"mixup": 0.4}, {"cutmix": 1.0}, {"mixup": 0.2, "cutmix": 1.0}])
def test_mixup_and_cutmix_blend_images_and_labels_alike(options: dict) -> None:
    torch.manual_seed(0)
    model = zoo.create("lenet5", **options)
    images, labels = _batch()
    mixed, soft = model.mix(images, labels)
    assert mixed.dtype == torch.float32 and 0 <= mixed.min() and mixed.max() <= 1
    assert soft.shape == (16, 10) and torch.allclose(soft.sum(dim=1), torch.ones(16))
    # each image is its own (share λ) and its neighbour's (the batch rolled by one), labels in the same shares
    share = soft[torch.arange(16), labels]
    one_hot = torch.nn.functional.one_hot(labels, 10).float()
    assert torch.allclose(soft, share[:, None] * one_hot + (1 - share[:, None]) * one_hot.roll(1, 0), atol=1e-6)
    x, rolled = images.float() / 255, images.roll(1, 0).float() / 255
    if "cutmix" not in options:  # MixUp: one λ for the batch, pixel by pixel
        lam = share[0]
        assert torch.allclose(mixed, lam * x + (1 - lam) * rolled, atol=1e-6)
    else:  # CutMix or MixUp: every pixel lies between the two images
        assert ((mixed >= torch.minimum(x, rolled) - 1e-6) & (mixed <= torch.maximum(x, rolled) + 1e-6)).all()


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_training_loss_is_the_cross_entropy_against_the_mixed_labels(smoothing: float, monkeypatch) -> None:
    """With MixUp/CutMix on, the training step's loss is -Σ q·log_softmax(logits) averaged over the batch,
    q the mixed (soft) labels, smoothed towards uniform as label smoothing says: computed here by hand."""
    model = zoo.create("lenet5_relu", mixup=0.4, cutmix=1.0, label_smoothing=smoothing).eval()
    monkeypatch.setattr(model, "log_training", lambda *args, **kwargs: None)  # no Trainer to log to
    with torch.no_grad():  # confident logits, so that which labels the loss compares with shows in its value
        for weight in model.net.get_submodule(get_entry("lenet5_relu").classifier).parameters():
            weight.mul_(30)
    images, labels = _batch()
    torch.manual_seed(1)
    mixed, soft = model.mix(images, labels)
    with torch.no_grad():
        log_p = torch.log_softmax(model(mixed), dim=1)
    assert (soft.max(dim=1).values < 1).any(), "the batch was mixed: some labels are soft"
    q = soft * (1 - smoothing) + smoothing / 10
    expected = -(q * log_p).sum(dim=1).mean()
    torch.manual_seed(1)  # the same λ and boxes for the step's own mixing
    loss = model.training_step((images, labels), 0)
    assert torch.allclose(loss, expected, atol=1e-6), (loss, expected)
    hard = -log_p[torch.arange(16), labels].mean()  # the loss against the unmixed labels differs
    assert not torch.allclose(loss, hard, atol=1e-3)


@pytest.mark.parametrize("value", [-0.1, True, "0.2"])
def test_mixup_alpha_is_checked(value) -> None:
    with pytest.raises(InvalidValueError, match="α of its Beta distribution"):
        zoo.create("lenet5", mixup=value)


@pytest.mark.parametrize("name", ["vit_lite", "swin_lite"])
def test_stochastic_depth_drops_residual_branches_in_training_only(name: str) -> None:
    torch.manual_seed(0)
    model = zoo.create(name, model_kwargs={"drop_path_rate": 0.5})
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        model.train()  # the embeddings: the zero-initialised ViT head would hide any difference
        a, b = model.net.forward_features(x), model.net.forward_features(x)
        model.eval()
        c, d = model.net.forward_features(x), model.net.forward_features(x)
    assert not torch.allclose(a, b) and torch.equal(c, d)
    plain = zoo.create(name)
    assert not [m for m in plain.net.modules() if type(m).__name__ == "DropPath"]  # rate 0: no timm module at all


def test_compile_switch_compiles_for_fit_keeps_the_keys_and_times_the_first_step() -> None:
    torch.manual_seed(0)
    model = zoo.create("lenet5", compile=True)
    keys = list(model.state_dict())
    _fit(model, epochs=1)
    assert model.compile_seconds > 0 and list(model.state_dict()) == keys
    assert getattr(model.net, "_compiled_call_impl", None) is not None


def _fit_with(callback: L.Callback) -> torch.nn.Module:
    torch.manual_seed(0)
    model = zoo.create("lenet5_relu", optimizer="adam", lr=1e-2)
    _fit(model, epochs=2, batch_size=16, callbacks=[callback])
    return model


def test_weight_ema_averages_like_lightnings_and_keeps_constant_buffers_exact() -> None:
    """zoo.callbacks.EMA (the recipes' EMA) ends with the same averaged weights as Lightning's callback, and
    leaves the normalisation constants exactly as they were, where Lightning's ``decay·avg + (1−decay)·x``
    moves them by float32 rounding."""
    from lightning.pytorch.callbacks import EMAWeightAveraging

    from zoo.callbacks import EMA

    ours, lightnings = _fit_with(EMA(decay=0.999)), _fit_with(EMAWeightAveraging(decay=0.999))
    start = zoo.create("lenet5_relu")
    assert torch.equal(ours.mean, start.mean) and torch.equal(ours.std, start.std)
    assert not torch.equal(lightnings.mean, start.mean), "Lightning's update was exact: the callback is not needed"
    averaged = dict(ours.net.named_parameters())
    for name, value in lightnings.net.named_parameters():
        assert torch.allclose(averaged[name], value, atol=1e-5), name
    raw = _fit_with(L.Callback())  # no averaging: different weights, so the EMA was swapped in
    assert not torch.allclose(raw.net.features.c1.weight, ours.net.features.c1.weight, atol=1e-4)
