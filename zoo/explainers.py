"""What a classifier looks at: attribution maps with Captum, and how faithful they are (``zoo explain``).

``zoo.explain(model, images, method=...)`` returns one ``(N, H, W)`` map per image, at the input size,
higher where the evidence for the target class is (default: the predicted class). The methods are
Captum's (PyTorch's interpretability library), run on the network behind the model's own normalisation,
so they see [0, 1] pixels:

* ``gradcam`` — Grad-CAM (Selvaraju et al. 2017, ``LayerGradCam``): the last stage's feature maps weighted
  by the mean gradient of the target over each channel, summed, kept positive, and upsampled to the image
  (``LayerAttribution.interpolate``, bilinear). The layer defaults to the last level the family declares
  in ``feature_info``; a ViT's tokens and a Swin's channels-last maps are laid out on their grid first.
* ``integrated_gradients`` — Sundararajan et al. 2017: the gradient averaged along the straight path from a
  black image (Fashion-MNIST's background) to the image, times the image; summed over channels.
* ``saliency`` — Simonyan et al. 2014: ``|d target / d pixel|``, the largest over channels.
* ``occlusion`` — Zeiler & Fergus 2014: how much the target's logit drops when a square window (a
  seventh of the side, moved by half a window) is set to black; averaged over the windows covering a pixel.
* ``attention`` (ViT and Swin only) — :func:`zoo.attention_maps`: the rollout / window attention.

:func:`deletion_drop` measures faithfulness: the drop of the predicted class's probability when the
pixels a map ranks highest are set to the background value, beside random pixels and the pixel intensity.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from zoo.errors import InvalidValueError, ZooError

METHODS = ("gradcam", "integrated_gradients", "saliency", "occlusion", "attention")


def _parts(model: Any) -> tuple[nn.Module, Any]:
    """The network and the function that turns [0, 1] pixels into its input (the model's normalisation)."""
    net = getattr(model, "net", model)
    if not hasattr(net, "feature_info") or not hasattr(net, "forward_head"):
        raise ZooError(f"zoo.explain takes a zoo classifier (zoo.load / zoo.create), got a {type(model).__name__}")
    if getattr(getattr(model, "hparams", None), "get", lambda *_: None)("task") not in (None, "classification"):
        raise ZooError("zoo.explain explains classifiers; a detector's boxes are drawn by zoo detect")
    preprocess = getattr(model, "preprocess", None) or (lambda x: x)
    return net, preprocess


def model_name(model: Any) -> str:
    hparams = getattr(model, "hparams", None)
    return getattr(model, "weights_name", None) or getattr(hparams, "model_name", None) or type(model).__name__


def forward_function(model: Any):
    """[0, 1] pixels → logits, with no input checks (the interpolated and occluded images stay in range)."""
    net, preprocess = _parts(model)
    return lambda x: net(preprocess(x))


def _level(net: nn.Module, layer: str | None) -> dict[str, Any]:
    """The ``feature_info`` entry of ``layer`` (default the last level), or a plain NCHW entry for another module."""
    levels = list(net.feature_info)
    if layer is None:
        return dict(levels[-1])
    for info in levels:
        if info["module"] == layer:
            return dict(info)
    if not layer or _submodule(net, layer, None) is None:
        close = ", ".join(info["module"] for info in levels)
        raise InvalidValueError(f"no layer {layer!r} in {type(net).__name__}; its stages are {close}")
    return dict(module=layer)


def _submodule(net: nn.Module, name: str, *default: Any) -> Any:
    """``net``'s module ``name``, or the wrapped model's (a timm network names its levels inside ``net.model``)."""
    for owner in (net, getattr(net, "model", None)):
        if isinstance(owner, nn.Module):
            with contextlib.suppress(AttributeError):
                return owner.get_submodule(name)
    if default:
        return default[0]
    raise InvalidValueError(f"no module {name!r} in {type(net).__name__}")


@contextlib.contextmanager
def grid_probe(net: nn.Module, info: dict[str, Any], size: Sequence[int]) -> Iterator[nn.Module]:
    """An identity module called on ``info``'s output laid out as an ``(N, C, h, w)`` map, for Captum's layer hooks.

    A ViT block's ``(N, 1 + h·w, C)`` tokens lose their class token and go on the patch grid; a Swin stage's
    ``(N, h, w, C)`` map is permuted; the network goes on with the probe's output put back in its own layout.
    """
    probe = nn.Identity()
    module = _submodule(net, info["module"])

    def hook(_module: nn.Module, _inputs: Any, out: Tensor) -> Tensor:
        if out.ndim == 3:  # ViT tokens (N, prefix + h·w, C): the prefix (class token) stays out of the map
            stride = info.get("reduction", 1)
            grid = (size[0] // stride, size[1] // stride)
            prefix = info.get("prefix_tokens", out.shape[1] - grid[0] * grid[1])
            tokens = out[:, prefix:]
            mapped = probe(tokens.transpose(1, 2).reshape(out.shape[0], out.shape[2], *grid))
            return torch.cat([out[:, :prefix], mapped.flatten(2).transpose(1, 2)], dim=1)
        channels_last = info.get("fmt") == "NHWC" or (
            "num_chs" in info and out.shape[-1] == info["num_chs"] != out.shape[1]
        )
        if channels_last:  # Swin's stages (N, h, w, C)
            return probe(out.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return probe(out)

    handle = module.register_forward_hook(hook)
    try:
        yield probe
    finally:
        handle.remove()


def _targets(target: Any, logits: Tensor) -> Tensor:
    count = logits.shape[0]
    if target is None:
        return logits.argmax(dim=1)
    target = torch.as_tensor(target, device=logits.device).long().flatten()
    if target.numel() == 1:
        target = target.expand(count)
    if target.numel() != count or int(target.min()) < 0 or int(target.max()) >= logits.shape[1]:
        raise InvalidValueError(
            f"target must be one class index in 0..{logits.shape[1] - 1} or one per image ({count}), got {target.tolist()}"
        )
    return target.clone()


def occlusion_window(size: Sequence[int]) -> tuple[int, int]:
    """(window side, stride) of the occlusion: a seventh of the shorter side (4 px at 28 px), half of it."""
    side = max(2, min(size) // 7)
    return side, max(1, side // 2)


def explain(
    model: Any,
    images: Tensor,
    method: str = "gradcam",
    target: Any = None,
    *,
    layer: str | None = None,
    steps: int = 32,
    batch_size: int = 64,
) -> Tensor:
    """``(N, H, W)`` maps, higher where the evidence for ``target`` is (see the module doc for the methods).

    ``images``: float ``(N, C, H, W)`` in [0, 1] (uint8 is scaled); ``target``: a class index or one per
    image (default: the predicted class); ``layer``: Grad-CAM's module (default: the last declared stage);
    ``steps``: integrated gradients' path steps; ``batch_size``: images per forward pass inside Captum.
    """
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion, Saliency

    if method not in METHODS:
        import difflib

        close = difflib.get_close_matches(str(method), METHODS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise InvalidValueError(f"unknown method {method!r}; {hint}choose one of {', '.join(METHODS)}")
    net, _ = _parts(model)
    if hasattr(model, "as_batch"):
        images = model.as_batch(images)
        model.check_input(images)
        model.check_values(images)
    if not images.is_floating_point():
        images = images.float() / 255
    device = next(net.parameters()).device
    images = images.to(device)
    if method == "attention":
        from zoo.attention import attention_maps

        return attention_maps(model, images)[0]
    forward = forward_function(model)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            targets = _targets(target, forward(images))
        with torch.enable_grad():
            maps = []
            for start in range(0, images.shape[0], batch_size):
                x, t = (
                    images[start : start + batch_size].clone().requires_grad_(True),
                    targets[start : start + batch_size],
                )
                if method == "gradcam":
                    with grid_probe(net, _level(net, layer), x.shape[-2:]) as probe:
                        cam = LayerGradCam(forward, probe).attribute(x, target=t, relu_attributions=True)
                    found = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
                    found = found.sum(dim=1)
                elif method == "integrated_gradients":
                    found = IntegratedGradients(forward).attribute(
                        x, baselines=0.0, target=t, n_steps=steps, internal_batch_size=batch_size
                    )
                    found = found.sum(dim=1)
                elif method == "saliency":
                    found = Saliency(forward).attribute(x, target=t, abs=True).amax(dim=1)
                else:
                    side, stride = occlusion_window(x.shape[-2:])
                    found = Occlusion(forward).attribute(
                        x,
                        sliding_window_shapes=(x.shape[1], side, side),
                        strides=(x.shape[1], stride, stride),
                        baselines=0.0,
                        target=t,
                        perturbations_per_eval=max(1, batch_size // x.shape[0]),
                    )
                    found = found.mean(dim=1)
                maps.append(found.detach())
    finally:
        net.train(was_training)
    return torch.cat(maps)


def unit_maps(maps: Tensor) -> Tensor:
    """Each map scaled to [0, 1] (its minimum to 0, its maximum to 1), for pictures."""
    low, high = maps.amin(dim=(1, 2), keepdim=True), maps.amax(dim=(1, 2), keepdim=True)
    return (maps - low) / (high - low).clamp_min(1e-12)


@torch.no_grad()
def deletion_drop(model: Any, images: Tensor, maps: Tensor, fraction: float = 0.1, background: float = 0.0) -> Tensor:
    """Per image, the predicted class's probability before minus after setting the ``fraction`` of pixels
    that ``maps`` ranks highest to ``background`` (every channel of a pixel). Ties are broken at random,
    so a map that is constant over a region deletes a random part of it."""
    forward = forward_function(model)
    net, _ = _parts(model)
    net.eval()
    count, _, height, width = images.shape
    probs = forward(images).softmax(dim=1)
    predicted = probs.argmax(dim=1)
    flat = maps.reshape(count, -1).float()
    jitter = torch.rand(flat.shape, generator=torch.Generator().manual_seed(0)).to(flat.device)
    scale = flat.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
    order = (flat / scale + 1e-6 * jitter).argsort(dim=1, descending=True)
    keep = torch.ones_like(flat)
    keep.scatter_(1, order[:, : round(fraction * height * width)], 0.0)
    keep = keep.view(count, 1, height, width)
    deleted = images * keep + background * (1 - keep)
    after = forward(deleted).softmax(dim=1)
    rows = torch.arange(count, device=images.device)
    return probs[rows, predicted] - after[rows, predicted]


def random_maps(images: Tensor, seed: int = 0) -> Tensor:
    """Uniform random maps: the deletion of random pixels, the chance level of a ranking."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(images.shape[0], *images.shape[2:], generator=generator).to(images.device)


def faithfulness(
    model: Any,
    images: Tensor,
    methods: Sequence[str] = ("gradcam", "integrated_gradients", "saliency", "occlusion"),
    fraction: float = 0.1,
    background: float = 0.0,
    **options: Any,
) -> dict[str, float]:
    """Mean drop of the predicted class's probability when the top ``fraction`` of pixels of each method's
    map is deleted (set to ``background``), beside ``random`` pixels and the pixel ``intensity`` itself
    (the brightest pixels first). ``options`` go to :func:`explain` (``steps``, ``batch_size``)."""
    images = images.float() / 255 if not images.is_floating_point() else images
    rankings = {name: explain(model, images, name, **options) for name in methods}
    rankings["intensity"] = (images - background).abs().mean(dim=1)
    rankings["random"] = random_maps(images)
    return {
        name: float(deletion_drop(model, images, maps, fraction, background).mean()) for name, maps in rankings.items()
    }
