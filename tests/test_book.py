"""The book builds from the smoke suite with the network cut; its charts draw offline in Chromium; papermill
injects parameters; nbval re-runs the executed chapters."""

from __future__ import annotations

import html as html_mod
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
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
    # no file a reader's browser loads names a CDN, nor any executed notebook (its downloads open offline too)
    from lmconv.book import vendor

    for nb in (built_book / "chapters").glob("*.ipynb"):
        assert not vendor.names_a_cdn(nb.read_text()), nb.name

    for f in html.rglob("*"):
        if f.is_file() and f.suffix in (".html", ".js", ".css", ".json"):
            assert not vendor.names_a_cdn(f.read_text(errors="replace")), f.relative_to(html)
    # one MathJax script per page: its components load only when MathJax asks for them
    assert len(re.findall(r'<script[^>]+src="[^"]*mathjax/', (html / "chapters" / "methods.html").read_text())) == 1


@pytest.mark.slow
def test_every_caption_links_the_code_that_drew_it(built_book):
    """Every figure and table of every chapter ends its caption with the function that made it, linked to that
    function's lines in the repository at the build commit (lmconv.book.provenance); no caption types it."""
    from lmconv import book
    from lmconv.book import provenance

    html = built_book / "_build" / "html" / "chapters"
    at = provenance.commit()
    for name in book.toc_chapters(built_book):
        page = (html / f"{name}.html").read_text()
        captions = re.findall(r"<figcaption>(.*?)</figcaption>", page, re.S)
        for cap in captions:
            links = re.findall(r'(?:Drawn|Made) by <a class="reference external" href="([^"]+)"', cap)
            assert len(links) == 1, f"{name}: a caption without its provenance: {re.sub('<[^>]+>', '', cap)[:160]}"
            assert links[0].startswith(f"{provenance.REPOSITORY}/blob/{at}/src/lmconv/"), links[0]
            assert re.search(r"\.py#L\d+-L\d+$", links[0]), links[0]
        source = (book.notebook_source(name)).read_text()
        assert "Drawn by {py:func}" not in source and "{download}" not in source, name


@pytest.mark.slow
def test_every_chart_is_described_by_its_caption(built_book):
    """A reader who cannot see a chart hears its caption: each chart's spec carries the caption as its
    ``description`` (Vega's ARIA label on the drawn SVG)."""
    from lmconv import book
    from lmconv.book import provenance

    html = built_book / "_build" / "html" / "chapters"
    n = 0
    for name in book.toc_chapters(built_book):
        page = (html / f"{name}.html").read_text()
        for fig in re.findall(r"<figure.*?</figure>", page, re.S):
            start = fig.rfind(provenance._SPEC_START)
            if start < 0:
                continue
            spec, _ = json.JSONDecoder().raw_decode(fig, start + len(provenance._SPEC_START))
            text = html_mod.unescape(re.sub("<[^>]+>", "", fig.split("<figcaption>")[-1]))
            caption = " ".join(text.replace("\\(", "").replace("\\)", "").split())  # math: as its source
            desc = spec.get("description", "")
            assert desc and " ".join(desc.split()[:6]) in caption, f"{name}: {desc[:80]!r} vs {caption[:80]!r}"
            n += 1
    assert n > 20


def test_describe_sets_the_description_of_a_chart_and_leaves_other_html():
    from lmconv.book import provenance

    chart = 'x = 1; })({"mark": "line", "usermeta": {"lmconv": {"by": "f"}}}, {"mode": "vega-lite"});'
    out = provenance.describe(chart, "Loss over training.")
    spec, _ = json.JSONDecoder().raw_decode(out, out.rfind(provenance._SPEC_START) + 3)
    assert spec["description"] == "Loss over training." and spec["mark"] == "line"
    assert out.endswith(', {"mode": "vega-lite"});')
    assert provenance.describe("<table></table>", "x") == "<table></table>"


@pytest.mark.slow
def test_executed_chapters_print_no_warnings(built_book):
    """A reader sees no library warning in the book: no chapter writes a warning to its cell outputs."""
    for nb_file in sorted((built_book / "chapters").glob("*.ipynb")):
        for cell in json.loads(nb_file.read_text())["cells"]:
            for out in cell.get("outputs", []):
                text = "".join(out.get("text", "")) if out.get("output_type") == "stream" else ""
                assert "Warning" not in text, f"{nb_file.name}: {text[:300]}"


ALLOWED_LINKS = ("https://github.com/lmconv/lmconv", "https://colab.research.google.com/", "https://mybinder.org/")


@pytest.mark.slow
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


def _render(chromium: str, page: Path, profile: Path) -> subprocess.CompletedProcess:
    """Load ``page`` in headless Chromium with the network cut; the DOM after scripts ran on stdout, the
    console and network log on stderr."""
    from lmconv.book import pdf

    cmd = netless(
        [
            chromium,
            *pdf.HEADLESS,
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ]
    )
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


@pytest.mark.slow
@pytest.mark.browser
def test_every_page_renders_offline_in_chromium(built_book, tmp_path):
    """Each page of the book in Chromium without a network: no failed request, no script error, every chart
    container drawn by Vega, every formula typeset by the vendored MathJax."""
    from lmconv.book import pdf

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("chromium is not installed (make setup installs it as root)")
    html = built_book / "_build" / "html"
    pages = pdf.toc_pages(built_book)
    assert len(pages) >= 15
    charts = 0
    for rel in pages:
        r = _render(chromium, html / rel, tmp_path / "profile")
        dom, log = r.stdout, r.stderr
        assert "<body" in dom, f"{rel}: chromium rendered nothing ({log[-500:]})"
        # every resource the page loaded after its scripts ran is a local file that exists
        for tag, url in re.findall(r'<(script|link|img|iframe|source)\b[^>]*?\b(?:src|href)="([^"]+)"', dom):
            assert not url.startswith(("http:", "https:", "//")), f"{rel}: <{tag}> loads {url} from the network"
            if not url.startswith(("data:", "blob:", "#")):
                target = (html / rel).parent / url.split("?")[0].split("#")[0]
                assert target.exists(), f"{rel}: <{tag}> loads {url}, which is not in the build"
        assert "Uncaught" not in log, f"{rel}: a script error: {log[-800:]}"
        assert not re.search(r">\s*Error loading script", dom), rel  # what Altair's loader shows on failure
        source = (html / rel).read_text()
        containers = len(set(re.findall(r'id="(altair-viz-[0-9a-f]+)"', source)))
        drawn = dom.count('class="marks"')
        assert drawn >= containers, f"{rel}: vega drew {drawn} of {containers} charts"
        charts += containers
        if 'class="math notranslate' in source:
            assert "<mjx-container" in dom, f"{rel}: MathJax did not typeset the formulas"
    assert charts >= 10
    first = _render(chromium, html / "chapters" / "01_suite.html", tmp_path / "profile").stdout
    assert re.search(r'<path[^>]+role="graphics-symbol"|role="graphics-object"', first)


AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"  # npm axe-core, pinned in package-lock.json
# Run after the page's own scripts (Vega, MathJax) have drawn; the violations are written into the DOM Chromium dumps.
AXE_RUN = """<script src="{axe}"></script><script>
window.addEventListener("load", () => setTimeout(() => axe.run(document, {{resultTypes: ["violations"]}}).then(r => {{
  const out = document.createElement("pre");
  out.id = "axe-violations";
  out.textContent = JSON.stringify(r.violations.map(v => ({{id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.length, first: v.nodes.slice(0, 3).map(n => n.target.join(" "))}})));
  document.body.appendChild(out);
}}), 2000));
</script></body>"""
# What fails the check: axe-core's two highest impacts (WCAG 2 A/AA rules and axe's best practices).
AXE_FAILS = ("critical", "serious")


def axe_violations(chromium: str, page: Path, profile: Path) -> list[dict]:
    """axe-core's violations on ``page`` in headless Chromium, offline (a copy of the page beside it, so its
    relative links resolve, with axe injected)."""
    probe = page.with_name(page.stem + ".axe-check.html")
    probe.write_text(page.read_text().replace("</body>", AXE_RUN.format(axe=AXE.as_uri()), 1))
    try:
        dom = _render(chromium, probe, profile).stdout
    finally:
        probe.unlink()
    m = re.search(r'<pre id="axe-violations">(.*?)</pre>', dom, re.S)
    assert m, f"{page.name}: axe-core did not report (it did not run in {len(dom)} characters of DOM)"
    return json.loads(html_mod.unescape(m.group(1)))


@pytest.mark.slow
@pytest.mark.browser
def test_every_page_passes_an_accessibility_check(built_book, tmp_path):
    """axe-core on every page of the book, offline: no critical or serious violation (every chart has its
    caption as its text description, every image an alternative text, contrast and landmarks as WCAG asks)."""
    from lmconv.book import pdf

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("chromium is not installed (make setup installs it as root)")
    assert AXE.exists(), "axe-core is not installed: make setup (npm ci from package-lock.json)"
    html = built_book / "_build" / "html"
    found = {}
    for rel in pdf.toc_pages(built_book):
        bad = [v for v in axe_violations(chromium, html / rel, tmp_path / "profile") if v["impact"] in AXE_FAILS]
        if bad:
            found[rel] = bad
    assert not found, json.dumps(found, indent=1)[:6000]


@pytest.mark.slow
@pytest.mark.browser
def test_pdf_holds_every_page(built_book):
    from lmconv.book import pdf

    if not (shutil.which("chromium") and shutil.which("pdfunite")):
        pytest.skip("chromium and poppler-utils are not installed (make setup installs them as root)")
    out = pdf.build_pdf(built_book)
    assert out.read_bytes()[:5] == b"%PDF-"
    info = subprocess.run(["pdfinfo", str(out)], capture_output=True, text=True).stdout
    n_pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))
    assert n_pages >= len(pdf.toc_pages(built_book))
    text = subprocess.run(["pdftotext", str(out), "-"], capture_output=True, text=True).stdout
    assert "The suite" in text and "References" in text


# The executed chapters nbval re-runs in a plain kernel: one per lens and the scorecard, which reads them all. The
# book build has just executed every chapter through the same parameters cell and chapter modules, so the others
# add time (about 2.5 min for all sixteen), not a new path; LMCONV_NBVAL_ALL=1 re-runs every one.
NBVAL_CHAPTERS = ("02_kl_convergence", "05_activations", "07_spectral_stability", "scorecard")


@pytest.mark.slow
def test_nbval_reruns_the_executed_chapters(built_book):
    every = sorted((built_book / "chapters").glob("*.ipynb"))
    assert {nb.stem for nb in every} >= set(NBVAL_CHAPTERS)
    nbs = every if os.environ.get("LMCONV_NBVAL_ALL") else [nb for nb in every if nb.stem in NBVAL_CHAPTERS]
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", *map(str, nbs)],
        capture_output=True,
        text=True,
        cwd=built_book / "chapters",
        env=os.environ,
    )
    assert r.returncode == 0, r.stdout[-3000:]
    assert " passed" in r.stdout


def test_the_build_records_the_time_of_every_stage(built_book):
    """make bench reports a first build stage by stage: every suite trained, every chapter, the HTML."""
    from lmconv import book

    records = book.build_records()
    assert set(records) == {"first", "latest"}  # the first build of a data home is kept
    rec = records["latest"]  # the build of this fixture
    names = [s["stage"] for s in rec["stages"]]
    assert names[0] == "train smoke" and names[-1] == "html"
    assert [n.removeprefix("chapter ") for n in names if n.startswith("chapter ")] == book.toc_chapters(built_book)
    assert rec["total_s"] == pytest.approx(sum(s["seconds"] for s in rec["stages"]), abs=0.1 * len(names))
    assert all(s["seconds"] >= 0 for s in rec["stages"]) and rec["profile"] == "smoke"


def test_an_interrupted_build_keeps_its_stage_times(tmp_path, monkeypatch):
    """The stages an interrupted make book finished are carried into the next build's record, numbered by attempt;
    an unfinished build of another profile is not."""
    from lmconv import book

    monkeypatch.setenv("LMCONV_HOME", str(tmp_path))
    first = book.BuildStages("p")
    first.add("train p", 100.0)
    first.add("train q", 50.0)  # then the build is stopped: no record_build
    assert not book.build_records() and (book.builds_dir() / "unfinished.json").exists()
    again = book.BuildStages("p")
    again.add("train q", 20.0)
    again.add("html", 1.0)
    rec = book.record_build("p", again.all())
    assert [(s["stage"], s["seconds"], s["attempt"]) for s in rec["stages"]] == [
        ("train p", 100.0, 1), ("train q", 50.0, 1), ("train q", 20.0, 2), ("html", 1.0, 2)
    ]  # fmt: skip
    assert rec["total_s"] == 171.0 and book.build_records()["first"] == rec
    assert not (book.builds_dir() / "unfinished.json").exists()
    other = book.BuildStages("smoke")
    other.add("train smoke", 3.0)
    assert [s["stage"] for s in book.BuildStages("p").all()] == []  # smoke's unfinished build is not p's
    assert book.BuildStages("smoke").earlier == [{"stage": "train smoke", "seconds": 3.0, "attempt": 1}]


@pytest.mark.slow
def test_one_chapter_builds_before_the_whole_book(smoke_suite, tmp_path):
    """``make chapter NAME=… --build`` on a fresh checkout, before any ``make book``: the executed chapter is built
    alone (its links to the unexecuted pages unresolved) instead of Sphinx stopping on the missing root page."""
    from lmconv import book

    folder = tmp_path / "book"
    shutil.copytree(ROOT / "book", folder, ignore=shutil.ignore_patterns("_build", "chapters", "_generated"))
    with pytest.raises(book.LmconvError, match="no executed chapter"):
        book.build_html(folder)
    book.run_chapter("01_suite", {"profile": "smoke"}, folder, quiet=True)
    html = book.build_html(folder)
    toc = (folder / "_build" / "partial_toc.yml").read_text()
    assert "root: chapters/01_suite" in toc and "intro" not in toc
    assert (html / "chapters" / "01_suite.html").exists() and (html / "index.html").exists()


@pytest.fixture(scope="module")
def bundle(built_book, tmp_path_factory) -> Path:
    """The release bundle of the built smoke book."""
    from lmconv.book import release

    return release.make_bundle(tmp_path_factory.mktemp("release"), built_book)


@pytest.mark.slow
def test_release_bundle_checksums_verify(bundle):
    assert (bundle / "html.tar.gz").exists() and (bundle / "SHA256SUMS").exists()
    assert list((bundle / "notebooks").glob("*.ipynb"))
    assert (bundle / "suites" / "smoke-manifest.json").exists()
    # the tables are those of the analyses the chapters ran (their ledgers), each with the request that made it
    folders = sorted((bundle / "tables" / "smoke" / "lmconv").iterdir())
    assert folders and all((f / "pairs.parquet").exists() for f in folders)
    assert all((f / "downstream.parquet").exists() and (f / "downstream_pairs.parquet").exists() for f in folders)
    used = {c for f in folders for c in json.loads((f / "request.json").read_text())["chapters"]}
    assert {"02_kl_convergence", "05_activations", "09_three_lenses"} <= used
    for f in folders:
        request = json.loads((f / "request.json").read_text())["request"]
        pairs = pd.read_parquet(f / "pairs.parquet")
        assert sorted(int(st) for st in pairs.step.unique()) == request["steps"]
        assert set(pairs["size"]) == set(request["sizes"])
    # the one-seed sweep has run logs but no cross-seed tables
    assert list((bundle / "tables" / "smoke-sweep" / "runs").glob("*/train_log.parquet"))
    assert not (bundle / "tables" / "smoke-sweep" / "cosine").exists()
    r = subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=bundle, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    # a tampered table fails the check
    table = folders[0] / "pairs.parquet"
    original = table.read_bytes()
    table.write_bytes(b"tampered")
    r = subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=bundle, capture_output=True, text=True)
    table.write_bytes(original)
    assert r.returncode != 0


# Tables mode runs these from the bundle alone: the KL chapter (the engine's tables), the spectral one (the runs'
# logs and spectra as well) and the suite page (status, training times, the checkpoints' checksums).
TABLES_CHAPTERS = ("01_suite", "02_kl_convergence", "07_spectral_stability")


@pytest.mark.parametrize("name", TABLES_CHAPTERS)
def test_a_chapter_runs_from_the_release_bundle_alone(built_book, bundle, name, tmp_path):
    """In a data home with no suite, checkpoint or cache, a chapter run from the bundle's tables glues exactly
    what the built book glued, and trains nothing."""
    from lmconv import book

    copy = tmp_path / "book"
    shutil.copytree(built_book, copy, ignore=shutil.ignore_patterns("_build", "chapters", "_generated"))
    home = tmp_path / "home"
    cmd = [sys.executable, "-m", "lmconv", "chapter", name, "--profile", "smoke", "--tables", str(bundle)]
    r = subprocess.run(
        netless([*cmd, "--book-dir", str(copy)]),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=os.environ | {"LMCONV_HOME": str(home)},
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    got = book.glued_values(copy / "chapters" / f"{name}.ipynb")
    want = book.glued_values(built_book / "chapters" / f"{name}.ipynb")
    assert got.keys() == want.keys()
    assert {k for k in got if got[k] != want[k]} == set()
    assert not list(home.glob("suites/*/*/step*")), "tables mode trained a suite"
