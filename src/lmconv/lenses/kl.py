"""Cross-seed convergence (chapters 2–4): E[conv] from the engine's pair table, its phases, bins, regression, POS.

Rules used throughout (each a choice of ours where the paper left it open; the chapters state them):

- **Cubes.** The engine's long tables become dense arrays per size, ``values[step, replicate, position]``
  (:class:`Cube`): for ``pairs`` the replicates are ordered seed pairs (i, j), i ≠ j, holding
  KL(p_i‖p_j) in nats; with ``direction="symmetric"`` they are unordered pairs {i, j} holding
  (KL(p_i‖p_j) + KL(p_j‖p_i)) / 2. For ``tokens`` columns the replicates are seeds.
- **E[conv]** at a step is −(mean over replicates of the mean over tokens), so every token weighs the same
  (as the paper's code). The mean over ordered pairs equals the mean over symmetrised unordered pairs; only the
  spread differs. Bands are ±1 SD: ``band="pairs"`` (or ``"seeds"``) is the SD over replicates of each
  replicate's token mean; ``band="tokens"`` is the SD over tokens of the replicate-averaged per-token value
  (the paper's main figure).
- **Groups** (frequency bins, surprisal bins, POS) take the mean over the group's tokens per replicate, then as
  above; the band of a group curve is the SD over replicates.
- **Phases** are :func:`lmconv.metrics.phases.kl_phases_by_pair` applied per size to the per-pair curves (mean
  KL over tokens of each pair) and to their mean.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..analysis.cache import TableCache, key_of
from ..chapters import params
from ..data import corpus
from ..data import linguistics as L
from ..data import tokenizer as tok_mod
from ..data.probe import Probe
from ..errors import LmconvError, choose
from ..findings import papers
from ..io import sha256_json
from ..metrics import phases as ph
from ..metrics import stats
from ..metrics.kl import unigram_logprobs
from ..training import profiles

params.register("icl_short", params.int_param(1, 100_000, optional=True))
params.register("icl_long", params.int_param(1, 100_000, optional=True))
params.register("surprisal_ref", params.choice_param(("seed_mean", "first_seed")))
params.register("kl_boot", params.int_param(0, 10_000))
params.register("kl_table_n", params.int_param(1, 50))

DIRECTIONS = ("ordered", "symmetric")
BANDS = ("pairs", "seeds", "tokens")

REGRESSION_CI = 0.95  # central bootstrap interval drawn for the regression coefficients
ICL_ONSET_MARGIN = 0.05  # nats of ICL score from which we say that context helps (ours)
UNIGRAM_SMOOTHING = inspect.signature(unigram_logprobs).parameters["smoothing"].default  # the engine's reference
PHASE_NAMES = {
    "uniform": "(i) uniform",
    "convergence": "(ii) sharp convergence",
    "divergence": "(iii) sharp divergence",
    "reconvergence": "(iv) slow reconvergence",
}


# ---------------------------------------------------------------------------------------------------------
# cubes
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cube:
    """Per-token values of one size as a dense array ``values[step, replicate, position]`` (float64)."""

    size: str
    steps: np.ndarray  # (T,) checkpoint steps, increasing
    reps: tuple  # seed pairs (i, j) for kind "pairs", seeds for kind "seeds"
    kind: str  # "pairs" or "seeds"
    values: np.ndarray  # (T, R, N)

    @property
    def n_tokens(self) -> int:
        return int(self.values.shape[2])

    def rep_curves(self) -> np.ndarray:
        """Mean over tokens per replicate and step, shape (R, T)."""
        return self.values.mean(axis=2).T


def _dense(sub: pd.DataFrame, steps: np.ndarray, rep_index: np.ndarray, n_reps: int, n_pos: int, col: str):
    arr = np.full((len(steps), n_reps, n_pos), np.nan)
    t = np.searchsorted(steps, sub["step"].to_numpy())
    arr[t, rep_index, sub["pos"].to_numpy()] = sub[col].to_numpy(dtype=np.float64)
    if np.isnan(arr).any():
        raise LmconvError(
            f"the table for size {sub['size'].iloc[0]!r} misses {int(np.isnan(arr).sum())} (step, replicate, token) "
            "cells",
            "re-run the analysis for every step and seed (lmconv analyze)",
        )
    return arr


def pair_cubes(pairs: pd.DataFrame, direction: str = "ordered", n_pos: int | None = None) -> dict[str, Cube]:
    """The engine's ``pairs`` table as one :class:`Cube` per size (order of first appearance).

    ``direction="ordered"``: every ordered pair i ≠ j with KL(p_i‖p_j) (both directions, as the paper);
    ``"symmetric"``: every unordered pair {i, j}, i < j, with the mean of the two directions.
    """
    choose("KL direction", direction, DIRECTIONS)
    out = {}
    for size in pd.unique(pairs["size"]):
        sub = pairs[pairs["size"] == size]
        steps = np.unique(sub["step"].to_numpy())
        si, sj = sub["seed_i"].to_numpy(), sub["seed_j"].to_numpy()
        seeds = np.unique(np.concatenate([si, sj]))
        ordered = [(int(a), int(b)) for a in seeds for b in seeds if a != b]
        lookup = np.full((len(seeds), len(seeds)), -1)
        for k, (a, b) in enumerate(ordered):
            lookup[np.searchsorted(seeds, a), np.searchsorted(seeds, b)] = k
        rep = lookup[np.searchsorted(seeds, si), np.searchsorted(seeds, sj)]
        n = int(n_pos if n_pos is not None else sub["pos"].max() + 1)
        arr = _dense(sub, steps, rep, len(ordered), n, "kl")
        reps: list = ordered
        if direction == "symmetric":
            reps = [(a, b) for a, b in ordered if a < b]
            fwd = [ordered.index((a, b)) for a, b in reps]
            bwd = [ordered.index((b, a)) for a, b in reps]
            arr = 0.5 * (arr[:, fwd] + arr[:, bwd])
        out[str(size)] = Cube(str(size), steps, tuple(reps), "pairs", arr)
    return out


def token_cubes(tokens: pd.DataFrame, column: str, n_pos: int | None = None) -> dict[str, Cube]:
    """One column of the engine's ``tokens`` table (e.g. surprisal) as one :class:`Cube` per size (seeds)."""
    out = {}
    for size in pd.unique(tokens["size"]):
        sub = tokens[tokens["size"] == size]
        steps = np.unique(sub["step"].to_numpy())
        seeds = np.unique(sub["seed"].to_numpy())
        n = int(n_pos if n_pos is not None else sub["pos"].max() + 1)
        arr = _dense(sub, steps, np.searchsorted(seeds, sub["seed"].to_numpy()), len(seeds), n, column)
        out[str(size)] = Cube(str(size), steps, tuple(int(s) for s in seeds), "seeds", arr)
    return out


# ---------------------------------------------------------------------------------------------------------
# curves: overall and by token group
# ---------------------------------------------------------------------------------------------------------


def _codes(labels, n: int) -> tuple[np.ndarray, list]:
    """Integer group code per token (-1 = left out) and the group names, in category order if categorical."""
    if labels is None:
        return np.zeros(n, dtype=np.int64), ["all"]
    if isinstance(labels, pd.Categorical):
        return np.asarray(labels.codes, dtype=np.int64), list(labels.categories)
    arr = np.asarray(labels, dtype=object)
    if len(arr) != n:
        raise LmconvError(f"{len(arr)} labels for {n} tokens", "pass one label per probe position")
    keep = np.array([x is not None and not (isinstance(x, float) and math.isnan(x)) for x in arr])
    names = sorted({str(x) for x in arr[keep]})
    lookup = {nm: k for k, nm in enumerate(names)}
    codes = np.array([lookup[str(x)] if k else -1 for x, k in zip(arr, keep, strict=True)], dtype=np.int64)
    return codes, names


def summarise(cube: Cube, labels=None, band: str = "pairs", sign: float = 1.0) -> pd.DataFrame:
    """Mean over each group's tokens per replicate, then mean over replicates, with a ±1 SD band.

    ``labels``: one label per token (None = one group "all"; None/NaN labels leave a token out; a Categorical
    keeps its category order). ``band``: "pairs"/"seeds" = SD over replicates (must match the cube's kind),
    "tokens" = SD over the group's tokens of the replicate-averaged values. ``sign=-1`` turns KL into E[conv].
    Returns size, step, group, value, sd, lo, hi, n_tokens, n_reps, band; empty groups are dropped.
    """
    choose("band", band, BANDS)
    if band != "tokens" and band != cube.kind:
        raise LmconvError(f"band {band!r} on a cube of {cube.kind}", f"use band='{cube.kind}' or 'tokens'")
    codes, names = _codes(labels, cube.n_tokens)
    g = len(names)
    w = np.zeros((cube.n_tokens, g))
    ok = codes >= 0
    w[np.flatnonzero(ok), codes[ok]] = 1.0
    count = w.sum(axis=0)
    present = count > 0
    w, count, names = w[:, present], count[present], [n for n, p in zip(names, present, strict=True) if p]
    rep_group = cube.values @ (w / count)  # (T, R, G)
    mean = rep_group.mean(axis=1)  # (T, G)
    n_reps = cube.values.shape[1]
    if band == "tokens":
        k = cube.values.mean(axis=1)  # (T, N)
        m2 = (k**2) @ (w / count)
        with np.errstate(invalid="ignore", divide="ignore"):
            sd = np.sqrt(np.clip(m2 - mean**2, 0.0, None) * count / (count - 1))
    else:
        sd = rep_group.std(axis=1, ddof=1) if n_reps > 1 else np.full_like(mean, np.nan)
    t, gg = np.meshgrid(np.arange(len(cube.steps)), np.arange(len(names)), indexing="ij")
    val = sign * mean
    return pd.DataFrame(
        {
            "size": cube.size,
            "step": cube.steps[t.ravel()].astype(int),
            "group": np.asarray(names, dtype=object)[gg.ravel()],
            "value": val.ravel(),
            "sd": sd.ravel(),
            "lo": (val - sd).ravel(),
            "hi": (val + sd).ravel(),
            "n_tokens": count[gg.ravel()].astype(int),
            "n_reps": n_reps,
            "band": band,
        }
    )


def econv(cubes: dict[str, Cube], band: str = "pairs", labels: dict | None = None) -> pd.DataFrame:
    """E[conv] = −mean KL per size and step (per group if ``labels[size]`` is given), ±1 SD (see
    :func:`summarise`). The column ``value`` holds E[conv] (≤ 0; higher = more converged)."""
    frames = [summarise(c, None if labels is None else labels[s], band, sign=-1.0) for s, c in cubes.items()]
    return pd.concat(frames, ignore_index=True)


def seed_means(cubes: dict[str, Cube], labels: dict | None = None) -> pd.DataFrame:
    """Mean over tokens per seed, then mean and ±1 SD over seeds, per size and step (per group if labelled)."""
    frames = [summarise(c, None if labels is None else labels[s], "seeds") for s, c in cubes.items()]
    return pd.concat(frames, ignore_index=True)


def relative_to_start(cubes: dict[str, Cube]) -> pd.DataFrame:
    """The size-comparable form: each pair's mean KL divided by its own value at the first step (step 0).

    Returns size, step, value (mean over pairs of the ratio), sd, lo, hi (±1 SD over pairs), kl0 (the mean
    over pairs of the first-step KL).
    """
    rows = []
    for size, c in cubes.items():
        curves = c.rep_curves()  # (R, T)
        rows.append(_band_frame(size, c.steps, curves / curves[:, :1], kl0=float(curves[:, 0].mean())))
    return pd.concat(rows, ignore_index=True)


def _band_frame(size: str, steps: np.ndarray, reps: np.ndarray, **extra) -> pd.DataFrame:
    """size, step, value (mean over replicates, axis 0 of ``reps`` (R, T)), sd, lo, hi (±1 SD) and ``extra``."""
    m = reps.mean(axis=0)
    sd = reps.std(axis=0, ddof=1) if reps.shape[0] > 1 else np.full_like(m, np.nan)
    return pd.DataFrame(
        {"size": size, "step": steps.astype(int), "value": m, "sd": sd, "lo": m - sd, "hi": m + sd, **extra}
    )


def value_at(df: pd.DataFrame, size: str, step: int | None = None, group: str | None = None, col: str = "value"):
    """One number from a curve table: ``col`` at (size, step, group); step None = the last step."""
    sub = df[df["size"] == size]
    if group is not None:
        sub = sub[sub["group"] == group]
    step = int(sub["step"].max()) if step is None else step
    sub = sub[sub["step"] == step]
    if len(sub) != 1:
        raise LmconvError(f"{len(sub)} rows for size={size!r}, step={step}, group={group!r}")
    return float(sub[col].iloc[0])


# ---------------------------------------------------------------------------------------------------------
# phases
# ---------------------------------------------------------------------------------------------------------


def phase_spreads(cubes: dict[str, Cube], rel_tol: float = 0.05) -> dict[str, ph.KLPhaseSpread]:
    """:func:`lmconv.metrics.phases.kl_phases_by_pair` per size on the per-pair curves (mean KL over tokens)."""
    return {s: ph.kl_phases_by_pair(c.steps, c.rep_curves(), rel_tol=rel_tol) for s, c in cubes.items()}


def phase_sensitivity(cubes: dict[str, Cube], **grid) -> pd.DataFrame:
    """The phases each size's pair-mean curve shows under every setting of the detector
    (:func:`lmconv.metrics.phases.kl_phase_sensitivity`; ``grid`` overrides its rel_tols, smooths and zs):
    one row per setting, one column per size, each cell the phases seen ("i ii iii iv", or "none") and, for
    (iv), how many pairs show it."""
    frames = []
    for size, c in cubes.items():
        t = ph.kl_phase_sensitivity(c.steps, c.rep_curves(), **grid)
        t["cell"] = [f"{p} ({n}/{m} pairs iv)" for p, n, m in zip(t.phases, t["pairs (iv)"], t.n_pairs, strict=True)]
        frames.append(t.assign(size=size))
    d = pd.concat(frames, ignore_index=True)
    out = d.pivot_table(index=["rel_tol", "smooth", "z"], columns="size", values="cell", aggfunc="first", sort=False)
    return out[list(cubes)]


def sensitivity_sentence(table: pd.DataFrame, largest: str, smallest: str) -> str:
    """How often, over the settings of :func:`phase_sensitivity`, the largest size shows (iv) and the smallest does
    not: the paper's pattern."""
    n = len(table)

    def shows_iv(col: pd.Series) -> pd.Series:
        return col.str.split(" (", regex=False).str[0].str.split().apply(lambda p: "iv" in p)

    big_iv, small_iv = shows_iv(table[largest]), shows_iv(table[smallest])
    pattern = int((big_iv & ~small_iv).sum())
    return (
        f"Over the {n} settings, the largest size ({largest}) reconverges on its mean curve under {int(big_iv.sum())}, "
        f"the smallest ({smallest}) under {int(small_iv.sum())}, and the paper's pattern (the largest does, the "
        f"smallest does not) holds under {pattern}."
    )


def _fmt_spread(sp: ph.Spread | None, fmt: str = "{:.0f}", n_total: int | None = None) -> str:
    if sp is None:
        return "–"
    s = f"{fmt.format(sp.median)} [{fmt.format(sp.lo)}, {fmt.format(sp.hi)}]"
    return s + (f" ({sp.n}/{n_total} pairs)" if n_total is not None and sp.n != n_total else "")


def phase_table(spreads: dict[str, ph.KLPhaseSpread], total_steps: int) -> pd.DataFrame:
    """Per size: each boundary on the pair-mean curve, then median [min, max] over the pairs showing it.

    Columns: the last step of (i), the trough (end of (ii)), the peak (end of (iii)), the peak as a fraction
    of training, the fall from the peak to the last step (1 − KL_final/KL_peak; "not seen" with the fall when
    it stays within the detector's band), and in how many pairs each of (ii), (iii), (iv) was observed.
    """
    rows = []
    for size, sp in spreads.items():
        m = sp.mean_curve
        n = sp.n_pairs
        rows.append(
            {
                "size": size,
                "(i) ends": f"{m.uniform_end} | {_fmt_spread(sp.uniform_end)}",
                "(ii) trough": f"{m.trough_step} | {_fmt_spread(sp.trough_step, n_total=n)}"
                if m.has_convergence
                else f"not seen | {_fmt_spread(sp.trough_step, n_total=n)}",
                "(iii) peak": f"{m.peak_step} | {_fmt_spread(sp.peak_step, n_total=n)}"
                if m.has_divergence
                else "not seen",
                "peak / training": f"{m.peak_step / total_steps:.0%}" if m.has_divergence else "not seen",
                "(iv) fall from peak": f"{m.fall:.1%} | {_fmt_spread(sp.fall, '{:.1%}', n_total=n)}"
                if m.has_reconvergence and m.fall is not None
                else f"not seen (fall {m.fall:.1%}, within the band)"
                if m.has_divergence and m.fall is not None
                else "not seen",
                "pairs with (ii)/(iii)/(iv)": f"{sp.n_convergence}/{sp.n_divergence}/{sp.n_reconvergence} of {n}",
            }
        )
    return pd.DataFrame(rows).set_index("size")


def phase_spans(spreads: dict[str, ph.KLPhaseSpread]) -> pd.DataFrame:
    """The observed phases of each size's pair-mean curve as (size, phase, start, end) rows, for drawing."""
    rows = []
    for size, sp in spreads.items():
        for key, span in sp.mean_curve.spans().items():
            if span is not None and span[1] > span[0]:
                rows.append({"size": size, "phase": PHASE_NAMES[key], "start": span[0], "end": span[1]})
    return pd.DataFrame(rows, columns=["size", "phase", "start", "end"])


def paper_comparison(spreads: dict[str, ph.KLPhaseSpread], total_steps: int) -> pd.DataFrame:
    """The paper's three lines (16, 256, 2000 of 143,000 steps) beside our detected boundaries, in steps and
    as a fraction of training. Our boundaries: end of (i) = ``uniform_end``; (ii)→(iii) = the trough (or the
    end of (i) when (ii) is not seen); (iii)→(iv) = the peak (None when (iii) is not seen)."""
    names = ("(i)→(ii)", "(ii)→(iii)", "(iii)→(iv)")
    rows = []
    for name, line in zip(names, papers.KL_PHASE_LINES, strict=True):
        row = {"boundary": name, "paper: step": line, "paper: fraction": line / papers.PYTHIA_STEPS}
        for size, sp in spreads.items():
            m = sp.mean_curve
            step = {
                "(i)→(ii)": m.uniform_end,
                "(ii)→(iii)": m.trough_step if m.has_convergence else m.uniform_end,
                "(iii)→(iv)": m.peak_step if m.has_divergence else None,
            }[name]
            row[f"{size}: step"] = step
            row[f"{size}: fraction"] = None if step is None else step / total_steps
        rows.append(row)
    return pd.DataFrame(rows).set_index("boundary")


# ---------------------------------------------------------------------------------------------------------
# in-context learning, learning rate
# ---------------------------------------------------------------------------------------------------------


def icl_windows(context: int, short: int | None = None, long: int | None = None) -> tuple[int, int]:
    """(short, long) context-length cut-offs: defaults ⌊context/8⌋ and ⌊3·context/4⌋ (16 and 96 for 128)."""
    s = short if short is not None else max(1, context // 8)
    lg = long if long is not None else (3 * context) // 4
    if not 1 <= s < lg <= context:
        raise LmconvError(
            f"ICL cut-offs need 1 ≤ short < long ≤ context ({context}); got short={s}, long={lg}",
            "pass icl_short and icl_long within the probe context",
        )
    return s, lg


def icl_scores(
    surprisal: dict[str, Cube], context_len: np.ndarray, target_id: np.ndarray, short: int, long: int
) -> pd.DataFrame:
    """In-context-learning score per size and step, type-matched (ours), in nats (positive = context helps).

    Rule: the *short* set holds the probe targets with context length ≤ ``short``, the *long* set those with
    context length ≥ ``long``. For each target of the short set whose token type also occurs in the long set, take
    its surprisal minus the mean surprisal of the same token type in the long set; the score is the mean of these
    differences, per seed, then mean and ±1 SD over seeds. Matching by type removes the difference in token mix
    between the sets (a model that ignores context, uniform or unigram, scores exactly 0); the paper instead
    compares one token under two contexts, which our probe (each token scored once) cannot.
    Also returns the plain set means ``short`` and ``long`` (mean over seeds) and the set sizes.
    """
    cl, tid = np.asarray(context_len), np.asarray(target_id)
    s_mask, l_mask = cl <= short, cl >= long
    if not s_mask.any() or not l_mask.any():
        raise LmconvError(f"no probe targets with context ≤ {short} or ≥ {long}", "change icl_short / icl_long")
    types, inv = np.unique(tid, return_inverse=True)
    long_count = np.bincount(inv[l_mask], minlength=len(types))
    matched = s_mask & (long_count[inv] > 0)
    if not matched.any():
        raise LmconvError("no token type occurs in both the short- and the long-context set", "widen the cut-offs")
    rows = []
    for size, c in surprisal.items():
        t_n, r_n, _ = c.values.shape
        score = np.empty((t_n, r_n))
        for t in range(t_n):
            for k in range(r_n):
                v = c.values[t, k]
                long_sum = np.bincount(inv[l_mask], weights=v[l_mask], minlength=len(types))
                long_mean = long_sum / np.maximum(long_count, 1)
                score[t, k] = float(np.mean(v[matched] - long_mean[inv[matched]]))
        rows.append(
            _band_frame(
                size,
                c.steps,
                score.T,
                short=c.values[:, :, s_mask].mean(axis=(1, 2)),
                long=c.values[:, :, l_mask].mean(axis=(1, 2)),
                n_short=int(s_mask.sum()),
                n_matched=int(matched.sum()),
                n_long=int(l_mask.sum()),
            )
        )
    return pd.concat(rows, ignore_index=True)


def pythia_lr(step: np.ndarray, peak: float, minimum: float) -> np.ndarray:
    """PolyPythia LR as the paper's plot code draws it: linear warmup over 1% of 143,000 steps, then a cosine
    from ``peak`` to ``minimum`` whose phase is step/(143,000 − warmup) (the code does not subtract warmup)."""
    s = np.asarray(step, dtype=float)
    w, total = papers.PYTHIA_WARMUP, papers.PYTHIA_STEPS
    cos = minimum + (peak - minimum) * 0.5 * (1 + np.cos(np.pi * np.minimum(s / (total - w), 1.0)))
    return np.where(s < w, peak * s / w, cos)


def lr_curves(profile: profiles.Profile, arm: str | None = None, points: int = 240) -> pd.DataFrame:
    """Our LR (the profile's schedule) and the five PolyPythia LRs, on log-spaced steps (with step 0).

    Returns model, step, lr, fraction (of each run's training). The LR at step s is the one of the update that
    takes the weights from s to s + 1.
    """
    a = profile.arm(arm)
    total = a.train.steps
    ours = np.unique(np.concatenate([[0], np.geomspace(1, total, points).round()])).astype(int)
    rows = [
        pd.DataFrame(
            {
                "model": f"ours ({a.family})",
                "step": ours,
                "lr": [a.train.lr * a.train.schedule.multiplier(int(s), total) for s in ours],
                "fraction": ours / total,
            }
        )
    ]
    ps = np.unique(np.concatenate([[0], np.geomspace(1, papers.PYTHIA_STEPS, points).round()])).astype(int)
    for name, (peak, minimum) in papers.PYTHIA_LR.items():
        rows.append(
            pd.DataFrame(
                {
                    "model": f"pythia-{name}",
                    "step": ps,
                    "lr": pythia_lr(ps, peak, minimum),
                    "fraction": ps / papers.PYTHIA_STEPS,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


# ---------------------------------------------------------------------------------------------------------
# token labels: frequency and final surprisal
# ---------------------------------------------------------------------------------------------------------


def is_most_convergent(curves: pd.DataFrame, sizes: Sequence[str], groups: Sequence[str], group: str) -> bool:
    """Whether ``group`` has the highest E[conv] at the last step among ``groups`` in every one of ``sizes``."""
    return all(max(groups, key=lambda b, s=s: value_at(curves, s, group=b)) == group for s in sizes)


def frequency_labels(counts: np.ndarray, target_ids: np.ndarray) -> pd.Categorical:
    """Decade bin of each target's training-split count (:func:`lmconv.data.linguistics.frequency_bins`)."""
    return L.frequency_bins(counts, target_ids)


def frequency_bin_table(labels: pd.Categorical) -> pd.DataFrame:
    """Each decade bin with its true range, the label the paper's code gave it, and our probe tokens in it."""
    counts = pd.Series(labels).value_counts().reindex(labels.categories, fill_value=0)
    return pd.DataFrame(
        {
            "bin (true range of the count)": list(labels.categories),
            "paper's label": list(papers.KL_FREQ_LABELS),
            "probe tokens": counts.to_numpy().astype(int),
        }
    ).set_index("bin (true range of the count)")


def final_surprisal(surprisal: Cube, ref: str = "seed_mean") -> np.ndarray:
    """Each token's surprisal at the last step of the same size: the mean over seeds (``seed_mean``, ours) or
    the first seed's (``first_seed``, the paper's seed-1 choice)."""
    choose("final-surprisal reference", ref, ("seed_mean", "first_seed"))
    last = surprisal.values[-1]  # (seeds, N)
    return last.mean(axis=0) if ref == "seed_mean" else last[0]


def surprisal_labels(surprisal: dict[str, Cube], ref: str = "seed_mean") -> dict[str, pd.Categorical]:
    """Per size, :func:`lmconv.data.linguistics.surprisal_bins` of :func:`final_surprisal`."""
    return {s: L.surprisal_bins(final_surprisal(c, ref)) for s, c in surprisal.items()}


# ---------------------------------------------------------------------------------------------------------
# regression of per-token KL on frequency, POS and size
# ---------------------------------------------------------------------------------------------------------


def _one_hot(values: np.ndarray, prefix: str, reference: str, min_count: int) -> tuple[np.ndarray, list[str]]:
    """Dummy columns for every level except ``reference``; levels with < ``min_count`` tokens fold into "other"."""
    v = np.asarray(values, dtype=object).astype(str)
    levels, counts = np.unique(v, return_counts=True)
    rare = set(levels[counts < min_count]) - {reference}
    v = np.where(np.isin(v, list(rare)), "other", v)
    levels = [lv for lv in sorted(set(v)) if lv != reference]
    cols = np.stack([(v == lv).astype(float) for lv in levels], axis=1) if levels else np.zeros((len(v), 0))
    return cols, [f"{prefix}: {lv}" for lv in levels]


def _seed_weights(cube: Cube, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, R) weights of a cube's ordered seed pairs under resampled seeds; draws with < 2 distinct seeds
    are redrawn (a seed resample of one repeated seed has no pair)."""
    pairs = [tuple(int(v) for v in p) for p in cube.reps]
    out = np.zeros((n_boot, len(pairs)))
    for b in range(n_boot):
        while not out[b].any():
            out[b] = stats.seed_pair_weights(pairs, 1, int(rng.integers(2**31)))[0]
    return out


def _solve_weighted(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    xw = x * weights[:, None]
    return np.linalg.lstsq(xw.T @ x, xw.T @ y, rcond=None)[0]


@dataclass(frozen=True)
class Regression:
    """Per-step least-squares coefficients and their bootstrap spread (see :func:`regression`)."""

    coef: pd.DataFrame  # step, term, coef, lo, hi, sd
    terms: list[str]
    reference: dict[str, str]
    n_rows: int
    n_boot: int


def regression(
    cubes: dict[str, Cube],
    frequency: np.ndarray,
    current: np.ndarray,
    context: np.ndarray,
    *,
    n_boot: int = 200,
    seed: int = 0,
    reference_pos: str = "NOUN",
    min_count: int = 20,
    ci: float = 0.95,
    pos: bool = True,
    docs: np.ndarray | None = None,
) -> Regression:
    """Per step, ordinary least squares of per-token E[conv] (= −KL averaged over seed pairs) on
    log10(1 + training count), one-hot current (target) UPOS, one-hot context UPOS and one-hot size.

    Rows are (size, token) over every size; the reference levels (no dummy) are ``reference_pos`` for both POS
    sets and the first size, and POS levels with fewer than ``min_count`` tokens fold into "other". Because every
    seed pair shares the design matrix, the coefficients equal those of the paper's regression over every
    (token, ordered pair) row. α is the "log10 frequency" coefficient (E[conv] per decade of frequency: positive =
    frequent tokens converge more); δ are the "size: …" coefficients (E[conv] relative to the first size).
    Uncertainty: ``n_boot`` bootstrap resamples that draw the probe's documents (``docs``, one id per token;
    without it every token is its own document) with replacement — a token weighs as often as its document is
    drawn, the same for every size so sizes stay paired — and, independently, the seeds of each size (an
    ordered pair (i, j) then weighs count(i)·count(j), :func:`lmconv.metrics.stats.seed_pair_weights`), so that neither
    the tokens of one document nor the pairs sharing a seed count as independent; resamples left with fewer
    than two distinct seeds are redrawn. ``lo``/``hi`` are the central ``ci`` percentile interval, ``sd`` the
    bootstrap SD.
    ``pos=False`` leaves out both POS sets (frequency and size only), to see how much of α the POS terms take.
    """
    sizes = list(cubes)
    steps = cubes[sizes[0]].steps
    for c in cubes.values():
        if not np.array_equal(c.steps, steps) or c.n_tokens != cubes[sizes[0]].n_tokens:
            raise LmconvError("the sizes' tables have different steps or tokens", "analyse them with one run()")
    n = cubes[sizes[0]].n_tokens
    lf = np.log10(1.0 + np.asarray(frequency, dtype=float))
    cur, cur_names = _one_hot(current, "current", reference_pos, min_count)
    ctx, ctx_names = _one_hot(context, "context", reference_pos, min_count)
    if not pos:
        cur, cur_names, ctx, ctx_names = cur[:, :0], [], ctx[:, :0], []
    tok_part = np.column_stack([lf, cur, ctx])
    blocks, names = [], ["log10 frequency", *cur_names, *ctx_names]
    size_names = [f"size: {s}" for s in sizes[1:]]
    for k, _ in enumerate(sizes):
        dummies = np.zeros((n, len(sizes) - 1))
        if k:
            dummies[:, k - 1] = 1.0
        blocks.append(np.column_stack([np.ones(n), tok_part, dummies]))
    x = np.vstack(blocks)
    terms = ["intercept", *names, *size_names]
    y = np.vstack([-c.values.mean(axis=1).T for c in cubes.values()])  # (S·N, T)

    def solve(weights: np.ndarray | None) -> np.ndarray:
        if weights is None:
            return np.linalg.lstsq(x, y, rcond=None)[0]
        xw = x * weights[:, None]
        return np.linalg.lstsq(xw.T @ x, xw.T @ y, rcond=None)[0]

    beta = solve(None)  # (F, T)
    rng = np.random.default_rng(seed)
    doc_idx = np.unique(np.asarray(docs), return_inverse=True)[1] if docs is not None else np.arange(n)
    n_docs = int(doc_idx.max()) + 1
    kl_by_size = [c.values for c in cubes.values()]  # (T, R, N) each
    pair_w = [_seed_weights(c, n_boot, rng) for c in cubes.values()]  # (n_boot, R) each
    boots = []
    for b in range(n_boot):
        w = np.bincount(rng.integers(0, n_docs, n_docs), minlength=n_docs)[doc_idx].astype(float)
        yb = np.vstack([-np.einsum("r,trn->nt", u[b], v) / u[b].sum() for u, v in zip(pair_w, kl_by_size, strict=True)])
        boots.append(_solve_weighted(x, yb, np.tile(w, len(sizes))))
    rows = []
    a = (1 - ci) / 2
    for f, term in enumerate(terms):
        b = np.stack([bb[f] for bb in boots]) if boots else None
        rows.append(
            pd.DataFrame(
                {
                    "step": steps.astype(int),
                    "term": term,
                    "coef": beta[f],
                    "lo": np.quantile(b, a, axis=0) if b is not None else np.nan,
                    "hi": np.quantile(b, 1 - a, axis=0) if b is not None else np.nan,
                    "sd": b.std(axis=0, ddof=1) if b is not None and n_boot > 1 else np.nan,
                }
            )
        )
    return Regression(
        coef=pd.concat(rows, ignore_index=True),
        terms=terms,
        reference={"pos": reference_pos, "size": sizes[0]},
        n_rows=int(x.shape[0]),
        n_boot=int(n_boot),
    )


# ---------------------------------------------------------------------------------------------------------
# most / least convergent tokens
# ---------------------------------------------------------------------------------------------------------


def show_token(text: str) -> str:
    """A token's text made visible: leading/trailing spaces as ␣, newlines as ⏎, tabs as ⇥."""
    return text.replace(" ", "␣").replace("\n", "⏎").replace("\t", "⇥")


GROUPS = ("most convergent (lowest KL)", "middle", "least convergent (highest KL)")


def token_extremes(
    cube: Cube, targets: pd.DataFrame, tags: np.ndarray, decode, n: int = 10, context_tokens: int = 3, stream=None
) -> pd.DataFrame:
    """The ``n`` probe positions with the lowest, middle and highest KL (mean over pairs) at the last step.

    Positions whose current (target) tag is ``"UNK"`` (separators, whitespace, untagged) are left out, as in the
    paper's table. ``decode`` maps a list of token ids to text; ``stream`` (the probe token stream) gives
    ``context_tokens`` tokens of left context. Returns size, group, rank, token, context, kl, frequency, tag.
    """
    final = cube.values[-1].mean(axis=0)
    tags = np.asarray(tags, dtype=str)
    idx = np.flatnonzero(tags != L.UNK)
    order = idx[np.argsort(final[idx], kind="stable")]
    m = len(order)
    n = min(n, m // 3) if m >= 3 else m
    mid0 = max(0, m // 2 - n // 2)
    picks = {GROUPS[0]: order[:n], GROUPS[1]: order[mid0 : mid0 + n], GROUPS[2]: order[::-1][:n]}
    rows = []
    tid, tix = targets["target_id"].to_numpy(), targets["target_index"].to_numpy()
    freq = targets["frequency"].to_numpy() if "frequency" in targets else np.full(len(targets), np.nan)
    for group, sel in picks.items():
        for rank, p in enumerate(sel, 1):
            ctx = ""
            if stream is not None:
                lo = max(0, int(tix[p]) - context_tokens)
                ctx = show_token(decode([int(t) for t in stream[lo : int(tix[p])]]))
            rows.append(
                {
                    "size": cube.size,
                    "group": group,
                    "rank": rank,
                    "token": show_token(decode([int(tid[p])])),
                    "context": ctx,
                    "kl": float(final[p]),
                    "frequency": int(freq[p]),
                    "tag": str(tags[p]),
                }
            )
    return pd.DataFrame(rows)


def extremes_wide(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`token_extremes` of several sizes side by side: rows (group, rank), one column per size holding
    ``context →token (KL)``."""
    d = df.assign(cell=df["context"].str.slice(-14) + " → " + df["token"] + "  (" + df["kl"].map("{:.3f}".format) + ")")
    wide = d.pivot_table(index=["group", "rank"], columns="size", values="cell", aggfunc="first", sort=False)
    wide = wide.reindex(columns=list(dict.fromkeys(df["size"])))
    wide.columns.name = None
    return wide


# ---------------------------------------------------------------------------------------------------------
# parts of speech
# ---------------------------------------------------------------------------------------------------------

# With Brown gold tags (UPOS) the paper's Penn Treebank groups become their UPOS counterparts: PRP$ and PRP ->
# PRON, DT -> DET, CC -> CCONJ, JJ -> ADJ, IN -> ADP (and SCONJ), TO -> PART, RB -> ADV, MD -> AUX; nouns
# NN/NNS (NOUN) and NNP (PROPN); verbs VB* split into VERB and AUX in UD.
UPOS_GROUPS: dict[str, dict[str, str]] = {
    "other": {t: t for t in ("PRON", "DET", "CCONJ", "ADJ", "ADP", "SCONJ", "PART", "ADV", "AUX")},
    "nouns": {t: t for t in ("NOUN", "PROPN")},
    "verbs": {t: t for t in ("VERB", "AUX")},
    "grouped": {
        **{t: t for t in ("ADJ", "ADP", "DET", "AUX", "PRON")},
        **dict.fromkeys(("NOUN", "PROPN"), "Nouns"),
        "VERB": "Verbs",
    },
}
GROUPINGS = ("grouped", "other", "nouns", "verbs")


def docs_sha(docs: Sequence[corpus.Document]) -> str:
    """sha256 of the documents' ids and texts (the POS cache key)."""
    return sha256_json([[d.id, d.text] for d in docs])


def spacy_words(docs: Sequence[corpus.Document], cache: TableCache | None = None) -> list[list[tuple]]:
    """:func:`lmconv.data.linguistics.spacy_tag` of the documents, computed once and cached (``TableCache("pos")``)
    under the documents' sha256, the spaCy model's name and version and the spaCy version."""
    cache = cache or TableCache("pos")
    try:
        version = importlib.metadata.version("spacy")
    except importlib.metadata.PackageNotFoundError:
        version = "missing"
    model = L.spacy_model_label()
    key = key_of({"docs": docs_sha(docs), "model": model, "spacy": version, "what": "spacy_tag v1"})

    def compute() -> dict[str, pd.DataFrame]:
        tagged = L.spacy_tag(docs)
        rows = [(d, s, e, t, p) for d, toks in enumerate(tagged) for s, e, t, p in toks]
        return {"words": pd.DataFrame(rows, columns=["doc", "start", "end", "tag", "pos"])}

    df = cache.get_or_compute(key, compute, {"model": model, "spacy": version})["words"]
    out: list[list[tuple]] = [[] for _ in docs]
    for d, s, e, t, p in df.itertuples(index=False):
        out[int(d)].append((int(s), int(e), str(t), str(p)))
    return out


@dataclass(frozen=True)
class ProbeTags:
    """A tag for every token of the probe stream (``"UNK"`` for separators, whitespace and untagged tokens)."""

    ptb: np.ndarray  # spaCy's Penn Treebank tag_
    upos: np.ndarray  # spaCy's UPOS pos_
    gold: np.ndarray | None  # Brown gold tags mapped to UPOS (None when the corpus has no gold tags)
    accuracy: dict | None  # lmconv.data.linguistics.spacy_vs_gold on the probe documents
    n_docs: int
    gold_ptb: np.ndarray | None = None  # Brown gold tags mapped to Penn Treebank tags (the paper's groups)

    def stream_tags(self, source: str) -> tuple[np.ndarray | None, np.ndarray]:
        """(PTB tags or None, UPOS tags) of the stream for ``source`` "spacy" or "gold"."""
        choose("POS source", source, ("spacy", "gold"))
        if source == "spacy":
            return self.ptb, self.upos
        if self.gold is None:
            raise LmconvError("this corpus has no gold tags", "use pos_source='spacy'")
        return self.gold_ptb, self.gold


def probe_tags(corpus_spec: str, tokenizer, probe: Probe, accuracy: bool = True) -> ProbeTags:
    """Tag the probe documents (spaCy, cached) and align the tags to the probe stream's tokens by character
    offsets (:func:`lmconv.data.linguistics.align`); Brown gold tags go to UPOS by
    :func:`lmconv.data.linguistics.brown_tags_to_upos` and to Penn Treebank tags by
    :func:`lmconv.data.linguistics.brown_tags_to_ptb` (so both sources fall into the paper's PTB groups); ``accuracy``
    adds :func:`lmconv.data.linguistics.spacy_vs_gold`."""
    docs = corpus.load(corpus_spec, "probe")
    words = spacy_words(docs)
    stream, doc_idx, spans = tok_mod.encode_documents(tokenizer, docs, with_offsets=True)
    if len(stream) != len(probe.stream) or not np.array_equal(stream, probe.stream):
        raise LmconvError("the probe documents do not re-encode to the probe's stream", "use the suite's tokenizer")
    spans_w = [[w[:2] for w in ws] for ws in words]
    ptb = L.align(doc_idx, spans, spans_w, [[w[2] for w in ws] for ws in words])
    upos = L.align(doc_idx, spans, spans_w, [[w[3] for w in ws] for ws in words])
    gold = gold_ptb = acc = None
    if all(d.words for d in docs):
        gold_tags = [L.brown_tags_to_upos([w[2] for w in d.words]) for d in docs]
        gold = L.align(doc_idx, spans, [d.words for d in docs], gold_tags)
        ptb_tags = [L.brown_tags_to_ptb([w[2] for w in d.words]) for d in docs]
        gold_ptb = L.align(doc_idx, spans, [d.words for d in docs], ptb_tags)
        if accuracy:
            acc = L.spacy_vs_gold(docs, words)
    return ProbeTags(ptb, upos, gold, acc, len(docs), gold_ptb)


def position_tags(stream_tags: np.ndarray, targets: pd.DataFrame, position: str = "current") -> np.ndarray:
    """Per probe position, the tag of the target token (``current``) or of the last context token (``context``)."""
    choose("tag position", position, ("current", "context"))
    f = L.current_tags if position == "current" else L.context_tags
    return np.asarray(f(stream_tags, targets["target_index"].to_numpy()), dtype=str)


def tag_groups(ptb: np.ndarray | None, upos: np.ndarray, grouping: str) -> np.ndarray:
    """Group label per token (None = not in the grouping): the paper's PTB groups
    (:func:`lmconv.data.linguistics.pos_group`) when PTB tags are given (spaCy's, or the Brown gold tags mapped by
    :func:`lmconv.data.linguistics.brown_tags_to_ptb`), else their UPOS counterparts ``UPOS_GROUPS`` (a source with
    UPOS tags only)."""
    choose("POS grouping", grouping, GROUPINGS)
    if ptb is not None:
        return np.array([L.pos_group(t, grouping) for t in ptb], dtype=object)
    table = UPOS_GROUPS[grouping]
    return np.array([table.get(t) for t in upos], dtype=object)


def groups_table() -> pd.DataFrame:
    """The tag groups: the paper's Penn Treebank groups, used for spaCy's tags and for the Brown gold tags alike,
    and the Brown tags that fall into each label (:func:`lmconv.data.linguistics.brown_ptb_table`, before the context
    rules of :func:`lmconv.data.linguistics.brown_tags_to_ptb` and the ``-tl`` rule that makes nouns proper); each
    cell lists the drawn labels, a merged label as "Label = tag, tag"."""

    def describe(table: dict[str, str]) -> str:
        labels: dict[str, list[str]] = {}
        for tag, lab in table.items():
            labels.setdefault(lab, []).append(tag)
        return "; ".join(lab if tags == [lab] else f"{lab} = {', '.join(tags)}" for lab, tags in labels.items())

    brown = L.brown_ptb_table().groupby("ptb")["brown"].agg(list).to_dict()

    def from_brown(table: dict[str, str]) -> str:
        labels: dict[str, list[str]] = {}
        for tag, lab in table.items():
            labels.setdefault(lab, []).extend(brown.get(tag, []))
        return "; ".join(f"{lab} ← {', '.join(tags) or '–'}" for lab, tags in labels.items())

    return pd.DataFrame(
        {
            "grouping": list(GROUPINGS),
            "Penn Treebank tags (spaCy)": [describe(L.POS_GROUPS[g]) for g in GROUPINGS],
            "Brown gold tags mapped to them": [from_brown(L.POS_GROUPS[g]) for g in GROUPINGS],
        }
    ).set_index("grouping")


def word_classes(upos: np.ndarray) -> np.ndarray:
    """:func:`lmconv.data.linguistics.word_class` per token, with "other" left out (None)."""
    return np.array([c if (c := L.word_class(t)) != "other" else None for t in upos], dtype=object)


def order_by_last(df: pd.DataFrame, size: str | None = None) -> list[str]:
    """Group names ordered by their value at the last step (highest first), as the paper orders its legends;
    over all sizes the mean of the last-step values."""
    sub = df if size is None else df[df["size"] == size]
    last = sub[sub["step"] == sub["step"].max()]
    return list(last.groupby("group")["value"].mean().sort_values(ascending=False).index)


__all__ = [
    "Cube",
    "ProbeTags",
    "Regression",
    "econv",
    "extremes_wide",
    "final_surprisal",
    "frequency_bin_table",
    "frequency_labels",
    "groups_table",
    "icl_scores",
    "icl_windows",
    "is_most_convergent",
    "lr_curves",
    "order_by_last",
    "pair_cubes",
    "paper_comparison",
    "phase_sensitivity",
    "phase_spans",
    "phase_spreads",
    "phase_table",
    "position_tags",
    "probe_tags",
    "pythia_lr",
    "regression",
    "relative_to_start",
    "seed_means",
    "sensitivity_sentence",
    "spacy_words",
    "summarise",
    "surprisal_labels",
    "tag_groups",
    "token_cubes",
    "token_extremes",
    "value_at",
    "word_classes",
]
