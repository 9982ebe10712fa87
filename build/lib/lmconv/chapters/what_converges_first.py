"""Chapter 3, *What converges first* (``notebooks/03_what_converges_first.md``): the suite's E[conv] split by
the target token's training frequency and by its final surprisal, the cross-entropy in the same bins, the
per-step regression on frequency, part of speech and size, and the most and least convergent tokens
(after Fehlauer et al. 2025)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pandas as pd

from .. import analysis
from ..checkpoints import suites
from ..data import linguistics as L
from ..figures import kl as F
from ..findings import claims, papers, scorecard
from ..lenses import kl as K
from . import Glued, analysed, ends, section

MIN_BIN = 20  # bins with fewer tokens are drawn but not quoted in the text
FREQ_TITLE = "target frequency"
SURP_TITLE = "final surprisal (nats)"
CE_TITLE = "cross-entropy (nats)"
LARGE_VS_SMALL = {
    "above": "the interval lies above zero: the largest size's seeds agree more than the smallest's",
    "below": "the interval lies below zero: the largest size's seeds disagree more than the smallest's",
    "neither": "the interval contains zero: no difference between the sizes is shown",
}
WHICH_SIZES = {  # (smallest size agrees, largest size agrees) -> the words
    (True, True): "for both sizes",
    (False, True): "for the largest size but not for the smallest",
    (True, False): "for the smallest size but not for the largest",
    (False, False): "for neither size",
}


@dataclass
class WhatConvergesFirstData:
    """What the chapter reads once: the engine's results, the per-size cubes, the bins and the probe's tags."""

    P: SimpleNamespace
    r: analysis.Results
    cubes: dict[str, K.Cube]  # per-pair KL, in the chapter's direction
    surprisal: dict[str, K.Cube]  # per-seed surprisal
    flabels: pd.Categorical  # frequency bin of each target
    slabels: dict[str, pd.Categorical]  # per size, final-surprisal bin of each target
    fc: pd.DataFrame  # E[conv] by frequency bin
    sc: pd.DataFrame  # E[conv] by final-surprisal bin
    decode: Callable[[list[int]], str]  # the suite's tokenizer's decode
    ptb: np.ndarray | None  # stream PTB tags for ``P.pos_source`` (None where the source has none)
    upos: np.ndarray  # stream UPOS tags for ``P.pos_source``

    @property
    def ends(self) -> dict[str, str]:
        """The smallest and the largest size, keyed as the glued names' suffixes (:func:`lmconv.chapters.ends`)."""
        return ends(self.r.sizes)


def load(P: SimpleNamespace) -> WhatConvergesFirstData:
    """Run the engine for ``P``, build the cubes and the bins, and tag the probe."""
    r = analysed(P)
    n_tok = r.probe.n_tokens
    cubes = K.pair_cubes(r.pairs, P.kl_direction, n_tok)
    surprisal = K.token_cubes(r.tokens, "surprisal", n_tok)
    flabels = K.frequency_labels(r.counts, r.targets["target_id"].to_numpy())
    slabels = K.surprisal_labels(surprisal, P.surprisal_ref)
    tok = r.suite.source.load_tokenizer(suites.CheckpointRef(r.family, r.sizes[0], r.seeds[0], r.steps[-1]))
    tags = K.probe_tags(r.suite.profile.corpus, tok, r.probe, accuracy=False)
    ptb, upos = tags.stream_tags(P.pos_source)
    fc = K.econv(cubes, "pairs", {s: flabels for s in cubes})
    sc = K.econv(cubes, "pairs", slabels)
    return WhatConvergesFirstData(P, r, cubes, surprisal, flabels, slabels, fc, sc, tok.decode, ptb, upos)


def quoted_bins(df: pd.DataFrame, min_n: int = MIN_BIN) -> list[str]:
    """The populated bins (at least ``min_n`` tokens at the last step), in bin order."""
    last = df[df["step"] == df["step"].max()]
    return [g for g in dict.fromkeys(last["group"]) if int(last[last["group"] == g]["n_tokens"].iloc[0]) >= min_n]


def drawn(df: pd.DataFrame, min_n: int = MIN_BIN) -> pd.DataFrame:
    """The bins drawn in the figures: those with at least ``min_n`` tokens."""
    return df[df["n_tokens"] >= min_n]


def drawn_order(df: pd.DataFrame, order: list[str]) -> list[str]:
    """``order`` restricted to the bins that are drawn."""
    shown = set(drawn(df)["group"])
    return [b for b in order if b in shown]


@section
def setup(d: WhatConvergesFirstData) -> Glued:
    """The suite's sizes, seeds and probe, as the opening and every caption quote them."""
    return {
        "size_small": d.ends["small"],
        "size_large": d.ends["large"],
        "n_pairs": len(next(iter(d.cubes.values())).reps),
        "n_seeds": len(d.r.seeds),
        "n_tok": d.r.probe.n_tokens,
        "pair_word": "ordered seed pairs" if d.P.kl_direction == "ordered" else "unordered seed pairs",
        "min_bin": MIN_BIN,
    }


def _two_and_all(df: pd.DataFrame, d: WhatConvergesFirstData, order: list[str], title: str) -> tuple:
    """The smallest-and-largest figure and the one-panel-per-size figure of one binning."""
    two = drawn(df[df["size"].isin([d.ends["small"], d.ends["large"]])])
    return (
        F.two_sizes(two, order=order, legend_title=title),
        F.panels_by_size(drawn(df), order=order, legend_title=title),
    )


def _frequency_size(fc: pd.DataFrame, size: str, tag: str, bins: dict[str, str]) -> Glued:
    """One size's final E[conv], its SD over pairs and its lowest point in the rarest (``lo``) and most frequent
    (``hi``) populated bins of ``bins``, and whether it rises across all the populated bins."""
    sub = fc[fc["size"] == size]
    out: Glued = {}
    for name in ("lo", "hi"):
        b = bins[name]
        out[f"f_{name}_final_{tag}"] = K.value_at(fc, size, group=b)
        out[f"f_{name}_sd_{tag}"] = K.value_at(fc, size, group=b, col="sd")
        out[f"f_{name}_min_{tag}"] = float(sub[sub["group"] == b]["value"].min())
    finals = [K.value_at(fc, size, group=b) for b in quoted_bins(fc)]
    out[f"f_mono_{tag}"] = claims.trend_word(finals, up="rises", down="does not rise", neither="does not rise")
    return out


@section
def by_frequency(d: WhatConvergesFirstData) -> Glued:
    """E[conv] by decade bin of the target's training count: the bin table, the figures and the numbers quoted."""
    order_f = list(d.flabels.categories)
    fig_two, fig_all = _two_and_all(d.fc, d, drawn_order(d.fc, order_f), FREQ_TITLE)
    qb = quoted_bins(d.fc)
    lo_bin, hi_bin = qb[0], qb[-1]
    n_in = pd.Series(d.flabels).value_counts()
    out: Glued = {
        "tab_bins": K.frequency_bin_table(d.flabels),
        "fig_freq_two": fig_two,
        "fig_freq_all": fig_all,
        "lo_bin": lo_bin,
        "hi_bin": hi_bin,
        "lo_bin_n": int(n_in[lo_bin]),
        "hi_bin_n": int(n_in[hi_bin]),
        "paper_label_lo": papers.KL_FREQ_LABELS[order_f.index(lo_bin)],
        "paper_label_hi": papers.KL_FREQ_LABELS[order_f.index(hi_bin)],
        "n_quoted": len(qb),
        "third_bin": order_f[2],
        "hi_best": "is" if K.is_most_convergent(d.fc, [d.ends["small"], d.ends["large"]], qb, hi_bin) else "is not",
        "third_label": papers.KL_FREQ_LABELS[2],
    }
    for tag, s in (("small", d.ends["small"]), ("large", d.ends["large"])):
        out |= _frequency_size(d.fc, s, tag, {"lo": lo_bin, "hi": hi_bin})
    return out


def _surprisal_size(sc: pd.DataFrame, size: str, tag: str) -> tuple[Glued, bool]:
    """One size's most and least predictable populated bins, their final E[conv] and the trend across them; and
    whether the most predictable bin ends above the least predictable one."""
    q = quoted_bins(sc[sc["size"] == size])
    finals = [K.value_at(sc, size, group=b) for b in q]
    out: Glued = {
        f"s_lo_bin_{tag}": q[0],
        f"s_hi_bin_{tag}": q[-1],
        f"s_lo_final_{tag}": K.value_at(sc, size, group=q[0]),
        f"s_hi_final_{tag}": K.value_at(sc, size, group=q[-1]),
        f"s_mono_{tag}": claims.trend_word(finals, up="does not fall", down="falls", neither="does not fall"),
    }
    return out, finals[0] > finals[-1]


@section
def by_surprisal(d: WhatConvergesFirstData) -> Glued:
    """E[conv] by final-surprisal bin of the target: the figures, the bins quoted and for which size the most
    predictable tokens are the most convergent."""
    order_s = list(L.SURPRISAL_LABELS)
    fig_two, fig_all = _two_and_all(d.sc, d, drawn_order(d.sc, order_s), SURP_TITLE)
    small, agree_small = _surprisal_size(d.sc, d.ends["small"], "small")
    large, agree_large = _surprisal_size(d.sc, d.ends["large"], "large")
    return {
        "fig_surp_two": fig_two,
        "fig_surp_all": fig_all,
        "surprisal_bins": ", ".join(order_s),
        "surprisal_ref": "the mean over seeds" if d.P.surprisal_ref == "seed_mean" else "the first seed",
        **small,
        **large,
        "s_which": WHICH_SIZES[(agree_small, agree_large)],
    }


@section
def cross_entropy(d: WhatConvergesFirstData) -> Glued:
    """The cross-entropy (mean surprisal over seeds) in the same frequency and final-surprisal bins."""
    cef = K.seed_means(d.surprisal, {s: d.flabels for s in d.surprisal})
    ces = K.seed_means(d.surprisal, d.slabels)
    qb = quoted_bins(d.fc)
    order_fd = drawn_order(d.fc, list(d.flabels.categories))
    order_sd = drawn_order(d.sc, list(L.SURPRISAL_LABELS))
    return {
        "fig_ce_freq": F.panels_by_size(drawn(cef), order=order_fd, y_title=CE_TITLE, legend_title=FREQ_TITLE),
        "fig_ce_surp": F.panels_by_size(drawn(ces), order=order_sd, y_title=CE_TITLE, legend_title=SURP_TITLE),
        "ce_lo_large": K.value_at(cef, d.ends["large"], group=qb[0]),
        "ce_hi_large": K.value_at(cef, d.ends["large"], group=qb[-1]),
    }


def _alpha(co: pd.DataFrame, bare: pd.DataFrame) -> Glued:
    """α, the log10-frequency coefficient: at the last step with its interval, its range over training, the
    share of steps whose interval lies above zero, and its last value without the part-of-speech terms."""
    last = co[co["step"] == co["step"].max()].set_index("term")
    a = co[co["term"] == "log10 frequency"]
    b_last = bare[(bare["term"] == "log10 frequency") & (bare["step"] == bare["step"].max())]
    return {
        "alpha_final": float(last.loc["log10 frequency", "coef"]),
        "alpha_lo": float(last.loc["log10 frequency", "lo"]),
        "alpha_hi": float(last.loc["log10 frequency", "hi"]),
        "alpha_min": float(a["coef"].min()),
        "alpha_min_step": int(a.loc[a["coef"].idxmin(), "step"]),
        "alpha_max": float(a["coef"].max()),
        "alpha_max_step": int(a.loc[a["coef"].idxmax(), "step"]),
        "alpha_pos_share": float((a["lo"] > 0).mean()),
        "alpha_bare": float(b_last["coef"].iloc[0]),
    }


def _delta(co: pd.DataFrame, large: str) -> Glued:
    """δ of the largest size at the last step, its interval and the words for where that interval lies."""
    last = co[co["step"] == co["step"].max()].set_index("term")
    row = last.loc[f"size: {large}"]
    lo, hi = float(row["lo"]), float(row["hi"])
    return {
        "delta_final": float(row["coef"]),
        "delta_lo": lo,
        "delta_hi": hi,
        "delta_words": claims.by_interval(lo, hi, **LARGE_VS_SMALL),
    }


@section
def together(d: WhatConvergesFirstData) -> Glued:
    """The per-step regression of per-token E[conv] on frequency, part of speech and size: α, δ, their
    figures, the design quoted in the prose and the paper's frequency claim judged."""
    r, P = d.r, d.P
    cur = K.position_tags(d.upos, r.targets, "current")
    ctx = K.position_tags(d.upos, r.targets, "context")
    freq = r.targets["frequency"].to_numpy()
    reg = K.regression(d.cubes, freq, cur, ctx, n_boot=P.kl_boot, ci=K.REGRESSION_CI, docs=r.targets["doc"].to_numpy())
    bare = K.regression(d.cubes, freq, cur, ctx, n_boot=0, pos=False).coef
    co = reg.coef
    size_terms = [t for t in reg.terms if t.startswith("size: ")]
    return {
        "n_docs": int(r.targets["doc"].nunique()),
        "freq_verdict": claims.judge_frequency(scorecard.frequency_effects(d.cubes, r.targets)).sentence(),
        "fig_alpha": F.coefficients(
            co, ["log10 frequency"], "α: E[conv] per decade of frequency (nats)", "coefficient"
        ),
        "fig_delta": F.coefficients(co, size_terms, "δ: E[conv] relative to the smallest size (nats)", "size"),
        **_alpha(co, bare),
        **_delta(co, d.ends["large"]),
        "n_boot": P.kl_boot,
        "ci": K.REGRESSION_CI,
        "n_rows": reg.n_rows,
        "ref_pos": reg.reference["pos"],
        "n_terms": len(reg.terms),
        "pos_source": P.pos_source,
    }


def extremes_table(d: WhatConvergesFirstData) -> pd.DataFrame:
    """Per size, the ``kl_table_n`` most convergent, middle and least convergent probe positions at the last step
    (:func:`lmconv.lenses.kl.token_extremes`), stacked."""
    cur_any = K.position_tags(d.upos if d.ptb is None else d.ptb, d.r.targets, "current")
    return pd.concat(
        [
            K.token_extremes(c, d.r.targets, cur_any, d.decode, d.P.kl_table_n, stream=d.r.probe.stream)
            for c in d.cubes.values()
        ],
        ignore_index=True,
    )


@section
def extremes(d: WhatConvergesFirstData) -> Glued:
    """The most and least convergent tokens: the table and the median training count of each end."""
    ext = extremes_table(d)
    return {
        "tab_tokens": K.extremes_wide(ext),
        "table_n": d.P.kl_table_n,
        "final_step": int(d.r.steps[-1]),
        "ext_hi_freq": float(np.median(ext[ext["group"] == K.GROUPS[2]]["frequency"])),
        "ext_lo_freq": float(np.median(ext[ext["group"] == K.GROUPS[0]]["frequency"])),
    }
