"""The hub commands: ``zoo push`` (a weight folder to the Hugging Face Hub) and ``zoo pull`` (into the caches)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from zoo.cli.args import ArgumentParser


def cmd_push(argv: Iterable[str]) -> None:

    parser = ArgumentParser(
        prog="zoo push", description="Upload a weight folder to the Hugging Face Hub (HF_ENDPOINT, HF_TOKEN apply)."
    )
    parser.add_argument("folder", help="a folder laid out like model_cards/<arch.tag>/")
    parser.add_argument("--repo", required=True, help="org/name of the model repo (created if needed)")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--revision", default=None, help="branch to push to (created from main if needed)")
    parser.add_argument("--message", default=None, help="commit message")
    args = parser.parse_args(list(argv))
    from pathlib import Path

    from zoo.errors import ZooError
    from zoo.pretrained import push

    folder = Path(args.folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ZooError(f"{folder} is a file; zoo push uploads a weight folder (config.json, model.safetensors, ...)")
    with _quiet_upload():  # one line whatever the hub did: no progress bars, which differ from push to push
        url = push(folder, args.repo, private=args.private or None, revision=args.revision, commit_message=args.message)
    _print(f"pushed {folder} to {args.repo} (commit {url})")


def cmd_pull(argv: Iterable[str]) -> None:

    parser = ArgumentParser(prog="zoo pull", description="Download weights into the caches, for offline use later.")
    parser.add_argument("sources", nargs="+", help="arch.tag, hf-hub:org/repo[@revision] or an https:// URL")
    args = parser.parse_args(list(argv))
    from zoo.pretrained import prefetch

    for source, path in zip(args.sources, prefetch(*args.sources)):
        _print(f"{source}: {path}")


@contextlib.contextmanager
def _quiet_upload() -> Iterator[None]:
    """huggingface_hub's progress bars off and zoo.hub's own "pushed" log line held back (the command prints it)."""
    import logging

    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    logger = logging.getLogger("zoo.hub")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
        if not was_disabled:
            enable_progress_bars()


def _print(text: str) -> None:
    from rich.console import Console

    Console().print(text, highlight=False, soft_wrap=True)
