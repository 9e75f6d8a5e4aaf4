"""The README's generated parts stay generated: the registry table is `zoo list --markdown`'s output."""

from __future__ import annotations

import re
from pathlib import Path

from zoo.cli.models import registry_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_registry_table_is_current() -> None:
    text = README.read_text()
    match = re.search(r"<!-- registry:start -->\n(.*?)\n<!-- registry:end -->", text, re.S)
    assert match, "README lacks the registry table markers"
    assert match.group(1).strip() == registry_markdown().strip(), (
        "README's registry table is stale: replace it with the output of `zoo list --markdown`"
    )


def test_readme_opens_with_the_two_commands() -> None:
    first_block = README.read_text().split("```")[1]
    commands = [line for line in first_block.splitlines()[1:] if line.strip()]
    assert len(commands) == 2
    assert "zoo classify lenet5.fmnist samples/*.png" in commands[0]
    assert commands[1].endswith("-m pytest -q")
