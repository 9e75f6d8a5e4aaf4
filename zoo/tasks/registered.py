"""The zoo's own tasks, one line each: importing a task's file registers its description.

:func:`zoo.task_descriptions.get_task` imports this module on first use. A new task is one file in
``zoo/tasks/`` (its LightningModule and its :class:`~zoo.task_descriptions.TaskDescription`) and one line here.
"""

from zoo.tasks import classification, detection, multilabel, regression, segmentation  # noqa: F401  each registers
