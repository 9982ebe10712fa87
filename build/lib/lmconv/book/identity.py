"""One home for where the project lives and which release a page belongs to: ``lmconv.REPOSITORY`` and
``lmconv.__version__`` (its tag ``lmconv.RELEASE_TAG``). The files that cannot import them (every chapter's
run-it-yourself cell, ``_config.yml``'s repository and launch buttons, ``CITATION.cff``, the README's install
line) are written from them by :func:`write` (``lmconv identity --write``) and checked
by :func:`stale` (a test), so a new address or release is one edit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .. import RELEASE_TAG, REPOSITORY, __version__, paths
from ..io import write_text

CELL_TEMPLATE = paths.ROOT / "scripts" / "run_yourself_cell.md"
_CELL = re.compile(
    r"```\{code-cell\} ipython3\n:tags: \[hide-cell\]\n# Run this (?:chapter|page) yourself.*?```\n", re.S
)
_PARAMETERS = re.compile(r"```\{code-cell\} ipython3\n:tags: \[parameters, remove-cell\]\n.*?```\n\n", re.S)


def install_spec() -> str:
    """What a notebook outside a checkout installs: this release of the package, with the chapters' extra."""
    return f"lmconv[notebooks] @ git+{REPOSITORY}@{RELEASE_TAG}"


def run_yourself_cell(what: str = "chapter") -> str:
    """The hidden cell every chapter (``what``: "chapter", or "page" for the other pages that carry it) has after
    its parameters cell (from ``scripts/run_yourself_cell.md``)."""
    text = CELL_TEMPLATE.read_text(encoding="utf-8").replace("{install}", install_spec()).replace("{what}", what)
    return text.rstrip("\n") + "\n"


def _what(page: Path) -> str:
    return "chapter" if page.name[0].isdigit() else "page"


@dataclass(frozen=True)
class Field:
    """One place a file repeats the identity: the pattern that finds it (group 1 is the value) and the value."""

    path: Path
    pattern: str
    value: str


def fields(root: Path = paths.ROOT) -> list[Field]:
    """Every place outside the package that repeats the address, the version or the tag."""
    return [
        Field(root / "_config.yml", r"repository:\n  url: (\S+)", REPOSITORY),
        Field(root / "CITATION.cff", r'repository-code: "([^"]+)"', REPOSITORY),
        Field(root / "CITATION.cff", r"\nversion: (\S+)", __version__),
        Field(root / "README.md", r'pip install "(lmconv\[notebooks\] @ git\+[^"]+)"', install_spec()),
    ]


def chapter_pages(root: Path = paths.ROOT) -> list[Path]:
    """The notebooks that carry the run-it-yourself cell: every numbered chapter, and the other pages that have
    it."""
    pages = sorted((root / "notebooks").glob("*.md"))
    return [p for p in pages if p.name[0].isdigit() or _CELL.search(p.read_text(encoding="utf-8"))]


def stale(root: Path = paths.ROOT) -> list[str]:
    """Each place that disagrees with the one home, in words (empty when all agree)."""
    out = []
    for f in fields(root):
        m = re.search(f.pattern, f.path.read_text(encoding="utf-8")) if f.path.exists() else None
        if m is None:
            out.append(f"{f.path.relative_to(root)}: no match for {f.pattern!r}")
        elif m.group(1) != f.value:
            out.append(f"{f.path.relative_to(root)}: {m.group(1)!r}, expected {f.value!r}")
    for page in chapter_pages(root):
        cell = run_yourself_cell(_what(page))
        found = _CELL.findall(page.read_text(encoding="utf-8"))
        if found != [cell]:
            out.append(f"{page.relative_to(root)}: its run-it-yourself cell is {'missing' if not found else 'stale'}")
    return out


def write(root: Path = paths.ROOT) -> list[Path]:
    """Rewrite every place that disagrees (the cell is added after the parameters cell where missing); return the
    files changed."""
    changed: set[Path] = set()
    for f in fields(root):
        text = f.path.read_text(encoding="utf-8")
        m = re.search(f.pattern, text)
        if m and m.group(1) != f.value:
            write_text(f.path, text[: m.start(1)] + f.value + text[m.end(1) :])
            changed.add(f.path)
    for page in chapter_pages(root):
        cell = run_yourself_cell(_what(page))
        text = page.read_text(encoding="utf-8")
        found, m = _CELL.search(text), _PARAMETERS.search(text)
        if found:
            new = text[: found.start()] + cell + text[found.end() :]
        else:
            new = text[: m.end()] + cell + "\n" + text[m.end() :]
        if new != text:
            write_text(page, new)
            changed.add(page)
    return sorted(changed)
