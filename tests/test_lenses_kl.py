"""The cross-seed convergence lens (chapters 2–4) on synthetic tables with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmconv.analysis.cache import TableCache
from lmconv.chapters import params
from lmconv.data import corpus
from lmconv.data import linguistics as L
from lmconv.errors import LmconvError
from lmconv.lenses import kl as K

SEEDS = (1, 2, 3)
STEPS = np.array([0, 1, 2, 4, 8])


def synthetic_pairs(kl_fn, sizes=("a",), steps=STEPS, seeds=SEEDS, n_pos=6, shuffle=True) -> pd.DataFrame:
    """The engine's pairs table (every ordered pair i ≠ j) with KL given by ``kl_fn(size, step, i, j, pos)``."""
    rows = []
    for size in sizes:
        for st in steps:
            for i in seeds:
                for j in seeds:
                    if i != j:
                        for p in range(n_pos):
                            rows.append((size, int(st), i, j, p, kl_fn(size, st, i, j, p)))
    df = pd.DataFrame(rows, columns=["size", "step", "seed_i", "seed_j", "pos", "kl"])
    df.insert(0, "family", "lmconv")
    return df.sample(frac=1.0, random_state=0).reset_index(drop=True) if shuffle else df


def known_kl(size, step, i, j, pos):
    """Each ordered pair has its own level; tokens differ by (1 + pos); KL grows with the step."""
    return (1.0 + step) * (1.0 + pos) * (0.1 * i + 0.01 * j)


# ------------------------------------------------------------------------------------------- E[conv]


def test_econv_and_both_bands_match_hand_computation():
    cubes = K.pair_cubes(synthetic_pairs(known_kl), "ordered", n_pos=6)
    c = cubes["a"]
    assert c.values.shape == (len(STEPS), 6, 6) and c.kind == "pairs"
    pairs = [(i, j) for i in SEEDS for j in SEEDS if i != j]
    assert list(c.reps) == pairs
    pos = np.arange(6)
    for st in STEPS:
        per_pair = np.array([np.mean([known_kl("a", st, i, j, p) for p in pos]) for i, j in pairs])
        per_token = np.array([np.mean([known_kl("a", st, i, j, p) for i, j in pairs]) for p in pos])
        e_pairs = K.econv(cubes, "pairs")
        e_tok = K.econv(cubes, "tokens")
        assert K.value_at(e_pairs, "a", int(st)) == pytest.approx(-per_pair.mean())
        assert K.value_at(e_tok, "a", int(st)) == pytest.approx(-per_token.mean())  # same E[conv]
        assert K.value_at(e_pairs, "a", int(st), col="sd") == pytest.approx(per_pair.std(ddof=1))
        assert K.value_at(e_tok, "a", int(st), col="sd") == pytest.approx(per_token.std(ddof=1))
        lo, hi = K.value_at(e_pairs, "a", int(st), col="lo"), K.value_at(e_pairs, "a", int(st), col="hi")
        assert lo == pytest.approx(-per_pair.mean() - per_pair.std(ddof=1))
        assert hi == pytest.approx(-per_pair.mean() + per_pair.std(ddof=1))
    assert (K.econv(cubes, "pairs")["value"] <= 0).all()


def test_symmetric_direction_averages_the_two_directions_and_keeps_econv():
    df = synthetic_pairs(known_kl)
    ordered, sym = K.pair_cubes(df, "ordered")["a"], K.pair_cubes(df, "symmetric")["a"]
    assert list(sym.reps) == [(1, 2), (1, 3), (2, 3)]
    k = list(sym.reps).index((1, 3))
    want = 0.5 * (known_kl("a", 4, 1, 3, 2) + known_kl("a", 4, 3, 1, 2))
    assert sym.values[3, k, 2] == pytest.approx(want)
    e_o = K.econv({"a": ordered}, "pairs")
    e_s = K.econv({"a": sym}, "pairs")
    np.testing.assert_allclose(e_o["value"], e_s["value"])
    assert not np.allclose(e_o["sd"], e_s["sd"])  # the spread over pairs differs
    assert (e_s["n_reps"] == 3).all() and (e_o["n_reps"] == 6).all()


def test_cube_rejects_missing_cells_and_wrong_band():
    df = synthetic_pairs(known_kl).iloc[1:]
    with pytest.raises(LmconvError, match="misses 1"):
        K.pair_cubes(df)
    cubes = K.pair_cubes(synthetic_pairs(known_kl))
    with pytest.raises(LmconvError, match="band 'seeds'"):
        K.econv(cubes, "seeds")


def test_several_sizes_are_separate_cubes():
    cubes = K.pair_cubes(synthetic_pairs(lambda s, st, i, j, p: 2.0 if s == "big" else 1.0, sizes=("small", "big")))
    assert list(cubes) == ["small", "big"]
    e = K.econv(cubes)
    assert K.value_at(e, "big") == pytest.approx(-2.0) and K.value_at(e, "small") == pytest.approx(-1.0)


def test_relative_to_start_divides_each_pair_by_its_step0():
    cubes = K.pair_cubes(synthetic_pairs(known_kl))
    rel = K.relative_to_start(cubes)
    for st in STEPS:  # every pair grows by (1 + step), so the ratio is exact with no spread
        assert K.value_at(rel, "a", int(st)) == pytest.approx(1.0 + st)
        assert K.value_at(rel, "a", int(st), col="sd") == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------------------------------------ bins


def test_frequency_bin_aggregation_uses_true_ranges_and_target_counts():
    counts = np.array([5, 50, 500, 5000, 50000, 500000])  # token id k has a count in decade k
    target_ids = np.array([0, 3, 3, 5, 2, 2])  # per probe position
    labels = K.frequency_labels(counts, target_ids)
    assert list(labels) == ["[0, 10)", "[1e3, 1e4)", "[1e3, 1e4)", "[1e5, inf)", "[100, 1e3)", "[100, 1e3)"]
    cubes = K.pair_cubes(synthetic_pairs(known_kl))
    g = K.econv(cubes, "pairs", {"a": labels})
    assert list(dict.fromkeys(g["group"])) == ["[0, 10)", "[100, 1e3)", "[1e3, 1e4)", "[1e5, inf)"]  # bin order
    pairs = [(i, j) for i in SEEDS for j in SEEDS if i != j]
    per_pair = [np.mean([known_kl("a", 8, i, j, p) for p in (1, 2)]) for i, j in pairs]
    assert K.value_at(g, "a", 8, "[1e3, 1e4)") == pytest.approx(-np.mean(per_pair))
    assert K.value_at(g, "a", 8, "[1e3, 1e4)", col="sd") == pytest.approx(np.std(per_pair, ddof=1))
    assert K.value_at(g, "a", 8, "[1e3, 1e4)", col="n_tokens") == 2
    table = K.frequency_bin_table(labels)
    assert table.loc["[100, 1e3)", "paper's label"] == "10^3-10^4"  # the paper's off-by-one-decade label
    assert table["probe tokens"].tolist() == [1, 0, 2, 2, 0, 1]


def synthetic_tokens(values_fn, sizes=("a",), steps=STEPS, seeds=SEEDS, n_pos=6) -> pd.DataFrame:
    rows = [
        (s, int(st), k, p, values_fn(s, st, k, p)) for s in sizes for st in steps for k in seeds for p in range(n_pos)
    ]
    df = pd.DataFrame(rows, columns=["size", "step", "seed", "pos", "surprisal"])
    return df.sample(frac=1.0, random_state=1).reset_index(drop=True)


def test_surprisal_bins_from_seed_mean_or_first_seed_and_cross_entropy_by_bin():
    # final surprisal per position: seed 1 gives 0.5 everywhere, the seed mean gives 0.5 + position
    def surprisal(s, st, k, p):
        return 0.5 if k == 1 else 0.5 + 1.5 * p

    cubes = K.token_cubes(synthetic_tokens(surprisal), "surprisal")
    assert cubes["a"].kind == "seeds" and cubes["a"].reps == SEEDS
    mean_labels = K.surprisal_labels(cubes, "seed_mean")["a"]
    first_labels = K.surprisal_labels(cubes, "first_seed")["a"]
    assert list(first_labels) == ["[0, 1)"] * 6
    assert list(mean_labels) == ["[0, 1)", "[1, 2)", "[2, 4)", "[2, 4)", "[4, 8)", "[4, 8)"]
    ce = K.seed_means(cubes, {"a": mean_labels})
    vals = [surprisal("a", 8, k, 4) for k in SEEDS] + [surprisal("a", 8, k, 5) for k in SEEDS]
    per_seed = [np.mean([surprisal("a", 8, k, p) for p in (4, 5)]) for k in SEEDS]
    assert K.value_at(ce, "a", 8, "[4, 8)") == pytest.approx(np.mean(per_seed))
    assert K.value_at(ce, "a", 8, "[4, 8)", col="sd") == pytest.approx(np.std(per_seed, ddof=1))
    assert min(vals) < K.value_at(ce, "a", 8, "[4, 8)") < max(vals)


# ------------------------------------------------------------------------------------------ regression


def test_regression_recovers_known_coefficients():
    rng = np.random.default_rng(3)
    n = 400
    freq = rng.integers(0, 100_000, n)
    cur = rng.choice(["NOUN", "VERB", "DET"], n)
    ctx = rng.choice(["NOUN", "ADP"], n)
    steps = np.array([0, 10, 100])
    alpha = {0: 0.0, 10: 0.02, 100: 0.05}
    beta_cur = {"NOUN": 0.0, "VERB": -0.03, "DET": 0.01}
    beta_ctx = {"NOUN": 0.0, "ADP": 0.02}
    delta = {"s": 0.0, "m": -0.04, "l": -0.07}
    lf = np.log10(1.0 + freq)

    def conv(size, t):
        return (
            -0.2
            + alpha[t] * lf
            + np.array([beta_cur[c] for c in cur])
            + np.array([beta_ctx[c] for c in ctx])
            + delta[size]
        )

    cubes = {}
    for size in delta:
        noise = rng.normal(0, 0.01, (len(steps), 4, n))
        noise -= noise.mean(axis=1, keepdims=True)  # pair deviations cancel in the pair mean
        vals = np.stack([-conv(size, t) for t in steps])[:, None, :] + noise
        cubes[size] = K.Cube(size, steps, ((1, 2), (2, 1), (1, 3), (3, 1)), "pairs", vals)
    reg = K.regression(cubes, freq, cur, ctx, n_boot=30, min_count=1)
    co = reg.coef.set_index(["step", "term"])
    for t in steps:
        assert co.loc[(t, "log10 frequency"), "coef"] == pytest.approx(alpha[t], abs=1e-9)
        assert co.loc[(t, "current: VERB"), "coef"] == pytest.approx(-0.03, abs=1e-9)
        assert co.loc[(t, "current: DET"), "coef"] == pytest.approx(0.01, abs=1e-9)
        assert co.loc[(t, "context: ADP"), "coef"] == pytest.approx(0.02, abs=1e-9)
        assert co.loc[(t, "size: m"), "coef"] == pytest.approx(-0.04, abs=1e-9)
        assert co.loc[(t, "size: l"), "coef"] == pytest.approx(-0.07, abs=1e-9)
        assert co.loc[(t, "intercept"), "coef"] == pytest.approx(-0.2, abs=1e-9)
    assert reg.reference == {"pos": "NOUN", "size": "s"}
    bare = K.regression(cubes, freq, cur, ctx, n_boot=0, pos=False)
    assert bare.terms == ["intercept", "log10 frequency", "size: m", "size: l"]
    assert bare.coef["lo"].isna().all()  # no bootstrap asked
    assert reg.n_rows == 3 * n
    assert (reg.coef["lo"] <= reg.coef["coef"] + 1e-12).all() and (reg.coef["coef"] <= reg.coef["hi"] + 1e-12).all()


def test_regression_bootstrap_interval_covers_truth_with_noisy_tokens():
    rng = np.random.default_rng(5)
    n = 600
    freq = rng.integers(0, 10_000, n)
    cur = np.array(["NOUN"] * n)
    steps = np.array([0, 1])
    y = 0.03 * np.log10(1.0 + freq) + rng.normal(0, 0.02, n)
    cubes = {
        s: K.Cube(s, steps, ((1, 2), (2, 1)), "pairs", np.tile(-y, (2, 2, 1)) + (0.01 if s == "b" else 0)) for s in "ab"
    }
    reg = K.regression(cubes, freq, cur, cur, n_boot=100, seed=1)
    row = reg.coef[(reg.coef["term"] == "log10 frequency") & (reg.coef["step"] == 1)].iloc[0]
    assert row["lo"] < 0.03 < row["hi"]
    assert 0 < row["sd"] < 0.01
    d = reg.coef[(reg.coef["term"] == "size: b")]
    np.testing.assert_allclose(d["coef"], -0.01, atol=1e-9)  # KL 0.01 higher = E[conv] 0.01 lower


def test_rare_levels_fold_into_other():
    x, names = K._one_hot(np.array(["NOUN"] * 30 + ["VERB"] * 25 + ["INTJ", "SYM"]), "current", "NOUN", 20)
    assert names == ["current: VERB", "current: other"]
    assert x[:, 1].sum() == 2 and x[:, 0].sum() == 25


# ---------------------------------------------------------------------------------------------- phases


PH_STEPS = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2000])


def phase_curve(steps):
    """Flat to 8, dip to 0.8·KL0 at 32, peak 3·KL0 at 512, 20% below the peak at the end."""
    kx = np.log10([1, 8, 32, 512, 2000])
    ky = [1.0, 1.0, 0.8, 3.0, 2.4]
    return 0.05 * np.interp(np.log10(np.maximum(steps, 1)), kx, ky)


def test_phase_summary_per_size_on_a_synthetic_curve():
    base = phase_curve(PH_STEPS)
    scale = {(i, j): 1.0 + 0.02 * (i - j) for i in SEEDS for j in SEEDS if i != j}

    def kl_fn(size, step, i, j, pos):
        curve = base if size == "big" else 0.05 * np.interp(np.log10(np.maximum(PH_STEPS, 1)), [0, 3.4], [1, 3])
        return scale[(i, j)] * curve[list(PH_STEPS).index(step)]

    df = synthetic_pairs(kl_fn, sizes=("small", "big"), steps=PH_STEPS, n_pos=3)
    spreads = K.phase_spreads(K.pair_cubes(df), rel_tol=0.05)
    big, small = spreads["big"].mean_curve, spreads["small"].mean_curve
    assert (big.uniform_end, big.trough_step, big.peak_step) == (8, 32, 512)
    assert big.has_convergence and big.has_divergence and big.has_reconvergence
    assert big.fall == pytest.approx(0.2)
    assert spreads["big"].n_reconvergence == 6
    assert small.has_divergence and not small.has_reconvergence and small.peak_step == 2000
    table = K.phase_table(spreads, total_steps=2000)
    assert table.loc["big", "(iii) peak"].startswith("512 | 512 [512, 512]")
    assert table.loc["big", "pairs with (ii)/(iii)/(iv)"] == "6/6/6 of 6"
    assert table.loc["small", "pairs with (ii)/(iii)/(iv)"].endswith("/6/0 of 6")
    assert table.loc["big", "peak / training"] == "26%"
    spans = K.phase_spans(spreads)
    big_spans = spans[spans["size"] == "big"].set_index("phase")
    assert tuple(big_spans.loc["(iii) sharp divergence", ["start", "end"]]) == (32, 512)
    assert tuple(big_spans.loc["(iv) slow reconvergence", ["start", "end"]]) == (512, 2000)
    assert "(iv) slow reconvergence" not in set(spans[spans["size"] == "small"]["phase"])
    cmp = K.paper_comparison(spreads, total_steps=2000)
    assert cmp.loc["(iii)→(iv)", "paper: step"] == 2000
    assert cmp.loc["(iii)→(iv)", "big: step"] == 512
    assert cmp.loc["(iii)→(iv)", "big: fraction"] == pytest.approx(512 / 2000)
    assert cmp.loc["(i)→(ii)", "paper: fraction"] == pytest.approx(16 / 143000)


# ------------------------------------------------------------------------------------- ICL, LR, tokens


def test_icl_score_is_type_matched():
    # short-context targets are mostly type 0 (easy), long-context ones mostly type 1 (hard)
    target_id = np.array([0, 0, 0, 1, 0, 1, 1, 1, 1, 0])
    context_len = np.array([1, 2, 3, 4, 50, 60, 70, 80, 90, 100])
    hard = {0: 2.0, 1: 6.0}

    def tokens(gain):
        def fn(s, st, k, p):
            return hard[target_id[p]] - (gain * st if context_len[p] >= 50 else 0.0)

        return K.token_cubes(synthetic_tokens(fn, steps=np.array([0, 1]), n_pos=10), "surprisal")

    none = K.icl_scores(tokens(0.0), context_len, target_id, short=4, long=50)
    np.testing.assert_allclose(none["value"], 0.0, atol=1e-12)  # token mix differs, but context is not used
    assert (none["short"] < none["long"]).all()  # a plain difference of means would be negative
    helped = K.icl_scores(tokens(0.3), context_len, target_id, short=4, long=50)
    assert K.value_at(helped, "a", 1) == pytest.approx(0.3)
    assert int(helped["n_short"].iloc[0]) == 4 and int(helped["n_matched"].iloc[0]) == 4
    assert K.icl_windows(128) == (16, 96)
    with pytest.raises(LmconvError):
        K.icl_windows(64, 40, 30)


def test_pythia_lr_schedule():
    lr = K.pythia_lr(np.array([0, 715, 1430, 143000 - 1430]), 1e-3, 1e-4)
    assert lr[0] == 0 and lr[1] == pytest.approx(5e-4) and lr[2] == pytest.approx(1e-3, rel=1e-3)
    assert lr[3] == pytest.approx(1e-4)


def test_token_extremes_rank_by_final_kl_and_skip_untagged():
    final = np.array([0.5, 0.1, 0.9, 0.3, 0.05, 0.7, 0.2, 0.6])
    vals = np.stack([np.zeros((2, 8)), np.tile(final, (2, 1))])  # (steps, pairs, tokens)
    cube = K.Cube("a", np.array([0, 1]), ((1, 2), (2, 1)), "pairs", vals)
    targets = pd.DataFrame({"target_id": np.arange(8), "target_index": np.arange(1, 9), "frequency": np.arange(8) * 10})
    tags = np.array(["NN", "IN", "UNK", "DT", "NN", "VB", "JJ", "NN"])
    ext = K.token_extremes(cube, targets, tags, lambda ids: "".join(f"<{i}>" for i in ids), n=2, stream=np.arange(10))
    by = {g: ext[ext["group"] == g] for g in K.GROUPS}
    assert by[K.GROUPS[0]]["token"].tolist() == ["<4>", "<1>"]
    assert by[K.GROUPS[1]]["token"].tolist() == ["<6>", "<3>"]
    assert by[K.GROUPS[2]]["token"].tolist() == ["<5>", "<7>"]  # position 2 (KL 0.9) is untagged
    assert by[K.GROUPS[0]]["kl"].tolist() == pytest.approx([0.05, 0.1])
    assert by[K.GROUPS[2]]["context"].iloc[0] == "<3><4><5>"
    assert by[K.GROUPS[2]]["frequency"].tolist() == [50, 70]
    wide = K.extremes_wide(ext)
    assert list(wide.columns) == ["a"] and wide.shape[0] == 6
    assert K.show_token(" a\nb") == "␣a⏎b"
    # asking for more than a third of the tagged tokens keeps the three groups apart
    assert len(K.token_extremes(cube, targets, tags, str, n=5)) == 6


# ---------------------------------------------------------------------------------------------- POS


def test_tag_groups_spacy_uses_ptb_groups_and_gold_uses_upos_counterparts():
    ptb = np.array(["NN", "NNS", "VBP", "MD", "UNK"])
    upos = np.array(["NOUN", "PROPN", "VERB", "AUX", "UNK"])
    assert K.tag_groups(ptb, upos, "grouped").tolist() == ["Nouns", "Nouns", None, "MD", None]
    assert K.tag_groups(None, upos, "grouped").tolist() == ["Nouns", "Nouns", "Verbs", "AUX", None]
    assert K.word_classes(np.array(["DET", "NOUN", "NUM"])).tolist() == ["function", "content", None]
    table = K.groups_table()
    assert list(table.index) == list(K.GROUPINGS)
    assert "Nouns = NN, NNS, NNP, NNPS" in table.loc["grouped", "Penn Treebank tags (spaCy)"]


def test_position_tags_current_and_context():
    tags = np.array(["UNK", "DT", "NN", "VBZ"])
    targets = pd.DataFrame({"target_index": [1, 2, 3]})
    assert K.position_tags(tags, targets, "current").tolist() == ["DT", "NN", "VBZ"]
    assert K.position_tags(tags, targets, "context").tolist() == ["UNK", "DT", "NN"]


def test_spacy_words_are_tagged_once_and_cached(tmp_path, monkeypatch):
    calls = []

    def fake_tag(docs, batch_size=8, parser=False):
        calls.append(len(docs))
        return [[(0, 3, "DT", "DET"), (4, 7, "NN", "NOUN")] for _ in docs]

    monkeypatch.setattr(L, "spacy_tag", fake_tag)
    docs = [corpus.Document("d1", "g", "The cat"), corpus.Document("d2", "g", "The dog")]
    cache = TableCache("pos", root=tmp_path)
    first = K.spacy_words(docs, cache)
    second = K.spacy_words(docs, cache)
    assert calls == [2]
    assert first == second == [[(0, 3, "DT", "DET"), (4, 7, "NN", "NOUN")]] * 2
    K.spacy_words([corpus.Document("d3", "g", "A cat")], cache)  # other documents, other key
    assert calls == [2, 1]


def test_parameters_are_registered():
    ok = params.validate(icl_short=16, icl_long=None, surprisal_ref="first_seed", kl_boot=0, kl_table_n=5)
    assert ok.surprisal_ref == "first_seed"
    for bad in ({"surprisal_ref": "seed1"}, {"kl_boot": -1}, {"kl_table_n": 0}, {"icl_short": 0}):
        with pytest.raises(LmconvError):
            params.validate(**bad)


def test_regression_interval_clusters_on_documents_and_seeds():
    """Noise shared by the tokens of a document is one draw per document: resampling tokens as if independent
    gives an interval several times too narrow; resampling documents does not. A seed whose pairs disagree
    widens the interval only when the seeds are resampled."""
    rng = np.random.default_rng(7)
    n_docs, per_doc = 20, 30
    n = n_docs * per_doc
    docs = np.repeat(np.arange(n_docs), per_doc)
    lf = rng.uniform(1, 4, n_docs)[docs] + rng.normal(0, 0.1, n)  # frequency varies mostly between documents
    freq = 10**lf - 1.0
    cur = np.array(["NOUN"] * n)
    y = 0.03 * lf + rng.normal(0, 0.05, n_docs)[docs]  # noise shared by the tokens of a document
    pairs = ((1, 2), (2, 1), (1, 3), (3, 1), (2, 3), (3, 2))
    vals = np.tile(-y, (2, len(pairs), 1))
    cubes = {"a": K.Cube("a", np.array([0, 1]), pairs, "pairs", vals)}

    def width(**kw):
        c = K.regression(cubes, freq, cur, cur, n_boot=200, seed=2, **kw).coef
        r = c[(c.term == "log10 frequency") & (c.step == 1)].iloc[0]
        return r["hi"] - r["lo"]

    tokens, documents = width(), width(docs=docs)
    assert documents > 2.5 * tokens
    # seed 3's pairs carry a different slope: resampling seeds now widens the interval
    odd = vals.copy()
    odd[:, [2, 3, 4, 5], :] -= 0.02 * lf
    cubes = {"a": K.Cube("a", np.array([0, 1]), pairs, "pairs", odd)}
    assert width(docs=docs) > documents


def test_phase_sensitivity_over_settings_and_its_sentence():
    steps = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 384, 512, 768, 1024, 1536, 2000])
    x = np.log10(np.maximum(steps, 1))
    four = 1.0 - 0.7 * np.exp(-((x - 1.2) ** 2) / 0.2) + 0.5 * np.exp(-((x - 2.6) ** 2) / 0.3)  # dip, then a hump
    flat = np.ones_like(x)
    pairs = ((1, 2), (2, 1))

    def cube(size, curve):
        return K.Cube(size, steps, pairs, "pairs", np.tile(curve[:, None, None], (1, 2, 4)))

    cubes = {"s": cube("s", flat), "l": cube("l", four)}
    grid = dict(rel_tols=(0.05,), smooths=(0.2, 0.3), zs=(3.0,))
    t = K.phase_sensitivity(cubes, **grid)
    assert list(t.columns) == ["s", "l"] and len(t) == 2
    assert t["s"].str.startswith("i (").all() and t["l"].str.startswith("i ii iii iv").all()  # flat: only (i)
    assert "pattern (the largest does, the smallest does not) holds under 2" in K.sensitivity_sentence(t, "l", "s")
