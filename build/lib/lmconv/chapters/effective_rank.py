"""Chapter 6, "Effective rank" (``notebooks/06_effective_rank.md``): the proportional effective rank (PER) of the
attention and MLP weights and gradients over training, and whether layers of lower rank stabilise late.

:func:`load` reads the engine's tables once for the chapter's parameters; each section function returns the
values its prose, figures and tables glue.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pandas as pd

from .. import analysis
from ..analysis import engine
from ..checkpoints import summaries
from ..figures import activations as fig
from ..findings import claims, papers
from ..lenses import activations as act
from . import Glued, analysed, ends, section

POOL_WORDS = {
    "pooled": "every per-head OV matrix together with the whole-layer one, as the original figures",
    "heads": "the per-head OV matrices only",
    "layer": "the whole-layer OV matrix only",
}
V_WORDS = {
    "split": "split per head as the model computes it",
    "faithful": "taken as the original code did (the last third of the fused QKV rows)",
}
VERDICTS = ("as the paper", "opposite to the paper", "inconclusive")


@dataclass
class EffectiveRankData:
    """What the chapter reads once: the engine's results and the selections every section shares."""

    P: SimpleNamespace
    res: analysis.Results
    cka: pd.DataFrame  # CKA with the final checkpoint, the chosen activation, variant and estimator
    stab: pd.DataFrame  # each unit's stabilisation point (act.stabilisation)
    per: pd.DataFrame  # PER with the chosen V slice and pool
    per_layer: pd.DataFrame  # PER per layer (whole-layer OV for attention)

    @property
    def sizes(self) -> tuple[tuple[str, str], tuple[str, str]]:
        """The smallest and the largest size, keyed as the glue names use them."""
        return tuple(ends(self.res.sizes).items())

    @property
    def last(self) -> int:
        return self.res.steps[-1]


def load(P: SimpleNamespace) -> EffectiveRankData:
    """Run (or read from the cache) the engine for the chapter's sizes and seeds; select CKA and PER."""
    res = analysed(P)
    total_steps = res.suite.profile.arm(None).train.steps
    cka = act.select_cka(res.cka, P.attention_activation, P.cka_variant, P.cka_estimator)
    stab = act.stabilisation(cka, total_steps, threshold=P.cka_threshold, min_run=P.cka_min_run)
    return EffectiveRankData(
        P=P,
        res=res,
        cka=cka,
        stab=stab,
        per=act.select_per(res.rank, P.v_slice, P.per_pool),
        per_layer=act.per_by_layer(res.rank, P.v_slice),
    )


@section
def what_is_measured(d: EffectiveRankData) -> Glued:
    """The shapes of the sizes, the probe's gradient batch and the words for the chosen V slice and pool."""
    shapes = summaries.sizes_table(d.res.suite.profile).set_index("size").loc[d.res.sizes]
    shapes = shapes[["layers", "d_model", "heads", "d_head"]]
    return {
        "tab_shapes": shapes,
        "layers_min": int(shapes.layers.min()),
        "layers_max": int(shapes.layers.max()),
        "grad_windows": engine.EngineOptions().grad_windows,
        "probe_context": d.res.probe.context,
        "paper_samples": papers.CKA_SAMPLES,
        "pool_words": POOL_WORDS[d.P.per_pool],
        "v_words": V_WORDS[d.P.v_slice],
    }


def _size_numbers(pw: pd.DataFrame, pg: pd.DataFrame, key: str, size: str, steps: tuple[int, int]) -> Glued:
    """First, last, seed range and extremes of the seed-median PER of one size, per circuit."""
    first, last = steps
    out: Glued = {}
    for c in act.CIRCUITS:
        w = pw.xs((size, c), level=["size", "circuit"])
        g = pg.xs((size, c), level=["size", "circuit"])
        out[f"pw_{c}_{key}_first"] = float(w.loc[first, "value"])
        out[f"pw_{c}_{key}_last"] = float(w.loc[last, "value"])
        out[f"pw_{c}_{key}_lo"] = float(w.loc[last, "lo"])
        out[f"pw_{c}_{key}_hi"] = float(w.loc[last, "hi"])
        out[f"pw_{c}_{key}_min"] = float(w["value"].min())
        out[f"pg_{c}_{key}_last"] = float(g.loc[last, "value"])
        out[f"pg_{c}_{key}_max"] = float(g["value"].max())
    return out


@section
def rank_over_training(d: EffectiveRankData) -> Glued:
    """The results figure and the PER numbers of the smallest and largest sizes; whether final PER rises
    with size."""
    panel = act.results_panel(d.cka, d.per)
    by = ["size", "circuit", "step"]
    pw = panel[panel.metric == "PER (weights)"].set_index(by)
    pg = panel[panel.metric == "PER (gradients)"].set_index(by)
    out: Glued = {
        "fig_results": fig.results_grid(panel, sizes=d.res.sizes),
        "size_small": d.res.sizes[0],
        "size_large": d.res.sizes[-1],
    }
    for key, size in d.sizes:
        out |= _size_numbers(pw, pg, key, size, (d.res.steps[0], d.last))
    final_w = pw.xs(d.last, level="step")["value"].unstack("circuit").reindex(d.res.sizes)
    for c in act.CIRCUITS:
        out[f"order_{c}"] = claims.trend_word(
            list(final_w[c]), up="rises", down="does not rise", neither="does not rise"
        )
    return out


@section
def across_heads(d: EffectiveRankData) -> Glued:
    """Box plots of per-head PER (weights and gradients) and the spread of the final per-head OV PER."""
    shown = act.thin_steps(d.res.steps)
    heads = act.select_per(d.res.rank, d.P.v_slice, "heads")
    heads = heads[heads.step.isin(shown)]
    by = ["size", "circuit", "step"]
    bw = act.box_stats(heads[heads.kind == "weight"], "per", by)
    bg = act.box_stats(heads[heads.kind == "grad"], "per", by)
    out: Glued = {
        "fig_boxes_w": fig.boxes(bw, y_title="PER of the weights", sizes=d.res.sizes),
        "fig_boxes_g": fig.boxes(bg, y_title="PER of the gradients", sizes=d.res.sizes),
        "n_shown": len(shown),
    }
    fin = heads[(heads.step == d.last) & (heads.kind == "weight") & (heads.circuit == "attention")]
    spread = fin.groupby("size").per.agg(["min", "max"])
    for key, size in d.sizes:
        out[f"head_min_{key}"] = float(spread.loc[size, "min"])
        out[f"head_max_{key}"] = float(spread.loc[size, "max"])
    return out


def _headline(corr: pd.DataFrame) -> Glued:
    """ρ, interval and verdict of the final weight PER against the stabilisation point, per circuit and scope."""
    head = corr[
        (corr["rank measure"] == act.RANK_MEASURES["per_w_final"])
        & (corr["convergence measure"] == act.CONVERGENCE_MEASURES["stab_fraction"][0])
    ]
    out: Glued = {}
    for r in head.itertuples():
        key = f"{r.circuit}_{'within' if r.scope == 'within size' else 'pooled'}"
        out[f"rho_{key}"] = float(r.rho)
        out[f"rho_{key}_lo"] = float(r.lo)
        out[f"rho_{key}_hi"] = float(r.hi)
        out[f"verdict_{key}"] = r.verdict
    return out


def _step_counts(by_step: pd.DataFrame) -> Glued:
    """Per circuit, at how many checkpoints the interval of ρ(PER, CKA) excludes 0, and is above it."""
    out: Glued = {}
    for c in act.CIRCUITS:
        g = by_step[by_step.circuit == c]
        out[f"steps_sig_{c}"] = int(((g.lo > 0) | (g.hi < 0)).sum())
        out[f"steps_pos_{c}"] = int((g.lo > 0).sum())
        out[f"steps_total_{c}"] = len(g)
    return out


@section
def rank_and_convergence(d: EffectiveRankData) -> Glued:
    """Spearman correlations of each layer's PER with its convergence (table, scatter, by step) and the
    counts of verdicts."""
    res, n_boot = d.res, d.P.rank_n_boot
    units = act.link_units(d.cka, d.per_layer, d.stab)
    corr = act.correlation_table(units, n_boot=n_boot)
    by_step = act.correlation_by_step(d.cka, d.per_layer, "weight", n_boot=max(100, n_boot // 2))
    counts = corr.verdict.value_counts()
    return {
        "fig_link": fig.link_scatter(
            units, "per_w_final", "PER of the weights at the last checkpoint", sizes=res.sizes
        ),
        "fig_corr_steps": fig.correlation_lines(by_step),
        "tab_corr": act.correlation_display(corr).set_index(["circuit", "PER of", "against"]),
        "n_seeds": len(res.seeds),
        "n_units": int(units.groupby("circuit").size().iloc[0]),
        "n_runs": int(units.groupby(["size", "seed"]).ngroups),
        "n_boot": n_boot,
        "ci_level": act.CI_LEVEL,
        **_headline(corr),
        "n_tests": len(corr),
        **{f"n_{v.replace(' ', '_')}": int(counts.get(v, 0)) for v in VERDICTS},
        **_step_counts(by_step),
    }


@section
def which_v(d: EffectiveRankData) -> Glued:
    """How much the original last-third V slice changes the attention PER."""
    vs = act.v_slice_comparison(d.res.rank, d.P.per_pool)
    w = vs[vs.kind == "weight"]
    return {
        "tab_vslice": vs.round(3).set_index(["size", "kind"]),
        "vslice_max": float(vs["max |Δ median| over training"].max()),
        "vslice_w_max": float((w["split (final)"] - w["faithful (final)"]).abs().max()),
    }
