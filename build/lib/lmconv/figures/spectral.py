"""Charts of chapters 7–8 (spectral stability; schedules and optimizers), drawn from the tables of
:mod:`lmconv.lenses.spectral`. Every builder takes a small pre-aggregated table and returns an Altair chart."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from ..book.provenance import builder
from . import plots

LOG = alt.Scale(type="log")
HEIGHT = 220  # the height of these chapters' line panels


def _legend(title: str | None) -> alt.Legend:
    return alt.Legend(
        title=title,
        orient="bottom",
        direction="horizontal",
        columns=4,
        symbolType="stroke",
        symbolStrokeWidth=2.5,
        symbolOpacity=1,
    )


def _facet(chart: alt.LayerChart, field: str, order: Sequence[str] | None) -> alt.FacetChart:
    return chart.facet(column=alt.Column(f"{field}:N", title=None, sort=list(order) if order is not None else None))


def _panel_lines(
    df: pd.DataFrame,
    colour: str,
    y_title: str,
    n_panels: int,
    *,
    y_scale: alt.Scale | None = None,
    sort: Sequence[str] | None = None,
) -> alt.LayerChart:
    """:func:`lmconv.figures.plots.band_lines` as these chapters draw it: colours in ``sort`` order (default: sorted, as
    Vega sorts), the legend below, one of ``n_panels`` side by side (a short x title when narrow)."""
    width = plots.panel_width(n_panels)
    return plots.band_lines(
        df,
        colour,
        y_title=y_title,
        domain=list(sort) if sort else sorted(df[colour].unique()),
        y_scale=y_scale,
        legend=_legend(colour),
        x_title="step (symlog)" if width < 300 else plots.STEP_TITLE,
        width=width,
        height=HEIGHT,
    )


@builder
def cosine_saturation(df: pd.DataFrame, sizes: Sequence[str]) -> alt.FacetChart:
    """cos(Σ_t, Σ_T) and cos(W_t, W_T) against step, one panel per size (columns size, measure, step, value,
    lo, hi: a band table)."""
    chart = _panel_lines(df, "measure", "cosine with the final checkpoint", len(sizes))
    return _facet(chart, "size", sizes)


@builder
def delta_with_loss(
    curves: pd.DataFrame,
    val: pd.DataFrame,
    events: pd.DataFrame,
    value_title: str = "ΔΣ",
    sizes: Sequence[str] | None = None,
) -> alt.VConcatChart:
    """Per size (rows): ΔΣ (log axis, left; mean over seeds with min–max band) and the validation loss (right),
    with the median t_S (solid rule) and t_L (dashed rule) over seeds.

    ``curves``: size, step, value, lo, hi of the ΔΣ measure; ``val``: size, step, value (validation loss);
    ``events``: size, event ∈ {t_S, t_L}, step.
    """
    rows = []
    for size in sizes if sizes is not None else curves["size"].drop_duplicates():
        c = curves[curves["size"] == size]
        v = val[val["size"] == size]
        e = events[events["size"] == size]
        curve = plots.band_layers(
            alt.Chart(c).encode(x=plots.step_x()),
            y_title=f"{value_title} (log)",
            y_scale=LOG,
            axis=alt.Axis(titleColor=plots.PALETTE[0]),
            colour=plots.PALETTE[0],
            points=False,
            tooltip=[
                "step:Q",
                alt.Tooltip("value:Q", title=value_title, format=".3g"),
                alt.Tooltip("lo:Q", title="min", format=".3g"),
                alt.Tooltip("hi:Q", title="max", format=".3g"),
            ],
        )
        loss = (
            alt.Chart(v)
            .mark_line(color=plots.PALETTE[5], point=alt.OverlayMarkDef(size=12, color=plots.PALETTE[5]))
            .encode(
                x=plots.step_x(),
                y=alt.Y(
                    "value:Q",
                    title="validation loss",
                    scale=alt.Scale(zero=False),
                    axis=alt.Axis(titleColor=plots.PALETTE[5], orient="right"),
                ),
                tooltip=["step:Q", alt.Tooltip("value:Q", title="val loss", format=".3f")],
            )
        )
        rules = (
            alt.Chart(e)
            .mark_rule(color="#333", size=1.5)
            .encode(
                x=plots.step_x(),
                strokeDash=alt.StrokeDash(
                    "event:N",
                    scale=alt.Scale(domain=["t_S", "t_L"], range=[[1, 0], [5, 4]]),
                    legend=_legend("event (median over seeds)"),
                ),
                tooltip=["event:N", alt.Tooltip("step:Q", format=".0f")],
            )
        )
        left = alt.layer(*curve, rules)
        rows.append(
            alt.layer(left, loss).resolve_scale(y="independent").properties(width=440, height=190, title=str(size))
        )
    return alt.vconcat(*rows)


@builder
def kind_lines(
    df: pd.DataFrame, sizes: Sequence[str], color: str = "kind", sort: Sequence[str] | None = None
) -> alt.FacetChart:
    """ΔΣ rate per matrix kind (or group) against step on a log axis, one panel per size
    (columns size, step, ``color``, value, lo, hi)."""
    chart = _panel_lines(df, color, "ΔΣ per step (log)", len(sizes), y_scale=LOG, sort=sort)
    return _facet(chart, "size", sizes)


@builder
def layer_heatmap(df: pd.DataFrame, sizes: Sequence[str] | None = None) -> alt.VConcatChart:
    """ΔΣ rate per matrix (rows, by layer) and log-step bin (columns drawn at their true width), per size."""
    charts = []
    for size in sizes if sizes is not None else df["size"].drop_duplicates():
        d = df[df["size"] == size]
        rows = d.drop_duplicates("row").sort_values("row_order").row.tolist()
        charts.append(
            alt.Chart(d)
            .mark_rect()
            .encode(
                x=plots.step_x("step_lo"),
                x2="step_hi:Q",
                y=alt.Y("row:N", sort=rows, title="matrix"),
                color=alt.Color(
                    "rate:Q",
                    scale=alt.Scale(type="log", scheme="viridis"),
                    legend=alt.Legend(title="ΔΣ per step", orient="bottom", format=".0e"),
                ),
                tooltip=["row:N", "step_lo:Q", "step_hi:Q", alt.Tooltip("rate:Q", format=".3g")],
            )
            .properties(width=440, height=12 * len(rows), title=str(size))
        )
    return alt.vconcat(*charts).resolve_scale(color="shared")


@builder
def bound_scatter(df: pd.DataFrame, sizes: Sequence[str]) -> alt.FacetChart:
    """Measured ΔΣ between checkpoints against the bound ``2‖ΔW‖_* / ‖W‖_*`` (log–log), y = x dashed, per size
    (columns size, group, matrix, step, bound, delta)."""
    lo = float(df.bound.min())
    hi = float(df.bound.max())
    diag = pd.DataFrame({"bound": [lo, hi], "delta": [lo, hi]})
    pts = (
        alt.Chart()
        .mark_circle(size=18, opacity=0.6)
        .encode(
            x=alt.X("bound:Q", scale=LOG, title="bound 2‖ΔW‖*/‖W‖* (log)"),
            y=alt.Y("delta:Q", scale=LOG, title="measured ΔΣ (log)"),
            color=alt.Color(
                "group:N", legend=alt.Legend(title="matrix group", orient="bottom", direction="horizontal")
            ),
            tooltip=[
                "matrix:N",
                "step:Q",
                "prev_step:Q",
                alt.Tooltip("bound:Q", format=".3g"),
                alt.Tooltip("delta:Q", format=".3g"),
            ],
        )
    )
    line = alt.Chart(diag).mark_line(color="#555", strokeDash=[4, 4]).encode(x="bound:Q", y="delta:Q")
    return (
        alt.layer(pts, line, data=df)
        .properties(width=280, height=260)
        .facet(column=alt.Column("size:N", title=None, sort=None))
    )


@builder
def gap_comparison(df: pd.DataFrame, sizes: Sequence[str]) -> alt.FacetChart:
    """ΔΣ between consecutive checkpoints, raw and per step, against step (columns size, step, measure, mean,
    lo, hi: a band table): with uneven checkpoint gaps the raw value grows with the gap, the rate does not."""
    chart = _panel_lines(df, "measure", "ΔΣ between checkpoints (log)", len(sizes), y_scale=LOG)
    return _facet(chart, "size", sizes)


@builder
def distributions(df: pd.DataFrame) -> alt.FacetChart:
    """Σ̂_i against rank i (log–log) at several checkpoints (columns group, step, rank, p)."""
    return (
        alt.Chart(df)
        .mark_line(point=alt.OverlayMarkDef(size=10))
        .encode(
            x=alt.X("rank:Q", scale=LOG, title="rank i (log)"),
            y=alt.Y("p:Q", scale=LOG, title="σ_i / Σσ (log)"),
            color=alt.Color("step:O", scale=alt.Scale(scheme="viridis"), legend=_legend("step")),
            tooltip=["group:N", "step:O", "rank:Q", alt.Tooltip("p:Q", format=".4g")],
        )
        .properties(width=plots.panel_width(2), height=240)
        .facet(column=alt.Column("group:N", title=None))
    )


@builder
def norm_lines(df: pd.DataFrame, sizes: Sequence[str]) -> alt.FacetChart:
    """Norms relative to step 0 (Frobenius, spectral, nuclear), one panel per size (columns size, measure,
    step, value, lo, hi)."""
    return _facet(_panel_lines(df, "measure", "norm relative to step 0", len(sizes)), "size", sizes)


# ---------------------------------------------------------------------------------------------------------
# chapter 8
# ---------------------------------------------------------------------------------------------------------


def _arm_scale(arms: Sequence[str] | None, present: pd.Series) -> alt.Scale:
    """Each arm keeps its palette colour (by its place in ``arms``) in every chart, whichever arms it shows."""
    if not arms:
        return alt.Scale()
    shown = [a for a in arms if a in set(present)]
    return alt.Scale(domain=shown, range=[plots.PALETTE[list(arms).index(a) % len(plots.PALETTE)] for a in shown])


@builder
def arm_panels(
    df: pd.DataFrame,
    y_title: str,
    *,
    y_scale: alt.Scale | None = None,
    linear_x: bool = False,
    events: pd.DataFrame | None = None,
    arms: Sequence[str] | None = None,
) -> alt.FacetChart:
    """One panel per factor (schedule, weight decay, optimizer), one line per arm (the baseline in every panel);
    columns factor, arm, step, value, lo, hi (band tables); optional ``events`` (factor, arm, step) drawn as rules."""
    x = alt.X("step:Q", title="training step (linear)") if linear_x else plots.step_x(title="step (symlog)")
    col = alt.Color(
        "arm:N",
        scale=_arm_scale(arms, df["arm"]),
        sort=list(arms) if arms else None,
        legend=_legend("arm"),
    )
    base = alt.Chart().encode(x=x)
    tips = [
        "arm:N",
        "step:Q",
        alt.Tooltip("value:Q", title="mean", format=".4g"),
        alt.Tooltip("lo:Q", title="min", format=".4g"),
        alt.Tooltip("hi:Q", title="max", format=".4g"),
    ]
    band, line = plots.band_layers(base, y_title=y_title, y_scale=y_scale, colour=col, tooltip=tips, points=False)
    layers: list = [band, line]
    data = df.assign(kind="curve")
    if events is not None and len(events):
        layers.append(
            base.transform_filter(alt.datum.kind == "event")
            .mark_rule(strokeDash=[4, 3])
            .encode(color=col, tooltip=["arm:N", alt.Tooltip("step:Q", title="t_S")])
        )
        band = band.transform_filter(alt.datum.kind == "curve")
        line = line.transform_filter(alt.datum.kind == "curve")
        layers[0], layers[1] = band, line
        data = pd.concat([data, events.assign(kind="event")], ignore_index=True)
    n = df["factor"].nunique()
    return (
        alt.layer(*layers, data=data)
        .properties(width=plots.panel_width(n, most=360, least=170), height=220)
        .facet(column=alt.Column("factor:N", title=None, sort=["schedule", "weight decay", "optimizer"]))
    )


@builder
def scaling_scatter(points: pd.DataFrame, slope: float, arms: Sequence[str] | None = None) -> alt.LayerChart:
    """Binned, within-matrix-demeaned log10 ΔΣ against ``log10(η / ‖W‖_*)``, coloured by arm, with the fitted slope
    (solid) and slope 1 (dashed) through the origin (columns family, x, y, n)."""
    lo, hi = float(points.x.min()), float(points.x.max())
    lines = pd.DataFrame(
        {"x": [lo, hi, lo, hi], "y": [slope * lo, slope * hi, lo, hi], "line": ["fit", "fit", "slope 1", "slope 1"]}
    )
    pts = (
        alt.Chart(points)
        .mark_circle(size=30, opacity=0.75)
        .encode(
            x=alt.X("x:Q", title="log10(η/‖W‖*), centred per matrix"),
            y=alt.Y("y:Q", title="log10 ΔΣ per step, centred per matrix"),
            color=alt.Color(
                "family:N",
                scale=_arm_scale(arms, points["family"]),
                sort=list(arms) if arms else None,
                legend=alt.Legend(title="arm", orient="bottom", direction="horizontal", columns=4),
            ),
            tooltip=["family:N", alt.Tooltip("x:Q", format=".3f"), alt.Tooltip("y:Q", format=".3f"), "n:Q"],
        )
    )
    ref = (
        alt.Chart(lines)
        .mark_line(color="#333")
        .encode(
            x="x:Q",
            y="y:Q",
            strokeDash=alt.StrokeDash(
                "line:N", title=None, scale=alt.Scale(domain=["fit", "slope 1"], range=[[1, 0], [5, 4]])
            ),
            detail="line:N",
        )
    )
    return alt.layer(pts, ref).properties(width=480, height=320)
