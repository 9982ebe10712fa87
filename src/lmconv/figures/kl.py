"""Figures of the cross-seed convergence chapters (2–4), drawn from the tables of :mod:`lmconv.lenses.kl`.

Every curve table has size, step, value, lo, hi (the band) and, for grouped curves, group and n_tokens; the
x axis is the book's symlog step axis (step 0 drawn at the origin).
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from .. import plots
from ..provenance import builder

PHASE_COLOURS = {
    "(i) uniform": "#999999",
    "(ii) sharp convergence": "#009E73",
    "(iii) sharp divergence": "#D55E00",
    "(iv) slow reconvergence": "#0072B2",
}
ECONV_TITLE = "E[conv] = −mean KL (nats)"
# The theme's Okabe–Ito colours, then three of Tol's muted colours for groupings with more than eight members.
COLOURS = [*plots.PALETTE, "#999999", "#882255", "#44AA99"]


def _scale(domain: Sequence[str], offset: int = 0) -> alt.Scale:
    """A categorical colour scale with a fixed domain (the theme's colour-blind palette, in order)."""
    dom = list(domain)
    pal = COLOURS[offset:] + COLOURS[:offset]
    return alt.Scale(domain=dom, range=[pal[i % len(pal)] for i in range(len(dom))])


WIDTH = 400  # single charts: leaves room for the legend in the book's text column
PANEL_WIDTH, PANEL_HEIGHT = 215, 180


def _x(field: str = "step") -> alt.X:
    """The book's symlog step axis; every layer of a chart uses it, so layered axes merge cleanly."""
    return alt.X(f"{field}:Q", scale=plots.step_scale(), axis=plots.step_axis())


def _tooltip(extra: Sequence[str] = ()) -> list:
    return [
        *extra,
        alt.Tooltip("step:Q"),
        alt.Tooltip("value:Q", format=".4g"),
        alt.Tooltip("lo:Q", format=".4g", title="band low"),
        alt.Tooltip("hi:Q", format=".4g", title="band high"),
    ]


@builder
def curves(
    df: pd.DataFrame,
    colour: str = "size",
    *,
    domain: Sequence[str] | None = None,
    dash: str | None = None,
    dash_domain: Sequence[str] | None = None,
    y_title: str = ECONV_TITLE,
    log_y: bool = False,
    width: int = WIDTH,
    height: int = plots.HEIGHT,
    title: str | None = None,
    legend_title: str | None = None,
    tooltip: Sequence[str] = (),
    band: bool = True,
) -> alt.LayerChart:
    """Lines over training steps, one per ``colour`` value (and ``dash`` value), with the ``lo``–``hi`` band."""
    dom = list(domain) if domain is not None else list(dict.fromkeys(df[colour]))
    legend = alt.Legend(symbolType="stroke", symbolStrokeWidth=3, symbolOpacity=1)
    col = alt.Color(f"{colour}:N", scale=_scale(dom), title=legend_title or colour, sort=dom, legend=legend)
    y_scale = alt.Scale(type="log", zero=False) if log_y else alt.Scale(zero=False)
    base = alt.Chart(df).encode(x=_x(), color=col)
    enc = {"y": alt.Y("value:Q", title=y_title, scale=y_scale)}
    if dash:
        dash_dom = list(dash_domain) if dash_domain is not None else list(dict.fromkeys(df[dash]))
        enc["strokeDash"] = alt.StrokeDash(
            f"{dash}:N",
            title=dash,
            scale=alt.Scale(domain=dash_dom, range=[[1, 0], [6, 3], [2, 2], [8, 2, 2, 2]][: len(dash_dom)]),
            legend=alt.Legend(symbolType="stroke", symbolStrokeWidth=2, symbolStrokeColor="#333"),
        )
    tips = _tooltip([c for c in dict.fromkeys([colour, *([dash] if dash else []), *tooltip])])
    # points in their own layer (no line style), so the line-style legend draws dashes, not dots
    line = base.mark_line().encode(**enc, tooltip=tips)
    points = base.mark_circle(size=16, opacity=1).encode(y=enc["y"], tooltip=tips)
    layers = [line, points]
    if band:
        area_enc = {"y": alt.Y("lo:Q", scale=y_scale), "y2": "hi:Q"}
        if dash:
            area_enc["detail"] = f"{dash}:N"
        layers.insert(0, base.mark_area(opacity=0.15).encode(**area_enc))
    chart = alt.layer(*layers).properties(width=width, height=height)
    return chart.properties(title=title) if title else chart


@builder
def size_rules(rules: pd.DataFrame, sizes: Sequence[str]) -> alt.Chart:
    """Dashed vertical rules in each size's colour (``rules`` has size, step, boundary)."""
    return (
        alt.Chart(rules)
        .mark_rule(strokeDash=[5, 3], strokeWidth=1.5)
        .encode(
            x=_x(),
            color=alt.Color("size:N", scale=_scale(sizes), sort=list(sizes)),
            tooltip=["size", "boundary", "step"],
        )
    )


@builder
def econv_main(df: pd.DataFrame, rules: pd.DataFrame | None = None, **kw) -> alt.LayerChart:
    """E[conv] against step per size with its band; ``rules`` (size, step, boundary) adds the detected phase
    boundaries as dashed rules in each size's colour."""
    sizes = list(dict.fromkeys(df["size"]))
    chart = curves(df, "size", domain=sizes, **kw)
    if rules is not None and len(rules):
        chart = alt.layer(chart, size_rules(rules, sizes))
    return chart


@builder
def phase_panels(
    df: pd.DataFrame,
    spans: pd.DataFrame,
    paper_lines: Sequence[float],
    scaled_lines: Sequence[float],
    *,
    y_title: str = ECONV_TITLE,
    width: int = PANEL_WIDTH,
    height: int = PANEL_HEIGHT,
    columns: int = 2,
) -> alt.ConcatChart:
    """One panel per size: the E[conv] curve and band over the detected phases (shaded), the paper's lines at
    their absolute steps (black dashed) and at the same fractions of our training (grey dotted). Lines beyond the
    last step are left out."""
    last = float(df["step"].max())
    paper_lines = [x for x in paper_lines if x <= last]
    scaled_lines = [x for x in scaled_lines if x <= last]
    sizes = list(dict.fromkeys(df["size"]))
    phases = [p for p in PHASE_COLOURS if p in set(spans["phase"])] or list(PHASE_COLOURS)
    pscale = alt.Scale(domain=phases, range=[PHASE_COLOURS[p] for p in phases])
    y_lo, y_hi = float(df["lo"].min()), float(df["hi"].max())
    pad = 0.05 * (y_hi - y_lo if y_hi > y_lo else 1.0)
    y_scale = alt.Scale(domain=[y_lo - pad, y_hi + pad], nice=False)
    panels = []
    for k, size in enumerate(sizes):
        d = df[df["size"] == size]
        sp = spans[spans["size"] == size]
        rect = (
            alt.Chart(sp)
            .mark_rect(opacity=0.18)
            .encode(
                x=_x("start"),
                x2="end:Q",
                color=alt.Color("phase:N", scale=pscale, title="detected phase"),
                tooltip=["phase", "start", "end"],
            )
        )
        base = alt.Chart(d).encode(x=_x())
        colour = plots.PALETTE[k % len(plots.PALETTE)]
        band = base.mark_area(opacity=0.2, color=colour).encode(y=alt.Y("lo:Q", scale=y_scale), y2="hi:Q")
        line = base.mark_line(color=colour, point=alt.OverlayMarkDef(size=14, color=colour)).encode(
            y=alt.Y("value:Q", title=y_title, scale=y_scale), tooltip=_tooltip(["size"])
        )
        paper = pd.DataFrame({"step": list(paper_lines), "line": "paper (absolute step)"})
        scaled = pd.DataFrame({"step": list(scaled_lines), "line": "paper (same fraction of training)"})
        r1 = alt.Chart(paper).mark_rule(color="black", strokeDash=[5, 3]).encode(x=_x(), tooltip=["line", "step"])
        r2 = (
            alt.Chart(scaled)
            .mark_rule(color="#555", strokeDash=[1, 2])
            .encode(x=_x(), tooltip=["line", alt.Tooltip("step:Q", format=".3g")])
        )
        panels.append(alt.layer(rect, band, line, r1, r2).properties(width=width, height=height, title=f"size {size}"))
    return alt.concat(*panels, columns=columns).configure_legend(orient="bottom")


@builder
def panels_by_size(
    df: pd.DataFrame,
    colour: str = "group",
    *,
    order: Sequence[str] | None = None,
    y_title: str = ECONV_TITLE,
    log_y: bool = False,
    legend_title: str | None = None,
    width: int = PANEL_WIDTH,
    height: int = PANEL_HEIGHT,
    columns: int = 2,
    shared_y: bool = False,
    band: bool = True,
    dash: str | None = None,
    dash_domain: Sequence[str] | None = None,
) -> alt.ConcatChart:
    """One panel per size (in order of appearance), one line per ``colour`` value (legend order ``order``) and
    ``dash`` value."""
    dom = list(order) if order is not None else list(dict.fromkeys(df[colour]))
    panels = [
        curves(
            df[df["size"] == s],
            colour,
            domain=dom,
            y_title=y_title,
            log_y=log_y,
            width=width,
            height=height,
            title=f"size {s}",
            legend_title=legend_title,
            tooltip=("size", "n_tokens") if "n_tokens" in df else ("size",),
            band=band,
            dash=dash,
            dash_domain=dash_domain,
        )
        for s in dict.fromkeys(df["size"])
    ]
    chart = alt.concat(*panels, columns=columns)
    chart = chart.resolve_scale(y="shared") if shared_y else chart
    return chart.configure_legend(orient="bottom", columns=4)


@builder
def two_sizes(
    df: pd.DataFrame, *, order: Sequence[str] | None = None, y_title: str = ECONV_TITLE, legend_title: str = "bin"
) -> alt.LayerChart:
    """Group curves of two sizes in one panel: colour = group, line style = size in order of appearance (solid =
    first), as the paper's bin figures."""
    dom = list(order) if order is not None else list(dict.fromkeys(df["group"]))
    sizes = list(dict.fromkeys(df["size"]))
    return curves(
        df,
        "group",
        domain=dom,
        dash="size",
        dash_domain=sizes,
        y_title=y_title,
        legend_title=legend_title,
        tooltip=("n_tokens",),
    )


@builder
def references(df: pd.DataFrame, y_title: str = "mean KL to the reference (nats)") -> alt.LayerChart:
    """KL of each size's predictions to the uniform and to the unigram distribution (line style = reference)."""
    sizes = list(dict.fromkeys(df["size"]))
    return curves(df, "size", domain=sizes, dash="reference", dash_domain=["uniform", "unigram"], y_title=y_title)


@builder
def icl(df: pd.DataFrame, margin: float, y_title: str = "ICL score (nats)") -> alt.LayerChart:
    """ICL score per size with its band over seeds; a dotted rule at ``margin`` (where we say context helps)."""
    sizes = list(dict.fromkeys(df["size"]))
    rule = (
        alt.Chart(pd.DataFrame({"value": [margin], "what": ["onset threshold"]}))
        .mark_rule(color="#555", strokeDash=[2, 2])
        .encode(y="value:Q", tooltip=["what", alt.Tooltip("value:Q", format=".3f")])
    )
    return alt.layer(curves(df, "size", domain=sizes, y_title=y_title, tooltip=("short", "long")), rule)


@builder
def lr(
    df: pd.DataFrame, ours_rules: pd.DataFrame, paper_lines: Sequence[float], width: int = WIDTH
) -> alt.VConcatChart:
    """Learning rate against step: our schedule (top, with each size's detected KL peak as a dashed rule) and
    the five PolyPythia schedules (bottom, with the paper's phase lines)."""
    ours = df[df["model"].str.startswith("ours")]
    theirs = df[~df["model"].str.startswith("ours")]

    def panel(d: pd.DataFrame, title: str) -> alt.Chart:
        models = list(dict.fromkeys(d["model"]))
        return (
            alt.Chart(d)
            .mark_line()
            .encode(
                x=_x(),
                y=alt.Y("lr:Q", title="learning rate", axis=alt.Axis(format=".1e")),
                color=alt.Color("model:N", scale=_scale(models, offset=4), title="model"),
                tooltip=["model", "step", alt.Tooltip("lr:Q", format=".2e"), alt.Tooltip("fraction:Q", format=".2%")],
            )
            .properties(width=width, height=170, title=title)
        )

    sizes = list(dict.fromkeys(ours_rules["size"])) if len(ours_rules) else []
    top = panel(ours, "ours")
    if sizes:
        top = alt.layer(top, size_rules(ours_rules, sizes)).resolve_scale(color="independent")
    rules = alt.Chart(pd.DataFrame({"step": list(paper_lines)})).mark_rule(color="black", strokeDash=[5, 3])
    bottom = alt.layer(panel(theirs, "PolyPythia"), rules.encode(x=_x(), tooltip=["step"]))
    return alt.vconcat(top, bottom).resolve_scale(color="independent")


@builder
def coefficients(df: pd.DataFrame, terms: Sequence[str], y_title: str, colour_title: str = "term") -> alt.LayerChart:
    """Regression coefficients against step (``df``: step, term, coef, lo, hi), band = bootstrap interval."""
    d = df[df["term"].isin(list(terms))].rename(columns={"coef": "value"})
    zero = alt.Chart(pd.DataFrame({"value": [0.0]})).mark_rule(color="#555").encode(y="value:Q")
    return alt.layer(zero, curves(d, "term", domain=list(terms), y_title=y_title, legend_title=colour_title))


@builder
def raw_and_relative(econv_df: pd.DataFrame, rel_df: pd.DataFrame, width: int = PANEL_WIDTH) -> alt.ConcatChart:
    """Two panels on log y axes: the mean KL between seeds (``econv_df`` negated back to KL) and each pair's KL
    relative to step 0 (``rel_df`` from :func:`lmconv.lenses.kl.relative_to_start`). Band lows at or below zero
    are clipped to half the smallest value, which a log axis can draw."""
    raw = econv_df.assign(value=-econv_df["value"], lo=-econv_df["hi"], hi=-econv_df["lo"])
    panels = []
    for d, title, y in (
        (raw, "raw KL", "mean KL (nats, log scale)"),
        (rel_df, "relative to step 0", "KL / KL at step 0 (log scale)"),
    ):
        floor = 0.5 * float(d["value"].min())
        d = d.assign(lo=d["lo"].clip(lower=floor))
        panels.append(curves(d, "size", y_title=y, log_y=True, width=width, height=PANEL_HEIGHT, title=title))
    return alt.concat(*panels, columns=2).configure_legend(orient="bottom")
