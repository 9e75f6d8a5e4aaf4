"""What a network has learnt, as pictures: its first filters, a stage's feature maps, the input a class or a
channel likes best (activation maximisation), and attribution overlays (``zoo filters / activations / dream /
explain``).

Activation maximisation ("images sensibles par optimisation", Erhan et al. 2009; Simonyan et al. 2014;
Olah et al., "Feature Visualization", Distill 2017): gradient ascent on the input pixels of the target's
logit (or a channel's mean activation), from a dim noise image, with the usual regularisers, since the
raw ascent finds high-frequency patterns no image has: a random shift (jitter) of up to a few pixels
before every step, a Gaussian blur every few steps, a total-variation penalty, and pixels clamped to
[0, 1] after every step.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.errors import InvalidValueError, ZooError
from zoo.explainers import _submodule, explain, forward_function, model_name, unit_maps


def _load(source: Any) -> Any:
    if isinstance(source, (str, Path)):
        from zoo.tasks.factory import load

        model = load(str(source))
        model.weights_name = model.weights_name or str(source)
        return model
    return source


def first_conv(model: Any) -> tuple[str, Tensor]:
    """The name and weight ``(out, in, k, k)`` of the network's first convolution (what the family declares)."""
    net = getattr(model, "net", model)
    name = getattr(net, "first_conv_name", "")
    module = _submodule(net, name, None) if name else None
    if not isinstance(module, nn.Conv2d):
        module = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
        name = next((n for n, m in net.named_modules() if m is module), "")
    if module is None:
        raise ZooError(f"{model_name(model)} has no convolution to draw")
    return name, module.weight.detach().float().cpu()


def filters_figure(model: Any, columns: int = 16):
    """The first convolution's filters as a grid: grey filters on a blue-white-red scale centred on 0 (one scale
    for all, so their strengths compare), RGB ones as colours (each stretched to [0, 1])."""
    from zoo.plots import new_figure

    name, weight = first_conv(model)
    count = weight.shape[0]
    columns = min(columns, count)
    rows = -(-count // columns)
    fig, axes = new_figure(0.75 * columns, 0.75 * rows + 0.5)
    axes.remove()
    grid = fig.subplots(rows, columns, squeeze=False)
    top = float(weight.abs().max())
    for index, ax in enumerate(grid.flat):
        ax.set_axis_off()
        if index >= count:
            continue
        kernel = weight[index]
        if kernel.shape[0] == 3:
            low, high = kernel.min(), kernel.max()
            ax.imshow(((kernel - low) / (high - low).clamp_min(1e-12)).permute(1, 2, 0).numpy())
        else:
            ax.imshow(kernel.mean(dim=0).numpy(), cmap="bwr", vmin=-top, vmax=top)
    size = "×".join(str(s) for s in weight.shape[2:])
    fig.suptitle(f"{model_name(model)}: {name}, {count} filters of {weight.shape[1]}×{size}", fontsize=9)
    return fig


def activations(model: Any, image: Tensor, layer: str | None = None) -> tuple[str, Tensor]:
    """``(layer, maps (C, h, w))``: the output of ``layer`` (default the first declared stage) for one image
    ``(C, H, W)`` in [0, 1]; ViT tokens and Swin's channels-last maps are laid out on their grid."""
    from zoo.explainers import _level
    from zoo.layers.features import to_map

    net = getattr(model, "net", model)
    info = _level(net, layer if layer is not None else net.feature_info[0]["module"])
    kept: dict[str, Tensor] = {}
    handle = _submodule(net, info["module"]).register_forward_hook(lambda m, i, out: kept.update(out=out))
    try:
        with torch.no_grad():
            forward_function(model)(image[None].to(next(net.parameters()).device))
    finally:
        handle.remove()
    out = kept["out"]
    if out.ndim == 3 and "prefix_tokens" not in info:
        info["prefix_tokens"] = out.shape[1] - (image.shape[1] // info["reduction"]) * (
            image.shape[2] // info["reduction"]
        )
    return info["module"], to_map(out, info, image.shape[1:])[0].float().cpu()


def activations_figure(model: Any, image: Tensor, layer: str | None = None, limit: int = 32, columns: int = 8):
    """The input, then the ``limit`` most active channels of ``layer`` (highest mean), each on its own scale."""
    from zoo.plots import new_figure

    name, maps = activations(model, image, layer)
    order = maps.mean(dim=(1, 2)).argsort(descending=True)[:limit]
    count = len(order) + 1
    columns = min(columns, count)
    rows = -(-count // columns)
    fig, axes = new_figure(1.2 * columns, 1.3 * rows + 0.5)
    axes.remove()
    grid = fig.subplots(rows, columns, squeeze=False)
    for ax in grid.flat:
        ax.set_axis_off()
    shown = image.cpu()
    grid[0, 0].imshow(shown[0] if shown.shape[0] == 1 else shown.permute(1, 2, 0), cmap="gray", vmin=0, vmax=1)
    grid[0, 0].set_title("input", fontsize=7)
    for slot, channel in enumerate(order.tolist(), start=1):
        ax = grid.flat[slot]
        ax.imshow(maps[channel].numpy(), cmap="viridis")
        ax.set_title(f"ch {channel}", fontsize=7)
    fig.suptitle(
        f"{model_name(model)}: {name}, {maps.shape[0]} channels of {maps.shape[1]}×{maps.shape[2]} "
        f"({len(order)} most active shown)",
        fontsize=9,
    )
    return fig


def _blur(x: Tensor, sigma: float) -> Tensor:
    radius = max(1, round(2 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    x = F.conv2d(
        F.pad(x, (radius, radius, 0, 0), mode="reflect"),
        kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1),
        groups=channels,
    )
    return F.conv2d(
        F.pad(x, (0, 0, radius, radius), mode="reflect"),
        kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1),
        groups=channels,
    )


def total_variation(x: Tensor) -> Tensor:
    """Mean absolute difference between neighbouring pixels, per image."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(1, 2, 3)) + (x[..., :, 1:] - x[..., :, :-1]).abs().mean(
        dim=(1, 2, 3)
    )


def dream(
    model: Any,
    classes: Sequence[int] | None = None,
    *,
    layer: str | None = None,
    channels: Sequence[int] | None = None,
    steps: int = 256,
    lr: float = 0.05,
    jitter: int = 2,
    blur_every: int = 4,
    blur_sigma: float = 0.5,
    tv_weight: float = 0.5,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Activation maximisation: ``(images (N, C, H, W) in [0, 1], final objective per image)``.

    One image per class of ``classes`` (their logits), or with ``layer``, one per channel of ``channels``
    (the channel's mean activation). Adam on the pixels from dim noise; see the module doc for the regularisers.
    """
    net = getattr(model, "net", model)
    forward = forward_function(model)
    size = tuple(getattr(model, "input_size", (1, 28, 28)))
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InvalidValueError(f"steps must be a whole number ≥ 1, got {steps!r} (e.g. 256)")
    if isinstance(tv_weight, bool) or not isinstance(tv_weight, (int, float)) or not 0 <= tv_weight < float("inf"):
        raise InvalidValueError(f"tv_weight must be a number ≥ 0, got {tv_weight!r} (e.g. 0.5)")
    if layer is None:
        count = net.get_classifier().out_features
        targets = list(range(count)) if classes is None else list(classes)
        what = f"class index of the model's {count} classes"
    else:
        if not channels:
            raise InvalidValueError("give the channels of the layer to maximise (--channel 0 3 ...)")
        targets = list(channels)
        from zoo.explainers import _level

        info = _level(net, layer)
        count = info.get("num_chs")
        what = f"channel of {layer}, which has {count} channels"
    wrong = [t for t in targets if isinstance(t, bool) or not isinstance(t, int) or t < 0 or (count and t >= count)]
    if wrong:
        limits = f" (0 to {count - 1})" if count else ""
        raise InvalidValueError(f"{wrong[0]!r} is not a {what}{limits}")
    generator = torch.Generator().manual_seed(seed)
    device = next(net.parameters()).device
    x = (0.1 + 0.05 * torch.randn(len(targets), *size, generator=generator)).clamp(0, 1).to(device)
    x.requires_grad_(True)
    optimiser = torch.optim.Adam([x], lr=lr)
    index = torch.tensor(targets, device=device)
    kept: dict[str, Tensor] = {}
    handle = None
    if layer is not None:
        handle = _submodule(net, info["module"]).register_forward_hook(lambda m, i, out: kept.update(out=out))
    was_training = net.training
    net.eval()
    try:
        for step in range(steps):
            shift = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist() if jitter else [0, 0]
            logits = forward(torch.roll(x, shifts=shift, dims=(2, 3)))
            if layer is None:
                score = logits.gather(1, index[:, None]).squeeze(1)
            else:
                out = kept["out"]
                out = (
                    out.permute(0, 3, 1, 2)
                    if out.ndim == 4 and out.shape[-1] == info.get("num_chs") != out.shape[1]
                    else out
                )
                out = out.transpose(1, 2) if out.ndim == 3 else out  # tokens: (N, C, tokens)
                score = out[torch.arange(len(targets)), index].flatten(1).mean(dim=1)
            loss = -(score - tv_weight * total_variation(x)).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                if blur_every and step % blur_every == 0 and step < steps - 1:
                    x.copy_(_blur(x, blur_sigma))
                x.clamp_(0, 1)
    finally:
        net.train(was_training)
        if handle is not None:
            handle.remove()
    return x.detach(), score.detach()


def dream_figure(model: Any, images: Tensor, titles: Sequence[str], title: str, columns: int = 5):
    from zoo.plots import new_figure

    count = len(images)
    columns = min(columns, count)
    rows = -(-count // columns)
    fig, axes = new_figure(1.8 * columns, 1.95 * rows + 0.4)
    axes.remove()
    grid = fig.subplots(rows, columns, squeeze=False)
    for ax in grid.flat:
        ax.set_axis_off()
    for index, image in enumerate(images.cpu()):
        ax = grid.flat[index]
        ax.imshow(image[0] if image.shape[0] == 1 else image.permute(1, 2, 0), cmap="gray", vmin=0, vmax=1)
        ax.set_title(titles[index], fontsize=7.5)
    fig.suptitle(title, fontsize=9)
    return fig


def explain_figure(model: Any, images: Tensor, method: str, target: Any = None, **options: Any):
    """Each image above its ``method`` map laid over it, captioned with the explained class and its probability."""
    from zoo.plots import attention_figure

    maps = explain(model, images, method, target, **options)
    with torch.no_grad():
        probs = forward_function(model)(images.to(maps.device)).softmax(dim=1).cpu()
    chosen = probs.argmax(dim=1) if target is None else torch.as_tensor(target).long().flatten().expand(len(images))
    names = getattr(model, "class_names", None) or [str(i) for i in range(probs.shape[1])]
    captions = [f"{names[int(c)]} ({100 * float(p[int(c)]):.0f}%)" for c, p in zip(chosen, probs)]
    shown = unit_maps(maps.clamp_min(0) if method != "attention" else maps).cpu()
    return attention_figure(images.cpu(), shown, captions, f"{model_name(model)}: {method.replace('_', ' ')}")
