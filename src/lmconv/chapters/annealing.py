"""Section 2a, "Reconvergence or annealing?" (``notebooks/02a_annealing.md``): the cross-seed KL of the main
suite's cosine arm beside a constant and a warmup–stable–decay arm of the same models."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pandas as pd
from IPython.display import Markdown

from ..book import status
from ..figures import annealing as fig
from ..findings import papers
from ..lenses import annealing as A
from ..training import profiles
from . import Glued, section

SAME_TOL = 1e-9  # arms count as the same models while their KL curves agree to within this (nats)
ARM_KEYS = (
    "peak_step",
    "peak_kl",
    "peak_rel",
    "final_kl",
    "final_rel",
    "fall_total",
    "fall_total_rel",
    "fall_stable",
    "fall_decay",
    "lr_peak",
    "lr_split",
    "lr_final",
)  # glued per arm, when measured
CMP_KEYS = ("cos_fall_window", "const_fall_window", "wsd_fall_decay", "const_fall_decay", "cos_fall_decay")


@dataclass
class AnnealingData:
    """The arms' curves (:func:`lmconv.lenses.annealing.load`), their per-size summary and the rule's tolerance."""

    data: A.AnnealData
    summary: dict[str, dict[str, Any]]
    curves: pd.DataFrame  # mean over seed pairs, per arm, size and step
    rel_tol: float

    def spec(self, label: str) -> A.ArmSpec:
        """The arm labelled ``label`` (``KeyError`` if the anneal profile has none)."""
        return {s.label: s for s in self.data.specs}[label]

    @property
    def steps(self) -> int:
        return self.spec(A.COSINE).steps


def load(P: SimpleNamespace) -> AnnealingData:
    """Analyse the main suite of ``P.profile`` and its anneal companion, and summarise every size."""
    data = A.load(P.profile, P.anneal_profile, P.sizes)
    summary = A.summarise(data, rel_tol=P.rel_tol, abs_tol=P.abs_tol)
    return AnnealingData(data, summary, A.mean_curves(data.curves), P.rel_tol)


@section
def pythia_phase() -> Glued:
    """The PolyPythias' phase (iv), from the paper's last dashed line to the final step, and their LR multiplier
    at both ends."""
    pythia = profiles.Schedule(kind="cosine", warmup=papers.PYTHIA_WARMUP, final_ratio=papers.PYTHIA_LR_FINAL_RATIO)
    iv_start = papers.KL_PHASE_LINES[-1]
    return {
        "pythia_iv_start": iv_start,
        "pythia_steps": papers.PYTHIA_STEPS,
        "pythia_lr_iv_start": pythia.multiplier(iv_start, papers.PYTHIA_STEPS),
        "pythia_lr_end": pythia.multiplier(papers.PYTHIA_STEPS - 1, papers.PYTHIA_STEPS),
    }


def same_tol_text(tol: float = SAME_TOL) -> str:
    """``1e-9`` rather than Python's ``1e-09``."""
    return f"{tol:.0e}".replace("e-0", "e-")


@section
def three_schedules(d: AnnealingData) -> Glued:
    """The profiles, sizes, seeds and schedules of the three arms, how long they agree and how long they trained."""
    data, T, S = d.data, d.steps, d.data.split
    cos, anneal = d.spec(A.COSINE), data.anneal
    n_seeds = len(data.main.seeds)
    return {
        "anneal_profile": anneal.name,
        "main_profile": data.main.name,
        "n_steps": T,
        "warmup": cos.schedule.warmup,
        "final_ratio": cos.schedule.final_ratio,
        "n_seeds": n_seeds,
        "n_pairs": n_seeds * (n_seeds - 1),
        "anneal_sizes": ", ".join(data.sizes),
        "n_anneal_sizes": len(data.sizes),
        "n_main_sizes": len(data.main.sizes),
        "decay_start": S,
        "decay_steps": T - S,
        "decay_share": (T - S) / T,
        "wsd_final_ratio": d.spec("wsd").schedule.final_ratio,
        "same_tol": same_tol_text(),
        "same_until": A.identical_until(data.curves, tol=SAME_TOL),
        "train_minutes": status.training_seconds(anneal.name) / 60,
        "train_threads": anneal.arm().train.threads,
        "n_runs": len(anneal.arms) * len(anneal.sizes) * len(anneal.seeds),
        "wsd_trained_steps": (T - S) * len(anneal.sizes) * len(anneal.seeds),
    }


@section
def curves(d: AnnealingData) -> Glued:
    """The cross-seed KL of every arm over training, and the late part of it on a linear step axis."""
    data, S = d.data, d.data.split
    late_from = A.late_start(data.curves)
    return {
        "fig_conv": fig.conv_by_arm(d.curves, data.lr(), S, sizes=data.sizes),
        "late_from": late_from,
        "fig_late": fig.conv_by_arm(d.curves, data.lr(), S, sizes=data.sizes, min_step=late_from, linear=True),
    }


@section
def early_phases(d: AnnealingData) -> Glued:
    """The unigram point and phase (ii) across arms and sizes, and how far the arms' LRs differ until then."""
    early = A.early_phases(d.summary, d.rel_tol)
    out: Glued = {f"early_{k}": v for k, v in early.items()}
    return out | {"early_lr_gap": A.lr_gap(d.data.specs, early["unigram_hi"])}


def verdicts(d: AnnealingData) -> Markdown:
    """One verdict per size, as a Markdown list."""
    lines = [f"- {A.verdict(size, s['arms'], s['compare'], d.rel_tol)}" for size, s in d.summary.items()]
    return Markdown("\n".join(lines))


@section
def arm_numbers(arms: dict[str, dict[str, Any]]) -> Glued:
    """Every measured number of each arm of one size under ``<arm>_<key>``, and whether (and for how many seed
    pairs) it reconverges."""
    out: Glued = {}
    for arm, a in arms.items():
        out |= {f"{arm}_{key}": a[key] for key in ARM_KEYS if a[key] is not None}
        out[f"{arm}_reconverges"] = "does" if a["reconverges"] else "does not"
        out[f"{arm}_pairs_reconverge"] = a["pairs_reconverge"]
    return out


@section
def comparisons(compare: dict[str, Any]) -> Glued:
    """The arms' falls over common windows of one size, as signed changes of KL (``cmp_<key>``)."""
    out: Glued = {f"cmp_{key}": A.signed(-compare[key]) for key in CMP_KEYS if compare.get(key) is not None}
    return out | {"window_start": compare["window"][0]}


@section
def reconvergence(d: AnnealingData) -> Glued:
    """The per-size verdicts, the focus size's numbers, cross-entropies and comparisons, the table, and the
    section's conclusion and lesson."""
    focus = A.focus_size(d.summary)
    fa, fc = d.summary[focus]["arms"], d.summary[focus]["compare"]
    ce = A.final_cross_entropy(d.data, focus)
    out: Glued = {"verdicts": verdicts(d), "focus": focus}
    out |= arm_numbers(fa) | comparisons(fc) | {f"{arm}_ce": v for arm, v in ce.items()}
    out |= {
        "tab_annealing": A.table(d.summary).set_index(["size", "arm"]).T,
        "conclusion": A.conclusion(d.summary),
    }
    # the wsd arm is the constant arm plus the decay: their loss difference is the decay's effect on the loss
    return out | A.comparison_words(ce, fa) | {"lesson": A.lesson(d.summary)}
