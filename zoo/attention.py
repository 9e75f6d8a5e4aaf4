"""Where a transformer looks: attention maps of ViT and Swin, and pictures of them (``zoo attention``).

* ViT — attention rollout (Abnar & Zuidema 2020): each block's attention, averaged over heads, with
  the residual connection added as ``(A + I) / 2`` and rows renormalised, is multiplied through the
  blocks, so the product says how much each input patch flows into each output token. The map is the
  row of the token the classifier reads: the class token (``global_pool="token"``), or the mean of the
  patch tokens' rows for mean-pooled networks.
* Swin — the attention of one block, inside each of its windows: how much attention each token
  receives from the tokens of its window (averaged over queries and heads), laid back on the image;
  a shifted block's windows are rolled back to where they sit in the image. The picture draws the
  window borders, since each window is a separate attention. By default the block shown is the first
  whose single window covers the whole image (a late stage at small inputs): its map compares every
  part of the image, where an early block's maps only compare the tokens of one window.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.errors import InvalidValueError, ZooError


def _attention_layers(model: Any) -> list[Any]:
    net = getattr(model, "net", model)
    if not hasattr(net, "attention_blocks"):
        name = getattr(getattr(model, "hparams", None), "model_name", type(net).__name__)
        raise ZooError(f"{name} has no attention layers; attention maps are for ViT and Swin models (zoo list 'vit*')")
    return net.attention_blocks()


@torch.inference_mode()
def attention_maps(model: Any, images: Tensor, block: int | None = None) -> tuple[Tensor, Tensor]:
    """``(maps (N, H, W) in [0, 1] at the image size, logits (N, classes))`` for float images in [0, 1].

    ``block``: for Swin, the block whose windows are shown (index over all blocks; default the first
    whose window covers the whole image); ViT's rollout always runs through every block.
    """
    layers = _attention_layers(model)
    net = getattr(model, "net", model)
    is_vit = hasattr(net, "embed")
    if block is not None and (
        isinstance(block, bool) or not isinstance(block, int) or not -len(layers) <= block < len(layers)
    ):
        raise InvalidValueError(f"block must be a whole number in 0..{len(layers) - 1} for this model, got {block!r}")
    for layer in layers:
        layer.keep_attention = True
    try:
        logits = model(images)
        weights = [layer.attention for layer in layers]
    finally:
        for layer in layers:
            layer.keep_attention, layer.attention = False, None
    size = images.shape[-2:]
    if is_vit:
        maps = _rollout(weights, net, size)
    else:
        index = swin_block_index(net, block, size)
        rows, cols, _ = swin_grid(net, index, size)
        maps = _window_map(weights[index], _swin_block(net, index), images.shape[0], (rows, cols))
    maps = F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)
    low, high = maps.amin(dim=(1, 2), keepdim=True), maps.amax(dim=(1, 2), keepdim=True)
    return (maps - low) / (high - low).clamp_min(1e-12), logits


def _rollout(weights: Sequence[Tensor], net: Any, size: Sequence[int]) -> Tensor:
    tokens = weights[0].shape[-1]
    eye = torch.eye(tokens, device=weights[0].device)
    flow = eye.expand(weights[0].shape[0], -1, -1)
    for attention in weights:
        step = (attention.mean(dim=1) + eye) / 2  # the residual: half of each token stays itself
        flow = (step / step.sum(dim=-1, keepdim=True)) @ flow
    rows = flow[:, 0] if net.global_pool == "token" else flow[:, 1:].mean(dim=1)
    stride = net.embed.stride
    return rows[:, 1:].reshape(-1, size[0] // stride, size[1] // stride)


def swin_block_index(net: Any, block: int | None, size: Sequence[int]) -> int:
    """The block shown: ``block`` (negative counts from the end).

    By default the first block whose one window covers the whole token grid of an image of ``size``
    (its attention is global, so the map compares every part of the image), else the last block.
    """
    count = len(net.attention_blocks())
    if block is not None:
        if isinstance(block, bool) or not isinstance(block, int) or not -count <= block < count:
            raise InvalidValueError(
                f"block {block!r} is out of range: this Swin has {count} blocks (0 to {count - 1}, or -1 for the last)"
            )
        return block % count
    for index in range(count):
        rows, cols, _ = swin_grid(net, index, size)
        if _swin_block(net, index).window >= max(rows, cols):
            return index
    return count - 1


def swin_windows(net: Any, index: int, size: Sequence[int]) -> dict[str, int]:
    """Window side and shift of block ``index`` in pixels of an image of ``size``, for drawing the borders."""
    rows, cols, stride = swin_grid(net, index, size)
    block = _swin_block(net, index)
    shifted = block.shift and not (block.window >= rows and block.window >= cols)
    return dict(size=block.window * stride, offset=block.shift * stride if shifted else 0)


def _swin_block(net: Any, index: int) -> Any:
    return [block for stage in net.layers for block in stage.blocks][index]


def swin_grid(net: Any, index: int, size: Sequence[int]) -> tuple[int, int, int]:
    """(rows, cols, stride in pixels) of the token grid that Swin block ``index`` works on."""
    stride = net.patch_embed.stride  # pixels per token: patch side × the stem's 2 when there is one
    rows, cols = size[0] // stride, size[1] // stride
    for stage in net.layers:
        if not isinstance(stage.downsample, torch.nn.Identity):
            rows, cols, stride = -(-rows // 2), -(-cols // 2), stride * 2
        if index < len(stage.blocks):
            return rows, cols, stride
        index -= len(stage.blocks)
    raise IndexError(index)


def _window_map(attention: Tensor, block: Any, batch: int, grid: tuple[int, int]) -> Tensor:
    net_rows, net_cols = grid
    window = block.window
    big_h, big_w = net_rows + (-net_rows) % window, net_cols + (-net_cols) % window
    received = attention.mean(dim=(1, 2))  # (N·windows, M²): attention each token gets in its window
    received = received.view(batch, big_h // window, big_w // window, window, window)
    full = received.permute(0, 1, 3, 2, 4).reshape(batch, big_h, big_w)
    shift = block.shift if not (window >= big_h and window >= big_w) else 0
    if shift:
        full = torch.roll(full, shifts=(shift, shift), dims=(1, 2))
    return full[:, :net_rows, :net_cols]


def save_attention(
    source: Any, paths: Sequence[str | Path], out: str | Path, *, block: int | None = None, title: str | None = None
) -> Path:
    """Draw the attention of ``source`` (weights ``zoo.load`` takes, or a loaded model) on image files → PNG."""
    from zoo.data.images import find_images, read_all
    from zoo.plots import attention_figure, save

    if isinstance(source, (str, Path)):
        from zoo.tasks.factory import load

        name, model = str(source), load(source)
    else:
        name, model = getattr(source, "weights_name", None) or source.hparams.model_name, source
    model.eval()
    files = find_images(paths)
    if not files:
        raise ZooError(f"no image files under {', '.join(map(str, paths))}; give image files or folders of them")
    images = torch.stack(read_all(files, model.transforms()))
    net = model.net
    _attention_layers(model)  # a one-line error for a model without attention
    index, windows = None, None
    if not hasattr(net, "embed"):  # Swin: the block shown, and its window borders
        index = swin_block_index(net, block, images.shape[-2:])
        windows = swin_windows(net, index, images.shape[-2:])
    maps, logits = attention_maps(model, images.to(model.device), block=block)
    probs = logits.softmax(dim=-1).cpu()
    captions = [f"{model.class_names[int(p.argmax())]} ({100 * float(p.max()):.0f}%)" for p in probs]
    what = "attention rollout" if index is None else f"window attention, block {index}"
    fig = attention_figure(images.cpu(), maps.cpu(), captions, title or f"{name}: {what}", windows=windows)
    return save(fig, out)
