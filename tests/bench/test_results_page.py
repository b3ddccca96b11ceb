"""bench/results_page.py: the README block a bench script owns is replaced, and only it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from results_page import write_readme_section  # noqa: E402


def test_the_block_between_its_markers_is_replaced_and_the_rest_kept(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        "# title\n\nbefore\n\n<!-- bench:methods -->\nold table\n<!-- /bench:methods -->\n\nafter\n"
    )
    argv = ["bench/methods.py", "--suite"]
    write_readme_section("methods", "| a | b |\n|---|---|", argv=argv, readme=readme)
    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n\n<!-- bench:methods -->\n\n| a | b |\n|---|---|\n")
    assert text.endswith("<!-- /bench:methods -->\n\nafter\n")
    assert "old table" not in text
    assert "Written by `python bench/methods.py --suite` at commit " in text
    assert "[docs/results/methods.md](docs/results/methods.md)" in text
    write_readme_section("methods", "| c |", argv=argv, readme=readme)  # again: one block
    again = readme.read_text()
    assert again.count("<!-- bench:methods -->") == 1 and "| c |" in again and "| a |" not in again


@pytest.mark.parametrize(
    "text",
    [
        "no markers\n",
        "<!-- /bench:methods -->\n<!-- bench:methods -->\n",
        "<!-- bench:methods -->\n<!-- bench:methods -->\n<!-- /bench:methods -->\n",
    ],
)
def test_a_readme_without_one_ordered_pair_of_markers_is_refused_and_left_alone(tmp_path, text):
    readme = tmp_path / "README.md"
    readme.write_text(text)
    with pytest.raises(ValueError, match=r"README.md: expected one '<!-- bench:methods -->' line"):
        write_readme_section("methods", "x", argv=["bench/methods.py"], readme=readme)
    assert readme.read_text() == text


def test_the_repository_readme_has_the_suite_block():
    text = (REPO / "README.md").read_text()
    assert text.count("<!-- bench:methods -->") == 1
    assert text.index("<!-- bench:methods -->") < text.index("<!-- /bench:methods -->")
