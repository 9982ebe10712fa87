"""Chapter 5, *Activation convergence* (``notebooks/05_activations.md``): CKA of every layer's activations with
the final checkpoint, when each layer stabilises, and the claim that nearly all layers of larger models do so
within the first 20% of training (Diehl Martinez et al. 2024).

The lens is :mod:`lmconv.lenses.activations`; this module picks the chapter's CKA definition, applies the lens
and returns, per section, the values the page glues.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pandas as pd

from .. import analysis
from ..analysis import engine
from ..figures import activations as fig
from ..findings import claims, papers
from ..lenses import activations as act
from ..metrics import stats
from . import Glued, analysed, ends, section

VARIANT_WORDS = {"last": "the last position of each probe window", "all": "a fixed sample of scored positions"}
LAYER_ORDER_WORDS = {
    "as the paper": "deeper layers stabilise later, as in the paper",
    "opposite to the paper": "deeper layers stabilise earlier, unlike the paper",
    "inconclusive": "the order of layers is not clear (the interval includes 0)",
    "undefined": "the order of layers is undefined (too few layers or no variation)",
}
SIZE_ORDER_NAMES = {"attention": "size_order_attn", "mlp": "size_order_mlp"}
LAYER_ORDER_BOOT = 1000  # bootstrap draws of the depth–stabilisation correlation


@dataclass
class ActivationsData:
    """What the chapter's sections share: the engine results, the selected CKA and its stabilisation."""

    P: SimpleNamespace  # the validated parameters
    res: analysis.Results
    total_steps: int
    within: float  # the paper's "first 20% of training"
    cka: pd.DataFrame  # act.select_cka: the chapter's CKA definition
    stab: pd.DataFrame  # act.stabilisation of ``cka`` under the chapter's rule
    summary: pd.DataFrame  # act.stabilisation_summary of ``stab``
    step_at: int  # the last checkpoint within the first ``within`` of training

    @property
    def ends(self) -> dict[str, str]:
        """The smallest and the largest size, keyed as the glued names' suffixes (:func:`lmconv.chapters.ends`)."""
        return ends(self.res.sizes)

    @property
    def rule(self) -> dict[str, float]:
        """The stabilisation rule's settings, as :func:`lmconv.lenses.activations.compare_choices` takes them."""
        return {"threshold": self.P.cka_threshold, "min_run": self.P.cka_min_run, "within": self.within}


def load(P: SimpleNamespace) -> ActivationsData:
    """Run the engine for ``P`` and apply the chapter's CKA definition and stabilisation rule."""
    res = analysed(P)
    total_steps = res.suite.profile.arm(None).train.steps
    within = papers.CKA_STABLE_FRACTION
    cka = act.select_cka(res.cka, P.attention_activation, P.cka_variant, P.cka_estimator)
    stab = act.stabilisation(cka, total_steps, threshold=P.cka_threshold, min_run=P.cka_min_run)
    summary = act.stabilisation_summary(stab, within=within, nearly_all=P.cka_nearly_all)
    step_at = max(s for s in res.steps if s <= within * total_steps)
    return ActivationsData(P, res, total_steps, within, cka, stab, summary, step_at)


@section
def measured(d: ActivationsData) -> Glued:
    """*What is measured*: the suite's and the probe's sizes, the paper's, and the chapter's CKA definition."""
    res = d.res
    return {
        "n_sizes": len(res.sizes),
        "n_seeds": len(res.seeds),
        "n_checkpoints": len(res.steps),
        "total_steps": d.total_steps,
        "n_last": len(res.probe.starts),
        "n_all": min(engine.EngineOptions().cka_samples, res.probe.n_tokens),
        "probe_context": res.probe.context,
        "paper_samples": papers.CKA_SAMPLES,
        "paper_steps": papers.PYTHIA_STEPS,
        "paper_within": d.within,
        "attn_label": act.ATTENTION_LABELS[d.P.attention_activation],
        "estimator": d.P.cka_estimator,
        "variant": VARIANT_WORDS[d.P.cka_variant],
        "midpoint": papers.CKA_HEATMAP_MIDPOINT,
        "ci_level": act.CI_LEVEL,
    }


@section
def across_layers(d: ActivationsData) -> Glued:
    """*Convergence across layers*: the box and median figures, and the median CKA at ``step_at`` of the
    smallest and the largest size (median seed, lowest and highest seed) with its trend over sizes."""
    shown = act.thin_steps(d.res.steps)
    box = act.box_stats(d.cka[d.cka.step.isin(shown)], "cka", ["size", "circuit", "step"])
    band = act.layer_band(d.cka, "cka", ["size", "circuit", "step"])
    out: Glued = {
        "fig_boxes": fig.boxes(box, y_title="CKA with the final checkpoint", sizes=d.res.sizes, y_domain=(0, 1)),
        "fig_median": fig.median_lines(band, y_title="median CKA over layers", sizes=d.res.sizes, y_domain=(0, 1)),
        "n_shown": len(shown),
        "step_at": d.step_at,
        "size_small": d.ends["small"],
        "size_large": d.ends["large"],
    }
    at = band[band.step == d.step_at].set_index(["size", "circuit"])
    for c in act.CIRCUITS:
        for key in d.ends:
            row = at.loc[(d.ends[key], c)]
            out[f"cka_at_{c}_{key}"] = float(row["value"])
            out[f"cka_at_{c}_{key}_lo"] = float(row["lo"])
            out[f"cka_at_{c}_{key}_hi"] = float(row["hi"])
        order = at.xs(c, level="circuit")["value"].reindex(d.res.sizes)
        out[SIZE_ORDER_NAMES[c]] = claims.trend_word(
            list(order), up="increases", down="does not increase", neither="does not increase"
        )
    return out


@section
def layer_by_layer(d: ActivationsData) -> Glued:
    """*Layer by layer*: per-layer lines and heatmap, and the rank correlation of depth with the stabilisation
    point per circuit (with its bootstrap interval and its reading against the paper)."""
    lines = stats.band(d.cka, "cka", ["size", "circuit", "layer", "step"], centre="median")
    heat = stats.band(d.cka, "cka", ["size", "circuit", "layer", "step"])
    out: Glued = {
        "fig_layers": fig.layer_lines(lines, sizes=d.res.sizes),
        "fig_heat": fig.heatmap(heat, midpoint=papers.CKA_HEATMAP_MIDPOINT, sizes=d.res.sizes),
    }
    for r in act.layer_order(d.stab, n_boot=LAYER_ORDER_BOOT).itertuples():
        out[f"layer_rho_{r.circuit}"] = float(r.rho)
        out[f"layer_rho_{r.circuit}_lo"] = float(r.lo)
        out[f"layer_rho_{r.circuit}_hi"] = float(r.hi)
        out[f"layer_order_{r.circuit}"] = LAYER_ORDER_WORDS[act.verdict(r.rho, r.lo, r.hi, +1)]
    return out


@section
def when_stable(d: ActivationsData) -> Glued:
    """*When does a layer stabilise?*: the rule's settings, its figure and table, the claim's numbers for the
    smallest and the largest size, the learning rate at those points, and the two verdicts."""
    P = d.P
    return {
        "threshold": P.cka_threshold,
        "min_run": P.cka_min_run,
        "nearly_all": P.cka_nearly_all,
        "within_step": d.within * d.total_steps,
        "fig_stab": fig.stabilisation_dots(d.stab, within=d.within, sizes=d.res.sizes),
        "tab_stab": act.summary_table(d.summary, d.within).set_index(["size", "circuit"]),
        **claim_numbers(d),
        **learning_rates(d),
        "claim_sizes": ", ".join(claim_sizes(d)) or "none",
        **verdicts(d),
        "n_never": int((~d.stab.stabilised).sum()),
        "n_units": len(d.stab),
    }


@section
def claim_numbers(d: ActivationsData) -> Glued:
    """Per circuit, for the smallest and the largest size: the share of units within the first ``within`` (all
    seeds; lowest and highest seed), when all layers and the median unit have stabilised, and the claim."""
    s = d.summary.set_index(["size", "circuit"])
    out: Glued = {}
    for key in d.ends:
        for c in act.CIRCUITS:
            row = s.loc[(d.ends[key], c)]
            out[f"within_{c}_{key}"] = float(row.share_within)
            out[f"within_{c}_{key}_lo"] = float(row.share_within_min)
            out[f"within_{c}_{key}_hi"] = float(row.share_within_max)
            out[f"all_{c}_{key}"] = act.pct(row.all_layers_fraction)
            out[f"median_{c}_{key}"] = act.pct(row.median_fraction)
            out[f"claim_{c}_{key}"] = "holds" if row.claim else "does not hold"
    return out


@section
def learning_rates(d: ActivationsData) -> Glued:
    """The learning-rate multiplier at the first ``within`` of training and, per circuit, at the largest size's
    median stabilisation point (NaN when that unit never stabilises)."""
    sched = d.res.suite.profile.arm(None).train.schedule
    s = d.summary.set_index(["size", "circuit"])
    out: Glued = {"lr_at_within": sched.multiplier(int(d.within * d.total_steps), d.total_steps)}
    for c in act.CIRCUITS:
        f = s.loc[(d.ends["large"], c), "median_fraction"]
        at = sched.multiplier(int(f * d.total_steps), d.total_steps) if math.isfinite(f) else float("nan")
        out[f"lr_at_median_{c}_large"] = at
    return out


def claim_sizes(d: ActivationsData) -> list[str]:
    """The sizes for which the claim holds for both circuits, smallest first."""
    holds = d.summary.groupby("size").claim.all()
    return [sz for sz in d.res.sizes if holds[sz]]


@section
def verdicts(d: ActivationsData) -> Glued:
    """The verdicts on "nearly all layers stabilise early" and "smaller models converge more slowly"."""
    shares = act.early_shares(d.stab, d.within, d.res.sizes)
    early = claims.judge_early_stabilisation(shares, nearly_all=d.P.cka_nearly_all)
    slower = claims.judge_smaller_slower(act.median_fractions(d.stab, d.res.sizes))
    return {"early_verdict": early.sentence(), "slower_verdict": slower.sentence()}


@section
def sweep(d: ActivationsData) -> Glued:
    """The threshold sweep's table and, for the smallest and the largest size, the highest threshold at which
    the claim holds per circuit."""
    P = d.P
    sw = act.threshold_sweep(
        d.cka,
        P.cka_threshold_sweep,
        d.total_steps,
        min_run=P.cka_min_run,
        within=d.within,
        nearly_all=P.cka_nearly_all,
    )
    out: Glued = {"tab_sweep": act.sweep_table(sw)}
    for key in d.ends:
        for c in act.CIRCUITS:
            h = act.highest_passing(sw, d.ends[key], c)
            out[f"pass_{c}_{key}"] = "none of those tried" if h is None else f"CKA ≥ {h:g}"
    return out


@section
def choices(d: ActivationsData) -> Glued:
    """*How much the choices matter*: the attention definition's and the estimator's and positions' tables,
    and how far each moves CKA and the share of early units."""
    return {**attention_choices(d), **estimator_choices(d)}


@section
def attention_choices(d: ActivationsData) -> Glued:
    """The three attention activations compared with the chapter's: table, largest mean absolute ΔCKA (which, where),
    the original slice's against V split per head, and the range of the early share between definitions."""
    P = d.P
    first = [P.attention_activation] + [m for m in act.ATTENTION_MODULES if m != P.attention_activation]
    cmp_a = _compare(d, [(m, P.cka_variant, P.cka_estimator) for m in first])
    others = cmp_a[cmp_a.attention != P.attention_activation]
    worst = others.loc[others.mad_vs_first.idxmax()]
    faith = _compare(d, [(m, P.cka_variant, P.cka_estimator) for m in ("attn_ov", "attn_ov_faithful")])
    faith = faith[faith.attention == "attn_ov_faithful"].set_index("size")
    share = cmp_a.groupby("size").share_within
    return {
        "tab_attention": act.choices_table(cmp_a, d.within, ["attention"])
        .drop(columns="circuit")
        .set_index(["attention", "size"]),
        "mad_attention_max": float(others.mad_vs_first.max()),
        "mad_attention_which": act.ATTENTION_LABELS[worst.attention],
        "mad_attention_size": worst["size"],
        "mad_faithful_large": float(faith.loc[d.ends["large"], "mad_vs_first"]),
        "mad_faithful_small": float(faith.loc[d.ends["small"], "mad_vs_first"]),
        "share_range_attention": float((share.max() - share.min()).max()),
    }


@section
def estimator_choices(d: ActivationsData) -> Glued:
    """The four estimator × positions combinations, both circuits: table and the largest mean absolute ΔCKA from the
    chapter's choice for any change, the estimator alone and the positions alone."""
    P = d.P
    mine = (P.cka_variant, P.cka_estimator)
    combos = [mine] + [(v, e) for v in ("last", "all") for e in ("biased", "debiased") if (v, e) != mine]
    cmp_e = _compare(d, [(P.attention_activation, v, e) for v, e in combos], circuits=act.CIRCUITS)
    same_v, same_e = cmp_e.variant == P.cka_variant, cmp_e.estimator == P.cka_estimator
    return {
        "tab_estimator": act.choices_table(cmp_e, d.within, ["variant", "estimator"]).set_index(
            ["circuit", "variant", "estimator", "size"]
        ),
        "mad_estimator_max": float(cmp_e[~(same_v & same_e)].mad_vs_first.max()),
        "mad_estimator_only": float(cmp_e[same_v & ~same_e].mad_vs_first.max()),
        "mad_variant_only": float(cmp_e[~same_v & same_e].mad_vs_first.max()),
    }


def _compare(
    d: ActivationsData, definitions: list[tuple[str, str, str]], circuits: tuple[str, ...] = ("attention",)
) -> pd.DataFrame:
    """:func:`lmconv.lenses.activations.compare_choices` of (attention, variant, estimator) definitions, the
    first being the reference, under the chapter's rule."""
    keys = ("attention", "variant", "estimator")
    chosen = [dict(zip(keys, defn, strict=True)) for defn in definitions]
    return act.compare_choices(d.res.cka, chosen, d.total_steps, circuits=circuits, **d.rule)


def invariance_example(n: int = 256, width: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exercise's random activations: ``x`` (``n`` × ``width``), ``y = x W + noise`` for a random ``W``, and
    a random rotation ``q`` (``width`` × ``width``), drawn in that order from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, width))
    y = x @ rng.normal(size=(width, width)) + rng.normal(size=(n, width))
    q, _ = np.linalg.qr(rng.normal(size=(width, width)))
    return x, y, q
