"""The downstream lens: accuracy on the minimal pairs and the last-word set, the seeds' agreement on them, and
the cross-seed paper's downstream convergence (its BLiMP estimator), from the engine's ``downstream`` table.

A pair is answered right when the good sentence gets the higher log-probability; a last-word item when greedy
decoding gives the whole word. The paper's estimator turns each pair into a 2-way distribution
softmax([log P(good), log P(bad)]), averages it over the phenomenon's pairs into one (good, bad) distribution
per seed, and takes the KL between the seeds' distributions over unordered seed pairs; the per-item version
takes the KL of each pair's 2-way distributions and then averages, so that opposite preferences of two seeds do
not cancel.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..data.downstream import PHENOMENA, SETS
from ..errors import LmconvError
from ..findings import claims
from ..findings.claims import Estimate
from ..metrics import phases as ph
from ..metrics import stats

SET_WORDS = {
    "agreement": "subject–verb agreement",
    "determiner": "determiner–noun agreement",
    "lastword": "last word",
}
ESTIMATORS = {"phenomenon": "the paper's (mean 2-way distribution per phenomenon)", "item": "per item, then averaged"}
LATE_FROM = 0.5  # "the late phase": from half of training to its end (ours; the paper names no step)
RARE_SHARE = 0.1  # "rare tokens": the probe targets whose training count is among the rarest 10% (ours)
_KEYS = ["family", "size", "step", "seed"]
ABSENT = "this profile builds no downstream sets (its corpus has no gold tags, or its downstream sizes are 0)"


def item_scores(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (family, size, step, seed, set, item): ``correct`` and, for pairs, ``p_good`` (the 2-way
    softmax's probability of the good sentence) and ``margin`` (log P(good) − log P(bad))."""
    if table is None or not len(table):
        raise LmconvError(
            "the analysis has no downstream scores (the profile sets downstream sizes of 0, or its corpus has no "
            "gold tags)",
            "use a Brown-corpus profile with `downstream: {pairs: N, lastword: N}` (N ≥ 1; the default is 100)",
        )
    pairs = table[table.role.isin(["good", "bad"])]
    wide = pairs.pivot_table(index=[*_KEYS, "set", "item"], columns="role", values="logp", sort=True).reset_index()
    wide["margin"] = wide["good"] - wide["bad"]
    wide["p_good"] = 1.0 / (1.0 + np.exp(-wide["margin"]))
    wide["correct"] = wide["margin"] > 0
    last = table[table.role == "word"].rename(columns={"greedy": "correct"})
    last = last[[*_KEYS, "set", "item", "logp", "correct"]]
    cols = [*_KEYS, "set", "item", "correct", "p_good", "margin", "logp"]
    out = pd.concat([wide.drop(columns=["good", "bad"]).assign(logp=np.nan), last], ignore_index=True)
    return out[cols].sort_values([*_KEYS, "set", "item"], ignore_index=True)


def accuracy(scores: pd.DataFrame) -> pd.DataFrame:
    """Per (size, step, set, seed): the share of items answered right (``value``)."""
    return scores.groupby(["size", "step", "set", "seed"], sort=True).correct.mean().rename("value").reset_index()


def accuracy_band(scores: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per (size, step, set): mean over seeds, band the min–max over seeds."""
    return stats.band(accuracy(scores), "value", ["size", "step", "set"])


def _kl2(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL between 2-way distributions given by their first probabilities (clipped away from 0 and 1)."""
    p, q = np.clip(p, 1e-12, 1 - 1e-12), np.clip(q, 1e-12, 1 - 1e-12)
    return p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))


def pair_kl(scores: pd.DataFrame, estimator: str = "phenomenon") -> pd.DataFrame:
    """KL between the seeds' 2-way distributions on the minimal pairs, per (size, step, phenomenon, unordered
    seed pair i < j): ``estimator`` "phenomenon" is the paper's (KL of the phenomenon-mean distributions,
    KL(p_i ‖ p_j)), "item" the mean over pairs of each item's KL."""
    if estimator not in ESTIMATORS:
        raise LmconvError(f"unknown downstream estimator {estimator!r}", f"use one of {list(ESTIMATORS)}")
    mp = scores[scores.set.isin(PHENOMENA)]
    rows = []
    for (size, step, phen), g in mp.groupby(["size", "step", "set"], sort=True):
        by_seed = g.pivot(index="item", columns="seed", values="p_good")
        for i, j in itertools.combinations(sorted(by_seed.columns), 2):
            p, q = by_seed[i].to_numpy(), by_seed[j].to_numpy()
            kl = _kl2(p.mean(), q.mean()) if estimator == "phenomenon" else _kl2(p, q).mean()
            rows.append((size, int(step), phen, int(i), int(j), float(kl)))
    return pd.DataFrame(rows, columns=["size", "step", "set", "seed_i", "seed_j", "kl"])


def convergence_curves(kl: pd.DataFrame) -> pd.DataFrame:
    """−KL per (size, step), over the phenomena and seed pairs (the paper's s.e. band over those units)."""
    return stats.band(kl.assign(value=-kl["kl"]), "value", ["size", "step"], spread="se")


def phase_spreads(kl: pd.DataFrame, sizes: Sequence[str], rel_tol: float = 0.05) -> dict[str, ph.KLPhaseSpread]:
    """The KL-phase detector on each size's downstream KL: per seed pair, the mean over phenomena against step."""
    out = {}
    for s in sizes:
        sub = kl[kl["size"] == s]
        wide = sub.groupby(["seed_i", "seed_j", "step"]).kl.mean().unstack("step").sort_index(axis=1)
        out[s] = ph.kl_phases_by_pair(wide.columns.to_numpy(), wide.to_numpy(), rel_tol=rel_tol)
    return out


def phases_seen(spreads: dict[str, ph.KLPhaseSpread]) -> str:
    """Per size, the phases (ii)–(iv) the detector sees on the mean curve, in words ("none" when it sees none)."""
    names = {"has_convergence": "(ii) convergence", "has_divergence": "(iii) divergence"}
    names["has_reconvergence"] = "(iv) reconvergence"
    parts = []
    for s, sp in spreads.items():
        seen = [w for k, w in names.items() if getattr(sp.mean_curve, k)]
        parts.append(f"{s}: {', '.join(seen) if seen else 'none'}")
    return "; ".join(parts)


def agreement(scores: pd.DataFrame) -> pd.DataFrame:
    """Inter-seed agreement (as in the PolyPythias paper): per (size, step, set), the share of items on which
    two seeds give the same answer (which sentence they prefer; for the last word, whether they get it), mean
    over unordered seed pairs; band the min–max over pairs. ``chance`` is what two seeds with accuracies a and b
    would agree on if their answers were independent: ab + (1 − a)(1 − b)."""
    rows = []
    for (size, step, st), g in scores.groupby(["size", "step", "set"], sort=True):
        ans = g.pivot(index="item", columns="seed", values="correct").astype(bool)
        for i, j in itertools.combinations(sorted(ans.columns), 2):
            a, b = ans[i].mean(), ans[j].mean()
            same = float((ans[i] == ans[j]).mean())
            rows.append((size, int(step), st, int(i), int(j), same, 1 - a - b + 2 * a * b))
    df = pd.DataFrame(rows, columns=["size", "step", "set", "seed_i", "seed_j", "value", "chance"])
    band = stats.band(df, "value", ["size", "step", "set"])
    band["chance"] = df.groupby(["size", "step", "set"], sort=True).chance.mean().to_numpy()
    return band


def heldout_loss(tokens: pd.DataFrame, frequency: np.ndarray, *, rare_share: float = RARE_SHARE) -> pd.DataFrame:
    """Mean surprisal on the probe per (size, step, seed) over all scored tokens (``tokens`` "all") and over the
    rare ones (``tokens`` "rare": training count at or below the ``rare_share`` quantile of the probe's
    targets). ``frequency``: each probe position's training count."""
    cut = float(np.quantile(frequency, rare_share))
    rare = frequency <= cut
    pos = tokens["pos"].to_numpy()
    t = tokens.assign(rare=rare[pos])
    keys = ["size", "step", "seed"]
    every = t.groupby(keys, sort=True).surprisal.mean().rename("value").reset_index().assign(tokens="all")
    few = t[t.rare].groupby(keys, sort=True).surprisal.mean().rename("value").reset_index().assign(tokens="rare")
    out = pd.concat([every, few], ignore_index=True)
    out.attrs["rare_count"] = cut
    out.attrs["rare_share"] = float(rare.mean())
    return out


def late_step(steps: Sequence[int], total: int, start: float = LATE_FROM) -> int:
    """The analysed step closest to ``start`` × training (where the late phase begins, by our reading)."""
    arr = np.asarray(sorted(steps))
    return int(arr[np.argmin(np.abs(arr - start * total))])


def late_change(per_seed: pd.DataFrame, sizes: Sequence[str], total: int) -> dict[str, Estimate]:
    """Per size, the change of a per-seed score (``per_seed``: size, step, seed, value) from :func:`late_step`
    to the last step, mean over seeds with :func:`lmconv.metrics.stats.mean_interval`."""
    out = {}
    for s in sizes:
        sub = per_seed[per_seed["size"] == s]
        start, end = late_step(sub.step.unique(), total), int(sub.step.max())
        wide = sub.pivot_table(index="seed", columns="step", values="value")
        out[s] = claims.estimate(list(wide[end] - wide[start]))
    return out


def peak_then_fall(per_seed: pd.DataFrame, size: str) -> dict[str, float]:
    """The seed-mean score's best step and value, and its last value, for one size."""
    m = per_seed[per_seed["size"] == size].groupby("step").value.mean()
    return {"best_step": int(m.idxmax()), "best": float(m.max()), "last": float(m.iloc[-1])}


def degradation_sentence(change: dict[str, Estimate], what: str) -> str:
    """Per size, whether ``what`` rises, falls or holds from the late phase's start to the end, by the interval
    of its mean change over seeds (the interval's kind said once, at the end)."""
    parts, kind = [], ""
    for s, e in change.items():
        if e.interval is None or e.value is None or not math.isfinite(e.interval.lo):
            parts.append(f"{s} not measured")
            continue
        iv = e.interval
        word = claims.by_interval(iv.lo, iv.hi, above="rises", below="falls", neither="holds")
        parts.append(f"{s} {word} ({e.value:+.3f} [{iv.lo:+.3f}, {iv.hi:+.3f}])")
        kind = f"{iv.level:.0%} {iv.method}"
    return f"{what}: " + "; ".join(parts) + (f" ({kind})" if kind else "")


def examples(pairs: pd.DataFrame, n: int = 3, seed: int = 0) -> pd.DataFrame:
    """A seeded sample of ``n`` pairs per phenomenon, with the changed word marked, for the reader to judge."""
    rows = []
    for phen in PHENOMENA:
        sub = pairs[pairs.phenomenon == phen]
        take = sub.sample(min(n, len(sub)), random_state=seed) if len(sub) else sub
        for r in take.itertuples():
            rows.append({"phenomenon": SET_WORDS[phen], "good": r.good, "bad word": f"{r.good_word} → {r.bad_word}"})
    return pd.DataFrame(rows)


def set_table(evals) -> pd.DataFrame:
    """What each set is: its rule, candidates found, items kept."""
    from ..data import downstream as D

    rules = {"agreement": D.AGREEMENT_RULE, "determiner": D.DETERMINER_RULE, "lastword": D.LASTWORD_RULE}
    return pd.DataFrame(
        [
            {"set": SET_WORDS[s], "rule": rules[s], "candidates": evals.available[s], "kept": evals.sizes[s]}
            for s in SETS
        ]
    )
