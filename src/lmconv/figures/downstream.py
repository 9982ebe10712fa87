"""Figures of the downstream sets: the seeds' downstream convergence beside E[conv] (chapter 2), and accuracy and
held-out loss over training per size (chapter 1)."""

from __future__ import annotations

import altair as alt
import pandas as pd

from ..book.provenance import builder
from . import plots
from .kl import ECONV_TITLE, size_rules


def _with_rules(chart: alt.LayerChart, rules: pd.DataFrame | None, sizes: list[str]) -> alt.LayerChart:
    return alt.layer(chart, size_rules(rules, sizes)) if rules is not None and len(rules) else chart


@builder
def convergence_beside(
    econv: pd.DataFrame,
    econv_bounds: pd.DataFrame,
    downstream: dict[str, pd.DataFrame],
    downstream_bounds: pd.DataFrame | None,
    titles: dict[str, str],
) -> alt.HConcatChart:
    """E[conv] on the probe (left) beside the seeds' downstream convergence, −KL of their 2-way distributions on
    the minimal pairs, one panel per estimator (``downstream``: estimator → band table over phenomena and seed
    pairs); dashed rules mark each curve's detected phase boundaries (the downstream ones on the paper's
    estimator)."""
    sizes = list(dict.fromkeys(econv["size"]))
    w, h = plots.PANEL_WIDTH, plots.PANEL_HEIGHT
    left = plots.band_lines(econv, "size", domain=sizes, y_title=ECONV_TITLE, width=w, height=h, title="probe")
    panels = [_with_rules(left, econv_bounds, sizes)]
    for k, (est, df) in enumerate(downstream.items()):
        chart = plots.band_lines(
            df, "size", domain=sizes, y_title="−KL of the pair preferences", width=w, height=h, title=titles[est]
        )
        panels.append(_with_rules(chart, downstream_bounds if k == 0 else None, sizes))
    return alt.hconcat(*panels).resolve_scale(y="independent")  # the probe panel alone when there are no sets


@builder
def accuracy_and_loss(acc: pd.DataFrame, loss: pd.DataFrame, set_words: dict[str, str]) -> alt.VConcatChart:
    """Per size over training: accuracy on each downstream set (one panel per set; band: min–max over seeds)
    above the held-out loss on all probe tokens and on the rare ones (band: min–max over seeds)."""
    sizes = list(dict.fromkeys(acc["size"]))
    w, h = plots.PANEL_WIDTH - 40, plots.PANEL_HEIGHT - 30
    top = [  # none when the profile builds no downstream sets: the loss panels alone
        plots.band_lines(
            acc[acc.set == s], "size", domain=sizes, y_title="accuracy", width=w, height=h, title=set_words[s]
        )
        for s in set_words
        if s in set(acc.set)
    ]
    bottom = [
        plots.band_lines(
            loss[loss.tokens == t],
            "size",
            domain=sizes,
            y_title="probe loss (nats/token)",
            width=w,
            height=h,
            title=f"{t} tokens",
        )
        for t in ("all", "rare")
    ]
    rows = [alt.hconcat(*top)] if top else []
    return alt.vconcat(*rows, alt.hconcat(*bottom).resolve_scale(y="independent"))
