"""The documentation as the tests read it: the README (the front page) and every page of the site in docs/.

A fact a test checks may live on any page, so the tests read it through here instead of opening README.md:
``docs_text()`` is the README and every page together, ``blocks(marker)`` the generated blocks
(``<!-- marker:start --> ... <!-- marker:end -->``) and the pages that hold them."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def doc_pages() -> list[Path]:
    """README.md, then every Markdown page under docs/ (sorted)."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def docs_text() -> str:
    """README.md and every page of docs/, one text."""
    return "\n\n".join(page.read_text() for page in doc_pages())


def pages_with(marker: str) -> list[Path]:
    """The pages (README.md, docs/**.md) that hold the ``marker`` block: one, or a few that show the same table."""
    holders = [page for page in doc_pages() if f"<!-- {marker}:start -->\n" in page.read_text()]
    assert holders, f"no page holds the {marker} block (<!-- {marker}:start --> ... <!-- {marker}:end -->)"
    return holders


def blocks(marker: str) -> list[tuple[Path, str]]:
    """(page, the text between ``<!-- marker:start -->`` and ``<!-- marker:end -->``) for every page holding it."""
    found = []
    for page in pages_with(marker):
        match = re.search(rf"<!-- {marker}:start -->\n(.*?)\n<!-- {marker}:end -->", page.read_text(), re.S)
        assert match, f"{page.name} lacks the end marker of the {marker} block"
        found.append((page, match.group(1)))
    return found


def block(marker: str) -> str:
    """The ``marker`` block's text; where several pages show it, every copy must be the same."""
    (first_page, text), *others = blocks(marker)
    for page, other in others:
        assert other == text, f"the {marker} block differs between {first_page.name} and {page.name}"
    return text
