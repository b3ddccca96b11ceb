"""The documentation lives in the repository: a short README, docs/ whose links resolve, no
link outside the repository, and results pages that say where their numbers come from."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def test_readme_is_short():
    assert (REPO / "README.md").stat().st_size <= 10 * 1024


def test_no_page_points_outside_the_repository():
    for page in PAGES:
        assert "../shared" not in page.read_text(encoding="utf-8"), page.relative_to(REPO)


def test_relative_links_resolve():
    for page in PAGES:
        for target, _anchor in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            resolved = (page.parent / target).resolve()
            assert resolved.exists(), f"{page.relative_to(REPO)} links to missing {target}"
            assert REPO in resolved.parents or resolved == REPO, target


def test_results_pages_carry_their_provenance():
    pages = [p for p in (REPO / "docs" / "results").glob("*.md") if p.name != "README.md"]
    assert pages, "docs/results has no page written by a bench script"
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "Written by `bench/" in text, page.name
        for field in ("- commit: ", "- date: ", "- machine: ", "- command: `python bench/"):
            assert field in text, f"{page.name} lacks {field.strip()}"
