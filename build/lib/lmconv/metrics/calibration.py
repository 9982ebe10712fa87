"""Calibration of the event detectors of :mod:`lmconv.metrics.phases` on synthetic curves.

Two kinds of seeded synthetic curves, with multiplicative Gaussian noise ``value·(1 + noise·ε)``:

- *null* curves, on which a detector should report nothing: constant, monotone (falling or rising, straight in
  log-step, or a power law for ΔΣ), and for the KL phases a curve that dips, rises and then stays flat (no (iv));
- *event* curves with a known event: a four-phase KL curve with known trough and peak; a ΔΣ curve that peaks
  and falls about two decades to a floor; a validation loss with a plateau, a fast fall and a slow tail.

:func:`detector_rates` runs every detector on ``n_draws`` draws of each curve and noise level and reports how
often it reports an event (the false-positive rate on null curves, the detection rate on event curves) and,
on event curves, how often the reported step is within a stated tolerance (in decades of step) of the truth.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from ..errors import LmconvError
from . import phases

# the default profile's checkpoints: half-powers of two to 256, then every 128, and the last step
KL_STEPS = np.array([0, 1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128, 181, 256, *range(384, 2000, 128), 2000])
SOSD_STEPS = np.arange(4, 2001, 4)  # ΔΣ per step between records every 4 steps, at the later record
LOSS_STEPS = np.unique(np.round(np.logspace(0, math.log10(2000), 40)).astype(int))  # validation, thinned in log
NOISES = (0.01, 0.03, 0.05)
LOSS_NOISES = (0.003, *NOISES)  # a validation loss is far less noisy than 1 %: also at 0.3 %
TOL_DECADES = {
    "kl (ii) convergence": 0.16,
    "kl (iii) divergence": 0.16,
    "kl (iv) reconvergence": 0.16,
    "sosd point": 0.15,
    "loss elbow (steepest hinge)": 0.15,
    "loss elbow (derivative)": 0.15,
}

Curve = tuple[np.ndarray, np.ndarray, float | None]  # steps, values, true step of the event (None: null curve)


def _noisy(clean: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    return clean * (1.0 + noise * rng.standard_normal(clean.shape))


def _log_piecewise(steps: np.ndarray, knots: list[tuple[float, float]]) -> np.ndarray:
    """Piecewise linear in log10(step) through the knots, flat outside them (step 0 counts as step 1)."""
    kx = np.log10([k for k, _ in knots])
    return np.interp(np.log10(np.maximum(steps, 1)), kx, [v for _, v in knots])


# ---------------------------------------------------------------------------------------------------------
# generators
# ---------------------------------------------------------------------------------------------------------

KL_KINDS = ("constant", "falling", "rising", "dip, rise, flat", "four phases")


def kl_curve(kind: str, noise: float, rng: np.random.Generator, steps: np.ndarray = KL_STEPS) -> tuple:
    """A KL curve (KL0 = 1) and its truth ``{"trough": step | None, "peak": step | None, "phases": set}``.

    ``constant``: flat; ``falling``: flat to 8, then down to 0.4 at the end (phase (ii) only); ``rising``: flat
    to 8, then up to 3 at the end ((iii), no (iv)); ``dip, rise, flat``: down to 0.3 at a trough, up to 0.8 at a
    peak, then flat ((ii) and (iii), no (iv)); ``four phases``: flat to u, down to 0.4–0.7 at the trough, up to
    2–3 at the peak, then 20–40 % down by the last step. Trough ∈ {23, 32, 45}, peak ∈ {256, 384, 512}.
    """
    last = float(steps[-1])
    u, tr, pk = int(rng.choice([4, 6, 8])), int(rng.choice([23, 32, 45])), int(rng.choice([256, 384, 512]))
    truth: dict = {"trough": None, "peak": None, "phases": {"uniform"}}
    if kind == "constant":
        clean = np.ones(steps.size)
    elif kind == "falling":
        clean = _log_piecewise(steps, [(1, 1.0), (8, 1.0), (last, 0.4)])
        truth["phases"] |= {"convergence"}
    elif kind == "rising":
        clean = _log_piecewise(steps, [(1, 1.0), (8, 1.0), (last, 3.0)])
        truth["phases"] |= {"divergence"}
    elif kind == "dip, rise, flat":
        clean = _log_piecewise(steps, [(1, 1.0), (u, 1.0), (tr, 0.3), (pk, 0.8), (last, 0.8)])
        truth.update(trough=tr)  # a plateau has no single peak step: detection only
        truth["phases"] |= {"convergence", "divergence"}
    elif kind == "four phases":
        lo, hi = rng.uniform(0.4, 0.7), rng.uniform(2.0, 3.0)
        clean = _log_piecewise(
            steps, [(1, 1.0), (u, 1.0), (tr, lo), (pk, hi), (last, hi * (1 - rng.uniform(0.2, 0.4)))]
        )
        truth.update(trough=tr, peak=pk)
        truth["phases"] |= {"convergence", "divergence", "reconvergence"}
    else:
        raise ValueError(kind)
    return steps, _noisy(clean, noise, rng), truth


SOSD_KINDS = ("constant", "falling (power law)", "rising", "peak, fall, floor")


def sosd_curve(kind: str, noise: float, rng: np.random.Generator, steps: np.ndarray = SOSD_STEPS) -> Curve:
    """A ΔΣ-per-step curve. Null: constant 1e-3; a power law 1e-2·(t/4)^−0.8 (a steady decline with no floor);
    rising 1e-4·(t/4)^0.5. Event ``peak, fall, floor``: log10 ΔΣ rises from −2.5 at step 4 to −2 at the peak
    t_p (log-uniform in [20, 60]), falls linearly in log–log to −4 at t_f = t_p·10^U(0.7, 1), then stays at −4.
    The true point is √(t_p·t_f), where the clean curve crosses τ = √(peak·floor)."""
    t = steps.astype(float)
    if kind == "constant":
        return steps, _noisy(np.full(t.size, 1e-3), noise, rng), None
    if kind == "falling (power law)":
        return steps, _noisy(1e-2 * (t / 4) ** -0.8, noise, rng), None
    if kind == "rising":
        return steps, _noisy(1e-4 * (t / 4) ** 0.5, noise, rng), None
    if kind == "peak, fall, floor":
        tp = 10 ** rng.uniform(math.log10(20), math.log10(60))
        tf = tp * 10 ** rng.uniform(0.7, 1.0)
        clean = 10 ** _log_piecewise(steps, [(4, -2.5), (tp, -2.0), (tf, -4.0)])
        return steps, _noisy(clean, noise, rng), math.sqrt(tp * tf)
    raise ValueError(kind)


LOSS_KINDS = ("constant", "falling (straight in log-step)", "rising", "plateau, fast fall, slow tail")


def loss_curve(kind: str, noise: float, rng: np.random.Generator, steps: np.ndarray = LOSS_STEPS) -> Curve:
    """A validation loss. Null: constant 6; 10.8 − 1.5·log10(step) (one straight line in log-step); rising
    5 + 0.5·log10(step). Event: 10.8 up to t1 (log-uniform in [4, 10]), then a fall of 2.5–3.5 nats per decade
    up to t2 = t1·10^U(0.8, 1.2) (the true end of fast fall), then 0.15 nats per decade."""
    x = np.log10(steps.astype(float))
    if kind == "constant":
        clean = np.full(x.size, 6.0)
    elif kind == "falling (straight in log-step)":
        clean = 10.8 - 1.5 * x
    elif kind == "rising":
        clean = 5.0 + 0.5 * x
    elif kind == "plateau, fast fall, slow tail":
        x1 = rng.uniform(math.log10(4), 1.0)
        x2 = x1 + rng.uniform(0.8, 1.2)
        rate = rng.uniform(2.5, 3.5)
        clean = 10.8 - rate * (np.clip(x, x1, x2) - x1) - 0.15 * np.maximum(x - x2, 0)
        return steps, _noisy(clean, noise, rng), 10**x2
    else:
        raise ValueError(kind)
    return steps, _noisy(clean, noise, rng), None


# ---------------------------------------------------------------------------------------------------------
# rates
# ---------------------------------------------------------------------------------------------------------


def _row(detector: str, curve: str, noise: float, found: list[bool], errors: list[float], event: bool) -> dict:
    """One table row; ``errors`` are abs(log10 found − log10 true) of the found events (event curves only)."""
    tol = TOL_DECADES[detector]
    n = len(found)
    err = np.asarray(errors, dtype=float)
    return {
        "detector": detector,
        "curve": curve,
        "kind": "event" if event else "null",
        "noise": float(noise),
        "draws": n,
        "found_rate": float(np.mean(found)) if n else math.nan,
        "within_tol_rate": float(np.sum(err <= tol + 1e-9)) / n if event and not math.isnan(tol) else math.nan,
        "tol_decades": tol if event else math.nan,
        "median_error_decades": float(np.median(err)) if event and err.size else math.nan,
    }


def _err(found: float | None, truth: float | None) -> float:
    return abs(math.log10(found) - math.log10(truth)) if found and truth else math.inf


# detector → (flag, located step, truth key, null curves, event curves); (iv) starts at the peak
KL_CHECKS = {
    "kl (ii) convergence": (
        "has_convergence",
        "trough_step",
        "trough",
        ("constant", "rising"),
        ("dip, rise, flat", "four phases"),
    ),
    "kl (iii) divergence": (
        "has_divergence",
        "peak_step",
        "peak",
        ("constant", "falling"),
        ("dip, rise, flat", "four phases"),
    ),
    "kl (iv) reconvergence": (
        "has_reconvergence",
        "peak_step",
        "peak",
        ("constant", "falling", "rising", "dip, rise, flat"),
        ("four phases",),
    ),
}


def _kl_rows(n_draws: int, rng: np.random.Generator, noises: tuple[float, ...]) -> list[dict]:
    rows = []
    for noise in noises:
        res = {}
        for kind in KL_KINDS:
            res[kind] = [kl_curve(kind, noise, rng) for _ in range(n_draws)]
            res[kind] = [(phases.kl_phases(s, y), truth) for s, y, truth in res[kind]]
        for det, (flag, loc, key, nulls, events) in KL_CHECKS.items():
            for kind in (*nulls, *events):
                event = kind in events
                found = [bool(getattr(r, flag)) for r, _ in res[kind]]
                errors = [
                    _err(getattr(r, loc), t[key]) if f and t[key] else math.inf
                    for (r, t), f in zip(res[kind], found, strict=True)
                ]
                located = event and all(t[key] is not None for _, t in res[kind])
                row = _row(det, kind, noise, found, errors if located else [], located)
                rows.append(row | {"kind": "event"} if event else row)
    return rows


def _simple_rows(
    detector: str,
    kinds: tuple[str, ...],
    make: Callable[[str, float, np.random.Generator], Curve],
    detect: Callable[[np.ndarray, np.ndarray], float | None],
    n_draws: int,
    rng: np.random.Generator,
    noises: tuple[float, ...],
) -> list[dict]:
    rows = []
    for noise in noises:
        for kind in kinds:
            found, errors, event = [], [], False
            for _ in range(n_draws):
                s, y, truth = make(kind, noise, rng)
                step = detect(s, y)
                event = truth is not None
                found.append(step is not None)
                if event:
                    errors.append(_err(step, truth))
            rows.append(_row(detector, kind, noise, found, errors, event))
    return rows


def detector_rates(n_draws: int = 200, seed: int = 0, noises: tuple[float, ...] = NOISES) -> pd.DataFrame:
    """How often each detector of :mod:`lmconv.metrics.phases`, at its default settings, reports an event.

    One row per (detector, curve, noise level): ``kind`` is "null" (no event: ``found_rate`` is the
    false-positive rate) or "event" (``found_rate`` is the detection rate, ``within_tol_rate`` the fraction of
    draws found within ``tol_decades`` of the true step, ``median_error_decades`` the median of
    abs(log10 found − log10 true) over all draws, a miss counting as infinite). Detectors: the KL phases (ii), (iii)
    and (iv) of :func:`~lmconv.metrics.phases.kl_phases`; the SoSD point; the loss elbow of the steepest-start
    hinge fit (``loss_elbow(from_steepest=True)``) and of the derivative rule (``loss_elbow_derivative``).
    Seeded: the same arguments give the same table.
    """
    rng = np.random.default_rng(seed)
    rows = _kl_rows(n_draws, rng, noises)
    rows += _simple_rows(
        "sosd point", SOSD_KINDS, sosd_curve, lambda s, y: phases.sosd_point(s, y).point, n_draws, rng, noises
    )

    def hinge(s: np.ndarray, y: np.ndarray) -> float | None:
        try:
            e = phases.loss_elbow(s, y, from_steepest=True)
        except LmconvError:  # fewer than 4 points after the steepest descent: no transition (as loss_transition)
            return None
        return e.step if e.found else None

    loss_noises = tuple(sorted({*noises, *LOSS_NOISES})) if noises == NOISES else noises
    rows += _simple_rows("loss elbow (steepest hinge)", LOSS_KINDS, loss_curve, hinge, n_draws, rng, loss_noises)
    rows += _simple_rows(
        "loss elbow (derivative)",
        LOSS_KINDS,
        loss_curve,
        lambda s, y: phases.loss_elbow_derivative(s, y).step,
        n_draws,
        rng,
        loss_noises,
    )
    return pd.DataFrame(rows)


__all__ = [
    "KL_KINDS",
    "KL_STEPS",
    "LOSS_KINDS",
    "LOSS_STEPS",
    "NOISES",
    "SOSD_KINDS",
    "SOSD_STEPS",
    "TOL_DECADES",
    "detector_rates",
    "kl_curve",
    "loss_curve",
    "sosd_curve",
]
