"""Chapter 1's tables and sentences."""

from __future__ import annotations

import pandas as pd

from lmconv.checkpoints import summaries


def _val(late_up: float) -> pd.DataFrame:
    rows = []
    for size in ("a", "b"):
        for seed in (1, 2, 3):
            for step in (0, 50, 100, 150, 200):
                loss = 6.0 - 0.01 * step + 0.001 * seed
                if step == 200 and seed == 1:
                    loss += late_up
                rows.append({"size": size, "seed": seed, "step": step, "val_loss": loss})
    return pd.DataFrame(rows)


def test_late_rise_says_overfitting_only_beyond_the_seed_spread():
    rise, spread, text = summaries.late_rise(_val(0.0), 200)
    assert rise == 0.0 and "not driven by overfitting" in text
    rise, spread, text = summaries.late_rise(_val(0.8), 200)
    assert rise > spread and "overfit late" in text and "In 2 of 6 runs" in text


def test_tokens_per_parameter_by_hand():
    from lmconv.checkpoints import summaries
    from lmconv.findings import papers
    from lmconv.training import profiles

    prof = profiles.load("default")
    tpp = summaries.tokens_per_parameter(prof)
    params = summaries.sizes_table(prof).set_index("size").parameters
    assert list(tpp.index) == list(prof.sizes)
    assert tpp["0.3m"] == 2000 * 16 * 128 / params["0.3m"]
    pp = summaries.polypythia_tokens_per_parameter()
    big = summaries.polypythia_table().set_index("size").parameters["410m"]
    assert pp["410m"] == papers.PYTHIA_STEPS * papers.PYTHIA_TOKENS_PER_STEP / big and pp.is_monotonic_decreasing
