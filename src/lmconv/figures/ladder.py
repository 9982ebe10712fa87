"""Figure of chapter 10, "Is it the length of training?": each claim's statistic at every rung of the cooldown
ladder against tokens per parameter, with the range the papers' suites trained in."""

from __future__ import annotations

from collections.abc import Mapping

import altair as alt
import pandas as pd

from ..book.provenance import builder
from . import plots


@builder
def by_tokens_per_parameter(
    table: pd.DataFrame,
    statistics: Mapping[str, str],
    papers: tuple[float, float],
    *,
    width: int | None = None,
    height: int = 170,
) -> alt.VConcatChart:
    """One panel per claim of ``statistics`` (claim id → the statistic's name): its value at each size and
    length (x: tokens per parameter, log) for the trunk read to that length (dashed) and the cooled run (solid);
    the point's shape is the rung's verdict. The grey band spans ``papers``, the PolyPythias' tokens per
    parameter. ``table`` is :func:`lmconv.lenses.ladder.table`."""
    sizes = list(dict.fromkeys(table["size"]))
    colour = alt.Color("size:N", scale=plots.colour_scale(sizes), title="size")
    dash = alt.StrokeDash(
        "variant:N",
        scale=alt.Scale(domain=["cooled", "constant"], range=plots.DASHES[:2]),
        title="rung",
        legend=plots.STROKE_LEGEND,
    )
    lo = min(float(table.tokens_per_parameter.min()), papers[0]) / 2
    hi = max(float(table.tokens_per_parameter.max()), papers[1]) * 2
    x = alt.X(
        "tokens_per_parameter:Q",
        scale=alt.Scale(type="log", domain=[lo, hi]),
        title="tokens per parameter (log)",
    )
    band = (
        alt.Chart(pd.DataFrame({"lo": [papers[0]], "hi": [papers[1]], "what": ["PolyPythia suites"]}))
        .mark_rect(color="#999", opacity=0.25)
        .encode(x="lo:Q", x2="hi:Q", tooltip=[alt.Tooltip("what:N", title="range"), "lo:Q", "hi:Q"])
    )
    panels = []
    for claim, stat in statistics.items():
        d = table.assign(value=pd.to_numeric(table[f"{claim}:value"]), verdict=table[f"{claim}:verdict"])
        base = alt.Chart(d).encode(x=x, y=alt.Y("value:Q", title=stat), color=colour)
        line = base.mark_line().encode(strokeDash=dash, detail="variant:N")
        points = base.mark_point(filled=True, size=50).encode(
            shape=alt.Shape("verdict:N", title="verdict at the rung"),
            tooltip=["size", "variant", "length", alt.Tooltip("tokens_per_parameter:Q", format=".2f"),
                     alt.Tooltip("epochs:Q", format=".2f"), "verdict", alt.Tooltip("value:Q", format=".3g")],
        )  # fmt: skip
        panels.append(
            alt.layer(band, line, points).properties(
                width=width or plots.TEXT_WIDTH, height=height, title=f"{claim}: {stat}"
            )
        )
    return alt.vconcat(*panels).resolve_scale(color="shared", shape="shared", strokeDash="shared")
