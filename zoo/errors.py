"""Errors raised by zoo. Each message is one line: what was wrong and what to do about it."""


class ZooError(Exception):
    """Base class of every error zoo raises on bad input; the CLI prints it as one line."""


class UnknownModelError(ZooError, KeyError):
    """A model or weight name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class InputShapeError(ZooError, ValueError):
    """A batch whose channels or image size the model cannot take."""


class WeightsError(ZooError, ValueError):
    """A weight file that is missing, corrupt, tampered with or does not fit the model."""


class DatasetNotFoundError(ZooError, FileNotFoundError):
    """A dataset that is neither on disk nor downloadable."""


class UnknownArgumentError(ZooError, TypeError):
    """A keyword argument that neither the task nor the architecture's builder takes."""


class InvalidValueError(ZooError, ValueError):
    """An argument of the right name with a value out of its range or not among its choices."""


class InputValueError(ZooError, ValueError):
    """Pixels a model cannot take: NaN or infinite, out of range, or of an unsupported type."""
