"""Chapter 2, cross-seed convergence (``notebooks/02_kl_convergence.md``): E[conv] between the seeds of each size
over training, its four phases detected by a stated rule and set beside the paper's lines, and the paper's
companion curves (cross-entropy, KL to the uniform and unigram distributions, an ICL score, the learning rate).

Every section glues its numbers for the smallest and the largest size under the suffixes ``_small`` and
``_large``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pandas as pd

from .. import analysis
from ..checkpoints import suites
from ..data import linguistics as L
from ..figures import downstream as FD
from ..figures import kl as F
from ..figures import plots
from ..findings import claims, papers
from ..lenses import downstream as ds
from ..lenses import kl as K
from ..metrics import phases as ph
from ..training import profiles
from . import Glued, analysed, ends, section

PAIR_WORDS = {"ordered": "ordered seed pairs", "symmetric": "unordered seed pairs"}
# how a phase boundary of our pair-mean curve compares with the paper's line, both as a fraction of training
VS_PAPER = {
    "more": "ends later than the paper's",
    "less": "ends earlier than the paper's",
    "same": "ends where the paper's does",
    "missing": "is not seen",
}


@dataclass
class KLConvergenceData:
    """What the chapter reads once: the engine's tables, the KL cubes, the E[conv] curves and the phases."""

    P: SimpleNamespace  # the validated parameters
    r: analysis.Results
    prof: profiles.Profile
    total: int  # training steps
    n_tok: int  # scored probe tokens
    n_pairs: int  # seed pairs per size
    cubes: dict[str, K.Cube]  # KL between seeds, per size
    surprisal: dict[str, K.Cube]  # per seed, per size
    curves: dict[str, pd.DataFrame]  # E[conv] with its band over "tokens" and over "pairs"
    spreads: dict[str, ph.KLPhaseSpread]  # the phases of each size, on the pair-mean curve and per pair
    bounds: pd.DataFrame  # size, step, boundary: each size's detected phase boundaries
    refs: pd.DataFrame  # mean KL to the uniform and unigram distributions, per size, step and reference

    @property
    def ends(self) -> dict[str, str]:
        """The smallest and the largest size, by the suffix of their glued names."""
        return ends(self.r.sizes)


def phase_bounds(spreads: dict[str, ph.KLPhaseSpread]) -> pd.DataFrame:
    """Each size's detected boundaries on its pair-mean curve: the end of (i), and the trough and peak when (ii)
    and (iii) are seen."""
    rows = []
    for s, sp in spreads.items():
        m = sp.mean_curve
        rows.append({"size": s, "step": m.uniform_end, "boundary": "end of (i)"})
        if m.has_convergence:
            rows.append({"size": s, "step": m.trough_step, "boundary": "trough: end of (ii)"})
        if m.has_divergence:
            rows.append({"size": s, "step": m.peak_step, "boundary": "peak: end of (iii)"})
    return pd.DataFrame(rows)


def reference_curves(r: analysis.Results, n_tok: int) -> pd.DataFrame:
    """Mean over seeds of the KL from each size's predictions to the uniform and to the unigram distribution."""
    refs = [
        K.seed_means(K.token_cubes(r.tokens, col, n_tok)).assign(reference=name)
        for col, name in (("kl_uniform", "uniform"), ("kl_unigram", "unigram"))
    ]
    return pd.concat(refs, ignore_index=True)


def load(P: SimpleNamespace) -> KLConvergenceData:
    """Run (or read from the cache) the engine on ``P``'s suite and compute what several sections share."""
    r = analysed(P)
    prof = r.suite.profile
    n_tok = r.probe.n_tokens
    cubes = K.pair_cubes(r.pairs, P.kl_direction, n_tok)
    spreads = K.phase_spreads(cubes, P.rel_tol)
    return KLConvergenceData(
        P=P,
        r=r,
        prof=prof,
        total=prof.arm(None).train.steps,
        n_tok=n_tok,
        n_pairs=len(next(iter(cubes.values())).reps),
        cubes=cubes,
        surprisal=K.token_cubes(r.tokens, "surprisal", n_tok),
        curves={b: K.econv(cubes, b) for b in ("tokens", "pairs")},
        spreads=spreads,
        bounds=phase_bounds(spreads),
        refs=reference_curves(r, n_tok),
    )


@section
def setup(d: KLConvergenceData) -> Glued:
    """The suite's sizes, seeds, steps and probe beside the paper's (the chapter's opening)."""
    r, paper_seeds = d.r, len(papers.KL_SEEDS)
    return {
        "n_sizes": len(r.sizes),
        "n_seeds": len(r.seeds),
        "n_pairs": d.n_pairs,
        "n_steps": len(r.steps),
        "total_steps": d.total,
        "n_tok": d.n_tok,
        "size_small": d.ends["small"],
        "size_large": d.ends["large"],
        "direction": d.P.kl_direction,
        "pair_word": PAIR_WORDS[d.P.kl_direction],
        "paper_tok": papers.KL_PROBE_TOKENS,
        "paper_seeds": paper_seeds,
        "paper_pairs": paper_seeds * (paper_seeds - 1),
        "paper_final": papers.PYTHIA_STEPS,
        "tok_ratio": d.n_tok / papers.KL_PROBE_TOKENS,
    }


@section
def choices(d: KLConvergenceData) -> Glued:
    """The choices the paper left open: context and stride, probe documents, POS tagger, parameters."""
    r, prof = d.r, d.prof
    tok = r.suite.source.load_tokenizer(suites.CheckpointRef(r.family, r.sizes[0], r.seeds[0], r.steps[-1]))
    tags = K.probe_tags(prof.corpus, tok, r.probe)
    acc = tags.accuracy
    return {
        "context": r.probe.context,
        "stride": prof.probe.stride,
        "min_context": r.probe.context - prof.probe.stride,
        "paper_context": papers.KL_CONTEXT,
        "paper_stride": papers.KL_STRIDE,
        "paper_min_context": papers.KL_CONTEXT - papers.KL_STRIDE,
        "n_probe_docs": tags.n_docs,
        "spacy_acc": acc["accuracy"] if acc else float("nan"),
        "spacy_words": acc["n_words"] if acc else 0,
        "spacy_model": L.spacy_model_name(),
        "rel_tol": d.P.rel_tol,
        "surprisal_ref": d.P.surprisal_ref,
        "paper_seed1": papers.KL_SEEDS[0],
        "pos_source": d.P.pos_source,
        "vocab": prof.vocab_size,
    }


@section
def econv_over_training(d: KLConvergenceData) -> Glued:
    """E[conv] with the band of parameter ``band`` and with the other one; its start, low and end per size, and
    its spread over tokens and over pairs relative to the mean KL."""
    band = d.P.band
    other = "pairs" if band == "tokens" else "tokens"
    band_text = {
        "tokens": f"±1 SD over the {d.n_tok:,} probe tokens of the pair-averaged per-token KL (as the paper's main "
        "figure)",
        "pairs": f"±1 SD over the {d.n_pairs} {d.P.kl_direction} seed pairs of each pair's mean KL over tokens",
    }
    out: Glued = {
        "band_name": band,
        "band_main": band_text[band],
        "band_other": band_text[other],
        "fig_econv": F.econv_main(d.curves[band], d.bounds),
        "fig_econv_other": F.econv_main(d.curves[other]),
    }
    c, tokens = d.curves["pairs"], d.curves["tokens"]
    for tag, s in d.ends.items():
        out[f"kl0_{tag}"] = -K.value_at(c, s, 0)
        out[f"efinal_{tag}"] = K.value_at(c, s)
        out[f"emin_{tag}"] = float(c[c["size"] == s]["value"].min())
        out[f"tok_cv_{tag}"] = K.value_at(tokens, s, col="sd") / -K.value_at(c, s)
        out[f"pair_cv_{tag}"] = K.value_at(c, s, col="sd") / -K.value_at(c, s)
    return out


def _or_nan(x: float | None) -> float:
    return x if x is not None else float("nan")


def _phases_of(sp: ph.KLPhaseSpread, total: int, tag: str) -> Glued:
    """One size's phases: boundaries, dip, peak and fall on its pair-mean curve, and the spread over pairs."""
    m = sp.mean_curve
    values = {
        "uend": m.uniform_end,
        "uend_frac": m.uniform_end / total,
        "trough": m.trough_step,
        "dip": _or_nan(m.dip_depth),
        "conv_seen": "is" if m.has_convergence else "is not",
        "n_conv": sp.n_convergence,
        "peak": m.peak_step,
        "peak_frac": m.peak_step / total,
        "peak_ratio": _or_nan(m.peak_ratio),
        "fall": _or_nan(m.fall),
        "fall_lo": min(p.fall for p in sp.pairs),
        "fall_hi": max(p.fall for p in sp.pairs),
        "n_re": sp.n_reconvergence,
        "re_verdict": "reconverges" if m.has_reconvergence else "does not reconverge",
    }
    return {f"{name}_{tag}": v for name, v in values.items()}


def _paper_lines(d: KLConvergenceData) -> Glued:
    """The paper's three lines, in its steps, as fractions of its training and moved to ours; our comparison."""
    final, lines = papers.PYTHIA_STEPS, papers.KL_PHASE_LINES
    scaled = [x * d.total / final for x in lines]
    cmp = K.paper_comparison(d.spreads, d.total)
    fractions = [c for c in cmp.columns if c.endswith("fraction")]
    steps = [c for c in cmp.columns if c.endswith("step")]
    out: Glued = {
        "fig_phases": F.phase_panels(d.curves["pairs"], K.phase_spans(d.spreads), lines, scaled),
        "tab_paper": cmp.style.format("{:.2%}", subset=fractions, na_rep="not seen").format(
            "{:.0f}", subset=steps, na_rep="not seen"
        ),
    }
    for k, line in enumerate(lines, 1):
        out[f"paper_line{k}"] = line
        out[f"paper_frac{k}"] = line / final
        out[f"scaled_line{k}"] = scaled[k - 1]
    m_large = d.spreads[d.ends["large"]].mean_curve
    out["uniform_cmp"] = claims.compare_word(m_large.uniform_end / d.total, lines[0] / final, **VS_PAPER)
    peak = m_large.peak_step / d.total if m_large.has_divergence else None
    out["peak_cmp"] = claims.compare_word(peak, lines[2] / final, **VS_PAPER)
    return out


def closest_to_unigram(d: KLConvergenceData, size: str) -> tuple[int, float]:
    """The step at which ``size``'s predictions are closest to the unigram distribution (mean over seeds), and
    that KL."""
    u = d.refs[(d.refs["size"] == size) & (d.refs["reference"] == "unigram")]
    i_min = int(u["value"].idxmin())
    return int(u.loc[i_min, "step"]), float(u.loc[i_min, "value"])


def checkpoints_apart(apart: int) -> str:
    """``apart`` checkpoints as words: "at the same checkpoint", "1 checkpoint later", "3 checkpoints earlier"."""
    if apart == 0:
        return "at the same checkpoint"
    return f"{abs(apart)} checkpoint{'s' if abs(apart) > 1 else ''} {'later' if apart > 0 else 'earlier'}"


def _unigram_points(d: KLConvergenceData) -> Glued:
    """Per size, the step closest to the unigram distribution, and how far from the KL trough it lies."""
    out: Glued = {}
    for tag, s in d.ends.items():
        u_step = closest_to_unigram(d, s)[0]
        apart = d.r.steps.index(u_step) - d.r.steps.index(d.spreads[s].mean_curve.trough_step)
        out[f"uni_point_{tag}"] = u_step
        out[f"uni_rel_{tag}"] = checkpoints_apart(apart)
    return out


@section
def four_phases(d: KLConvergenceData) -> Glued:
    """The phases detected per size, their sensitivity to the detector's settings, the paper's lines beside them
    and the verdict on reconvergence."""
    small, large = d.ends["small"], d.ends["large"]
    phase_sens = K.phase_sensitivity(d.cubes)
    re_sizes = [s for s, sp in d.spreads.items() if sp.mean_curve.has_reconvergence]
    out: Glued = {
        "tab_phases": K.phase_table(d.spreads, d.total),
        "tab_phase_sensitivity": phase_sens,
        "phase_sens_sentence": K.sensitivity_sentence(phase_sens, large, small),
        **_paper_lines(d),
    }
    for tag, s in d.ends.items():
        out.update(_phases_of(d.spreads[s], d.total, tag))
    return {
        **out,
        "n_pairs_total": d.n_pairs,
        "n_re_sizes": len(re_sizes),
        "re_sizes": ", ".join(re_sizes) if re_sizes else "none",
        **_unigram_points(d),
        "re_claim": claims.judge_reconvergence(d.spreads).sentence(),
    }


@section
def size_comparable(d: KLConvergenceData) -> Glued:
    """Each pair's KL relative to its value at step 0: its peak and last value per size."""
    rel = K.relative_to_start(d.cubes)
    out: Glued = {"fig_rel": F.raw_and_relative(d.curves["pairs"], rel)}
    for tag, s in d.ends.items():
        out[f"relpeak_{tag}"] = float(rel[rel["size"] == s]["value"].max())
        out[f"relfinal_{tag}"] = K.value_at(rel, s)
    return out


@section
def cross_entropy_and_references(d: KLConvergenceData) -> Glued:
    """Cross-entropy over training, and the KL to the uniform and unigram distributions."""
    ce = K.seed_means(d.surprisal)
    out: Glued = {
        "fig_ce": plots.band_lines(ce, "size", y_title="cross-entropy (nats/token)", height=200),
        "fig_ref": F.references(d.refs),
    }
    for tag, s in d.ends.items():
        out[f"ce_final_{tag}"] = K.value_at(ce, s)
        out[f"ce_sd_{tag}"] = K.value_at(ce, s, col="sd")
        out[f"uni_step_{tag}"], out[f"uni_min_{tag}"] = closest_to_unigram(d, s)
    out["ln_vocab"] = float(np.log(d.prof.vocab_size))
    out["smoothing"] = K.UNIGRAM_SMOOTHING
    return out


def _icl_onset(icl: pd.DataFrame, size: str) -> int | None:
    """The first step at which ``size``'s ICL score exceeds the onset margin (None if it never does)."""
    sub = icl[icl["size"] == size]
    above = sub[sub["value"] > K.ICL_ONSET_MARGIN]
    return int(above["step"].min()) if len(above) else None


@section
def in_context_learning(d: KLConvergenceData) -> Glued:
    """The type-matched ICL score on the probe, its onset per size and whether the largest size's onset lies in
    its divergence phase."""
    short, long = K.icl_windows(d.r.probe.context, d.P.icl_short, d.P.icl_long)
    targets = d.r.targets
    icl = K.icl_scores(d.surprisal, targets["context_len"].to_numpy(), targets["target_id"].to_numpy(), short, long)
    out: Glued = {
        "fig_icl": F.icl(icl, K.ICL_ONSET_MARGIN),
        "icl_short": short,
        "icl_long": long,
        "icl_n_short": int(icl["n_short"].iloc[0]),
        "icl_n_matched": int(icl["n_matched"].iloc[0]),
        "icl_n_long": int(icl["n_long"].iloc[0]),
        "icl_margin": K.ICL_ONSET_MARGIN,
        "paper_icl_long": papers.KL_ICL_LONG,
        "paper_icl_short": papers.KL_ICL_SHORT,
        "paper_icl_lo": papers.KL_ICL_PLATEAU[0],
        "paper_icl_hi": papers.KL_ICL_PLATEAU[1],
    }
    for tag, s in d.ends.items():
        onset = _icl_onset(icl, s)
        out[f"icl_final_{tag}"] = K.value_at(icl, s)
        out[f"icl_sd_{tag}"] = K.value_at(icl, s, col="sd")
        out[f"icl_onset_{tag}"] = f"step {onset}" if onset is not None else "no checkpoint"
    m = d.spreads[d.ends["large"]].mean_curve
    start = m.divergence_start if m.divergence_start is not None else m.peak_step
    onset = _icl_onset(icl, d.ends["large"])
    out["icl_in_div"] = "inside" if onset is not None and start <= onset <= m.peak_step else "outside"
    out["div_start_large"] = start
    return out


@section
def learning_rate(d: KLConvergenceData) -> Glued:
    """Our learning-rate schedule beside the PolyPythias', with each size's KL peak; the tokens one run sees."""
    arm, total = d.prof.arm(None), d.total
    peaks = d.bounds[d.bounds["boundary"].str.startswith("peak")]
    return {
        "fig_lr": F.lr(K.lr_curves(d.prof), peaks, papers.KL_PHASE_LINES),
        "warmup": arm.train.schedule.warmup,
        "warmup_frac": arm.train.schedule.warmup / total,
        "pythia_warmup": papers.PYTHIA_WARMUP,
        "pythia_warmup_frac": papers.PYTHIA_WARMUP / papers.PYTHIA_STEPS,
        "tokens_seen": total * arm.train.batch_size * d.prof.context,
        "lr_at_peak_large": arm.train.schedule.multiplier(d.spreads[d.ends["large"]].mean_curve.peak_step, total),
    }


@section
def downstream_convergence(d: KLConvergenceData) -> Glued:
    """The paper's downstream convergence on our minimal pairs: −KL between the seeds' 2-way preference
    distributions (the paper's estimator and the per-item one) beside E[conv], the phases the detector finds on
    it, and the verdict on its reconvergence pattern (E[conv] alone, and the claim untested, when the profile builds
    no downstream sets)."""
    if d.r.evals is None:
        return _no_downstream(d)
    scores = ds.item_scores(d.r.downstream)
    kls = {est: ds.pair_kl(scores, est) for est in ds.ESTIMATORS}
    curves = {est: ds.convergence_curves(k) for est, k in kls.items()}
    spreads = ds.phase_spreads(kls["phenomenon"], d.r.sizes, d.P.rel_tol)
    item_spreads = ds.phase_spreads(kls["item"], d.r.sizes, d.P.rel_tol)
    sizes = d.r.evals.sizes
    out: Glued = {
        "fig_downstream": FD.convergence_beside(
            d.curves["pairs"], d.bounds, curves, phase_bounds(spreads), ds.ESTIMATORS
        ),
        "ds_claim": claims.judge_downstream_reconvergence(spreads).sentence(),
        "ds_phases": ds.phases_seen(spreads),
        "ds_item_phases": ds.phases_seen(item_spreads),
        "ds_per_phenomenon": min(sizes[p] for p in ds.PHENOMENA),
        "ds_phenomena": " and ".join(ds.SET_WORDS[p] for p in ds.PHENOMENA),
        "ds_seed_pairs": int(kls["phenomenon"].groupby(["seed_i", "seed_j"]).ngroups),
        "paper_ds_pairs": papers.KL_BLIMP_PAIRS,
    }
    for tag, s in d.ends.items():
        m = spreads[s].mean_curve
        out[f"ds_final_{tag}"] = K.value_at(curves["phenomenon"], s)
        out[f"ds_item_final_{tag}"] = K.value_at(curves["item"], s)
        out[f"ds_peak_{tag}"] = f"step {m.peak_step}" if m.has_divergence else "no divergence"
        out[f"ds_re_{tag}"] = "reconverges" if m.has_reconvergence else "does not reconverge"
    return out


def _no_downstream(d: KLConvergenceData) -> Glued:
    """The downstream section's values when the profile builds no downstream sets (said in words)."""
    n = len(d.r.seeds)
    out: Glued = {
        "fig_downstream": FD.convergence_beside(d.curves["pairs"], d.bounds, {}, None, ds.ESTIMATORS),
        "ds_claim": claims.judge_downstream_reconvergence(None).sentence(),
        "ds_phases": f"not measured ({ds.ABSENT})",
        "ds_item_phases": "not measured",
        "ds_per_phenomenon": 0,
        "ds_phenomena": " and ".join(ds.SET_WORDS[p] for p in ds.PHENOMENA),
        "ds_seed_pairs": n * (n - 1) // 2,
        "paper_ds_pairs": papers.KL_BLIMP_PAIRS,
    }
    for tag in d.ends:
        out |= {f"ds_final_{tag}": float("nan"), f"ds_item_final_{tag}": float("nan")}
        out |= {f"ds_peak_{tag}": "not measured", f"ds_re_{tag}": "is not measured"}
    return out
