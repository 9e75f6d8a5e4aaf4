"""Image classification as a LightningModule wrapping any registered network.

Input: a float batch ``(N, C, H, W)`` with pixels in [0, 1] (uint8 batches are scaled for you).
Mean/std normalisation is a buffer inside the module, set from the weights' metadata, so callers never
guess it. Output: logits ``(N, num_classes)``. ``model.net`` is the plain ``nn.Module``.
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from zoo.errors import InputShapeError, WeightsError, ZooError
from zoo.hub import HubMixin
from zoo.registry import build_net, get_entry

log = logging.getLogger(__name__)

Optimizer = Literal["sgd", "adam", "adamw"]
Scheduler = Literal["constant", "step", "exponential", "cosine", "sgdr", "plateau", "onecycle"]
Init = Literal["default", "kaiming", "xavier"]


class ImageClassifier(HubMixin, L.LightningModule):
    """Train, evaluate and run any registered classification network.

    Args:
        model_name: a registered architecture (``zoo list``).
        num_classes: size of the head.
        in_chans: input channels (default: the architecture's).
        model_kwargs: extra arguments for the architecture's builder (``dropout``, ``img_size``...).
        mean, std: per-channel input statistics (default: the architecture's dataset).
        class_names: names of the classes, in order; saved into the weights' config.
        optimizer: ``sgd`` (with ``momentum``/``nesterov``), ``adam`` or ``adamw`` (decoupled weight decay).
        lr, weight_decay, momentum, nesterov, betas: optimizer settings; weight decay skips biases and
            normalisation weights.
        scheduler: learning-rate schedule over the whole run, stepped every batch (``plateau``: every
            epoch on ``val_loss``); ``warmup_epochs`` of linear warm-up come first.
        step_epochs, gamma: ``step`` multiplies the LR by ``gamma`` every ``step_epochs``;
            ``exponential`` by ``gamma`` each epoch; ``plateau`` by ``gamma`` after ``plateau_patience``.
        restart_epochs, restart_mult: SGDR's first cycle length and its growth factor.
        min_lr: floor of ``cosine``/``sgdr``/``plateau``.
        label_smoothing: cross-entropy label smoothing.
        channels_last: keep activations in NHWC memory format (faster convolutions on many CPUs/GPUs).
        init: weights of every conv/linear layer: ``default`` (the layers' own, PyTorch's scaled uniform),
            ``kaiming`` (He et al. 2015, normal with variance 2/fan_in, made for ReLU) or ``xavier``
            (Glorot & Bengio 2010, uniform with variance 2/(fan_in+fan_out), made for tanh); biases 0.
    """

    def __init__(
        self,
        model_name: str = "lenet5",
        num_classes: int = 10,
        in_chans: int | None = None,
        model_kwargs: dict[str, Any] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        class_names: list[str] | None = None,
        optimizer: Optimizer = "sgd",
        lr: float = 0.01,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        nesterov: bool = False,
        betas: tuple[float, float] = (0.9, 0.999),
        scheduler: Scheduler = "constant",
        warmup_epochs: float = 0.0,
        step_epochs: int = 10,
        gamma: float = 0.1,
        restart_epochs: int = 10,
        restart_mult: int = 1,
        plateau_patience: int = 3,
        min_lr: float = 0.0,
        label_smoothing: float = 0.0,
        channels_last: bool = False,
        init: Init = "default",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        entry = get_entry(model_name)
        in_chans = entry.input_size[0] if in_chans is None else in_chans
        self.net = build_net(model_name, num_classes=num_classes, in_chans=in_chans, **(model_kwargs or {}))
        if init != "default":
            initialize(self.net, init)
        mean = list(entry.mean if mean is None else mean)
        std = list(entry.std if std is None else std)
        if len(mean) != in_chans:  # e.g. grayscale statistics for an RGB copy: use their average per channel
            mean, std = [sum(mean) / len(mean)] * in_chans, [sum(std) / len(std)] * in_chans
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.input_size = tuple(getattr(self.net, "input_size", (in_chans, *entry.input_size[1:])))
        self.fixed_input_size = getattr(self.net, "fixed_input_size", entry.fixed_input_size)
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        self.weights_name: str | None = None
        self.example_input_array = torch.zeros(2, *self.input_size)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)

        top_k = min(5, num_classes)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc5 = MulticlassAccuracy(num_classes, top_k=top_k, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc5 = MulticlassAccuracy(num_classes, top_k=top_k, average="micro")
        self.test_confusion = MulticlassConfusionMatrix(num_classes)

    @classmethod
    def from_registry(cls, model_name: str, **kwargs: Any) -> ImageClassifier:
        """Split ``kwargs`` into this task's arguments and the builder's ``model_kwargs``."""
        own = set(inspect.signature(cls.__init__).parameters) - {"self", "model_name", "model_kwargs"}
        model_kwargs = dict(kwargs.pop("model_kwargs", None) or {})
        model_kwargs.update({k: kwargs.pop(k) for k in list(kwargs) if k not in own})
        return cls(model_name=model_name, model_kwargs=model_kwargs, **kwargs)

    # ---- inference -------------------------------------------------------------------------------
    def check_input(self, x: Tensor) -> None:
        channels, height, width = self.input_size
        name = self.weights_name or self.hparams.model_name
        if x.ndim != 4:
            raise InputShapeError(f"{name} takes a batch (N, C, H, W); got a tensor of shape {tuple(x.shape)} (add a batch dimension with x[None])")
        if x.shape[1] != channels:
            raise InputShapeError(
                f"{name} takes {channels}-channel images, got {x.shape[1]} channels; convert the images "
                f"or create the model with in_chans={x.shape[1]}"
            )
        if self.fixed_input_size and tuple(x.shape[2:]) != (height, width):
            raise InputShapeError(
                f"{name} takes {height}×{width} images, got {x.shape[2]}×{x.shape[3]}; resize the images to {height}×{width}"
            )

    def preprocess(self, x: Tensor) -> Tensor:
        """uint8 → [0, 1] floats, then the normalisation the weights were trained with."""
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        x = (x - self.mean) / self.std
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self.net(self.preprocess(x))

    @torch.inference_mode()
    def predict_proba(self, x: Tensor) -> Tensor:
        """Class probabilities ``(N, num_classes)`` for a batch of images in [0, 1]."""
        return self(x.to(self.device)).softmax(dim=-1)

    def fold_batchnorm(self, *, compile: bool = False) -> ImageClassifier:
        """An inference-only copy whose BatchNorm layers are folded into the convolutions before them.

        In eval mode BatchNorm is a fixed per-channel affine map, so ``conv → bn`` equals a single
        convolution with rescaled weights and a bias (``torch.fx.experimental.optimization.fuse``):
        one pass over the activations fewer per block, the same outputs up to float rounding. The copy
        cannot be trained or saved as weights (its layers are renamed); this model is left unchanged.

        ``compile=True`` also ``torch.compile``s the copy's network with inductor's ``freezing``: under
        ``torch.no_grad``/``inference_mode`` its weights become constants, pre-packed for the CPU's
        convolution library and fused with the ops around them. Safe here because the copy never trains;
        the first call compiles (10–20 s on a CPU for ResNet-50). Together with ``channels_last`` this is
        the fastest CPU inference the zoo has (``benchmarks/bench_resnet50.py``).
        """
        from torch.fx.experimental.optimization import fuse

        folded = copy.deepcopy(self).eval()
        try:
            folded.net = fuse(folded.net)
        except Exception as error:  # torch.fx could not trace the network (data-dependent control flow)
            raise ZooError(f"{self.hparams.model_name} cannot be folded for inference: {str(error).splitlines()[0]}") from error
        if self.hparams.channels_last:
            folded.net = folded.net.to(memory_format=torch.channels_last)
        if compile:
            folded.net = torch.compile(folded.net, options={"freezing": True})
        folded._folded = True
        return folded

    def on_fit_start(self) -> None:
        if getattr(self, "_folded", False):
            raise ZooError(
                f"{self.hparams.model_name} had its BatchNorm folded by fold_batchnorm() and is for inference only; "
                "train the original model instead"
            )

    def load_net_state(
        self, state: dict[str, Tensor], *, source_num_classes: int | None = None, source_in_chans: int | None = None
    ) -> None:
        """Load a plain network state dict, naming every missing, unexpected or mis-shaped key.

        Weights saved with ``source_num_classes`` classes load into a model with another ``num_classes``
        by keeping this model's fresh head; weights for ``source_in_chans`` channels get their first
        convolution adapted (summed to 1 channel, or repeated and rescaled). Both are logged.
        """
        from zoo.weights import adapt_input_conv

        own, state = self.net.state_dict(), dict(state)
        num_classes, in_chans = self.hparams.num_classes, self.input_size[0]
        fresh, adapted = [], []
        for key, value in own.items():
            theirs = state.get(key)
            if theirs is None or theirs.shape == value.shape:
                continue
            if source_num_classes not in (None, num_classes) and theirs.shape[0] == source_num_classes \
                    and value.shape[0] == num_classes and theirs.shape[1:] == value.shape[1:]:
                state[key] = value  # the head: keep this model's initialisation
                fresh.append(key)
            elif source_in_chans not in (None, in_chans) and theirs.ndim == 4 and theirs.shape[1] == source_in_chans \
                    and value.shape[1] == in_chans and theirs.shape[0] == value.shape[0] and theirs.shape[2:] == value.shape[2:]:
                state[key] = adapt_input_conv(theirs, in_chans)
                adapted.append(key)
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        mismatched = [
            f"{k} {tuple(state[k].shape)}≠{tuple(v.shape)}" for k, v in own.items() if k in state and state[k].shape != v.shape
        ]
        problems = [f"missing {missing}" if missing else "", f"unexpected {unexpected}" if unexpected else "",
                    f"shape mismatch {mismatched}" if mismatched else ""]
        if any(problems):
            raise WeightsError(
                f"weights do not fit {self.hparams.model_name}: " + "; ".join(p for p in problems if p)
                + " (were they saved for another architecture or num_classes?)"
            )
        self.net.load_state_dict(state)
        name = self.hparams.model_name
        if fresh:
            log.info("%s: pretrained backbone loaded; new %d-class head %s (the weights have %d classes)",
                     name, num_classes, ", ".join(fresh), source_num_classes)
        if adapted:
            log.info("%s: first convolution %s adapted from %d to %d input channels", name, ", ".join(adapted), source_in_chans, in_chans)

    # ---- training --------------------------------------------------------------------------------
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """uint8 batches travel to the device as uint8 (4× less to copy) and become [0, 1] floats there."""
        if isinstance(batch, Tensor):
            return batch.float().div_(255) if batch.dtype == torch.uint8 else batch
        images, *rest = batch
        if images.dtype == torch.uint8:
            images = images.float().div_(255)
        return (images, *rest)

    def _shared_step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        images, targets = batch
        logits = self(images)
        loss = F.cross_entropy(logits, targets, label_smoothing=self.hparams.label_smoothing)
        return loss, logits, targets

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, logits, targets = self._shared_step(batch)
        self.train_acc(logits, targets)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        self.log("train_acc", self.train_acc, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, logits, targets = self._shared_step(batch)
        self.val_acc(logits, targets)
        self.val_acc5(logits, targets)
        self.log("val_loss", loss, prog_bar=True, sync_dist=True)
        self.log("val_acc", self.val_acc, prog_bar=True)
        self.log("val_acc5", self.val_acc5)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, logits, targets = self._shared_step(batch)
        self.test_acc(logits, targets)
        self.test_acc5(logits, targets)
        self.test_confusion.update(logits, targets)
        self.log("test_loss", loss, sync_dist=True)
        self.log("test_acc", self.test_acc)
        self.log("test_acc5", self.test_acc5)
        return logits  # for callbacks: zoo.callbacks.TestReport draws the mistakes

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()

    def on_test_epoch_end(self) -> None:
        self.confusion_matrix = self.test_confusion.compute().cpu()

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(images).softmax(dim=-1)

    # ---- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        decay = [p for p in self.parameters() if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in self.parameters() if p.requires_grad and p.ndim <= 1]
        groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, nesterov=hp.nesterov and hp.momentum > 0)
        elif hp.optimizer == "adam":
            optimizer = torch.optim.Adam(groups, lr=hp.lr, betas=tuple(hp.betas))
        else:
            optimizer = torch.optim.AdamW(groups, lr=hp.lr, betas=tuple(hp.betas))
        if hp.scheduler == "constant" and not hp.warmup_epochs:
            return optimizer
        if hp.scheduler == "plateau":
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=hp.gamma, patience=hp.plateau_patience, min_lr=hp.min_lr
            )
            configs = [{"scheduler": plateau, "monitor": "val_loss", "interval": "epoch"}]
            if hp.warmup_epochs:  # a per-step ramp beside the per-epoch plateau rule: both scale the same LR
                configs.insert(0, {"scheduler": warmup_scheduler(optimizer, hp, self._steps()), "interval": "step"})
            return [optimizer], configs
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": build_scheduler(optimizer, hp, self._steps()), "interval": "step"}}

    def _steps(self) -> tuple[int, int]:
        """(total optimizer steps of the run, steps per epoch)."""
        total = int(self.trainer.estimated_stepping_batches)
        epochs = max(1, self.trainer.max_epochs or 1)
        return total, max(1, math.ceil(total / epochs))


def build_scheduler(optimizer: torch.optim.Optimizer, hp: Any, steps: tuple[int, int]) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step schedule from the task's hyper-parameters; epochs are converted to steps."""
    sched = torch.optim.lr_scheduler
    total, per_epoch = steps
    warmup = warmup_steps(hp, steps)
    if hp.scheduler == "onecycle":  # one-cycle has its own warm-up phase
        pct = warmup / total if warmup else 0.3
        return sched.OneCycleLR(optimizer, max_lr=hp.lr, total_steps=total, pct_start=pct)
    rest = max(1, total - warmup)
    if hp.scheduler == "constant":
        main = sched.ConstantLR(optimizer, factor=1.0, total_iters=0)
    elif hp.scheduler == "step":
        main = sched.StepLR(optimizer, step_size=hp.step_epochs * per_epoch, gamma=hp.gamma)
    elif hp.scheduler == "exponential":
        main = sched.ExponentialLR(optimizer, gamma=hp.gamma ** (1 / per_epoch))
    elif hp.scheduler == "cosine":
        main = sched.CosineAnnealingLR(optimizer, T_max=rest, eta_min=hp.min_lr)
    elif hp.scheduler == "sgdr":
        main = sched.CosineAnnealingWarmRestarts(optimizer, T_0=hp.restart_epochs * per_epoch, T_mult=hp.restart_mult, eta_min=hp.min_lr)
    else:
        raise ValueError(f"unknown scheduler {hp.scheduler!r}; choose one of {Scheduler.__args__}")
    if not warmup:
        return main
    return sched.SequentialLR(optimizer, [warmup_scheduler(optimizer, hp, steps), main], milestones=[warmup])


def warmup_steps(hp: Any, steps: tuple[int, int]) -> int:
    total, per_epoch = steps
    return max(0, min(int(hp.warmup_epochs * per_epoch), total - 1))


def warmup_scheduler(optimizer: torch.optim.Optimizer, hp: Any, steps: tuple[int, int]) -> torch.optim.lr_scheduler.LinearLR:
    """Linear warm-up from lr/1000 to lr over ``warmup_epochs``, then a factor of 1."""
    return torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1e-3, end_factor=1.0, total_iters=max(1, warmup_steps(hp, steps)))


def initialize(net: nn.Module, scheme: str) -> None:
    """Re-initialise every conv/linear weight with ``kaiming`` or ``xavier``; biases to zero.

    Normalisation layers keep weight 1 / bias 0. Kaiming uses the ReLU gain for every layer, Xavier
    gain 1: the course's rule of thumb (He for ReLU nets, Glorot for tanh nets), not a per-layer tuning.
    """
    for module in net.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            if scheme == "kaiming":
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            elif scheme == "xavier":
                nn.init.xavier_uniform_(module.weight)
            else:
                raise ValueError(f"unknown init {scheme!r}; choose one of {Init.__args__}")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
