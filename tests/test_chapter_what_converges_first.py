"""Chapter 3's module on the smoke suite: every section runs, glues exactly what the page quotes, and its numbers
and words agree with a recomputation from the engine's tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmconv import book, chapters
from lmconv.chapters import params
from lmconv.chapters import what_converges_first as ch
from lmconv.data import linguistics as L
from lmconv.lenses import kl as K

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_what_converges_first.md"
SECTIONS = book.page_sections(NOTEBOOK)
UNQUOTED = {"n_tok", "f_lo_min_small", "f_hi_min_small"}  # glued for readers of the executed notebook, not in prose


@pytest.fixture(scope="module")
def d(smoke_suite):
    return ch.load(params.from_namespace(book.page_parameters(NOTEBOOK, profile="smoke", kl_boot=20)))


@pytest.fixture(scope="module")
def g(d) -> dict:
    return chapters.collect(ch, d, SECTIONS)


def final_kl(d, size: str) -> pd.Series:
    """Per probe position, the mean KL over ordered seed pairs at the last step, from the engine's pairs table."""
    p = d.r.pairs[d.r.pairs["size"] == size]
    return p[p["step"] == p["step"].max()].groupby("pos")["kl"].mean()


def test_sections_glue_every_name_the_page_quotes_once(g):
    quoted = book.glue_names(NOTEBOOK)
    assert set(g) == quoted | UNQUOTED
    assert not UNQUOTED & quoted


def test_bin_sizes_match_the_training_counts(d, g):
    counts = d.r.counts[d.r.targets["target_id"].to_numpy()]
    for end in ("lo", "hi"):
        lo, hi = (float(x) for x in g[f"{end}_bin"].strip("[)").split(", "))
        assert g[f"{end}_bin_n"] == int(((counts >= lo) & (counts < hi)).sum()) >= ch.MIN_BIN
    assert g["tab_bins"]["probe tokens"].sum() == len(d.r.targets)


def test_frequency_bin_econv_is_minus_the_mean_kl_over_its_tokens(d, g):
    labels = pd.Series(np.asarray(d.flabels), index=d.r.targets["pos"].to_numpy())
    for tag, size in (("small", d.ends["small"]), ("large", d.ends["large"])):
        p = d.r.pairs[(d.r.pairs["size"] == size) & (d.r.pairs["step"] == d.r.pairs["step"].max())]
        in_bin = p[p["pos"].map(labels) == g["lo_bin"]]
        per_pair = in_bin.groupby(["seed_i", "seed_j"])["kl"].mean()
        assert len(per_pair) == g["n_pairs"]
        assert g[f"f_lo_final_{tag}"] == pytest.approx(-per_pair.mean(), rel=1e-9)
        assert g[f"f_lo_sd_{tag}"] == pytest.approx(per_pair.std(ddof=1), rel=1e-9)
        assert g[f"f_lo_min_{tag}"] <= g[f"f_lo_final_{tag}"]


def test_frequency_words_follow_the_numbers(g):
    for tag in ("small", "large"):
        if g[f"f_mono_{tag}"] == "rises":
            assert g[f"f_hi_final_{tag}"] > g[f"f_lo_final_{tag}"]
    if g["hi_best"] == "is":
        assert all(g[f"f_hi_final_{t}"] >= g[f"f_lo_final_{t}"] for t in ("small", "large"))
    assert g["n_quoted"] >= 2 and g["lo_bin"] != g["hi_bin"]


def test_surprisal_words_follow_the_numbers(g):
    agree = {t: g[f"s_lo_final_{t}"] > g[f"s_hi_final_{t}"] for t in ("small", "large")}
    assert g["s_which"] == ch.WHICH_SIZES[(agree["small"], agree["large"])]
    for tag in ("small", "large"):
        if g[f"s_mono_{tag}"] == "falls":
            assert not agree[tag]


def test_size_coefficient_words_follow_its_interval(g):
    lo, hi = g["delta_lo"], g["delta_hi"]
    assert lo <= hi
    expected = "above" if lo > 0 else "below" if hi < 0 else "neither"
    assert g["delta_words"] == ch.LARGE_VS_SMALL[expected]


def test_regression_stacks_every_size_and_alpha_stays_in_its_range(d, g):
    assert g["n_rows"] == len(d.r.targets) * len(d.r.sizes)
    assert g["n_boot"] == 20 and g["n_docs"] == d.r.targets["doc"].nunique()
    assert g["alpha_min"] <= g["alpha_final"] <= g["alpha_max"]
    assert 0.0 <= g["alpha_pos_share"] <= 1.0
    assert g["alpha_min_step"] in d.r.steps and g["alpha_max_step"] in d.r.steps
    assert g["freq_verdict"].split(":")[0] in ("Reproduced", "Contradicted", "Inconclusive")


def test_extremes_are_the_highest_and_lowest_mean_kl_positions(d, g):
    n = g["table_n"]
    assert g["tab_tokens"].shape == (3 * n, len(d.r.sizes))
    tags = K.position_tags(d.upos if d.ptb is None else d.ptb, d.r.targets, "current")
    freq = d.r.targets["frequency"].to_numpy()
    top, bottom = [], []
    for size in d.r.sizes:
        kl = final_kl(d, size).to_numpy()[tags != L.UNK]
        f = freq[tags != L.UNK]
        top += list(f[np.argsort(kl)[::-1][:n]])
        bottom += list(f[np.argsort(kl)[:n]])
    assert g["ext_hi_freq"] == float(np.median(top))
    assert g["ext_lo_freq"] == float(np.median(bottom))
