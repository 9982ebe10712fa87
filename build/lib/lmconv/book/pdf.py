"""The book as one PDF (``make pdf``), offline: headless Chromium prints every page of the built HTML (charts
drawn by the vendored Vega, formulas by the vendored MathJax), and poppler's ``pdfunite`` joins them in the
order of the table of contents.

Jupyter Book's own routes do not work here: ``pdfhtml`` downloads a Chromium through pyppeteer, ``pdflatex``
needs a TeX installation and drops the interactive charts, and the ``singlehtml`` builder fails on myst-nb's
hidden code cells.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from .. import paths
from ..errors import LmconvError
from ..io import atomic_path


def toc_pages(book_dir: Path) -> list[str]:
    """Every page of the table of contents, in reading order, as paths relative to the HTML root."""
    toc = yaml.safe_load((book_dir / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for e in entries:
            files.append(e["file"])
            walk(e.get("sections", []))

    for part in toc["parts"]:
        walk(part["chapters"])
    return [f"{f}.html" for f in files]


def _tool(names: list[str], package: str) -> str:
    for n in names:
        if found := shutil.which(n):
            return found
    raise LmconvError(f"{names[0]} is not installed", f"install the Debian package {package} (make setup does)")


# Headless Chromium with no background traffic (a closed network refuses it, many connections at a time).
HEADLESS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
)


def print_page(chromium: str, page: Path, out: Path, profile: Path) -> None:
    cmd = [
        chromium,
        *HEADLESS,
        f"--user-data-dir={profile}",
        "--virtual-time-budget=15000",
        "--no-pdf-header-footer",
        f"--print-to-pdf={out}",
        page.as_uri(),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0 or not out.exists() or out.read_bytes()[:5] != b"%PDF-":
        raise LmconvError(f"chromium could not print {page.name}: {r.stderr[-500:]}", "check the HTML build first")


def build_pdf(book_dir: Path | None = None) -> Path:
    """Print the built book to ``_build/pdf/lmconv.pdf`` (written atomically) and return its path."""
    book_dir = book_dir or paths.BOOK
    html = book_dir / "_build" / "html"
    if not (html / "index.html").exists():
        raise LmconvError(f"no built book in {html}", "build it first: make book")
    chromium = _tool(["chromium", "chromium-browser", "google-chrome"], "chromium")
    pdfunite = _tool(["pdfunite"], "poppler-utils")
    pages = toc_pages(book_dir)
    final = book_dir / "_build" / "pdf" / "lmconv.pdf"
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lmconv-pdf-") as tmp:
        parts = []
        for i, rel in enumerate(pages):
            if not (html / rel).exists():
                raise LmconvError(f"the built book lacks {rel}", "rebuild it: make book")
            parts.append(Path(tmp) / f"{i:03d}.pdf")
            print(f"[pdf] {rel}", flush=True)
            print_page(chromium, html / rel, parts[-1], Path(tmp) / "profile")
        with atomic_path(final) as out:
            r = subprocess.run([pdfunite, *map(str, parts), str(out)], capture_output=True, text=True)
            if r.returncode != 0:
                raise LmconvError(f"pdfunite failed: {r.stderr[-500:]}", "check that poppler-utils is installed")
    print(f"[pdf] {final} ({len(pages)} pages of the table of contents)", flush=True)
    return final
