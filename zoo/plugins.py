"""Lightning plugins of the zoo.

* :class:`SyncBatchNormAnyDevice` — ``Trainer(sync_batchnorm=True)`` that also works on CPU processes
  (gloo): Lightning's own plugin converts to ``torch.nn.SyncBatchNorm``, which DDP refuses on CPU
  modules; this one keeps PyTorch's on GPUs and uses :class:`zoo.layers.sync_batchnorm.CrossProcessBatchNorm`
  elsewhere. ``zoo fit --trainer.sync_batchnorm true`` puts it in for you; with your own Trainer::

      L.Trainer(accelerator="cpu", strategy="ddp", devices=2, sync_batchnorm=True, plugins=[SyncBatchNormAnyDevice()])
"""

from __future__ import annotations

from lightning.pytorch.plugins.layer_sync import TorchSyncBatchNorm
from torch import nn

from zoo.layers import sync_batchnorm


class SyncBatchNormAnyDevice(TorchSyncBatchNorm):
    """Global-batch BatchNorm for data-parallel training on every device (see the module doc)."""

    def apply(self, model: nn.Module) -> nn.Module:
        # Lightning applies layer syncs before moving the model: the strategy knows where it will run
        try:
            device = model.trainer.strategy.root_device.type
        except (AttributeError, RuntimeError):  # a plain module, or one no Trainer holds: it stays here
            device = "cpu"
        return super().apply(model) if device == "cuda" else sync_batchnorm.convert(model)

    def revert(self, model: nn.Module) -> nn.Module:
        return sync_batchnorm.revert(TorchSyncBatchNorm().revert(model))  # not self: its recursion calls revert
