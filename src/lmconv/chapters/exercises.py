"""Solutions to the book's exercises. Each chapter shows a stub (its signature and skeleton with ``...``)
and, in a dropdown, the solution below run on the chapter's own data. ``tests/test_exercises.py`` runs every
solution and fails when a stub in a chapter drifts from the solution it promises."""

from __future__ import annotations

import numpy as np
import pandas as pd


def first_step_below(val_log: pd.DataFrame, threshold: float) -> pd.Series:
    """For each size, the first step at which the seed-mean validation loss is below ``threshold``."""
    mean = val_log.groupby(["size", "step"]).val_loss.mean().reset_index()
    below = mean[mean.val_loss < threshold]
    return below.groupby("size").step.min()


def unigram_entropy(counts: np.ndarray) -> float:
    """Entropy (nats) of the unigram distribution of token counts: the loss of the best context-free model."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def expected_convergence(pairs: pd.DataFrame, step: int) -> pd.Series:
    """E[conv] per size at ``step``: minus the mean KL over tokens and ordered seed pairs."""
    at = pairs[pairs.step == step]
    return -at.groupby("size").kl.mean()


def kl_asymmetry(pairs: pd.DataFrame, step: int) -> pd.Series:
    """Per size, mean ``|KL(i‖j) − KL(j‖i)|`` over tokens and unordered pairs, relative to the mean KL."""
    at = pairs[pairs.step == step]
    fwd = at.set_index(["size", "seed_i", "seed_j", "pos"]).kl
    bwd = at.rename(columns={"seed_i": "seed_j", "seed_j": "seed_i"}).set_index(["size", "seed_i", "seed_j", "pos"]).kl
    diff = (fwd - bwd.reindex(fwd.index)).abs()
    return diff.groupby("size").mean() / fwd.groupby("size").mean()


def frequency_rank_correlation(pairs: pd.DataFrame, targets: pd.DataFrame, step: int) -> pd.Series:
    """Per size, Spearman correlation between a target token's training count and its mean cross-seed KL."""
    at = pairs[pairs.step == step].groupby(["size", "pos"]).kl.mean().reset_index()
    at = at.merge(targets[["pos", "frequency"]], on="pos")
    return at.groupby("size").apply(lambda g: g.kl.rank().corr(g.frequency.rank()), include_groups=False)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA (biased estimator) of two activation matrices with the same rows."""
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    cross = np.linalg.norm(x.T @ y) ** 2
    return float(cross / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def proportional_effective_rank(singular_values: np.ndarray, k: int) -> float:
    """exp(entropy of the top-k singular values normalised to sum 1), divided by k."""
    s = np.sort(singular_values)[::-1][:k]
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()) / k)


def spectral_change(sv_a: np.ndarray, sv_b: np.ndarray) -> float:
    """ΔΣ: the L2 distance between two singular-value vectors, each sorted and divided by its sum."""
    a = np.sort(sv_a)[::-1] / np.sum(sv_a)
    b = np.sort(sv_b)[::-1] / np.sum(sv_b)
    return float(np.linalg.norm(b - a))


def reconvergence(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per size: the step of the peak of mean cross-seed KL and its fall from the peak to the last step."""
    curve = pairs.groupby(["size", "step"]).kl.mean().reset_index()
    rows = []
    for size, g in curve.groupby("size"):
        peak = g.loc[g.kl.idxmax()]
        last = g.loc[g.step.idxmax()]
        rows.append({"size": size, "peak_step": int(peak.step), "fall": float(1 - last.kl / peak.kl)})
    return pd.DataFrame(rows).set_index("size")


def econv_by_group(pairs: pd.DataFrame, groups: np.ndarray, step: int) -> pd.DataFrame:
    """E[conv] per size and token group at ``step``; ``groups[pos]`` is the group of the probe token ``pos``."""
    at = pairs[pairs.step == step].copy()
    at["group"] = np.asarray(groups)[at.pos.to_numpy()]
    return (-at.groupby(["size", "group"]).kl.mean()).unstack("group")


def final_loss_by_arm(val_log: pd.DataFrame) -> pd.Series:
    """Per arm (family), the validation loss at the last step, averaged over seeds, best first."""
    last = val_log[val_log.step == val_log.step.max()]
    return last.groupby("family").val_loss.mean().sort_values()


# "Change one parameter, predict, run, explain": each function below recomputes a chapter's answer from the data
# the chapter already read, with one parameter set to ``value`` beside the chapter's own value, by the chapter's
# own lens functions, so the table it returns is what `make chapter NAME=... ARGS='-p NAME VALUE'` would show.


def loss_against_unigram(d) -> pd.DataFrame:
    """Chapter 1 (``d``: :class:`lmconv.chapters.suite.SuiteData`): per size, the parameters, the training tokens
    seen per parameter, the final validation loss (mean over seeds), the unigram entropy and the first step below
    it (NaN: never)."""
    from ..checkpoints import summaries
    from ..data import tokenizer

    h1 = unigram_entropy(tokenizer.token_frequencies(d.prof.corpus, d.prof.vocab_size))
    sizes = summaries.sizes_table(d.prof).set_index("size")
    last = d.val_log[d.val_log.step == d.val_log.step.max()].groupby("size").val_loss.mean()
    last = last.reindex([s for s in d.prof.sizes if s in last.index])  # the profile's order, smallest first
    out = pd.DataFrame({"parameters": sizes.parameters.loc[last.index], "final val loss": last})
    out["tokens per parameter"] = summaries.tokens_per_parameter(d.prof).loc[out.index]
    out["unigram entropy"] = h1
    out["first step below it"] = first_step_below(d.val_log, h1).reindex(out.index)
    return out


def phases_at_tolerance(d, rel_tol: float) -> pd.DataFrame:
    """Chapter 2 (:class:`lmconv.chapters.kl_convergence.KLConvergenceData`): per size, which of phases (ii)–(iv)
    the detector sees on the pair-mean curve and their boundaries, at the chapter's ``rel_tol`` and at ``rel_tol``."""
    from ..lenses import kl as K

    rows = []
    for tol in dict.fromkeys([d.P.rel_tol, rel_tol]):
        for size, sp in K.phase_spreads(d.cubes, tol).items():
            m = sp.mean_curve
            rows.append(
                {
                    "rel_tol": tol,
                    "size": size,
                    "end of (i)": m.uniform_end,
                    "(ii) seen": m.has_convergence,
                    "(iii) seen": m.has_divergence,
                    "(iv) seen": m.has_reconvergence,
                    "peak step": m.peak_step if m.has_divergence else None,
                }
            )
    return pd.DataFrame(rows).set_index(["rel_tol", "size"])


def anneal_at_tolerance(d, rel_tol: float) -> pd.DataFrame:
    """Section 2.1 (:class:`lmconv.chapters.annealing.AnnealingData`): per size and arm, whether the mean curve
    converges early and reconverges, its peak and its fall, at the section's ``rel_tol`` and at ``rel_tol``."""
    from ..lenses import annealing as A

    rows = []
    for tol in dict.fromkeys([d.rel_tol, rel_tol]):
        for size, s in A.summarise(d.data, rel_tol=tol).items():
            for arm, a in s["arms"].items():
                rows.append(
                    {
                        "rel_tol": tol,
                        "size": size,
                        "arm": arm,
                        "converges early": a["converges_early"],
                        "reconverges": a["reconverges"],
                        "pairs reconverging": f"{a['pairs_reconverge']}/{a['n_pairs']}",
                        "peak step": a["peak_step"],
                    }
                )
    return pd.DataFrame(rows).set_index(["rel_tol", "size", "arm"])


def final_over_start(curves: pd.DataFrame) -> pd.Series:
    """Per size and arm: the mean cross-seed KL at the arm's last step divided by its mean at step 0."""
    mean = curves.groupby(["size", "arm", "step"]).kl.mean().reset_index()
    first = mean.loc[mean.groupby(["size", "arm"]).step.idxmin()].set_index(["size", "arm"]).kl
    last = mean.loc[mean.groupby(["size", "arm"]).step.idxmax()].set_index(["size", "arm"]).kl
    return last / first


def moments_at_tolerance(d, rel_tol: float) -> pd.DataFrame:
    """Section 2.2 (:class:`lmconv.chapters.seed_sources.SourcesPage`): per size and moment, its step and the
    dominant source of the divergence, at the section's ``rel_tol`` and at ``rel_tol``."""
    from ..lenses import seed_sources as S

    rows = []
    for tol in dict.fromkeys([d.rel_tol, rel_tol]):
        for size, s in S.summarise(d.data.curves, rel_tol=tol).items():
            for moment, step in s["moments"].items():
                rows.append(
                    {
                        "rel_tol": tol,
                        "size": size,
                        "moment": moment,
                        "step": step,
                        "dominant source": s["attribution"][moment]["source"],
                    }
                )
    return pd.DataFrame(rows).set_index(["rel_tol", "size", "moment"])


def source_shares(curves: pd.DataFrame, step: int) -> pd.DataFrame:
    """Per size at ``step``: the mean cross-seed KL of the data-order-only and the initialisation-only pairs, each as
    a share of the mean KL of the pairs that differ in both."""
    at = curves[curves.step == step]
    mean = at.groupby(["size", "kind"]).kl.mean().unstack("kind")
    return mean[["data", "weight"]].div(mean["both"], axis=0)


def extremes_at(d, n: int) -> pd.DataFrame:
    """Chapter 3 (:class:`lmconv.chapters.what_converges_first.WhatConvergesFirstData`): per size and group of the
    extremes table, the median training count of its tokens, with the chapter's ``kl_table_n`` and with ``n``."""
    import dataclasses
    from types import SimpleNamespace

    from . import what_converges_first as ch

    frames = []
    for k in dict.fromkeys([d.P.kl_table_n, n]):
        ext = ch.extremes_table(dataclasses.replace(d, P=SimpleNamespace(**{**vars(d.P), "kl_table_n": k})))
        frames.append(ext.groupby(["size", "group"]).frequency.agg(["size", "median"]).assign(kl_table_n=k))
    out = pd.concat(frames).rename(columns={"size": "tokens", "median": "median training count"})
    return out.reset_index().set_index(["kl_table_n", "size", "group"])


def function_word_lead(d, position: str) -> pd.DataFrame:
    """Chapter 4 (:class:`lmconv.chapters.parts_of_speech.PartsOfSpeechData`): per size, the final E[conv] of
    function and content words and the share of checkpoints at which function words are ahead, with words
    classed by the chapter's ``tag_position`` and by ``position``."""
    from . import parts_of_speech as ch

    wc = ch.word_class_curves(d)
    rows = []
    for pos in dict.fromkeys([d.P.tag_position, position]):
        cur = wc[wc["position"] == pos]
        for size, g in cur.groupby("size", sort=False):
            fn = g[g["group"] == "function"].sort_values("step")
            ct = g[g["group"] == "content"].sort_values("step")
            rows.append(
                {
                    "tag_position": pos,
                    "size": size,
                    "function, final": float(fn["value"].iloc[-1]),
                    "content, final": float(ct["value"].iloc[-1]),
                    "function ahead (share of steps)": float((fn["value"].to_numpy() > ct["value"].to_numpy()).mean()),
                }
            )
    return pd.DataFrame(rows).set_index(["tag_position", "size"])


def stabilisation_at(d, threshold: float) -> pd.DataFrame:
    """Chapter 5 (:class:`lmconv.chapters.activations.ActivationsData`): per size, how many units (seed, layer,
    circuit) stabilise and their median stabilisation step, with the chapter's ``cka_threshold`` and
    ``threshold``."""
    from ..lenses import activations as act

    frames = []
    for t in dict.fromkeys([d.P.cka_threshold, threshold]):
        stab = act.stabilisation(d.cka, d.total_steps, threshold=t, min_run=d.P.cka_min_run)
        g = stab.groupby("size", sort=False)
        frames.append(
            pd.DataFrame({"units": g.size(), "stabilised": g.stabilised.sum(), "median step": g.step.median()}).assign(
                cka_threshold=t
            )
        )
    return pd.concat(frames).reset_index().set_index(["cka_threshold", "size"])


def per_by_hand(res) -> pd.Series:
    """Chapter 6: the PER of the first layer's MLP output matrix of the largest size's final checkpoint (first
    seed), from :func:`proportional_effective_rank` on the checkpoint's weights, beside the engine's value."""
    import torch

    from ..checkpoints import bundle, suites

    size, seed, step = res.sizes[-1], res.seeds[0], res.steps[-1]
    if isinstance(res.suite.source, bundle.BundleSource):  # tables mode: a release bundle holds no weights
        why = "needs the checkpoint's weights, which a release bundle does not hold: train the suite to compute it"
        return pd.Series({"size": size, "seed": seed, "step": step, "by hand": why})
    model = res.suite.source.load_model(suites.CheckpointRef(res.family, size, seed, step))
    w = model.gpt_neox.layers[0].mlp.dense_4h_to_h.weight.detach()
    mine = proportional_effective_rank(torch.linalg.svdvals(w).numpy(), model.config.hidden_size)
    r = res.rank
    pick = (r["size"] == size) & (r.seed == seed) & (r.step == step) & (r.layer == 0) & (r.circuit == "mlp_out")
    engine = r[pick & (r.kind == "weight") & (r.v_slice == "split")].per.iloc[0]
    return pd.Series({"size": size, "seed": seed, "step": step, "by hand": mine, "engine": float(engine)})


def per_at_v_slice(d, v_slice: str) -> pd.DataFrame:
    """Chapter 6 (:class:`lmconv.chapters.effective_rank.EffectiveRankData`): per size, circuit and kind, the median
    PER over seeds and matrices at the last step, with the chapter's ``v_slice`` and with ``v_slice``."""
    from ..lenses import activations as act

    frames = []
    for v in dict.fromkeys([d.P.v_slice, v_slice]):
        per = act.select_per(d.res.rank, v, d.P.per_pool)
        last = per[per.step == per.step.max()]
        frames.append(last.groupby(["size", "circuit", "kind"], sort=False).per.median().to_frame().assign(v_slice=v))
    return pd.concat(frames).reset_index().set_index(["v_slice", "size", "circuit", "kind"])


def sosd_at_window(curves: pd.DataFrame, val_log: pd.DataFrame, P, window: int) -> pd.DataFrame:
    """Chapters 7 and 8: per arm (family) and size, in how many runs t_S and t_L are found and their median
    steps, with the chapter's ``sosd_window`` (in ``P``) and with ``window`` (the rest of ``P``'s rule kept)."""
    import dataclasses

    from ..lenses import spectral as sp

    rule = sp.SosdRule.from_params(P)
    frames = []
    for w in dict.fromkeys([rule.window, window]):
        ev = sp.sosd_summary(curves, val_log, dataclasses.replace(rule, window=w))
        g = ev.groupby(["family", "size"], sort=False)
        frames.append(
            pd.DataFrame(
                {
                    "runs": g.size(),
                    "t_S found": g.t_S.count(),
                    "median t_S": g.t_S.median(),
                    "t_L found": g.t_L.count(),
                    "median t_L": g.t_L.median(),
                }
            ).assign(sosd_window=w)
        )
    return pd.concat(frames).reset_index().set_index(["sosd_window", "family", "size"])


def aligned_at(d, align_tol: float) -> pd.DataFrame:
    """Chapter 9 (:class:`lmconv.chapters.three_lenses.ThreeLensesData`): per pair of events, in how many sizes
    they line up, with the chapter's ``align_tol`` and with ``align_tol`` (decades)."""
    from ..lenses import synthesis as syn

    frames = [
        syn.aligned_pairs(d.gap_table, t)[["a", "b", "sizes_aligned", "sizes_measured"]].assign(align_tol=t)
        for t in dict.fromkeys([d.P.align_tol, align_tol])
    ]
    return pd.concat(frames).set_index(["align_tol", "a", "b"])


def event_gap(summary: pd.DataFrame, size: str, a: str, b: str) -> float:
    """The gap, in decades, from event ``a``'s median step to event ``b``'s in one size (NaN if either is unseen)."""
    med = summary[summary["size"] == size].set_index("event")["median"]
    ma, mb = med.get(a, np.nan), med.get(b, np.nan)
    if not (ma > 0 and mb > 0):
        return float("nan")
    return float(np.log10(mb) - np.log10(ma))


def early_shares_at(d, cka_threshold: float) -> pd.DataFrame:
    """Chapter 10 (:class:`lmconv.chapters.training_length.LadderPage`): per size and cooled length, the mean share
    of layers stable within the first 20% of training, at the chapter's CKA threshold and at ``cka_threshold``."""
    from ..lenses import activations as act
    from ..lenses import ladder as L

    rows = []
    for r in (r for r in d.lad.rungs if r.variant == L.COOLED):
        res = L.rung_results(d.prof, r, d.lad.sizes, d.lad.seeds)
        for t in dict.fromkeys([d.P.cka_threshold, cka_threshold]):
            for size, shares in act.early_shares(L.rung_stabilisation(res, r, t), sizes=res.sizes).items():
                rows.append({"cka_threshold": t, "size": size, "length": r.length, "share": float(np.mean(shares))})
    return pd.DataFrame(rows).set_index(["cka_threshold", "size", "length"])


def tokens_per_parameter(steps: int, batch_size: int, context: int, parameters: int) -> float:
    """The training tokens of a run of ``steps`` steps of ``batch_size`` sequences of ``context`` tokens, per
    parameter of the model."""
    tokens = steps * batch_size * context
    return tokens / parameters
