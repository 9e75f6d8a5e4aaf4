"""The LightningModule base every zoo task subclasses: the network, its input, its weights, its options.

A task (classification, detection...) adds only its loss, metrics, steps and outputs. From this base it
gets, for free:

* ``.net``, the registered plain ``nn.Module``, built once from the registry; ``channels_last``, ``init``;
* the input: :class:`~zoo.layers.pixels.Normalize` inside the module (callers pass [0, 1] pixels or uint8),
  input checks with one-line errors, uint8 batches scaled after the transfer to the device;
* weights in (:mod:`zoo.tasks.from_weights`, the one path: ``from_record``, ``from_pretrained``,
  ``from_registry``'s keyword routing) and out (:mod:`zoo.tasks.publishing`: ``save_pretrained``,
  ``push_to_hub``, ``config.json``); :meth:`fold_batchnorm` for inference;
* its task's description (``model.description``: monitored metric, score, data, commands);
* the optimiser, schedule and init options of :mod:`zoo.tasks.optim`.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any, ClassVar

import lightning as L
import torch
from torch import Tensor, nn

from zoo import pretrained
from zoo.cards import start_summary
from zoo.errors import InvalidValueError, ZooError
from zoo.layers.network import split_stages
from zoo.layers.pixels import Normalize, to_unit
from zoo.registry import build_net, get_entry
from zoo.task_descriptions import TaskDescription, get_task
from zoo.tasks import optim
from zoo.tasks.from_weights import FromWeights, check_task_switch, fresh_head_needed
from zoo.tasks.inputs import InputChecks, check_choices, check_numbers
from zoo.tasks.optim import Init, LrScale, Optimizer, Scheduler
from zoo.tasks.publishing import Publishing
from zoo.tasks.steplog import TrainingLog

log = logging.getLogger("zoo")


class ZooTask(FromWeights, InputChecks, Publishing, TrainingLog, L.LightningModule):
    """Base of the zoo's LightningModules (see the module doc). A subclass sets ``task``, the name of its
    :class:`~zoo.task_descriptions.TaskDescription`, which says the rest (``model.description``).

    Args:
        model_name: a registered architecture (``zoo list``).
        num_classes: size of the head.
        in_chans: input channels (default: the architecture's).
        pretrained: weights to start from (anything :func:`zoo.load` takes, of this architecture): loaded
            into the network, with a fresh head when ``num_classes`` differs and the first convolution
            adapted to ``in_chans``; their normalisation and preprocessing come along (recipes and
            ``zoo finetune`` start from trained weights this way).
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
        channels_last: keep activations in NHWC memory format (faster convolutions on many CPUs/GPUs).
        compile: ``torch.compile`` the network when ``fit`` starts (``nn.Module.compile``: same weights and
            checkpoint keys); the first step, which compiles, is timed and logged.
        lr_scale, lr_reference_batch: ``linear`` or ``sqrt`` rescales ``lr`` to the run's global batch (per-device
            batch × processes × accumulation) from the ``lr_reference_batch`` it was tuned at; ``none`` keeps it.
        layer_decay: layer-wise learning-rate decay for fine-tuning: the head learns at ``lr``, each stage of
            ``net.stages()`` below it at ``layer_decay`` times the one above (1: off; 0.7 is usual for ViTs).
            "The head" is the stages the family names in ``head_stages``: the classifier, or for a detector
            its transformer and box/class heads too, which start untrained even when the CNN is pretrained.
        backbone_lr_factor: every stage but the head learns at this fraction of the rate (discriminative
            fine-tuning; 1: off). Both act on the optimizer's parameter groups, so every scheduler keeps them.
        init: weights of every conv/linear layer: ``default`` (the layers' own, PyTorch's scaled uniform),
            ``kaiming`` (He et al. 2015, normal with variance 2/fan_in, made for ReLU) or ``xavier``
            (Glorot & Bengio 2010, uniform with variance 2/(fan_in+fan_out), made for tanh); biases 0.
    """

    task: ClassVar[str] = ""  # the name of this class's task description ("classification")

    def __init__(
        self,
        model_name: str = "lenet5",
        num_classes: int = 10,
        in_chans: int | None = None,
        pretrained: str | None = None,
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
        channels_last: bool = False,
        compile: bool = False,
        init: Init = "default",
        lr_scale: LrScale = "none",
        lr_reference_batch: int = 256,
        layer_decay: float = 1.0,
        backbone_lr_factor: float = 1.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()  # the subclass's own arguments too (Lightning collects the whole __init__ chain)
        check_choices(
            optimizer=(optimizer, Optimizer),
            scheduler=(scheduler, Scheduler),
            init=(init, Init),
            lr_scale=(lr_scale, LrScale),
        )
        check_numbers(
            num_classes=(num_classes, int, 0, None, "0 gives an embedding model"),
            in_chans=(in_chans, int, 1, None, "1 for grey images, 3 for RGB"),
            lr=(lr, float, 0, None, "e.g. 0.1 for SGD, 1e-3 for Adam"),
            weight_decay=(weight_decay, float, 0, None, "e.g. 5e-4"),
            momentum=(momentum, float, 0, 1, "e.g. 0.9"),
            warmup_epochs=(warmup_epochs, float, 0, None, "e.g. 1"),
            min_lr=(min_lr, float, 0, None, "e.g. 0"),
            gamma=(gamma, float, 0, None, "e.g. 0.1"),
            step_epochs=(step_epochs, int, 1, None, "e.g. 10"),
            restart_epochs=(restart_epochs, int, 1, None, "e.g. 10"),
            lr_reference_batch=(lr_reference_batch, int, 1, None, "the global batch size lr was tuned for, e.g. 256"),
            layer_decay=(layer_decay, float, 0, None, "e.g. 0.75; 1 is off"),
            backbone_lr_factor=(backbone_lr_factor, float, 0, None, "e.g. 0.1; 1 is off"),
        )
        for option, value in (("layer_decay", layer_decay), ("backbone_lr_factor", backbone_lr_factor)):
            if not 0 < value <= 1:
                raise InvalidValueError(f"{option} must be in (0, 1], got {value!r} (1 is off)")
        entry = get_entry(model_name)
        record = None
        if pretrained is not None:
            from zoo.pretrained import resolve  # the argument `pretrained` hides the module here

            record = resolve(pretrained)
            check_task_switch(record, self.task)
            if record.arch != entry.name:
                raise ZooError(
                    f"pretrained={pretrained!r} holds {record.arch} weights, not {entry.name}; set model_name={record.arch!r}"
                )
            mean = record.task_args.get("mean") if mean is None else mean
            std = record.task_args.get("std") if std is None else std
            # built as the weights were (a ViT's img_size, a hybrid's stem...), unless told otherwise
            model_kwargs = record.task_args.get("model_kwargs") if model_kwargs is None else model_kwargs
            in_chans = record.task_args.get("in_chans") if in_chans is None else in_chans
        in_chans = entry.input_size[0] if in_chans is None else in_chans
        self.net = build_net(model_name, num_classes=num_classes, in_chans=in_chans, **(model_kwargs or {}))
        if init != "default":
            optim.initialize(self.net, init)
        mean = list(entry.mean if mean is None else mean)
        std = list(entry.std if std is None else std)
        if len(mean) != in_chans:  # e.g. grayscale statistics for an RGB copy: use their average per channel
            mean, std = [sum(mean) / len(mean)] * in_chans, [sum(std) / len(std)] * in_chans
        self.normalize = Normalize(mean, std)  # the input wrapper: uint8 or [0, 1] floats in, normalised out
        self.input_size = tuple(getattr(self.net, "input_size", (in_chans, *entry.input_size[1:])))
        self.fixed_input_size = getattr(self.net, "fixed_input_size", entry.fixed_input_size)
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        self.weights_name: str | None = None
        self.weights_source: str | None = None
        self.card_metrics: dict[str, Any] = {}
        self.started_from: dict[str, Any] | None = None  # the card of the weights training started from
        # how the weights' evaluation images were resized (transforms()); a timm network: its pretrained_cfg's
        self.preprocessing: dict[str, Any] = dict(getattr(self.net, "eval_preprocessing", None) or {})
        self.example_input_array = torch.zeros(2, *self.input_size)
        if record is not None:
            self.load_record(record, fresh_head=fresh_head_needed(record, self.task, num_classes, class_names))
            self.weights_source, self.preprocessing = pretrained, dict(record.preprocessing)
            self.started_from = start_summary(pretrained, record.metrics)  # its score and budget, for the card
            # loaded once: a checkpoint of this run holds the weights, so reloading it (resume, load_from_checkpoint)
            # must not need the source again; where they came from stays in weights_source and the card
            self.hparams["pretrained"] = None
            self.hparams["model_kwargs"] = model_kwargs
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)

    def measured_test_samples(self) -> int:
        """How many samples the last ``Trainer.test`` scored (each task counts its own)."""
        raise NotImplementedError(f"{type(self).__name__} does not count its test samples")

    @property
    def description(self) -> TaskDescription:
        """What this model's task is (monitored metric, score, data, commands): :mod:`zoo.task_descriptions`."""
        return get_task(self.task)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[pretrained.CHECKPOINT_TASK_KEY] = self.task  # zoo.load of the checkpoint rebuilds this task

    def forward(self, x: Tensor) -> Any:
        x = self.as_batch(x)  # numpy arrays and PIL images become tensors; empty batches are refused
        self.check_input(x)
        if not self.training and not torch.compiler.is_compiling():
            self.check_values(x)
        return self.net(self.preprocess(x))

    @property
    def mean(self) -> Tensor:
        """The per-channel input mean ``(1, C, 1, 1)`` (the :class:`~zoo.layers.pixels.Normalize` buffer)."""
        return self.normalize.mean

    @property
    def std(self) -> Tensor:
        return self.normalize.std

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """uint8 batches travel to the device as uint8 (4× less to copy) and become [0, 1] floats there."""
        if isinstance(batch, Tensor):
            return to_unit(batch) if batch.dtype == torch.uint8 else batch
        images, *rest = batch
        if images.dtype == torch.uint8:
            images = to_unit(images)
        return (images, *rest)

    def fold_batchnorm(self, *, compile: bool = False) -> ZooTask:
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
            raise ZooError(
                f"{self.hparams.model_name} cannot be folded for inference: {str(error).splitlines()[0]}"
            ) from error
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
        if not self.training:  # loaded for inference (zoo.load gives eval mode), now trained: dropout, BN batch stats
            self.train()
        if self.hparams.get("compile") and not getattr(self.net, "_compiled_call_impl", None):
            self.net.compile()  # in place: the state dict keeps its keys

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.hparams.get("compile") and not hasattr(self, "compile_seconds"):
            self._first_step_started = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if hasattr(self, "_first_step_started"):
            self.compile_seconds = time.perf_counter() - self._first_step_started
            del self._first_step_started
            log.info("torch.compile: the first training step (compiling the network) took %.1f s", self.compile_seconds)

    # ---- the backbone interface ------------------------------------------------------------------
    @property
    def backbone(self) -> nn.ModuleList:
        """Every layer of ``.net`` below its head stages, by stage (for Lightning's ``BackboneFinetuning``)."""
        return nn.ModuleList(m for _, modules in split_stages(self.net)[0] for m in modules)

    @property
    def head(self) -> nn.Module:
        """The network's classifier (``nn.Identity`` for an embedding model)."""
        return self.net.get_classifier()

    def reset_classifier(self, num_classes: int, class_names: list[str] | None = None) -> None:
        """A fresh head for ``num_classes`` outputs; ``hparams`` and ``class_names`` follow (0: embeddings)."""
        if not isinstance(num_classes, int) or num_classes < 0:
            raise InvalidValueError(f"num_classes must be a whole number ≥ 0 (0: embeddings), got {num_classes!r}")
        if class_names is not None and len(class_names) != num_classes:
            raise InvalidValueError(
                f"{len(class_names)} class names for {num_classes} classes; give one name per class"
            )
        self.net.reset_classifier(num_classes)
        self.net.get_classifier().to(self.mean.device)
        self.hparams.num_classes = num_classes
        self.hparams.class_names = list(class_names) if class_names else None
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        if self.card_metrics:  # numbers measured for the old head no longer hold
            self.card_metrics = {k: v for k, v in self.card_metrics.items() if k in pretrained.DESCRIPTIVE_METRICS}

    def transforms(self):
        """The evaluation preprocessing of these weights: PIL image (or uint8 tensor) → float [0, 1] tensor.

        A torchvision v2 pipeline: channels converted to the model's, resize and centre crop as the weights
        were evaluated (``resize 232, crop 224, bilinear`` for ``resnet50.tv2_in1k``), or a plain resize to
        the input size for weights trained on small images. Normalisation stays inside the model.
        """
        from zoo.layers.preprocessing import eval_transforms

        return eval_transforms(self.input_size, **self.preprocessing)

    # ---- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        """The optimiser and schedule; with ``lr_scale``, ``lr`` is rescaled to the run's global batch
        (per-device batch × processes × accumulation) against ``lr_reference_batch``, and the rule printed."""
        steps = optim.trainer_steps(self.trainer)  # loads the train dataloader: its batch size is known after
        hp = copy.copy(self.hparams)
        per_device, world, accumulate, batch = optim.global_batch(self.trainer)
        hp.lr = optim.scaled_lr(self.hparams.lr, hp.lr_scale, batch, hp.lr_reference_batch)
        if self.trainer.is_global_zero:
            rule = (
                "as written"
                if hp.lr_scale == "none"
                else f"{hp.lr_scale} scaling from lr {self.hparams.lr:g} at batch {hp.lr_reference_batch}"
            )
            log.info(
                "global batch %d = %d per device × %d process(es) × %d accumulation; lr %.4g (%s)",
                batch,
                per_device,
                world,
                accumulate,
                hp.lr,
                rule,
            )
        return optim.configure(self, hp, steps)
