"""Figures of the cross-seed convergence chapters (2–4), drawn from the tables of :mod:`lmconv.lenses.kl`.

Every curve table is a band table (size, step, value, lo, hi; see :func:`lmconv.metrics.stats.band`) with, for grouped
curves, group and n_tokens; the lines are :func:`lmconv.figures.plots.band_lines` on the book's symlog step axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from ..book.provenance import builder
from . import plots

PHASE_COLOURS = {
    "(i) uniform": "#999999",
    "(ii) sharp convergence": "#009E73",
    "(iii) sharp divergence": "#D55E00",
    "(iv) slow reconvergence": "#0072B2",
}
ECONV_TITLE = "E[conv] = −mean KL (nats)"


@builder
def size_rules(rules: pd.DataFrame, sizes: Sequence[str]) -> alt.Chart:
    """Dashed vertical rules in each size's colour (``rules`` has size, step, boundary)."""
    return (
        alt.Chart(rules)
        .mark_rule(strokeDash=[5, 3], strokeWidth=1.5)
        .encode(
            x=plots.step_x(),
            color=alt.Color("size:N", scale=plots.colour_scale(sizes), sort=list(sizes)),
            tooltip=["size", "boundary", "step"],
        )
    )


@builder
def econv_main(df: pd.DataFrame, rules: pd.DataFrame | None = None, **kw) -> alt.LayerChart:
    """E[conv] against step per size with its band; ``rules`` (size, step, boundary) adds the detected phase
    boundaries as dashed rules in each size's colour."""
    sizes = list(dict.fromkeys(df["size"]))
    chart = plots.band_lines(df, "size", domain=sizes, **({"y_title": ECONV_TITLE} | kw))
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
    width: int = plots.PANEL_WIDTH,
    height: int = plots.PANEL_HEIGHT,
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
                x=plots.step_x("start"),
                x2="end:Q",
                color=alt.Color("phase:N", scale=pscale, title="detected phase"),
                tooltip=["phase", "start", "end"],
            )
        )
        curve = plots.band_layers(
            alt.Chart(d).encode(x=plots.step_x()),
            y_title=y_title,
            y_scale=y_scale,
            colour=plots.PALETTE[k % len(plots.PALETTE)],
            tooltip=plots.band_tooltip(["size"]),
        )
        paper = pd.DataFrame({"step": list(paper_lines), "line": "paper (absolute step)"})
        scaled = pd.DataFrame({"step": list(scaled_lines), "line": "paper (same fraction of training)"})
        r1 = (
            alt.Chart(paper)
            .mark_rule(color="black", strokeDash=[5, 3])
            .encode(x=plots.step_x(), tooltip=["line", "step"])
        )
        r2 = (
            alt.Chart(scaled)
            .mark_rule(color="#555", strokeDash=[1, 2])
            .encode(x=plots.step_x(), tooltip=["line", alt.Tooltip("step:Q", format=".3g")])
        )
        panels.append(alt.layer(rect, *curve, r1, r2).properties(width=width, height=height, title=f"size {size}"))
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
    width: int = plots.PANEL_WIDTH,
    height: int = plots.PANEL_HEIGHT,
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
        plots.band_lines(
            df[df["size"] == s],
            colour,
            domain=dom,
            y_title=y_title,
            y_scale=plots.LOG_Y if log_y else None,
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
    return plots.band_lines(
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
    return plots.band_lines(
        df, "size", domain=sizes, dash="reference", dash_domain=["uniform", "unigram"], y_title=y_title
    )


@builder
def icl(df: pd.DataFrame, margin: float, y_title: str = "ICL score (nats)") -> alt.LayerChart:
    """ICL score per size with its band over seeds; a dotted rule at ``margin`` (where we say context helps)."""
    sizes = list(dict.fromkeys(df["size"]))
    rule = (
        alt.Chart(pd.DataFrame({"value": [margin], "what": ["onset threshold"]}))
        .mark_rule(color="#555", strokeDash=[2, 2])
        .encode(y="value:Q", tooltip=["what", alt.Tooltip("value:Q", format=".3f")])
    )
    return alt.layer(plots.band_lines(df, "size", domain=sizes, y_title=y_title, tooltip=("short", "long")), rule)


@builder
def lr(
    df: pd.DataFrame, ours_rules: pd.DataFrame, paper_lines: Sequence[float], width: int = plots.TEXT_WIDTH
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
                x=plots.step_x(),
                y=alt.Y("lr:Q", title="learning rate", axis=alt.Axis(format=".1e")),
                color=alt.Color("model:N", scale=plots.colour_scale(models, offset=4), title="model"),
                tooltip=["model", "step", alt.Tooltip("lr:Q", format=".2e"), alt.Tooltip("fraction:Q", format=".2%")],
            )
            .properties(width=width, height=170, title=title)
        )

    sizes = list(dict.fromkeys(ours_rules["size"])) if len(ours_rules) else []
    top = panel(ours, "ours")
    if sizes:
        top = alt.layer(top, size_rules(ours_rules, sizes)).resolve_scale(color="independent")
    rules = alt.Chart(pd.DataFrame({"step": list(paper_lines)})).mark_rule(color="black", strokeDash=[5, 3])
    bottom = alt.layer(panel(theirs, "PolyPythia"), rules.encode(x=plots.step_x(), tooltip=["step"]))
    return alt.vconcat(top, bottom).resolve_scale(color="independent")


@builder
def coefficients(df: pd.DataFrame, terms: Sequence[str], y_title: str, colour_title: str = "term") -> alt.LayerChart:
    """Regression coefficients against step (``df``: step, term, coef, lo, hi), band = bootstrap interval."""
    d = df[df["term"].isin(list(terms))].rename(columns={"coef": "value"})
    zero = alt.Chart(pd.DataFrame({"value": [0.0]})).mark_rule(color="#555").encode(y="value:Q")
    return alt.layer(zero, plots.band_lines(d, "term", domain=list(terms), y_title=y_title, legend_title=colour_title))


@builder
def raw_and_relative(econv_df: pd.DataFrame, rel_df: pd.DataFrame, width: int = plots.PANEL_WIDTH) -> alt.ConcatChart:
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
        panels.append(
            plots.band_lines(
                d, "size", y_title=y, y_scale=plots.LOG_Y, width=width, height=plots.PANEL_HEIGHT, title=title
            )
        )
    return alt.concat(*panels, columns=2).configure_legend(orient="bottom")
