"""LightningModules: one per task, each wrapping a registered ``nn.Module`` as ``.net``."""

from __future__ import annotations


def task_class(task: str):
    """The LightningModule class of a registry entry's ``task``."""
    if task == "classification":
        from zoo.tasks.classification import ImageClassifier

        return ImageClassifier
    raise ValueError(f"unknown task {task!r}")
