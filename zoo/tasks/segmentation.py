"""Semantic segmentation as a LightningModule: a per-pixel classifier over any zoo network's feature pyramid.

Input: float images ``(N, C, H, W)`` in [0, 1] (uint8 scaled for you), normalised inside.
``model(images)`` returns logits ``(N, num_classes + 1, H, W)`` at the input size: channel 0 is the
background, channels 1..K the classes (``class_names``). ``model.predict(images)`` returns one
``(h, w)`` int64 label map per image at that image's own size. Training batches are
``(images, masks)`` with masks ``(N, H, W)`` int64 of 0..K (``ignore_index``, 255, not scored). The loss is
cross-entropy, or Dice (``loss="dice"``) or their sum (``"ce+dice"``); validation and test report
torchmetrics' mean IoU over the K + 1 classes (``val_miou``, ``test_miou``), per-class IoU and pixel accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.errors import InvalidValueError, ZooError
from zoo.layers.pixels import to_unit
from zoo.task_descriptions import Score, TaskDescription, register_task
from zoo.tasks.base import ZooTask
from zoo.tasks.inputs import check_choices

Loss = Literal["ce", "dice", "ce+dice"]
BACKGROUND = "background"


def dice_loss(logits: Tensor, masks: Tensor, ignore_index: int = 255) -> Tensor:
    """1 − the soft Dice coefficient (Milletari et al. 2016), averaged over the classes present in the batch
    (in the masks or the predictions); ``ignore_index`` pixels left out."""
    probs = logits.float().softmax(1)
    keep = (masks != ignore_index).unsqueeze(1)
    target = F.one_hot(masks.clamp(0, logits.shape[1] - 1) * keep[:, 0], logits.shape[1]).permute(0, 3, 1, 2)
    probs, target = probs * keep, target * keep
    inter, total = (probs * target).sum((0, 2, 3)), (probs + target).sum((0, 2, 3))
    present = total > 0
    return 1 - (2 * inter[present] / total[present]).mean()


class SemanticSegmenter(ZooTask):
    """Train, evaluate and run a registered segmentation network (``fpn_resnet20``, ``deeplabv3_resnet50``).

    Args:
        model_name: a registered segmentation architecture.
        num_classes: classes besides the background (the network outputs ``num_classes + 1`` channels).
        backbone_weights: classification weights to start the encoder from (``resnet20.fmnist``), or None.
        loss: ``ce`` (cross-entropy), ``dice`` or ``ce+dice``. ignore_index: the mask value left unscored.
        **kwargs: the options of :class:`~zoo.tasks.base.ZooTask` (``lr``, ``optimizer``, ``scheduler``...).
    """

    task = "segmentation"

    def __init__(
        self,
        model_name: str = "fpn_resnet20",
        num_classes: int = 10,
        *,
        backbone_weights: str | None = None,
        loss: Loss = "ce",
        ignore_index: int = 255,
        **kwargs: Any,
    ) -> None:
        check_choices(loss=(loss, Loss))
        super().__init__(model_name=model_name, num_classes=num_classes, **kwargs)
        if backbone_weights:
            self._load_backbone(backbone_weights)
        self._make_metrics(self.hparams.num_classes)

    def _load_backbone(self, source: str) -> None:
        """Classification weights into the encoder, built by the one path from weights to a network
        (:meth:`ZooTask.from_record <zoo.tasks.base.ZooTask.from_record>`), without their head."""
        from zoo.pretrained import resolve

        record = resolve(source)
        encoder = getattr(self.net, "encoder_name", None)
        if record.arch != encoder:
            raise ZooError(f"backbone_weights={source!r} are {record.arch} weights; this encoder is {encoder}")
        built = ZooTask.from_record(record, num_classes=0, in_chans=self.input_size[0])
        own = self.net.encoder.state_dict()
        state = {k: v for k, v in built.net.state_dict().items() if k in own}
        missing = sorted(set(own) - set(state))
        if missing:
            raise ZooError(f"backbone_weights={source!r} lack {len(missing)} encoder tensors ({missing[0]}...)")
        self.net.encoder.load_state_dict(state)

    def _make_metrics(self, num_classes: int) -> None:
        from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

        classes, ignore = num_classes + 1, self.hparams.ignore_index
        self.val_miou = MulticlassJaccardIndex(classes, average="macro", ignore_index=ignore)
        self.test_miou = MulticlassJaccardIndex(classes, average="macro", ignore_index=ignore)
        self.test_iou = MulticlassJaccardIndex(classes, average="none", ignore_index=ignore)
        self.test_pixel_acc = MulticlassAccuracy(classes, average="micro", ignore_index=ignore)

    def reset_classifier(self, num_classes: int, class_names: list[str] | None = None) -> None:
        super().reset_classifier(num_classes, class_names)
        self._make_metrics(num_classes)
        for metric in (self.val_miou, self.test_miou, self.test_iou, self.test_pixel_acc):
            metric.to(self.mean.device)

    @property
    def label_names(self) -> list[str]:
        """The names of the label-map values: ``background`` then ``class_names``."""
        return [BACKGROUND, *self.class_names]

    # ---- loss and steps ------------------------------------------------------------------------------
    def loss(self, logits: Tensor, masks: Tensor) -> Tensor:
        kind, ignore = self.hparams.loss, self.hparams.ignore_index
        total = F.cross_entropy(logits, masks, ignore_index=ignore) if kind != "dice" else 0
        return total + dice_loss(logits, masks, ignore) if kind != "ce" else total

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, masks = batch
        loss = self.loss(self(images), masks)
        self.log_training(loss, len(images))
        return loss

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        images, masks = batch
        logits = self(images)
        self.log(f"{stage}_loss", self.loss(logits, masks), prog_bar=True, sync_dist=True, batch_size=len(images))
        return logits.argmax(1)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.val_miou.update(self._evaluate(batch, "val"), batch[1])

    def on_validation_epoch_end(self) -> None:
        self.log("val_miou", self.val_miou.compute(), prog_bar=True, sync_dist=True)
        self.val_miou.reset()

    def on_test_epoch_start(self) -> None:
        self.test_images = 0

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.test_images += len(batch[0])
        labels = self._evaluate(batch, "test")
        for metric in (self.test_miou, self.test_iou, self.test_pixel_acc):
            metric.update(labels, batch[1])

    def on_test_epoch_end(self) -> None:
        self.log_dict(
            {"test_miou": self.test_miou.compute(), "test_pixel_acc": self.test_pixel_acc.compute()}, sync_dist=True
        )
        self.iou_per_class = {n: float(v) for n, v in zip(self.label_names, self.test_iou.compute().flatten())}
        for metric in (self.test_miou, self.test_iou, self.test_pixel_acc):
            metric.reset()

    def card_test_metrics(self, test: dict[str, Any], val: dict[str, Any]) -> dict[str, Any]:
        """What a weight card reports from ``Trainer.test``/``validate`` results."""
        return {
            "test_miou": test["test_miou"],
            "test_pixel_acc": test["test_pixel_acc"],
            "test_loss": test["test_loss"],
            "test_samples": self.test_images,
            "val_miou": val["val_miou"],
            "val_loss": val["val_loss"],
        }

    def card_test_details(self) -> dict[str, Any]:
        """Per-class IoU (background first), and where the encoder started (the transfer comparison)."""
        return {"iou_per_class": dict(self.iou_per_class), "backbone_weights": self.hparams.backbone_weights}

    def measured_test_samples(self) -> int:
        """How many images the last test run scored."""
        return self.test_images

    # ---- inference -----------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict(self, images: Tensor | list[Tensor], sizes: Any = None) -> list[Tensor]:
        """One ``(h, w)`` int64 label map per image (0: background, k: ``class_names[k - 1]``).

        ``images``: a batch ``(N, C, H, W)`` or a list of ``(C, H, W)`` images of any sizes, floats in [0, 1] or
        uint8; each is resized to the model's input size, and its logits back to its own size (or to
        ``sizes``, one ``(height, width)`` per image, when the images were already resized from those).
        """
        batch, own = self._model_batch(images)
        logits = self(batch)
        sizes = own if sizes is None else [tuple(int(v) for v in s) for s in sizes]
        if len(sizes) != len(logits):
            raise ZooError(f"{len(sizes)} image sizes for {len(logits)} images; give one (height, width) per image")
        maps = []
        for one, size in zip(logits, sizes):
            if tuple(one.shape[-2:]) != tuple(size):
                one = F.interpolate(one[None], size=tuple(size), mode="bilinear", align_corners=False)[0]
            maps.append(one.argmax(0))
        return maps

    def _model_batch(self, images: Tensor | list[Tensor]) -> tuple[Tensor, list[tuple[int, int]]]:
        """(the images at the model's input size on its device, each image's own (height, width))."""
        if isinstance(images, Tensor) and images.ndim != 4:
            return images.to(self.device), []  # the forward's input check says what is wrong, in one line
        height, width = self.input_size[1:]
        own = [tuple(image.shape[-2:]) for image in images]
        resized = []
        for image in images:
            image = to_unit(image.to(self.device))
            if tuple(image.shape[-2:]) != (height, width):
                image = F.interpolate(image[None], (height, width), mode="bilinear", antialias=True)[0]
            resized.append(image)
        return torch.stack(resized), own

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(images).argmax(1)


# ---- the task's description: what the rest of the zoo reads --------------------------------------
def _train_data(data: Any, **options: Any) -> Any:
    """A folder with ``images/`` and ``masks/`` of the same names (prepared at the size of the model being
    trained, which the datamodule reads from it when training starts)."""
    from zoo.data.mask_folders import MaskFolderDataModule

    if isinstance(data, (str, Path)):
        return MaskFolderDataModule(path=str(data), **options)
    raise InvalidValueError(
        f"segmentation data must be a folder of images/ and masks/, or a LightningDataModule, got {type(data).__name__}"
    )


def _eval_data(data: Any, model: Any, batch_size: int = 64) -> Any:
    from zoo.data.mask_folders import MaskFolderDataModule

    return MaskFolderDataModule.for_evaluation(data, model, batch_size=batch_size)


def _default_data(model: Any, root: str | None = None, batch_size: int = 64) -> Any:
    """The Fashion-MNIST scenes' 1,000 test scenes with their masks, for segmenters of Fashion-MNIST's classes."""
    from zoo.data.fashion_mnist import CLASS_NAMES
    from zoo.data.scene_masks import FashionMNISTSceneMasks

    if list(model.class_names) != list(CLASS_NAMES):
        raise ZooError(
            f"{model.weights_name or model.hparams.model_name} segments {len(model.class_names)} classes, not the "
            "Fashion-MNIST scenes'; measure it on its own masks with --data FOLDER (data= in Python)"
        )
    return FashionMNISTSceneMasks(root=root, batch_size=batch_size)


DESCRIPTION = register_task(
    TaskDescription(
        name="segmentation",
        pipeline="image-segmentation",
        module=SemanticSegmenter,
        title="semantic segmentation",
        monitor="val_miou",
        mode="max",
        score=Score("test_miou", "mIoU", percent=False),
        model_index=("mean_iou", "mean IoU"),
        card_rows=(
            Score("test_miou", "test mean IoU, background + classes ({test_samples} images)"),
            Score("test_pixel_acc", "test pixel accuracy"),
            Score("val_miou", "best validation mean IoU"),
        ),
        test_metrics=(Score("test_miou", "mIoU", percent=False), Score("test_pixel_acc", "pixel accuracy")),
        data=("folder of images/ + masks/ (index or palette PNGs)",),
        commands=("segment", "evaluate", "fit", "finetune", "export"),
        usage=(
            "maps = model.predict(images)        # per image: an (h, w) label map, 0 = background; "
            "images: float (N, {shape}) in [0, 1]"
        ),
        data_class="zoo.data.mask_folders.MaskFolderDataModule",
        data_arg="path",
        datamodule=_train_data,
        eval_datamodule=_eval_data,
        default_datamodule=_default_data,
    )
)
