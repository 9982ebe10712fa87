"""Charts of chapters 5 and 6 (activation convergence, effective rank), from the tables of
:mod:`lmconv.lenses.activations`. Every chart takes pre-aggregated tables; x is the training step on the
book's symlog axis unless said otherwise."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from ..book.provenance import builder
from . import plots

CIRCUIT_TITLES = {"attention": "Attention", "mlp": "MLP"}


def _symlog(x: np.ndarray) -> np.ndarray:
    """The book's step scale (Vega symlog, constant 1): u = sign(x)·ln(1 + |x|)."""
    x = np.asarray(x, dtype=float)
    return np.sign(x) * np.log1p(np.abs(x))


def _symexp(u: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_symlog`."""
    u = np.asarray(u, dtype=float)
    return np.sign(u) * np.expm1(np.abs(u))


def dodge(steps: np.ndarray, index: np.ndarray, n: int, width: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre, left and right edge (in steps) of box ``index`` of ``n`` side by side at each step, each box
    ``width`` wide in symlog units, so boxes keep one width everywhere on the axis."""
    u = _symlog(steps) + (np.asarray(index, dtype=float) - (n - 1) / 2) * width
    return _symexp(u), _symexp(u - 0.45 * width), _symexp(u + 0.45 * width)


def cell_edges(steps: Sequence[int]) -> dict[int, tuple[float, float]]:
    """Heatmap cell of each checkpoint: from the symlog midpoint with the previous checkpoint to the one with
    the next (the first and last cells are symmetric about their step)."""
    s = np.asarray(sorted(set(int(x) for x in steps)), dtype=float)
    u = _symlog(s)
    if len(u) == 1:
        return {int(s[0]): (float(s[0]) - 0.5, float(s[0]) + 0.5)}
    mid = (u[1:] + u[:-1]) / 2
    lo = np.r_[u[0] - (mid[0] - u[0]), mid]
    hi = np.r_[mid, u[-1] + (u[-1] - mid[-1])]
    return {int(a): (float(b), float(c)) for a, b, c in zip(s, _symexp(lo), _symexp(hi), strict=True)}


def _order(values: Sequence[str], sizes: Sequence[str] | None) -> list[str]:
    present = list(dict.fromkeys(values))
    return [s for s in sizes if s in present] if sizes else present


@builder
def boxes(
    box: pd.DataFrame,
    *,
    y_title: str,
    sizes: Sequence[str] | None = None,
    row: str = "circuit",
    width: int = 420,
    height: int = 200,
    box_width: float = 0.07,
    y_domain: tuple[float, float] | None = None,
) -> alt.VConcatChart:
    """Box plots over training, one box per size side by side at each step, one panel per ``row`` value.

    ``box`` has size, step, ``row``, min, q1, median, q3, max, n (as :func:`lmconv.lenses.activations.box_stats`).
    Whiskers span min–max, the box q1–q3, the black tick is the median.
    """
    order = _order(box["size"], sizes)
    df = box.copy()
    idx = df["size"].map({s: i for i, s in enumerate(order)}).to_numpy()
    df["x"], df["x0"], df["x1"] = dodge(df.step.to_numpy(), idx, len(order), box_width)
    panels = []
    for value in _order(df[row], None):
        d = df[df[row] == value]
        base = alt.Chart(d).encode(
            color=alt.Color("size:N", sort=order, title="size"),
            tooltip=[
                "size:N",
                "step:Q",
                alt.Tooltip("median:Q", format=".3f"),
                alt.Tooltip("q1:Q", format=".3f"),
                alt.Tooltip("q3:Q", format=".3f"),
                alt.Tooltip("min:Q", format=".3f"),
                alt.Tooltip("max:Q", format=".3f"),
                alt.Tooltip("n:Q", title="values in box"),
            ],
        )
        x = plots.step_x("x")
        ys = alt.Scale(domain=list(y_domain)) if y_domain else alt.Scale(zero=False)
        whisk = base.mark_rule().encode(x=x, y=alt.Y("min:Q", scale=ys, title=y_title), y2="max:Q")
        bar = base.mark_bar(opacity=0.75).encode(
            x=alt.X("x0:Q", scale=plots.step_scale()), x2="x1:Q", y="q1:Q", y2="q3:Q"
        )
        med = base.mark_rule(color="black", strokeWidth=1.5).encode(
            x=alt.X("x0:Q", scale=plots.step_scale()), x2="x1:Q", y="median:Q"
        )
        panels.append(
            alt.layer(whisk, bar, med).properties(width=width, height=height, title=CIRCUIT_TITLES.get(value, value))
        )
    return alt.vconcat(*panels)


@builder
def median_lines(
    band: pd.DataFrame,
    *,
    y_title: str,
    sizes: Sequence[str] | None = None,
    width: int = 190,
    height: int = 200,
    y_domain: tuple[float, float] | None = None,
) -> alt.HConcatChart:
    """One panel per circuit: per size the median over seeds of the per-seed median over layers, with the
    min–max band over seeds (``band`` as :func:`lmconv.lenses.activations.layer_band` by size, circuit, step)."""
    panels = []
    for circuit in _order(band.circuit, list(CIRCUIT_TITLES)):
        d = band[band.circuit == circuit]
        panels.append(
            _lines(d, "size", y_title, sizes, (width, height), y_domain, CIRCUIT_TITLES.get(circuit, circuit))
        )
    return alt.hconcat(*panels)


def _lines(
    d: pd.DataFrame,
    color: str,
    y_title: str,
    order: Sequence[str] | None,
    size: tuple[int, int],
    y_domain: tuple[float, float] | None,
    title: str,
) -> alt.LayerChart:
    """:func:`lmconv.figures.plots.band_lines` of a band table (value, lo, hi), colours in ``order``, ``size``
    (w, h)."""
    ys = alt.Scale(domain=list(y_domain)) if y_domain else None
    width, height = size
    return plots.band_lines(
        d, color, y_title=y_title, domain=_order(d[color], order), y_scale=ys, width=width, height=height, title=title
    )


@builder
def layer_lines(
    band: pd.DataFrame, *, sizes: Sequence[str] | None = None, width: int = 180, height: int = 130
) -> alt.VConcatChart:
    """Per-layer CKA: rows = sizes, columns = circuits; per layer the median over seeds with the min–max band
    over seeds (``band`` by size, circuit, layer, step)."""
    d = band.copy()
    d["layer"] = "layer " + d.layer.astype(str)
    rows = []
    for size in _order(d["size"], sizes):
        cells = []
        for circuit in _order(d.circuit, list(CIRCUIT_TITLES)):
            g = d[(d["size"] == size) & (d.circuit == circuit)]
            title = f"{size} · {CIRCUIT_TITLES.get(circuit, circuit)}"
            cells.append(_lines(g, "layer", "CKA with final", None, (width, height), (0, 1), title))
        rows.append(alt.hconcat(*cells))
    return alt.vconcat(*rows).resolve_scale(color="independent")


@builder
def heatmap(
    band: pd.DataFrame,
    *,
    midpoint: float,
    sizes: Sequence[str] | None = None,
    width: int = 170,
    row_height: int = 22,
) -> alt.VConcatChart:
    """Layer × step heatmap of CKA (``band``: a band table over seeds by size, circuit, layer, step, value = mean).

    Colour: white at 0, green at ``midpoint``, black at 1 (the original's scale). Each cell spans from the
    symlog midpoint with the previous checkpoint to the one with the next.
    """
    edges = cell_edges(band.step.unique())
    d = band.copy()
    d["x0"] = d.step.map(lambda s: edges[int(s)][0])
    d["x1"] = d.step.map(lambda s: edges[int(s)][1])
    colour = alt.Scale(domain=[0, midpoint, 1], range=["#ffffff", "#009E73", "#000000"], interpolate="rgb", clamp=True)
    rows = []
    for size in _order(d["size"], sizes):
        cells = []
        for circuit in _order(d.circuit, list(CIRCUIT_TITLES)):
            g = d[(d["size"] == size) & (d.circuit == circuit)]
            n_layers = g.layer.nunique()
            cells.append(
                alt.Chart(g)
                .mark_rect()
                .encode(
                    x=plots.step_x("x0"),
                    x2="x1:Q",
                    y=alt.Y("layer:O", title="layer", sort="descending"),
                    color=alt.Color("value:Q", scale=colour, title="CKA"),
                    tooltip=[
                        "layer:O",
                        "step:Q",
                        alt.Tooltip("value:Q", format=".3f", title="mean"),
                        alt.Tooltip("lo:Q", format=".3f", title="min over seeds"),
                        alt.Tooltip("hi:Q", format=".3f", title="max over seeds"),
                    ],
                )
                .properties(
                    width=width,
                    height=max(row_height * n_layers, 40),
                    title=f"{size} · {CIRCUIT_TITLES.get(circuit, circuit)}",
                )
            )
        rows.append(alt.hconcat(*cells))
    return alt.vconcat(*rows)


@builder
def stabilisation_dots(
    stab: pd.DataFrame, *, within: float, sizes: Sequence[str] | None = None, width: int = 110, height: int = 180
) -> alt.VConcatChart:
    """Stabilisation fraction of training per layer: one dot per seed, spread sideways around its layer
    (crosses at the top for layers that never stabilise), a black tick at the median over seeds, and a dashed
    line at ``within`` (the paper's 20%)."""
    d = stab.copy()
    never = ~np.isfinite(d.fraction.to_numpy(dtype=float))
    d["shown"] = np.where(never, 1.08, d.fraction.to_numpy(dtype=float))
    d["status"] = np.where(never, "never", "stabilised")
    d["fraction"] = d.fraction.where(~never)
    seeds = sorted(d.seed.unique())
    offset = {k: (i - (len(seeds) - 1) / 2) * 0.5 / max(len(seeds), 1) for i, k in enumerate(seeds)}
    d["x"] = d.layer + d.seed.map(offset)
    d["seed"] = d.seed.astype(str)
    med = (
        stab.assign(f=stab.fraction.clip(upper=1.08))
        .groupby(["size", "circuit", "layer"])
        .f.median()
        .rename("median")
        .reset_index()
    )
    rows = []
    order = _order(d["size"], sizes)
    for circuit in _order(d.circuit, list(CIRCUIT_TITLES)):
        cells = []
        for size in order:
            g = d[(d["size"] == size) & (d.circuit == circuit)]
            m = med[(med["size"] == size) & (med.circuit == circuit)].assign(x0=lambda t: t.layer - 0.3)
            m["x1"] = m.layer + 0.3
            n_layers = int(g.layer.max()) + 1
            xs = alt.Scale(domain=[-0.5, n_layers - 0.5], nice=False)
            xa = alt.Axis(values=list(range(n_layers)), format="d", title="layer", grid=False)
            ys = alt.Scale(domain=[0, 1.12])
            dots = (
                alt.Chart(g)
                .mark_point(filled=True, size=40, opacity=0.85)
                .encode(
                    x=alt.X("x:Q", scale=xs, axis=xa),
                    y=alt.Y("shown:Q", scale=ys, title="stabilised at (fraction of training)"),
                    color=alt.Color("seed:N", title="seed"),
                    shape=alt.Shape(
                        "status:N", scale=alt.Scale(domain=["stabilised", "never"], range=["circle", "cross"])
                    ),
                    tooltip=["seed:N", "layer:Q", "status:N", "step:Q", alt.Tooltip("fraction:Q", format=".3f")],
                )
            )
            tick = (
                alt.Chart(m)
                .mark_rule(color="black", strokeWidth=2)
                .encode(
                    x=alt.X("x0:Q", scale=xs),
                    x2="x1:Q",
                    y=alt.Y("median:Q", scale=ys),
                    tooltip=["layer:Q", alt.Tooltip("median:Q", format=".3f", title="median over seeds")],
                )
            )
            rule = alt.Chart(pd.DataFrame({"y": [within]})).mark_rule(strokeDash=[4, 4], color="#555").encode(y="y:Q")
            cells.append(
                alt.layer(rule, tick, dots).properties(
                    width=width, height=height, title=f"{size} · {CIRCUIT_TITLES.get(circuit, circuit)}"
                )
            )
        rows.append(alt.hconcat(*cells))
    return alt.vconcat(*rows)


@builder
def results_grid(
    panel: pd.DataFrame, *, sizes: Sequence[str] | None = None, width: int = 190, height: int = 150
) -> alt.VConcatChart:
    """The original "results" figure, transposed to fit a page: rows = metrics (CKA, PER of weights, of
    gradients), columns = circuits, free y axes; per size the median over seeds of the per-seed median over
    layers, band min–max over seeds."""
    rows = []
    for metric in _order(panel.metric, None):
        cells = []
        for circuit in _order(panel.circuit, list(CIRCUIT_TITLES)):
            g = panel[(panel.circuit == circuit) & (panel.metric == metric)]
            title = f"{CIRCUIT_TITLES.get(circuit, circuit)} · {metric}"
            cells.append(_lines(g, "size", metric, sizes, (width, height), None, title))
        rows.append(alt.hconcat(*cells))
    return alt.vconcat(*rows)


@builder
def link_scatter(
    units: pd.DataFrame,
    x: str,
    x_title: str,
    *,
    sizes: Sequence[str] | None = None,
    width: int = 180,
    height: int = 200,
) -> alt.HConcatChart:
    """Per circuit, one point per unit (size, seed, layer): its rank measure ``x`` against the fraction of
    training at which it stabilised (crosses at the top: never)."""
    d = units.copy()
    never = ~np.isfinite(d.stab_fraction.to_numpy(dtype=float))
    d["shown"] = np.where(never, 1.08, d.stab_fraction.to_numpy(dtype=float))
    d["status"] = np.where(never, "never", "stabilised")
    d["stab_fraction"] = d.stab_fraction.where(~never)
    order = _order(d["size"], sizes)
    panels = []
    for circuit in _order(d.circuit, list(CIRCUIT_TITLES)):
        g = d[d.circuit == circuit]
        panels.append(
            alt.Chart(g)
            .mark_point(filled=True, size=50, opacity=0.8)
            .encode(
                x=alt.X(f"{x}:Q", title=x_title, scale=alt.Scale(zero=False), axis=alt.Axis(tickCount=4)),
                y=alt.Y("shown:Q", title="stabilised at (fraction of training)", scale=alt.Scale(domain=[0, 1.12])),
                color=alt.Color("size:N", sort=order, title="size"),
                shape=alt.Shape("status:N", scale=alt.Scale(domain=["stabilised", "never"], range=["circle", "cross"])),
                tooltip=[
                    "size:N",
                    "seed:Q",
                    "layer:Q",
                    alt.Tooltip(f"{x}:Q", format=".3f"),
                    alt.Tooltip("stab_fraction:Q", format=".3f"),
                    alt.Tooltip("cka_mean:Q", format=".3f"),
                ],
            )
            .properties(width=width, height=height, title=CIRCUIT_TITLES.get(circuit, circuit))
        )
    return alt.hconcat(*panels)


@builder
def correlation_lines(corr: pd.DataFrame, *, width: int = 400, height: int = 220) -> alt.LayerChart:
    """Spearman ρ over training, one line per circuit, band = bootstrap interval; dashed line at 0."""
    d = corr.rename(columns={"rho": "value"})
    d["circuit"] = d.circuit.map(lambda c: CIRCUIT_TITLES.get(c, c))
    chart = _lines(d, "circuit", "Spearman ρ (PER, CKA)", None, (width, height), (-1, 1), "")
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(strokeDash=[4, 4], color="#555").encode(y="y:Q")
    return alt.layer(zero, chart)
