"""The book builds from the smoke suite with the network cut; its charts draw offline in Chromium; papermill
injects parameters; nbval re-runs the executed chapters."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import netless

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_book_builds_every_chapter(built_book):
    from lmconv import book

    html = built_book / "_build" / "html"
    for name in book.toc_chapters(built_book):
        assert (html / "chapters" / f"{name}.html").exists(), name
        assert (built_book / "chapters" / f"{name}.ipynb").exists()
    page = (html / "chapters" / "01_suite.html").read_text()
    assert "vega-embed" in page and '"$schema": "https://vega.github.io/schema/vega-lite' in page
    assert "cdn.jsdelivr.net" not in page.replace("https://cdn.jsdelivr.net/npm/vega", "")


ALLOWED_LINKS = ("https://github.com/lmconv/lmconv", "https://colab.research.google.com/", "https://mybinder.org/")


def test_no_external_urls_except_launch_and_repository_links(built_book):
    """No script, style or image is loaded from elsewhere; the only outside links are launch/repository buttons."""
    html = built_book / "_build" / "html"
    for page in html.rglob("*.html"):
        text = page.read_text()
        for m in re.finditer(r'<(script|link|img)[^>]+(src|href)="(https?:)?//[^"]+"', text):
            raise AssertionError(f"{page.name} loads {m.group(0)}")
        for m in re.finditer(r'href="(https?://[^"]+)"', text):
            assert m.group(1).startswith(ALLOWED_LINKS), f"{page.name} links outside the book: {m.group(1)}"


@pytest.mark.slow
def test_papermill_injected_the_profile(built_book):
    nb = json.loads((built_book / "chapters" / "01_suite.ipynb").read_text())
    assert nb["metadata"]["papermill"]["parameters"]["profile"] == "smoke"
    injected = [c for c in nb["cells"] if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    assert injected and 'profile = "smoke"' in "".join(injected[0]["source"])
    # the glued number of sizes is the smoke profile's (2), not the notebook default's (3)
    glued = [
        o
        for c in nb["cells"]
        for o in c.get("outputs", [])
        if o.get("metadata", {}).get("scrapbook", {}).get("name") == "n_sizes"
    ]
    assert glued and glued[0]["data"]["application/papermill.record/text/plain"] == "2"


@pytest.mark.slow
@pytest.mark.browser
def test_chart_is_drawn_offline_in_chromium(built_book, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("chromium is not installed (make setup installs it as root)")
    page = built_book / "_build" / "html" / "chapters" / "01_suite.html"
    cmd = netless(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--disable-sync",
            "--disable-quic",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ]
    )
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    dom = r.stdout
    assert "Error loading script: http" not in dom  # the message vega-embed's loader renders on failure
    assert dom.count('class="marks"') >= 2, "vega did not draw the charts"
    assert re.search(r'<path[^>]+role="graphics-symbol"|role="graphics-object"', dom)


@pytest.mark.slow
def test_nbval_reruns_the_executed_chapters(built_book):
    nbs = sorted((built_book / "chapters").glob("*.ipynb"))
    assert nbs
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", *map(str, nbs)],
        capture_output=True,
        text=True,
        cwd=built_book / "chapters",
        env=os.environ,
    )
    assert r.returncode == 0, r.stdout[-3000:]
    assert " passed" in r.stdout
