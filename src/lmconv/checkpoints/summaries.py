"""Small tables the chapters show about a suite: its sizes, how they map to the PolyPythias, its training."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..findings import papers
from ..training import profiles


def parameter_count(hidden: int, layers: int, vocab: int) -> tuple[int, int]:
    """(total, non-embedding) parameters of a GPT-NeoX model with untied embeddings and 4× MLP."""
    per_layer = 12 * hidden * hidden + 13 * hidden  # qkv, dense, two MLP matrices, biases and two layer norms
    non_emb = layers * per_layer + 2 * hidden
    return non_emb + 2 * vocab * hidden, non_emb


def sizes_table(profile: profiles.Profile) -> pd.DataFrame:
    """Shape and parameter counts of every size of a profile."""
    rows = []
    for s in profile.sizes.values():
        total, non_emb = parameter_count(s.hidden, s.layers, profile.vocab_size)
        rows.append(
            {
                "size": s.name,
                "layers": s.layers,
                "d_model": s.hidden,
                "heads": s.heads,
                "d_head": s.head_dim,
                "parameters": total,
                "non-embedding": non_emb,
            }
        )
    return pd.DataFrame(rows)


def polypythia_table() -> pd.DataFrame:
    """Shape and parameter counts of the PolyPythia sizes, from their model cards."""
    rows = []
    for name in papers.POLYPYTHIA_SIZES:
        layers, d, heads = papers.POLYPYTHIA_SHAPES[name]
        total, non_emb = parameter_count(d, layers, papers.PYTHIA_VOCAB)
        rows.append(
            {
                "size": name,
                "layers": layers,
                "d_model": d,
                "heads": heads,
                "d_head": d // heads,
                "parameters": total,
                "non-embedding": non_emb,
            }
        )
    return pd.DataFrame(rows)


def tokens_per_parameter(profile: profiles.Profile) -> pd.Series:
    """Training tokens one run of the profile's main arm sees per parameter, per size (the profile's order)."""
    arm = profile.arm(None)
    sizes = sizes_table(profile).set_index("size")
    return (arm.train.steps * arm.train.batch_size * profile.context / sizes.parameters).rename("tokens per parameter")


def polypythia_tokens_per_parameter() -> pd.Series:
    """Tokens per parameter of each PolyPythia size: 143,000 steps of 2,097,152 tokens over its parameters."""
    pp = polypythia_table().set_index("size")
    tokens = papers.PYTHIA_STEPS * papers.PYTHIA_TOKENS_PER_STEP
    return (tokens / pp.parameters).rename("tokens per parameter")


def nearest_polypythia(profile: profiles.Profile) -> pd.DataFrame:
    """Each of our sizes beside the PolyPythia size closest in non-embedding parameters (log scale)."""
    ours, theirs = sizes_table(profile), polypythia_table()
    rows = []
    for r in ours.itertuples():
        dist = (np.log(theirs["non-embedding"]) - np.log(r._7)).abs()
        j = int(dist.idxmin())
        rows.append(
            {
                "size": r.size,
                "non-embedding": r._7,
                "closest PolyPythia": theirs.loc[j, "size"],
                "its non-embedding": int(theirs.loc[j, "non-embedding"]),
                "ratio (ours / theirs)": r._7 / theirs.loc[j, "non-embedding"],
            }
        )
    return pd.DataFrame(rows)


def lr_curve(profile: profiles.Profile, arm: str | None = None, points: int = 400) -> pd.DataFrame:
    """The learning rate of an arm at ``points`` steps, from the profile's schedule."""
    a = profile.arm(arm)
    total = a.train.steps
    steps = np.unique(np.linspace(0, total - 1, points).astype(int))
    return pd.DataFrame(
        {
            "step": steps,
            "lr": [a.train.lr * a.train.schedule.multiplier(int(s), total) for s in steps],
            "arm": a.family,
        }
    )


def smooth_train_loss(train_log: pd.DataFrame, every: int = 25) -> pd.DataFrame:
    """Training loss averaged over windows of ``every`` steps (per run), for readable curves."""
    df = train_log.copy()
    df["bucket"] = (df.step - 1) // every
    g = df.groupby(["family", "size", "seed", "bucket"], as_index=False).agg(
        step=("step", "max"), loss=("loss", "mean")
    )
    return g.drop(columns="bucket")


def late_rise(val_log: pd.DataFrame, total_steps: int) -> tuple[float, float, str]:
    """Does validation loss rise late in training (overfitting)? Returns (largest rise, seed spread, sentence).

    The rise of a run is its last validation loss minus its minimum over the second half of training; the
    seed spread is, for the size where it is largest, the median over second-half steps of max − min across
    seeds (a rise at a few late steps barely moves it). A rise larger than that spread counts as overfitting
    (a smaller one is within what changing the seed does)."""
    late = val_log[val_log.step >= total_steps // 2].sort_values("step")
    rises = late.groupby(["size", "seed"]).val_loss.apply(lambda v: float(v.iloc[-1] - v.min()))
    per_step = late.groupby(["size", "step"]).val_loss
    spread = float((per_step.max() - per_step.min()).groupby("size").median().max())
    worst = float(rises.max())
    over = rises[rises > spread]
    if over.empty:
        text = (
            f"Over the second half of training no run's validation loss rose by more than {worst:.3f} nats above its "
            f"minimum, within the {spread:.3f}-nat spread between seeds, so the late phases of the following "
            "chapters are not driven by overfitting."
        )
    else:
        text = (
            f"In {len(over)} of {len(rises)} runs the validation loss rose by up to {worst:.3f} nats above its "
            f"second-half minimum, more than the {spread:.3f}-nat spread between seeds: these runs overfit late in "
            "training, and the late phases of the following chapters may reflect it."
        )
    return worst, spread, text
