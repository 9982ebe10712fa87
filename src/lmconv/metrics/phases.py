"""Stated rules for events the three papers located by eye: KL phases, stabilisation, SoSD point, loss elbow.

Conventions shared by every detector here:

- ``steps`` are checkpoint steps: non-negative integers, strictly increasing, possibly unevenly spaced
  (e.g. 0, 1, 2, 3, 4, 6, 8, 11, 16, ..., 256, 384, 512, ..., 2000). Step 0 is allowed except where a
  rule takes ``log10(step)``; those rules say how they treat it.
- Points whose value is NaN or infinite are dropped (with their steps) before a rule is applied, and the
  results that can say so report how many were dropped.
- Every threshold is a keyword argument; the docstring of each function states its rule in words so the
  book can quote it.
- Results are small frozen dataclasses with ``.as_dict()`` (plain Python ints, floats, None and lists).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from ..errors import LmconvError, choose

ArrayLike = Sequence[float] | np.ndarray


class _AsDict:
    def as_dict(self) -> dict[str, Any]:
        """Fields as a plain dict (nested results become dicts, tuples become lists)."""
        return _plain(asdict(self))  # type: ignore[call-overload]


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    return x


# ---------------------------------------------------------------------------------------------------------
# input checks and smoothing
# ---------------------------------------------------------------------------------------------------------


def _clean(steps: ArrayLike, values: ArrayLike, what: str, min_points: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Check steps/values, drop non-finite values; return (int steps, float values, number dropped)."""
    s = np.asarray(steps)
    v = np.asarray(values, dtype=float)
    if s.ndim != 1 or v.ndim != 1:
        raise LmconvError(f"{what}: steps and values must be 1-D, got shapes {s.shape} and {v.shape}")
    if s.shape != v.shape:
        raise LmconvError(f"{what}: {s.size} steps but {v.size} values", "pass one value per checkpoint step")
    sf = s.astype(float)
    if not np.all(np.isfinite(sf)) or not np.all(sf == np.round(sf)):
        raise LmconvError(f"{what}: steps must be integers, got {s.tolist()[:8]}")
    s = s.astype(np.int64)
    if np.any(s < 0):
        raise LmconvError(f"{what}: steps must be non-negative, got {int(s.min())}")
    if np.any(np.diff(s) <= 0):
        raise LmconvError(f"{what}: steps must be strictly increasing", "sort by step and drop duplicate checkpoints")
    keep = np.isfinite(v)
    s, v = s[keep], v[keep]
    if s.size < min_points:
        raise LmconvError(
            f"{what}: {s.size} finite points, the rule needs at least {min_points}",
            "pass more checkpoints or check for NaN values",
        )
    return s, v, int((~keep).sum())


def moving_median(values: ArrayLike, window: int = 5) -> np.ndarray:
    """Centred moving median over ``window`` consecutive points (odd); windows shrink at both ends.

    NaNs are ignored inside a window (a window of only NaNs gives NaN). Same as pandas'
    ``Series.rolling(window, center=True, min_periods=1).median()``; near the ends a window holds h+1 … 2h
    points (h = window // 2), and an even count gives the mean of the middle two.
    """
    if window < 1 or window % 2 == 0:
        raise LmconvError(f"moving-median window must be a positive odd number of points, got {window}")
    v = np.asarray(values, dtype=float)
    h = window // 2
    out = np.empty_like(v)
    for i in range(v.size):
        w = v[max(0, i - h) : i + h + 1]
        out[i] = np.nan if np.all(np.isnan(w)) else np.nanmedian(w)
    return out


def smooth_log(steps: ArrayLike, values: ArrayLike, window: float = 0.25) -> np.ndarray:
    """Moving median in log-step: each point becomes the median of the points within ``window``/2 decades.

    Rule: for a point at step t > 0, take every point t' > 0 with ``|log10 t' − log10 t|`` ≤ window/2 and return
    their median (NaNs ignored). Step 0 has no log position and is returned unchanged. Use this for densely
    logged series (e.g. a value every step), where a fixed number of points spans very different log-widths.
    """
    s = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    if s.shape != v.shape or s.ndim != 1:
        raise LmconvError(f"smooth_log: steps and values must be 1-D of equal length, got {s.shape}, {v.shape}")
    if window <= 0:
        raise LmconvError(f"smooth_log: window must be positive (in decades of step), got {window}")
    out = v.copy()
    pos = s > 0
    x = np.log10(np.where(pos, s, 1.0))
    idx = np.flatnonzero(pos)
    for i in idx:
        w = v[idx[np.abs(x[idx] - x[i]) <= window / 2 + 1e-12]]
        out[i] = np.nan if np.all(np.isnan(w)) else np.nanmedian(w)
    return out


# ---------------------------------------------------------------------------------------------------------
# 1. the four phases of the cross-seed KL curve
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KLPhases(_AsDict):
    """Phases of one cross-seed KL curve (see :func:`kl_phases` for the rule). Steps are checkpoint steps."""

    rel_tol: float
    abs_tol: float
    first_step: int
    last_step: int
    uniform_end: int  # last step of (i)
    trough_step: int  # argmin of KL up to the peak (over all steps if there is no divergence)
    peak_step: int  # argmax of KL over all steps
    divergence_start: int | None  # start of (iii): trough_step if (ii) was seen, else uniform_end
    has_uniform: bool  # (i): at least two checkpoints inside the initial band
    has_convergence: bool  # (ii): min KL before the peak < KL0 − band
    has_divergence: bool  # (iii): max KL > KL0 + band
    has_reconvergence: bool  # (iv): final KL < peak·(1 − rel_tol) (and below it by more than abs_tol)
    kl0: float
    kl_trough: float
    kl_peak: float
    kl_final: float
    dip_depth: float | None  # 1 − kl_trough/kl0 (None if kl0 ≤ 0)
    peak_ratio: float | None  # kl_peak/kl0 (None if kl0 ≤ 0)
    rise: float | None  # kl_peak/KL(divergence_start) − 1, only when (iii) was seen
    fall: float | None  # 1 − kl_final/kl_peak (None if kl_peak ≤ 0)
    fall_abs: float  # kl_peak − kl_final
    n_points: int
    n_dropped: int

    def spans(self) -> dict[str, tuple[int, int] | None]:
        """(start, end) step of each phase that was observed, None for the others."""
        return {
            "uniform": (self.first_step, self.uniform_end) if self.has_uniform else None,
            "convergence": (self.uniform_end, self.trough_step) if self.has_convergence else None,
            "divergence": (self.divergence_start, self.peak_step)  # type: ignore[dict-item]
            if self.has_divergence
            else None,
            "reconvergence": (self.peak_step, self.last_step) if self.has_reconvergence else None,
        }

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "spans": _plain(self.spans())}


def kl_phases(steps: ArrayLike, kl: ArrayLike, *, rel_tol: float = 0.05, abs_tol: float = 0.0) -> KLPhases:
    """Four phases of the cross-seed KL curve (mean KL over seed pairs vs step; higher KL = less convergence).

    Rule (ours; the paper drew fixed lines at steps 16/256/2000 by eye). KL0 is the KL at the first step
    with a finite value and the band is KL0 ± h, with h = max(rel_tol·KL0, abs_tol).

    - (i) uniform ends at ``uniform_end``, the last step before KL first leaves the band (the last step if it
      never does); it is "observed" if at least two checkpoints lie in it.
    - The peak is the global argmax of KL (first one on ties). (iii) sharp divergence is observed iff the
      peak is above the band (KL_peak > KL0 + h).
    - The trough is the argmin of KL over steps up to the peak (over all steps when (iii) is not observed).
      (ii) sharp convergence is observed iff the trough is below the band (KL_min < KL0 − h); it runs from
      ``uniform_end`` to the trough, and its depth is 1 − KL_min/KL0.
    - (iii) runs from the trough (or from ``uniform_end`` when (ii) is not observed) to the peak.
    - (iv) slow reconvergence runs from the peak to the last step and is observed iff (iii) is and the final
      KL is below the peak by more than rel_tol of the peak (and by more than abs_tol); its size is
      fall = 1 − KL_final/KL_peak. A peak at the last step therefore never shows (iv).

    Non-finite KL values are dropped with their steps (``n_dropped``). Needs at least 3 finite points.
    """
    if not 0 <= rel_tol < 1 or abs_tol < 0:
        raise LmconvError(f"kl_phases: need 0 ≤ rel_tol < 1 and abs_tol ≥ 0, got {rel_tol}, {abs_tol}")
    s, y, n_drop = _clean(steps, kl, "kl_phases", min_points=3)
    kl0 = float(y[0])
    h = max(rel_tol * abs(kl0), abs_tol)
    lo, hi = kl0 - h, kl0 + h
    outside = np.flatnonzero((y < lo) | (y > hi))
    i_end = int(outside[0]) - 1 if outside.size else s.size - 1
    i_peak = int(np.argmax(y))
    has_div = bool(y[i_peak] > hi)
    i_min = int(np.argmin(y[: i_peak + 1])) if has_div else int(np.argmin(y))
    has_conv = bool(y[i_min] < lo)
    i_start = i_min if has_conv else i_end
    kl_peak, kl_final = float(y[i_peak]), float(y[-1])
    fall = 1.0 - kl_final / kl_peak if kl_peak > 0 else None
    has_re = has_div and kl_final < kl_peak * (1.0 - rel_tol) and kl_peak - kl_final > abs_tol
    rise = None
    if has_div and y[i_start] > 0:
        rise = kl_peak / float(y[i_start]) - 1.0
    return KLPhases(
        rel_tol=float(rel_tol),
        abs_tol=float(abs_tol),
        first_step=int(s[0]),
        last_step=int(s[-1]),
        uniform_end=int(s[i_end]),
        trough_step=int(s[i_min]),
        peak_step=int(s[i_peak]),
        divergence_start=int(s[i_start]) if has_div else None,
        has_uniform=i_end > 0,
        has_convergence=has_conv,
        has_divergence=has_div,
        has_reconvergence=bool(has_re),
        kl0=kl0,
        kl_trough=float(y[i_min]),
        kl_peak=kl_peak,
        kl_final=kl_final,
        dip_depth=1.0 - float(y[i_min]) / kl0 if kl0 > 0 else None,
        peak_ratio=kl_peak / kl0 if kl0 > 0 else None,
        rise=rise,
        fall=fall,
        fall_abs=kl_peak - kl_final,
        n_points=int(s.size),
        n_dropped=n_drop,
    )


@dataclass(frozen=True)
class Spread(_AsDict):
    """Median and min–max of one quantity over seed pairs (``n`` pairs contributed)."""

    median: float
    lo: float
    hi: float
    n: int


def _spread(values: list[float | int | None]) -> Spread | None:
    v = np.array([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return None
    return Spread(median=float(np.median(v)), lo=float(v.min()), hi=float(v.max()), n=int(v.size))


@dataclass(frozen=True)
class KLPhaseSpread(_AsDict):
    """:func:`kl_phases` on the mean curve and on each seed pair, with the spread of boundaries over pairs."""

    mean_curve: KLPhases  # the rule applied to the nan-mean over pairs
    pairs: tuple[KLPhases, ...]
    n_pairs: int
    n_uniform: int  # pairs in which each phase was observed
    n_convergence: int
    n_divergence: int
    n_reconvergence: int
    uniform_end: Spread | None  # over all pairs
    trough_step: Spread | None  # over pairs that show (ii)
    peak_step: Spread | None  # over pairs that show (iii)
    dip_depth: Spread | None  # over pairs that show (ii)
    fall: Spread | None  # over pairs that show (iv)

    def as_dict(self) -> dict[str, Any]:
        d = super().as_dict()
        return {**d, "mean_curve": self.mean_curve.as_dict(), "pairs": [p.as_dict() for p in self.pairs]}


def kl_phases_by_pair(
    steps: ArrayLike, kl_pairs: ArrayLike, *, rel_tol: float = 0.05, abs_tol: float = 0.0
) -> KLPhaseSpread:
    """Apply the :func:`kl_phases` rule to each seed pair's curve and to their mean, and summarise over pairs.

    ``kl_pairs`` has shape (n_pairs, n_steps); the mean curve is the NaN-ignoring mean over pairs per step.
    Each boundary is summarised (median, min, max) over the pairs in which its phase was observed:
    ``uniform_end`` over all pairs, ``trough_step`` and ``dip_depth`` over pairs with (ii), ``peak_step`` over
    pairs with (iii), ``fall`` over pairs with (iv). Medians of an even number of steps may fall between
    checkpoints.
    """
    a = np.asarray(kl_pairs, dtype=float)
    if a.ndim != 2:
        raise LmconvError(f"kl_phases_by_pair: kl_pairs must be 2-D (n_pairs, n_steps), got shape {a.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, then get dropped
        mean = np.nanmean(a, axis=0)
    kw = {"rel_tol": rel_tol, "abs_tol": abs_tol}
    pairs = tuple(kl_phases(steps, row, **kw) for row in a)
    return KLPhaseSpread(
        mean_curve=kl_phases(steps, mean, **kw),
        pairs=pairs,
        n_pairs=len(pairs),
        n_uniform=sum(p.has_uniform for p in pairs),
        n_convergence=sum(p.has_convergence for p in pairs),
        n_divergence=sum(p.has_divergence for p in pairs),
        n_reconvergence=sum(p.has_reconvergence for p in pairs),
        uniform_end=_spread([p.uniform_end for p in pairs]),
        trough_step=_spread([p.trough_step for p in pairs if p.has_convergence]),
        peak_step=_spread([p.peak_step for p in pairs if p.has_divergence]),
        dip_depth=_spread([p.dip_depth for p in pairs if p.has_convergence]),
        fall=_spread([p.fall for p in pairs if p.has_reconvergence]),
    )


# ---------------------------------------------------------------------------------------------------------
# 2. stabilisation (e.g. CKA against the final checkpoint)
# ---------------------------------------------------------------------------------------------------------


def stabilisation_step(
    steps: ArrayLike,
    values: ArrayLike,
    *,
    threshold: float = 0.9,
    mode: Literal["above", "below", "settled"] = "above",
    eps: float = 0.01,
    min_run: int = 2,
) -> int | None:
    """First checkpoint step from which the values stay in a target set through the last step; None if never.

    Rule: return the earliest checkpoint step s such that every checkpoint t ≥ s satisfies the condition,
    where the condition is value ≥ ``threshold`` (mode "above"), value ≤ ``threshold`` (mode "below"), or
    ``|value − final value|`` ≤ ``eps`` (mode "settled"; ``threshold`` is not used). A tail of fewer than
    ``min_run`` checkpoints counts as never (None): one last point cannot show that values *stay* there, and a
    metric measured against the final checkpoint (CKA with step T) is trivially 1 at T.
    Non-finite values are dropped with their steps first.
    """
    choose("stabilisation mode", mode, ("above", "below", "settled"))
    if min_run < 1:
        raise LmconvError(f"stabilisation_step: min_run must be ≥ 1, got {min_run}")
    s, v, _ = _clean(steps, values, "stabilisation_step", min_points=1)
    if mode == "above":
        ok = v >= threshold
    elif mode == "below":
        ok = v <= threshold
    else:
        if eps < 0:
            raise LmconvError(f"stabilisation_step: eps must be ≥ 0, got {eps}")
        ok = np.abs(v - v[-1]) <= eps
    bad = np.flatnonzero(~ok)
    first = int(bad[-1]) + 1 if bad.size else 0
    if s.size - first < min_run:
        return None
    return int(s[first])


def fraction_of_training(step: int | None, total_steps: int) -> float | None:
    """``step / total_steps`` (None passes through), e.g. to compare with "the first 20% of training"."""
    if total_steps <= 0:
        raise LmconvError(f"fraction_of_training: total_steps must be positive, got {total_steps}")
    return None if step is None else float(step) / float(total_steps)


# ---------------------------------------------------------------------------------------------------------
# 3. SoSD point
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoSDPoint(_AsDict):
    """The SoSD point of one ΔΣ series (see :func:`sosd_point`)."""

    point: int | None  # first step after which smoothed ΔΣ stays ≤ tau; None if never
    tau: float
    tau_rule: str  # "geometric mean of peak and floor" or "given"
    peak: float  # max of the smoothed curve
    peak_step: int
    floor: float  # median of raw ΔΣ over the late part
    floor_from: int  # first step counted in the floor
    peak_over_floor: float | None
    window: int
    n_points: int
    n_dropped: int


def sosd_point(
    steps: ArrayLike,
    delta_sigma: ArrayLike,
    *,
    tau: float | None = None,
    window: int = 5,
    floor_frac: float = 0.5,
    min_run: int = 2,
) -> SoSDPoint:
    """SoSD point: the first step after which the smoothed ΔΣ stays ≤ τ through the last step.

    Indexing: ΔΣ between two consecutive records t < t' is given at the *later* step t', as
    :func:`lmconv.metrics.spectrum.spectra_deltas` returns it, so ``steps`` runs from the second record to
    the last one, and the point is the step t' at which the first change of the stable tail ends. (The
    paper's ΔΣ_t = ‖Σ̂_{t+1} − Σ̂_t‖ is indexed by the earlier step; with per-step records the two differ
    by one step.) The rule itself reads only the steps it is given.

    Rule: smooth ΔΣ with a centred moving median over ``window`` consecutive points (windows shrink at the
    ends). The floor is the median of the raw ΔΣ over the last ``floor_frac`` of the step range (steps
    ≥ t_last − floor_frac·(t_last − t_first)); the peak is the maximum of the smoothed curve. Unless ``tau``
    is given, τ = sqrt(peak·floor). The point is :func:`stabilisation_step` with mode "below", threshold τ and
    ``min_run`` applied to the smoothed curve. Non-finite values are dropped with their steps first.
    """
    if not 0 < floor_frac <= 1:
        raise LmconvError(f"sosd_point: floor_frac must be in (0, 1], got {floor_frac}")
    s, v, n_drop = _clean(steps, delta_sigma, "sosd_point", min_points=2)
    sm = moving_median(v, window)
    i_peak = int(np.argmax(sm))
    peak = float(sm[i_peak])
    start = s[-1] - floor_frac * (s[-1] - s[0])
    late = s >= start
    floor = float(np.median(v[late]))
    if tau is None:
        tau_val = math.sqrt(peak * floor) if peak * floor > 0 else 0.0
        rule = "geometric mean of peak and floor"
    else:
        tau_val, rule = float(tau), "given"
    point = stabilisation_step(s, sm, threshold=tau_val, mode="below", min_run=min_run)
    return SoSDPoint(
        point=point,
        tau=tau_val,
        tau_rule=rule,
        peak=peak,
        peak_step=int(s[i_peak]),
        floor=floor,
        floor_from=int(s[late][0]),
        peak_over_floor=peak / floor if floor > 0 else None,
        window=int(window),
        n_points=int(s.size),
        n_dropped=n_drop,
    )


# ---------------------------------------------------------------------------------------------------------
# 4. loss elbow and 5. synchronisation
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Elbow(_AsDict):
    """Continuous two-segment (hinge) fit of loss against log10 step (see :func:`loss_elbow`)."""

    step: float  # 10**log10_step, the breakpoint; not necessarily a checkpoint
    log10_step: float
    nearest_step: int  # the fitted checkpoint nearest to the breakpoint in log10 step
    slope_before: float  # dL/dlog10(step) left of the breakpoint
    slope_after: float
    intercept: float  # a in y = a + b·x + c·max(0, x − x0)
    rss: float  # residual sum of squares of the hinge fit
    rmse: float
    rss_single_line: float  # residual sum of squares of one straight line, for comparison
    fit_from: int  # first step in the fit
    n_points: int
    n_dropped: int


def _hinge_rss(x: np.ndarray, y: np.ndarray, x0: float) -> tuple[float, np.ndarray]:
    X = np.column_stack([np.ones_like(x), x, np.maximum(0.0, x - x0)])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    r = y - X @ coef
    return float(r @ r), coef


def _descent_rate(s: np.ndarray, y: np.ndarray, window: int) -> np.ndarray:
    """Smoothed −dL/dlog10(step) at each checkpoint (steps > 0): numpy.gradient, then a moving median."""
    return moving_median(-np.gradient(y, np.log10(s.astype(float))), window)


def loss_elbow(
    steps: ArrayLike,
    loss: ArrayLike,
    *,
    min_step: int = 1,
    max_step: int | None = None,
    from_steepest: bool = False,
    window: int = 3,
    n_grid: int = 200,
) -> Elbow:
    """Loss elbow: the breakpoint of a continuous two-segment linear fit of loss against log10(step).

    Rule: on the points with ``min_step`` ≤ step ≤ ``max_step`` (step > 0 always, since log10 0 is undefined),
    with x = log10(step), fit y = a + b·x + c·max(0, x − x0) by least squares for each x0 on a grid of
    ``n_grid`` points from the 2nd to the 2nd-to-last x (so each segment holds at least two points), keep the
    x0 with the smallest residual sum of squares, then refine it on a second grid of ``n_grid`` points over
    the neighbouring grid cells. The elbow is 10**x0; slopes are b before and b + c after.
    Non-finite losses are dropped with their steps first; at least 4 points are needed.

    With ``from_steepest``, the fit starts instead at the checkpoint of fastest descent (the maximum of the
    smoothed rate −dL/dlog10(step) of :func:`loss_elbow_derivative`, ``window`` points), so the elbow is the
    end of fast descent. Without it, a curve with an early plateau, a steep descent and a slow tail has two
    bends and the two-segment fit may pick either (on tiny models, usually the onset of descent).
    """
    if min_step < 1:
        raise LmconvError(f"loss_elbow: min_step must be ≥ 1 (log10 of step 0 is undefined), got {min_step}")
    if n_grid < 3:
        raise LmconvError(f"loss_elbow: n_grid must be ≥ 3, got {n_grid}")
    s0, y0, n_drop = _clean(steps, loss, "loss_elbow", min_points=1)
    keep = (s0 >= min_step) & (s0 <= (max_step if max_step is not None else s0[-1]))
    s, y = s0[keep], y0[keep]
    if from_steepest and s.size >= 3:
        i = int(np.argmax(_descent_rate(s, y, window)))
        s, y = s[i:], y[i:]
    if s.size < 4:
        raise LmconvError(
            f"loss_elbow: {s.size} usable points (finite, in [{min_step}, {max_step}], from the steepest "
            f"point if asked), need at least 4"
        )
    x = np.log10(s.astype(float))
    grid = np.linspace(x[1], x[-2], n_grid)
    rss = np.array([_hinge_rss(x, y, g)[0] for g in grid])
    k = int(np.argmin(rss))
    fine = np.linspace(grid[max(k - 1, 0)], grid[min(k + 1, n_grid - 1)], n_grid)
    rss_f = np.array([_hinge_rss(x, y, g)[0] for g in fine])
    x0 = float(fine[int(np.argmin(rss_f))])
    best, (a, b, c) = _hinge_rss(x, y, x0)
    line = np.polyfit(x, y, 1)
    r_line = y - np.polyval(line, x)
    return Elbow(
        step=float(10**x0),
        log10_step=x0,
        nearest_step=int(s[int(np.argmin(np.abs(x - x0)))]),
        fit_from=int(s[0]),
        slope_before=float(b),
        slope_after=float(b + c),
        intercept=float(a),
        rss=best,
        rmse=math.sqrt(best / s.size),
        rss_single_line=float(r_line @ r_line),
        n_points=int(s.size),
        n_dropped=n_drop,
    )


@dataclass(frozen=True)
class DerivativeElbow(_AsDict):
    """End of fast descent from the loss's log-step derivative (see :func:`loss_elbow_derivative`)."""

    step: int | None  # None if the rate never falls below frac·max after the max
    max_rate: float  # max of the smoothed −dL/dlog10(step)
    max_rate_step: int
    frac: float
    window: int
    n_points: int
    n_dropped: int


def loss_elbow_derivative(steps: ArrayLike, loss: ArrayLike, frac: float = 0.1, *, window: int = 3) -> DerivativeElbow:
    """Loss elbow from the descent rate: first step after the fastest descent where the rate falls below frac.

    Rule: on the points with step > 0, with x = log10(step), compute the rate r = −dL/dx at every checkpoint
    (``numpy.gradient`` on the uneven x: second-order central differences inside, one-sided at the ends),
    smooth it with a centred moving median over ``window`` points, find its maximum r_max, and return the
    first checkpoint step after the maximum with smoothed r < frac·r_max; None if there is none.
    Non-finite losses are dropped with their steps first; at least 3 points are needed.
    """
    if not 0 < frac < 1:
        raise LmconvError(f"loss_elbow_derivative: frac must be in (0, 1), got {frac}")
    s0, y0, n_drop = _clean(steps, loss, "loss_elbow_derivative", min_points=1)
    s, y = s0[s0 > 0], y0[s0 > 0]
    if s.size < 3:
        raise LmconvError(f"loss_elbow_derivative: {s.size} finite points with step > 0, need at least 3")
    rate = _descent_rate(s, y, window)
    r_max = float(np.max(rate))
    # the first step at the maximum up to rounding: on a straight stretch of the curve the rates tie, and
    # float noise (which differs between BLAS builds) must not pick the step
    i_max = int(np.flatnonzero(rate >= r_max - 1e-9 * max(abs(r_max), 1.0))[0])
    below = np.flatnonzero(rate[i_max + 1 :] < frac * r_max)
    return DerivativeElbow(
        step=int(s[i_max + 1 + int(below[0])]) if below.size else None,
        max_rate=r_max,
        max_rate_step=int(s[i_max]),
        frac=float(frac),
        window=int(window),
        n_points=int(s.size),
        n_dropped=n_drop,
    )


def synchronisation(t_a: float | None, t_b: float | None) -> float:
    """δ = log10(t_a) − log10(t_b), e.g. t_a = SoSD point, t_b = loss elbow (``|δ|`` small ⇒ synchronised).

    Positive δ means t_a comes later. Returns NaN if either step is None (the event was not found).
    """
    if t_a is None or t_b is None:
        return math.nan
    if t_a <= 0 or t_b <= 0:
        raise LmconvError(f"synchronisation: steps must be positive, got {t_a} and {t_b}")
    return math.log10(t_a) - math.log10(t_b)


__all__ = [
    "DerivativeElbow",
    "Elbow",
    "KLPhaseSpread",
    "KLPhases",
    "SoSDPoint",
    "Spread",
    "fraction_of_training",
    "kl_phases",
    "kl_phases_by_pair",
    "loss_elbow",
    "loss_elbow_derivative",
    "moving_median",
    "smooth_log",
    "sosd_point",
    "stabilisation_step",
    "synchronisation",
]
