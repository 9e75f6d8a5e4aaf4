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


positive_int = int_at_least(1)
natural_int = int_at_least(0)
