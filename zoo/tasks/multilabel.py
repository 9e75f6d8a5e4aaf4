"""Multi-label image classification: every class is its own yes/no question (tags on photos).

The course's output chapter: softmax for exclusive classes, a sigmoid per class when an image may hold
several (or none). The network's ``K`` outputs are logits; ``sigmoid`` makes each a probability, trained
with binary cross-entropy summed over classes (``F.binary_cross_entropy_with_logits``). Scores, from
torchmetrics: average precision per class (the area under its precision-recall curve, no threshold
needed) and its macro mean, the headline; F1 per class and macro at a decision threshold chosen per class
on the validation set (the one with the best F1 there), kept in the ``thresholds`` buffer, written to
``config.json`` (``task_options``) and used by :meth:`MultiLabelClassifier.predict_labels` and ``zoo classify``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MultilabelAveragePrecision, MultilabelF1Score

from zoo.errors import InvalidValueError, ZooError
from zoo.task_descriptions import Score, TaskDescription, register_task
from zoo.tasks.base import ZooTask

GRID = torch.linspace(0.02, 0.98, 49)  # the thresholds tried per class on the validation set


def best_thresholds(probs: Tensor, targets: Tensor) -> Tensor:
    """Per class, the threshold of :data:`GRID` with the best F1 on these outputs (0.5 for a class without
    positives); ties go to the middle of the best run, away from the edges."""
    grid = GRID.to(probs.device)
    chosen = torch.full((probs.shape[1],), 0.5, device=probs.device)
    predicted = probs[None] >= grid[:, None, None]  # (thresholds, N, K)
    positive = targets.bool()[None]
    tp = (predicted & positive).sum(1).float()
    f1 = 2 * tp / (predicted.sum(1) + positive.sum(1)).clamp_min(1)  # (thresholds, K)
    for k in range(probs.shape[1]):
        if positive[0, :, k].any():
            best = (f1[:, k] >= f1[:, k].max() - 1e-9).nonzero().flatten()
            chosen[k] = grid[best[len(best) // 2]]
    return chosen


class MultiLabelClassifier(ZooTask):
    """Sigmoid outputs, BCE loss, AP and F1 per class; the network is any registered classifier.

    Args:
        model_name: a registered architecture (``zoo list``).
        num_classes: how many labels (one output each).
        thresholds: the decision threshold of each class (default 0.5 each, then chosen on validation).
        **kwargs: the network, input and optimisation options of :class:`~zoo.tasks.base.ZooTask`.
    """

    task = "multilabel"

    def __init__(
        self,
        model_name: str = "resnet20",
        num_classes: int = 10,
        *,
        thresholds: list[float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model_name=model_name, num_classes=num_classes, **kwargs)
        if num_classes < 1:
            raise InvalidValueError("a multi-label model needs num_classes ≥ 1 (one output per label)")
        self.register_buffer("thresholds", self._check_thresholds(thresholds, num_classes))
        self._make_metrics(num_classes)

    @staticmethod
    def _check_thresholds(thresholds: list[float] | None, num_classes: int) -> Tensor:
        if thresholds is None:
            return torch.full((num_classes,), 0.5)
        values = torch.as_tensor(thresholds, dtype=torch.float).flatten()
        if len(values) != num_classes or not bool(((values > 0) & (values < 1)).all()):
            raise InvalidValueError(f"thresholds: one number in (0, 1) per class ({num_classes}), got {thresholds!r}")
        return values

    def _make_metrics(self, k: int) -> None:
        self.val_ap = MultilabelAveragePrecision(k, average="macro")
        self.test_ap = MultilabelAveragePrecision(k, average="macro")
        self.test_ap_class = MultilabelAveragePrecision(k, average=None)
        self.test_f1 = MultilabelF1Score(k, average="macro")
        self.test_f1_class = MultilabelF1Score(k, average=None)
        self._val_outputs: list[tuple[Tensor, Tensor]] = []
        self.test_count = 0

    def reset_classifier(self, num_classes: int, class_names: list[str] | None = None) -> None:
        super().reset_classifier(num_classes, class_names)
        self.thresholds = torch.full((num_classes,), 0.5, device=self.mean.device)
        self._make_metrics(num_classes)

    def load_record(self, record: Any, *, fresh_head: bool) -> None:
        super().load_record(record, fresh_head=fresh_head)
        if fresh_head and hasattr(self, "thresholds"):  # thresholds belong to the head they were chosen for
            self.thresholds.fill_(0.5)  # (a `pretrained=` start loads before the buffer exists: 0.5 by default)

    def model_config(self, name: str) -> dict[str, Any]:
        config = super().model_config(name)
        config["task_options"] = {"thresholds": [round(float(t), 6) for t in self.thresholds]}
        return config

    # ---- steps -------------------------------------------------------------------------------------
    def _step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        images, targets = batch
        logits = self(images)
        return F.binary_cross_entropy_with_logits(logits, targets.float()), logits, targets.long()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, _, targets = self._step(batch)
        self.log_training(loss, len(targets))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_outputs = []

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, logits, targets = self._step(batch)
        self.val_ap.update(logits.sigmoid(), targets)
        self._val_outputs.append((logits.sigmoid().detach().cpu(), targets.cpu()))
        self.log("val_loss", loss, prog_bar=True, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self.log("val_ap", self.val_ap.compute(), prog_bar=True)
        self.val_ap.reset()
        if self._val_outputs and not self.trainer.sanity_checking:
            probs, targets = (torch.cat(parts) for parts in zip(*self._val_outputs))
            self.thresholds.copy_(best_thresholds(probs, targets))
            predicted = (probs >= self.thresholds.cpu()).float()
            f1 = MultilabelF1Score(probs.shape[1], average="macro")(predicted, targets)
            self.log("val_f1", f1)
        self._val_outputs = []

    def on_test_epoch_start(self) -> None:
        self.test_count = 0

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:  # nothing for TestReport's softmax
        loss, logits, targets = self._step(batch)
        probs = logits.sigmoid()
        decided = (probs >= self.thresholds).float()  # per-class thresholds: torchmetrics takes the 0/1 decisions
        self.test_ap.update(probs, targets)
        self.test_ap_class.update(probs, targets)
        self.test_f1.update(decided, targets)
        self.test_f1_class.update(decided, targets)
        self.test_count += len(targets)
        self.log("test_loss", loss, sync_dist=True)

    def on_test_epoch_end(self) -> None:
        self.log("test_ap", self.test_ap.compute())
        self.log("test_f1", self.test_f1.compute())
        self.ap_per_class = [round(float(v), 4) for v in self.test_ap_class.compute()]
        self.f1_per_class = [round(float(v), 4) for v in self.test_f1_class.compute()]
        for metric in (self.test_ap, self.test_ap_class, self.test_f1, self.test_f1_class):
            metric.reset()

    def measured_test_samples(self) -> int:
        return self.test_count

    def card_test_metrics(self, test: dict[str, Any], val: dict[str, Any]) -> dict[str, Any]:
        return {
            "test_ap": test["test_ap"],
            "test_f1": test["test_f1"],
            "test_loss": test["test_loss"],
            "test_samples": self.test_count,
            "val_ap": val["val_ap"],
            "val_loss": val["val_loss"],
        }

    def card_test_details(self) -> dict[str, Any]:
        return {
            "ap_per_class": dict(zip(self.class_names, self.ap_per_class)),
            "f1_per_class": dict(zip(self.class_names, self.f1_per_class)),
            "thresholds": dict(zip(self.class_names, (round(float(t), 4) for t in self.thresholds))),
        }

    # ---- inference ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict_proba(self, x: Tensor) -> Tensor:
        """Each class's probability ``(N, K)``, independently (they do not sum to 1)."""
        return self(self.as_batch(x).to(self.device)).sigmoid()

    def predict_labels(self, x: Tensor) -> list[list[tuple[str, float]]]:
        """Per image, every ``(class name, probability)`` at or above its class's threshold, most likely first."""
        probs = self.predict_proba(x).cpu()
        keep = probs >= self.thresholds.cpu()
        return [
            sorted(
                ((self.class_names[k], float(row[k])) for k in mask.nonzero().flatten().tolist()), key=lambda t: -t[1]
            )
            for row, mask in zip(probs, keep)
        ]

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(images).sigmoid()


# ---- the task's description ---------------------------------------------------------------------------
def _train_data(data: Any, **options: Any) -> Any:
    """A ``path,labels`` CSV or ``(images, targets)`` tensors (targets ``(N, K)`` of 0 and 1)."""
    from zoo.data.multilabel import MultiLabelDataModule

    options = {
        k: v for k, v in options.items() if k in ("classes", "val_fraction", "split_seed", "batch_size", "augment")
    }
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        return MultiLabelDataModule.from_tensors(data[0], data[1], **options)
    if isinstance(data, (str, Path)):
        return MultiLabelDataModule(path=data, **options)
    raise InvalidValueError(
        f"multi-label data is a path,labels CSV (classes separated by ';'), (images, targets) tensors or a "
        f"LightningDataModule, got {type(data).__name__}"
    )


def _eval_data(data: Any, model: Any, batch_size: int = 500) -> Any:
    from zoo.data.multilabel import MultiLabelDataModule

    if isinstance(data, (tuple, list)) and len(data) == 2:
        module = MultiLabelDataModule.from_tensors(data[0], data[1], classes=model.class_names, val_fraction=0.0)
        module._tensors = {"test": module._tensors["train"]}
        module.hparams.batch_size = batch_size
        return module
    return MultiLabelDataModule.for_evaluation(data, model.class_names, batch_size=batch_size)


def _default_data(model: Any, root: str | None = None, batch_size: int = 500) -> Any:
    """The 1,000 Fashion-MNIST test scenes' garment sets, for models of Fashion-MNIST's classes."""
    from zoo.data.fashion_mnist import CLASS_NAMES
    from zoo.data.multilabel import FashionMNISTSceneTags

    if list(model.class_names) != list(CLASS_NAMES):
        raise ZooError(
            f"{model.weights_name or model.hparams.model_name} tags {len(model.class_names)} classes, not the "
            "Fashion-MNIST scenes'; measure it on its own images with --data TAGS_CSV (data= in Python)"
        )
    return FashionMNISTSceneTags(root=root, batch_size=batch_size, input_size=tuple(model.input_size))


def _classify(model: Any, images: Tensor, top_k: int = 1) -> list[list[tuple[str, float]]]:
    """``zoo classify``: every label above its threshold (none is an answer too), not the top-k."""
    return model.predict_labels(images)


DESCRIPTION = register_task(
    TaskDescription(
        name="multilabel",
        pipeline="zoo-multi-label-image-classification",
        module=MultiLabelClassifier,
        title="multi-label classification",
        monitor="val_ap",
        mode="max",
        score=Score("test_ap", "macro AP", percent=False),
        model_index=("average_precision", "macro average precision"),
        model_index_scale=1.0,
        card_rows=(
            Score("test_ap", "test macro average precision ({test_samples} images)", percent=False),
            Score("test_f1", "test macro F1 (per-class thresholds chosen on validation)", percent=False),
            Score("val_ap", "best validation macro average precision", percent=False),
        ),
        test_metrics=(Score("test_ap", "macro AP", percent=False), Score("test_f1", "macro F1", percent=False)),
        data=("CSV of path,labels (labels separated by ';', empty: none)", "(images, targets) tensors"),
        commands=("classify", "predict", "evaluate", "fit", "finetune", "export", "lr-find"),
        usage="labels = model.predict_labels(images)  # images: float (N, {shape}) in [0, 1]",
        data_class="zoo.data.multilabel.MultiLabelDataModule",
        data_arg="path",
        datamodule=_train_data,
        eval_datamodule=_eval_data,
        default_datamodule=_default_data,
        aliases=("multi-label", "multilabel-classification"),
        classify=_classify,
    )
)
