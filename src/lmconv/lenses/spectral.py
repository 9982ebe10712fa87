"""Chapters 7–8: the stability of the singular distribution (SoSD) and how schedules and optimizers move it.

Definitions (the paper's, as a secondary reading reports them, and ours where the paper's text was missing):

- Σ̂_t = σ(W_t)/Σσ (paper): singular values sorted descending over their sum, per matrix.
- cos(Σ_t, Σ_T) and cos(W_t, W_T) (paper): cosine of a matrix's singular values, or of its entries, with the
  final checkpoint's.
- ΔΣ = ‖Σ̂_{t'} − Σ̂_t‖₂ between consecutive records t < t' (paper, with t' = t + 1); with records ``g`` steps
  apart the *rate* ΔΣ/g is reported beside it (ours). A run's ΔΣ curve is the mean over its layer matrices.
- t_S, the SoSD point (ours, ``lmconv.metrics.phases.sosd_point``): the first step after which the
  smoothed ΔΣ rate stays ≤ τ; τ = √(peak·floor) unless given.
- t_L, the loss transition (ours): by default the end of fast descent, ``lmconv.metrics.phases.loss_elbow``
  with ``from_steepest=True`` on the validation loss; δ = log10 t_S − log10 t_L.
- The bound (ours, from Mirsky's inequality): ``ΔΣ ≤ ‖Σ̂' − Σ̂‖₁ ≤ 2‖W' − W‖_* / ‖W'‖_*``.
- The scale (paper, reported): ΔΣ ∝ η/‖W‖; we regress log ΔΣ on ``log(η_t/‖W_t‖_*)`` with one intercept per
  matrix and optimizer (ours).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from ..chapters import params
from ..errors import LmconvError
from ..metrics import phases, spectrum, stats
from ..training import profiles
from ..training.neox import ATTENTION_KINDS, EMBED_KINDS, MLP_KINDS, parse_matrix_name

KIND_ORDER = (*ATTENTION_KINDS, *MLP_KINDS, *EMBED_KINDS)
ELBOW_RULES = ("steepest", "hinge", "derivative")
FACTORS = ("schedule", "weight decay", "optimizer")


def _optional_profile(name: str, v: object) -> object:
    if v is None:
        return None
    if not isinstance(v, str) or v not in profiles.available():
        raise LmconvError(
            f"parameter {name}={v!r} is not valid: expected null or a profile name, one of {profiles.available()}",
            f"pass it as e.g. make chapter NAME=... ARGS='-p {name} sweep'",
        )
    return v


params.register("sosd_floor_frac", params.float_param(0.05, 1.0))
params.register("sosd_elbow_rule", params.choice_param(ELBOW_RULES))
params.register("sosd_elbow_frac", params.float_param(0.01, 0.9))
params.register("sosd_elbow_thin", params.float_param(0.0, 0.5))
params.register("sosd_cos_threshold", params.float_param(0.0, 1.0))
params.register("sosd_heatmap_bins", params.int_param(4, 200))
params.register("sosd_n_boot", params.int_param(10, 100_000))
params.register("sweep_profile", _optional_profile)


def group_of(kind: str) -> str:
    """``attention`` for q/k/v/o, ``mlp`` for mlp_in/mlp_out, ``embedding`` for embed_in/embed_out."""
    if kind in ATTENTION_KINDS:
        return "attention"
    if kind in MLP_KINDS:
        return "mlp"
    if kind in EMBED_KINDS:
        return "embedding"
    raise LmconvError(f"unknown matrix kind {kind!r}", f"kinds are {list(KIND_ORDER)}")


# ---------------------------------------------------------------------------------------------------------
# dense spectra recorded during training
# ---------------------------------------------------------------------------------------------------------


def record_deltas(steps: Sequence[int], values: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """ΔΣ between consecutive records of one run, per matrix: one row per (later record, matrix).

    Columns: step (the later record), prev_step, gap = step − prev_step, matrix, layer, kind, group,
    delta = ‖Σ̂_step − Σ̂_prev‖₂ and rate = delta / gap.
    """
    steps = np.asarray(steps, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 3 or values.shape[0] != steps.size or values.shape[1] != len(names):
        raise LmconvError(
            f"record_deltas: values of shape {values.shape} do not match {steps.size} steps × {len(names)} names"
        )
    d, r = spectrum.spectra_deltas(steps, values)
    n_rec, n_mat = d.shape
    layer_kind = [parse_matrix_name(n) for n in names]
    return pd.DataFrame(
        {
            "step": np.repeat(steps[1:], n_mat),
            "prev_step": np.repeat(steps[:-1], n_mat),
            "gap": np.repeat(np.diff(steps), n_mat),
            "matrix": np.tile(np.asarray(names, dtype=object), n_rec),
            "layer": np.tile([lk[0] for lk in layer_kind], n_rec),
            "kind": np.tile([lk[1] for lk in layer_kind], n_rec),
            "group": np.tile([group_of(lk[1]) for lk in layer_kind], n_rec),
            "delta": d.ravel(),
            "rate": r.ravel(),
        }
    )


def record_norms(steps: Sequence[int], values: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """Frobenius, spectral and nuclear norm of every matrix at every record, from its singular values."""
    v = np.asarray(values, dtype=np.float64)
    n_rec, n_mat = v.shape[:2]
    layer_kind = [parse_matrix_name(n) for n in names]
    return pd.DataFrame(
        {
            "step": np.repeat(np.asarray(steps, dtype=np.int64), n_mat),
            "matrix": np.tile(np.asarray(names, dtype=object), n_rec),
            "layer": np.tile([lk[0] for lk in layer_kind], n_rec),
            "kind": np.tile([lk[1] for lk in layer_kind], n_rec),
            "fro": np.sqrt((v**2).sum(-1)).ravel(),
            "spectral": v.max(-1).ravel(),
            "nuclear": v.sum(-1).ravel(),
        }
    )


def record_cosines(steps: Sequence[int], values: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """cos(σ_t, σ_T) of every matrix at every record against the last record T (sorted singular values)."""
    v = np.sort(np.asarray(values, dtype=np.float64), axis=-1)[..., ::-1]
    last = v[-1]
    cos = (v * last).sum(-1) / (np.linalg.norm(v, axis=-1) * np.linalg.norm(last, axis=-1))
    n_rec, n_mat = cos.shape
    layer_kind = [parse_matrix_name(n) for n in names]
    return pd.DataFrame(
        {
            "step": np.repeat(np.asarray(steps, dtype=np.int64), n_mat),
            "matrix": np.tile(np.asarray(names, dtype=object), n_rec),
            "kind": np.tile([lk[1] for lk in layer_kind], n_rec),
            "cos_sigma": cos.ravel(),
        }
    )


def _runs(suite, sizes: Iterable[str] | None, seeds: Iterable[int] | None) -> list[tuple[str, int]]:
    prof = suite.profile
    return [(size, int(seed)) for size in sizes or list(prof.sizes) for seed in seeds or list(prof.seeds)]


def dense_tables(
    suite, family: str, sizes: Iterable[str] | None = None, seeds: Iterable[int] | None = None
) -> dict[str, pd.DataFrame]:
    """:func:`record_deltas`, :func:`record_norms` and :func:`record_cosines` of every run of one family.

    Returns ``{"deltas": ..., "norms": ..., "cosines": ...}``, each with family, size and seed columns.
    """
    frames: dict[str, list[pd.DataFrame]] = {"deltas": [], "norms": [], "cosines": []}
    for size, seed in _runs(suite, sizes, seeds):
        steps, values, names = suite.spectra_records(family, size, seed)
        for key, fn in (("deltas", record_deltas), ("norms", record_norms), ("cosines", record_cosines)):
            df = fn(steps, values, names)
            df.insert(0, "seed", seed)
            df.insert(0, "size", size)
            df.insert(0, "family", family)
            frames[key].append(df)
    return {k: pd.concat(v, ignore_index=True) for k, v in frames.items()}


RUN = ["family", "size", "seed"]


def run_events(
    suite,
    family: str,
    sizes: Iterable[str] | None = None,
    seeds: Iterable[int] | None = None,
    rule: SosdRule | None = None,
    upto: int | None = None,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Each run's t_S (on its mean layer ΔΣ) and t_L (on its validation loss) by ``rule``
    (:func:`sosd_summary`), with the run's :func:`dense_tables`; ``upto``: only the records up to that step,
    as if the run had ended there."""
    dense = dense_tables(suite, family, sizes, seeds)
    deltas = dense["deltas"] if upto is None else dense["deltas"][dense["deltas"].step <= upto]
    _, val = suite.train_logs(family)
    val = val if upto is None else val[val.step <= upto]
    return sosd_summary(run_curves(deltas), val, rule or SosdRule()), dense


def run_curves(deltas: pd.DataFrame, kinds: Sequence[str] | None = None, by: Sequence[str] = ()) -> pd.DataFrame:
    """Each run's ΔΣ curve: the mean of ``delta`` and ``rate`` over its matrices (of ``kinds``) per record.

    ``by`` adds grouping columns (e.g. ``["kind"]`` or ``["group"]``) so that each gets its own curve.
    """
    df = deltas if kinds is None else deltas[deltas.kind.isin(kinds)]
    keys = [*RUN, *by, "step"]
    return df.groupby(keys, as_index=False, sort=True).agg(
        gap=("gap", "first"), delta=("delta", "mean"), rate=("rate", "mean")
    )


# ---------------------------------------------------------------------------------------------------------
# events: SoSD point, loss transition, synchronisation
# ---------------------------------------------------------------------------------------------------------


def thin_log(steps: Sequence[int], values: Sequence[float], min_gap: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Keep points at least ``min_gap`` decades of step apart (greedy from the first step ≥ 1; the last point is
    always kept). Validation every few steps is dense in log-step late in training, where the loss's noise over
    tiny log-intervals would otherwise dominate any rate −dL/dlog t. ``min_gap`` 0 keeps every point ≥ 1."""
    s = np.asarray(steps)
    v = np.asarray(values, dtype=float)
    keep: list[int] = []
    last = -np.inf
    for i, t in enumerate(s):
        if t >= 1 and math.log10(t) >= last + min_gap - 1e-12:
            keep.append(i)
            last = math.log10(t)
    if keep and keep[-1] != s.size - 1 and s[-1] >= 1:
        keep.append(s.size - 1)
    return s[keep], v[keep]


def loss_transition_event(
    steps: Sequence[int], loss: Sequence[float], rule: str = "steepest", frac: float = 0.1, thin: float = 0.05
) -> tuple[float | None, str]:
    """t_L and the reason it was or was not found: ``(step | None, reason)``, by the rules of :func:`loss_transition`.

    The step is None when the rule's presence test fails (``lmconv.metrics.phases.loss_elbow`` /
    ``loss_elbow_derivative``: a straight line, a constant or a rising loss has no transition) or when fewer than
    four checkpoints follow the steepest descent.
    """
    s, y = thin_log(steps, loss, thin)
    if rule in ("steepest", "hinge"):
        try:
            e = phases.loss_elbow(s, y, from_steepest=rule == "steepest")
        except LmconvError as err:  # too few points after the steepest descent: no transition seen
            return None, f"no transition: {err.problem}"
        return (e.step if e.found else None), e.reason
    if rule == "derivative":
        d = phases.loss_elbow_derivative(s, y, frac)
        return (None if d.step is None else float(d.step)), d.reason
    raise LmconvError(f"unknown elbow rule {rule!r}", f"rules are {list(ELBOW_RULES)}")


def loss_transition(
    steps: Sequence[int], loss: Sequence[float], rule: str = "steepest", frac: float = 0.1, thin: float = 0.05
) -> float | None:
    """t_L by one of three stated rules on (step, validation loss), after :func:`thin_log` with ``thin`` decades.

    ``steepest``: breakpoint of the two-segment fit in log-step started at the fastest descent (the end of
    fast descent); ``hinge``: the same fit over all steps ≥ 1 (on plateau–fall–tail curves this finds the start
    of the fall); ``derivative``: first step after the fastest descent where −dL/dlog t < ``frac`` of its maximum.
    None when the rule finds no transition: its presence test fails (see :func:`loss_transition_event` for the
    reason) or fewer than four checkpoints follow the steepest descent.
    """
    return loss_transition_event(steps, loss, rule, frac, thin)[0]


@dataclass(frozen=True)
class SosdRule:
    """The stated rules that place t_S and t_L: chapters 7–9's six ``sosd_*`` parameters in one value.

    ``tau``, ``window`` and ``floor_frac`` go to ``lmconv.metrics.phases.sosd_point``; ``elbow_rule``,
    ``elbow_frac`` and ``elbow_thin`` to :func:`loss_transition_event`.
    """

    tau: float | None = None
    window: int = 5
    floor_frac: float = 0.5
    elbow_rule: str = "steepest"
    elbow_frac: float = 0.1
    elbow_thin: float = 0.05

    @classmethod
    def from_params(cls, p: object) -> SosdRule:
        """The rule from a chapter's validated parameters (any ``sosd_{field}`` it has; defaults for the rest)."""
        return cls(**{f.name: getattr(p, f"sosd_{f.name}") for f in fields(cls) if hasattr(p, f"sosd_{f.name}")})

    def t_s(self, steps: Sequence[int], values: Sequence[float], **change) -> phases.SoSDPoint:
        """The SoSD point of one ΔΣ curve; ``change`` overrides ``tau``, ``window`` or ``floor_frac``."""
        kw = {"tau": self.tau, "window": self.window, "floor_frac": self.floor_frac, **change}
        return phases.sosd_point(np.asarray(steps), np.asarray(values), **kw)

    def t_l(self, steps: Sequence[int], loss: Sequence[float], **change) -> tuple[float | None, str]:
        """The loss transition of one validation-loss curve; ``change`` overrides ``rule``, ``frac`` or ``thin``."""
        kw = {"rule": self.elbow_rule, "frac": self.elbow_frac, "thin": self.elbow_thin, **change}
        return loss_transition_event(steps, loss, **kw)

    def describe(self) -> str:
        tau = f"τ = {self.tau:.3g} (given)" if self.tau is not None else "τ = √(peak·floor)"
        return f"{tau}, window {self.window}, floor over last {self.floor_frac:.0%}"


def sosd_summary(
    curves: pd.DataFrame,
    val_log: pd.DataFrame,
    rule: SosdRule = SosdRule(),
    *,
    value: str = "rate",
    by: Sequence[str] = (),
) -> pd.DataFrame:
    """Per run (and ``by`` group): t_S on its ΔΣ ``value`` curve, t_L on its validation loss, δ, peak, floor.

    t_S and t_L are placed by ``rule`` (:class:`SosdRule`); δ = log10 t_S − log10 t_L (NaN where either was not
    found). Each event is None when its detector's presence test fails; ``t_S_reason`` and ``t_L_reason`` say why
    it was or was not found, and ``fall_decades`` is log10(peak/floor) of the ΔΣ curve.
    """
    rows = []
    val_key = val_log.set_index(RUN).sort_index()
    for key, g in curves.groupby([*RUN, *by], sort=True):
        key = key if isinstance(key, tuple) else (key,)
        g = g.sort_values("step")
        sp = rule.t_s(g.step.to_numpy(), g[value].to_numpy())
        v = val_key.loc[tuple(key[:3])].sort_values("step")
        t_l, t_l_reason = rule.t_l(v.step.to_numpy(), v.val_loss.to_numpy())
        rows.append(
            {
                **dict(zip([*RUN, *by], key, strict=True)),
                "t_S": sp.point,
                "t_L": t_l,
                "t_cross": sp.crossing,
                "t_S_reason": sp.reason,
                "t_L_reason": t_l_reason,
                "fall_decades": sp.fall_decades,
                "delta": phases.synchronisation(sp.point, t_l),
                "tau": sp.tau,
                "peak": sp.peak,
                "peak_step": sp.peak_step,
                "floor": sp.floor,
                "peak_over_floor": sp.peak_over_floor,
            }
        )
    return pd.DataFrame(rows)


def cos_point(steps: Sequence[int], cos: Sequence[float], threshold: float) -> int | None:
    """First step from which cos(σ_t, σ_T) stays ≥ ``threshold`` (an alternative SoSD point; ≥ 2 points)."""
    return phases.stabilisation_step(steps, cos, threshold=threshold, mode="above", min_run=2)


def _per_run(frame: pd.DataFrame, column: str, event: Callable[[np.ndarray, np.ndarray], object]) -> pd.Series:
    """``event(steps, values)`` of each run's ``column`` curve, in step order, as a Series indexed by run."""
    out = {}
    for key, g in frame.groupby(RUN, sort=True):
        g = g.sort_values("step")
        out[key] = event(g.step.to_numpy(), g[column].to_numpy())
    return pd.Series(out, dtype=object).rename_axis(RUN)


def _sensitivity_row(event: str, rule: str, per_run: pd.Series, other: pd.Series) -> dict:
    """One row of :func:`sensitivity`: ``per_run`` steps of ``event`` summarised, δ taken against ``other``."""
    vals = per_run.astype(float)
    found = vals.dropna()
    pairs = zip(vals, other.reindex(vals.index), strict=True)
    if event == "t_S":
        deltas = np.array([phases.synchronisation(_none(a), _none(b)) for a, b in pairs], dtype=float)
    else:
        deltas = np.array([phases.synchronisation(_none(b), _none(a)) for a, b in pairs], dtype=float)
    return {
        "event": event,
        "rule": rule,
        "median step": float(found.median()) if len(found) else math.nan,
        "min": float(found.min()) if len(found) else math.nan,
        "max": float(found.max()) if len(found) else math.nan,
        "found": f"{len(found)}/{len(vals)}",
        "median δ": float(np.nanmedian(deltas)) if np.isfinite(deltas).any() else math.nan,
    }


def _t_s_variants(
    curves: pd.DataFrame,
    cosines: pd.DataFrame,
    rule: SosdRule,
    windows: Sequence[int],
    floor_fracs: Sequence[float],
    floor_multiples: Sequence[float],
    cos_thresholds: Sequence[float],
) -> Iterable[tuple[str, pd.Series]]:
    """(label, per-run t_S) for each alternative SoSD rule, one choice of ``rule`` changed at a time."""
    for w in windows:
        if w != rule.window:
            yield f"window {w}", _per_run(curves, "rate", lambda s, v, w=w: rule.t_s(s, v, window=w).point)
    for f in floor_fracs:
        if f != rule.floor_frac:
            yield (
                f"floor over last {f:.0%}",
                _per_run(curves, "rate", lambda s, v, f=f: rule.t_s(s, v, floor_frac=f).point),
            )
    for k in floor_multiples:

        def at_multiple(s, v, k=k):
            return rule.t_s(s, v, tau=k * rule.t_s(s, v, tau=None).floor).point

        yield f"τ = {k:g} × floor", _per_run(curves, "rate", at_multiple)
    mean_cos = cosines.groupby([*RUN, "step"], as_index=False).cos_sigma.mean()
    for c in cos_thresholds:
        yield f"cos(σ_t, σ_T) ≥ {c:g}", _per_run(mean_cos, "cos_sigma", lambda s, v, c=c: cos_point(s, v, c))


def _t_l_variants(val_log: pd.DataFrame, rule: SosdRule) -> Iterable[tuple[str, pd.Series]]:
    """(label, per-run t_L) for each elbow rule, and for the chosen rule on the unthinned validation loss."""
    variants = [(r, rule.elbow_thin) for r in ELBOW_RULES]
    if rule.elbow_thin > 0:
        variants.append((rule.elbow_rule, 0.0))
    for r, thin in variants:
        label = {
            "steepest": "two-segment fit from the steepest descent",
            "hinge": "two-segment fit from step 1",
            "derivative": f"−dL/dlog t below {rule.elbow_frac:.0%} of its maximum",
        }[r]
        if thin != rule.elbow_thin:
            label += ", every validation point (not thinned)"
        elif r == rule.elbow_rule:
            label += " (default)"
        yield label, _per_run(val_log, "val_loss", lambda s, v, r=r, thin=thin: rule.t_l(s, v, rule=r, thin=thin)[0])


def sensitivity(
    curves: pd.DataFrame,
    cosines: pd.DataFrame,
    val_log: pd.DataFrame,
    rule: SosdRule = SosdRule(),
    *,
    windows: Sequence[int] = (3, 5, 9),
    floor_multiples: Sequence[float] = (2.0, 3.0),
    cos_thresholds: Sequence[float] = (0.999, 0.9999),
    floor_fracs: Sequence[float] = (0.25, 0.5),
) -> pd.DataFrame:
    """t_S and t_L under alternative rules, each row summarised over runs (median, min, max, found, median δ).

    SoSD rows vary one choice of ``rule`` at a time (smoothing window; floor span; τ = k × floor instead of
    √(peak·floor); the cos(σ_t, σ_T) ≥ c rule on the mean cosine over layer matrices); loss rows change the
    elbow rule, and the chosen rule is also applied to the validation loss without thinning. δ pairs each t_S
    with the default t_L, and each t_L with the default t_S. A given ``rule.tau`` replaces √(peak·floor) in the
    default rule and in the rows that vary the window or the floor span.
    """
    base = sosd_summary(curves, val_log, rule).set_index(RUN)
    base_ts, base_tl = base.t_S, base.t_L
    rows = [_sensitivity_row("t_S", rule.describe() + " (default)", base_ts, base_tl)]
    for label, per_run in _t_s_variants(curves, cosines, rule, windows, floor_fracs, floor_multiples, cos_thresholds):
        rows.append(_sensitivity_row("t_S", label, per_run, base_tl))
    runs = val_log.set_index(RUN).index.isin(base_ts.index)
    for label, per_run in _t_l_variants(val_log[runs], rule):
        rows.append(_sensitivity_row("t_L", label, per_run, base_ts))
    return pd.DataFrame(rows)


def _none(x: object) -> float | None:
    if x is None:
        return None
    x = float(x)  # type: ignore[arg-type]
    return None if math.isnan(x) else x


# ---------------------------------------------------------------------------------------------------------
# the engine's weights table (checkpoints)
# ---------------------------------------------------------------------------------------------------------


def checkpoint_spectra(weights: pd.DataFrame) -> pd.DataFrame:
    """Per weights row: cos(σ_t, σ_T) and cos(W_t, W_T), ΔΣ to the previous checkpoint (raw and per step),
    its L1 version and the bound ``2‖ΔW‖_* / ‖W‖_*``.

    Rows keep family, size, seed, step, prev_step, matrix, layer, kind and add group, cos_sigma, cos_w,
    delta, rate, delta_l1, bound (NaN at the first step, which has no previous checkpoint).
    """
    w = weights.sort_values(["family", "size", "seed", "matrix", "step"]).reset_index(drop=True)
    out = w[["family", "size", "seed", "step", "prev_step", "matrix", "layer", "kind"]].copy()
    out["group"] = [group_of(k) for k in out.kind]
    p = [spectrum.distribution(sv) for sv in w.sv]
    last_idx = w.groupby(["family", "size", "seed", "matrix"]).step.transform("idxmax")
    cos_sigma = np.empty(len(w))
    delta = np.full(len(w), np.nan)
    delta_l1 = np.full(len(w), np.nan)
    prev_of = w.groupby(["family", "size", "seed", "matrix"]).cumcount()
    for i in range(len(w)):
        cos_sigma[i] = spectrum.cosine(w.sv[i], w.sv[last_idx[i]])
        if prev_of[i] > 0 and not pd.isna(w.prev_step[i]) and w.prev_step[i] >= 0:
            if w.step[i - 1] != w.prev_step[i]:
                raise LmconvError(
                    f"checkpoint_spectra: {w.matrix[i]} at step {w.step[i]} has prev_step {w.prev_step[i]}, but the "
                    f"table's previous step is {w.step[i - 1]}",
                    "pass the weights table of consecutive analysed steps",
                )
            diff = p[i] - p[i - 1]
            delta[i] = float(np.linalg.norm(diff))
            delta_l1[i] = float(np.abs(diff).sum())
    out["cos_sigma"] = cos_sigma
    out["cos_w"] = w.cos_final.to_numpy()
    out["delta"] = delta
    gap = (w.step - w.prev_step).to_numpy(dtype=float)
    out["gap"] = gap
    out["rate"] = delta / gap
    out["delta_l1"] = delta_l1
    out["bound"] = 2 * w.delta_nuclear.to_numpy(dtype=float) / w.nuclear.to_numpy(dtype=float)
    for col in ("fro", "spectral", "nuclear", "cos_init", "rel_change_init"):
        out[col] = w[col].to_numpy()
    return out


def bound_check(ckpt: pd.DataFrame, rtol: float = 1e-9) -> dict[str, float]:
    """How the measured ΔΣ compares with the bound over all (checkpoint pair, matrix) points.

    ``held`` is the fraction of points with ΔΣ ≤ bound·(1 + rtol) (the inequality says 1); ``held_l1`` the
    same for the L1 distance; ``ratio_median`` / ``ratio_max`` summarise ΔΣ / bound (how loose the bound is).
    """
    d = ckpt.dropna(subset=["delta", "bound"])
    if d.empty:
        raise LmconvError("bound_check: no checkpoint pairs", "the weights table needs at least two steps")
    ratio = d.delta / d.bound
    return {
        "n": len(d),
        "held": float((d.delta <= d.bound * (1 + rtol)).mean()),
        "held_l1": float((d.delta_l1 <= d.bound * (1 + rtol)).mean()),
        "ratio_median": float(ratio.median()),
        "ratio_max": float(ratio.max()),
    }


def saturation_steps(
    ckpt: pd.DataFrame, threshold: float = 0.99, kinds: Sequence[str] = (*ATTENTION_KINDS, *MLP_KINDS)
) -> pd.DataFrame:
    """Per run: the first checkpoint from which the layer-mean cos(σ_t, σ_T), resp. cos(W_t, W_T), stays ≥ threshold."""
    m = ckpt[ckpt.kind.isin(kinds)].groupby([*RUN, "step"], as_index=False)[["cos_sigma", "cos_w"]].mean()
    rows = []
    for key, g in m.groupby(RUN, sort=True):
        g = g.sort_values("step")
        rows.append(
            {
                **dict(zip(RUN, key, strict=True)),
                "spectrum": cos_point(g.step.to_numpy(), g.cos_sigma.to_numpy(), threshold),
                "weights": cos_point(g.step.to_numpy(), g.cos_w.to_numpy(), threshold),
            }
        )
    return pd.DataFrame(rows)


def distribution_curves(
    weights: pd.DataFrame, size: str, steps: Sequence[int], groups: Sequence[str] = ("attention", "mlp")
) -> pd.DataFrame:
    """Σ̂_i against rank i at the given checkpoints for one size: mean over seeds and the group's layer matrices."""
    w = weights[(weights["size"] == size) & weights.step.isin(steps)]
    rows = []
    for (step, kind), g in w.groupby(["step", "kind"]):
        grp = group_of(kind)
        if grp not in groups:
            continue
        p = np.stack([spectrum.distribution(sv) for sv in g.sv])
        rows.append(
            pd.DataFrame({"step": int(step), "group": grp, "rank": np.arange(1, p.shape[1] + 1), "p": p.mean(0)})
        )
    df = pd.concat(rows, ignore_index=True)
    return df.groupby(["step", "group", "rank"], as_index=False).p.mean()


def pick_steps(steps: Sequence[int], n: int = 6) -> list[int]:
    """``n`` checkpoint steps spread evenly in log-step from the first to the last (step 0 always included)."""
    s = np.array(sorted(set(int(x) for x in steps)))
    pos = s[s > 0]
    targets = np.logspace(0, np.log10(pos.max()), n - 1)
    chosen = {int(pos[np.argmin(np.abs(np.log10(pos) - np.log10(t)))]) for t in targets}
    return sorted({int(s[0]), *chosen})


def norm_growth(ckpt: pd.DataFrame, kinds: Sequence[str] = (*ATTENTION_KINDS, *MLP_KINDS)) -> pd.DataFrame:
    """Norms relative to step 0 (``‖W_t‖ / ‖W_0‖`` for the Frobenius, spectral and nuclear norm), mean over
    layer matrices, then a band over seeds (:func:`lmconv.metrics.stats.band`: value = mean, lo–hi = min–max)."""
    d = ckpt[ckpt.kind.isin(kinds)].copy()
    first = d.groupby(["family", "size", "seed", "matrix"]).step.transform("min")
    for col in ("fro", "spectral", "nuclear"):
        base = d[col].where(d.step == first).groupby([d.family, d["size"], d.seed, d.matrix]).transform("max")
        d[col] = d[col] / base
    per_run = d.groupby([*RUN, "step"], as_index=False)[
        ["fro", "spectral", "nuclear", "cos_init", "rel_change_init"]
    ].mean()
    long = per_run.melt(id_vars=[*RUN, "step"], var_name="measure", value_name="value")
    return stats.band(long, "value", ["family", "size", "measure", "step"])


def heatmap_table(deltas: pd.DataFrame, bins: int = 24) -> pd.DataFrame:
    """ΔΣ rate per matrix in log-spaced step bins: mean over records in the bin and over seeds.

    Bin edges are ``bins`` + 1 points evenly spaced in log10(step) from the first to the last record; each bin
    reports its edges (step_lo, step_hi) so it can be drawn with its true width on a log-step axis, and an empty
    bin is absorbed by the occupied bin before it (where records are sparser than the bins).
    """
    d = deltas[deltas.step > 0]
    lo, hi = d.step.min(), d.step.max()
    edges = np.unique(np.round(np.logspace(np.log10(lo), np.log10(hi), bins + 1)).astype(int))
    idx = np.clip(np.searchsorted(edges, d.step.to_numpy(), side="right") - 1, 0, len(edges) - 2)
    d = d.assign(bin=idx)
    g = d.groupby(["family", "size", "matrix", "layer", "kind", "bin"], as_index=False).rate.mean()
    # a bin that holds no record is merged into the occupied bin before it, so the cells leave no gaps
    used = np.unique(idx)
    upper = dict(zip(used, np.r_[edges[used[1:]], edges[-1]], strict=True))
    g["step_lo"] = edges[g.bin]
    g["step_hi"] = g.bin.map(upper)
    order = {k: i for i, k in enumerate(KIND_ORDER)}
    g["row"] = [f"L{layer} {kind}" for layer, kind in zip(g.layer, g.kind, strict=True)]
    g["row_order"] = g.layer * 10 + g.kind.map(order)
    return g.drop(columns="bin")


# ---------------------------------------------------------------------------------------------------------
# chapter 8: the sweep
# ---------------------------------------------------------------------------------------------------------


def sweep_profile_for(profile: str, given: str | None = None) -> str:
    """The sweep suite that goes with a book profile: ``given``, else the profile's ``companions.sweep``."""
    return profiles.companion(profile, "sweep", given)


def arm_factor(profile: profiles.Profile, baseline: str | None = None) -> dict[str, str]:
    """Which single factor each arm changes relative to the baseline (the first arm): schedule, weight decay or
    optimizer; ``baseline`` for the baseline itself. An arm that changes more than one factor raises."""
    base_name = baseline or next(iter(profile.arms))
    base = profile.arm(base_name).train
    out = {}
    for name, arm in profile.arms.items():
        t = arm.train
        diff = []
        if t.schedule != base.schedule:
            diff.append("schedule")
        if t.weight_decay != base.weight_decay:
            diff.append("weight decay")
        if t.optimizer != base.optimizer or t.muon_lr != base.muon_lr:
            diff.append("optimizer")
        others = [
            k
            for k in (
                "steps",
                "batch_size",
                "lr",
                "betas",
                "eps",
                "grad_clip",
                "threads",
                "val_every",
                "val_tokens",
                "spectra_every",
            )
            if getattr(t, k) != getattr(base, k)
        ]
        if others or len(diff) > 1:
            raise LmconvError(
                f"arm {name!r} differs from {base_name!r} in {diff + others}", "change one factor per arm"
            )
        out[name] = diff[0] if diff else "baseline"
    return out


def eta(
    profile: profiles.Profile, arm: str, step_from: Sequence[int], step_to: Sequence[int], kind: str = "hidden"
) -> np.ndarray:
    """Mean learning rate of the updates from ``step_from`` to ``step_to`` (update s takes step s to s + 1).

    ``kind`` "hidden" gives the LR of the layer matrices: ``muon_lr`` under Muon, ``lr`` under AdamW.
    """
    t = profile.arm(arm).train
    base = t.muon_lr if (t.optimizer == "muon" and kind == "hidden") else t.lr
    mult = np.array([t.schedule.multiplier(s, t.steps) for s in range(t.steps + 1)])
    cum = np.concatenate([[0.0], np.cumsum(mult)])
    a, b = np.asarray(step_from, dtype=np.int64), np.asarray(step_to, dtype=np.int64)
    return base * (cum[b] - cum[a]) / np.maximum(b - a, 1)


def branch_steps(profile: profiles.Profile) -> dict[str, int]:
    """The step each branched arm starts from (``branch_from``): its records up to and including that step are
    copies of its parent's log."""
    return {name: int(b["step"]) for name, a in profile.arms.items() if (b := a.train.branch_from)}


def own_records(profile: profiles.Profile, df: pd.DataFrame, arm_col: str = "family") -> pd.DataFrame:
    """``df`` without the rows a branched arm inherited from its parent (``step`` ≤ its branch step), so that
    each stretch of training history is counted once, by the arm that trained it (cf.
    ``lmconv.lenses.annealing.splice``, which adds the parent's rows back where a full history is wanted)."""
    start = df[arm_col].map(branch_steps(profile)).astype(float).fillna(-1.0)
    return df[df.step.to_numpy() > start.to_numpy()]


def scaling_table(
    profile: profiles.Profile, deltas: pd.DataFrame, norms: pd.DataFrame, *, own_history_only: bool = True
) -> pd.DataFrame:
    """One row per (run, matrix, record pair): log10 ΔΣ rate and log10(η/‖W_t‖) for ‖W‖ = nuclear, Frobenius
    and spectral norm at the *earlier* record t; η is the mean LR over the updates between the records.

    A branched arm's log starts with a copy of its parent's records; with ``own_history_only`` (the default)
    its record pairs up to the branch step are dropped (:func:`own_records`), so they count once, for the
    parent. The pair that ends at the branch step is the parent's; the first after it is the branch's own."""
    if own_history_only:
        deltas = own_records(profile, deltas)
    n = norms.rename(columns={"step": "prev_step"})[
        ["family", "size", "seed", "prev_step", "matrix", "fro", "spectral", "nuclear"]
    ]
    d = deltas.merge(n, on=["family", "size", "seed", "prev_step", "matrix"], how="left")
    d["eta"] = 0.0
    for fam, idx in d.groupby("family").groups.items():
        sub = d.loc[idx]
        d.loc[idx, "eta"] = eta(profile, str(fam), sub.prev_step.to_numpy(), sub.step.to_numpy())
    opt = {name: a.train.optimizer for name, a in profile.arms.items()}
    d["optimizer"] = d.family.map(opt)
    d = d[(d.rate > 0) & (d.eta > 0)].copy()
    d["y"] = np.log10(d.rate)
    for col in ("nuclear", "fro", "spectral"):
        d[f"x_{col}"] = np.log10(d.eta / d[col])
    return d


def _moments(x: np.ndarray, y: np.ndarray, group: np.ndarray, run: np.ndarray, n_group: int, n_run: int) -> np.ndarray:
    """Per (run, group) sums n, Σx, Σy, Σx², Σxy, Σy²: shape (6, n_run, n_group)."""
    cell = run * n_group + group
    size = n_run * n_group
    out = [np.bincount(cell, weights=w, minlength=size) for w in (np.ones_like(x), x, y, x * x, x * y, y * y)]
    return np.stack(out).reshape(6, n_run, n_group)


def _fe_from_moments(m: np.ndarray) -> tuple[float, float]:
    """Slope and within-R² of y on x with one intercept per group, from summed moments (6, n_group)."""
    n, sx, sy, sxx, sxy, syy = m
    ok = n > 0
    nn = np.where(ok, n, 1)
    cxx = np.where(ok, sxx - sx * sx / nn, 0).sum()
    cxy = np.where(ok, sxy - sx * sy / nn, 0).sum()
    cyy = np.where(ok, syy - sy * sy / nn, 0).sum()
    if cxx <= 0:
        return math.nan, math.nan
    b = cxy / cxx
    return float(b), float(1 - (cyy - b * cxy) / cyy) if cyy > 0 else math.nan


EXACT_MAX_CLUSTERS = 5  # up to this many seeds the bootstrap enumerates every distinct resample


def cluster_resamples(k: int) -> int:
    """Number of distinct bootstrap resamples of ``k`` clusters (multisets of size k): C(2k − 1, k)."""
    return math.comb(2 * k - 1, k) if k > 0 else 0


def _exact_resamples(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Every distinct resample of ``k`` clusters as counts (n, k) and its bootstrap probability (n,):
    k! / (c_1! ⋯ c_k!) / k^k, the chance that k draws with replacement give those counts."""
    counts = np.array(
        [np.bincount(c, minlength=k) for c in itertools.combinations_with_replacement(range(k), k)], dtype=float
    )
    logp = math.lgamma(k + 1) - np.sum([[math.lgamma(c + 1) for c in row] for row in counts], axis=1)
    return counts, np.exp(logp - k * math.log(k))


def _weighted_quantiles(v: np.ndarray, w: np.ndarray, qs: Sequence[float]) -> list[float]:
    """Quantiles of the discrete distribution with values ``v`` and weights ``w``: the smallest value whose
    cumulative weight reaches q (NaN values dropped and the weights renormalised)."""
    ok = np.isfinite(v)
    if not ok.any():
        return [math.nan for _ in qs]
    order = np.argsort(v[ok])
    vs, cw = v[ok][order], np.cumsum(w[ok][order])
    cw = cw / cw[-1]
    return [float(vs[min(np.searchsorted(cw, q - 1e-12), vs.size - 1)]) for q in qs]


def scaling_fit(
    table: pd.DataFrame,
    norm: str = "nuclear",
    n_boot: int = 1000,
    seed: int = 0,
    cluster: Sequence[str] = ("seed",),
    exact_max: int = EXACT_MAX_CLUSTERS,
) -> dict[str, float | int | str]:
    """Slope b of log10 ΔΣ = a_(matrix, optimizer) + b·log10(η/‖W‖) + ε, and its 95% percentile interval.

    One intercept per (matrix, optimizer) absorbs shape constants. Pass a table with each record counted once
    (:func:`scaling_table` drops a branched arm's copy of its parent's history). The interval is a percentile
    bootstrap over seeds (``cluster`` columns): seeds are drawn with replacement and the same fit is made on all
    the rows of the seeds drawn, every arm's records of a seed together, since the arms of a seed share its
    initialisation and data order, and a branched arm its parent's state. With k seeds there are only
    C(2k − 1, k) distinct resamples (3 for 2 seeds, 10 for 3): up to ``exact_max`` seeds all of them are
    enumerated and weighted by their bootstrap probability (``n_boot`` is then not used), beyond that ``n_boot``
    random resamples are drawn. With 2 seeds the interval is the range of the two single-seed fits; with one
    seed, or ``n_boot`` 0, there is none (NaN).

    Returns slope, lo, hi, the within-R² of the fit, the number of points (n), runs and seeds (clusters), and
    how the interval was made: ``interval`` ("exact", "random" or "none"), ``resamples`` (how many fits),
    ``level`` (0.95, nominal) and ``method`` (a short label; :func:`interval_text` says it in a sentence).
    """
    x = table[f"x_{norm}"].to_numpy(dtype=float)
    y = table.y.to_numpy(dtype=float)
    group = pd.factorize(table.matrix.astype(str) + "|" + table.optimizer.astype(str))[0]
    run_cols = [c for c in RUN if c in table.columns]
    n_runs = int(table[run_cols].drop_duplicates().shape[0]) if len(table) else 0
    labels = table[list(cluster)].astype(str).agg("|".join, axis=1)
    clu = pd.factorize(labels)[0]
    n_clu, n_group = int(clu.max()) + 1, int(group.max()) + 1
    mom = _moments(x, y, group, clu, n_group, n_clu)  # (6, clusters, groups)
    b, r2 = _fe_from_moments(mom.sum(axis=1))
    lo = hi = math.nan
    how, n_fits = "none", 0
    if n_clu >= 2 and n_boot > 0:
        if n_clu <= exact_max:
            counts, w = _exact_resamples(n_clu)
            how = "exact"
        else:
            rng = np.random.default_rng(seed)
            counts = np.stack([np.bincount(rng.integers(0, n_clu, size=n_clu), minlength=n_clu) for _ in range(n_boot)])
            counts, w = counts.astype(float), np.ones(n_boot)
            how = "random"
        boots = np.array([_fe_from_moments(np.einsum("r,krg->kg", c, mom))[0] for c in counts])
        n_fits = len(boots)
        if how == "exact":
            lo, hi = _weighted_quantiles(boots, w, (0.025, 0.975))
        elif np.isfinite(boots).any():
            lo, hi = (float(v) for v in np.nanpercentile(boots, [2.5, 97.5]))
    return {
        "slope": b,
        "lo": float(lo),
        "hi": float(hi),
        "r2_within": r2,
        "n": len(table),
        "runs": n_runs,
        "seeds": n_clu,
        "interval": how,
        "resamples": n_fits,
        "level": 0.95,
        "method": {
            "exact": f"percentile bootstrap over {n_clu} seeds, all {n_fits} distinct resamples",
            "random": f"percentile bootstrap over {n_clu} seeds, {n_fits} resamples",
            "none": "no interval",
        }[how],
    }


def scaling_points(table: pd.DataFrame, norm: str = "nuclear", bins: int = 30) -> pd.DataFrame:
    """Binned means for the scaling figure: x and y demeaned within (matrix, optimizer), then averaged in
    ``bins`` equal-count x-bins per arm (family)."""
    g = table.matrix.astype(str) + "|" + table.optimizer.astype(str)
    d = pd.DataFrame(
        {
            "family": table.family.to_numpy(),
            "x": (table[f"x_{norm}"] - table[f"x_{norm}"].groupby(g).transform("mean")).to_numpy(),
            "y": (table.y - table.y.groupby(g).transform("mean")).to_numpy(),
        }
    )
    out = []
    for fam, sub in d.groupby("family"):
        q = pd.qcut(sub.x.rank(method="first"), min(bins, len(sub)), labels=False)
        m = sub.groupby(q).agg(x=("x", "mean"), y=("y", "mean"), n=("x", "size")).reset_index(drop=True)
        m["family"] = fam
        out.append(m)
    return pd.concat(out, ignore_index=True)


def window_ratio(curves: pd.DataFrame, profile: profiles.Profile, decay_fraction: float = 0.2) -> pd.DataFrame:
    """Per run: mean ΔΣ rate over the last ``decay_fraction`` of training over its mean in the window of equal
    length just before (how much a late LR decay lowers ΔΣ)."""
    rows = []
    for key, g in curves.groupby(RUN, sort=True):
        total = profile.arm(key[0]).train.steps
        start = total * (1 - decay_fraction)
        late = g[g.step > start].rate.mean()
        before = g[(g.step > start - decay_fraction * total) & (g.step <= start)].rate.mean()
        rows.append({**dict(zip(RUN, key, strict=True)), "late": late, "before": before, "ratio": late / before})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------------
# small aggregations for the charts
# ---------------------------------------------------------------------------------------------------------


def log_bin(df: pd.DataFrame, values: Sequence[str], by: Sequence[str], bins: int = 40) -> pd.DataFrame:
    """Average ``values`` within ``bins`` log-spaced step bins per ``by`` group; ``step`` becomes the mean step
    of the records in the bin (bins with no record are dropped). Keeps charts of dense records small."""
    d = df[df.step > 0]
    edges = np.logspace(np.log10(d.step.min()), np.log10(d.step.max()), bins + 1)
    edges[-1] += 1
    d = d.assign(_bin=np.clip(np.searchsorted(edges, d.step.to_numpy(), side="right") - 1, 0, bins - 1))
    out = d.groupby([*by, "_bin"], as_index=False, sort=True).agg(
        step=("step", "mean"), **{v: (v, "mean") for v in values}
    )
    return out.drop(columns="_bin")


LAYER_KINDS = (*ATTENTION_KINDS, *MLP_KINDS)


def phase_levels(curves: pd.DataFrame, events: pd.DataFrame, by: str = "group", at: str = "t_S") -> pd.DataFrame:
    """Mean ΔΣ rate of each ``by`` curve before and after its run's split step (phase I and phase II).

    ``curves`` come from :func:`run_curves` with ``by=[by]``; ``events`` from :func:`sosd_summary` on the run's
    overall curve, so every group of a run is split at the same step: column ``at`` (t_S by default, or
    the column :func:`split_steps` adds). Runs without a split step are left out (no columns when none has one).
    """
    ts = events.set_index(RUN)[at]
    rows = []
    for key, g in curves.groupby([*RUN, by], sort=True):
        t = ts.get(tuple(key[:3]))
        if t is None or pd.isna(t):
            continue
        rows.append(
            {
                **dict(zip([*RUN, by], key, strict=True)),
                "phase I": float(g[g.step <= t].rate.mean()),
                "phase II": float(g[g.step > t].rate.mean()),
            }
        )
    return pd.DataFrame(rows, columns=[*RUN, by, "phase I", "phase II"])


def split_steps(events: pd.DataFrame) -> pd.DataFrame:
    """``events`` with a column ``t_split``: the SoSD point where it was found, else the step where the
    smoothed ΔΣ last falls below τ (``t_cross``, a descriptive split when ΔΣ has no floor), and ``split_by``
    saying which ("t_S", "τ crossing" or None)."""
    out = events.copy()
    ts = pd.to_numeric(out.t_S, errors="coerce")
    tc = pd.to_numeric(out.get("t_cross", pd.Series(np.nan, index=out.index)), errors="coerce")
    out["t_split"] = ts.fillna(tc)
    out["split_by"] = np.where(ts.notna(), "t_S", np.where(tc.notna(), "τ crossing", None))
    return out


def growth_after(
    ckpt: pd.DataFrame, events: pd.DataFrame, kinds: Sequence[str] = LAYER_KINDS, at: str = "t_S"
) -> pd.DataFrame:
    """Per run: how much the weights still change after the split step (column ``at``, t_S by default), at the
    first checkpoint ``t_star`` ≥ it vs the last (T).

    Columns: t_star; nuclear_growth = mean over layer matrices of the nuclear norm at T over that at t_star,
    minus 1; cos_w = mean cos(W_t_star, W_T); cos_sigma = mean cos(σ_t_star, σ_T).
    """
    d = ckpt[ckpt.kind.isin(kinds)]
    rows = []
    for key, g in d.groupby(RUN, sort=True):
        ev = events.set_index(RUN)[at].get(key)
        if ev is None or pd.isna(ev):
            continue
        steps = np.sort(g.step.unique())
        later = steps[steps >= ev]
        if later.size < 2:
            continue
        t_star, t_end = int(later[0]), int(steps[-1])
        a = g[g.step == t_star].set_index("matrix")
        b = g[g.step == t_end].set_index("matrix")
        rows.append(
            {
                **dict(zip(RUN, key, strict=True)),
                "t_star": t_star,
                "nuclear_growth": float((b.nuclear / a.nuclear).mean() - 1),
                "cos_w": float(a.cos_w.mean()),
                "cos_sigma": float(a.cos_sigma.mean()),
            }
        )
    return pd.DataFrame(rows, columns=[*RUN, "t_star", "nuclear_growth", "cos_w", "cos_sigma"])


# Costs measured on the project's 2-core machine (batch 16 × 128 tokens, tcmalloc, no other load), used to plan
# the sweep: seconds per training step per run, by (hidden, layers), and seconds of svdvals per spectra record
# (all layer matrices of the d96/L3 model).
STEP_SECONDS = {(32, 2): 0.035, (96, 3): 0.075, (192, 4): 0.18}
SVD_SECONDS_PER_RECORD = 0.013


def arm_table(profile: profiles.Profile) -> pd.DataFrame:
    """One row per arm: the factor it changes, schedule, weight decay, optimizer, LR of the layer matrices, and
    the arm and step it branches from."""
    factor = arm_factor(profile)
    rows = []
    for name, a in profile.arms.items():
        t = a.train
        s = t.schedule
        sched = {
            "cosine": f"cosine to {s.final_ratio:g}×",
            "constant": "constant",
            "wsd": f"linear decay to {s.final_ratio:g}× over the last {s.decay_fraction:.0%}",
            "step": ", ".join(f"×{f:g} at {m:.0%}" for m, f in zip(s.milestones, s.factors, strict=True)),
        }[s.kind]
        b = t.branch_from
        rows.append(
            {
                "arm": name,
                "changes": factor[name],
                "warmup": s.warmup,
                "schedule after warmup": sched,
                "weight decay": t.weight_decay,
                "optimizer": "Muon (layer matrices) + AdamW" if t.optimizer == "muon" else "AdamW",
                "peak LR (layer matrices)": t.muon_lr if t.optimizer == "muon" else t.lr,
                "branched from": f"{b['arm']} at step {b['step']}" if b else "–",
            }
        )
    return pd.DataFrame(rows)


def sweep_budget(
    profile: profiles.Profile, step_seconds: float, svd_seconds: float = SVD_SECONDS_PER_RECORD
) -> dict[str, float]:
    """Planned training time of a sweep: run-equivalents (a branched arm counts for the steps after its branch
    point) × seeds × (steps × ``step_seconds`` + records × ``svd_seconds``)."""
    runs = 0.0
    for a in profile.arms.values():
        t = a.train
        start = int(t.branch_from["step"]) if t.branch_from else 0
        runs += (t.steps - start) / t.steps
    t0 = profile.arm().train
    records = t0.steps / t0.spectra_every if t0.spectra_every else 0
    per_run = t0.steps * step_seconds + records * svd_seconds
    return {
        "run_equivalents": runs,
        "seeds": len(profile.seeds),
        "per_run_s": per_run,
        "total_s": runs * len(profile.seeds) * per_run,
    }


def step_seconds_for(size: profiles.Size) -> float:
    """The measured seconds per step of the closest measured shape (by hidden × layers)."""
    key = min(STEP_SECONDS, key=lambda k: abs(math.log(k[0] * k[1]) - math.log(size.hidden * size.layers)))
    return STEP_SECONDS[key]


def relative_norms(norms: pd.DataFrame, kinds: Sequence[str] = LAYER_KINDS) -> pd.DataFrame:
    """Per run and record: mean over layer matrices of ``‖W_t‖ / ‖W_0‖`` (Frobenius, spectral and nuclear norm),
    from the recorded spectra."""
    d = norms[norms.kind.isin(kinds)].sort_values([*RUN, "matrix", "step"]).copy()
    for col in ("fro", "spectral", "nuclear"):
        d[col] = d[col] / d.groupby([*RUN, "matrix"])[col].transform("first")
    return d.groupby([*RUN, "step"], as_index=False)[["fro", "spectral", "nuclear"]].mean()


def lin_bin(df: pd.DataFrame, values: Sequence[str], by: Sequence[str], width: int) -> pd.DataFrame:
    """Average ``values`` in bins of ``width`` steps per ``by`` group; ``step`` becomes the bin's mean step."""
    d = df.assign(_bin=df.step // width)
    out = d.groupby([*by, "_bin"], as_index=False, sort=True).agg(
        step=("step", "mean"), **{v: (v, "mean") for v in values}
    )
    return out.drop(columns="_bin")


def factor_panels(df: pd.DataFrame, factor: dict[str, str], arm_col: str = "family") -> pd.DataFrame:
    """Repeat rows so that each factor's panel holds its arms plus the baseline (column ``factor``, ``arm``)."""
    base = [a for a, f in factor.items() if f == "baseline"]
    out = []
    for f in FACTORS:
        arms = [a for a, g in factor.items() if g == f]
        if not arms:
            continue
        sub = df[df[arm_col].isin(base + arms)].copy()
        sub["factor"] = f
        out.append(sub)
    res = pd.concat(out, ignore_index=True)
    return res.rename(columns={arm_col: "arm"}) if arm_col != "arm" else res


def complete_seeds(suite) -> list[int]:
    """Seeds whose runs have finished (``suites.run_finished``) in every arm and size of the suite."""
    from ..checkpoints.suites import format_run, run_finished

    prof = suite.profile
    out = [
        k
        for k in prof.seeds
        if all(run_finished(suite.source.root / format_run(a, s, k)) for a in prof.arms for s in prof.sizes)
    ]
    if not out:
        raise LmconvError(
            f"no seed of the {prof.name!r} suite has finished in every arm",
            f"train it: lmconv train --profile {prof.name}",
        )
    return out


# ---------------------------------------------------------------------------------------------------------
# chapter 8: conclusions written from the numbers (so that a re-run with other parameters cannot contradict them)
# ---------------------------------------------------------------------------------------------------------

SCHEDULE_LABELS = {
    "cosine": "the cosine schedule",
    "constant": "the constant rate",
    "wsd": "WSD",
    "step": "step-wise decay",
}
NORM_SYMBOLS = {"nuclear": "η/‖W‖*", "fro": "η/‖W‖F", "spectral": "η/‖W‖₂"}


def _and(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _trend(x: Sequence[float], y: Sequence[float]) -> str:
    """How ``y`` moves as ``x`` grows: "rises" or "falls" (strictly, at every step), else "mixed"."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xs.size < 2 or not np.isfinite(ys).all():
        return "mixed"
    d = np.diff(ys[np.argsort(xs)])
    return "rises" if (d > 0).all() else "falls" if (d < 0).all() else "mixed"


def interval_text(fit: dict, how: bool = True) -> str:
    """The interval of :func:`scaling_fit` in words: "lo to hi" and, with ``how``, how it was made; "no
    interval" (and why) where there is none."""
    k, r = int(fit["seeds"]), int(fit["resamples"])
    if fit["interval"] == "none" or not (math.isfinite(fit["lo"]) and math.isfinite(fit["hi"])):
        why = f": with {k} seed{'s' if k != 1 else ''} there is nothing to resample" if k < 2 else ""
        return "no interval" + (why if how else "")
    bounds = f"{fit['lo']:.2f} to {fit['hi']:.2f}"
    if not how:
        return bounds
    kept = "every arm's records of a seed kept together"
    if fit["interval"] == "exact":
        text = (
            f"interval {bounds}, the 2.5th and 97.5th percentiles of the slope over all {r} distinct bootstrap "
            f"resamples of the {k} seeds ({kept}), each weighted by its probability"
        )
        return text + ("; with two seeds that is the range of the two single-seed fits" if k == 2 else "")
    return (
        f"interval {bounds}, the 2.5th and 97.5th percentiles of the slope over {r} bootstrap resamples of the "
        f"{k} seeds ({kept})"
    )


def weight_decay_sentence(weight_decay: Sequence[float], final_norm: Sequence[float], floor: Sequence[float]) -> str:
    """Whether the weight-decay arms move the final weight norm and the floor of ΔΣ the way the paper's account
    predicts (norm falls, floor rises as weight decay grows), from one value per arm."""
    if len(set(weight_decay)) < 2:
        return "With a single weight decay the sweep cannot say how weight decay moves the norms and ΔΣ."
    norm, fl = _trend(weight_decay, final_norm), _trend(weight_decay, floor)
    account = "in which weight decay “relaxes” the SoSD scale by holding the norms down"
    if (norm, fl) == ("falls", "rises"):
        return (
            "So as weight decay grows, the final norm falls and the floor of ΔΣ rises: the direction the paper's "
            f"account predicts, {account}."
        )
    if (norm, fl) == ("rises", "falls"):
        return (
            "So as weight decay grows, the final norm rises and the floor of ΔΣ falls: the opposite of what the "
            f"paper's account predicts, {account}."
        )
    words = {"rises": "rises", "falls": "falls", "mixed": "does not move steadily"}
    return (
        f"As weight decay grows, the final norm {words[norm]} and the floor of ΔΣ {words[fl]}: not the pattern of "
        f"the paper's account ({account}: the norm falls and the floor rises), nor its reverse, so these arms do "
        "not settle it."
    )


def scaling_sentence(fit: dict, expected: float = 1.0, norm: str = "nuclear", tol: float | None = None) -> str:
    """Whether the pooled slope of :func:`scaling_fit` says that ΔΣ tracks η/‖W‖ (its interval lies within
    ``expected`` ± ``tol``, by default ``lmconv.findings.claims.PROPORTIONAL_TOL``), grows with it less or more than in
    proportion (the interval lies beyond that margin), runs against it, or cannot tell."""
    from ..findings.claims import PROPORTIONAL_TOL

    tol = PROPORTIONAL_TOL if tol is None else tol
    sym = NORM_SYMBOLS.get(norm, "η/‖W‖")
    b, lo, hi = float(fit["slope"]), float(fit["lo"]), float(fit["hi"])
    if not (math.isfinite(b) and math.isfinite(lo) and math.isfinite(hi)):
        return f"The pooled slope is {b:.2f}, but without an interval these records cannot say how ΔΣ follows {sym}."
    est = f"the pooled slope, {b:.2f} (interval {lo:.2f} to {hi:.2f}),"
    cause = "growing norms and, where the schedule decays, a falling learning rate"
    if lo <= 0 <= hi:
        return f"Whether ΔΣ follows {sym} is open: {est} does not exclude 0."
    if hi < 0:
        return (
            f"ΔΣ does not track {sym}: {est} is negative, so the fall of ΔΣ after its peak is not what {cause} produce."
        )
    if expected - tol <= lo and hi <= expected + tol:
        return (
            f"ΔΣ tracks {sym} from record to record: {est} lies within ±{tol:g} of the {expected:g} the paper's "
            f"account predicts, so the fall of ΔΣ after its peak is what {cause} produce."
        )
    if lo <= expected + tol and hi >= expected - tol:
        return f"Whether ΔΣ follows {sym} in proportion is open: {est} is too wide to tell."
    side = "less" if hi < expected else "more"
    where = "below" if hi < expected else "above"
    return (
        f"ΔΣ grows with {sym} from record to record, but {side} than in proportion: {est} lies {where} the "
        f"{expected:g} the paper's account predicts, so {cause} explain the fall of ΔΣ after its peak only in part."
    )


def transition_sentence(
    t_s: Sequence[float], t_l: Sequence[float], max_ratio: float = 0.5, min_decades: float = 0.05
) -> str:
    """Whether the loss transition follows the SoSD point across arms, from one median t_S and t_L per arm.

    It "does not follow" when log(max/min t_L) ≤ ``max_ratio`` × log(max/min t_S); it "moves with" t_S when it
    moves more and the logarithms correlate (≥ 0.5) across arms; otherwise, or when t_S itself moves less than
    ``min_decades`` decades or fewer than two arms have both, the arms cannot tell.
    """
    s, lv = np.asarray(t_s, dtype=float), np.asarray(t_l, dtype=float)
    ok = np.isfinite(s) & np.isfinite(lv) & (s > 0) & (lv > 0)
    if ok.sum() < 2:
        return "Too few arms have both a SoSD point and a loss transition to say whether one follows the other."
    ls, ll = np.log10(s[ok]), np.log10(lv[ok])
    fs, fl = 10 ** (ls.max() - ls.min()), 10 ** (ll.max() - ll.min())
    spread = f"across arms the median t_S varies by a factor of {fs:.2f} and the median t_L by a factor of {fl:.2f}"
    if ls.max() - ls.min() < min_decades:
        return f"The SoSD point hardly moves across arms ({spread}), too little to say whether the loss follows it."
    if ll.max() - ll.min() <= max_ratio * (ls.max() - ls.min()):
        return f"The loss transition does not follow the SoSD point: {spread}."
    corr = float(np.corrcoef(ls, ll)[0, 1]) if ll.std() > 0 else math.nan
    if corr >= 0.5:
        return (
            f"The loss transition moves with the SoSD point: {spread}, in the same direction (correlation of "
            f"their logarithms {corr:+.2f})."
        )
    return (
        f"The loss transition moves across arms about as much as the SoSD point, but not with it: {spread} "
        f"(correlation of their logarithms {corr:+.2f})."
    )


def branch_sentence(profile: profiles.Profile, t_s: dict[str, float], tol_decades: float = 0.02) -> str:
    """Whether each branched arm keeps its parent's SoSD point (``t_s``: median t_S per arm; the same within
    ``tol_decades`` decades), given that it shares the parent's history up to its branch step."""
    kids = [
        (c, str(a.train.branch_from["arm"]), int(a.train.branch_from["step"]))
        for c, a in profile.arms.items()
        if a.train.branch_from
    ]
    if not kids:
        return ""
    kinds = [profile.arm(c).train.schedule.kind for c, _, _ in kids]
    labels = {
        c: SCHEDULE_LABELS.get(k, c) if kinds.count(k) == 1 else c for (c, _, _), k in zip(kids, kinds, strict=True)
    }

    def val(a: str) -> float:
        v = t_s.get(a)
        return math.nan if v is None or pd.isna(v) else float(v)

    status = {}
    for c, p, _ in kids:
        a, b = val(c), val(p)
        status[c] = (
            "unknown" if not (a > 0 and b > 0) else "same" if abs(math.log10(a / b)) <= tol_decades else "differs"
        )
    (_, p0, s0) = kids[0]
    one_parent = all(p == p0 and s == s0 for _, p, s in kids)
    names = _and([labels[c] for c, _, _ in kids])
    they = "they branch" if len(kids) > 1 else "it branches"
    share = "share" if len(kids) > 1 else "shares"
    if one_parent and all(v == "same" for v in status.values()):
        return (
            f"{names} {share} the {p0} arm's history up to step {s0}, where {they} off, and with it its SoSD point "
            f"(t_S = {val(p0):.0f})."
        )
    if one_parent and all(v == "unknown" for v in status.values()):
        return (
            f"{names} {share} the {p0} arm's history up to step {s0}, where {they} off; whether "
            f"{'they keep' if len(kids) > 1 else 'it keeps'} its SoSD point as well cannot be said, as the point "
            "was not found in them or in their parent."
        )
    if one_parent and all(v == "differs" for v in status.values()):
        own = _and([f"{val(c):.0f}" for c, _, _ in kids])
        return (
            f"{names} {share} the {p0} arm's history up to step {s0}, where {they} off, but not its SoSD point "
            f"(t_S = {own} against {val(p0):.0f}): where ΔΣ settles for good depends on what follows the branch."
        )
    clauses = []
    for c, p, s in kids:
        if status[c] == "same":
            clauses.append(
                f"{labels[c]} keeps the SoSD point of the {p} arm it branches from at step {s} (t_S = {val(p):.0f})"
            )
        elif status[c] == "differs":
            clauses.append(
                f"{labels[c]}, branched from the {p} arm at step {s}, settles at t_S = {val(c):.0f} "
                f"against {val(p):.0f}"
            )
        else:
            clauses.append(
                f"for {labels[c]} (branched from the {p} arm at step {s}) one of the two SoSD points was not found"
            )
    return "Of the branched arms, " + "; ".join(clauses) + "."


# ---------------------------------------------------------------------------------------------------------
# chapter 7's sentences, from the numbers (so a re-run never states what its own numbers contradict)
# ---------------------------------------------------------------------------------------------------------


def fall_by_size(events: pd.DataFrame, sizes: Sequence[str]) -> dict[str, list[float | None]]:
    """Per size, per run: the fall of ΔΣ from peak to floor in decades where a SoSD point was found, else None
    (the evidence of ``lmconv.findings.claims.judge_falls_to_floor``)."""
    found = events.t_S.notna()
    fall = pd.to_numeric(events.fall_decades, errors="coerce")
    return {
        s: [float(f) if ok else None for f, ok in zip(fall[m], found[m], strict=True)]
        for s in sizes
        if (m := (events["size"] == s).to_numpy()).any()
    }


def delta_by_size(events: pd.DataFrame, sizes: Sequence[str]) -> dict[str, list[float]]:
    """Per size, per run: δ = log10 t_S − log10 t_L (NaN where either was not found)."""
    d = pd.to_numeric(events.delta, errors="coerce")
    return {s: list(d[(events["size"] == s).to_numpy()]) for s in sizes if (events["size"] == s).any()}


def common_reason(reasons: Sequence[str]) -> str:
    """The most frequent reason, up to its first colon or parenthesis (the numbers differ between runs); of equally
    frequent ones, the first."""
    heads = [r.split(" (")[0].split(":")[0] for r in reasons if r]
    return max(dict.fromkeys(heads), key=heads.count) if heads else "no reason recorded"  # ties: the first


def timing_sentences(events: pd.DataFrame, schedule: profiles.Schedule, total_steps: int) -> dict[str, str]:
    """Chapter 7's account of t_S and t_L, one sentence per key, from :func:`sosd_summary`'s table.

    ``found``: in how many runs each event was seen (and, when t_S was seen nowhere, the usual reason);
    ``delta``: δ's median and range and the direction in words ("later"/"earlier" by its sign);
    ``lr``: where in training the median t_S falls and the learning rate there (empty when t_S was not seen);
    ``rank``: the Spearman rank correlation of t_S and t_L over the runs that have both. Each value is a whole
    sentence (capitalised, with its full stop) or empty."""
    n = len(events)
    ts = pd.to_numeric(events.t_S, errors="coerce")
    tl = pd.to_numeric(events.t_L, errors="coerce")
    d = pd.to_numeric(events.delta, errors="coerce").dropna()
    k_s, k_l = int(ts.notna().sum()), int(tl.notna().sum())
    out: dict[str, str] = {}
    if k_s:
        out["found"] = (
            f"The SoSD point is found in {k_s} of {n} runs, a median {ts.median():.0f} steps into training; the loss "
            f"transition in {k_l} of {n}, at a median {tl.median():.0f}."
            if k_l
            else f"The SoSD point is found in {k_s} of {n} runs, a median {ts.median():.0f} steps into training; "
            f"the loss transition in none ({common_reason(list(events.t_L_reason))})."
        )
    else:
        out["found"] = (
            f"No run has a SoSD point by this rule (0 of {n}): {common_reason(list(events.t_S_reason))}; the loss "
            f"transition is found in {k_l} of {n} runs" + (f", at a median {tl.median():.0f}." if k_l else ".")
        )
    if len(d):
        med = float(d.median())
        word = "later" if med > 0 else "earlier" if med < 0 else "at the same step as"
        times = f"about {10 ** abs(med):.1f} times {word} than" if med != 0 else word
        out["delta"] = (
            f"Where both are found, δ = log10 t_S − log10 t_L has median {med:+.2f} decades (range {d.min():+.2f} "
            f"to {d.max():+.2f}), so the spectrum settles {times} the loss turns, and t_S comes after t_L in "
            f"{int((d > 0).sum())} of {len(d)} runs."
        )
    else:
        out["delta"] = "δ cannot be computed in any run, since one of the two events is missing in each."
    if k_s:
        t = round(float(ts.median()))
        out["lr"] = (
            f"The SoSD point falls {t / total_steps:.0%} of the way through training, where the schedule has the "
            f"learning rate at {schedule.multiplier(t, total_steps):.0%} of its peak."
        )
    else:
        out["lr"] = ""
    both = ts.notna() & tl.notna()
    if both.sum() >= 3:
        from .activations import spearman

        out["rank"] = (
            f"Across the runs with both, t_S and t_L have Spearman ρ = "
            f"{spearman(ts[both].to_numpy(), tl[both].to_numpy()):.2f}."
        )
    else:
        out["rank"] = "Too few runs have both events for a rank correlation."
    return out


def sensitivity_sentence(sens: pd.DataFrame) -> str:
    """How far the median δ moves when one choice of either rule changes (from :func:`sensitivity`)."""
    parts = []
    for event, what in (("t_S", "the SoSD rule"), ("t_L", "the loss rule")):
        v = pd.to_numeric(sens[sens.event == event]["median δ"], errors="coerce").dropna()
        rules = int((sens.event == event).sum())
        if len(v):
            parts.append(
                f"changing one choice of {what} moves the median δ between {v.min():+.2f} and {v.max():+.2f}"
                f" ({len(v)} of {rules} alternatives give a δ)"
            )
        else:
            parts.append(f"no alternative of {what} gives a δ (one of the events is missing under each)")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def mlp_attention_ratio(deltas: pd.DataFrame, events: pd.DataFrame, sizes: Sequence[str]) -> dict[str, list[float]]:
    """Per size, per run: log10 of the MLP matrices' mean ΔΣ per step over the attention matrices' after the
    run's split step (:func:`split_steps`: t_S, or the τ crossing where ΔΣ has no floor); runs with neither are
    left out. The evidence of ``lmconv.findings.claims.judge_mlp_below_attention``."""
    ev = events if "t_split" in events else split_steps(events)
    levels = phase_levels(run_curves(deltas, by=["group"]), ev, "group", at="t_split")
    if levels.empty:
        return {}
    wide = levels.pivot_table(index=["size", "seed"], columns="group", values="phase II")
    if not {"mlp", "attention"} <= set(wide):
        return {}
    ratio = np.log10(wide["mlp"] / wide["attention"])
    have = set(ratio.index.get_level_values("size"))
    return {s: list(ratio.xs(s, level="size")) for s in sizes if s in have}


def saturation_gap(sat: pd.DataFrame, last_step: int, sizes: Sequence[str]) -> dict[str, list[float]]:
    """Per size, per run: log10(t_W / t_Σ) from :func:`saturation_steps`, a quantity that never saturates counting
    as saturating just after ``last_step``. The evidence of ``lmconv.findings.claims.judge_spectrum_before_weights``."""
    w = np.log10(pd.to_numeric(sat.weights, errors="coerce").fillna(last_step + 1).astype(float))
    s = np.log10(pd.to_numeric(sat.spectrum, errors="coerce").fillna(last_step + 1).astype(float))
    gap = w - s
    return {z: list(gap[(sat["size"] == z).to_numpy()]) for z in sizes if (sat["size"] == z).any()}
