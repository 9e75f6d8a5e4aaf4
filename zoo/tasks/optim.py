"""Optimisers, learning-rate schedules and initialisation: the training options every task shares.

The task's hyper-parameters (``optimizer``, ``lr``, ``scheduler``, ``warmup_epochs``...) are read here;
``zoo schedule`` draws a run's schedule with the same functions before it trains.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn

from zoo.layers.network import HEAD_STAGES, split_stages

Optimizer = Literal["sgd", "adam", "adamw"]
Scheduler = Literal["constant", "step", "exponential", "cosine", "sgdr", "plateau", "onecycle"]
Init = Literal["default", "kaiming", "xavier"]
LrScale = Literal["none", "linear", "sqrt"]


def scaled_lr(lr: float, rule: str, global_batch: int, reference_batch: int) -> float:
    """The learning rate for ``global_batch`` images per optimizer step, given one tuned at ``reference_batch``.

    ``linear`` (Goyal et al. 2017, for SGD): ``lr · global/reference``; ``sqrt`` (for Adam/AdamW, whose
    update size depends less on the batch): ``lr · √(global/reference)``; ``none``: ``lr`` as written.
    """
    ratio = global_batch / reference_batch
    return {"none": lr, "linear": lr * ratio, "sqrt": lr * ratio**0.5}[rule]


def global_batch(trainer: Any) -> tuple[int, int, int, int]:
    """(per-device batch, world size, gradient accumulation, their product) of a Trainer's run."""
    loader = trainer.train_dataloader
    if loader is None and getattr(trainer, "fit_loop", None) is not None:
        # a run bounded by max_steps alone: Lightning estimated its steps without loading the loader
        trainer.fit_loop.setup_data()
        loader = trainer.train_dataloader
    per_device = int(getattr(loader, "batch_size", None) or 1)
    world, accumulate = int(trainer.world_size), int(trainer.accumulate_grad_batches)
    return per_device, world, accumulate, per_device * world * accumulate


def no_decay_names(module: nn.Module) -> set[str]:
    """Names (as ``module.named_parameters()`` gives them) of the parameters trained without weight decay.

    Biases and normalisation weights (every tensor of one dimension or less, and every ``*.bias``), and
    what any submodule declares the way timm's networks do, with a ``no_weight_decay()`` method returning
    names relative to itself: a ViT's position embedding and class token, Swin's relative-position
    tables. A declared name that is not a parameter is an error, so a renamed parameter cannot slip
    back into the decayed group unnoticed.
    """
    params = dict(module.named_parameters())
    names = {name for name, p in params.items() if p.ndim <= 1 or name.endswith(".bias")}
    for prefix, submodule in module.named_modules():
        declare = getattr(submodule, "no_weight_decay", None)
        if not callable(declare):
            continue
        declared = {f"{prefix}.{name}" if prefix else name for name in declare()}
        unknown = sorted(declared - params.keys())
        if unknown:
            raise ValueError(f"{type(submodule).__name__}.no_weight_decay() names no parameter: {', '.join(unknown)}")
        names |= declared
    return names


def decay_split(
    module: nn.Module, weight_decay: float, params: list[nn.Parameter] | None = None
) -> list[tuple[str, float, list[nn.Parameter]]]:
    """``("", weight_decay, decayed)`` and ``("/no_decay", 0.0, the rest)``: the one decay rule.

    ``params``: the parameters to split (default: all of ``module``'s), in their order; which are exempt
    from decay is read from ``module`` as a whole (:func:`no_decay_names`).
    """
    names = no_decay_names(module)
    exempt = {id(p) for name, p in module.named_parameters() if name in names}
    params = list(module.parameters()) if params is None else params
    return [
        ("", weight_decay, [p for p in params if id(p) not in exempt]),
        ("/no_decay", 0.0, [p for p in params if id(p) in exempt]),
    ]


def param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups of the trainable parameters: with ``weight_decay``, and without (:func:`decay_split`)."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    return [
        {"params": members, "weight_decay": decay} for _, decay, members in decay_split(module, weight_decay, trainable)
    ]


def stage_lr_scales(
    stages: list[str], layer_decay: float, backbone_lr_factor: float, head: tuple[str, ...] = HEAD_STAGES
) -> dict[str, float]:
    """Learning-rate factor of each stage: ``layer_decay`` per stage below the head, × ``backbone_lr_factor``.

    Layer-wise decay (BEiT, Bao et al. 2021; the usual way to fine-tune ViTs): the head learns at ``lr``, the
    stage below at ``lr·d``, the next at ``lr·d²``... down to the stem, since low layers hold generic features.
    ``head``: the stages at the full rate (a detector's encoder, decoder and box head as well as its classes).
    """
    below = [name for name in stages if name not in head]
    scales = {name: layer_decay ** (len(below) - i) * backbone_lr_factor for i, name in enumerate(below)}
    return {name: scales.get(name, 1.0) for name in stages}


def stage_param_groups(net: nn.Module, hp: Any) -> list[dict[str, Any]]:
    """Per stage of ``net.stages()``: a decayed and a not-decayed group at that stage's learning rate.

    Every parameter is in a group, frozen ones too: a frozen parameter has no gradient, which the
    optimisers skip, and unfreezing it later needs no new group, so the schedulers (which scale each
    group's own initial rate) and a resumed run see the same groups throughout.
    """
    below, head = split_stages(net)
    stages = below + head
    scales = stage_lr_scales(
        [name for name, _ in stages], hp.layer_decay, hp.backbone_lr_factor, tuple(n for n, _ in head)
    )
    groups = []
    for name, modules in stages:
        params = [p for module in modules for p in module.parameters()]
        for suffix, decay, members in decay_split(net, hp.weight_decay, params):
            if members:  # named for the LR monitor's log: lr-AdamW/stage2, lr-AdamW/stage2/no_decay...
                groups.append(
                    {
                        "params": members,
                        "weight_decay": decay,
                        "lr": hp.lr * scales[name],
                        "name": name + suffix,
                        "lr_scale": scales[name],
                    }
                )
    return groups


def build_optimizer(groups: list[dict[str, Any]], hp: Any) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), Adam or AdamW (decoupled weight decay) over ``groups``."""
    if hp.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, nesterov=hp.nesterov and hp.momentum > 0)
    if hp.optimizer == "adam":
        return torch.optim.Adam(groups, lr=hp.lr, betas=tuple(hp.betas))
    if hp.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=hp.lr, betas=tuple(hp.betas))
    raise ValueError(f"unknown optimizer {hp.optimizer!r}; choose one of {Optimizer.__args__}")


def configure(module: nn.Module, hp: Any, steps: tuple[int, int]) -> Any:
    """What ``LightningModule.configure_optimizers`` returns for these hyper-parameters.

    ``steps``: (total optimizer steps of the run, steps per epoch).
    """
    net = getattr(module, "net", None)
    # per-stage groups for stage learning rates, and when layers are frozen (a fine-tuning strategy):
    # then the frozen ones are in the optimizer from the start, ready to be unfrozen
    staged = hasattr(net, "stages") and (
        hp.layer_decay != 1.0 or hp.backbone_lr_factor != 1.0 or not all(p.requires_grad for p in net.parameters())
    )
    groups = stage_param_groups(net, hp) if staged else param_groups(module, hp.weight_decay)
    optimizer = build_optimizer(groups, hp)
    if hp.scheduler == "constant" and not hp.warmup_epochs:
        return optimizer
    if hp.scheduler == "plateau":
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=hp.gamma, patience=hp.plateau_patience, min_lr=hp.min_lr
        )
        configs = [{"scheduler": plateau, "monitor": "val_loss", "interval": "epoch"}]
        if hp.warmup_epochs:  # a per-step ramp beside the per-epoch plateau rule: both scale the same LR
            configs.insert(0, {"scheduler": warmup_scheduler(optimizer, hp, steps), "interval": "step"})
        return [optimizer], configs
    return {
        "optimizer": optimizer,
        "lr_scheduler": {"scheduler": build_scheduler(optimizer, hp, steps), "interval": "step"},
    }


def trainer_steps(trainer: Any) -> tuple[int, int]:
    """(total optimizer steps of the run, steps per epoch) as the Trainer estimates them."""
    total = int(trainer.estimated_stepping_batches)
    epochs = max(1, trainer.max_epochs or 1)
    return total, max(1, math.ceil(total / epochs))


def build_scheduler(
    optimizer: torch.optim.Optimizer, hp: Any, steps: tuple[int, int]
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step schedule from the task's hyper-parameters; epochs are converted to steps."""
    sched = torch.optim.lr_scheduler
    total, per_epoch = steps
    warmup = warmup_steps(hp, steps)
    if hp.scheduler == "onecycle":  # one-cycle has its own warm-up phase
        pct = warmup / total if warmup else 0.3
        # each group's own peak: one max_lr for all would undo layer-wise rates (the known trap)
        peaks = [group.get("lr", hp.lr) for group in optimizer.param_groups]
        return sched.OneCycleLR(optimizer, max_lr=peaks, total_steps=total, pct_start=pct)
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
        main = sched.CosineAnnealingWarmRestarts(
            optimizer, T_0=hp.restart_epochs * per_epoch, T_mult=hp.restart_mult, eta_min=hp.min_lr
        )
    else:
        raise ValueError(f"unknown scheduler {hp.scheduler!r}; choose one of {Scheduler.__args__}")
    if not warmup:
        return main
    return sched.SequentialLR(optimizer, [warmup_scheduler(optimizer, hp, steps), main], milestones=[warmup])


def warmup_steps(hp: Any, steps: tuple[int, int]) -> int:
    total, per_epoch = steps
    return max(0, min(int(hp.warmup_epochs * per_epoch), total - 1))


def warmup_scheduler(
    optimizer: torch.optim.Optimizer, hp: Any, steps: tuple[int, int]
) -> torch.optim.lr_scheduler.LinearLR:
    """Linear warm-up from lr/1000 to lr over ``warmup_epochs``, then a factor of 1."""
    return torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=1e-3, end_factor=1.0, total_iters=max(1, warmup_steps(hp, steps))
    )


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
