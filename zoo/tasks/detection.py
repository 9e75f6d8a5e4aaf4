"""Object detection as a LightningModule: a DETR-style set-prediction network, its loss and mAP.

Input: float images ``(N, C, H, W)`` in [0, 1] (uint8 scaled for you), normalised inside.
``model(images)`` returns the network's raw ``{"pred_logits", "pred_boxes", "aux_outputs"}``;
``model.predict(images, threshold, sizes)`` returns, per image, ``{"boxes" (xyxy pixels), "scores", "labels"}``
like torchvision's detectors, the boxes in the pixels of each image's own (original) size. The loss is
DETR's (:mod:`zoo.tasks.set_criterion`): unweighted terms per decoder layer, summed with ``*_weight``;
the total and every term are logged (``train_loss_ce``, ``val_loss_bbox_0``...). Training targets are
per image ``{"boxes": (k, 4) xyxy pixels, "labels"}``
(:mod:`zoo.data.scenes`); validation and test report torchmetrics' ``MeanAveragePrecision`` (COCO mAP,
mAP@0.5, per class). Loading, saving, cards and the Hub come from :class:`~zoo.tasks.base.ZooTask`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from zoo.errors import ZooError
from zoo.layers.pixels import to_unit
from zoo.task_descriptions import Score, TaskDescription, register_task
from zoo.tasks.base import ZooTask
from zoo.tasks.matcher import HungarianMatcher, box_cxcywh_to_xyxy, box_xyxy_to_cxcywh
from zoo.tasks.set_criterion import SetCriterion, make_weight_dict


class ObjectDetector(ZooTask):
    """Train, evaluate and run a registered detection network (``detr_lite``).

    Args:
        model_name: a registered detection architecture.
        num_classes: object classes (the network adds "no object").
        backbone_weights: classification weights to start the backbone from (``resnet20.fmnist``), or None.
        eos_coef: weight of the "no object" class in the loss. threshold: score threshold of ``predict``.
        ce_weight, bbox_weight, giou_weight: the weights of the loss terms (the same for every decoder layer).
        cost_class, cost_bbox, cost_giou: the weights of the Hungarian matcher's costs.
        **kwargs: the options of :class:`~zoo.tasks.base.ZooTask` (``lr``, ``optimizer``, ``scheduler``...).
    """

    task = "detection"
    monitor = "val_map"
    MAX_DETECTIONS = 100  # per image, as COCO counts them

    def __init__(
        self,
        model_name: str = "detr_lite",
        num_classes: int = 10,
        *,
        backbone_weights: str | None = None,
        eos_coef: float = 0.1,
        threshold: float = 0.5,
        ce_weight: float = 1.0,
        bbox_weight: float = 5.0,
        giou_weight: float = 2.0,
        cost_class: float = 1.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(model_name=model_name, num_classes=num_classes, **kwargs)
        self.criterion = self._make_criterion(num_classes)
        if backbone_weights:
            self._load_backbone(backbone_weights)
        self._make_metrics()

    def _load_backbone(self, source: str) -> None:
        """Classification weights into the CNN, built by the one path from weights to a network
        (:meth:`ZooTask.from_record <zoo.tasks.base.ZooTask.from_record>`), without their head."""
        from zoo.pretrained import resolve

        record = resolve(source)
        if record.arch != self.net.backbone_name:
            raise ZooError(
                f"backbone_weights={source!r} are {record.arch} weights; this backbone is {self.net.backbone_name}"
            )
        built = ZooTask.from_record(record, num_classes=0, in_chans=self.input_size[0])
        self.net.backbone.load_state_dict(built.net.state_dict())

    def _make_metrics(self) -> None:
        from torchmetrics.detection import MeanAveragePrecision

        self.val_map = MeanAveragePrecision(iou_type="bbox")
        self.test_map = MeanAveragePrecision(iou_type="bbox", class_metrics=True)

    def _make_criterion(self, num_classes: int) -> SetCriterion:
        """DETR's set loss with this run's matcher costs and loss weights (one per term and decoder layer)."""
        hp = self.hparams
        matcher = HungarianMatcher(hp.cost_class, hp.cost_bbox, hp.cost_giou)
        aux_layers = len(getattr(self.net, "decoder", [None])) - 1
        weights = make_weight_dict(aux_layers, hp.ce_weight, hp.bbox_weight, hp.giou_weight)
        return SetCriterion(num_classes, matcher, eos_coef=hp.eos_coef, weight_dict=weights)

    def reset_classifier(self, num_classes: int, class_names: list[str] | None = None) -> None:
        super().reset_classifier(num_classes, class_names)
        self.criterion = self._make_criterion(num_classes).to(self.mean.device)

    # ---- boxes ---------------------------------------------------------------------------------------
    def _normalised(self, targets: list[dict[str, Tensor]], size: tuple[int, int]) -> list[dict[str, Tensor]]:
        """Pixel xyxy boxes → normalised cx, cy, w, h (what the network predicts)."""
        height, width = size
        scale = torch.tensor([width, height, width, height], dtype=torch.float, device=self.mean.device)
        return [
            {
                "labels": t["labels"].to(self.mean.device),
                "boxes": box_xyxy_to_cxcywh(t["boxes"].to(self.mean.device) / scale),
            }
            for t in targets
        ]

    def detections(
        self, outputs: dict[str, Tensor], sizes: Any, threshold: float | None = None
    ) -> list[dict[str, Tensor]]:
        """Per image: boxes (xyxy pixels), scores and labels of the (query, class) pairs above ``threshold``.

        The post-processing of DETR's reference (``PostProcess``): ``sizes`` is one ``(height, width)`` for
        the whole batch or one per image (a list or an ``(N, 2)`` tensor), and each image's normalised boxes
        are scaled to its own size, so boxes come back in the pixels of the image the user has.

        Every pair is a candidate detection with its class probability, best first and at most
        ``MAX_DETECTIONS`` per image, as Deformable DETR and its successors rank them for COCO's mAP: a query
        torn between shirt and coat counts as both. Above 0.5 a softmax has one class at most, so a
        ``predict`` threshold of 0.5 or more keeps each confident query's best class, as DETR does.
        """
        threshold = self.hparams.threshold if threshold is None else threshold
        probs = outputs["pred_logits"].softmax(-1)[..., :-1]  # the "no object" column left out
        classes = probs.shape[-1]
        sizes = torch.as_tensor(sizes, dtype=torch.float, device=probs.device).reshape(-1, 2)
        if len(sizes) not in (1, len(probs)):
            raise ZooError(f"{len(sizes)} image sizes for {len(probs)} images; give one (height, width) per image")
        height, width = sizes.expand(len(probs), 2).unbind(1)
        scale = torch.stack([width, height, width, height], dim=1)  # (N, 4)
        boxes = box_cxcywh_to_xyxy(outputs["pred_boxes"]) * scale[:, None]
        found = []
        for b, p in zip(boxes, probs):
            scores, order = p.flatten().sort(descending=True, stable=True)
            keep = order[scores > threshold][: self.MAX_DETECTIONS]
            query, label = keep // classes, keep % classes
            found.append({"boxes": b[query], "scores": p[query, label], "labels": label})
        return found

    @torch.inference_mode()
    def predict(
        self, images: Tensor | list[Tensor], threshold: float | None = None, sizes: Any = None
    ) -> list[dict[str, Tensor]]:
        """Detections per image, boxes in the pixels of each image's own size (see the module doc).

        ``images``: a batch ``(N, C, H, W)`` or a list of ``(C, H, W)`` images of any sizes, floats in [0, 1]
        or uint8. Images not at the model's input size are resized to it (bilinear, antialiased, as
        ``transforms()`` does) and their boxes scaled back to their size. ``sizes``: each image's original
        ``(height, width)`` when the batch was already resized from it (``zoo detect`` passes each file's);
        by default, the size of each image given.
        """
        batch, own = self._model_batch(images)
        return self.detections(self(batch), own if sizes is None else sizes, threshold)

    def _model_batch(self, images: Tensor | list[Tensor]) -> tuple[Tensor, list[tuple[int, int]]]:
        """(the images at the model's input size on its device, each image's own (height, width))."""
        import torch.nn.functional as F

        if isinstance(images, Tensor) and images.ndim != 4:
            return images.to(self.device), []  # the forward's input check says what is wrong, in one line
        height, width = self.input_size[1:]
        own = [tuple(image.shape[-2:]) for image in images]
        if isinstance(images, Tensor) and tuple(images.shape[-2:]) == (height, width):
            return images.to(self.device), own
        resized = []
        for image in images:
            image = image.to(self.device)
            image = to_unit(image)
            if tuple(image.shape[-2:]) != (height, width):
                image = F.interpolate(image[None], (height, width), mode="bilinear", antialias=True)[0]
            resized.append(image)
        return torch.stack(resized), own

    # ---- steps ---------------------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, list[dict[str, Tensor]]], batch_idx: int) -> Tensor:
        images, targets = batch
        terms = self.criterion(self(images), self._normalised(targets, tuple(images.shape[-2:])))
        loss = self.criterion.total(terms)
        self.log_training(loss, len(targets), parts=terms)  # the total and every unweighted term
        return loss

    def _evaluate(self, batch: Any, metric: Any, stage: str) -> None:
        images, targets = batch
        outputs = self(images)
        # no collective per step: the processes' evaluation batch counts may differ (each image scored once)
        terms = self.criterion(outputs, self._normalised(targets, tuple(images.shape[-2:])), synchronise=False)
        self.log(f"{stage}_loss", self.criterion.total(terms), prog_bar=True, sync_dist=True, batch_size=len(targets))
        if stage == "val":  # every unweighted term too: val_loss_ce, val_loss_bbox_0...
            self.log_dict({f"val_{k}": v for k, v in terms.items()}, sync_dist=True, batch_size=len(targets))
        found = self.detections(outputs, tuple(images.shape[-2:]), threshold=0.0)  # mAP ranks every query
        metric.update(found, [{k: v.to(self.mean.device) for k, v in t.items()} for t in targets])

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, self.val_map, "val")

    def on_validation_epoch_end(self) -> None:
        result = self.val_map.compute()
        self.log_dict({"val_map": result["map"], "val_map_50": result["map_50"]}, prog_bar=True, sync_dist=True)
        self.val_map.reset()

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.test_images += len(batch[1])
        self._evaluate(batch, self.test_map, "test")

    def on_test_epoch_end(self) -> None:
        result = self.test_map.compute()
        self.log_dict(
            {"test_map": result["map"], "test_map_50": result["map_50"], "test_map_75": result["map_75"]},
            sync_dist=True,
        )
        classes = result.get("classes")
        per_class = result.get("map_per_class")
        self.map_per_class = (
            {self.class_names[int(c)]: float(v) for c, v in zip(classes.flatten(), per_class.flatten())}
            if classes is not None and per_class is not None and per_class.numel() == classes.numel()
            else {}
        )
        self.test_map.reset()

    def card_test_metrics(self, test: dict[str, Any], val: dict[str, Any]) -> dict[str, Any]:
        """What a weight card reports from ``Trainer.test``/``validate`` results."""
        return {
            "test_map": test["test_map"],
            "test_map_50": test["test_map_50"],
            "test_map_75": test["test_map_75"],
            "test_loss": test["test_loss"],
            "test_samples": self.test_images,
            "val_map": val["val_map"],
            "val_loss": val["val_loss"],
        }

    def card_test_details(self) -> dict[str, Any]:
        """Per-class AP, and where the backbone started (the with/without-pretraining comparison)."""
        return {"map_per_class": dict(self.map_per_class), "backbone_weights": self.hparams.backbone_weights}

    def on_test_epoch_start(self) -> None:
        self.test_images = 0

    def measured_test_samples(self) -> int:
        """How many images the last test run scored."""
        return self.test_images

    def predict_step(self, batch: Any, batch_idx: int) -> list[dict[str, Tensor]]:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.detections(self(images), tuple(images.shape[-2:]))


# ---- the task's description: what the rest of the zoo reads --------------------------------------
def _train_data(data: Any, **options: Any) -> Any:
    """A COCO folder (``annotations.json`` and ``images/``) or its ``annotations.json`` (prepared at the size
    of the model being trained, which the datamodule reads from it when training starts)."""
    from pathlib import Path

    from zoo.data.coco import CocoDetection
    from zoo.data.shards import is_shard_source
    from zoo.errors import InvalidValueError

    if is_shard_source(data):  # prepared shards (zoo prepare): a folder or s3://
        from zoo.data.streaming import StreamingImages

        return StreamingImages(str(data), **options)
    if isinstance(data, (str, Path)):
        return CocoDetection(str(data), **options)
    raise InvalidValueError(
        f"detection data must be a COCO folder or annotations.json, or a LightningDataModule, got {type(data).__name__}"
    )


def _eval_data(data: Any, model: Any, batch_size: int = 64) -> Any:
    from zoo.data.coco import CocoDetection
    from zoo.data.shards import is_shard_source

    if is_shard_source(data):
        from zoo.data.streaming import StreamingImages

        return StreamingImages.for_evaluation(str(data), model.class_names, batch_size=batch_size)
    size, in_chans = model.input_size[-1], model.input_size[0]
    return CocoDetection.for_evaluation(data, model.class_names, size=size, in_chans=in_chans, batch_size=batch_size)


def _default_data(model: Any, root: str | None = None, batch_size: int = 64) -> Any:
    """The Fashion-MNIST scenes' test split, for detectors of Fashion-MNIST's classes."""
    from zoo.data.fashion_mnist import CLASS_NAMES
    from zoo.data.scenes import FashionMNISTScenes
    from zoo.errors import ZooError

    if list(model.class_names) != list(CLASS_NAMES):
        raise ZooError(
            f"{model.weights_name or model.hparams.model_name} detects {len(model.class_names)} classes, not the "
            "Fashion-MNIST scenes'; measure it on its own boxes with --data COCO_FOLDER (data= in Python)"
        )
    return FashionMNISTScenes(root=root, batch_size=batch_size)


DESCRIPTION = register_task(
    TaskDescription(
        name="detection",
        pipeline="object-detection",
        module=ObjectDetector,
        title="object detection",
        monitor="val_map",
        mode="max",
        score=Score("test_map_50", "mAP@0.5", percent=False),
        model_index=("map", "mAP@[.5:.95]"),
        card_rows=(
            Score("test_map", "test mAP@[.5:.95] ({test_samples} images)"),
            Score("test_map_50", "test mAP@0.5"),
            Score("test_map_75", "test mAP@0.75"),
            Score("val_map", "best validation mAP@[.5:.95]"),
        ),
        test_metrics=(
            Score("test_map", "mAP@[.5:.95]", percent=False),
            Score("test_map_50", "mAP@0.5", percent=False),
            Score("test_map_75", "mAP@0.75", percent=False),
        ),
        data=("COCO folder (annotations.json + images/)",),
        commands=("detect", "evaluate", "fit", "finetune", "export"),
        usage=(
            "found = model.predict(images)       # per image: boxes (xyxy pixels), scores, labels; "
            "images: float (N, {shape}) in [0, 1]"
        ),
        data_class="zoo.data.coco.CocoDetection",
        data_arg="train_json",
        datamodule=_train_data,
        eval_datamodule=_eval_data,
        default_datamodule=_default_data,
    )
)
