"""Regression from images: numbers out instead of classes, and angles as the course writes them.

The course's output chapter: a *linear* output for regression (the last layer's pre-activations, no
squashing), ``tanh`` when the target lives in [-1, 1], and for an angle the pair ``(sin θ, cos θ)``: the
network never has to jump from 359° to 0°, and the angle is read back with ``atan2(sin, cos)``.

* :class:`ImageRegressor` (task ``regression``): ``K`` outputs, ``mse`` or ``l1`` loss, ``output="linear"``
  or ``"tanh"``; torchmetrics' MAE and R² (``val_mae`` is watched, lower is better).
* :class:`AngleRegressor` (task ``angle-regression``): two outputs (sin θ, cos θ) trained against the target
  angle's (in degrees), the angle read back by ``atan2``; scored by the mean absolute angular error in
  degrees (the shortest way round: 350° against 10° is 20° off), with MAE and R² of the (sin, cos) pair.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanAbsoluteError, MeanMetric, R2Score

from zoo.errors import InvalidValueError, ZooError
from zoo.task_descriptions import Score, TaskDescription, register_task
from zoo.tasks.base import ZooTask
from zoo.tasks.inputs import check_choices

Loss = Literal["mse", "l1"]
Output = Literal["linear", "tanh"]


def angle_to_sincos(degrees: Tensor) -> Tensor:
    """``(N,)`` angles in degrees → ``(N, 2)`` (sin θ, cos θ)."""
    radians = degrees.float() * (math.pi / 180)
    return torch.stack([torch.sin(radians), torch.cos(radians)], dim=1)


def sincos_to_angle(outputs: Tensor) -> Tensor:
    """``(N, 2)`` (sin θ, cos θ) outputs (any length) → angles in degrees in [0, 360), by ``atan2``."""
    return torch.rad2deg(torch.atan2(outputs[:, 0], outputs[:, 1])) % 360


def angular_error(predicted: Tensor, target: Tensor) -> Tensor:
    """The absolute difference of two angles in degrees, the shortest way round: in [0, 180]."""
    return ((predicted - target + 180) % 360 - 180).abs()


class ImageRegressor(ZooTask):
    """Numbers from images: a linear (or tanh-bounded) output per target, MSE or L1 loss.

    Args:
        model_name: a registered architecture (``zoo list``).
        num_classes: how many numbers per image (the network's outputs).
        loss: ``mse`` (mean squared error) or ``l1`` (mean absolute error, less pulled by outliers).
        output: ``linear`` (any real number) or ``tanh`` (bounded to (-1, 1): scale the targets there).
        **kwargs: the network, input and optimisation options of :class:`~zoo.tasks.base.ZooTask`.
    """

    task = "regression"

    def __init__(
        self,
        model_name: str = "resnet20",
        num_classes: int = 1,
        *,
        loss: Loss = "mse",
        output: Output = "linear",
        **kwargs: Any,
    ) -> None:
        check_choices(loss=(loss, Loss), output=(output, Output))
        super().__init__(model_name=model_name, num_classes=num_classes, **kwargs)
        if num_classes < 1:
            raise InvalidValueError("a regression model needs num_classes ≥ 1 (one output per number)")
        self._make_metrics(num_classes)

    def _make_metrics(self, k: int) -> None:
        self.val_mae, self.test_mae = MeanAbsoluteError(), MeanAbsoluteError()
        self.test_r2 = R2Score()  # several outputs: the mean of their R² (multioutput="uniform_average")
        self.test_count = 0

    def reset_classifier(self, num_classes: int, class_names: list[str] | None = None) -> None:
        super().reset_classifier(num_classes, class_names)
        self._make_metrics(num_classes)

    def model_config(self, name: str) -> dict[str, Any]:
        config = super().model_config(name)
        config["task_options"] = {"loss": self.hparams.loss, "output": self.hparams.output}
        return config

    def outputs(self, images: Tensor) -> Tensor:
        """The network's outputs ``(N, K)``, through ``tanh`` when the model is bounded."""
        out = self(images)
        return torch.tanh(out) if self.hparams.output == "tanh" else out

    def encode(self, targets: Tensor) -> Tensor:
        """Targets as the outputs are trained against: ``(N, K)`` floats."""
        targets = targets.float()
        return targets[:, None] if targets.ndim == 1 else targets

    def _step(self, batch: Any) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        images, targets, *groups = batch
        out, encoded = self.outputs(images), self.encode(targets)
        if out.shape != encoded.shape:
            raise ZooError(f"the model has {out.shape[1]} outputs but the targets {encoded.shape[1]} numbers per image")
        loss = F.mse_loss(out, encoded) if self.hparams.loss == "mse" else F.l1_loss(out, encoded)
        return loss, out, targets, (groups[0] if groups else None)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss, out, _, _ = self._step(batch)
        self.log_training(loss, len(out))
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, out, targets, _ = self._step(batch)
        self.val_mae(out, self.encode(targets))
        self.log("val_loss", loss, prog_bar=True, sync_dist=True)
        self.log("val_mae", self.val_mae, prog_bar=True)

    def on_test_epoch_start(self) -> None:
        self.test_count = 0

    def test_step(self, batch: Any, batch_idx: int) -> None:  # nothing returned: TestReport's mistakes are classes
        self._test_update(batch)

    def _test_update(self, batch: Any) -> Tensor:
        loss, out, targets, _ = self._step(batch)
        encoded = self.encode(targets)
        self.test_mae.update(out, encoded)
        self.test_r2.update(out if out.shape[1] > 1 else out[:, 0], encoded if out.shape[1] > 1 else encoded[:, 0])
        self.test_count += len(out)
        self.log("test_loss", loss, sync_dist=True)
        self.log("test_mae", self.test_mae)
        self.log("test_r2", self.test_r2)
        return out

    def measured_test_samples(self) -> int:
        return self.test_count

    def card_test_metrics(self, test: dict[str, Any], val: dict[str, Any]) -> dict[str, Any]:
        return {
            **{key: test[key] for key in ("test_mae", "test_r2", "test_loss")},
            "test_samples": self.test_count,
            "val_mae": val["val_mae"],
            "val_loss": val["val_loss"],
        }

    def card_test_details(self) -> dict[str, Any]:
        return {}

    @torch.inference_mode()
    def predict(self, x: Tensor) -> Tensor:
        """The predicted numbers ``(N, K)`` for a batch of images in [0, 1]."""
        return self.outputs(self.as_batch(x).to(self.device))

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self.outputs(batch[0] if isinstance(batch, (tuple, list)) else batch)


class AngleRegressor(ImageRegressor):
    """An angle from an image: outputs (sin θ, cos θ), read back by ``atan2``; targets are angles in degrees.

    Args:
        output: ``linear`` (default) or ``tanh`` (both sin and cos live in [-1, 1]).
        loss, **kwargs: as :class:`ImageRegressor` (``num_classes`` is 2: sin θ and cos θ).
    """

    task = "angle-regression"

    def __init__(self, model_name: str = "resnet20", num_classes: int = 2, **kwargs: Any) -> None:
        if num_classes != 2:
            raise InvalidValueError(f"an angle model has 2 outputs (sin θ, cos θ), got num_classes={num_classes}")
        kwargs["class_names"] = kwargs.get("class_names") or ["sin θ", "cos θ"]
        super().__init__(model_name=model_name, num_classes=2, **kwargs)

    def _make_metrics(self, k: int) -> None:
        super()._make_metrics(k)
        self.val_angle_error, self.test_angle_error = MeanMetric(), MeanMetric()
        self._errors: list[Tensor] = []
        self._groups: list[Tensor] = []

    def encode(self, targets: Tensor) -> Tensor:
        return angle_to_sincos(targets) if targets.ndim == 1 else targets.float()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, out, targets, _ = self._step(batch)
        self.val_mae(out, self.encode(targets))
        self.log("val_loss", loss, prog_bar=True, sync_dist=True)
        self.log("val_mae", self.val_mae)
        self.val_angle_error.update(angular_error(sincos_to_angle(out), targets.float()))
        self.log("val_angle_error", self.val_angle_error, prog_bar=True)

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self._errors, self._groups = [], []

    def test_step(self, batch: Any, batch_idx: int) -> None:
        out = self._test_update(batch)
        _, targets, *groups = batch
        errors = angular_error(sincos_to_angle(out), targets.float())
        self.test_angle_error.update(errors)
        self.log("test_angle_error", self.test_angle_error)
        self._errors.append(errors.detach().cpu())
        if groups:
            self._groups.append(groups[0].cpu())

    def on_test_epoch_end(self) -> None:
        errors = torch.cat(self._errors) if self._errors else torch.zeros(0)
        self.median_angle_error = round(float(errors.median()), 3) if len(errors) else None
        self.angle_error_per_class: dict[str, float] = {}
        if self._groups and len(self._groups) == len(self._errors):
            groups = torch.cat(self._groups)
            names = getattr(getattr(self.trainer, "datamodule", None), "group_names", None) or []
            for g in sorted(set(groups.tolist())):
                name = names[g] if g < len(names) else str(g)
                self.angle_error_per_class[name] = round(float(errors[groups == g].mean()), 3)

    def card_test_metrics(self, test: dict[str, Any], val: dict[str, Any]) -> dict[str, Any]:
        return {
            "test_angle_error": test["test_angle_error"],
            "test_median_angle_error": self.median_angle_error,
            **super().card_test_metrics(test, val),
            "val_angle_error": val["val_angle_error"],
        }

    def card_test_details(self) -> dict[str, Any]:
        return {"angle_error_per_class": self.angle_error_per_class} if self.angle_error_per_class else {}

    @torch.inference_mode()
    def predict_angle(self, x: Tensor) -> Tensor:
        """The angle of each image, in degrees in [0, 360)."""
        return sincos_to_angle(self.predict(x))


# ---- the tasks' descriptions ----------------------------------------------------------------------------
def _train_data(data: Any, angles: bool = False, **options: Any) -> Any:
    """A ``path,<target>`` CSV (:mod:`zoo.data.targets_csv`), or ``(images, targets)`` tensors: targets
    ``(N,)``/``(N, K)`` numbers, or angles in degrees for an angle model."""
    from pathlib import Path

    from zoo.data.rotations import TensorRegressionData
    from zoo.data.targets_csv import ANGLE_OUTPUTS, AngleDataModule, RegressionDataModule

    keep = ("val_fraction", "split_seed", "batch_size")
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        options = {k: v for k, v in options.items() if k in (*keep, "classes")}
        if angles and data[1].ndim == 1:
            options["classes"] = list(ANGLE_OUTPUTS)  # one angle per image, two outputs (sin θ, cos θ)
        return TensorRegressionData(data[0], data[1], **options)
    if isinstance(data, (str, Path)):
        options = {k: v for k, v in options.items() if k in keep}
        return (AngleDataModule if angles else RegressionDataModule)(data, **options)
    raise InvalidValueError(
        f"regression data is a CSV of path,<target> rows, (images, targets) tensors or a LightningDataModule, "
        f"got {type(data).__name__}"
    )


def _eval_data(data: Any, model: Any, batch_size: int = 500, angles: bool = False) -> Any:
    from pathlib import Path

    from zoo.data.rotations import TensorRegressionData
    from zoo.data.targets_csv import AngleDataModule, RegressionDataModule

    if isinstance(data, (str, Path)):
        return (AngleDataModule if angles else RegressionDataModule).for_evaluation(data, model, batch_size)
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise InvalidValueError(
            "regression test data is a CSV of path,<target> rows, (images, targets) tensors or a LightningDataModule"
        )
    return TensorRegressionData(data[0], data[1], batch_size=batch_size, test=True)


def _angle_train_data(data: Any, **options: Any) -> Any:
    """A ``path,angle`` CSV (degrees) or ``(images, angles)`` tensors."""
    return _train_data(data, angles=True, **options)


def _angle_eval_data(data: Any, model: Any, batch_size: int = 500) -> Any:
    return _eval_data(data, model, batch_size, angles=True)


def _default_rotations(model: Any, root: str | None = None, batch_size: int = 500) -> Any:
    """The 10,000 Fashion-MNIST test garments at their fixed angles, for angle models of 28×28 grey images."""
    from zoo.data.rotations import FashionMNISTRotations

    if tuple(model.input_size) != (1, 28, 28):
        raise ZooError("the default test set is 28×28 grey garments; measure this model on its own images (data=)")
    return FashionMNISTRotations(root=root, batch_size=batch_size)


def _no_default(model: Any, root: str | None = None, batch_size: int = 500) -> Any:
    raise ZooError("a regression model has no default test set; measure it on its own images (--data, data=)")


_COMMANDS = ("predict", "evaluate", "fit", "finetune", "export", "lr-find")

REGRESSION = register_task(
    TaskDescription(
        name="regression",
        pipeline="zoo-image-regression",
        module=ImageRegressor,
        title="image regression",
        monitor="val_mae",
        mode="min",
        score=Score("test_mae", "MAE", percent=False),
        model_index=("mae", "mean absolute error"),
        model_index_scale=1.0,
        card_rows=(
            Score("test_mae", "test MAE ({test_samples} images)", percent=False),
            Score("test_r2", "test R²", percent=False),
            Score("val_mae", "best validation MAE", percent=False),
        ),
        test_metrics=(Score("test_mae", "MAE", percent=False), Score("test_r2", "R²", percent=False)),
        data=("CSV of path,<target>... (numbers)", "(images, targets) tensors"),
        commands=_COMMANDS,
        usage="values = model.predict(images)  # images: float (N, {shape}) in [0, 1]",
        data_class="zoo.data.targets_csv.RegressionDataModule",
        data_arg="path",
        datamodule=_train_data,
        eval_datamodule=_eval_data,
        default_datamodule=_no_default,
    )
)

ANGLE_REGRESSION = register_task(
    TaskDescription(
        name="angle-regression",
        pipeline="zoo-image-angle-regression",
        module=AngleRegressor,
        title="angle regression",
        monitor="val_angle_error",
        mode="min",
        score=Score("test_angle_error", "mean angular error (°)", percent=False),
        model_index=("mean_angular_error", "mean absolute angular error (degrees)"),
        model_index_scale=1.0,
        card_rows=(
            Score(
                "test_angle_error", "test mean absolute angular error, degrees ({test_samples} images)", percent=False
            ),
            Score("test_median_angle_error", "test median angular error, degrees", percent=False),
            Score("test_mae", "test MAE of (sin θ, cos θ)", percent=False),
            Score("test_r2", "test R² of (sin θ, cos θ)", percent=False),
            Score("val_angle_error", "best validation mean angular error, degrees", percent=False),
        ),
        test_metrics=(
            Score("test_angle_error", "mean angular error (°)", percent=False),
            Score("test_mae", "MAE (sin, cos)", percent=False),
            Score("test_r2", "R² (sin, cos)", percent=False),
        ),
        data=("CSV of path,angle (degrees)", "(images, angles in degrees) tensors", "Fashion-MNIST rotations"),
        commands=_COMMANDS,
        usage="degrees = model.predict_angle(images)  # images: float (N, {shape}) in [0, 1]",
        data_class="zoo.data.targets_csv.AngleDataModule",
        data_arg="path",
        datamodule=_angle_train_data,
        eval_datamodule=_angle_eval_data,
        default_datamodule=_default_rotations,
        aliases=("angle",),
    )
)
