"""Re-measuring trained weights on a real test set, the same way the training run measured them.

What is measured, and on which data by default, is the task's description's
(:mod:`zoo.task_descriptions`): a classifier's top-1/top-5 on the Fashion-MNIST test set, a detector's COCO
mAP on the Fashion-MNIST scenes. A model whose classes are not the default dataset's is refused in one
line unless ``data`` is given.
"""

from __future__ import annotations

from typing import Any


def evaluate(
    model: Any, data: Any = None, *, root: str | None = None, batch_size: int | None = None
) -> dict[str, float]:
    """The test metrics of ``model`` (``description.test_metrics``, the loss, ``test_samples``) via ``Trainer.test``.

    ``data``: the user's test data as the task takes it (a class folder or CSV; a COCO folder), or a
    LightningDataModule; default: the task's own dataset, for models of its classes only. Weights trained
    on some classes only (``data_classes`` in their ``metrics.json``) are measured on those classes' images.
    """
    import lightning as L

    description = model.description
    options = {} if batch_size is None else {"batch_size": batch_size}
    if isinstance(data, L.LightningDataModule):
        datamodule = data
    elif data is not None:
        datamodule = description.eval_datamodule(data, model, **options)
    else:
        datamodule = description.default_datamodule(model, root, **options)
    result = dict(_quiet_trainer().test(model, datamodule=datamodule, verbose=False)[0])
    result["test_samples"] = model.measured_test_samples()
    return result


def evaluate_classifier(
    model: Any, root: str | None = None, batch_size: int = 500, datamodule: Any = None
) -> dict[str, float]:
    """Top-1/top-5 accuracy and loss of a classifier: :func:`evaluate` on its default test set."""
    return evaluate(model, datamodule, root=root, batch_size=batch_size)


def evaluate_detector(
    model: Any, root: str | None = None, batch_size: int = 64, datamodule: Any = None
) -> dict[str, float]:
    """COCO mAP (mAP@[.5:.95], @0.5, @0.75) and loss of a detector: :func:`evaluate` on its default test set."""
    return evaluate(model, datamodule, root=root, batch_size=batch_size)


def measure_for_card(model: Any, datamodule: Any, **limits: Any) -> dict[str, Any]:
    """What a weight card reports of ``model`` (its task's ``card_test_metrics`` and ``card_test_details``):
    ``Trainer.test`` and ``validate`` on ``datamodule`` in float32, as :func:`evaluate` and ``zoo evaluate``
    measure, on the device the model is on, whatever precision it was trained in. ``limits``: the run's
    ``limit_test_batches``/``limit_val_batches``, if any."""
    accelerator = {"cuda": "gpu", "mps": "mps"}.get(model.device.type, "cpu")
    trainer = _quiet_trainer(accelerator, **limits)
    test = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    val = trainer.validate(model, datamodule=datamodule, verbose=False)[0]
    return {**model.card_test_metrics(test, val), **model.card_test_details()}


def _quiet_trainer(accelerator: str = "cpu", **options: Any):
    """One process in float32, no logs, checkpoints, progress bar or summary: a measurement, not a run."""
    import lightning as L

    return L.Trainer(
        **options,
        accelerator=accelerator,
        precision="32-true",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
