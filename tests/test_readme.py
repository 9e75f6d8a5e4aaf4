"""The README's generated parts stay generated: the registry table (`zoo list --markdown`), the budget
table and the detection table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from zoo.cli.models import budget_markdown, detection_markdown, registry_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize(
    ("marker", "generate", "how"),
    [
        ("registry", registry_markdown, "the output of `zoo list --markdown`"),
        ("budget", budget_markdown, "zoo.cli.models.budget_markdown()"),
        ("detection", detection_markdown, "zoo.cli.models.detection_markdown()"),
    ],
)
def test_generated_tables_are_current(marker: str, generate, how: str) -> None:
    match = re.search(rf"<!-- {marker}:start -->\n(.*?)\n<!-- {marker}:end -->", README.read_text(), re.S)
    assert match, f"README lacks the {marker} table markers"
    assert match.group(1).strip() == generate().strip(), f"README's {marker} table is stale: replace it with {how}"


def test_readme_opens_with_the_two_commands() -> None:
    first_block = README.read_text().split("```")[1]
    commands = [line for line in first_block.splitlines()[1:] if line.strip()]
    assert len(commands) == 2
    assert "zoo classify lenet5.fmnist samples/*.png" in commands[0]
    assert commands[1].endswith("-m pytest -q")
