"""LightningModules: one base (:class:`~zoo.tasks.base.ZooTask`) and one subclass per task.

``zoo.tasks.factory`` holds ``create``/``load``/``task_class``; ``zoo.tasks.optim`` the training options.
"""
