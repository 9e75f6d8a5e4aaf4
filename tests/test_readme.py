"""The README's generated parts stay generated: the registry table (`zoo list --markdown`) and the budget table."""

from __future__ import annotations

import re
from pathlib import Path

from zoo.cli.models import budget_markdown, registry_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_registry_table_is_current() -> None:
    text = README.read_text()
    match = re.search(r"<!-- registry:start -->\n(.*?)\n<!-- registry:end -->", text, re.S)
    assert match, "README lacks the registry table markers"
    assert match.group(1).strip() == registry_markdown().strip(), (
        "README's registry table is stale: replace it with the output of `zoo list --markdown`"
    )


def test_budget_table_is_current() -> None:
    match = re.search(r"<!-- budget:start -->\n(.*?)\n<!-- budget:end -->", README.read_text(), re.S)
    assert match, "README lacks the budget table markers"
    assert match.group(1).strip() == budget_markdown().strip(), (
        "README's budget table is stale: replace it with zoo.cli.models.budget_markdown()"
    )


def test_readme_opens_with_the_two_commands() -> None:
    first_block = README.read_text().split("```")[1]
    commands = [line for line in first_block.splitlines()[1:] if line.strip()]
    assert len(commands) == 2
    assert "zoo classify lenet5.fmnist samples/*.png" in commands[0]
    assert commands[1].endswith("-m pytest -q")
