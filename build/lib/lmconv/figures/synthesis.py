"""Chapter 9's figure: every lens's events on one log-step axis, per size, with the spread over seeds or pairs."""

from __future__ import annotations

import altair as alt
import pandas as pd

from ..book.provenance import builder
from ..lenses.synthesis import EVENTS
from . import plots

LENS_COLOURS = {"cross-seed KL": plots.PALETTE[0], "activations": plots.PALETTE[1], "spectra": plots.PALETTE[2]}


@builder
def events_chart(events: pd.DataFrame, summary: pd.DataFrame, sizes: list[str]) -> alt.FacetChart:
    """Ticks: the event in each seed (or seed pair); circles: the median; one row per size, one axis of steps."""
    order = [EVENTS[e][1] for e in EVENTS]
    units = events.dropna(subset=["step"])
    units = units[units.step > 0].assign(kind="unit", median=None, min=None, max=None)
    med = summary.dropna(subset=["median"]).assign(kind="median", step=lambda d: d["median"], unit="median")
    data = pd.concat([units, med], ignore_index=True)
    data["lens"] = data.event.map(lambda e: EVENTS[e][0])
    data["label"] = data.event.map(lambda e: EVENTS[e][1])
    data = data[["size", "unit", "event", "lens", "label", "step", "kind", "median", "min", "max"]]
    colour = alt.Color("lens:N", scale=alt.Scale(domain=list(LENS_COLOURS), range=list(LENS_COLOURS.values())))
    enc = {
        "x": alt.X("step:Q", scale=alt.Scale(type="log"), axis=alt.Axis(title="training step (log)", format="~s")),
        "y": alt.Y("label:N", sort=order, title=None),
        "color": colour,
    }
    ticks = (
        alt.Chart()
        .mark_tick(thickness=2, size=12, opacity=0.6)
        .encode(**enc, tooltip=["size", "unit", "label", "step"])
        .transform_filter(alt.datum.kind == "unit")
    )
    dots = (
        alt.Chart()
        .mark_point(size=90, filled=True, stroke="black", strokeWidth=0.7, opacity=1)
        .encode(**enc, tooltip=["size", "label", alt.Tooltip("step:Q", title="median", format=".0f"), "min", "max"])
        .transform_filter(alt.datum.kind == "median")
    )
    return (
        alt.layer(ticks, dots, data=data)
        .properties(width=plots.WIDTH - 160, height=150)
        .facet(row=alt.Row("size:N", sort=sizes, title="size"))
    )
