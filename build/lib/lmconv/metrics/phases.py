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
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

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
    if v.size == 0:
        return v.copy()
    h = window // 2
    padded = np.concatenate([np.full(h, np.nan), v, np.full(h, np.nan)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, window)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN window gives NaN
        return np.nanmedian(windows, axis=1)


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
    idx = np.flatnonzero(s > 0)
    if idx.size == 0:
        return out
    x = np.log10(s[idx])
    inside = np.abs(x[:, None] - x[None, :]) <= window / 2 + 1e-12  # (point, neighbour)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a window of only NaNs gives NaN
        out[idx] = np.nanmedian(np.where(inside, v[idx][None, :], np.nan), axis=1)
    return out


def local_noise(x: ArrayLike, y: ArrayLike, max_span: float | None = None) -> float:
    """Robust noise of a curve sampled at (possibly uneven) x: scatter of each point around its neighbours' line.

    Rule: for each inner point i, r_i = y_i − (w·y_{i−1} + (1 − w)·y_{i+1}) with w = (x_{i+1} − x_i)/(x_{i+1} −
    x_{i−1}) (the straight line through its two neighbours), divided by sqrt(1 + w² + (1 − w)²) so that for
    independent noise of standard deviation σ it has standard deviation σ; the noise is 1.4826·MAD of the r_i
    (median absolute deviation from their median). A linear trend gives 0; a few bends barely move the MAD.
    With ``max_span``, only triples with x_{i+1} − x_{i−1} ≤ ``max_span`` count (on a sparse grid the curve's
    own curvature between far-apart neighbours would pass for noise). NaNs are ignored; fewer than 3 usable
    triples give 0.
    """
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    if xa.size < 3:
        return 0.0
    span = xa[2:] - xa[:-2]
    w = (xa[2:] - xa[1:-1]) / span
    r = (ya[1:-1] - (w * ya[:-2] + (1 - w) * ya[2:])) / np.sqrt(1 + w**2 + (1 - w) ** 2)
    if max_span is not None:
        r = r[span <= max_span + 1e-12]
    return _mad(r) if r.size >= 3 else 0.0


def _mad(r: np.ndarray) -> float:
    """1.4826 × median absolute deviation from the median (σ for Gaussian noise); 0 for no values."""
    r = r[np.isfinite(r)]
    return float(1.4826 * np.median(np.abs(r - np.median(r)))) if r.size else 0.0


def describe(found: bool, reason: str) -> str:
    """One plain phrase for a detector's answer: "found: <reason>" or "not seen: <reason>"."""
    return f"{'found' if found else 'not seen'}: {reason}"


# ---------------------------------------------------------------------------------------------------------
# 1. the four phases of the cross-seed KL curve
# ---------------------------------------------------------------------------------------------------------

PHASE_KEYS = ("uniform", "convergence", "divergence", "reconvergence")


@dataclass(frozen=True)
class KLPhases(_AsDict):
    """Phases of one cross-seed KL curve (see :func:`kl_phases` for the rule). Steps are checkpoint steps.

    ``kl0`` is the raw KL at the first finite step; ``kl_trough``, ``kl_peak`` and ``kl_final`` are values of
    the log-step-smoothed curve, and so are the ratios built from them.
    """

    rel_tol: float
    abs_tol: float
    first_step: int
    last_step: int
    uniform_end: int  # last step of (i)
    trough_step: int  # start of the largest rise when (iii) is seen, else the argmin of smoothed KL
    peak_step: int  # end of the largest rise when (iii) is seen, else the argmax of smoothed KL
    divergence_start: int | None  # start of (iii): trough_step if (ii) was seen, else uniform_end
    has_uniform: bool  # (i): at least two checkpoints inside the initial band
    has_convergence: bool  # (ii): smoothed trough < KL0 − band
    has_divergence: bool  # (iii): largest rise of the smoothed curve > band (and > rel_tol of its start)
    has_reconvergence: bool  # (iv): smoothed final below the peak by > band and > rel_tol·peak
    kl0: float  # raw
    kl_trough: float  # smoothed
    kl_peak: float  # smoothed
    kl_final: float  # smoothed
    dip_depth: float | None  # 1 − kl_trough/kl0 (None if kl0 ≤ 0)
    peak_ratio: float | None  # kl_peak/kl0 (None if kl0 ≤ 0)
    rise: float | None  # kl_peak/KL(divergence_start) − 1 (smoothed), only when (iii) was seen
    fall: float | None  # 1 − kl_final/kl_peak (None if kl_peak ≤ 0)
    fall_abs: float  # kl_peak − kl_final
    n_points: int
    n_dropped: int
    smooth: float = 0.3  # smoothing window, decades of step (0: none)
    z: float = 5.0
    noise: float = 0.0  # relative noise: local_noise of ln KL (a fraction of the level)
    band: float = 0.0  # h = max(rel_tol·KL0, z·noise, abs_tol)
    max_rise: float = 0.0  # largest rise of the smoothed curve from a point to a later one
    absent: dict[str, str] = field(default_factory=dict)  # phase key → why it was not observed

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

    def observed(self) -> tuple[str, ...]:
        """Keys of the phases observed, in order."""
        flags = (self.has_uniform, self.has_convergence, self.has_divergence, self.has_reconvergence)
        return tuple(k for k, f in zip(PHASE_KEYS, flags, strict=True) if f)

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "spans": _plain(self.spans())}


def kl_phases(
    steps: ArrayLike,
    kl: ArrayLike,
    *,
    rel_tol: float = 0.05,
    abs_tol: float = 0.0,
    smooth: float = 0.3,
    z: float = 5.0,
    noise_span: float = 0.35,
) -> KLPhases:
    """Four phases of the cross-seed KL curve (mean KL over seed pairs vs step; higher KL = less convergence).

    Rule (ours; the paper drew fixed lines at steps 16/256/2000 by eye). KL0 is the raw KL at the first step
    with a finite value. Every other point is replaced by the moving median over ``smooth`` decades of step
    (:func:`smooth_log`; the first point and step 0 stay raw; ``smooth`` 0 turns smoothing off), and all the
    phases are located on this smoothed curve. The curve's noise σ is relative (KL's scatter grows with its
    level): :func:`local_noise` of ln KL against log10(step) (points with step > 0 and KL > 0), from the triples
    of consecutive checkpoints that span at most ``noise_span`` decades (σ = 0 when fewer than 3 do, e.g. on a
    grid of powers of two, where the bends of the curve itself would pass for noise). A change at level L counts
    only if it exceeds h(L) = max(rel_tol·KL0, z·σ·L, abs_tol): the relative tolerance and z times the curve's
    own noise at that level. The band is KL0 ± h with h = h(KL0) (field ``band``).

    - (i) uniform ends at ``uniform_end``, the last step before the smoothed KL first leaves the band (the last
      step if it never does); it is observed if at least two checkpoints lie in it.
    - (iii) sharp divergence is judged against the trough, not against KL0: the largest rise of the smoothed
      curve from a point to any later point (its maximum draw-up) runs from a trough to a peak (first ones on
      ties); (iii) is observed iff that rise exceeds h(KL at its end) and rel_tol of the KL it
      starts from. (It compares two extremes of the curve, hence the default z = 5.)
      Without (iii), the peak is the argmax and the trough the argmin of the smoothed curve. ``trough_step``
      and ``peak_step`` are then the raw minimum and maximum among the checkpoints within ``smooth``/2 decades
      of them (smoothing shaves a sharp corner into a tie of neighbours; this puts the step back on it); the
      values ``kl_trough`` and ``kl_peak`` stay those of the smoothed curve at those steps.
    - (ii) sharp convergence is observed iff the smoothed trough is below the band (KL_trough < KL0 − h); it runs
      from ``uniform_end`` to the trough, and its depth is 1 − KL_trough/KL0.
    - (iii) runs from the trough when (ii) is observed, else from ``uniform_end`` (from the trough when the
      curve only leaves the band after the peak).
    - (iv) slow reconvergence runs from the peak to the last step and is observed iff (iii) is and the smoothed
      final KL is below the smoothed peak by more than h(KL_peak) and by more than rel_tol of the peak; its size is
      fall = 1 − KL_final/KL_peak. A peak at the last step therefore never shows (iv).

    ``absent`` gives, for each phase not observed, the reason with the numbers. Non-finite KL values are
    dropped with their steps (``n_dropped``). Needs at least 3 finite points.
    """
    if not 0 <= rel_tol < 1 or abs_tol < 0:
        raise LmconvError(f"kl_phases: need 0 ≤ rel_tol < 1 and abs_tol ≥ 0, got {rel_tol}, {abs_tol}")
    if smooth < 0 or z < 0 or noise_span <= 0:
        raise LmconvError(f"kl_phases: need smooth ≥ 0, z ≥ 0, noise_span > 0; got {smooth}, {z}, {noise_span}")
    s, y, n_drop = _clean(steps, kl, "kl_phases", min_points=3)
    kl0 = float(y[0])
    ys = smooth_log(s, y, smooth) if smooth > 0 else y.copy()
    ys[0] = kl0
    # relative noise: scatter of log KL (KL's noise grows with its level); zeros carry no log and are skipped
    pos = (s > 0) & (y > 0)
    noise = local_noise(np.log10(s[pos].astype(float)), np.log(y[pos]), max_span=noise_span)

    def band_at(level: float) -> float:
        return max(rel_tol * abs(kl0), z * noise * abs(level), abs_tol)

    h = band_at(kl0)
    lo, hi = kl0 - h, kl0 + h
    outside = np.flatnonzero((ys < lo) | (ys > hi))
    i_end = int(outside[0]) - 1 if outside.size else s.size - 1
    # largest rise from a point to a later one (max draw-up) of the smoothed curve
    gain = ys - np.minimum.accumulate(ys)
    j = int(np.argmax(gain))
    i = int(np.argmin(ys[: j + 1]))
    max_rise = float(gain[j])
    h_rise = band_at(float(ys[j]))
    has_div = bool(max_rise > h_rise and max_rise > rel_tol * abs(float(ys[i])))
    i_peak, i_min = (j, i) if has_div else (int(np.argmax(ys)), int(np.argmin(ys)))
    # report the raw extreme within the smoothing window of each (smoothing shaves a sharp corner into a tie)
    if smooth > 0:
        lx = np.log10(np.maximum(s, 1).astype(float))

        def near(k: int, lo_k: int, hi_k: int) -> np.ndarray:
            idx = np.arange(lo_k, hi_k + 1)
            return idx[(np.abs(lx[idx] - lx[k]) <= smooth / 2 + 1e-12) & ((s[idx] > 0) | (idx == k))]

        if has_div:
            w_pk = near(i_peak, i_min, s.size - 1)
            i_peak = int(w_pk[np.argmax(y[w_pk])])
            w_tr = near(i_min, 0, i_peak)
            i_min = int(w_tr[np.argmin(y[w_tr])])
        else:
            w_pk, w_tr = near(i_peak, 0, s.size - 1), near(i_min, 0, s.size - 1)
            i_peak, i_min = int(w_pk[np.argmax(y[w_pk])]), int(w_tr[np.argmin(y[w_tr])])
    has_conv = bool(ys[i_min] < lo)
    i_start = i_min if has_conv else i_end if i_end < i_peak else i_min
    kl_trough, kl_peak, kl_final = float(ys[i_min]), float(ys[i_peak]), float(ys[-1])
    fall = 1.0 - kl_final / kl_peak if kl_peak > 0 else None
    drop = kl_peak - kl_final
    h_peak = band_at(kl_peak)
    has_re = bool(has_div and drop > h_peak and drop > rel_tol * abs(kl_peak))
    rise = kl_peak / float(ys[i_start]) - 1.0 if has_div and ys[i_start] > 0 else None

    def band_text(hh: float, level: float) -> str:
        return f"h = {hh:.3g} (max of {rel_tol:g}·KL0, {z:g}·noise {noise:.3g}·level {level:.3g}, abs_tol {abs_tol:g})"

    absent: dict[str, str] = {}
    if i_end <= 0:
        absent["uniform"] = (
            f"KL leaves the band KL0 ± h at step {int(s[1])}, the first checkpoint after KL0; {band_text(h, kl0)}"
        )
    if not has_conv:
        absent["convergence"] = (
            f"the smoothed trough {kl_trough:.3g} (step {int(s[i_min])}) is not below KL0 − h = {lo:.3g}; "
            f"{band_text(h, kl0)}"
        )
    if not has_div:
        absent["divergence"] = (
            f"the largest rise of the smoothed KL is {max_rise:.3g} (step {int(s[i])} to {int(s[j])}), not above "
            f"both {band_text(h_rise, float(ys[j]))} and {rel_tol:g} of its start"
        )
        absent["reconvergence"] = "no divergence (iii) to reconverge from"
    elif not has_re:
        absent["reconvergence"] = (
            f"the smoothed final KL {kl_final:.3g} is {drop:.3g} below the peak {kl_peak:.3g} (step "
            f"{int(s[i_peak])}), not more than both {band_text(h_peak, kl_peak)} and {rel_tol:g}·peak"
        )
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
        has_reconvergence=has_re,
        kl0=kl0,
        kl_trough=kl_trough,
        kl_peak=kl_peak,
        kl_final=kl_final,
        dip_depth=1.0 - kl_trough / kl0 if kl0 > 0 else None,
        peak_ratio=kl_peak / kl0 if kl0 > 0 else None,
        rise=rise,
        fall=fall,
        fall_abs=drop,
        n_points=int(s.size),
        n_dropped=n_drop,
        smooth=float(smooth),
        z=float(z),
        noise=noise,
        band=float(h),
        max_rise=max_rise,
        absent=absent,
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


def _pair_matrix(kl_pairs: ArrayLike, what: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(kl_pairs, dtype=float)
    if a.ndim != 2:
        raise LmconvError(f"{what}: kl_pairs must be 2-D (n_pairs, n_steps), got shape {a.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, then get dropped
        mean = np.nanmean(a, axis=0)
    return a, mean


def kl_phases_by_pair(
    steps: ArrayLike,
    kl_pairs: ArrayLike,
    *,
    rel_tol: float = 0.05,
    abs_tol: float = 0.0,
    smooth: float = 0.3,
    z: float = 5.0,
    noise_span: float = 0.35,
) -> KLPhaseSpread:
    """Apply the :func:`kl_phases` rule to each seed pair's curve and to their mean, and summarise over pairs.

    ``kl_pairs`` has shape (n_pairs, n_steps); the mean curve is the NaN-ignoring mean over pairs per step.
    Each boundary is summarised (median, min, max) over the pairs in which its phase was observed:
    ``uniform_end`` over all pairs, ``trough_step`` and ``dip_depth`` over pairs with (ii), ``peak_step`` over
    pairs with (iii), ``fall`` over pairs with (iv). Medians of an even number of steps may fall between
    checkpoints. Each pair's noise (and so its band) is estimated from its own curve.
    """
    a, mean = _pair_matrix(kl_pairs, "kl_phases_by_pair")
    kw = {"rel_tol": rel_tol, "abs_tol": abs_tol, "smooth": smooth, "z": z, "noise_span": noise_span}
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


def kl_phase_sensitivity(
    steps: ArrayLike,
    kl_pairs: ArrayLike,
    rel_tols: Sequence[float] = (0.02, 0.05, 0.1),
    smooths: Sequence[float] = (0.2, 0.3, 0.5),
    zs: Sequence[float] = (2.0, 3.0, 4.0),
    *,
    abs_tol: float = 0.0,
) -> pd.DataFrame:
    """:func:`kl_phases_by_pair` under every combination of ``rel_tols`` × ``smooths`` × ``zs``, one row each.

    Columns: the setting (``rel_tol``, ``smooth``, ``z``), the band h of the mean curve, ``phases`` (the phases
    the mean curve shows, e.g. "i ii iii iv", or "none"), one bool per phase for the mean curve (``(i)`` …
    ``(iv)``), ``pairs (i)`` … ``pairs (iv)`` (how many of ``n_pairs`` pairs show each), and the mean curve's
    ``trough_step`` (None unless (ii) is seen) and ``peak_step`` (None unless (iii) is seen).
    """
    _pair_matrix(kl_pairs, "kl_phase_sensitivity")
    numerals = dict(zip(PHASE_KEYS, ("i", "ii", "iii", "iv"), strict=True))
    rows = []
    for rel_tol in rel_tols:
        for smooth in smooths:
            for z in zs:
                r = kl_phases_by_pair(steps, kl_pairs, rel_tol=rel_tol, abs_tol=abs_tol, smooth=smooth, z=z)
                m = r.mean_curve
                seen = m.observed()
                counts = (r.n_uniform, r.n_convergence, r.n_divergence, r.n_reconvergence)
                rows.append(
                    {
                        "rel_tol": float(rel_tol),
                        "smooth": float(smooth),
                        "z": float(z),
                        "band": m.band,
                        "phases": " ".join(numerals[k] for k in seen) or "none",
                        **{f"({numerals[k]})": k in seen for k in PHASE_KEYS},
                        **{f"pairs ({numerals[k]})": c for k, c in zip(PHASE_KEYS, counts, strict=True)},
                        "n_pairs": r.n_pairs,
                        "trough_step": m.trough_step if m.has_convergence else None,
                        "peak_step": m.peak_step if m.has_divergence else None,
                    }
                )
    return pd.DataFrame(rows)


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


def stabilisation_event(
    steps: ArrayLike,
    values: ArrayLike,
    *,
    threshold: float = 0.9,
    mode: Literal["above", "below", "settled"] = "above",
    eps: float = 0.01,
    min_run: int = 2,
) -> tuple[int | None, str]:
    """:func:`stabilisation_step` with its reason in words: ``(step, reason)``, step None when absent.

    Absent has three reasons: the values never meet the condition; they meet it only at the last checkpoint(s),
    fewer than ``min_run`` (a tail too short to show that they stay); or they leave it again, the last time at a
    step after which fewer than ``min_run`` checkpoints remain."""
    step = stabilisation_step(steps, values, threshold=threshold, mode=mode, eps=eps, min_run=min_run)
    s, v, _ = _clean(steps, values, "stabilisation_event", min_points=1)
    cond = {"above": f"≥ {threshold:g}", "below": f"≤ {threshold:g}", "settled": f"within {eps:g} of the final value"}
    if mode == "above":
        ok = v >= threshold
    elif mode == "below":
        ok = v <= threshold
    else:
        ok = np.abs(v - v[-1]) <= eps
    if step is not None:
        return step, f"stays {cond[mode]} from step {step} ({int((s >= step).sum())} checkpoints)"
    if not ok.any():
        return None, f"never {cond[mode]}"
    last_bad = int(np.flatnonzero(~ok)[-1]) if (~ok).any() else -1
    tail = s.size - last_bad - 1
    return None, (
        f"{cond[mode]} only from step {int(s[last_bad + 1])} on, {tail} checkpoint(s), fewer than the "
        f"{min_run} needed to show that it stays"
        if last_bad >= 0
        else f"{cond[mode]} at every checkpoint, but there are fewer than {min_run}"
    )


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

    point: int | None  # first step after which smoothed ΔΣ stays ≤ tau; None when not found
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
    found: bool = False  # the presence test passed (then point is a step)
    reason: str = ""  # why found or why not, with the numbers
    fall_decades: float | None = None  # log10(peak/floor); None if either is ≤ 0
    noise_decades: float = 0.0  # 1.4826·MAD of log10 ΔΣ − log10 smoothed ΔΣ
    fall_rate: float | None = None  # mean fall of smoothed log10 ΔΣ per decade of step, peak → point
    floor_rate: float | None = None  # fall of smoothed log10 ΔΣ per decade of step over the floor span
    crossing: int | None = None  # first step after which smoothed ΔΣ stays ≤ tau, whether or not there is a floor


def sosd_point(
    steps: ArrayLike,
    delta_sigma: ArrayLike,
    *,
    tau: float | None = None,
    window: int = 5,
    floor_frac: float = 0.5,
    min_run: int = 2,
    min_fall: float = 0.3,
    z: float = 4.0,
    floor_rate_frac: float = 0.5,
) -> SoSDPoint:
    """SoSD point: the first step after which the smoothed ΔΣ stays ≤ τ, if ΔΣ falls to a floor at all.

    Indexing: ΔΣ between two consecutive records t < t' is given at the *later* step t', as
    :func:`lmconv.metrics.spectrum.spectra_deltas` returns it, so ``steps`` runs from the second record to
    the last one, and the point is the step t' at which the first change of the stable tail ends. (The
    paper's ΔΣ_t = ‖Σ̂_{t+1} − Σ̂_t‖ is indexed by the earlier step; with per-step records the two differ
    by one step.) The rule itself reads only the steps it is given.

    Rule: smooth ΔΣ with a centred moving median over ``window`` consecutive points (windows shrink at the
    ends). The floor is the median of the raw ΔΣ over the last ``floor_frac`` of the step range (steps
    ≥ t_last − floor_frac·(t_last − t_first)); the peak is the maximum of the smoothed curve. Unless ``tau``
    is given, τ = sqrt(peak·floor). The candidate point is :func:`stabilisation_step` with mode "below",
    threshold τ and ``min_run`` applied to the smoothed curve.

    Presence test (the point is reported only if all hold; otherwise ``point`` is None, ``found`` False and
    ``reason`` names the first that failed):

    1. ΔΣ is positive somewhere (all-zero: nothing moves);
    2. the smoothed peak comes before the floor span (a rising or flat curve has no fall to a floor);
    3. the fall ``fall_decades`` = log10(peak/floor) is at least max(``min_fall``, ``z``·noise), with the
       noise ``noise_decades`` = 1.4826·MAD of log10 ΔΣ around log10 of the smoothed curve (positive points);
    4. the smoothed curve crosses τ and then stays ≤ τ (the candidate point exists and is after the first step);
    5. the curve has a floor rather than a steady decline: over the floor span, the smoothed ΔΣ falls by less
       than ``floor_rate_frac`` times its mean fall per decade of step from the peak to the point
       (``fall_rate``, in decades of ΔΣ per decade of step). The floor's rate ``floor_rate`` compares the medians
       of the first and second half of the floor span (log10 of the median smoothed ΔΣ against log10 of the
       median step), so a lone spike does not move it. A power law ΔΣ ∝ t^−a fails this test.

    Non-finite values are dropped with their steps first; at least 3 finite points are needed.
    """
    if not 0 < floor_frac <= 1:
        raise LmconvError(f"sosd_point: floor_frac must be in (0, 1], got {floor_frac}")
    if min_fall < 0 or z < 0 or floor_rate_frac <= 0:
        raise LmconvError(
            f"sosd_point: need min_fall ≥ 0, z ≥ 0, floor_rate_frac > 0; got {min_fall}, {z}, {floor_rate_frac}"
        )
    s, v, n_drop = _clean(steps, delta_sigma, "sosd_point", min_points=3)
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
    candidate = stabilisation_step(s, sm, threshold=tau_val, mode="below", min_run=min_run)
    pos = (v > 0) & (sm > 0)
    noise = _mad(np.log10(v[pos]) - np.log10(sm[pos])) if pos.sum() >= 3 else 0.0
    fall = math.log10(peak / floor) if peak > 0 and floor > 0 else None
    need = max(min_fall, z * noise)
    floor_from = int(s[late][0])
    lx = np.log10(np.maximum(s, 1).astype(float))
    fall_rate = floor_rate = None
    if candidate is not None and peak > 0:
        i_pt = int(np.flatnonzero(s == candidate)[0])
        dx = lx[i_pt] - lx[i_peak]
        if dx > 0:
            fall_rate = math.inf if sm[i_pt] <= 0 else (math.log10(peak) - math.log10(sm[i_pt])) / dx
    fl = np.flatnonzero(late & (sm > 0))
    if fl.size >= 4:  # robust slope: medians of the first and the second half of the floor span
        a, b = fl[: fl.size // 2], fl[fl.size // 2 :]
        dx = float(np.median(lx[b]) - np.median(lx[a]))
        if dx > 0:
            floor_rate = float(np.log10(np.median(sm[a])) - np.log10(np.median(sm[b]))) / dx

    found = False
    if not np.any(v > 0):
        reason = "ΔΣ is zero at every step: the singular distribution never moves"
    elif i_peak >= int(np.flatnonzero(late)[0]):
        reason = (
            f"the smoothed peak (step {int(s[i_peak])}) lies in the floor span (from step {floor_from}): ΔΣ does "
            f"not fall to a floor (flat or rising)"
        )
    elif fall is None:
        reason = f"the floor of ΔΣ is {floor:.3g}, so its fall in decades is undefined; no transition is reported"
    elif fall < need:
        reason = (
            f"ΔΣ falls only {fall:.2f} decades from its peak to its floor (needs ≥ {min_fall:.2f} and ≥ {z:g}× its "
            f"noise of {noise:.3f} decades)"
        )
    elif candidate is None:
        reason = f"the smoothed ΔΣ never stays ≤ τ = {tau_val:.3g} through the last step"
    elif candidate == int(s[0]):
        reason = f"the smoothed ΔΣ is ≤ τ = {tau_val:.3g} from the first step: it does not fall through τ"
    elif fall_rate is not None and floor_rate is not None and floor_rate >= floor_rate_frac * fall_rate:
        reason = (
            f"ΔΣ is still falling over the floor span ({floor_rate:.2f} decades per decade of step, ≥ "
            f"{floor_rate_frac:g}× its mean fall rate {fall_rate:.2f} from the peak to τ): a steady decline, no floor"
        )
    else:
        found = True
        reason = (
            f"ΔΣ falls {fall:.2f} decades from its peak to its floor (needs ≥ {min_fall:.2f} and ≥ {z:g}× its noise "
            f"of {noise:.3f} decades) and stays ≤ τ = {tau_val:.3g} from step {candidate}"
        )
    return SoSDPoint(
        point=candidate if found else None,
        crossing=candidate,
        tau=tau_val,
        tau_rule=rule,
        peak=peak,
        peak_step=int(s[i_peak]),
        floor=floor,
        floor_from=floor_from,
        peak_over_floor=peak / floor if floor > 0 else None,
        window=int(window),
        n_points=int(s.size),
        n_dropped=n_drop,
        found=found,
        reason=reason,
        fall_decades=fall,
        noise_decades=noise,
        fall_rate=fall_rate,
        floor_rate=floor_rate,
    )


# ---------------------------------------------------------------------------------------------------------
# 4. loss elbow and 5. synchronisation
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Elbow(_AsDict):
    """Continuous two-segment (hinge) fit of loss against log10 step (see :func:`loss_elbow`).

    The fit fields are filled whether or not the presence test passed; ``found`` says whether the breakpoint
    is reported as a transition.
    """

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
    found: bool = False
    reason: str = ""
    f_stat: float = 0.0  # ((rss_line − rss)/2)/(rss/(n − 4)); inf for an exact fit that beats the line
    noise: float = 0.0  # sqrt(rss/(n − 4)), the loss's scatter around the hinge
    fall_before: float = 0.0  # fitted fall of the loss from the first fitted point to the breakpoint


def _hinge_scan(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """RSS of the hinge fit y = a + b·x + c·max(0, x − g) for every g of ``grid`` (one matrix product)."""
    q, _ = np.linalg.qr(np.column_stack([np.ones_like(x), x]))
    ry = y - q @ (q.T @ y)
    hin = np.maximum(0.0, x[None, :] - grid[:, None])
    hr = hin - (hin @ q) @ q.T
    nn = np.einsum("ij,ij->i", hr, hr)
    num = hr @ ry
    gain = np.where(nn > 1e-300, num**2 / np.where(nn > 1e-300, nn, 1.0), 0.0)
    return np.maximum(float(ry @ ry) - gain, 0.0)


def _hinge_rss(x: np.ndarray, y: np.ndarray, x0: float) -> tuple[float, np.ndarray]:
    X = np.column_stack([np.ones_like(x), x, np.maximum(0.0, x - x0)])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    r = y - X @ coef
    return float(r @ r), coef


def _descent_rate(s: np.ndarray, y: np.ndarray, window: int) -> np.ndarray:
    """Smoothed −dL/dlog10(step) at each checkpoint (steps > 0): numpy.gradient, then a moving median."""
    return moving_median(-np.gradient(y, np.log10(s.astype(float))), window)


def _f_stat(rss_line: float, rss: float, n: int, scale: float) -> float:
    """F of the hinge (2 extra parameters) over one line; 0 when it does not improve, inf for an exact fit."""
    dof = n - 4
    gain = rss_line - rss
    if dof <= 0 or gain <= 1e-12 * max(scale, 1e-300):
        return 0.0
    if rss <= 1e-24 * max(scale, 1e-300):
        return math.inf
    return (gain / 2.0) / (rss / dof)


def loss_elbow(
    steps: ArrayLike,
    loss: ArrayLike,
    *,
    min_step: int = 1,
    max_step: int | None = None,
    from_steepest: bool = False,
    window: int = 3,
    n_grid: int = 200,
    min_f: float = 20.0,
    z: float = 3.0,
) -> Elbow:
    """Loss elbow: the breakpoint of a continuous two-segment linear fit of loss against log10(step).

    Rule: on the points with ``min_step`` ≤ step ≤ ``max_step`` (step > 0 always, since log10 0 is undefined),
    with x = log10(step), fit y = a + b·x + c·max(0, x − x0) by least squares for each x0 on a grid of
    ``n_grid`` points from the 2nd to the 2nd-to-last x (so each segment holds at least two points), keep the
    x0 with the smallest residual sum of squares, then refine it on a second grid of ``n_grid`` points over
    the neighbouring grid cells. The elbow is 10**x0; slopes are b before and b + c after.
    Non-finite losses are dropped with their steps first; at least 4 points are needed (else LmconvError).

    With ``from_steepest``, the fit starts instead at the checkpoint of fastest descent (the maximum of the
    smoothed rate −dL/dlog10(step) of :func:`loss_elbow_derivative`, ``window`` points), so the elbow is the
    end of fast descent. Without it, a curve with an early plateau, a steep descent and a slow tail has two
    bends and the two-segment fit may pick either (on tiny models, usually the onset of descent).

    Presence test (``found``; the fit fields are filled either way): with n fitted points and the noise
    σ = sqrt(rss/(n − 4)),

    1. the bend beats one straight line: F = ((rss_line − rss)/2)/(rss/(n − 4)) ≥ ``min_f`` (a large margin,
       because the breakpoint is searched, which inflates F on curves without a bend; n = 4 cannot be tested);
    2. the loss falls before the breakpoint: slope_before < 0 and the fitted fall from the first fitted point
       to the breakpoint, −b·(x0 − x_first), exceeds ``z``·σ;
    3. the descent slows after it: slope_after > slope_before.

    A straight line, a constant and a rising loss are therefore not found.
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
    k = int(np.argmin(_hinge_scan(x, y, grid)))
    fine = np.linspace(grid[max(k - 1, 0)], grid[min(k + 1, n_grid - 1)], n_grid)
    x0 = float(fine[int(np.argmin(_hinge_scan(x, y, fine)))])
    best, (a, b, c) = _hinge_rss(x, y, x0)
    line = np.polyfit(x, y, 1)
    r_line = y - np.polyval(line, x)
    rss_line = float(r_line @ r_line)
    n = int(s.size)
    f = _f_stat(rss_line, best, n, float(np.sum((y - y.mean()) ** 2)))
    noise = math.sqrt(best / (n - 4)) if n > 4 else 0.0
    fall_before = float(-b * (x0 - x[0]))
    slope_after = float(b + c)
    if n <= 4:
        found, reason = False, "4 points leave no degree of freedom to test the bend against one straight line"
    elif f < min_f:
        found, reason = False, f"the bend does not beat one straight line: F = {f:.3g} < {min_f:g}"
    elif b >= 0 or fall_before <= z * noise:
        found, reason = (
            False,
            (
                f"the loss does not fall before the breakpoint by more than its noise: fall {fall_before:.3g} vs "
                f"{z:g}× noise {noise:.3g}"
            ),
        )
    elif slope_after <= b:
        found, reason = False, f"the descent does not slow at the breakpoint: slope {b:.3g} then {slope_after:.3g}"
    else:
        found, reason = (
            True,
            (
                f"the loss bends at step {10**x0:.0f}: slope {b:.3g} then {slope_after:.3g} per decade, F = {f:.3g} ≥ "
                f"{min_f:g}, fall before it {fall_before:.3g} > {z:g}× noise {noise:.3g}"
            ),
        )
    return Elbow(
        step=float(10**x0),
        log10_step=x0,
        nearest_step=int(s[int(np.argmin(np.abs(x - x0)))]),
        fit_from=int(s[0]),
        slope_before=float(b),
        slope_after=slope_after,
        intercept=float(a),
        rss=best,
        rmse=math.sqrt(best / s.size),
        rss_single_line=rss_line,
        n_points=n,
        n_dropped=n_drop,
        found=found,
        reason=reason,
        f_stat=f,
        noise=noise,
        fall_before=fall_before,
    )


@dataclass(frozen=True)
class DerivativeElbow(_AsDict):
    """End of fast descent from the loss's log-step derivative (see :func:`loss_elbow_derivative`)."""

    step: int | None  # None when not found
    max_rate: float  # max of the smoothed −dL/dlog10(step)
    max_rate_step: int
    frac: float
    window: int
    n_points: int
    n_dropped: int
    found: bool = False
    reason: str = ""
    noise: float = 0.0  # local_noise of the loss against log10 step
    descent: float = 0.0  # smoothed loss at the first point minus at the last
    rate_before: float | None = None  # LS fall per decade from the fastest descent to the step
    rate_after: float | None = None  # LS fall per decade from the step to the last point


def _ls_rate(x: np.ndarray, y: np.ndarray) -> float | None:
    return -float(np.polyfit(x, y, 1)[0]) if x.size >= 2 and np.ptp(x) > 0 else None


def loss_elbow_derivative(
    steps: ArrayLike,
    loss: ArrayLike,
    frac: float = 0.1,
    *,
    window: int = 3,
    z: float = 4.0,
    max_rate_ratio: float = 0.25,
) -> DerivativeElbow:
    """Loss elbow from the descent rate: first step after the fastest descent where the rate falls below frac.

    Rule: on the points with step > 0, with x = log10(step), compute the rate r = −dL/dx at every checkpoint
    (``numpy.gradient`` on the uneven x: second-order central differences inside, one-sided at the ends),
    smooth it with a centred moving median over ``window`` points, find its maximum r_max, and take the
    first checkpoint step after the maximum with smoothed r < frac·r_max.

    Presence test (otherwise ``step`` is None, ``found`` False and ``reason`` says which failed):

    1. the loss descends by more than its noise: the moving median (``window`` points) of the loss falls from
       the first to the last point by more than ``z``·σ, σ = :func:`local_noise` of the loss against x;
    2. r_max > 0;
    3. some step after the maximum has r < frac·r_max;
    4. the fast descent is real: the least-squares fall per decade from the fastest descent to that step,
       times the decades between them, exceeds ``z``·σ;
    5. the descent really slows there: the least-squares fall per decade from that step to the last point is
       below ``max_rate_ratio`` times the one from the fastest descent to that step (each needs ≥ 2 points,
       so a dip at the last point alone does not count).

    Non-finite losses are dropped with their steps first; at least 3 points are needed (else LmconvError).
    """
    if not 0 < frac < 1:
        raise LmconvError(f"loss_elbow_derivative: frac must be in (0, 1), got {frac}")
    if z < 0 or max_rate_ratio <= 0:
        raise LmconvError(f"loss_elbow_derivative: need z ≥ 0 and max_rate_ratio > 0, got {z}, {max_rate_ratio}")
    s0, y0, n_drop = _clean(steps, loss, "loss_elbow_derivative", min_points=1)
    s, y = s0[s0 > 0], y0[s0 > 0]
    if s.size < 3:
        raise LmconvError(f"loss_elbow_derivative: {s.size} finite points with step > 0, need at least 3")
    x = np.log10(s.astype(float))
    rate = _descent_rate(s, y, window)
    r_max = float(np.max(rate))
    # the first step at the maximum up to rounding: on a straight stretch of the curve the rates tie, and
    # float noise (which differs between BLAS builds) must not pick the step
    i_max = int(np.flatnonzero(rate >= r_max - 1e-9 * max(abs(r_max), 1.0))[0])
    below = np.flatnonzero(rate[i_max + 1 :] < frac * r_max)
    noise = local_noise(x, y)
    ys = moving_median(y, window)
    descent = float(ys[0] - ys[-1])
    i_step = i_max + 1 + int(below[0]) if below.size else None
    before = after = None
    if i_step is not None:
        before = _ls_rate(x[i_max : i_step + 1], y[i_max : i_step + 1])
        after = _ls_rate(x[i_step:], y[i_step:])
    found = False
    if descent <= z * noise or descent <= 0:
        reason = f"the loss does not descend by more than its noise: {descent:.3g} vs {z:g}× noise {noise:.3g}"
    elif r_max <= 0:
        reason = f"the loss never falls: the largest descent rate is {r_max:.3g}"
    elif i_step is None:
        reason = f"the descent rate never falls below {frac:g}× its maximum {r_max:.3g} after step {int(s[i_max])}"
    elif before is None or after is None:
        reason = f"the rate dips below {frac:g}× its maximum only at the last point"
    elif before * (x[i_step] - x[i_max]) <= z * noise:
        reason = (
            f"the fast descent before step {int(s[i_step])} is not above the noise: "
            f"{before * (x[i_step] - x[i_max]):.3g} vs {z:g}× noise {noise:.3g}"
        )
    elif not (before > 0 and after < max_rate_ratio * before):
        reason = (
            f"the descent does not slow at step {int(s[i_step])}: {after:.3g} per decade after it vs {before:.3g} "
            f"before it (needs < {max_rate_ratio:g}×)"
        )
    else:
        found = True
        reason = (
            f"the descent rate falls below {frac:g}× its maximum {r_max:.3g} at step {int(s[i_step])}; the loss "
            f"falls {after:.3g} per decade after it vs {before:.3g} before it"
        )
    return DerivativeElbow(
        step=int(s[i_step]) if found and i_step is not None else None,
        max_rate=r_max,
        max_rate_step=int(s[i_max]),
        frac=float(frac),
        window=int(window),
        n_points=int(s.size),
        n_dropped=n_drop,
        found=found,
        reason=reason,
        noise=noise,
        descent=descent,
        rate_before=before,
        rate_after=after,
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
    "PHASE_KEYS",
    "DerivativeElbow",
    "Elbow",
    "KLPhaseSpread",
    "KLPhases",
    "SoSDPoint",
    "Spread",
    "describe",
    "fraction_of_training",
    "kl_phase_sensitivity",
    "kl_phases",
    "kl_phases_by_pair",
    "local_noise",
    "loss_elbow",
    "loss_elbow_derivative",
    "moving_median",
    "smooth_log",
    "sosd_point",
    "stabilisation_event",
    "stabilisation_step",
    "synchronisation",
]
