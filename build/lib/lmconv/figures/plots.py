"""The book's chart theme and shared chart parts: colour-blind-safe palettes, chart sizes, the symlog step axis
that shows step 0 (:func:`step_x`), and the one line-with-band chart (:func:`band_lines`) that every figure
module uses to draw a band table of :func:`lmconv.metrics.stats.band`.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from ..book.provenance import builder

# Okabe–Ito, the colour-blind-safe palette (black dropped).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
# The palette, then three of Tol's muted colours for groupings with more than eight members.
COLOURS = [*PALETTE, "#999999", "#882255", "#44AA99"]

# Chart sizes, in pixels: the theme's default view, a single chart with room for its legend in the book's text
# column, side-by-side panels, and the usable width of a page's main column (see :func:`panel_width`).
WIDTH, HEIGHT = 480, 260
TEXT_WIDTH = 400
PANEL_WIDTH, PANEL_HEIGHT = 215, 180
CONTENT = 500

BAND_OPACITY = 0.15
LOG_Y = alt.Scale(type="log", zero=False)
POINT_SIZE = 16
STEP_TITLE = "training step (symlog: 0, then log-spaced)"
STEP_TICKS = [0, 1, 10, 100, 1000, 10000, 100000]
# Each tick labelled on its own (Vega's SI format applies one precision to all ticks, so 1 would read "0k").
STEP_LABELS = "datum.value >= 1000 ? format(datum.value / 1000, '~g') + 'k' : format(datum.value, '~g')"
STROKE_LEGEND = {"symbolType": "stroke", "symbolStrokeWidth": 3, "symbolOpacity": 1}
DASHES = [[1, 0], [6, 3], [2, 2], [8, 2, 2, 2]]


def panel_width(n: int, most: int = 300, least: int = 150) -> int:
    """Width of each of ``n`` side-by-side panels so that together they fit the page's main column."""
    return int(max(least, min(most, CONTENT / max(n, 1) - 30)))


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


def step_axis(title: str | None = STEP_TITLE) -> alt.Axis:
    """Ticks at 0 and the powers of ten, labelled 0, 1, 10, 100, 1k, 10k, 100k."""
    return alt.Axis(title=title, values=STEP_TICKS, labelExpr=STEP_LABELS)


def step_x(field: str = "step", title: str | None = STEP_TITLE) -> alt.X:
    """The book's x encoding of training steps: ``field`` on the symlog scale and axis. Every layer of a chart
    uses it, so layered axes merge cleanly."""
    return alt.X(f"{field}:Q", scale=step_scale(), axis=step_axis(title))


def colour_scale(domain: Sequence[str], offset: int = 0) -> alt.Scale:
    """A categorical colour scale with a fixed domain (``COLOURS`` in order, from ``offset``)."""
    dom = list(domain)
    pal = COLOURS[offset:] + COLOURS[:offset]
    return alt.Scale(domain=dom, range=[pal[i % len(pal)] for i in range(len(dom))])


def band_tooltip(extra: Sequence[str] = (), fmt: str = ".4g") -> list:
    """Tooltip of a band table's row: ``extra`` fields, the step, the centre and the band."""
    return [
        *extra,
        alt.Tooltip("step:Q"),
        alt.Tooltip("value:Q", format=fmt),
        alt.Tooltip("lo:Q", format=fmt, title="band low"),
        alt.Tooltip("hi:Q", format=fmt, title="band high"),
    ]


def _dash(field: str, df: pd.DataFrame, domain: Sequence[str] | None) -> alt.StrokeDash:
    dom = list(domain) if domain is not None else list(dict.fromkeys(df[field]))
    return alt.StrokeDash(
        f"{field}:N",
        title=field,
        scale=alt.Scale(domain=dom, range=DASHES[: len(dom)]),
        legend=alt.Legend(symbolType="stroke", symbolStrokeWidth=2, symbolStrokeColor="#333"),
    )


def band_layers(
    base: alt.Chart,
    *,
    y_title: str | None,
    y_scale: alt.Scale | None = None,
    colour: alt.Color | str | None = None,
    tooltip: Sequence = (),
    points: bool = True,
    axis: alt.Axis | None = None,
    value: str = "value",
    lo: str = "lo",
    hi: str = "hi",
    line_channels: dict | None = None,
    band_channels: dict | None = None,
) -> list[alt.Chart]:
    """The layers of the book's line-with-band, on ``base`` (a chart that carries the x encoding and, if any, the
    data): the ``lo``–``hi`` band, the ``value`` line, and its points unless ``points`` is false. ``colour`` is an
    encoding or one fixed colour; ``line_channels`` / ``band_channels`` add encodings (a dash, a detail). Every
    line-with-band chart of the book is drawn from these layers."""
    ys = y_scale or alt.Scale(zero=False)
    marks = {"color": colour} if isinstance(colour, str) else {}
    channels = {"color": colour} if isinstance(colour, alt.Color) else {}
    y = alt.Y(f"{value}:Q", title=y_title, scale=ys, **({"axis": axis} if axis is not None else {}))
    tips = {"tooltip": list(tooltip)} if tooltip else {}
    band = base.mark_area(opacity=BAND_OPACITY, **marks).encode(
        y=alt.Y(f"{lo}:Q", scale=ys), y2=f"{hi}:Q", **channels, **(band_channels or {})
    )
    line = base.mark_line(**marks).encode(y=y, **channels, **tips, **(line_channels or {}))
    layers = [band, line]
    if points:  # in their own layer (no line style), so a line-style legend draws dashes, not dots
        layers.append(base.mark_circle(size=POINT_SIZE, opacity=1, **marks).encode(y=y, **channels, **tips))
    return layers


def conv_band_layers(base: alt.Chart, *, colour: alt.Color, label: str, tooltip: Sequence = ()) -> list[alt.Chart]:
    """:func:`band_layers` for E[conv] = −KL over seed pairs (columns conv, conv_lo, conv_hi, kl, kl_min, kl_max),
    with the tooltip each such chart shows: ``label`` (the field that names the line), size, step, the mean KL and
    its range over pairs, then ``tooltip``."""
    return band_layers(
        base,
        y_title="E[conv] = −KL (nats)",
        colour=colour,
        value="conv",
        lo="conv_lo",
        hi="conv_hi",
        tooltip=[
            label,
            "size",
            "step",
            alt.Tooltip("kl:Q", title="mean KL", format=".4f"),
            alt.Tooltip("kl_min:Q", title="min over pairs", format=".4f"),
            alt.Tooltip("kl_max:Q", title="max over pairs", format=".4f"),
            *tooltip,
        ],
    )


@builder
def band_lines(
    df: pd.DataFrame,
    colour: str,
    *,
    y_title: str,
    domain: Sequence[str] | None = None,
    dash: str | None = None,
    dash_domain: Sequence[str] | None = None,
    y_scale: alt.Scale | None = None,
    legend: alt.Legend | None = None,
    legend_title: str | None = None,
    tooltip: Sequence[str] = (),
    band: bool = True,
    x_title: str | None = STEP_TITLE,
    width: int = TEXT_WIDTH,
    height: int = HEIGHT,
    title: str | None = None,
) -> alt.LayerChart:
    """The book's line-with-band chart of a band table (:func:`lmconv.metrics.stats.band`: step, ``value``, ``lo``,
    ``hi``): one line with points per ``colour`` value (colours in ``domain`` order, default order of
    appearance) and ``dash`` value, over the ``lo``–``hi`` band, on the symlog step axis. The data sit at the top
    level, so the chart can be faceted."""
    dom = list(domain) if domain is not None else list(dict.fromkeys(df[colour]))
    leg = legend if legend is not None else alt.Legend(**STROKE_LEGEND)
    col = alt.Color(f"{colour}:N", scale=colour_scale(dom), title=legend_title or colour, sort=dom, legend=leg)
    tips = band_tooltip([c for c in dict.fromkeys([colour, *([dash] if dash else []), *tooltip])])
    layers = band_layers(
        alt.Chart().encode(x=step_x(title=x_title)),
        y_title=y_title,
        y_scale=y_scale,
        colour=col,
        tooltip=tips,
        line_channels={"strokeDash": _dash(dash, df, dash_domain)} if dash else None,
        band_channels={"detail": f"{dash}:N"} if dash else None,
    )
    chart = alt.layer(*(layers if band else layers[1:]), data=df).properties(width=width, height=height)
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
