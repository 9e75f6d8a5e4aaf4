"""The hub commands: ``zoo push`` (a weight folder to the Hugging Face Hub) and ``zoo pull`` (into the caches)."""

from __future__ import annotations

from collections.abc import Iterable

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
    from zoo.pretrained import push

    url = push(
        args.folder, args.repo, private=args.private or None, revision=args.revision, commit_message=args.message
    )
    _print(f"pushed {args.folder} → {url}")


def cmd_pull(argv: Iterable[str]) -> None:

    parser = ArgumentParser(prog="zoo pull", description="Download weights into the caches, for offline use later.")
    parser.add_argument("sources", nargs="+", help="arch.tag, hf-hub:org/repo[@revision] or an https:// URL")
    args = parser.parse_args(list(argv))
    from zoo.pretrained import prefetch

    for source, path in zip(args.sources, prefetch(*args.sources)):
        _print(f"{source}: {path}")


def _print(text: str) -> None:
    from rich.console import Console

    Console().print(text, highlight=False, soft_wrap=True)
