"""Re-measuring trained weights on a real test set, the same way the training run measured them."""

from __future__ import annotations

from typing import Any


def evaluate_classifier(
    model: Any, root: str | None = None, batch_size: int = 500, datamodule: Any = None
) -> dict[str, float]:
    """Top-1/top-5 accuracy and loss of a classifier on the Fashion-MNIST test set, via ``Trainer.test``.

    Weights trained on some classes only (``data_classes`` in their ``metrics.json``) are measured on the
    test images of those classes.
    """
    from zoo.data import FashionMNISTDataModule

    subset = (getattr(model, "card_metrics", None) or {}).get("data_classes")  # weights of some classes only
    data = datamodule or FashionMNISTDataModule(root=root, batch_size=batch_size, download=False, classes=subset)
    trainer = _quiet_trainer()
    result = dict(trainer.test(model, datamodule=data, verbose=False)[0])
    result["test_samples"] = int(model.confusion_matrix.sum())
    return result


def evaluate_detector(
    model: Any, root: str | None = None, batch_size: int = 64, datamodule: Any = None
) -> dict[str, float]:
    """COCO mAP (mAP@[.5:.95], @0.5, @0.75) and loss of a detector on the Fashion-MNIST scenes' test split."""
    from zoo.data.scenes import FashionMNISTScenes

    data = datamodule or FashionMNISTScenes(root=root, batch_size=batch_size)
    trainer = _quiet_trainer()
    result = dict(trainer.test(model, datamodule=data, verbose=False)[0])
    result["test_samples"] = model.test_images
    return result


def _quiet_trainer():
    """One CPU process, no logs, checkpoints, progress bar or summary: a measurement, not a run."""
    import lightning as L

    return L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
