"""Per-layer table of a network: output shape, parameters, FLOPs and activation memory.

The course's memory quiz, computed instead of guessed:
  * parameters: ``C_out · (C_in · K_h · K_w + 1)`` per conv, read from the module itself;
  * FLOPs: counted by ``torch.utils.flop_counter`` on a real forward pass (one multiply-add = 2 FLOPs);
  * activations: every leaf layer's output is kept for the backward pass, so the memory stored for
    backward ≈ Σ layer outputs × batch × bytes per value (the forward-only peak is far smaller);
  * training state: parameters + gradients + optimizer state (SGD momentum: 1 copy, Adam: 2 copies).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]  # without the batch dimension
    params: int
    flops: int  # per image
    new_tensor: bool = True  # False when the output reuses the input's memory (in-place ReLU, Flatten, eval Dropout)

    @property
    def activations(self) -> int:
        return int(torch.Size(self.output_shape).numel())


@dataclass
class NetworkTable:
    rows: list[LayerRow]
    input_size: tuple[int, ...]
    total_params: int
    total_flops: int  # per image, whole forward (ops outside leaf layers included)
    batch_size: int = 1
    bytes_per_value: int = 4
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def activations(self) -> int:
        """Values stored for backward per image: the input and every leaf layer's output."""
        return int(torch.Size(self.input_size).numel()) + sum(r.activations for r in self.rows)

    @property
    def new_activations(self) -> int:
        """The same count without the outputs that reuse their input's memory (in-place ops and views)."""
        return int(torch.Size(self.input_size).numel()) + sum(r.activations for r in self.rows if r.new_tensor)

    def memory(self) -> dict[str, int]:
        """Bytes at ``batch_size``: forward activations, and the training state per optimizer."""
        params = self.total_params * self.bytes_per_value
        stored = self.activations * self.batch_size * self.bytes_per_value
        return {
            "parameters": params,
            "activations_for_backward": stored,
            "activation_gradients_peak": stored,  # backward holds gradients the size of the activations
            "train_sgd_momentum": stored + 3 * params,  # weights + grads + momentum
            "train_adam": stored + 4 * params,  # weights + grads + 2 moments
        }


def layer_table(net: nn.Module, input_size: tuple[int, ...], batch_size: int = 1) -> NetworkTable:
    """Run one forward pass of a single image through ``net`` and tabulate every leaf layer."""
    rows: list[LayerRow] = []
    hooks = []
    counters: dict[str, FlopCounterMode] = {}

    def before(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            counters[name] = FlopCounterMode(display=False)
            counters[name].__enter__()

        return hook

    def after(name: str):
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            counter = counters.pop(name)
            counter.__exit__(None, None, None)
            if output is None:  # the layer raised (an input it cannot take): nothing to tabulate
                return
            shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else ()
            params = sum(p.numel() for p in module.parameters(recurse=False))
            shares = (
                isinstance(output, torch.Tensor)
                and bool(args)
                and isinstance(args[0], torch.Tensor)
                and not output.is_meta
                and output.untyped_storage().data_ptr() == args[0].untyped_storage().data_ptr()
            )
            rows.append(LayerRow(name, type(module).__name__, shape, params, counter.get_total_flops(), not shares))

        return hook

    for name, module in net.named_modules():
        if name and not list(module.children()):
            hooks.append(module.register_forward_pre_hook(before(name)))
            # always_call: a layer that raises still closes its counter, so no FLOP-counting mode
            # (with its global module hooks) outlives a failed `zoo info`
            hooks.append(module.register_forward_hook(after(name), always_call=True))
    try:
        total_flops = count_flops(net, input_size)
    finally:
        for hook in hooks:
            hook.remove()
    return NetworkTable(
        rows=rows,
        input_size=tuple(input_size),
        total_params=sum(p.numel() for p in net.parameters()),
        total_flops=total_flops,
        batch_size=batch_size,
    )


def count_flops(net: nn.Module, input_size: tuple[int, ...]) -> int:
    """FLOPs of one forward pass of one image (2 per multiply-add)."""
    was_training = net.training
    fastpath = torch.backends.mha.get_fastpath_enabled()
    net.eval()
    # nn.TransformerEncoderLayer's fused inference kernel is invisible to the counter: count the plain ops
    torch.backends.mha.set_fastpath_enabled(False)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    # a parameter handed to a submodule as its input (timm's attention-pool latent) would make the counter's
    # module tracker hook a gradient it cannot find under no_grad: no parameter asks for one while counting
    trainable = [p for p in net.parameters() if p.requires_grad]
    try:  # attention through the math kernel too: its matmuls are counted (the fused CPU kernel's are not)
        for param in trainable:
            param.requires_grad_(False)
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            net(torch.zeros(1, *input_size))
    finally:
        for param in trainable:
            param.requires_grad_(True)
        net.train(was_training)
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return counter.get_total_flops()


def fc_parameter_share(net: nn.Module, classifier: nn.Module) -> dict[str, str]:
    """How many of ``net``'s parameters sit in the linear layers of ``classifier`` (for ``zoo info``)."""
    fc = sum(p.numel() for m in classifier.modules() if isinstance(m, nn.Linear) for p in m.parameters())
    total = sum(p.numel() for p in net.parameters())
    return {"parameters in the FC layers": f"{fc:,} of {total:,} = {100 * fc / total:.1f}%"}


@dataclass
class StageRow:
    name: str
    output_shape: tuple[int, ...]  # one image's output, without the batch dimension
    params: int
    flops: int  # per image
    tokens: int = 0  # queries of the stage's first attention (a window's tokens for Swin), 0 without attention
    windows: int = 0  # attention groups per image (Swin's windows; 1 for a ViT)
    heads: int = 0
    attention_total: int = 0  # attention weights of all the stage's attention layers, per image

    @property
    def attention_values(self) -> int:
        """Entries of the attention matrices per image and block: windows × heads × tokens² (the L² term)."""
        return self.windows * self.heads * self.tokens**2


def stage_table(net: nn.Module, input_size: tuple[int, ...]) -> list[StageRow]:
    """Parameters, FLOPs, output and attention size of each of ``net.stages()`` for one image."""
    from zoo.layers.transformer import Attention

    rows: list[StageRow] = []
    hooks = []
    seen: dict[int, tuple[int, int, int, int]] = {}  # id(attention) → (queries, windows, heads, weights)

    def attention_hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        query = args[0] if args else kwargs["query"]
        batch_windows, tokens = query.shape[:2]
        keys = tokens
        if isinstance(module, nn.MultiheadAttention):  # (N, queries, D) against (N, keys, D): Lq × Lk weights
            keys = (args[1] if len(args) > 1 else kwargs["key"]).shape[1]
        seen[id(module)] = (tokens, batch_windows, module.num_heads, batch_windows * module.num_heads * tokens * keys)

    attention_layers = [module for module in net.modules() if isinstance(module, Attention)]
    for module in net.modules():
        if isinstance(module, (Attention, nn.MultiheadAttention)):
            hooks.append(module.register_forward_pre_hook(attention_hook, with_kwargs=True))
    for module in attention_layers:
        module.keep_attention = True  # the term-by-term product, whose matmuls the FLOP counter sees
    groups = net.stages()
    flops: dict[str, int] = {}
    outputs: dict[str, tuple[int, ...]] = {}
    # Every module of a stage's subtree is hooked; a counter runs from the outermost call into the
    # stage to its return (a stage's modules may be called in pieces: DETR's decoder layers one by one).
    for name, modules in groups:
        state = {"depth": 0, "counter": None}

        def before(_m, _a, state=state):
            if state["depth"] == 0:
                state["counter"] = FlopCounterMode(display=False)
                state["counter"].__enter__()
            state["depth"] += 1

        def after(_m, _a, out, name=name, state=state):
            state["depth"] -= 1
            if state["depth"] == 0:
                state["counter"].__exit__(None, None, None)
                flops[name] = flops.get(name, 0) + state["counter"].get_total_flops()
                outputs[name] = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else ()

        for module in {id(m): m for top in modules for m in top.modules()}.values():
            hooks.append(module.register_forward_pre_hook(before))
            hooks.append(module.register_forward_hook(after, always_call=True))
    try:
        count_flops(net, input_size)
    finally:
        for hook in hooks:
            hook.remove()
        for module in attention_layers:
            module.keep_attention, module.attention = False, None
    for name, modules in groups:
        attentions = [
            m
            for module in modules
            for m in module.modules()
            if isinstance(m, (Attention, nn.MultiheadAttention)) and id(m) in seen
        ]
        tokens, windows, heads, _ = seen[id(attentions[0])] if attentions else (0, 0, 0, 0)
        rows.append(
            StageRow(
                name,
                outputs.get(name, ()),
                sum(p.numel() for module in modules for p in module.parameters()),
                flops.get(name, 0),
                tokens,
                windows,
                heads,
                sum(seen[id(m)][3] for m in attentions),
            )
        )
    return rows
