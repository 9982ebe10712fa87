"""Activation convergence (CKA against the final checkpoint) and proportional effective rank (PER), per layer.

Chapters 5 and 6 read the engine's ``cka`` and ``rank`` tables through this module: it selects one definition
of each quantity (which attention activation, which CKA estimator and positions, which V slice), aggregates
over layers, heads and seeds, finds when each layer stabilises by a stated rule, tests the "within the first
20% of training" claim, and correlates effective rank with convergence with bootstrap intervals.

Vocabulary: a *unit* is one layer of one run (size, seed); a *run* is one (size, seed). The ``circuit``
column is ``attention`` or ``mlp`` everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ..chapters import params
from ..errors import LmconvError, choose
from ..findings import papers
from ..metrics import phases, stats

CIRCUITS = ("attention", "mlp")
ATTENTION_MODULES = ("attn_ov", "attn_ov_faithful", "attn_out")
ATTENTION_LABELS = {
    "attn_ov": "OV circuit, V split per head",
    "attn_ov_faithful": "OV circuit, original 'last third' V",
    "attn_out": "attention block output",
}
PER_POOLS = ("pooled", "heads", "layer")
CI_LEVEL = 0.95  # bootstrap interval level used throughout

# Parameters of chapters 5 and 6 beyond those lmconv.chapters.params already knows.
params.register("cka_min_run", params.int_param(1, 50))
params.register("cka_nearly_all", params.float_param(0.0, 1.0))
params.register("per_pool", params.choice_param(PER_POOLS))
params.register("rank_n_boot", params.int_param(100, 100_000))
params.register("cka_threshold_sweep", params.list_param(params.float_param(0.0, 1.0), optional=False))

RUN = ["size", "seed"]
UNIT = ["size", "seed", "layer", "circuit"]


# -----------------------------------------------------------------------------------------------------------
# selection
# -----------------------------------------------------------------------------------------------------------


def select_cka(
    cka: pd.DataFrame, attention: str = "attn_ov", variant: str = "last", estimator: str = "biased"
) -> pd.DataFrame:
    """One CKA definition: columns size, step, seed, layer, circuit (attention/mlp), cka.

    ``attention`` picks the engine module that stands for the attention activation; the MLP is always the
    MLP block output. ``variant`` picks the positions (``last``: each probe window's last token, as the
    original's last token of 128 sequences; ``all``: a fixed sample of scored positions), ``estimator`` the
    biased (original) or debiased HSIC.
    """
    choose("attention activation", attention, ATTENTION_MODULES)
    choose("CKA variant", variant, ("last", "all"))
    choose("CKA estimator", estimator, ("biased", "debiased"))
    df = cka[(cka.variant == variant) & (cka.estimator == estimator) & cka.module.isin([attention, "mlp"])]
    missing = {attention, "mlp"} - set(df.module)
    if missing:
        raise LmconvError(f"no CKA rows for {sorted(missing)} ({variant}, {estimator})", "check the engine's cka table")
    out = df[["size", "step", "seed", "layer"]].copy()
    out["circuit"] = np.where(df.module == "mlp", "mlp", "attention")
    out["cka"] = df.cka.to_numpy(dtype=float)
    return out.reset_index(drop=True)


def select_per(rank: pd.DataFrame, v_slice: str = "split", pool: str = "pooled") -> pd.DataFrame:
    """PER values: columns size, step, seed, layer, head, circuit (attention/mlp), kind (weight/grad), per.

    Attention rows are the OV circuits: ``pooled`` keeps every per-head matrix and the whole-layer matrix of
    each layer (as the original figures), ``heads`` only the per-head ones, ``layer`` only the whole-layer
    one. MLP rows are the MLP output projection, one per layer. ``v_slice`` picks V split per head or the
    original's last third of the fused QKV rows (it only changes attention rows).
    """
    choose("V slice", v_slice, ("split", "faithful"))
    choose("PER pool", pool, PER_POOLS)
    keep = {"pooled": ("ov_layer", "ov_head"), "heads": ("ov_head",), "layer": ("ov_layer",)}[pool]
    df = rank[(rank.v_slice == v_slice) & rank.circuit.isin([*keep, "mlp_out"])]
    out = df[["size", "step", "seed", "layer", "head", "kind"]].copy()
    out["circuit"] = np.where(df.circuit == "mlp_out", "mlp", "attention")
    out["per"] = df.per.to_numpy(dtype=float)
    return out.reset_index(drop=True)


def per_by_layer(rank: pd.DataFrame, v_slice: str = "split") -> pd.DataFrame:
    """One PER per layer and circuit (whole-layer OV for attention, MLP output for mlp), weights and gradients:
    columns size, step, seed, layer, circuit, kind, per."""
    return select_per(rank, v_slice, "layer").drop(columns="head")


# -----------------------------------------------------------------------------------------------------------
# aggregation
# -----------------------------------------------------------------------------------------------------------


def box_stats(df: pd.DataFrame, value: str, by: Sequence[str]) -> pd.DataFrame:
    """Five-number summary of ``value`` per ``by`` group: min, q1, median, q3, max (linear quantiles) and n."""
    g = df.groupby(list(by), sort=True)[value]
    out = g.agg(
        min="min",
        q1=lambda v: v.quantile(0.25),
        median="median",
        q3=lambda v: v.quantile(0.75),
        max="max",
        n="count",
    )
    return out.reset_index()


def layer_band(df: pd.DataFrame, value: str, by: Sequence[str]) -> pd.DataFrame:
    """The median over layers within each seed, then its band over seeds (:func:`lmconv.metrics.stats.band`: value =
    median, lo–hi = min–max, n = seeds), one row per ``by`` group. Where each row of ``df`` is already one
    seed's value (a per-layer series), call :func:`lmconv.metrics.stats.band` with ``centre="median"`` directly."""
    per_seed = df.groupby([*by, "seed"], sort=True)[value].median().reset_index()
    return stats.band(per_seed, value, by, centre="median")


def thin_steps(steps: Sequence[int], min_gap: float = 0.3) -> list[int]:
    """Checkpoints far enough apart on the symlog axis to draw a box at each.

    Rule: in u = ln(1 + step), keep the first step, then each step at least ``min_gap`` above the last kept
    one; the last step is always kept, replacing the previously kept step if that one is closer than
    ``min_gap`` to it.
    """
    s = sorted(int(x) for x in steps)
    if not s:
        return []
    u = np.log1p(s)
    kept = [0]
    for i in range(1, len(s)):
        if u[i] - u[kept[-1]] >= min_gap:
            kept.append(i)
    if kept[-1] != len(s) - 1:
        if len(kept) > 1 and u[-1] - u[kept[-1]] < min_gap:
            kept[-1] = len(s) - 1
        else:
            kept.append(len(s) - 1)
    return [s[i] for i in kept]


# -----------------------------------------------------------------------------------------------------------
# stabilisation and the "first 20%" claim
# -----------------------------------------------------------------------------------------------------------


def stabilisation(
    df: pd.DataFrame, total_steps: int, *, threshold: float = 0.9, min_run: int = 2, value: str = "cka"
) -> pd.DataFrame:
    """Stabilisation step of every unit (size, seed, layer, circuit), by
    ``lmconv.metrics.phases.stabilisation_step``.

    Rule: the first checkpoint from which ``value`` stays ≥ ``threshold`` through the last checkpoint, with at
    least ``min_run`` checkpoints in that tail (so the trivially equal-to-1 final checkpoint alone never
    counts). Columns: size, seed, layer, circuit, step (NaN if never), fraction (step / ``total_steps``,
    +inf if never, so that it sorts after every real step), stabilised, reason (why, in words, from
    ``lmconv.metrics.phases.stabilisation_event``).
    """
    rows = []
    for key, g in df.sort_values("step").groupby(UNIT, sort=True):
        st, why = phases.stabilisation_event(
            g.step.to_numpy(), g[value].to_numpy(), threshold=threshold, mode="above", min_run=min_run
        )
        frac = phases.fraction_of_training(st, total_steps)
        rows.append(
            {
                **dict(zip(UNIT, key, strict=True)),
                "step": np.nan if st is None else float(st),
                "fraction": math.inf if frac is None else frac,
                "stabilised": st is not None,
                "reason": why,
            }
        )
    return pd.DataFrame(rows, columns=[*UNIT, "step", "fraction", "stabilised", "reason"])


def stabilisation_summary(
    stab: pd.DataFrame, within: float = papers.CKA_STABLE_FRACTION, nearly_all: float = 0.9
) -> pd.DataFrame:
    """Per size and circuit: how many units stabilise, and how early.

    Columns: units; share_stabilised (units that stabilise at all); share_within (units whose stabilisation
    fraction is ≤ ``within``; a unit that never stabilises counts as not within); share_within_min/max (the
    same share computed per seed, min and max over seeds); median_fraction (median over units, +inf when
    more than half never stabilise); all_layers_fraction (per run, the fraction by which *every* layer has
    stabilised, i.e. the max over layers, +inf if one never does; median over seeds) and its min/max over
    seeds; claim (True when share_within ≥ ``nearly_all``: "nearly all layers stabilise within the first
    ``within`` of training").
    """
    rows = []
    for (size, circuit), g in stab.groupby(["size", "circuit"], sort=False):
        ok = g.fraction <= within
        per_seed = ok.groupby(g.seed).mean()
        all_layers = g.groupby("seed").fraction.max()
        rows.append(
            {
                "size": size,
                "circuit": circuit,
                "units": len(g),
                "share_stabilised": float(g.stabilised.mean()),
                "share_within": float(ok.mean()),
                "share_within_min": float(per_seed.min()),
                "share_within_max": float(per_seed.max()),
                "median_fraction": float(np.median(g.fraction)),
                "all_layers_fraction": float(np.median(all_layers)),
                "all_layers_fraction_min": float(all_layers.min()),
                "all_layers_fraction_max": float(all_layers.max()),
                "claim": bool(ok.mean() >= nearly_all),
            }
        )
    return pd.DataFrame(rows)


def early_shares(
    stab: pd.DataFrame, within: float = papers.CKA_STABLE_FRACTION, sizes: Sequence[str] | None = None
) -> dict[str, list[float]]:
    """Per size (in ``sizes`` order, default the table's), per seed: the share of (layer, circuit) units whose
    stabilisation fraction is ≤ ``within`` (the evidence of ``lmconv.findings.claims.judge_early_stabilisation``)."""
    order = list(sizes) if sizes is not None else list(dict.fromkeys(stab["size"]))
    g = stab.assign(ok=stab.fraction <= within).groupby(["size", "seed"]).ok.mean()
    return {s: list(g.xs(s, level="size")) for s in order if s in g.index.get_level_values("size")}


def median_fractions(stab: pd.DataFrame, sizes: Sequence[str] | None = None) -> dict[str, list[float]]:
    """Per size, per seed: the median over its units of the stabilisation fraction (+inf when most never
    stabilise; the evidence of ``lmconv.findings.claims.judge_smaller_slower``)."""
    order = list(sizes) if sizes is not None else list(dict.fromkeys(stab["size"]))
    g = stab.groupby(["size", "seed"]).fraction.median()
    return {s: list(g.xs(s, level="size")) for s in order if s in g.index.get_level_values("size")}


def compare_choices(
    cka: pd.DataFrame,
    choices: Sequence[dict],
    total_steps: int,
    *,
    threshold: float = 0.9,
    min_run: int = 2,
    within: float = papers.CKA_STABLE_FRACTION,
    circuits: Sequence[str] = ("attention",),
) -> pd.DataFrame:
    """How much a CKA definition matters: per choice (a dict of :func:`select_cka` arguments), circuit and size.

    Columns: the choice's keys, circuit, size, cka_at (median over units of CKA at the last checkpoint
    ≤ ``within`` of training; the step is in ``attrs["step_at"]``), median_fraction and share_within (as
    :func:`stabilisation_summary`), and mad_vs_first (mean absolute CKA difference from the first choice,
    over every unit and checkpoint but the last).
    """
    rows = []
    step_at = None
    for circuit in circuits:
        ref = None
        for choice in choices:
            sel = select_cka(cka, **choice)
            sel = sel[sel.circuit == circuit]
            steps = np.sort(sel.step.unique())
            step_at = int(steps[steps <= within * total_steps].max())
            stab = stabilisation(sel, total_steps, threshold=threshold, min_run=min_run)
            cur = sel.set_index([*UNIT, "step"]).cka
            ref = cur if ref is None else ref
            diff = (cur - ref.reindex(cur.index)).abs().reset_index()
            diff = diff[diff.step < steps.max()]
            for size, g in sel.groupby("size", sort=False):
                st = stab[stab["size"] == size]
                rows.append(
                    {
                        **choice,
                        "circuit": circuit,
                        "size": size,
                        "cka_at": float(g[g.step == step_at].cka.median()),
                        "median_fraction": float(np.median(st.fraction)),
                        "share_within": float((st.fraction <= within).mean()),
                        "mad_vs_first": float(diff[diff["size"] == size].cka.mean()),
                    }
                )
    out = pd.DataFrame(rows)
    out.attrs["step_at"] = step_at
    return out


def threshold_sweep(
    cka_sel: pd.DataFrame,
    thresholds: Sequence[float],
    total_steps: int,
    *,
    min_run: int = 2,
    within: float = papers.CKA_STABLE_FRACTION,
    nearly_all: float = 0.9,
) -> pd.DataFrame:
    """:func:`stabilisation_summary` at each threshold: columns threshold, size, circuit, share_within,
    median_fraction, claim (the stabilisation rule and the claim's reading are unchanged, only the
    threshold moves)."""
    parts = []
    for th in thresholds:
        st = stabilisation(cka_sel, total_steps, threshold=th, min_run=min_run)
        summ = stabilisation_summary(st, within=within, nearly_all=nearly_all)
        parts.append(summ[["size", "circuit", "share_within", "median_fraction", "claim"]].assign(threshold=th))
    return pd.concat(parts, ignore_index=True)[
        ["threshold", "size", "circuit", "share_within", "median_fraction", "claim"]
    ]


def highest_passing(sweep: pd.DataFrame, size: str, circuit: str) -> float | None:
    """The highest threshold of a :func:`threshold_sweep` at which the claim holds for ``size`` and
    ``circuit``; None if it holds at none."""
    g = sweep[(sweep["size"] == size) & (sweep.circuit == circuit) & sweep.claim]
    return float(g.threshold.max()) if len(g) else None


def sweep_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """:func:`threshold_sweep` for the book: one row per size and circuit, one column per threshold, each cell
    "share within / median point" as percentages."""
    d = sweep.copy()
    d["cell"] = [f"{pct(a)} / {pct(b)}" for a, b in zip(d.share_within, d.median_fraction, strict=True)]
    d["circuit"] = d.circuit.map({"attention": "Attention", "mlp": "MLP"})
    d["threshold"] = d.threshold.map(lambda t: f"CKA ≥ {t:g}")
    order = list(dict.fromkeys(d.threshold))
    out = d.pivot(index=["size", "circuit"], columns="threshold", values="cell")[order]
    sizes = list(dict.fromkeys(sweep["size"]))
    return out.reindex(pd.MultiIndex.from_product([sizes, ["Attention", "MLP"]], names=["size", "circuit"]))


def layer_order(stab: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Do lower layers stabilise first? Per circuit, the mean over sizes of Spearman ρ(layer index,
    stabilisation fraction) across units of a size (never = latest), with a bootstrap CI over runs
    resampled within size (see :func:`bootstrap_corr`). ρ > 0: deeper layers stabilise later."""
    rows = []
    for circuit, g in stab.groupby("circuit", sort=False):
        r = bootstrap_corr(g, "layer", "fraction", n_boot=n_boot, seed=seed, scope="within")
        rows.append({"circuit": circuit, **r})
    return pd.DataFrame(rows)


# -----------------------------------------------------------------------------------------------------------
# correlation with uncertainty
# -----------------------------------------------------------------------------------------------------------


def rankdata(a: np.ndarray) -> np.ndarray:
    """Ranks 1…n with ties given their average rank (as ``scipy.stats.rankdata``); +inf ranks last."""
    a = np.asarray(a, dtype=float)
    sorter = np.argsort(a, kind="mergesort")
    inv = np.empty(a.size, dtype=np.intp)
    inv[sorter] = np.arange(a.size)
    s = a[sorter]
    obs = np.r_[True, s[1:] != s[:-1]]
    dense = obs.cumsum()[inv]
    count = np.r_[np.nonzero(obs)[0], a.size]
    return 0.5 * (count[dense] + count[dense - 1] + 1)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's ρ: Pearson correlation of average ranks; NaN when either side is constant or n < 3."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 3 or x.size != y.size:
        return math.nan
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry / den) if den > 0 else math.nan


def _within(x: np.ndarray, y: np.ndarray, strata: np.ndarray) -> float:
    """Mean over strata of Spearman ρ within each stratum, weighted by its number of units (NaN ones skipped)."""
    vals, weights = [], []
    for s in np.unique(strata):
        m = strata == s
        r = spearman(x[m], y[m])
        if not math.isnan(r):
            vals.append(r)
            weights.append(m.sum())
    return float(np.average(vals, weights=weights)) if vals else math.nan


def bootstrap_corr(
    df: pd.DataFrame,
    x: str,
    y: str,
    *,
    scope: str = "within",
    group: Sequence[str] = ("size", "seed"),
    stratum: str = "size",
    n_boot: int = 1000,
    level: float = CI_LEVEL,
    seed: int = 0,
) -> dict:
    """Spearman ρ between columns ``x`` and ``y`` with a percentile bootstrap interval.

    ``scope="pooled"``: one ρ over all rows. ``scope="within"``: ρ within each ``stratum`` (size), averaged
    weighted by rows. Rows of one ``group`` (a run: layers trained together) are resampled together, with
    replacement, within their stratum, ``n_boot`` times; resamples whose ρ is undefined (a constant side)
    are dropped and counted. Returns rho, lo, hi, n (rows), n_groups, n_boot_valid.
    """
    choose("correlation scope", scope, ("within", "pooled"))
    d = df[list(dict.fromkeys([*group, stratum, x, y]))].dropna(subset=[x, y]).reset_index(drop=True)
    xv, yv = d[x].to_numpy(float), d[y].to_numpy(float)
    st = d[stratum].astype(str).to_numpy()
    stat: Callable[[np.ndarray], float]
    if scope == "pooled":

        def stat(idx: np.ndarray) -> float:
            return spearman(xv[idx], yv[idx])
    else:

        def stat(idx: np.ndarray) -> float:
            return _within(xv[idx], yv[idx], st[idx])

    groups = d.groupby(list(group), sort=True).indices
    by_stratum: dict[str, list[np.ndarray]] = {}
    for idx in groups.values():
        by_stratum.setdefault(st[idx[0]], []).append(np.asarray(idx))
    rho = stat(np.arange(len(d)))
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        parts = []
        for members in by_stratum.values():
            pick = rng.integers(0, len(members), len(members))
            parts.extend(members[i] for i in pick)
        r = stat(np.concatenate(parts)) if parts else math.nan
        if not math.isnan(r):
            boots.append(r)
    a = (1 - level) / 2
    lo, hi = (float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))) if boots else (math.nan, math.nan)
    return {"rho": rho, "lo": lo, "hi": hi, "n": len(d), "n_groups": len(groups), "n_boot_valid": len(boots)}


def verdict(rho: float, lo: float, hi: float, expected_sign: int) -> str:
    """Words for a correlation against the paper's expectation: "as the paper" when the interval excludes 0
    on the expected side, "opposite to the paper" when it excludes 0 on the other, else "inconclusive"."""
    if math.isnan(rho) or math.isnan(lo) or math.isnan(hi):
        return "undefined"
    if lo > 0 or hi < 0:
        return "as the paper" if np.sign(rho) == expected_sign else "opposite to the paper"
    return "inconclusive"


# -----------------------------------------------------------------------------------------------------------
# effective rank and convergence
# -----------------------------------------------------------------------------------------------------------


def results_panel(cka_sel: pd.DataFrame, per_sel: pd.DataFrame) -> pd.DataFrame:
    """The original "results" figure as a table: per metric (CKA, PER (weights), PER (gradients)), circuit,
    size and step, the median over layers (over heads and layers for pooled attention PER) within each
    seed, then the median, min and max over seeds."""
    parts = [layer_band(cka_sel, "cka", ["size", "circuit", "step"]).assign(metric="CKA")]
    for kind, label in (("weight", "PER (weights)"), ("grad", "PER (gradients)")):
        sub = per_sel[per_sel.kind == kind].rename(columns={"per": "value"})
        parts.append(layer_band(sub, "value", ["size", "circuit", "step"]).assign(metric=label))
    return pd.concat(parts, ignore_index=True)[["metric", "size", "circuit", "step", *stats.BAND_COLUMNS, "n"]]


def link_units(
    cka_sel: pd.DataFrame, per_layer: pd.DataFrame, stab: pd.DataFrame, *, upto: int | None = None
) -> pd.DataFrame:
    """One row per unit (size, seed, layer, circuit) with its convergence and its effective rank.

    Convergence: ``stab_fraction`` (from :func:`stabilisation`, +inf if never) and ``cka_mean`` (mean CKA
    over every checkpoint but the last, where it is 1 by construction). Rank: ``per_w_final`` (weights at the
    last checkpoint), ``per_w_mean`` and ``per_g_mean`` (weights and gradients averaged over checkpoints up
    to ``upto``, all when None).
    """
    last = cka_sel.step.max()
    conv = cka_sel[cka_sel.step < last].groupby(UNIT).cka.mean().rename("cka_mean")
    p = per_layer if upto is None else per_layer[per_layer.step <= upto]
    w = p[p.kind == "weight"]
    g = p[p.kind == "grad"]
    final = per_layer[(per_layer.kind == "weight") & (per_layer.step == per_layer.step.max())]
    out = pd.concat(
        [
            conv,
            final.set_index(UNIT).per.rename("per_w_final"),
            w.groupby(UNIT).per.mean().rename("per_w_mean"),
            g.groupby(UNIT).per.mean().rename("per_g_mean"),
        ],
        axis=1,
    ).reset_index()
    return out.merge(stab[[*UNIT, "fraction"]].rename(columns={"fraction": "stab_fraction"}), on=UNIT, how="left")


RANK_MEASURES = {
    "per_w_final": "PER of the weights at the last checkpoint",
    "per_w_mean": "PER of the weights, mean over training",
    "per_g_mean": "PER of the gradients, mean over training",
}
CONVERGENCE_MEASURES = {
    "stab_fraction": ("stabilisation step", -1),
    "cka_mean": ("mean CKA over training", +1),
}


def correlation_table(units: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Spearman ρ of every rank measure with every convergence measure, per circuit and scope, with its
    bootstrap CI (runs resampled within size). The paper expects lower rank with slower convergence: ρ < 0
    with the stabilisation step, ρ > 0 with mean CKA; ``verdict`` says whether the CI agrees."""
    rows = []
    for circuit, g in units.groupby("circuit", sort=False):
        for rm, rlabel in RANK_MEASURES.items():
            for cm, (clabel, sign) in CONVERGENCE_MEASURES.items():
                for scope in ("within", "pooled"):
                    r = bootstrap_corr(g, rm, cm, scope=scope, n_boot=n_boot, seed=seed)
                    rows.append(
                        {
                            "circuit": circuit,
                            "rank measure": rlabel,
                            "convergence measure": clabel,
                            "scope": "within size" if scope == "within" else "pooled over sizes",
                            **r,
                            "expected sign": "+" if sign > 0 else "−",
                            "verdict": verdict(r["rho"], r["lo"], r["hi"], sign),
                        }
                    )
    return pd.DataFrame(rows)


def correlation_by_step(
    cka_sel: pd.DataFrame, per_layer: pd.DataFrame, kind: str = "weight", n_boot: int = 500, seed: int = 0
) -> pd.DataFrame:
    """At each checkpoint but the last, Spearman ρ between a unit's PER (``kind``) and its CKA, within size
    (as :func:`bootstrap_corr` with scope "within"), per circuit, with its bootstrap CI."""
    p = per_layer[per_layer.kind == kind]
    m = cka_sel.merge(p[[*UNIT, "step", "per"]], on=[*UNIT, "step"])
    rows = []
    for (circuit, step), g in m[m.step < m.step.max()].groupby(["circuit", "step"], sort=True):
        rows.append(
            {"circuit": circuit, "step": int(step), **bootstrap_corr(g, "per", "cka", n_boot=n_boot, seed=seed)}
        )
    return pd.DataFrame(rows)


def v_slice_comparison(rank: pd.DataFrame, pool: str = "pooled") -> pd.DataFrame:
    """How much the V slice changes attention PER: per size and kind, the median PER (over heads, layers and
    seeds, pooled as ``pool``) at the last checkpoint with V split per head and with the original last-third
    slice, and the largest absolute difference of the seed-median curves over all checkpoints."""
    rows = []
    sel = {v: select_per(rank, v, pool) for v in ("split", "faithful")}
    for v in sel:
        sel[v] = sel[v][sel[v].circuit == "attention"]
    last = rank.step.max()
    for (size, kind), g in sel["split"].groupby(["size", "kind"], sort=False):
        f = sel["faithful"]
        f = f[(f["size"] == size) & (f.kind == kind)]
        cs = layer_band(g, "per", ["step"]).set_index("step")["value"]
        cf = layer_band(f, "per", ["step"]).set_index("step")["value"]
        rows.append(
            {
                "size": size,
                "kind": kind,
                "split (final)": float(g[g.step == last].per.median()),
                "faithful (final)": float(f[f.step == last].per.median()),
                "max |Δ median| over training": float((cs - cf.reindex(cs.index)).abs().max()),
            }
        )
    return pd.DataFrame(rows)


# -----------------------------------------------------------------------------------------------------------
# display tables
# -----------------------------------------------------------------------------------------------------------


def pct(v: float) -> str:
    """A fraction as a percentage with one decimal; "never" for +inf, "–" for NaN."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return "never" if math.isinf(v) else f"{v:.1%}"


def summary_table(summary: pd.DataFrame, within: float) -> pd.DataFrame:
    """:func:`stabilisation_summary` formatted for the book (percentages of training; "never" for +inf)."""
    w = pct(within)
    return pd.DataFrame(
        {
            "size": summary["size"],
            "circuit": summary.circuit.map({"attention": "Attention", "mlp": "MLP"}),
            "layers × seeds": summary.units,
            "stabilise at all": summary.share_stabilised.map(pct),
            f"stabilise within {w}": summary.share_within.map(pct),
            "… per seed (min–max)": [
                f"{pct(a)}–{pct(b)}" for a, b in zip(summary.share_within_min, summary.share_within_max, strict=True)
            ],
            "median layer stabilises at": summary.median_fraction.map(pct),
            "all layers stabilised by (median seed)": summary.all_layers_fraction.map(pct),
            "… over seeds (min–max)": [
                f"{pct(a)}–{pct(b)}"
                for a, b in zip(summary.all_layers_fraction_min, summary.all_layers_fraction_max, strict=True)
            ],
            f"nearly all within {w}?": summary.claim.map({True: "yes", False: "no"}),
        }
    )


def choices_table(cmp: pd.DataFrame, within: float, keys: Sequence[str]) -> pd.DataFrame:
    """:func:`compare_choices` formatted for the book."""
    step_at = cmp.attrs.get("step_at")
    out = cmp[[*keys, "circuit", "size"]].copy()
    if "attention" in out:
        out["attention"] = out.attention.map(lambda m: ATTENTION_LABELS.get(m, m))
    out["circuit"] = out.circuit.map({"attention": "Attention", "mlp": "MLP"})
    out[f"median CKA at step {step_at}"] = cmp.cka_at.round(3)
    out["median layer stabilises at"] = cmp.median_fraction.map(pct)
    out[f"stabilise within {pct(within)}"] = cmp.share_within.map(pct)
    out["mean |ΔCKA| vs first row"] = cmp.mad_vs_first.round(3)
    return out


def correlation_display(corr: pd.DataFrame) -> pd.DataFrame:
    """:func:`correlation_table` formatted for the book: one row per circuit, rank measure and convergence
    measure, with ρ [interval] and the verdict for each scope side by side."""
    short_rank = {
        RANK_MEASURES["per_w_final"]: "weights, last checkpoint",
        RANK_MEASURES["per_w_mean"]: "weights, mean",
        RANK_MEASURES["per_g_mean"]: "gradients, mean",
    }
    short_conv = {"stabilisation step": "stabilisation point", "mean CKA over training": "mean CKA"}
    nb = "\u00a0"  # keep "ρ [lo, hi]" on one line
    d = pd.DataFrame(
        {
            "circuit": corr.circuit.map({"attention": "Attention", "mlp": "MLP"}),
            "PER of": corr["rank measure"].map(short_rank),
            "against": corr["convergence measure"].map(short_conv),
            "expected sign": corr["expected sign"],
            "scope": corr.scope.map({"within size": "within size", "pooled over sizes": "pooled"}),
            "ρ [CI]": [
                f"{r:.2f}{nb}[{lo:.2f},{nb}{hi:.2f}]" for r, lo, hi in zip(corr.rho, corr.lo, corr.hi, strict=True)
            ],
            "verdict": corr.verdict,
        }
    )
    keys = ["circuit", "PER of", "against", "expected sign"]
    out = None
    for scope in ("within size", "pooled"):
        part = d[d.scope == scope].drop(columns="scope")
        part = part.rename(columns={"ρ [CI]": f"ρ [CI], {scope}", "verdict": f"verdict, {scope}"})
        out = part if out is None else out.merge(part, on=keys, how="left")
    return out.reset_index(drop=True)
