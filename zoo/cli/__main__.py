"""``python -m zoo.cli``: the ``zoo`` command (DDP workers are re-launched this way)."""

from zoo.cli import main

main()
