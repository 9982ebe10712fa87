"""Chapter 9, "Three lenses, one suite" (``notebooks/09_three_lenses.md``): the events that chapters 2, 5 and 7
detect, per size and seed, on one axis of training steps, and whether they line up.

:func:`load` detects every lens's events once for the chapter's parameters; each section function returns the
values its prose, figures and tables glue.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pandas as pd

from .. import analysis
from ..figures import synthesis as fig
from ..lenses import spectral as sp
from ..lenses import synthesis as syn
from . import Glued, analysed, section

LABELS = {e: label for e, (_, label) in syn.EVENTS.items()}


@dataclass
class ThreeLensesData:
    """The events of the three lenses and their summaries, shared by the chapter's sections."""

    P: SimpleNamespace
    res: analysis.Results
    total: int  # training steps of the suite
    events: pd.DataFrame  # one row per size, unit (seed pair or seed) and event (syn.EVENTS)
    summary: pd.DataFrame  # syn.summarise: median, min, max step per size and event
    gap_table: pd.DataFrame  # syn.gaps: the gap of every pair of events in each size, in decades
    pairs: pd.DataFrame  # syn.aligned_pairs: per pair of events, the sizes where they line up


def events(res: analysis.Results, P: SimpleNamespace, total: int) -> pd.DataFrame:
    """Every lens's events: the cross-seed KL's per seed pair, the activations' and the spectra's per run."""
    return pd.concat(
        [
            syn.kl_events(res.pairs, rel_tol=P.rel_tol),
            syn.cka_events(res.cka, total, threshold=P.cka_threshold),
            syn.sosd_events(res.suite, res.family, res.sizes, res.seeds, sp.SosdRule.from_params(P)),
        ],
        ignore_index=True,
    )


def load(P: SimpleNamespace) -> ThreeLensesData:
    """Run (or read from the cache) the engine for the chapter's sizes and seeds; detect and summarise events."""
    res = analysed(P)
    total = res.suite.profile.arm().train.steps
    ev = events(res, P, total)
    summary = syn.summarise(ev, res.sizes)
    gap_table = syn.gaps(summary)
    return ThreeLensesData(P, res, total, ev, summary, gap_table, syn.aligned_pairs(gap_table, P.align_tol))


@section
def setup(d: ThreeLensesData) -> Glued:
    """The suite's counts and the alignment tolerance, as the opening prose states them."""
    n_seeds = len(d.res.seeds)
    return {
        "n_sizes": len(d.res.sizes),
        "n_seeds": n_seeds,
        "n_pairs": n_seeds * (n_seeds - 1),
        "align_tol": d.P.align_tol,
        "align_factor": 10**d.P.align_tol,
        "total": d.total,
    }


@section
def the_events(d: ThreeLensesData) -> Glued:
    """The chart of every event and its table (median, min and max step over the units that show it)."""
    tab = d.summary.assign(event=d.summary.label)[["size", "lens", "event", "seen", "units", "median", "min", "max"]]
    return {
        "fig_events": fig.events_chart(d.events, d.summary, d.res.sizes),
        "tab_events": tab.set_index(["size", "lens", "event"]).round(0),
    }


def gap(gap_table: pd.DataFrame, a: str, b: str, size: str) -> float:
    """The gap in decades from event ``a`` to event ``b`` in ``size``; NaN when the pair is not in the table."""
    g = gap_table[(gap_table["size"] == size) & (gap_table.a == a) & (gap_table.b == b)]
    return float(g.gap_decades.iloc[0]) if len(g) else float("nan")


def gaps_table(d: ThreeLensesData) -> pd.DataFrame:
    """:func:`lmconv.lenses.synthesis.aligned_pairs` for the book: one row per pair of events, by their labels."""
    show = d.pairs.copy()
    show["events"] = show.a.map(LABELS) + "  ↔  " + show.b.map(LABELS)
    return show.set_index("events")[[*d.res.sizes, "sizes_aligned", "sizes_measured", "gap_trend"]].round(2)


def aligned_everywhere(pairs: pd.DataFrame) -> pd.DataFrame:
    """The pairs of events that line up in every size where both are seen (and are seen somewhere)."""
    return pairs[(pairs.sizes_aligned == pairs.sizes_measured) & (pairs.sizes_measured > 0)]


@section
def line_up(d: ThreeLensesData) -> Glued:
    """Which events line up, the gap from the KL peak to attention's stabilisation by size, and the verdicts."""
    small, large = d.res.sizes[0], d.res.sizes[-1]
    sync_all = aligned_everywhere(d.pairs)
    aligned = "; ".join(f"{LABELS[a]} and {LABELS[b]}" for a, b in zip(sync_all.a, sync_all.b, strict=True))
    schedule = d.res.suite.profile.arm().train.schedule
    return {
        "peak_cka_small": gap(d.gap_table, "kl_peak", "cka_attention", small),
        "peak_cka_large": gap(d.gap_table, "kl_peak", "cka_attention", large),
        "size_small": small,
        "size_large": large,
        "n_pairs_aligned_everywhere": len(sync_all),
        "n_event_pairs": len(d.pairs),
        "aligned_list": aligned or "none",
        "tab_gaps": gaps_table(d),
        "tab_order": syn.lead_event(d.summary),
        **{f"says_{key}": text for key, text in syn.statements(d.summary, d.gap_table, d.P.align_tol).items()},
        "says_decay": syn.decay_statement(syn.lr_at_events(d.summary, schedule, d.total)),
    }
