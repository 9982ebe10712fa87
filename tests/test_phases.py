"""Phase and transition detectors on synthetic curves with known break points (and the pilot's real KL)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from lmconv.errors import LmconvError
from lmconv.metrics.phases import (
    fraction_of_training,
    kl_phases,
    kl_phases_by_pair,
    loss_elbow,
    loss_elbow_derivative,
    moving_median,
    smooth_log,
    sosd_point,
    stabilisation_step,
    synchronisation,
)

# The default profile's checkpoints: half-powers of two to 256, then every 128, and the last step.
STEPS = np.array([0, 1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128, 181, 256, *range(384, 2000, 128), 2000])
KL0 = 0.05


def log_piecewise(steps: np.ndarray, knots: list[tuple[int, float]]) -> np.ndarray:
    """Piecewise linear in log10(step) through the knots, flat before the first knot (so at step 0 too)."""
    kx = np.log10([k for k, _ in knots])
    ky = [v for _, v in knots]
    return np.interp(np.log10(np.maximum(steps, 1)), kx, ky)


def four_phase_kl(steps: np.ndarray = STEPS) -> np.ndarray:
    """Flat to 8, dip to 0.7·KL0 at 32, rise to 3·KL0 at 512, fall by 20% of the peak by 2000."""
    return KL0 * log_piecewise(steps, [(1, 1.0), (8, 1.0), (32, 0.7), (512, 3.0), (2000, 2.4)])


def idx(step: int) -> int:
    return STEPS.tolist().index(step)


# ------------------------------------------------------------------------------------------------ kl_phases


def test_kl_phases_recovers_all_four_boundaries_exactly():
    # without smoothing the rule reads the checkpoints themselves, so a clean curve gives its knots exactly
    r = kl_phases(STEPS, four_phase_kl(), smooth=0)
    assert (r.uniform_end, r.trough_step, r.peak_step, r.divergence_start) == (8, 32, 512, 32)
    assert r.has_uniform and r.has_convergence and r.has_divergence and r.has_reconvergence
    assert r.dip_depth == pytest.approx(0.3)
    assert r.peak_ratio == pytest.approx(3.0)
    assert r.rise == pytest.approx(3.0 / 0.7 - 1)
    assert r.fall == pytest.approx(0.2)
    assert r.fall_abs == pytest.approx(0.6 * KL0)
    assert r.spans() == {
        "uniform": (0, 8),
        "convergence": (8, 32),
        "divergence": (32, 512),
        "reconvergence": (512, 2000),
    }
    json.dumps(r.as_dict())  # plain types only
    assert r.as_dict()["spans"]["divergence"] == [32, 512]


def test_kl_phases_without_dip_starts_divergence_at_end_of_uniform():
    # a 3% dip at 16 stays inside the 5% band: phase (ii) is absent
    kl = KL0 * log_piecewise(STEPS, [(1, 1.0), (8, 1.0), (16, 0.97), (32, 1.0), (512, 3.0), (2000, 2.4)])
    r = kl_phases(STEPS, kl, smooth=0)
    assert not r.has_convergence and r.has_divergence and r.has_reconvergence
    assert r.trough_step == 16 and r.dip_depth == pytest.approx(0.03)
    # leaves the band upwards first at 45 (1.0 → 1.0 + 2·log(45/32)/log(16) > 1.05), so (i) ends at 32
    assert r.uniform_end == 32 and r.divergence_start == 32
    assert r.spans()["convergence"] is None and r.spans()["divergence"] == (32, 512)
    # with a tighter band the same 3% dip counts
    assert kl_phases(STEPS, kl, rel_tol=0.02, smooth=0).has_convergence


def test_kl_phases_peak_at_last_step_has_no_reconvergence():
    kl = KL0 * log_piecewise(STEPS, [(1, 1.0), (8, 1.0), (32, 0.7), (2000, 3.0)])
    r = kl_phases(STEPS, kl)
    assert r.peak_step == 2000 and r.has_divergence
    assert not r.has_reconvergence and r.fall == 0.0 and r.spans()["reconvergence"] is None


@pytest.mark.parametrize(("fall", "seen"), [(0.03, False), (0.10, True)])
def test_kl_phases_reconvergence_needs_a_fall_beyond_rel_tol(fall: float, seen: bool):
    kl = KL0 * log_piecewise(STEPS, [(1, 1.0), (8, 1.0), (512, 3.0), (2000, 3.0 * (1 - fall))])
    r = kl_phases(STEPS, kl, smooth=0)
    assert r.peak_step == 512 and r.has_reconvergence is seen and r.fall == pytest.approx(fall)


def test_kl_phases_trough_is_taken_before_the_peak():
    # reconvergence ends below the early dip: the trough is still the dip at 32, not the global minimum
    kl = KL0 * log_piecewise(STEPS, [(1, 1.0), (8, 1.0), (32, 0.7), (512, 3.0), (2000, 0.5)])
    r = kl_phases(STEPS, kl, smooth=0)
    assert r.trough_step == 32 and r.dip_depth == pytest.approx(0.3) and r.fall == pytest.approx(5 / 6)


def test_kl_phases_flat_curve_is_all_uniform():
    kl = KL0 * (1 + 0.01 * np.sin(np.arange(STEPS.size)))
    r = kl_phases(STEPS, kl)
    assert r.uniform_end == 2000 and r.has_uniform
    assert not (r.has_convergence or r.has_divergence or r.has_reconvergence)
    assert r.divergence_start is None and r.rise is None


def test_kl_phases_only_falling_curve_is_convergence_without_divergence():
    kl = KL0 * log_piecewise(STEPS, [(1, 1.0), (8, 1.0), (16, 0.8), (2000, 0.4)])
    r = kl_phases(STEPS, kl, smooth=0)
    assert r.has_convergence and not r.has_divergence and not r.has_reconvergence
    assert r.uniform_end == 8 and r.trough_step == 2000 and r.dip_depth == pytest.approx(0.6)


def test_kl_phases_drops_nans_and_counts_them():
    kl = four_phase_kl()
    kl[[idx(0), idx(64), idx(1024)]] = np.nan
    r = kl_phases(STEPS, kl, smooth=0)
    assert r.n_dropped == 3 and r.first_step == 1 and r.n_points == STEPS.size - 3
    assert (r.uniform_end, r.trough_step, r.peak_step) == (8, 32, 512) and r.has_reconvergence


def test_kl_phases_abs_tol_handles_zero_initial_kl():
    # seeds sharing their state at step 0 (a branched arm): KL0 = 0, so a relative band is empty and
    # round-off-sized KL (1e-7 from step 6) already leaves it; abs_tol widens the band
    kl = KL0 * log_piecewise(STEPS, [(1, 0.0), (16, 0.0), (512, 3.0), (2000, 2.0)])
    kl[(STEPS >= 6) & (STEPS <= 16)] = 1e-7
    assert kl_phases(STEPS, kl, smooth=0).uniform_end == 4
    r = kl_phases(STEPS, kl, abs_tol=1e-4, smooth=0)
    assert r.uniform_end == 16 and r.has_divergence and r.has_reconvergence
    assert r.dip_depth is None and r.peak_ratio is None and r.fall == pytest.approx(1 / 3)


def test_kl_phases_noise_moves_boundaries_by_at_most_one_checkpoint():
    clean = four_phase_kl()
    for seed in range(5):
        rng = np.random.default_rng(seed)
        r = kl_phases(STEPS, clean * (1 + 0.01 * rng.standard_normal(STEPS.size)))
        assert r.has_convergence and r.has_divergence and r.has_reconvergence
        for got, want in [(r.uniform_end, 8), (r.trough_step, 32), (r.peak_step, 512)]:
            assert abs(idx(got) - idx(want)) <= 1, (seed, got, want)


def test_kl_phases_on_the_pilot_curves():
    steps = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    small = [0.0126, 0.0126, 0.0126, 0.0126, 0.0125, 0.0133, 0.0185, 0.0276, 0.0593, 0.0999, 0.1343, 0.1470]
    medium = [0.0512, 0.0512, 0.0510, 0.0507, 0.0500, 0.0547, 0.0806, 0.1683, 0.1948, 0.2651, 0.3221, 0.2626]
    s, m = kl_phases(steps, small), kl_phases(steps, medium)
    assert s.spans() == {
        "uniform": (0, 8),
        "convergence": None,
        "divergence": (8, 1024),
        "reconvergence": None,
    }
    assert m.spans() == {
        "uniform": (0, 8),
        "convergence": None,
        "divergence": (8, 512),
        "reconvergence": (512, 1024),
    }
    assert m.fall == pytest.approx(1 - 0.2626 / 0.3221)


def test_kl_phases_by_pair_spread():
    pairs = np.stack(
        [
            KL0 * log_piecewise(STEPS, [(1, 1.0), (8, 1.0), (32, 0.7), (peak, 3.0), (2000, end)])
            for peak, end in [(384, 2.4), (512, 2.4), (640, 3.0)]
        ]
    )
    pairs[0, idx(91)] = np.nan
    r = kl_phases_by_pair(STEPS, pairs, smooth=0)
    assert r.n_pairs == 3 and (r.n_convergence, r.n_divergence, r.n_reconvergence) == (3, 3, 2)
    assert (r.peak_step.median, r.peak_step.lo, r.peak_step.hi, r.peak_step.n) == (512, 384, 640, 3)
    assert r.trough_step.median == 32 and r.uniform_end.hi == 8
    assert r.fall.n == 2 and r.fall.median == pytest.approx(0.2)
    assert r.pairs[0].n_dropped == 1 and r.mean_curve.n_dropped == 0
    assert r.mean_curve.peak_step == 512
    d = r.as_dict()
    json.dumps(d)
    assert d["peak_step"]["median"] == 512 and d["pairs"][2]["spans"]["reconvergence"] is None
    with pytest.raises(LmconvError):
        kl_phases_by_pair(STEPS, pairs[0])


def test_inputs_are_checked():
    with pytest.raises(LmconvError, match="increasing"):
        kl_phases([0, 2, 1], [1.0, 2.0, 3.0])
    with pytest.raises(LmconvError, match="values"):
        kl_phases([0, 1, 2], [1.0, 2.0])
    with pytest.raises(LmconvError, match="integers"):
        kl_phases([0, 1.5, 2], [1.0, 2.0, 3.0])
    with pytest.raises(LmconvError, match="finite"):
        kl_phases([0, 1, 2], [1.0, np.nan, 3.0])


# ------------------------------------------------------------------------------------------- stabilisation


def cka_like(steps: np.ndarray = STEPS) -> np.ndarray:
    """Rises monotonically to 1; crosses 0.9 at 200·ln 5 ≈ 322, so the first checkpoint above is 384."""
    return 1 - 0.5 * np.exp(-steps / 200)


def test_stabilisation_monotone():
    assert stabilisation_step(STEPS, cka_like(), threshold=0.9) == 384
    assert stabilisation_step(STEPS, cka_like(), threshold=0.95) == 512  # 200·ln 10 ≈ 461
    assert stabilisation_step(STEPS, cka_like(), threshold=0.5) == 0


def test_stabilisation_late_dip_moves_it_later_or_to_none():
    v = cka_like()
    v[idx(1280)] = 0.85
    assert stabilisation_step(STEPS, v, threshold=0.9) == 1408
    v[idx(1920)] = 0.85  # second-to-last: only the last point is left
    assert stabilisation_step(STEPS, v, threshold=0.9) is None
    assert stabilisation_step(STEPS, v, threshold=0.9, min_run=1) == 2000
    v[-1] = 0.85
    assert stabilisation_step(STEPS, v, threshold=0.9, min_run=1) is None


def test_stabilisation_settled_and_below_modes():
    v = 0.5 + 0.2 * np.exp(-STEPS / 100)  # within 0.01 of the end from 100·ln 20 ≈ 300
    assert stabilisation_step(STEPS, v, mode="settled", eps=0.01) == 384
    assert stabilisation_step(STEPS, v, mode="below", threshold=0.52) == 256  # 100·ln 10 ≈ 230
    with pytest.raises(LmconvError):
        stabilisation_step(STEPS, v, mode="sideways")  # type: ignore[arg-type]


def test_fraction_of_training():
    assert fraction_of_training(384, 2000) == pytest.approx(0.192)
    assert fraction_of_training(None, 2000) is None


# -------------------------------------------------------------------------------------------------- SoSD


DS_STEPS = STEPS[1:]  # ΔΣ between consecutive checkpoints, stored at the later step (as spectra_deltas does)


def delta_sigma(steps: np.ndarray = DS_STEPS) -> np.ndarray:
    """log10 ΔΣ = −4 + 2·exp(−((x − log10 64)/0.5)²): peak 1e-2 at 64, floor 1e-4; 1e-3 at step ≈ 166."""
    x = np.log10(np.maximum(steps, 1))
    return 10 ** (-4 + 2 * np.exp(-(((x - math.log10(64)) / 0.5) ** 2)))


def ds_idx(step: int) -> int:
    return DS_STEPS.tolist().index(step)


def test_sosd_point_recovered():
    r = sosd_point(DS_STEPS, delta_sigma(), tau=1e-3)
    assert r.point == 181 and r.tau_rule == "given"
    d = sosd_point(DS_STEPS, delta_sigma())
    assert d.floor == pytest.approx(1e-4, rel=0.02) and d.floor_from == 1024
    assert d.peak_step in (45, 64, 91) and 0.5e-2 < d.peak <= 1e-2  # the median shaves the sharp top
    assert d.tau == pytest.approx(math.sqrt(d.peak * d.floor))
    assert d.point == 181
    json.dumps(d.as_dict())


def test_sosd_point_ignores_a_lone_spike_but_not_a_late_rise():
    v = delta_sigma()
    v[ds_idx(1024)] = 1e-2  # one spike: the 5-point median removes it
    assert sosd_point(DS_STEPS, v, tau=1e-3).point == 181
    assert sosd_point(DS_STEPS, v, tau=1e-3, window=1).point == 1152
    v = delta_sigma()
    v[ds_idx(1280) : ds_idx(1536) + 1] = 1e-2  # 3 points in a row survive a 5-point median
    # the burst is the smoothed peak and lies in the floor span: no fall to a floor, so no point (the old rule,
    # without a presence test, moved the point to 1664)
    r = sosd_point(DS_STEPS, v, tau=1e-3)
    assert r.point is None and not r.found and "floor span" in r.reason
    v[-4:] = 1e-2
    assert sosd_point(DS_STEPS, v, tau=1e-3).point is None


# ---------------------------------------------------------------------------------------------- loss elbow


def two_line_loss(steps: np.ndarray, elbow: float = 200.0) -> np.ndarray:
    x, x0 = np.log10(np.maximum(steps, 1)), math.log10(elbow)
    return 6.0 - 1.5 * np.minimum(x - x0, 0) - 0.2 * np.maximum(x - x0, 0)


def test_loss_elbow_exact_two_lines():
    r = loss_elbow(STEPS, two_line_loss(STEPS))
    assert abs(r.log10_step - math.log10(200)) < 0.005
    assert r.nearest_step == 181 and r.fit_from == 1
    assert r.slope_before == pytest.approx(-1.5, abs=1e-3) and r.slope_after == pytest.approx(-0.2, abs=1e-3)
    assert r.rss < 1e-8 < r.rss_single_line
    json.dumps(r.as_dict())


def test_loss_elbow_with_noise():
    rng = np.random.default_rng(0)
    r = loss_elbow(STEPS, two_line_loss(STEPS, 90.0) + 0.02 * rng.standard_normal(STEPS.size))
    assert abs(r.log10_step - math.log10(90)) < 0.05


def test_loss_elbow_from_steepest_skips_the_plateau():
    loss = log_piecewise(STEPS, [(1, 8.3), (8, 8.3), (64, 6.0), (2000, 5.0)])
    assert abs(loss_elbow(STEPS, loss, from_steepest=True).log10_step - math.log10(64)) < 0.01
    assert loss_elbow(STEPS, loss, min_step=11).step == pytest.approx(64, rel=0.03)


def test_loss_elbow_derivative_piecewise():
    # flat to 8, −2 per decade to 128, then −0.1 per decade: the rate stays 2 from 11 to 91, is mixed at the
    # bend (128, whose gradient spans both segments) and first drops below 10% of 2 at 181
    at_128 = 8.3 - 2 * math.log10(128 / 8)
    loss = log_piecewise(STEPS, [(1, 8.3), (8, 8.3), (128, at_128), (2000, at_128 - 0.1 * math.log10(2000 / 128))])
    r = loss_elbow_derivative(STEPS, loss)
    assert r.max_rate == pytest.approx(2.0) and r.max_rate_step == 11
    assert r.step == 181
    assert loss_elbow_derivative(STEPS, loss, frac=0.04).step is None  # late rate 0.1 = 5% of the max


def test_loss_elbow_derivative_none_when_descent_never_slows():
    loss = 8 - 1.0 * np.log10(np.maximum(STEPS, 1))  # constant rate in log-step
    assert loss_elbow_derivative(STEPS, loss).step is None


# ------------------------------------------------------------------------------------ sync and smoothing


def test_synchronisation():
    assert synchronisation(1000, 100) == pytest.approx(1.0)
    assert synchronisation(181, 200.0) == pytest.approx(math.log10(181 / 200))
    assert math.isnan(synchronisation(None, 100))
    with pytest.raises(LmconvError):
        synchronisation(0, 100)


def test_smoothing_helpers():
    v = np.ones(STEPS.size)
    v[idx(512)] = 50.0
    v[0] = 7.0
    assert np.all(moving_median(v, 3)[1:] == 1.0)
    rng = np.random.default_rng(1)
    w = rng.standard_normal(12)
    expected = pd.Series(w).rolling(5, center=True, min_periods=1).median().to_numpy()
    np.testing.assert_allclose(moving_median(w, 5), expected)
    sm = smooth_log(STEPS, v, window=0.25)
    assert sm[0] == 7.0 and sm[idx(512)] == 1.0
    with pytest.raises(LmconvError):
        moving_median(v, 4)


def test_stabilisation_event_says_why_it_is_absent():
    from lmconv.metrics import phases as ph

    steps = [0, 10, 20, 30, 40]
    assert ph.stabilisation_event(steps, [0.5, 0.95, 0.96, 0.97, 1.0]) == (
        10,
        "stays ≥ 0.9 from step 10 (4 checkpoints)",
    )
    step, why = ph.stabilisation_event(steps, [0.1, 0.2, 0.3, 0.4, 0.5])
    assert step is None and why == "never ≥ 0.9"
    step, why = ph.stabilisation_event(steps, [0.95, 0.96, 0.97, 0.5, 1.0])
    assert step is None and "only from step 40 on, 1 checkpoint(s)" in why
