"""Section 2b, "Initialisation or data order?" (``notebooks/02b_seed_sources.md``): the cross-seed KL of pairs
of runs that differ in their initialisation, their data order, or both, and the same split for the final
spectra."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
from IPython.display import Markdown

from ..book import status
from ..figures import seed_sources as fig
from ..lenses import seed_sources as S
from . import Glued, section


@dataclass
class SourcesPage:
    """The pair curves (:func:`lmconv.lenses.seed_sources.load`), their per-size summary, and the final spectra's
    and activations' distances between seeds summarised the same way."""

    data: S.SourcesData
    summary: dict[str, dict[str, Any]]
    spectra: dict[str, dict[str, Any]]
    cka: dict[str, dict[str, Any]]
    curves: pd.DataFrame  # mean over seed pairs, per kind, size and step
    rel_tol: float


def load(P: SimpleNamespace) -> SourcesPage:
    """Analyse the main suite of ``P.profile`` at its decoupled companion's seeds, and every arm of the companion."""
    data = S.load(P.profile, P.decoupled_profile, P.sizes)
    summary = S.summarise(data.curves, rel_tol=P.rel_tol)
    spectra, cka = S.pair_summary(data.spectra, "delta_sigma"), S.pair_summary(data.cka, "cka_distance")
    return SourcesPage(data, summary, spectra, cka, S.mean_curves(data.curves), P.rel_tol)


@section
def design(d: SourcesPage) -> Glued:
    """The two profiles, the sizes and seeds, which seed each arm fixes, and what training the arms cost."""
    data = d.data
    comp, n = data.companion, len(data.seeds)
    return {
        "main_profile": data.main.name,
        "decoupled_profile": comp.name,
        "sizes_text": ", ".join(data.sizes),
        "seeds_text": ", ".join(map(str, data.seeds)),
        "n_seeds": n,
        "n_pairs": n * (n - 1),
        "data_arm": data.arms["data"],
        "weight_arm": data.arms["weight"],
        "data_fixed": data.fixed_seed("data"),
        "weight_fixed": data.fixed_seed("weight"),
        "n_runs": len(comp.arms) * len(comp.sizes) * len(comp.seeds),
        "train_minutes": status.training_seconds(comp.name) / 60,
        "train_threads": comp.arm().train.threads,
    }


@section
def step_zero(d: SourcesPage) -> Glued:
    """What the design fixes at step 0, measured (:func:`lmconv.lenses.seed_sources.step_zero`)."""
    z = S.step_zero(d.data.curves)
    return {"step0_data_max": z["data_max"], "step0_weight_gap": z["weight_gap"], "step0_words": z["words"]}


@section
def curves(d: SourcesPage) -> Glued:
    """E[conv] of the three kinds of pair over training, one panel per size."""
    peaks = {size: s["moments"]["peak"] for size, s in d.summary.items()}
    return {"fig_sources": fig.conv_by_kind(d.curves, S.KIND_WORDS, peaks, sizes=d.data.sizes)}


def verdicts(d: SourcesPage) -> Markdown:
    """One statement per size (:func:`lmconv.lenses.seed_sources.verdict`), as a Markdown list."""
    return Markdown("\n".join(f"- {S.verdict(size, s)}" for size, s in d.summary.items()))


@section
def sources(d: SourcesPage) -> Glued:
    """Per size and moment, which source dominates the cross-seed KL; the section's conclusion and its table."""
    shares = [a["share"] for s in d.summary.values() for m, a in s["attribution"].items() if m != "start"]
    weight = [x["weight"] for x in shares if x["weight"] is not None]
    data = [x["data"] for x in shares if x["data"] is not None]
    return {
        "source_verdicts": verdicts(d),
        "source_conclusion": S.conclusion(d.summary),
        "tab_sources": S.table(d.summary).set_index(["size", "pair differs in"]),
        "share_weight_lo": float(np.min(weight)),
        "share_weight_hi": float(np.max(weight)),
        "share_data_lo": float(np.min(data)),
        "share_data_hi": float(np.max(data)),
        "rel_tol": d.rel_tol,
    }


def distance_lines(per_size: dict[str, dict[str, Any]], what: str) -> Markdown:
    """One line per size: the dominant source of a distance between two runs' final states, and each kind's mean
    with its min–max over unordered seed pairs."""
    lines = []
    for size, s in per_size.items():
        k = s["kinds"]
        nums = ", ".join(
            f"{S.KIND_WORDS[kind]} {k[kind]['value']:.4f} ({k[kind]['lo']:.4f}–{k[kind]['hi']:.4f})" for kind in S.KINDS
        )
        who = "neither source dominates" if s["source"] == "neither" else f"{S.SOURCE_WORDS[s['source']]} dominates"
        lines.append(f"- **{size}**: {who} ({what} {nums})")
    return Markdown("\n".join(lines))


@section
def final_states(d: SourcesPage) -> Glued:
    """1 − CKA between the seeds' final activations and ΔΣ between their final singular distributions, per kind
    of pair, and which source dominates each."""
    return {
        "cka_verdicts": distance_lines(d.cka, "1 − CKA"),
        "spectra_verdicts": distance_lines(d.spectra, "ΔΣ"),
    }
