"""The documentation stays whole: every page of the mkdocs.yml nav exists, every relative link and picture of
the README and the pages resolves (to a file, and to a heading when it names one), and the README stays a
front page (at most 300 lines). ``mkdocs build --strict`` in CI checks the rendered site as well."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest
import yaml
from docs_text import DOCS, README, ROOT, doc_pages

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# the README's CI badge points at the repository's own Actions page: on GitHub, ../../actions/... from the README
# is https://github.com/<owner>/<repo>/actions/..., whatever the owner or fork; it is not a file of the repository
GITHUB_PAGES = "../../actions/"


def _nav_pages(nav) -> list[str]:
    pages = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def _prose(text: str) -> str:
    """The text outside fenced code blocks and inline code, where a link is a link."""
    text = re.sub(r"^( *)(```|~~~).*?^\1\2", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _slug(heading: str) -> str:
    """A heading's anchor as Python-Markdown's toc (mkdocs) and GitHub make it, for plain-text headings."""
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(page: Path) -> set[str]:
    return {_slug(h) for h in re.findall(r"^#+ +(.+?) *$", _prose(page.read_text()), re.M)}


def test_every_nav_page_exists() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = _nav_pages(config["nav"])
    assert "index.md" in pages
    missing = [page for page in pages if not (DOCS / page).is_file()]
    assert not missing, f"mkdocs.yml's nav names pages that do not exist: {missing}"
    left_out = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if str(p.relative_to(DOCS)) not in pages)
    assert not left_out, f"pages under docs/ missing from mkdocs.yml's nav: {left_out}"


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_pictures_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"[a-z]+:", target) or (page == README and target.startswith(GITHUB_PAGES)):
            continue  # https://, mailto: ...
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.is_file():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_readme_is_a_front_page() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines: move the depth into a docs/ page"
    assert "[start:tour]" in README.read_text(), "docs/index.md includes the README's tour by its snippet markers"


def test_ci_builds_the_site_and_the_workflow_runs_ci() -> None:
    """GitHub runs the project's own CI script on every push and pull request, and that script builds the site
    strictly (a broken link or docstring fails CI) before the tests."""
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert {"push", "pull_request"} <= set(triggers)
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert any(run.strip() == "bash .ci/run" for run in runs)
    script = (ROOT / ".ci" / "run").read_text()
    assert '".[dev,docs]"' in script
    assert script.index("mkdocs build --strict") < script.index("pytest -q")
