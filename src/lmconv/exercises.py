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
