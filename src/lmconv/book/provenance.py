"""Every figure and table caption links to the code that drew it, at the commit the book was built from.

A figure builder is marked with :func:`builder`, a chapter's section with :func:`lmconv.chapters.section`; each
value a section returns is stamped with the name of the builder that drew it, else the section's own (a
chart's top-level Vega-Lite ``usermeta``, a table's ``data-lmconv-by`` attribute). At build time
this Sphinx extension finds the mark in each figure's rendered output and ends its caption with "Drawn by
NAME" (tables: "Made by NAME"), NAME linking to the function's lines in the repository at that commit. No
caption types it.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from .. import REPOSITORY, paths

COMMIT_ENV = "LMCONV_COMMIT"  # the publish workflow may name the commit; else ``git rev-parse HEAD``
_TABLE_MARK = re.compile(r'data-lmconv-by="([^"]+)"')
_SPEC_START = "})("  # Altair's HTML ends with the IIFE call ``})(spec, embedOpt);``


def name_of(fn: Callable) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


_BY = "_lmconv_by"  # a builder's name, kept on the chart object: Vega-Lite allows ``usermeta`` only at the top


def builder(fn: Callable) -> Callable:
    """Decorate a figure builder: the chart it returns remembers the builder's name (an outer builder's
    name replaces an inner one's). :func:`stamp` writes it into the glued output."""
    name = name_of(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        chart = fn(*args, **kwargs)
        object.__setattr__(chart, _BY, name)  # not Altair's __setattr__, which would make it a chart property
        return chart

    return wrapper


def stamp(value: Any, fallback: str | None = None) -> Any:
    """Write into a glued value the name of the function that drew it: its builder's, else ``fallback``.

    A chart gets it in its top-level Vega-Lite ``usermeta``, a pandas Styler as a ``data-lmconv-by`` table
    attribute; other values, and values with neither name, are returned unchanged."""
    import altair as alt
    from pandas.io.formats.style import Styler

    if isinstance(value, alt.TopLevelMixin):
        by = value.__dict__.get(_BY, fallback)
        if by is None:
            return value
        meta = {} if value.usermeta is alt.Undefined else dict(value.usermeta)
        meta["lmconv"] = {"by": by}
        value.usermeta = meta
    elif isinstance(value, Styler) and fallback is not None:
        attrs = _TABLE_MARK.sub("", value.table_attributes or "").strip()
        value.set_table_attributes(f'{attrs} data-lmconv-by="{fallback}"'.strip())
    elif isinstance(value, pd.DataFrame) and fallback is not None:
        marked = MarkedFrame(value)
        marked.attrs["lmconv_by"] = fallback
        return marked
    return value


class MarkedFrame(pd.DataFrame):
    """A DataFrame whose HTML table carries ``data-lmconv-by`` (from ``attrs``); it is a DataFrame in all else,
    and what it derives is a plain one."""

    @property
    def _constructor(self):
        return pd.DataFrame

    def _repr_html_(self) -> str | None:
        html = super()._repr_html_()
        by = self.attrs.get("lmconv_by")
        return html.replace("<table", f'<table data-lmconv-by="{by}"', 1) if html and by else html


def drawn_by(html: str) -> str | None:
    """The function named by the mark in one rendered output (top-level chart spec or table), if any."""
    m = _TABLE_MARK.search(html)
    if m:
        return m.group(1)
    start = html.rfind(_SPEC_START)
    if start < 0:
        return None
    try:
        spec, _ = json.JSONDecoder().raw_decode(html, start + len(_SPEC_START))
    except ValueError:
        return None
    by = spec.get("usermeta", {}).get("lmconv", {}).get("by") if isinstance(spec, dict) else None
    return by if isinstance(by, str) else None


def describe(html: str, text: str) -> str:
    """The chart output ``html`` with ``text`` as its top-level Vega-Lite ``description`` (Vega renders it as the
    chart's ARIA label, what a screen reader reads); unchanged when it holds no chart spec."""
    start = html.rfind(_SPEC_START)
    if start < 0:
        return html
    at = start + len(_SPEC_START)
    try:
        spec, end = json.JSONDecoder().raw_decode(html, at)
    except ValueError:
        return html
    if not isinstance(spec, dict):
        return html
    spec["description"] = text
    return html[:at] + json.dumps(spec) + html[end:]


def resolve(name: str) -> Callable:
    """The function a dotted name points to (``module.function`` or ``module.Class.method``)."""
    module, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        if "." not in module:
            raise
        return getattr(resolve(module), attr)


def commit() -> str:
    """The commit the book is built from: ``$LMCONV_COMMIT``, else the checkout's HEAD, else ``v{version}``."""
    if os.environ.get(COMMIT_ENV):
        return os.environ[COMMIT_ENV]
    try:
        out = subprocess.run(
            ["git", "-C", str(paths.ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        from .. import __version__

        return f"v{__version__}"


def source_url(name: str, at: str) -> str:
    """The repository address of the lines that define function ``name``, at commit (or tag) ``at``."""
    fn = inspect.unwrap(resolve(name))
    lines, first = inspect.getsourcelines(fn)
    rel = Path(inspect.getsourcefile(fn) or "").resolve().relative_to(paths.ROOT)
    return f"{REPOSITORY}/blob/{at}/{rel.as_posix()}#L{first}-L{first + len(lines) - 1}"


def _caption_links(app, doctree, docname) -> None:
    """Sphinx ``doctree-resolved``: end each marked figure's caption with a link to the code that drew it."""
    from docutils import nodes

    at = app.config.lmconv_commit or commit()
    for figure in doctree.findall(nodes.figure):
        captions = [c for c in figure.children if isinstance(c, nodes.caption)]
        raws = [r for r in figure.findall(nodes.raw) if "html" in r.get("format", "")]
        html = "".join(r.astext() for r in raws)
        name = drawn_by(html) if captions and html else None
        if name is None:
            continue
        text = " ".join(captions[0].astext().split())
        for r in raws:  # each chart's description is its caption (before the provenance is added)
            described = describe(r.astext(), text)
            if described != r.astext():
                r.parent.replace(r, nodes.raw("", described, format=r.get("format")))
        verb = "Made" if _TABLE_MARK.search(html) else "Drawn"
        try:
            url = source_url(name, at)
        except (ImportError, AttributeError, OSError, TypeError, ValueError):
            url = f"{REPOSITORY}/tree/{at}"
        link = nodes.reference("", "", nodes.literal(text=name), refuri=url, internal=False)
        captions[0] += [nodes.Text(f" {verb} by "), link, nodes.Text(f" (at commit {at[:7]}).")]


def setup(app) -> dict:
    app.add_config_value("lmconv_commit", "", "env")
    app.connect("doctree-resolved", _caption_links)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
