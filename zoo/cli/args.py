"""argparse for the zoo's own commands: errors as one ``zoo: error:`` line, numbers checked by type."""

from __future__ import annotations

import argparse

from zoo.errors import ZooError


class ArgumentParser(argparse.ArgumentParser):
    """An ``argparse.ArgumentParser`` whose errors are a :class:`ZooError` (one line, exit 2, no usage dump)."""

    def error(self, message: str):
        raise ZooError(f"{self.prog}: {message} (see {self.prog} --help)")


def int_at_least(low: int):
    """An argparse type: a whole number ≥ ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number ≥ {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be ≥ {low}, got {value}")
        return value

    parse.__name__ = f"int≥{low}"
    return parse


def _float_bound(low: float, strict: bool):
    """An argparse type: a finite number above ``low`` (``strict``) or at least ``low``; not ``abc``, ``nan``, ``inf``."""
    import math

    sign = ">" if strict else "≥"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number {sign} {low:g}, got {text!r}") from None
        if not math.isfinite(value) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be a finite number {sign} {low:g}, got {text}")
        return value

    parse.__name__ = f"float{sign}{low:g}"
    return parse


def float_above(low: float):
    """An argparse type: a finite number > ``low`` (``1e-6``, ``0.5``; not ``abc``, ``nan`` or ``inf``)."""
    return _float_bound(low, strict=True)


def float_at_least(low: float):
    """An argparse type: a finite number ≥ ``low`` (``0``, ``0.5``; not ``abc``, ``nan`` or ``inf``)."""
    return _float_bound(low, strict=False)


positive_int = int_at_least(1)
positive_float = float_above(0.0)
natural_int = int_at_least(0)
