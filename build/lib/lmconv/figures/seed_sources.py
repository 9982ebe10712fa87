"""Figures of the section "Initialisation or data order?": E[conv] per kind of seed pair, one panel per size."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from ..book.provenance import builder
from . import plots


@builder
def conv_by_kind(
    curves: pd.DataFrame,
    words: dict[str, str],
    peaks: dict[str, int],
    *,
    sizes: Sequence[str] | None = None,
    width: int = 300,
    height: int = 200,
) -> alt.HConcatChart:
    """E[conv] = −KL over training, one panel per size and one line per kind of seed pair (what differs between
    the two runs), the band spanning the kind's seed pairs (min–max of −KL). ``curves`` is
    :func:`lmconv.lenses.seed_sources.mean_curves`; ``words`` names each kind in the legend; a dashed rule marks
    each size's ``peaks`` step (the moment "at the peak")."""
    c = curves.assign(pair=curves.kind.map(words))
    order = [words[k] for k in words if k in set(curves.kind)]
    colour = alt.Color(
        "pair:N", scale=alt.Scale(domain=order, range=plots.PALETTE[: len(order)]), title="pair differs in"
    )
    x = alt.X("step:Q", scale=plots.step_scale(), axis=plots.step_axis())
    panels = []
    for size in sizes or list(dict.fromkeys(c["size"])):
        d = c[c["size"] == size]
        band, line, points = plots.conv_band_layers(
            alt.Chart(d).encode(x=x),
            colour=colour,
            label="pair",
            tooltip=[alt.Tooltip("pairs:Q", title="ordered pairs")],
        )
        rule = (
            alt.Chart(pd.DataFrame({"step": [peaks[size]]}))
            .mark_rule(color="#555", strokeDash=[4, 4])
            .encode(x=x, tooltip=[alt.Tooltip("step", title="peak of the joint curve")])
        )
        panels.append(alt.layer(line, band, points, rule).properties(width=width, height=height, title=f"size {size}"))
    return alt.hconcat(*panels).resolve_scale(color="shared")
