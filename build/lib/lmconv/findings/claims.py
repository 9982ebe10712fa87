"""Every claim of the three papers the book tests, as data, each with the function that judges it.

A claim (:class:`Claim`) records the paper's words, where they come from and whether that source is the paper's
text, its code, a secondary reading of it, or our own reading. Its judge (a ``judge_*`` function named in
``Claim.judge``) takes the measurements a chapter makes (small tables, documented per function) and returns a
:class:`Verdict`: *reproduced*, *contradicted* or *inconclusive*, with the statistic, its value per size and per
unit (seed, run or seed pair), its interval and the rule that decided, in words. The book's scorecard and its
conclusion sentences are built from these verdicts, never typed.

Rules are deliberately simple and stated in each verdict's ``rule``: a direction is *reproduced* when the
interval of the statistic excludes the null on the paper's side (and, where units are few, every unit agrees),
*contradicted* when it excludes it on the other side, and *inconclusive* otherwise, including when the data to
test it are missing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..errors import LmconvError
from ..metrics import stats
from ..metrics.stats import Interval
from . import papers

Outcome = Literal["reproduced", "contradicted", "inconclusive"]
REPRODUCED: Outcome = "reproduced"
CONTRADICTED: Outcome = "contradicted"
INCONCLUSIVE: Outcome = "inconclusive"
OUTCOMES: tuple[Outcome, ...] = (REPRODUCED, CONTRADICTED, INCONCLUSIVE)

NEARLY_ALL = 0.9  # "nearly all layers": our reading, 90% of (layer, circuit) units
SYNC_TOL = 0.2  # decades: two events "coincide" when their steps differ by less than a factor 10**0.2 ≈ 1.6 (ours)
FALL_DECADES = 1.0  # "orders of magnitude": at least one decade from peak to floor (ours; [S] reports ~2)
TREND_P = 0.05  # permutation p below which a trend over sizes counts as shown
PROPORTIONAL_TOL = 0.1  # a log-log slope within 1 ± 0.1 counts as "in proportion" (ours; the paper gives none)


@dataclass(frozen=True)
class Claim:
    """One claim of a paper and how the book tests it."""

    id: str
    paper: str  # bibliography key
    lens: str
    words: str  # the paper's words (quoted where we have them)
    source: Literal["paper text", "paper code", "secondary reading", "our reading"]
    where: str  # where in the source
    figure: str  # label of the book section whose figure shows it
    judge: str  # name of the judge_* function of this module


@dataclass(frozen=True)
class Estimate:
    """A statistic for one size: its value, its interval and the per-unit values it came from."""

    value: float | None
    interval: Interval | None = None
    units: tuple[float, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """The answer to one claim on one suite."""

    claim: str
    outcome: Outcome
    statistic: str  # what ``value`` is, in words
    value: float | None  # the headline number (see ``statistic``)
    interval: Interval | None  # its interval, when it has one
    per_size: dict[str, Estimate] = field(default_factory=dict)
    unit: str = "seed"  # what one unit of ``Estimate.units`` is
    rule: str = ""  # the decision rule in words
    reason: str = ""  # why this outcome, with the numbers

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise LmconvError(f"verdict outcome {self.outcome!r} is not one of {OUTCOMES}")

    def sentence(self) -> str:
        """One sentence for the book: the outcome, then the reason."""
        return f"{self.outcome.capitalize()}: {self.reason}."

    def as_row(self) -> dict[str, Any]:
        return {
            "claim": self.claim,
            "verdict": self.outcome,
            "statistic": self.statistic,
            "value": self.value,
            "interval": self.interval.text() if self.interval else "",
            "reason": self.reason,
            "rule": self.rule,
        }


# ---------------------------------------------------------------------------------------------------------
# formatting
# ---------------------------------------------------------------------------------------------------------


def fmt(x: float | None, spec: str = ".3g") -> str:
    """A number for prose; None/NaN as "not seen"."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "not seen"
    if isinstance(x, float) and math.isinf(x):
        return "never"
    return format(x, spec)


def _sizes_text(per: Mapping[str, Any], spec: str = ".3g") -> str:
    return ", ".join(f"{s} {fmt(v.value if isinstance(v, Estimate) else v, spec)}" for s, v in per.items())


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def by_interval(lo: float, hi: float, *, above: str, below: str, neither: str, null: float = 0.0) -> str:
    """The words for where an interval lies: ``above`` when it lies wholly above ``null``, ``below`` when wholly
    below, ``neither`` when it contains it or is undefined (so a re-run chapter never states a direction its
    own interval does not support)."""
    side = Interval(lo, hi, 0.0, "", 0).excludes(null)
    return above if side > 0 else below if side < 0 else neither


def trend_word(values: Sequence[float], *, up: str, down: str, neither: str) -> str:
    """``up`` when the values rise strictly from each to the next, ``down`` when they fall strictly, else
    ``neither`` (NaN anywhere, fewer than two values or a tie count as neither). Describes point estimates only:
    it says nothing of uncertainty, and the book uses it only where no interval is claimed."""
    v = np.asarray([np.nan if x is None else x for x in values], dtype=float)
    if v.size < 2 or not np.all(np.isfinite(v)):
        return neither
    d = np.diff(v)
    return up if np.all(d > 0) else down if np.all(d < 0) else neither


def compare_word(a: float | None, b: float | None, *, more: str, less: str, same: str, missing: str) -> str:
    """``more`` when a > b, ``less`` when a < b, ``same`` when equal, ``missing`` when either is None or NaN."""
    if a is None or b is None or not (math.isfinite(float(a)) and math.isfinite(float(b))):
        return missing
    return more if a > b else less if a < b else same


def missing(claim: str, statistic: str, why: str) -> Verdict:
    """The verdict when the data to test a claim are not there (a suite not trained, an evaluation not built)."""
    return Verdict(claim, INCONCLUSIVE, statistic, None, None, rule="needs data this build does not have", reason=why)


# ---------------------------------------------------------------------------------------------------------
# generic rules
# ---------------------------------------------------------------------------------------------------------


def directional(
    claim: str,
    statistic: str,
    per_size: Mapping[str, Estimate],
    expected: int,
    *,
    unit: str,
    null: float = 0.0,
    what_holds: str,
    what_reversed: str,
) -> Verdict:
    """Reproduced when every size's interval lies on the ``expected`` side of ``null`` (+1 above, −1 below),
    contradicted when every size's interval lies on the other side, inconclusive otherwise. The headline value
    and interval are the largest size's (the last of ``per_size``)."""
    if not per_size:
        return missing(claim, statistic, "no size was measured")
    if all(e.value is None for e in per_size.values()):
        return missing(claim, statistic, "no unit had the event this statistic needs")
    sides = {s: (e.interval.excludes(null) if e.interval else 0) for s, e in per_size.items()}
    last = list(per_size)[-1]
    head = per_size[last]
    nums = _sizes_text(per_size)
    rule = (
        f"reproduced when the interval of every size (or circuit, arm) lies {'above' if expected > 0 else 'below'} "
        f"{null:g}; "
        "contradicted when every size's lies on the other side; otherwise inconclusive"
    )
    if all(v == expected for v in sides.values()):
        outcome, reason = REPRODUCED, f"{what_holds} in every size ({statistic}: {nums})"
    elif all(v == -expected for v in sides.values()):
        outcome, reason = CONTRADICTED, f"{what_reversed} in every size ({statistic}: {nums})"
    else:
        held = [s for s, v in sides.items() if v == expected]
        rev = [s for s, v in sides.items() if v == -expected]
        parts = [
            f"the paper's direction holds in {', '.join(held)}" if held else "",
            f"it is reversed in {', '.join(rev)}" if rev else "",
        ]
        told = "; ".join(p for p in parts if p) or "no interval excludes the null"
        outcome, reason = INCONCLUSIVE, f"{told} ({statistic}: {nums})"
    return Verdict(claim, outcome, statistic, head.value, head.interval, dict(per_size), unit, rule, reason)


def estimate(units: Sequence[float | None], *, stat: str = "mean") -> Estimate:
    """An :class:`Estimate` from per-unit values: their mean (or median) and its
    :func:`lmconv.metrics.stats.mean_interval`."""
    v = _finite(units)
    if not v:
        return Estimate(None, None, ())
    iv = stats.mean_interval(v, stat=stat)
    return Estimate(float(np.mean(v) if stat == "mean" else np.median(v)), iv, tuple(v))


# ---------------------------------------------------------------------------------------------------------
# cross-seed KL (Fehlauer, Mahowald & Pimentel 2025)
# ---------------------------------------------------------------------------------------------------------

PHASES = ("uniform", "convergence", "divergence", "reconvergence")


def _phase_flags(p: Any) -> tuple[bool, bool, bool, bool]:
    return (p.has_uniform, p.has_convergence, p.has_divergence, p.has_reconvergence)


def judge_four_phases(spreads: Mapping[str, Any]) -> Verdict:
    """``spreads``: size → :class:`lmconv.metrics.phases.KLPhaseSpread` (sizes small → large).

    Statistic: the number of the four phases the mean curve of each size shows (units: the number each seed
    pair's curve shows). Reproduced when some size's mean curve shows all four and every size shows (i)–(iii);
    contradicted when no size's mean curve shows both (ii) and (iii); otherwise inconclusive."""
    cid, stat = "kl.four_phases", "phases seen on the mean curve"
    if not spreads:
        return missing(cid, stat, "no size was measured")
    per = {
        s: Estimate(float(sum(_phase_flags(sp.mean_curve))), None, tuple(float(sum(_phase_flags(p))) for p in sp.pairs))
        for s, sp in spreads.items()
    }
    seen = {s: [n for n, f in zip(PHASES, _phase_flags(sp.mean_curve), strict=True) if f] for s, sp in spreads.items()}
    desc = "; ".join(f"{s}: {', '.join(v) if v else 'none'}" for s, v in seen.items())
    full = [s for s, sp in spreads.items() if all(_phase_flags(sp.mean_curve))]
    core = [s for s, sp in spreads.items() if all(_phase_flags(sp.mean_curve)[:3])]
    ii_iii = [s for s, sp in spreads.items() if sp.mean_curve.has_convergence and sp.mean_curve.has_divergence]
    rule = (
        "reproduced when some size's mean curve shows all four phases and every size shows (i)–(iii); "
        "contradicted when no size shows both (ii) and (iii); otherwise inconclusive"
    )
    if full and len(core) == len(spreads):
        outcome, reason = REPRODUCED, f"all four phases in {', '.join(full)}, (i)–(iii) in every size ({desc})"
    elif not ii_iii:
        outcome, reason = CONTRADICTED, f"no size shows both sharp convergence and sharp divergence ({desc})"
    else:
        outcome, reason = INCONCLUSIVE, f"only part of the pattern is seen ({desc})"
    last = list(per)[-1]
    return Verdict(cid, outcome, stat, per[last].value, None, per, "seed pair", rule, reason)


def judge_reconvergence(spreads: Mapping[str, Any]) -> Verdict:
    """``spreads`` as for :func:`judge_four_phases`, sizes ordered small → large.

    Statistic: the fall of KL after its peak, 1 − KL_final/KL_peak, on each size's mean curve (units: each seed
    pair's). Reproduced when the largest size's mean curve shows (iv) and the smallest size's does not;
    contradicted when the smallest shows it and the largest does not; otherwise inconclusive (every size or no
    size reconverges). The rank correlation of the pairs' falls with size is reported beside it, without a
    p-value: ordered pairs share seeds (and i→j mirrors j→i), so they are not independent units."""
    return _reconvergence("kl.reconvergence_by_size", "fall of KL after its peak (1 − final/peak)", spreads)


def judge_downstream_reconvergence(spreads: Mapping[str, Any] | None) -> Verdict:
    """``spreads``: size → the KL-phase detector on the seeds' downstream KL (the paper's BLiMP estimator on our
    minimal pairs, ``lmconv.lenses.downstream.phase_spreads``), sizes small → large. The paper: the downstream
    curve repeats the converge / diverge / reconverge-only-for-large-models pattern. The rule of
    :func:`judge_reconvergence`, on these curves."""
    cid, stat = "kl.downstream_reconvergence", "fall of the downstream KL after its peak (1 − final/peak)"
    if not spreads:
        return missing(cid, stat, "the analysis has no downstream scores")
    return _reconvergence(cid, stat, spreads)


def _reconvergence(cid: str, stat: str, spreads: Mapping[str, Any]) -> Verdict:
    if len(spreads) < 2:
        return missing(cid, stat, "needs at least two sizes")
    per = {}
    for s, sp in spreads.items():
        m = sp.mean_curve
        units = tuple(float(p.fall) if p.has_divergence and p.fall is not None else math.nan for p in sp.pairs)
        per[s] = Estimate(float(m.fall) if m.has_divergence and m.fall is not None else None, None, units)
    sizes = list(spreads)
    small, large = spreads[sizes[0]].mean_curve, spreads[sizes[-1]].mean_curve
    re = [s for s in sizes if spreads[s].mean_curve.has_reconvergence]
    counts = ", ".join(f"{s} {spreads[s].n_reconvergence}/{spreads[s].n_pairs}" for s in sizes)
    tr = stats.trend_test([per[s].units for s in sizes])
    trend = f"Spearman ρ of the pairs' falls with size {fmt(tr.rho, '+.2f')} (descriptive: pairs share seeds)"
    detail = f"fall on the mean curve: {_sizes_text(per, '.1%')}; pairs that reconverge: {counts}; {trend}"
    rule = (
        "reproduced when the largest size's mean curve shows (iv) and the smallest's does not; contradicted when "
        "the smallest's does and the largest's does not; otherwise inconclusive"
    )
    if large.has_reconvergence and not small.has_reconvergence:
        outcome, reason = REPRODUCED, f"{sizes[-1]} reconverges and {sizes[0]} does not ({detail})"
    elif small.has_reconvergence and not large.has_reconvergence:
        outcome, reason = CONTRADICTED, f"{sizes[0]} reconverges and {sizes[-1]} does not ({detail})"
    elif re:
        outcome, reason = INCONCLUSIVE, f"every size reconverges, so size does not separate them ({detail})"
    else:
        outcome, reason = INCONCLUSIVE, f"no size reconverges ({detail})"
    return Verdict(cid, outcome, stat, per[sizes[-1]].value, None, per, "seed pair", rule, reason)


def judge_frequency(per_size: Mapping[str, Estimate]) -> Verdict:
    """``per_size``: size → the slope of per-token E[conv] on log10(1 + training count) at the last checkpoint,
    with its interval over documents and seeds (``lmconv.findings.scorecard.token_effects``). The paper: frequent tokens
    converge more (slope > 0)."""
    return directional(
        "kl.frequency",
        "slope of E[conv] per decade of token frequency",
        per_size,
        +1,
        unit="seed pair",
        what_holds="frequent tokens converge more",
        what_reversed="frequent tokens converge less",
    )


def judge_function_words(per_size: Mapping[str, Estimate]) -> Verdict:
    """``per_size``: size → E[conv] of function-word tokens minus that of content-word tokens at the last
    checkpoint (``lmconv.data.linguistics.word_class``), interval over documents and seeds. The paper: function
    words converge more (difference > 0)."""
    return directional(
        "kl.function_words",
        "E[conv] of function words minus content words",
        per_size,
        +1,
        unit="seed pair",
        what_holds="function words converge more than content words",
        what_reversed="function words converge less than content words",
    )


def judge_pos_order(orders: Mapping[str, Sequence[str]]) -> Verdict:
    """``orders``: size → POS group labels ordered by E[conv] at the last checkpoint (most converged first).

    The paper's available text gives no order of its groups and its code only sorts legends, so there is
    nothing to compare with: always inconclusive, reporting our order and how much it agrees between the
    smallest and largest size (Spearman ρ over the groups both have)."""
    cid, stat = "kl.pos_order", "Spearman ρ between the smallest and largest size's POS orders"
    if not orders:
        return missing(cid, stat, "no POS groups were measured")
    sizes = list(orders)
    a, b = list(orders[sizes[0]]), list(orders[sizes[-1]])
    common = [g for g in a if g in b]
    rho = math.nan
    if len(common) > 2:
        rho = stats._spearman(np.arange(len(common), dtype=float), np.array([b.index(g) for g in common], float))
    shown = "; ".join(f"{s}: {' > '.join(o)}" for s, o in orders.items())
    reason = f"the paper states no order to compare with; ours, most converged first: {shown}"
    return Verdict(
        cid, INCONCLUSIVE, stat, rho, None, {}, "POS group", "the paper gives no order: always inconclusive", reason
    )


# ---------------------------------------------------------------------------------------------------------
# activations and effective rank (Diehl Martinez, Lesci & Buttery 2024)
# ---------------------------------------------------------------------------------------------------------


def judge_early_stabilisation(shares: Mapping[str, Sequence[float]], *, nearly_all: float = NEARLY_ALL) -> Verdict:
    """``shares``: size → per seed, the share of (layer, circuit) units whose CKA with the final checkpoint has
    stabilised within the first 20% of training (``lmconv.lenses.activations.stabilisation``); sizes small →
    large. The claim is about the larger models: every size but the smallest (the only one if there is one).

    Reproduced when every seed of every larger size has a share ≥ ``nearly_all``; contradicted when the
    interval of every larger size's mean share lies below it; otherwise inconclusive."""
    within = papers.CKA_STABLE_FRACTION
    cid, stat = "stab.early_20pct", f"share of layers stable within the first {within:.0%} of training"
    if not shares:
        return missing(cid, stat, "no size was measured")
    sizes = list(shares)
    larger = sizes[1:] or sizes
    per = {s: estimate(shares[s]) for s in sizes}
    nums = _sizes_text({s: per[s] for s in larger}, ".0%")
    rule = (
        f"reproduced when every seed of every size but the smallest has ≥ {nearly_all:.0%} of its layers stable "
        f"within {within:.0%}; contradicted when each such size's interval lies below {nearly_all:.0%}"
    )
    if all(min(per[s].units, default=0) >= nearly_all for s in larger):
        outcome, reason = REPRODUCED, f"nearly all layers stabilise early in {', '.join(larger)} ({nums})"
    elif all(per[s].interval is not None and per[s].interval.hi < nearly_all for s in larger):
        outcome, reason = (
            CONTRADICTED,
            f"far fewer than nearly all layers stabilise early in {', '.join(larger)} ({nums})",
        )
    else:
        outcome, reason = INCONCLUSIVE, f"the share is near the bound or varies over seeds ({nums})"
    last = per[larger[-1]]
    return Verdict(cid, outcome, stat, last.value, last.interval, per, "seed", rule, reason)


def judge_smaller_slower(fractions: Mapping[str, Sequence[float]]) -> Verdict:
    """``fractions``: size → per run (seed), the median over its layers of the stabilisation point as a
    fraction of training (+inf when most layers never stabilise); sizes small → large.

    Statistic: Spearman ρ between size order and the runs' median stabilisation point, with its permutation p
    (never counts as latest). The paper: smaller models converge more slowly, so ρ < 0. Reproduced when
    ρ < 0 with p < 0.05, contradicted when ρ > 0 with p < 0.05, otherwise inconclusive."""
    cid, stat = "stab.smaller_slower", "Spearman ρ of size with the median stabilisation point"
    if len(fractions) < 2:
        return missing(cid, stat, "needs at least two sizes")
    big = 1e9  # "never" ranks after every real point
    groups = [[big if (v is not None and math.isinf(v)) else v for v in fractions[s]] for s in fractions]
    tr = stats.trend_test(groups)
    per = {
        s: Estimate(float(np.median(_finite(g))) if _finite(g) else None, None, tuple(_finite(g)))
        for s, g in zip(fractions, groups, strict=True)
    }
    shown = ", ".join(
        f"{s} {fmt(e.value if e.value is None or e.value < big else math.inf, '.0%')}" for s, e in per.items()
    )
    detail = f"ρ {fmt(tr.rho, '+.2f')}, p {fmt(tr.p, '.3f')} ({tr.method}); median point per size: {shown}"
    rule = f"reproduced when ρ < 0 with permutation p < {TREND_P}; contradicted when ρ > 0 with p < {TREND_P}"
    if math.isfinite(tr.rho) and tr.p < TREND_P:
        outcome = REPRODUCED if tr.rho < 0 else CONTRADICTED
        reason = ("larger models stabilise earlier" if tr.rho < 0 else "larger models stabilise later") + f" ({detail})"
    else:
        outcome, reason = INCONCLUSIVE, f"no trend with size beyond chance ({detail})"
    return Verdict(cid, outcome, stat, tr.rho, None, per, "run", rule, reason)


def judge_rank_convergence(corr: Mapping[str, Mapping[str, float]] | None) -> Verdict:
    """``corr``: circuit → rho, lo, hi (and n_groups) of Spearman ρ between a layer's effective rank (PER of its
    weights, mean over training) and its stabilisation point within size, from
    ``lmconv.lenses.activations.bootstrap_corr`` (95% percentile bootstrap over runs within size). The paper:
    lower rank goes with slower convergence, so ρ < 0. Reproduced when every circuit's interval lies below 0,
    contradicted when every circuit's lies above 0, otherwise inconclusive."""
    cid, stat = "stab.rank", "Spearman ρ of effective rank with the stabilisation point (within size)"
    ok = {c: r for c, r in (corr or {}).items() if math.isfinite(float(r.get("rho", math.nan)))}
    if not ok:
        return missing(cid, stat, "the correlation is undefined or was not measured")
    per = {
        c: Estimate(
            float(r["rho"]),
            Interval(
                float(r["lo"]),
                float(r["hi"]),
                float(r.get("level", 0.95)),
                "percentile bootstrap over runs within size",
                int(r.get("n_groups", 0)),
            ),
        )
        for c, r in ok.items()
    }
    return directional(
        cid,
        stat,
        per,
        -1,
        unit="circuit",
        what_holds="layers of lower effective rank stabilise later",
        what_reversed="layers of lower effective rank stabilise earlier",
    )


def judge_late_degradation(per_size: Mapping[str, Estimate] | None = None) -> Verdict:
    """``per_size``: size → the change of the last-word accuracy (the LAMBADA analogue) from the start of the
    late phase (half of training, ``lmconv.lenses.downstream.LATE_FROM``) to the end, mean over seeds with its
    interval (``lmconv.lenses.downstream.late_change``); sizes small → large. The paper: smaller models degrade
    late, larger ones do not.

    Reproduced when the smallest size's interval lies below 0 and the largest size's does not; contradicted when
    the smallest size's lies above 0 (it still improves late); otherwise inconclusive."""
    cid, stat = "stab.late_degradation", "change of the last-word accuracy over the late phase"
    if not per_size:
        return missing(cid, stat, "the analysis has no downstream scores, so this claim is not tested")
    sizes = list(per_size)
    sides = {s: (e.interval.excludes(0.0) if e.interval else 0) for s, e in per_size.items()}
    nums = _sizes_text(per_size, "+.3f")
    rule = (
        "reproduced when the smallest size's interval lies below 0 and the largest's does not; contradicted when "
        "the smallest's lies above 0; otherwise inconclusive"
    )
    small, large = sizes[0], sizes[-1]
    if sides[small] < 0 and (len(sizes) == 1 or sides[large] >= 0):
        outcome, reason = REPRODUCED, f"the smallest model's accuracy falls late and the largest's does not ({nums})"
    elif sides[small] > 0:
        outcome, reason = CONTRADICTED, f"the smallest model's accuracy still rises late ({nums})"
    elif sides[small] < 0:
        outcome, reason = INCONCLUSIVE, f"every size's accuracy falls late, the largest's too ({nums})"
    else:
        outcome, reason = INCONCLUSIVE, f"the smallest model's late change is within its interval of 0 ({nums})"
    head = per_size[small]
    return Verdict(cid, outcome, stat, head.value, head.interval, dict(per_size), "seed", rule, reason)


# ---------------------------------------------------------------------------------------------------------
# spectra (Zhang et al. 2026)
# ---------------------------------------------------------------------------------------------------------


def judge_spectrum_before_weights(per_size: Mapping[str, Sequence[float]]) -> Verdict:
    """``per_size``: size → per run, log10(t_W / t_Σ): how many decades after the singular distribution
    (cos(σ_t, σ_T) ≥ threshold for good) the weights themselves saturate (cos(W_t, W_T) ≥ threshold); a
    quantity that never saturates counts as saturating just after the last checkpoint. Positive = the spectrum
    first, as the paper reports. Directional rule over runs."""
    per = {s: estimate(v) for s, v in per_size.items()}
    return directional(
        "sosd.before_weights",
        "decades from the spectrum's saturation to the weights'",
        per,
        +1,
        unit="run",
        what_holds="the singular distribution settles before the weights",
        what_reversed="the weights settle before the singular distribution",
    )


def judge_falls_to_floor(per_size: Mapping[str, Sequence[float | None]], *, decades: float = FALL_DECADES) -> Verdict:
    """``per_size``: size → per run, the fall of the smoothed ΔΣ from its peak to its late floor in decades, or
    None where the SoSD detector found no transition. Reproduced when every run has a transition and every
    size's interval of the fall lies above ``decades``; contradicted when most runs have none or every size's
    interval lies below ``decades``; otherwise inconclusive."""
    cid, stat = "sosd.falls_to_floor", "fall of ΔΣ from peak to floor (decades)"
    if not per_size:
        return missing(cid, stat, "no run was measured")
    runs = [v for vs in per_size.values() for v in vs]
    absent = sum(v is None or not math.isfinite(float(v)) for v in runs)
    per = {s: estimate(v) for s, v in per_size.items()}
    nums = _sizes_text(per, ".2f")
    rule = (
        f"reproduced when every run shows a transition and each size's interval lies above {decades:g} decade(s); "
        f"contradicted when most runs show none or each size's interval lies below {decades:g}"
    )
    head = per[list(per)[-1]]

    def out(o: Outcome, r: str) -> Verdict:
        return Verdict(cid, o, stat, head.value, head.interval, per, "run", rule, r)

    if absent * 2 > len(runs):
        return out(CONTRADICTED, f"no transition in {absent} of {len(runs)} runs ({nums})")
    if absent == 0 and all(e.interval and e.interval.lo > decades for e in per.values()):
        return out(REPRODUCED, f"ΔΣ falls by more than {decades:g} decade(s) in every run ({nums})")
    if all(e.interval and e.interval.hi < decades for e in per.values()):
        return out(CONTRADICTED, f"ΔΣ falls by less than {decades:g} decade(s) ({nums})")
    why = f"{absent} of {len(runs)} runs show no transition; " if absent else ""
    return out(INCONCLUSIVE, f"{why}the fall is near {decades:g} decade(s) ({nums})")


def judge_sosd_at_loss(per_size: Mapping[str, Sequence[float | None]], *, tol: float = SYNC_TOL) -> Verdict:
    """``per_size``: size → per run, δ = log10 t_S − log10 t_L (None/NaN where either event was not found).

    Reproduced when every size's interval of the mean δ lies within ±``tol`` decades; contradicted when every
    size's interval lies outside that band (wholly above ``tol`` or wholly below −``tol``); otherwise
    inconclusive, also when most runs lack one of the events."""
    cid, stat = "sosd.at_loss_transition", "δ = log10 t_S − log10 t_L (decades)"
    if not per_size:
        return missing(cid, stat, "no run was measured")
    runs = [v for vs in per_size.values() for v in vs]
    absent = sum(v is None or not math.isfinite(float(v)) for v in runs)
    per = {s: estimate(v) for s, v in per_size.items()}
    nums = _sizes_text(per, "+.2f")
    head = per[list(per)[-1]]
    rule = (
        f"reproduced when each size's interval of δ lies within ±{tol:g} decades (a factor {10**tol:.1f} in step); "
        "contradicted when each lies wholly outside that band"
    )

    def out(o: Outcome, r: str) -> Verdict:
        return Verdict(cid, o, stat, head.value, head.interval, per, "run", rule, r)

    if absent * 2 > len(runs):
        return out(INCONCLUSIVE, f"one of the two events is missing in {absent} of {len(runs)} runs ({nums})")
    ivs = [e.interval for e in per.values() if e.interval]
    if len(ivs) == len(per) and all(-tol <= iv.lo and iv.hi <= tol for iv in ivs):
        return out(REPRODUCED, f"the SoSD point falls at the loss transition in every size ({nums})")
    if len(ivs) == len(per) and all(iv.lo > tol or iv.hi < -tol for iv in ivs):
        later = all(iv.lo > tol for iv in ivs)
        side = "after" if later else "before"
        return out(
            CONTRADICTED,
            f"the SoSD point comes {side} the loss transition, beyond ±{tol:g} decades, in every size ({nums})",
        )
    return out(INCONCLUSIVE, f"δ is near the ±{tol:g}-decade band or differs between sizes ({nums})")


def judge_mlp_below_attention(per_size: Mapping[str, Sequence[float]]) -> Verdict:
    """``per_size``: size → per run, log10(ΔΣ of the MLP matrices / ΔΣ of the attention matrices), both the
    mean rate over the run's records after its SoSD point (or over the late half when there is none).
    Negative = MLP below attention, as the paper reports. Directional rule over runs."""
    per = {s: estimate(v) for s, v in per_size.items()}
    return directional(
        "sosd.mlp_below_attention",
        "log10 of MLP ΔΣ over attention ΔΣ, late phase",
        per,
        -1,
        unit="run",
        what_holds="MLP matrices move less than attention matrices",
        what_reversed="MLP matrices move more than attention matrices",
    )


def judge_across_schedules(arms: Mapping[str, Sequence[float | None]] | None) -> Verdict:
    """``arms``: arm (schedule or optimizer variant) → per run, the fall of ΔΣ in decades, None where the SoSD
    detector found no transition. Reproduced when every run of every arm shows a transition; contradicted when
    some arm shows none in any run; otherwise inconclusive. None (the sweep suite is absent) → inconclusive."""
    cid, stat = "sosd.across_schedules", "runs with a SoSD transition, per arm"
    if not arms:
        return missing(cid, stat, "the schedule and optimizer sweep was not analysed in this build")
    found = {a: sum(v is not None and math.isfinite(float(v)) for v in vs) for a, vs in arms.items()}
    total = {a: len(vs) for a, vs in arms.items()}
    per = {a: estimate(vs) for a, vs in arms.items()}
    shown = ", ".join(f"{a} {found[a]}/{total[a]}" for a in arms)
    rule = "reproduced when every run of every arm shows a transition; contradicted when some arm shows none"
    if all(found[a] == total[a] for a in arms):
        o, r = REPRODUCED, f"the spectrum settles in every schedule and optimizer ({shown})"
    elif any(found[a] == 0 for a in arms):
        none = [a for a in arms if found[a] == 0]
        o, r = CONTRADICTED, f"no transition in any run of {', '.join(none)} ({shown})"
    else:
        o, r = INCONCLUSIVE, f"some runs show no transition ({shown})"
    n_all = sum(found.values()) / max(sum(total.values()), 1)
    return Verdict(cid, o, stat, n_all, None, per, "run", rule, r)


def judge_norm_floor(fit: Mapping[str, Any] | None, *, tol: float = PROPORTIONAL_TOL) -> Verdict:
    """``fit``: slope, lo, hi (and method) of log10 ΔΣ on log10(η/‖W‖) with one intercept per (matrix,
    optimizer), from ``lmconv.lenses.spectral.scaling_fit``. ε ∝ η/‖W‖ means slope 1. Reproduced when the interval
    lies within 1 ± ``tol`` (practically proportional: a slope of 1.01 with a hair-thin interval is not evidence
    against proportion); contradicted when it lies below 0; inconclusive otherwise — a positive slope outside
    1 ± ``tol`` (ΔΣ rises with η/‖W‖, but not in proportion), or an interval too wide to tell."""
    cid, stat = "sosd.norm_floor", "slope of log ΔΣ on log(η/‖W‖)"
    if not fit or not math.isfinite(float(fit.get("slope", math.nan))):
        return missing(cid, stat, "the scaling fit was not made in this build (it needs the sweep suite)")
    b = float(fit["slope"])
    iv = Interval(
        float(fit["lo"]),
        float(fit["hi"]),
        float(fit.get("level", 0.95)),
        str(fit.get("method", "bootstrap over seeds")),
        int(fit.get("seeds", fit.get("runs", 0))),
    )
    rule = (
        f"reproduced when the interval lies within 1 ± {tol:g}; contradicted when it lies below 0; otherwise "
        "inconclusive"
    )
    if not (math.isfinite(iv.lo) and math.isfinite(iv.hi)):
        return Verdict(
            cid, INCONCLUSIVE, stat, b, None, {}, "seed", rule, f"no interval (slope {b:.2f}; too few seeds)"
        )
    txt = f"slope {b:.2f}, interval {iv.text('{:.2f}')}"
    if 1 - tol <= iv.lo and iv.hi <= 1 + tol:
        o, r = REPRODUCED, f"ΔΣ scales in proportion to η/‖W‖, within ±{tol:g} ({txt})"
    elif iv.hi < 0:
        o, r = CONTRADICTED, f"ΔΣ falls as η/‖W‖ grows ({txt})"
    elif iv.lo > 0 and (iv.hi < 1 - tol or iv.lo > 1 + tol):
        o, r = INCONCLUSIVE, f"ΔΣ rises with η/‖W‖ but not in proportion ({txt})"
    else:
        o, r = INCONCLUSIVE, f"the interval is too wide to tell ({txt})"
    return Verdict(cid, o, stat, b, iv, {}, "seed", rule, r)


# ---------------------------------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------------------------------

_KL, _STAB, _SOSD = "fehlauer2025convergence", "diehlmartinez2024tending", "zhang2026sosd"

#: Every claim the book tests, in the scorecard's order.
CLAIMS: tuple[Claim, ...] = (
    Claim(
        "kl.four_phases",
        _KL,
        "cross-seed KL",
        "training shows four phases: uniform, sharp convergence, sharp divergence and slow reconvergence",
        "paper text",
        "abstract",
        "ch-kl-convergence",
        "judge_four_phases",
    ),
    Claim(
        "kl.reconvergence_by_size",
        _KL,
        "cross-seed KL",
        "larger models reconverge in the late phase, smaller ones never do",
        "paper text",
        "abstract",
        "ch-kl-convergence",
        "judge_reconvergence",
    ),
    Claim(
        "kl.downstream_reconvergence",
        _KL,
        "downstream",
        "the downstream (BLiMP) convergence repeats the pattern: larger models reconverge, smaller ones do not",
        "paper code",
        "blimp.py (the BLiMP figure)",
        "ch-kl-downstream",
        "judge_downstream_reconvergence",
    ),
    Claim(
        "kl.frequency",
        _KL,
        "cross-seed KL",
        "frequent tokens converge faster and more reliably",
        "paper text",
        "abstract",
        "ch-what-converges-first",
        "judge_frequency",
    ),
    Claim(
        "kl.function_words",
        _KL,
        "cross-seed KL",
        "function words converge faster and more reliably than content words",
        "paper text",
        "abstract",
        "ch-parts-of-speech",
        "judge_function_words",
    ),
    Claim(
        "kl.pos_order",
        _KL,
        "cross-seed KL",
        "the parts of speech converge in an order (legends sorted by the last step's value)",
        "paper code",
        "rev2rev_pos_plot.py",
        "ch-parts-of-speech",
        "judge_pos_order",
    ),
    Claim(
        "stab.early_20pct",
        _STAB,
        "activations",
        "nearly all layers in larger models stabilise early in training, within the first 20%",
        "paper text",
        "abstract",
        "ch-activations",
        "judge_early_stabilisation",
    ),
    Claim(
        "stab.smaller_slower",
        _STAB,
        "activations",
        "layers in smaller models converge more slowly and less stably",
        "paper text",
        "abstract",
        "ch-activations",
        "judge_smaller_slower",
    ),
    Claim(
        "stab.rank",
        _STAB,
        "effective rank",
        "especially when their parameters have lower effective rank",
        "paper text",
        "abstract",
        "ch-rank",
        "judge_rank_convergence",
    ),
    Claim(
        "stab.late_degradation",
        _STAB,
        "downstream",
        "smaller models tend to degrade in the late pretraining phase",
        "paper text",
        "abstract",
        "ch-suite-downstream",
        "judge_late_degradation",
    ),
    Claim(
        "sosd.before_weights",
        _SOSD,
        "spectra",
        "the singular distribution saturates long before the weights do",
        "secondary reading",
        "§§2–3 (reading note)",
        "ch-spectral",
        "judge_spectrum_before_weights",
    ),
    Claim(
        "sosd.falls_to_floor",
        _SOSD,
        "spectra",
        "ΔΣ falls from a transient peak (~1e-2) to a floor (~1e-4)",
        "secondary reading",
        "§§2–3 (reading note)",
        "ch-spectral",
        "judge_falls_to_floor",
    ),
    Claim(
        "sosd.at_loss_transition",
        _SOSD,
        "spectra",
        "the spectrum settles at the same point where the fast descent of the loss ends",
        "secondary reading",
        "§§2–3 (reading note)",
        "ch-spectral",
        "judge_sosd_at_loss",
    ),
    Claim(
        "sosd.mlp_below_attention",
        _SOSD,
        "spectra",
        "MLP matrices show lower ΔΣ than attention matrices",
        "secondary reading",
        "§§2–3 (reading note)",
        "ch-spectral",
        "judge_mlp_below_attention",
    ),
    Claim(
        "sosd.across_schedules",
        _SOSD,
        "spectra",
        "the two-phase pattern holds across learning-rate schedules, weight decays and optimizers",
        "paper text",
        "abstract",
        "ch-sweep",
        "judge_across_schedules",
    ),
    Claim(
        "sosd.norm_floor",
        _SOSD,
        "spectra",
        "growing weight norms inevitably precipitate an early SoSD threshold, ε ∝ η/‖W‖",
        "paper text",
        "abstract; the scale from the reading note",
        "ch-sweep",
        "judge_norm_floor",
    ),
)


def claim(cid: str) -> Claim:
    """The claim with id ``cid``."""
    for c in CLAIMS:
        if c.id == cid:
            return c
    raise LmconvError(f"unknown claim {cid!r}", f"claims are {[c.id for c in CLAIMS]}")


def judge(cid: str, *evidence: Any, **options: Any) -> Verdict:
    """Run the judge of claim ``cid`` on its evidence."""
    fn = globals()[claim(cid).judge]
    return fn(*evidence, **options)


__all__ = [
    "CLAIMS",
    "CONTRADICTED",
    "INCONCLUSIVE",
    "OUTCOMES",
    "REPRODUCED",
    "Claim",
    "Estimate",
    "Verdict",
    "by_interval",
    "claim",
    "compare_word",
    "directional",
    "estimate",
    "fmt",
    "judge",
    "judge_across_schedules",
    "judge_downstream_reconvergence",
    "judge_early_stabilisation",
    "judge_falls_to_floor",
    "judge_four_phases",
    "judge_frequency",
    "judge_function_words",
    "judge_late_degradation",
    "judge_mlp_below_attention",
    "judge_norm_floor",
    "judge_pos_order",
    "judge_rank_convergence",
    "judge_reconvergence",
    "judge_smaller_slower",
    "judge_sosd_at_loss",
    "judge_spectrum_before_weights",
    "missing",
    "trend_word",
]
