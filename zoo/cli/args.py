"""argparse for the zoo's own commands: errors as one ``zoo: error:`` line, numbers checked by type."""

from __future__ import annotations

import argparse

from zoo.errors import ZooError


class ArgumentParser(argparse.ArgumentParser):
    """An ``argparse.ArgumentParser`` whose errors are a :class:`ZooError` (one line, exit 2, no usage dump)."""

    def error(self, message: str):
        raise ZooError(f"{self.prog}: {message} (see {self.prog} --help)")


def positive_int(text: str) -> int:
    """argparse type: a whole number ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def natural_int(text: str) -> int:
    """argparse type: a whole number ≥ 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {value}")
    return value
