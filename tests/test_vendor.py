"""Offline assets: the vendored MathJax and the built pages name no CDN, and MathJax keeps its components."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmconv.book import vendor

ROOT = Path(__file__).resolve().parents[1]


def fake_es5(root: Path) -> Path:
    es5 = root / "es5"
    files = {
        "tex-mml-chtml.js": 'r.url="https://cdn.jsdelivr.net/npm/speech-rule-engine@"+r.VERSION+"/lib/mathmaps";x=1',
        "output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff": "font",
        "a11y/explorer.js": 'load("https://unpkg.com/wicked-good-xpath@1.3.0/x.js")',
        "sre/mathmaps/en.json": "{}",
        "ui/menu.js": "menu",
        "tex-svg.js": "not needed",
    }
    for name, text in files.items():
        (es5 / name).parent.mkdir(parents=True, exist_ok=True)
        (es5 / name).write_text(text)
    return es5


def test_vendored_mathjax_keeps_its_components_and_names_no_cdn(tmp_path):
    dest = tmp_path / "mathjax"
    written = vendor.vendor_mathjax(fake_es5(tmp_path), dest)
    names = {f.relative_to(dest).as_posix() for f in written}
    assert names == {
        "tex-mml-chtml.js",
        "output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff",
        "a11y/explorer.js",
        "sre/mathmaps/en.json",
        "ui/menu.js",
    }
    assert all(not vendor.names_a_cdn(f.read_text()) for f in written)
    # only the address is rewritten, to a relative one; the code around it is kept
    assert (dest / "tex-mml-chtml.js").read_text() == 'r.url="speech-rule-engine@"+r.VERSION+"/lib/mathmaps";x=1'


def test_vendoring_without_mathjax_says_how_to_get_it(tmp_path):
    with pytest.raises(SystemExit, match="npm ci"):
        vendor.vendor_mathjax(tmp_path / "missing", tmp_path / "mathjax")
    assert not (tmp_path / "mathjax").exists()


def test_the_shipped_static_files_name_no_cdn():
    static = ROOT / "book" / "_static"
    if not (static / "mathjax" / "tex-mml-chtml.js").exists():
        pytest.skip("the browser assets are not vendored yet (make setup)")
    assert (static / "mathjax" / "a11y" / "explorer.js").exists()
    for f in static.rglob("*"):
        if f.is_file() and f.suffix in (".js", ".css", ".json", ".html"):
            assert not vendor.names_a_cdn(f.read_text(errors="replace")), f


def test_pages_point_altair_fallbacks_at_the_vendored_libraries():
    page = (
        '"vega": "https://cdn.jsdelivr.net/npm/vega@6?noext",\n'
        '"vega-lib": "https://cdn.jsdelivr.net/npm/vega-lib?noext",\n'
        '"vega-lite": "https://cdn.jsdelivr.net/npm/vega-lite@6.4.1?noext",\n'
        '"vega-embed": "https://cdn.jsdelivr.net/npm/vega-embed@7?noext",\n'
        'const THEBE_JS_URL = "https://unpkg.com/thebe@0.8.2/lib/index.js"'
    )
    out = vendor.offline_page(page, "../_static/vega/")
    assert not vendor.names_a_cdn(out)
    assert '"vega": "../_static/vega/vega.min.js"' in out and '"vega-lib": "../_static/vega/vega.min.js"' in out
    assert '"vega-lite": "../_static/vega/vega-lite.min.js"' in out
    assert '"vega-embed": "../_static/vega/vega-embed.min.js"' in out
    for lib in ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js"):
        assert lib in vendor.VENDORED_VEGA.values()


def test_pages_load_mathjax_once_and_not_its_components():
    """Jupyter Book lists every .js under _static (as _static/…): only MathJax's entry point stays on a page."""
    from types import SimpleNamespace

    from sphinx.builders.html._assets import _JavaScript

    app = SimpleNamespace(config=SimpleNamespace(mathjax_path="mathjax/tex-mml-chtml.js"))
    files = ["mathjax/tex-mml-chtml.js", "_static/mathjax/tex-mml-chtml.js", "_static/mathjax/a11y/explorer.js"]
    context = {"script_files": [_JavaScript(f) for f in [*files, "_static/vega/vega.min.js"]]}
    vendor._one_script_per_asset(app, "page", "page.html", context, None)
    assert [js.filename for js in context["script_files"]] == ["mathjax/tex-mml-chtml.js", "_static/vega/vega.min.js"]
