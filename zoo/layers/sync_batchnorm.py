"""BatchNorm over the global batch of every process, on any device: ``--trainer.sync_batchnorm`` on CPUs.

With data parallelism each process sees ``B / world`` images, so a plain BatchNorm normalises with
the statistics of that slice and the result depends on how many processes share the batch. A
synchronised BatchNorm sums the statistics of all the processes first, so 2 processes at batch
``B / 2`` normalise, and train, exactly as 1 process at batch ``B``. PyTorch's ``nn.SyncBatchNorm``
does this on GPUs only (DDP refuses it on CPU modules); :class:`CrossProcessBatchNorm` does it with
two autograd-aware all-reduces (``torch.distributed.all_reduce`` forward and backward) that work on
every backend, gloo included:

1. the per-channel sums and the element count → the global mean;
2. the per-channel sums of squared deviations from that mean → the global (biased) variance.

In the backward pass the same all-reduces sum the gradients of every process's loss with respect to
the shared statistics, as ``nn.SyncBatchNorm`` does. The running statistics are updated with the
unbiased global variance, as ``nn.BatchNorm`` does. Outside training, or in a single process, it is
the BatchNorm it replaced. :func:`convert` and :func:`revert` swap the layers of a model and back,
keeping their parameters and buffers (the Lightning plugin is :class:`zoo.plugins.SyncBatchNormAnyDevice`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


def _distributed() -> bool:
    return (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    )


class _AllReduceSum(torch.autograd.Function):
    """The sum over the processes, whose gradient is the sum of every process's gradient (each rank's
    loss depends on every rank's inputs through the shared statistics)."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        total = tensor.clone(memory_format=torch.contiguous_format)
        torch.distributed.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return _AllReduceSum.apply(grad)


def _all_reduce(tensor: Tensor) -> Tensor:
    return _AllReduceSum.apply(tensor)


class CrossProcessBatchNorm(_BatchNorm):
    """A BatchNorm (1-d, 2-d or 3-d: channels on dim 1) whose training statistics are those of every process."""

    def __init__(self, *args, original: type[_BatchNorm] = nn.BatchNorm2d, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.original = original  # the class revert() puts back

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected an input with channels on dim 1, got shape {tuple(input.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and _distributed()):
            return super().forward(x)
        dtype = x.dtype
        x = x.float() if dtype in (torch.float16, torch.bfloat16) else x  # statistics in float32 at least
        dims = [d for d in range(x.dim()) if d != 1]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.full((1,), x.numel() // x.shape[1], dtype=x.dtype, device=x.device)
        sums = _all_reduce(torch.cat([x.sum(dims), count]))
        total = sums[-1]
        mean = sums[:-1] / total
        centred = x - mean.view(shape)
        var = _all_reduce(centred.pow(2).sum(dims)) / total
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach() * total / (total - 1).clamp_min(1))
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, unbiased_var: Tensor) -> None:
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean, momentum)
        self.running_var.lerp_(unbiased_var, momentum)


def _swap(module: _BatchNorm, new: _BatchNorm) -> _BatchNorm:
    if module.affine:
        new.weight, new.bias = module.weight, module.bias
    if module.track_running_stats:
        new.running_mean, new.running_var = module.running_mean, module.running_var
        new.num_batches_tracked = module.num_batches_tracked
    return new.train(module.training)


def convert(model: nn.Module) -> nn.Module:
    """Every BatchNorm of ``model`` (PyTorch's SyncBatchNorm aside) → :class:`CrossProcessBatchNorm`, same tensors."""
    if isinstance(model, _BatchNorm) and not isinstance(model, (nn.SyncBatchNorm, CrossProcessBatchNorm)):
        args = (model.num_features, model.eps, model.momentum, model.affine, model.track_running_stats)
        return _swap(model, CrossProcessBatchNorm(*args, original=type(model)))
    for name, child in model.named_children():
        model.add_module(name, convert(child))
    return model


def revert(model: nn.Module) -> nn.Module:
    """Undo :func:`convert`: each layer back to the BatchNorm class it was, with the trained tensors."""
    if isinstance(model, CrossProcessBatchNorm):
        args = (model.num_features, model.eps, model.momentum, model.affine, model.track_running_stats)
        return _swap(model, model.original(*args))
    for name, child in model.named_children():
        model.add_module(name, revert(child))
    return model
