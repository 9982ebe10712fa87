"""What every chapter module shares: parameters read once from the page, values glued by name."""

from __future__ import annotations

import pytest

from lmconv.chapters import params
from lmconv.errors import LmconvError


def test_from_namespace_validates_the_registered_names_only():
    ns = {"profile": "smoke", "sizes": None, "sosd_window": 3, "np": object(), "helper": 1}
    p = params.from_namespace(ns)
    assert vars(p) == {"profile": "smoke", "sizes": None, "sosd_window": 3}
    with pytest.raises(LmconvError, match="sosd_window"):
        params.from_namespace({**ns, "sosd_window": -1})


# ------------------------------------------------------------------------------------------- provenance


def _charts():
    import altair as alt
    import pandas as pd

    from lmconv.book import provenance as pv
    from lmconv.chapters import section

    df = pd.DataFrame({"step": [1, 2, 4], "kl": [3.0, 2.0, 1.5]})

    @pv.builder
    def inner() -> alt.Chart:
        return alt.Chart(df).mark_line().encode(x="step", y="kl")

    @pv.builder
    def outer() -> alt.LayerChart:
        return alt.layer(inner(), alt.Chart(df).mark_point().encode(x="step", y="kl"))

    @section
    def a_section():
        return {"fig": outer(), "fig_plain": inner().properties(width=200), "tab": df.style, "df": df, "n": 3}

    return a_section()


def test_glued_charts_and_tables_name_the_function_that_drew_them():
    from lmconv.book import provenance as pv
    from lmconv.figures import plots

    plots.use_theme()
    g = _charts()
    html = g["fig"]._repr_mimebundle_()["text/html"]
    assert pv.drawn_by(html).endswith("outer")  # the outermost builder, not the inner one it layered
    assert "usermeta" not in str(g["fig"].to_dict()["layer"])  # sub-charts stay valid Vega-Lite
    # a chart changed after its builder returned falls back to the section's name; so does a table
    assert pv.drawn_by(g["fig_plain"]._repr_mimebundle_()["text/html"]).endswith("a_section")
    assert pv.drawn_by(g["tab"].to_html()).endswith("a_section")
    assert pv.drawn_by(g["df"]._repr_html_()).endswith("a_section") and repr(g["df"]) == repr(g["df"].copy())
    assert g["n"] == 3 and pv.drawn_by("<p>no chart</p>") is None


def test_source_url_points_at_the_lines_of_the_function():
    from lmconv import paths
    from lmconv.book import provenance as pv
    from lmconv.figures import spectral

    url = pv.source_url("lmconv.figures.spectral.cosine_saturation", "abc1234")
    assert url.startswith(f"{pv.REPOSITORY}/blob/abc1234/src/lmconv/figures/spectral.py#L")
    first, last = (int(x) for x in url.rsplit("#L", 1)[1].split("-L"))
    lines = (paths.ROOT / "src/lmconv/figures/spectral.py").read_text().splitlines()[first - 1 : last]
    assert any(ln.startswith("def cosine_saturation(") for ln in lines) and last > first
    assert spectral.cosine_saturation.__wrapped__  # decorated by provenance.builder


# ------------------------------------------------------------------------------------------- the pages


def test_every_page_shows_decorated_sections_of_its_module():
    """Each thin page names its chapter module once and shows only functions that exist there, decorated by
    chapters.section (so their charts and tables carry provenance)."""
    import importlib
    import re

    from lmconv import book, paths

    for nb in sorted((paths.ROOT / "notebooks").glob("*.md")):
        text = nb.read_text()
        modules = set(re.findall(r"from lmconv\.chapters import (\w+) as ch\b", text))
        shown = book.page_sections(nb)
        if not shown:
            continue
        assert len(modules) == 1, f"{nb.name} shows sections of {modules or 'no module'}"
        mod = importlib.import_module(f"lmconv.chapters.{modules.pop()}")
        for name in shown:
            fn = getattr(mod, name, None)
            assert fn is not None and hasattr(fn, "__wrapped__"), f"{nb.name}: {name} is not a section of {mod}"


def test_collect_refuses_a_name_glued_twice():
    from types import SimpleNamespace

    from lmconv.chapters import collect

    mod = SimpleNamespace(a=lambda d: {"x": d}, b=lambda d: {"y": 2}, c=lambda d: {"x": 3})
    assert collect(mod, 1, ["a", "b"]) == {"x": 1, "y": 2}
    with pytest.raises(LmconvError, match=r"section c glues \['x'\]"):
        collect(mod, 1, ["a", "c"])


PAGE = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
---

# A page

```{code-cell} ipython3
:tags: [parameters]
profile = "default"
rel_tol = 0.05
```

```{code-cell} ipython3
show(ch.setup(d))
```

The value {glue:text}`n_sizes`, formatted {glue:text}`share:.1%`, any {glue:}`word` and {glue:md}`verdict`.

```{glue:figure} fig_curves
:name: fig-curves

A caption quoting {glue:text}`in_caption`.
```

```{glue:md} verdicts
:format: myst
```

```{code-cell} ipython3
show(ch.corpus(d), ch.tokenizer(d))
show(ch.constants())
```
"""


def test_page_readers_find_every_glue_form_section_and_parameter(tmp_path):
    from lmconv import book

    nb = tmp_path / "page.md"
    nb.write_text(PAGE)
    assert book.glue_names(nb) == {"n_sizes", "share", "word", "verdict", "fig_curves", "in_caption", "verdicts"}
    assert book.page_sections(nb) == ["setup", "corpus", "tokenizer", "constants"]
    assert book.page_parameters(nb, profile="smoke") == {"profile": "smoke", "rel_tol": 0.05}


def test_unused_glue_names_the_extras_and_refuses_a_missing_name(tmp_path):
    from lmconv import book

    nb = tmp_path / "page.md"
    nb.write_text(PAGE)
    names = {"n_sizes", "share", "word", "verdict", "fig_curves", "in_caption", "verdicts"}
    assert book.unused_glue(nb, dict.fromkeys(names | {"spare"})) == {"spare"}
    with pytest.raises(LmconvError, match=r"uses glued names no section returns: \['word'\]"):
        book.unused_glue(nb, dict.fromkeys(names - {"word"}))
