"""What a classifier looks at: attribution maps with Captum, and how faithful they are (``zoo explain``).

``zoo.explain(model, images, method=...)`` returns one ``(N, H, W)`` map per image, at the input size,
higher where the evidence for the target class is (default: the predicted class). The methods are
Captum's (PyTorch's interpretability library), run on the network behind the model's own normalisation,
so they see [0, 1] pixels:

* ``gradcam`` — Grad-CAM (Selvaraju et al. 2017, ``LayerGradCam``): a stage's feature maps weighted
  by the mean gradient of the target over each channel, summed, kept positive, and upsampled to the image
  (``LayerAttribution.interpolate``, bilinear). The layer defaults to :func:`cam_layer`: the last level the
  family declares in ``feature_info`` whose map is still spatial (at least 4×4 at the input's size) and
  reached by the target's gradient; a ViT's tokens and a Swin's channels-last maps are laid out on their
  grid first.
* ``integrated_gradients`` — Sundararajan et al. 2017: the gradient averaged along the straight path from a
  black image (Fashion-MNIST's background) to the image, times the image; summed over channels.
* ``saliency`` — the input gradient ``d target / d pixel`` (Simonyan et al. 2014; Captum's ``Saliency`` with
  ``abs=False``), summed over channels: high where brightening the pixel raises the target, so where its ink
  is evidence *for* it. Simonyan et al. show its absolute value, which ranks a pixel whose ink is evidence
  *against* the target as high as one for it: that breaks this function's contract, and deleting the top
  pixels of ``|gradient|`` lowers the class less than random pixels on 7 of the 12 shipped classifiers
  (``docs/explain_faithfulness.json``, ``diagnostics``).
* ``occlusion`` — Zeiler & Fergus 2014: how much the target's logit drops when a square window (a
  seventh of the side, moved by half a window) is set to black; averaged over the windows covering a pixel.
* ``attention`` (ViT and Swin only) — :func:`zoo.attention_maps`: the rollout / window attention.

:func:`deletion_drop` measures faithfulness: the drop of the predicted class's probability when the
pixels a map ranks highest are set to the background value (among the pixels not already at it, so that
every ranking changes as many pixels), beside random pixels and the pixel intensity.
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


MIN_CAM_SIDE = 4  # Grad-CAM's default layer: the last declared stage whose map is at least 4×4


def level_maps(model: Any, images: Tensor) -> list[tuple[dict[str, Any], tuple[int, int], bool]]:
    """Each declared level of ``model``'s network for ``images``: its entry, its map's ``(h, w)`` and whether the
    target's gradient reaches that map (a class-token ViT's last block feeds the head through its class token
    only, so its patch tokens get none)."""
    net, preprocess = _parts(model)
    x = images[:1].detach()
    levels = [dict(info) for info in net.feature_info]
    maps: dict[int, Tensor] = {}
    was_training = net.training
    net.eval()
    with contextlib.ExitStack() as stack, torch.enable_grad():
        stack.callback(net.train, was_training)
        for i, info in enumerate(levels):
            probe = stack.enter_context(grid_probe(net, info, x.shape[-2:]))
            probe.register_forward_hook(lambda _m, _i, out, i=i: maps.__setitem__(i, out))
        logits = net(preprocess(x))
        found = [i for i in range(len(levels)) if i in maps and maps[i].requires_grad]
        grads = torch.autograd.grad(logits.max(dim=1).values.sum(), [maps[i] for i in found], allow_unused=True)
    reached = {i: g is not None and bool(g.abs().sum() > 0) for i, g in zip(found, grads, strict=True)}
    return [(info, tuple(maps[i].shape[-2:]), reached.get(i, False)) for i, info in enumerate(levels) if i in maps]


def cam_layer(model: Any, images: Tensor) -> str:
    """Grad-CAM's default layer: the last stage the family declares whose map is still spatial, at least
    ``MIN_CAM_SIDE`` (4) on each side at this input size, and reached by the target's gradient; else the
    largest such map. At 28 px a 2×2 or 3×3 last stage (``alexnet_lite``, ``efficientnet_lite``, ``vgg_lite``),
    upsampled, is one corner or border plateau (bilinear interpolation holds the outer half-cell constant),
    which lies on the black background, so the family's earlier stage is used."""
    found = level_maps(model, images)
    levels = [(info, size) for info, size, reached in found if reached] or [(info, size) for info, size, _ in found]
    spatial = [info for info, size in levels if min(size) >= MIN_CAM_SIDE]
    return spatial[-1]["module"] if spatial else max(levels, key=lambda level: level[1][0] * level[1][1])[0]["module"]


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
        if method == "gradcam" and layer is None:
            layer = cam_layer(model, images)
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
                    found = Saliency(forward).attribute(x, target=t, abs=False).sum(dim=1)
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
def deletion_drop(
    model: Any,
    images: Tensor,
    maps: Tensor,
    fraction: float = 0.1,
    background: float = 0.0,
    *,
    any_pixel: bool = False,
    seed: int = 0,
) -> Tensor:
    """Per image, the predicted class's probability before minus after deleting (setting to ``background``, every
    channel) the ``fraction`` of the image's pixels that ``maps`` ranks highest.

    A pixel already at the background value cannot be deleted, so the pixels are taken among those that differ
    from it: every ranking changes the same number of pixels (``round(fraction · H · W)``, or all of them if
    fewer differ). ``any_pixel=True`` ranks every pixel, so a map pointing at the background changes fewer
    pixels than another. Ties are broken at random (``seed``): a map constant over a region deletes a random
    part of it."""
    forward = forward_function(model)
    net, _ = _parts(model)
    net.eval()
    count, _, height, width = images.shape
    probs = forward(images).softmax(dim=1)
    predicted = probs.argmax(dim=1)
    flat = maps.reshape(count, -1).float()
    jitter = torch.rand(flat.shape, generator=torch.Generator().manual_seed(seed)).to(flat.device)
    scale = flat.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
    rank = flat / scale + 1e-6 * jitter
    deletable = (images != background).any(dim=1).reshape(count, -1)
    if not any_pixel:
        rank = rank.masked_fill(~deletable, -float("inf"))
    order = rank.argsort(dim=1, descending=True)
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


def chance_drop(
    model: Any,
    images: Tensor,
    fraction: float = 0.1,
    background: float = 0.0,
    *,
    draws: int = 10,
    any_pixel: bool = False,
) -> Tensor:
    """Per image, the :func:`deletion_drop` of random pixels: the mean over ``draws`` random rankings (seeds
    1..draws), the chance level a map must beat."""
    found = [
        deletion_drop(model, images, random_maps(images, seed), fraction, background, any_pixel=any_pixel)
        for seed in range(1, draws + 1)
    ]
    return torch.stack(found).mean(0)


def rankings(
    model: Any,
    images: Tensor,
    methods: Sequence[str] = ("gradcam", "integrated_gradients", "saliency", "occlusion"),
    background: float = 0.0,
    **options: Any,
) -> dict[str, Tensor]:
    """Each method's maps, and the pixel ``intensity`` (its distance to the background: the brightest first)."""
    found = {name: explain(model, images, name, **options) for name in methods}
    found["intensity"] = (images - background).abs().mean(dim=1)
    return found


def faithfulness(
    model: Any,
    images: Tensor,
    methods: Sequence[str] = ("gradcam", "integrated_gradients", "saliency", "occlusion"),
    fraction: float = 0.1,
    background: float = 0.0,
    *,
    draws: int = 10,
    any_pixel: bool = False,
    maps: dict[str, Tensor] | None = None,
    **options: Any,
) -> dict[str, float]:
    """Mean drop of the predicted class's probability when the top ``fraction`` of pixels of each method's
    map is deleted (set to ``background``, see :func:`deletion_drop`), beside the pixel ``intensity`` and
    ``random`` pixels (the mean of ``draws`` random rankings, seeds 1..draws). ``maps``: :func:`rankings`
    already computed; ``options`` go to :func:`explain` (``steps``, ``batch_size``, ``layer``)."""
    images = images.float() / 255 if not images.is_floating_point() else images
    maps = maps if maps is not None else rankings(model, images, methods, background, **options)
    drops = {
        name: float(deletion_drop(model, images, found, fraction, background, any_pixel=any_pixel).mean())
        for name, found in maps.items()
    }
    drops["random"] = float(chance_drop(model, images, fraction, background, draws=draws, any_pixel=any_pixel).mean())
    return drops
