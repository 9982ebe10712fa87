"""Intervals and tests that fit a handful of seeds: exact enumeration where resamples are few.

With four seeds a percentile bootstrap has only 35 distinct resamples, so drawing 1,000 of them at random adds
noise and no information. Here every interval says what it is (:class:`Interval`), and small samples are
enumerated exactly:

- :func:`mean_interval` — the percentile interval of the mean (or median) of per-unit values (seeds or runs),
  from all C(2n−1, n) distinct bootstrap resamples weighted by their multinomial probability when n ≤
  ``EXACT_MAX``, else from ``scipy.stats.bootstrap`` (BCa).
- :func:`sign_test` — the exact binomial probability of so many units agreeing in sign by chance.
- :func:`trend_test` — Spearman ρ between an ordered factor (model size) and per-unit values, with an exact
  permutation p-value (all distinct relabellings when they are few, else a seeded Monte-Carlo sample).
- :func:`seed_pair_weights` — how often each ordered seed pair appears when the seeds are resampled, so that
  pair-level statistics can be bootstrapped over seeds rather than over pairs (pairs sharing a seed are not
  independent).
- :func:`band` — the book's one band table (keys, ``value``, ``lo``, ``hi``, ``n``): a centre over units (seeds,
  runs, pairs) with its min–max or ±1 SD band, the table every line-with-band chart
  (:func:`lmconv.figures.plots.band_lines`) draws.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd

from ..errors import LmconvError

EXACT_MAX = 8  # n ≤ 8 units: enumerate the C(2n−1, n) ≤ 6,435 distinct resamples
LEVEL = 0.90  # the book's default interval level (four seeds cannot support a narrower reading of 95%)
BAND_COLUMNS = ("value", "lo", "hi")  # the centre and the band of every band table (see :func:`band`)
BAND_CENTRES = ("mean", "median")
BAND_SPREADS = ("range", "sd", "se")


@dataclass(frozen=True)
class Interval:
    """A central interval and what it is: ``method`` in words, at ``level``, over ``n`` units."""

    lo: float
    hi: float
    level: float
    method: str
    n: int

    def excludes(self, value: float = 0.0) -> int:
        """+1 if the whole interval lies above ``value``, −1 if below, 0 if it contains it (or is undefined)."""
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            return 0
        return 1 if self.lo > value else -1 if self.hi < value else 0

    def text(self, fmt: str = "{:.3g}") -> str:
        return f"[{fmt.format(self.lo)}, {fmt.format(self.hi)}] ({self.level:.0%} {self.method})"


@cache
def _multisets(n: int) -> tuple[np.ndarray, np.ndarray]:
    """All distinct bootstrap resamples of n units as count vectors (k, n), with their probabilities (k,)."""
    counts, probs = [], []
    for combo in itertools.combinations_with_replacement(range(n), n):
        c = np.bincount(combo, minlength=n)
        counts.append(c)
        probs.append(math.factorial(n) / math.prod(math.factorial(int(x)) for x in c) / n**n)
    return np.array(counts, dtype=float), np.array(probs)


def n_distinct_resamples(n: int) -> int:
    """C(2n−1, n): the number of distinct bootstrap resamples of n units (35 for n = 4)."""
    return math.comb(2 * n - 1, n)


def _weighted_quantiles(values: np.ndarray, weights: np.ndarray, qs: Sequence[float]) -> list[float]:
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order] / weights[order].sum()
    cdf = np.cumsum(w)
    return [float(v[min(int(np.searchsorted(cdf, q - 1e-12)), v.size - 1)]) for q in qs]


def mean_interval(values: Sequence[float], *, level: float = LEVEL, stat: str = "mean", seed: int = 0) -> Interval:
    """Central ``level`` percentile bootstrap interval of the ``stat`` ("mean" or "median") of per-unit values.

    n ≤ ``EXACT_MAX``: exact enumeration of every distinct resample (weighted by its multinomial probability),
    no randomness. Larger n: ``scipy.stats.bootstrap`` with the BCa method (9,999 resamples, ``seed``).
    One unit gives the degenerate interval [x, x]; NaN values are dropped first.
    """
    if stat not in ("mean", "median"):
        raise LmconvError(f"mean_interval: stat must be 'mean' or 'median', got {stat!r}")
    v = np.asarray([x for x in values if x is not None and math.isfinite(float(x))], dtype=float)
    if v.size == 0:
        return Interval(math.nan, math.nan, level, "no finite values", 0)
    if v.size == 1:
        return Interval(float(v[0]), float(v[0]), level, "one unit, no spread", 1)
    a = (1 - level) / 2
    if v.size <= EXACT_MAX:
        counts, probs = _multisets(v.size)
        if stat == "mean":
            est = counts @ v / v.size
        else:
            est = np.array([np.median(np.repeat(v, c.astype(int))) for c in counts])
        lo, hi = _weighted_quantiles(est, probs, (a, 1 - a))
        method = f"bootstrap of the {stat}, all {n_distinct_resamples(v.size)} distinct resamples of {v.size} units"
        return Interval(lo, hi, level, method, int(v.size))
    from scipy import stats as sst

    fn: Callable = np.mean if stat == "mean" else np.median
    if np.all(v == v[0]):
        return Interval(float(v[0]), float(v[0]), level, f"{v.size} equal units", int(v.size))
    r = sst.bootstrap((v,), fn, confidence_level=level, method="BCa", n_resamples=9999, random_state=seed)
    ci = r.confidence_interval
    return Interval(
        float(ci.low), float(ci.high), level, f"BCa bootstrap of the {stat} over {v.size} units", int(v.size)
    )


@dataclass(frozen=True)
class SignTest:
    """How many units are above / below zero, and the exact one-sided binomial p of that many agreeing."""

    n_pos: int
    n_neg: int
    n: int
    p_pos: float  # P(at least n_pos positive | p = 1/2), zeros left out
    p_neg: float


def sign_test(values: Sequence[float]) -> SignTest:
    """Exact sign test of per-unit values (zeros and NaN left out). With four units the smallest one-sided p
    is 1/16 = 0.0625: four seeds cannot pass a 5% sign test, whatever the effect."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(float(x))], dtype=float)
    pos, neg = int((v > 0).sum()), int((v < 0).sum())
    n = pos + neg

    def tail(k: int) -> float:
        return sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n if n else 1.0

    return SignTest(pos, neg, n, tail(pos), tail(neg))


@dataclass(frozen=True)
class Trend:
    """Spearman ρ between group order and values, with the exact (or Monte-Carlo) permutation p of abs(ρ)."""

    rho: float
    p: float  # two-sided: P(abs(ρ_perm) ≥ abs(ρ)) over relabellings of the units
    n: int
    n_groups: int
    method: str


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from ..lenses.activations import spearman

    return float(spearman(x, y))


def trend_test(groups: Sequence[Sequence[float]], *, n_perm: int = 20000, seed: int = 0) -> Trend:
    """Does the value rise with the group index (groups in their natural order, e.g. sizes small → large)?

    ρ is Spearman's rank correlation between each unit's group index and its value (ties averaged). The
    p-value is the share of relabellings of units to groups (group sizes kept) with abs(ρ) at least as large:
    all distinct relabellings when there are at most ``n_perm`` of them, else ``n_perm`` seeded random ones.
    """
    vals = [np.asarray([x for x in g if x is not None and math.isfinite(float(x))], dtype=float) for g in groups]
    vals = [g for g in vals if g.size]
    if len(vals) < 2:
        return Trend(math.nan, math.nan, int(sum(g.size for g in vals)), len(vals), "fewer than two groups")
    y = np.concatenate(vals)
    x = np.concatenate([np.full(g.size, i, dtype=float) for i, g in enumerate(vals)])
    rho = _spearman(x, y)
    if not math.isfinite(rho):
        return Trend(rho, math.nan, y.size, len(vals), "undefined (constant values)")
    sizes = [g.size for g in vals]
    total = math.factorial(y.size) // math.prod(math.factorial(s) for s in sizes)
    if total <= n_perm:
        hits = 0
        for labels in _relabellings(sizes):
            hits += abs(_spearman(np.asarray(labels, dtype=float), y)) >= abs(rho) - 1e-12
        return Trend(rho, hits / total, y.size, len(vals), f"exact, all {total} relabellings")
    rng = np.random.default_rng(seed)
    hits = sum(abs(_spearman(rng.permutation(x), y)) >= abs(rho) - 1e-12 for _ in range(n_perm))
    return Trend(rho, (hits + 1) / (n_perm + 1), y.size, len(vals), f"Monte Carlo, {n_perm} relabellings")


def _relabellings(sizes: Sequence[int]):
    """Every distinct assignment of group labels to len = sum(sizes) positions (multiset permutations)."""
    n = sum(sizes)

    def rec(pos: int, left: list[int], cur: list[int]):
        if pos == n:
            yield list(cur)
            return
        for g, k in enumerate(left):
            if k:
                left[g] -= 1
                cur.append(g)
                yield from rec(pos + 1, left, cur)
                cur.pop()
                left[g] += 1

    yield from rec(0, list(sizes), [])


def seed_pair_weights(pairs: Sequence[tuple[int, int]], n_boot: int, seed: int = 0) -> np.ndarray:
    """Weights (n_boot, n_pairs) of ordered seed pairs when the *seeds* are resampled with replacement.

    A resample draws the seeds with replacement; an ordered pair (i, j) of distinct seeds then appears
    count(i)·count(j) times. Resamples that keep fewer than two distinct seeds (no pair) get all-zero weights;
    callers drop them. Pairs of one seed with itself never occur (KL of a model with itself is 0).
    """
    seeds = sorted({s for p in pairs for s in p})
    rng = np.random.default_rng(seed)
    idx = {s: k for k, s in enumerate(seeds)}
    w = np.zeros((n_boot, len(pairs)))
    for b in range(n_boot):
        c = Counter(rng.integers(0, len(seeds), len(seeds)).tolist())
        for k, (i, j) in enumerate(pairs):
            w[b, k] = c.get(idx[i], 0) * c.get(idx[j], 0)
    return w


__all__ = [
    "EXACT_MAX",
    "LEVEL",
    "Interval",
    "SignTest",
    "Trend",
    "band",
    "mean_interval",
    "n_distinct_resamples",
    "seed_pair_weights",
    "sign_test",
    "trend_test",
]


def band(
    df: pd.DataFrame, value: str, by: Sequence[str], *, centre: str = "mean", spread: str = "range"
) -> pd.DataFrame:
    """The book's band table: one row per ``by`` group, sorted by the keys, over the group's rows (its units).

    Columns: the keys, ``value`` (the ``centre`` of ``value``: "mean" or "median"), ``lo`` and ``hi`` (``spread``
    "range": min and max; "sd": ``value`` ∓ one standard deviation, ddof 1, with the column ``sd``; "se": ``value``
    ∓ one standard error, sd/√n, with the column ``se``; NaN for a single unit) and ``n`` (units with a value).
    The cube summaries of :mod:`lmconv.lenses.kl` emit the same value,
    sd, lo and hi columns (mean ± 1 SD over replicates or tokens).
    """
    if centre not in BAND_CENTRES or spread not in BAND_SPREADS:
        raise LmconvError(
            f"band centre {centre!r}, spread {spread!r}",
            f"use centre in {BAND_CENTRES} and spread in {BAND_SPREADS}",
        )
    missing = [c for c in (*by, value) if c not in df.columns]
    if missing:
        raise LmconvError(f"band table: no column {missing} in {list(df.columns)}", "name columns of the table")
    g = df.groupby(list(by), sort=True, observed=True)[value]
    if spread == "range":
        return g.agg(value=centre, lo="min", hi="max", n="count").reset_index()
    out = g.agg(value=centre, sd="std", n="count").reset_index()
    if spread == "se":
        out = out.rename(columns={"sd": "se"})
        out["se"] = out["se"] / np.sqrt(out["n"])
    width = out[spread]
    out.insert(len(by) + 2, "lo", out["value"] - width)
    out.insert(len(by) + 3, "hi", out["value"] + width)
    return out
