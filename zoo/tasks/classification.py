"""Image classification as a LightningModule wrapping any registered network.

Input: a float batch ``(N, C, H, W)`` with pixels in [0, 1] (uint8 batches are scaled for you).
Mean/std normalisation is a buffer inside the module, set from the weights' metadata, so callers never
guess it. Output: logits ``(N, num_classes)``. ``model.net`` is the plain ``nn.Module``. Loading,
saving, the Hub, input checks and the optimiser options come from :class:`~zoo.tasks.base.ZooTask`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from zoo.errors import InvalidValueError, ZooError
from zoo.layers.pixels import to_unit
from zoo.task_descriptions import Score, TaskDescription, register_task
from zoo.tasks.base import ZooTask


class ImageClassifier(ZooTask):
    """Train, evaluate and run any registered classification network.

    Args:
        model_name: a registered architecture (``zoo list``).
        num_classes: size of the head (0: the model returns embeddings).
        label_smoothing: cross-entropy label smoothing.
        mixup, cutmix: the α of MixUp (Zhang et al. 2017: two images blended, labels in the same
            proportion) and CutMix (Yun et al. 2019: a patch of one pasted into the other) on training
            batches (torchvision's ``v2.MixUp`` / ``v2.CutMix``; one of the two per batch when both are
            set); 0 turns it off. They train on soft labels, so ``train_acc`` scores the dominant class.
        **kwargs: the network, input and optimisation options of :class:`~zoo.tasks.base.ZooTask`
            (``model_name``, ``num_classes``, ``lr``, ``optimizer``, ``scheduler``...).
    """

    task = "classification"

    def __init__(
        self,
        model_name: str = "lenet5",
        num_classes: int = 10,
        *,
        label_smoothing: float = 0.0,
        mixup: float = 0.0,
        cutmix: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if (
            isinstance(label_smoothing, bool)
            or not isinstance(label_smoothing, (int, float))
            or not 0 <= label_smoothing < 1
        ):
            raise InvalidValueError(f"label_smoothing must be a number in [0, 1), got {label_smoothing!r} (e.g. 0.1)")
        for option, alpha in (("mixup", mixup), ("cutmix", cutmix)):
            if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha < 0:
                raise InvalidValueError(
                    f"{option} is the α of its Beta distribution, ≥ 0 (0: off), got {alpha!r} (e.g. 0.2)"
                )
        super().__init__(model_name=model_name, num_classes=num_classes, **kwargs)
        self._make_metrics(self.hparams.num_classes)
        self._mixing = None

    def _make_metrics(self, num_classes: int) -> None:
        """The accuracy and confusion-matrix metrics for a head of ``num_classes`` (none for embeddings)."""
        if num_classes < 1:  # num_classes=0: the model returns embeddings; nothing to score
            self.train_acc = self.val_acc = self.val_acc5 = self.test_acc = self.test_acc5 = self.test_confusion = None
            return
        top_k = min(5, num_classes)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)  # our own batches
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc5 = MulticlassAccuracy(num_classes, top_k=top_k, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc5 = MulticlassAccuracy(num_classes, top_k=top_k, average="micro")
        self.test_confusion = MulticlassConfusionMatrix(num_classes)

    def reset_classifier(self, num_classes: int, class_names: list[str] | None = None) -> None:
        """A fresh head for ``num_classes`` classes: the network, ``hparams``, ``class_names`` and the
        metrics change together, so that ``save_pretrained`` writes the new config (0: embeddings)."""
        super().reset_classifier(num_classes, class_names)
        self._make_metrics(num_classes)
        self._mixing = None  # MixUp/CutMix make soft labels of the new size

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.hparams.num_classes < 1:
            raise ZooError(
                "this model has no classifier (num_classes=0 returns embeddings); "
                "give it one with model.reset_classifier(num_classes) before training"
            )

    def card_test_metrics(self, test: dict[str, Any], val: dict[str, Any]) -> dict[str, Any]:
        """What a weight card reports from ``Trainer.test``/``validate`` results."""
        return {
            "test_acc": test["test_acc"],
            "test_acc5": test["test_acc5"],
            "test_loss": test["test_loss"],
            "test_samples": int(self.confusion_matrix.sum()),
            "val_acc": val["val_acc"],
            "val_loss": val["val_loss"],
        }

    def card_test_details(self) -> dict[str, Any]:
        return {"confusion_matrix": self.confusion_matrix.tolist()}

    def measured_test_samples(self) -> int:
        """How many images the last test run scored (the confusion matrix's total, over every process)."""
        return int(self.confusion_matrix.sum())

    @torch.inference_mode()
    def predict_proba(self, x: Tensor) -> Tensor:
        """Class probabilities ``(N, num_classes)`` for a batch of images in [0, 1]."""
        return self(self.as_batch(x).to(self.device)).softmax(dim=-1)

    def _shared_step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        images, targets = batch
        logits = self(images)
        loss = F.cross_entropy(logits, targets, label_smoothing=self.hparams.label_smoothing)
        return loss + self.auxiliary_loss(targets), logits, targets

    def auxiliary_loss(self, targets: Tensor) -> Tensor | float:
        """The loss of a network's auxiliary classifiers (GoogLeNet's, in training only), weighted as its family says."""
        outputs = getattr(self.net, "aux_outputs", None) if self.training else None
        if not outputs:
            return 0.0
        smoothing = self.hparams.label_smoothing
        return self.net.aux_weight * sum(F.cross_entropy(out, targets, label_smoothing=smoothing) for out in outputs)

    def mix(self, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """MixUp / CutMix of a training batch: float images in [0, 1] and soft targets ``(N, classes)``."""
        if self._mixing is None:
            from torchvision.transforms import v2

            hp, classes = self.hparams, self.hparams.num_classes
            steps = [v2.MixUp(alpha=hp.mixup, num_classes=classes)] if hp.mixup else []
            steps += [v2.CutMix(alpha=hp.cutmix, num_classes=classes)] if hp.cutmix else []
            self._mixing = steps[0] if len(steps) == 1 else v2.RandomChoice(steps)
        return self._mixing(to_unit(images), targets)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        if self.hparams.mixup or self.hparams.cutmix:
            images, soft = self.mix(*batch)
            logits = self(images)
            loss = F.cross_entropy(logits, soft, label_smoothing=self.hparams.label_smoothing)
            loss = loss + self.auxiliary_loss(soft)
            targets = soft.argmax(dim=1)
        else:
            loss, logits, targets = self._shared_step(batch)
        # the hot path: no log call on most steps (zoo.tasks.steplog); the accuracy only accumulates
        # here and is computed once an epoch, on all processes' counts
        self.train_acc.update(logits.detach(), targets)
        self.log_training(loss, len(targets))
        return loss

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        if self.train_acc is not None and self.train_acc.update_count:
            self.log("train_acc", self.train_acc.compute(), prog_bar=True)
            self.train_acc.reset()

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


# ---- the task's description: what the rest of the zoo reads --------------------------------------
def _train_data(data: Any, **options: Any) -> Any:
    """A folder of class sub-folders, a ``path,label`` CSV, or ``(images, labels)`` tensors (prepared at the
    size of the model being trained, which the datamodule reads from it when training starts)."""
    from zoo.data.folders import ImageFolderDataModule
    from zoo.data.shards import is_shard_source

    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        return ImageFolderDataModule.from_tensors(data[0], data[1], **options)
    if is_shard_source(data):  # prepared shards (zoo prepare): a folder or s3://
        from zoo.data.streaming import StreamingImages

        return StreamingImages(str(data), **options)
    if isinstance(data, (str, Path)):
        return ImageFolderDataModule(path=data, **options)
    raise InvalidValueError(
        f"classification data must be a folder, a CSV file, (images, labels) tensors or a LightningDataModule, "
        f"got {type(data).__name__}"
    )


def _eval_data(data: Any, model: Any, batch_size: int = 500) -> Any:
    from zoo.data.folders import ImageFolderDataModule
    from zoo.data.shards import is_shard_source

    if is_shard_source(data):
        from zoo.data.streaming import StreamingImages

        return StreamingImages.for_evaluation(str(data), model.class_names, batch_size=batch_size)

    return ImageFolderDataModule.for_evaluation(data, model.class_names, batch_size=batch_size)


def _default_data(model: Any, root: str | None = None, batch_size: int = 500) -> Any:
    """The Fashion-MNIST test set, for models of its classes (or of the subset ``data_classes`` names)."""
    from zoo.data import FashionMNISTDataModule
    from zoo.data.fashion_mnist import CLASS_NAMES

    subset = (getattr(model, "card_metrics", None) or {}).get("data_classes")
    expected = [CLASS_NAMES[i] for i in subset] if subset else list(CLASS_NAMES)
    if list(model.class_names) != expected:
        shown = ", ".join(model.class_names[:4]) + ("..." if len(model.class_names) > 4 else "")
        raise ZooError(
            f"{model.weights_name or model.hparams.model_name} classifies {len(model.class_names)} classes ({shown}), "
            "not Fashion-MNIST's; measure it on its own images with --data FOLDER_OR_CSV (data= in Python)"
        )
    return FashionMNISTDataModule(root=root, batch_size=batch_size, download=False, classes=subset)


DESCRIPTION = register_task(
    TaskDescription(
        name="classification",
        pipeline="image-classification",
        module=ImageClassifier,
        title="image classification",
        monitor="val_acc",
        mode="max",
        score=Score("test_acc", "top-1"),
        model_index=("accuracy", "top-1 accuracy"),
        card_rows=(
            Score("test_acc", "test top-1 accuracy ({test_samples} images)"),
            Score("test_acc5", "test top-5 accuracy"),
            Score("val_acc", "best validation top-1 accuracy"),
        ),
        test_metrics=(Score("test_acc", "top-1"), Score("test_acc5", "top-5")),
        data=("class folders", "CSV of path,label", "(images, labels) tensors"),
        commands=("classify", "predict", "evaluate", "fit", "finetune", "export", "attention", "lr-find"),
        usage="probs = model.predict_proba(images)  # images: float (N, {shape}) in [0, 1]",
        data_class="zoo.data.folders.ImageFolderDataModule",
        data_arg="path",
        datamodule=_train_data,
        eval_datamodule=_eval_data,
        default_datamodule=_default_data,
        finetune_average=True,
    )
)
