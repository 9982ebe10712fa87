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
