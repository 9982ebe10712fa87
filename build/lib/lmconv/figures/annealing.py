"""Figures of the section "Reconvergence or annealing?": E[conv] per arm above the arms' learning rates."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from ..book.provenance import builder
from . import plots

ARM_ORDER = ("cosine", "constant", "wsd")


def _arm_scale(arms: Sequence[str]) -> alt.Scale:
    """One colour per arm, the same in every panel (the theme's colour-blind palette, in a fixed order)."""
    known = [a for a in ARM_ORDER if a in arms] + sorted(a for a in arms if a not in ARM_ORDER)
    return alt.Scale(domain=known, range=plots.PALETTE[: len(known)])


@builder
def conv_by_arm(
    curves: pd.DataFrame,
    lr: pd.DataFrame,
    split: int | None = None,
    *,
    sizes: Sequence[str] | None = None,
    min_step: int = 0,
    linear: bool = False,
    width: int = 460,
    height: int = 170,
    lr_height: int = 80,
) -> alt.VConcatChart:
    """E[conv] = −KL over training, one panel per size (stacked) and one line per arm, the arms' LR beneath.

    ``curves`` is :func:`lmconv.lenses.annealing.mean_curves` (arm, size, step, conv, conv_lo, conv_hi, kl,
    kl_min, kl_max, kl_rel); the band spans the seed pairs (min–max of −KL). ``lr`` has arm, step, lr,
    multiplier (the same for every size). A dashed rule marks ``split`` (where the WSD arm starts to decay).
    Panels follow ``sizes`` (default: order of appearance). With ``linear`` the step axis is linear and starts at
    ``min_step`` (for late training); otherwise it is the book's symlog step axis.
    """
    arms = list(dict.fromkeys(curves.arm))
    colour = alt.Color("arm:N", scale=_arm_scale(arms), title="arm")
    c = curves[curves.step >= min_step]
    r = lr[lr.step >= min_step]
    if linear:
        xscale = alt.Scale(domain=[int(c.step.min()), int(c.step.max())], nice=False)
        xaxis = alt.Axis(title="training step", format="~s")
    else:
        xscale, xaxis = plots.step_scale(), plots.step_axis()
    top_axis = alt.Axis(title=None, format="~s") if linear else plots.step_axis(title=None)
    x_top = alt.X("step:Q", scale=xscale, axis=top_axis)

    def rule(axis: alt.Axis) -> alt.Chart | None:
        """The dashed line at ``split``, with the same x axis as the layer it joins (Vega-Lite merges them)."""
        if split is None or split < min_step:
            return None
        return (
            alt.Chart(pd.DataFrame({"step": [split]}))
            .mark_rule(color="#555", strokeDash=[4, 4])
            .encode(x=alt.X("step:Q", scale=xscale, axis=axis), tooltip=[alt.Tooltip("step", title="decay starts")])
        )

    panels = []
    for size in sizes or list(dict.fromkeys(c["size"])):
        d = c[c["size"] == size]
        band, line, points = plots.conv_band_layers(
            alt.Chart(d).encode(x=x_top),
            colour=colour,
            label="arm",
            tooltip=[alt.Tooltip("kl_rel:Q", title="KL / KL at step 0", format=".2f")],
        )
        # the line layer first, so that the merged legend shows the lines' symbols, not the faint band's
        layers = [line, band, points] + ([dash] if (dash := rule(top_axis)) is not None else [])
        panels.append(alt.layer(*layers).properties(width=width, height=height, title=f"size {size}"))
    schedule = (
        alt.Chart(r)
        .mark_line()
        .encode(
            x=alt.X("step:Q", scale=xscale, axis=xaxis),
            y=alt.Y("multiplier:Q", title="LR / peak", scale=alt.Scale(domain=[0, 1.05])),
            color=colour,
            strokeDash=alt.StrokeDash("arm:N", legend=None),
            tooltip=["arm", "step", alt.Tooltip("lr:Q", format=".2e"), alt.Tooltip("multiplier:Q", format=".3f")],
        )
        .properties(width=width, height=lr_height, title="learning rate (every size)")
    )
    if (dash := rule(xaxis)) is not None:
        schedule = alt.layer(schedule, dash)
    return alt.vconcat(*panels, schedule, spacing=8).resolve_scale(color="shared")
