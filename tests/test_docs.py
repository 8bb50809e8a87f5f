"""The documentation: every relative link resolves, every registered model has its page, every `docs/...md`
path the code and the docs mention exists, every table row has its header's cells, and no page speaks of
how the project's work was organised."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dglmm.models import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", *DOCS.rglob("*.md")])

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
DOC_PATH = re.compile(r"\bdocs/[\w./-]+\.md\b")


def relative_links(page: Path) -> list[str]:
    """The targets of the page's markdown links that point into the repository (no URL, no bare anchor)."""
    targets = [m.group(1) for m in LINK.finditer(page.read_text())]
    return [t.split("#", 1)[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def missing(target: Path) -> bool:
    return not target.exists()


def test_the_link_checker_sees_a_dangling_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[ok](https://example.org) [anchor](#x) [here](page.md#top) [gone](nowhere.md)\n")
    assert relative_links(page) == ["page.md", "nowhere.md"]
    assert [t for t in relative_links(page) if missing(page.parent / t)] == ["nowhere.md"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    dangling = [t for t in relative_links(page) if missing(page.parent / t)]
    assert not dangling, f"{page.relative_to(ROOT)} links to missing files: {dangling}"


def test_every_docs_path_mentioned_anywhere_exists():
    """`docs/<page>.md` written in code, tests, recipes, notebooks or pages (not as a link) names a real page."""
    sources = [*PAGES, *ROOT.glob("dglmm/**/*.py"), *ROOT.glob("recipes/*.py"), *ROOT.glob("benchmarks/*.py"),
               *ROOT.glob("tests/**/*.py"), *ROOT.glob("notebooks/*.ipynb"), ROOT / "pyproject.toml"]
    stale = sorted({f"{src.relative_to(ROOT)}: {path}" for src in sources if src != Path(__file__)
                    for path in DOC_PATH.findall(src.read_text())
                    if not (ROOT / path).exists()})
    assert not stale, "\n".join(stale)


def test_every_model_has_a_page_linked_from_the_index():
    index = (DOCS / "models" / "index.md").read_text()
    for name in REGISTRY:
        assert (DOCS / "models" / f"{name}.md").is_file(), name
        assert f"]({name}.md)" in index, f"docs/models/index.md does not link {name}.md"


def test_the_index_reaches_every_page():
    """Every page under docs/ is linked from some page (nothing is orphaned)."""
    linked = {(page.parent / t).resolve() for page in PAGES for t in relative_links(page)}
    orphans = [p.relative_to(ROOT).as_posix() for p in DOCS.rglob("*.md") if p.resolve() not in linked]
    assert not orphans, orphans


#: how the work on the project was organised is no concern of a user: words that speak of it
ORGANISATIONAL = re.compile(r"\b(issues?|sessions?|branch(es)?|helpers?|coordinator|worktrees?|round \d|this round|by me|of mine|"
                            r"stopped by me)\b|/work/", re.IGNORECASE)


def organisational_words(text: str) -> list[str]:
    return [m.group(0) for m in ORGANISATIONAL.finditer(text)]


def test_the_word_check_catches_them():
    assert organisational_words("measured in the last session on branch kgat (issue 23), runs in /work/runs") == [
        "session", "branch", "issue", "/work/"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_page_speaks_of_how_the_work_was_organised(page):
    found = organisational_words(page.read_text())
    assert not found, f"{page.relative_to(ROOT)}: {found}"


PIPE = re.compile(r"(?<!\\)\|")


def uneven_table_rows(text: str) -> list[str]:
    """Rows of the markdown tables (outside code fences) whose cell count differs from their header's: an
    unescaped ``|`` inside a cell (``|x|``, even in a code span) is a column break on GitHub and cuts the row."""
    found, width, fenced = [], None, False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if fenced or not line.startswith("|"):
            width = None
            continue
        cells = len(PIPE.split(line.strip().strip("|").replace("\\\\", "")))
        if width is None:
            width = cells
        elif cells != width:
            found.append(line[:80])
    return found


def test_the_table_check_sees_a_cut_row():
    table = "| a | b |\n|---|---|\n| `1/|N|` | 2 |\n| `1/\\|N\\|` | 2 |\n"
    assert uneven_table_rows(table) == ["| `1/|N|` | 2 |"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_table_row_has_its_header_s_cells(page):
    found = uneven_table_rows(page.read_text())
    assert not found, f"{page.relative_to(ROOT)}: rows with another number of cells than the header: {found}"
