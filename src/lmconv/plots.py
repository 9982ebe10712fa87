"""Altair chart builders with one theme: colour-blind-safe palettes, log-step axes that show step 0.

Every figure in the book is drawn by a function here from a tidy table; the chapters only choose data.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

# Okabe–Ito, the colour-blind-safe palette (black dropped).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
WIDTH, HEIGHT = 480, 260


def theme() -> dict:
    return {
        "config": {
            "view": {"continuousWidth": WIDTH, "continuousHeight": HEIGHT, "stroke": None},
            "range": {"category": PALETTE},
            "axis": {"labelFontSize": 11, "titleFontSize": 12, "grid": True, "gridOpacity": 0.4},
            "legend": {"labelFontSize": 11, "titleFontSize": 12},
            "title": {"fontSize": 13, "anchor": "start"},
            "font": "sans-serif",
        }
    }


def use_theme() -> None:
    """Register and enable the book's theme; allow larger inline data (tables are pre-aggregated)."""

    @alt.theme.register("lmconv", enable=True)
    def _lmconv() -> alt.theme.ThemeConfig:
        return theme()

    alt.data_transformers.disable_max_rows()
    alt.renderers.set_embed_options(
        renderer="svg", actions={"export": True, "source": False, "compiled": False, "editor": False}
    )


def step_scale(steps: Sequence[int] | None = None) -> alt.Scale:
    """A symmetric-log x scale: log-like for steps ≥ 1, with step 0 drawn honestly at the origin."""
    return alt.Scale(type="symlog", constant=1, nice=False)


def step_axis(title: str = "training step (symlog: 0, then log-spaced)") -> alt.Axis:
    """Ticks at 0 and the powers of ten, labelled 0, 1, 10, 100, 1k, 10k, 100k."""
    return alt.Axis(
        title=title,
        values=[0, 1, 10, 100, 1000, 10000, 100000],
        labelExpr="datum.value >= 1000 ? format(datum.value / 1000, '~g') + 'k' : format(datum.value, '~g')",
    )


def lines(
    df: pd.DataFrame,
    y: str,
    color: str,
    *,
    x: str = "step",
    band_lo: str | None = None,
    band_hi: str | None = None,
    y_title: str | None = None,
    color_title: str | None = None,
    strokedash: str | None = None,
    tooltip: list[str] | None = None,
    y_scale: alt.Scale | None = None,
    width: int = WIDTH,
    height: int = HEIGHT,
    title: str | None = None,
) -> alt.Chart:
    """Lines over training steps, one per ``color`` group, with an optional band (``band_lo``–``band_hi``)."""
    base = alt.Chart(df).encode(
        x=alt.X(f"{x}:Q", scale=step_scale(), axis=step_axis()),
        color=alt.Color(f"{color}:N", title=color_title or color),
    )
    enc = {"y": alt.Y(f"{y}:Q", title=y_title or y, scale=y_scale or alt.Scale(zero=False))}
    if strokedash:
        enc["strokeDash"] = alt.StrokeDash(f"{strokedash}:N")
    line = base.mark_line(point=alt.OverlayMarkDef(size=18)).encode(
        **enc, tooltip=tooltip or [x, color, alt.Tooltip(f"{y}:Q", format=".4g")]
    )
    layers = [line]
    if band_lo and band_hi:
        layers.insert(0, base.mark_area(opacity=0.18).encode(y=f"{band_lo}:Q", y2=f"{band_hi}:Q"))
    chart = alt.layer(*layers).properties(width=width, height=height)
    return chart.properties(title=title) if title else chart


def rules(steps: Sequence[float], color: str = "#555", dash: Sequence[int] = (4, 4)) -> alt.Chart:
    """Vertical dashed lines at the given steps (e.g. detected phase boundaries)."""
    return (
        alt.Chart(pd.DataFrame({"step": list(steps)}))
        .mark_rule(color=color, strokeDash=list(dash))
        .encode(x=alt.X("step:Q", scale=step_scale()))
    )


def lr_schedule(df: pd.DataFrame, color: str = "size") -> alt.Chart:
    """Learning rate against step (linear axis: schedules are defined in linear time)."""
    return (
        alt.Chart(df)
        .mark_line()
        .encode(
            x=alt.X("step:Q", title="training step"),
            y=alt.Y("lr:Q", title="learning rate", axis=alt.Axis(format=".1e")),
            color=alt.Color(f"{color}:N"),
            tooltip=["step", color, alt.Tooltip("lr:Q", format=".2e")],
        )
        .properties(width=WIDTH, height=180)
    )
