"""The downstream sets (minimal pairs from gold tags, a last-word set), their scores in the engine's pass, the
lens that reads them and the two verdicts built on them."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

from lmconv import analysis
from lmconv.checkpoints import suites
from lmconv.data import corpus
from lmconv.data import downstream as D
from lmconv.data import tokenizer as T
from lmconv.findings import claims
from lmconv.findings.claims import Estimate
from lmconv.lenses import downstream as ds
from lmconv.metrics import phases as ph
from lmconv.metrics import stats
from lmconv.training import profiles


def doc(*tagged: tuple[str, str], doc_id: str = "ca01") -> corpus.Document:
    text, words = corpus.detokenise(tagged)
    return corpus.Document(doc_id, "news", text, words)


def words(*pairs: str) -> tuple[tuple[str, str], ...]:
    """``"The/at dog/nn"`` → (("The", "at"), ("dog", "nn"))."""
    return tuple(tuple(w.rsplit("/", 1)) for p in pairs for w in p.split())  # type: ignore[misc]


def built(*sentences: str, lexicon: frozenset = frozenset({"go"})) -> pd.DataFrame:
    return D.minimal_pairs([doc(*words(*sentences))], set(lexicon))


# ---------------------------------------------------------------------------------------------------------
# the pair builder on hand-written tagged sentences
# ---------------------------------------------------------------------------------------------------------


def test_agreement_pairs_swap_the_verb_where_the_subject_number_is_marked():
    got = built(
        "The/at dog/nn is/bez here/rb ./.",
        "They/ppss were/bed late/jj again/rb ./.",
        "He/pps goes/vbz home/nr now/rb ./.",
        "The/at boys/nns have/hv two/cd dogs/nns ./.",
    )
    agr = got[got.phenomenon == "agreement"]
    assert list(agr.bad) == ["The dog are here.", "They was late again.", "He go home now.", "The boys has two dogs."]
    assert list(agr.good_word) == ["is", "were", "goes", "have"]


def test_no_pair_where_the_number_is_unclear_or_the_verb_disagrees():
    got = built(
        "I/ppss am/bem sure/jj of/in it/ppo ./.",  # BEM: no number swap
        "You/ppss are/ber very/ql kind/jj ./.",  # you: the tag does not give the number
        "The/at results/nns of/in the/at test/nn are/ber good/jj ./.",  # attraction: test/NN before are/BER
        "If/cs he/pps were/bed here/rb today/nr ./.",  # subjunctive: singular subject, plural form
        "She/pps walks/vbz to/in work/nn ./.",  # walk is not in the lexicon of base forms
        "Go/vb ./.",  # too short
        "The/at dog/nn-hl is/bez-hl here/rb-hl now/rb-hl ./.",  # a headline
    )
    assert got.empty, got


def test_determiner_pairs_need_the_noun_number_and_keep_the_capital():
    got = built(
        "This/dt dog/nn barks/vbz loudly/rb ./.",
        "I/ppss like/vb those/dts old/jj houses/nns ./.",  # adjective between: no pair
        "We/ppss saw/vbd those/dts houses/nns there/rb ./.",
        "That/dt runs/vbz very/ql fast/rb ./.",  # that before a verb: not a determiner of a noun
    )
    det = got[got.phenomenon == "determiner"]
    assert list(det.bad) == ["These dog barks loudly.", "We saw that houses there."]


def test_every_pair_differs_in_exactly_one_word():
    got = built(
        "The/at dog/nn is/bez here/rb ./.",
        "This/dt dog/nn barks/vbz loudly/rb ./.",
        "We/ppss saw/vbd those/dts houses/nns there/rb ./.",
    )
    for good, bad in zip(got.good, got.bad, strict=True):
        a, b = good.split(), bad.split()
        assert len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=True)) == 1


@pytest.mark.parametrize(
    ("form", "base"),
    [("goes", "go"), ("tries", "try"), ("makes", "make"), ("watches", "watch"), ("fixes", "fix"), ("is", None)],
)
def test_present_plural_spelling_rule(form, base):
    assert D.present_plural(form) == base


# ---------------------------------------------------------------------------------------------------------
# the sets of the smoke profile, on the real corpus
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_sets(home):
    prof = profiles.load("smoke")
    tok = T.load(T.train(prof.corpus, prof.vocab_size))
    return prof, tok, D.build(tok, prof.corpus, prof.downstream, prof.context)


def test_no_item_comes_from_the_training_split(smoke_sets):
    prof, _, sets = smoke_sets
    training = "\n".join(d.text for d in corpus.load(prof.corpus, "train"))
    held = "\n".join(d.text for split in D.SPLITS for d in corpus.load(prof.corpus, split))
    for text in [*sets.pairs.good, *(sets.lastword.passage + " " + sets.lastword.word)]:
        assert text not in training and text in held


def test_the_sets_fit_the_context_and_follow_their_rules(smoke_sets):
    prof, tok, sets = smoke_sets
    assert sets.sizes == {"agreement": 12, "determiner": 12, "lastword": 12}
    assert all(sets.available[s] >= sets.sizes[s] for s in D.SETS)
    assert sets.sequences.ids.map(len).max() <= prof.context
    for w in sets.lastword.itertuples():
        assert re.search(rf"\b{w.word}\b", w.passage)  # the rule: the word occurs earlier, as a whole word
    for r in sets.sequences.itertuples():  # pairs: BOS + sentence + EOS, all scored but the first
        assert r.ids[0] == T.EOT_ID and (r.score_from == 1) == (r.set != "lastword")
    again = D.build(tok, prof.corpus, prof.downstream, prof.context)
    assert again.sha256 == sets.sha256


def test_batches_cover_every_sequence_once_without_changing_it(smoke_sets):
    _, _, sets = smoke_sets
    seen = []
    for rows, x in sets.batches(max_tokens=300):
        for r, i in enumerate(rows):
            ids = sets.sequences.ids.iloc[i]
            assert (x[r, : len(ids)] == ids).all()
            seen.append(int(i))
    assert sorted(seen) == list(range(len(sets.sequences)))


# ---------------------------------------------------------------------------------------------------------
# the engine's scores against a plain forward pass of each sequence alone
# ---------------------------------------------------------------------------------------------------------


def test_engine_scores_equal_an_unpadded_float64_pass(smoke_results):
    r = smoke_results
    size, step, seed = r.sizes[-1], r.steps[len(r.steps) // 2], r.seeds[1]
    model = r.suite.source.load_model(suites.CheckpointRef(r.family, size, seed, step))
    table = r.downstream
    got = table[(table["size"] == size) & (table.step == step) & (table.seed == seed)].reset_index(drop=True)
    seqs = r.evals.sequences
    assert len(got) == len(seqs)
    with torch.no_grad():
        for i in range(0, len(seqs), 5):
            ids, start = seqs.ids.iloc[i], int(seqs.score_from.iloc[i])
            lp = torch.log_softmax(model(torch.from_numpy(ids)[None]).logits[0].double(), -1).numpy()
            want, greedy = D.score(lp, ids, start)
            assert got.logp[i] == pytest.approx(want, abs=1e-6)
            assert bool(got.greedy[i]) == greedy


def test_engine_scores_equal_the_whole_batch_log_softmax_to_the_bit(smoke_results):
    """The engine runs the float64 log-softmax over the scored positions only; the table equals, bit for bit, the
    one taken from the whole padded batch's log-softmax, one sequence after another (the engine's former way, so
    the tables cached before stay valid)."""
    from lmconv.analysis import engine

    r = smoke_results
    size, step = r.sizes[-1], r.steps[len(r.steps) // 2]
    models = {k: r.suite.source.load_model(suites.CheckpointRef(r.family, size, k, step)) for k in r.seeds}
    opts, vocab = engine.EngineOptions(), len(r.counts)
    with torch.no_grad():
        got = engine._downstream_table(models, r.evals, vocab, opts)
        seqs = r.evals.sequences
        starts, lengths = seqs.score_from.to_numpy(), seqs.ids.map(len).to_numpy()
        for k in sorted(models):
            mine = got[got.seed == k].reset_index(drop=True)
            for rows, x in r.evals.batches(engine.downstream_batch_tokens(vocab, opts)):
                xt = torch.from_numpy(x)
                lp = torch.log_softmax(models[k](xt).logits[..., :vocab].double(), dim=-1)
                for row, i in enumerate(rows):
                    t = torch.arange(int(starts[i]), int(lengths[i]))
                    assert mine.logp[i] == float(lp[row, t - 1, xt[row, t]].sum()), (k, i)
                    assert mine.greedy[i] == bool((lp[row, t - 1].argmax(-1) == xt[row, t]).all()), (k, i)
    assert len(got) == len(r.seeds) * len(seqs)


# ---------------------------------------------------------------------------------------------------------
# the lens, against hand computations
# ---------------------------------------------------------------------------------------------------------


def synthetic(p_good: dict[int, list[float]], last: dict[int, list[bool]] | None = None) -> pd.DataFrame:
    """A downstream table for one size and step: each seed's p(good) per agreement item (log P(bad) = 0)."""
    rows = []
    for seed, ps in p_good.items():
        for item, p in enumerate(ps):
            rows.append(("f", "xs", 8, seed, "agreement", item, "good", math.log(p / (1 - p)), False))
            rows.append(("f", "xs", 8, seed, "agreement", item, "bad", 0.0, False))
        for item, ok in enumerate((last or {}).get(seed, [])):
            rows.append(("f", "xs", 8, seed, "lastword", item, "word", -1.0, ok))
    return pd.DataFrame(rows, columns=["family", "size", "step", "seed", "set", "item", "role", "logp", "greedy"])


def kl2(p: float, q: float) -> float:
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def test_pair_kl_by_hand_both_estimators():
    scores = ds.item_scores(synthetic({1: [0.9, 0.2], 2: [0.6, 0.5]}))
    paper = ds.pair_kl(scores, "phenomenon")
    item = ds.pair_kl(scores, "item")
    assert paper.kl.iloc[0] == pytest.approx(kl2(0.55, 0.55), abs=1e-12) == 0.0  # equal means: the paper's is 0
    assert item.kl.iloc[0] == pytest.approx((kl2(0.9, 0.6) + kl2(0.2, 0.5)) / 2)
    assert list(paper[["seed_i", "seed_j"]].iloc[0]) == [1, 2]  # unordered pairs, i < j


def test_accuracy_and_agreement_by_hand():
    scores = ds.item_scores(synthetic({1: [0.9, 0.2, 0.7], 2: [0.6, 0.7, 0.1]}, {1: [True, False], 2: [True, True]}))
    acc = ds.accuracy(scores).set_index(["set", "seed"]).value
    assert acc["agreement", 1] == pytest.approx(2 / 3) and acc["lastword", 2] == 1.0
    agree = ds.agreement(scores).set_index("set")
    assert agree.loc["agreement", "value"] == pytest.approx(1 / 3)  # same answer on item 0 only
    a, b = 2 / 3, 2 / 3
    assert agree.loc["agreement", "chance"] == pytest.approx(a * b + (1 - a) * (1 - b))
    assert agree.loc["lastword", "value"] == pytest.approx(0.5)


def test_item_scores_refuse_an_analysis_without_downstream_scores():
    with pytest.raises(Exception, match="downstream"):
        ds.item_scores(pd.DataFrame(columns=["seed", "set", "item", "role", "logp", "greedy"]))


def test_se_band_is_sd_over_root_n():
    df = pd.DataFrame({"g": [1, 1, 1, 1], "v": [1.0, 2.0, 3.0, 4.0]})
    b = stats.band(df, "v", ["g"], spread="se").iloc[0]
    assert b.se == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2) and b.lo == pytest.approx(2.5 - b.se)


def test_late_change_runs_from_half_of_training_to_the_end():
    per_seed = pd.DataFrame(
        {"size": "xs", "step": [0, 40, 60, 100] * 2, "seed": [1] * 4 + [2] * 4, "value": [0, 5, 4, 3, 0, 6, 5, 2.0]}
    )
    assert ds.late_step([0, 40, 60, 100], 100) == 40
    e = ds.late_change(per_seed, ["xs"], 100)["xs"]
    assert e.units == (-2.0, -4.0) and e.value == -3.0


# ---------------------------------------------------------------------------------------------------------
# the verdicts, on planted evidence
# ---------------------------------------------------------------------------------------------------------


def est(lo: float, hi: float) -> Estimate:
    return Estimate((lo + hi) / 2, stats.Interval(lo, hi, 0.9, "planted", 4), ())


def test_late_degradation_verdicts():
    j = claims.judge_late_degradation
    assert j({"s": est(-0.2, -0.1), "l": est(-0.05, 0.1)}).outcome == claims.REPRODUCED
    assert j({"s": est(0.1, 0.2), "l": est(0.1, 0.3)}).outcome == claims.CONTRADICTED
    assert j({"s": est(-0.2, -0.1), "l": est(-0.3, -0.2)}).outcome == claims.INCONCLUSIVE  # everyone falls
    assert j({"s": est(-0.1, 0.1), "l": est(0.1, 0.2)}).outcome == claims.INCONCLUSIVE
    assert j(None).outcome == claims.INCONCLUSIVE and "not tested" in j(None).reason


def test_downstream_reconvergence_verdict_on_planted_curves():
    steps = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], float)
    rise = 0.02 + 0.3 * np.log1p(steps) / np.log1p(steps[-1])  # KL keeps rising
    hump = np.where(steps <= 128, rise, rise[8] * (1 - 0.5 * np.log1p(np.maximum(steps - 128, 0)) / np.log1p(896)))
    rng = np.random.default_rng(0)

    def spread(curve):
        return ph.kl_phases_by_pair(steps, curve[None] * (1 + 0.001 * rng.standard_normal((3, len(steps)))))

    v = claims.judge_downstream_reconvergence({"small": spread(rise), "large": spread(hump)})
    assert v.outcome == claims.REPRODUCED, v.reason
    assert claims.judge_downstream_reconvergence(None).outcome == claims.INCONCLUSIVE


def test_downstream_settings_leave_the_profile_hash_alone():
    raw = profiles.load("smoke").raw
    without = {k: v for k, v in raw.items() if k != "downstream"}
    assert profiles.parse(raw, "smoke").sha256 == profiles.parse(without, "smoke").sha256
    assert profiles.parse(without, "smoke").downstream == profiles.DownstreamSettings()
    with pytest.raises(Exception, match="downstream"):
        profiles.parse({**raw, "downstream": {"pairs": -1}}, "smoke")


def test_the_hub_reads_the_sets_at_the_default_suites_context():
    assert profiles.load("default").context == D.HUB_CONTEXT


def test_results_carry_the_sets_and_the_table(smoke_results):
    r = smoke_results
    assert r.evals is not None and set(r.downstream.set) == set(D.SETS)
    n = len(r.evals.sequences) * len(r.seeds) * len(r.steps) * len(r.sizes)
    assert len(r.downstream) == n
    assert analysis.downstream_sets(*_key(r)) is analysis.downstream_sets(*_key(r))  # built once per process


def _key(r):
    tok = r.suite.source.load_tokenizer(suites.CheckpointRef(r.family, r.sizes[0], r.seeds[0], r.steps[-1]))
    return tok, r.suite.profile.corpus, r.suite.profile.downstream, r.suite.profile.context


def test_phases_seen_names_what_the_detector_sees():
    steps = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], float)
    flat = np.full((3, len(steps)), 0.05) * (1 + 1e-4 * np.random.default_rng(1).standard_normal((3, len(steps))))
    rise = 0.02 + 0.3 * np.log1p(steps) / np.log1p(steps[-1])
    spreads = {"a": ph.kl_phases_by_pair(steps, flat), "b": ph.kl_phases_by_pair(steps, np.stack([rise] * 3))}
    got = ds.phases_seen(spreads)
    assert got.startswith("a: none; b: ") and "(iii) divergence" in got and "(iv)" not in got


def test_a_downstream_batch_keeps_its_logits_within_the_block_budget():
    from lmconv.analysis import engine

    opts = engine.EngineOptions()
    for vocab in (1024, 4096, 50304):
        n = engine.downstream_batch_tokens(vocab, opts)
        assert n * vocab * engine.LOGIT_BYTES <= opts.block_mb * 2**20 < (n + 1) * vocab * engine.LOGIT_BYTES


def test_chapters_say_so_when_a_profile_builds_no_downstream_sets(smoke_suite, monkeypatch):
    """A corpus without gold tags (or downstream sizes of 0) gives no sets: chapters 1 and 2 still run, glue the
    same names, draw the loss or E[conv] alone and leave both claims untested, where they used to stop."""
    import dataclasses
    from pathlib import Path

    from lmconv import book
    from lmconv.chapters import kl_convergence, params, suite

    def parameters(name):
        page = Path(__file__).resolve().parents[1] / "notebooks" / f"{name}.md"
        return params.from_namespace(book.page_parameters(page, profile="smoke"))

    with_sets = {
        "01": suite.late_degradation(suite.load(parameters("01_suite"))),
        "02": kl_convergence.downstream_convergence(kl_convergence.load(parameters("02_kl_convergence"))),
    }
    real = analysis.run

    def without_sets(*args, **kwargs):
        r = real(*args, **kwargs)
        return dataclasses.replace(r, evals=None, tables={**r.tables, "downstream": r.downstream.iloc[:0]})

    monkeypatch.setattr(analysis, "run", without_sets)
    g1 = suite.late_degradation(suite.load(parameters("01_suite")))
    g2 = kl_convergence.downstream_convergence(kl_convergence.load(parameters("02_kl_convergence")))
    assert set(g1) == set(with_sets["01"]) and set(g2) == set(with_sets["02"])
    assert "not tested" in g1["degrade_claim"] and "no downstream scores" in g2["ds_claim"]
    assert g1["lw_best_step_small"] == "not measured" and math.isnan(g1["lw_last_small"])
    assert g1["loss_sentences"] == with_sets["01"]["loss_sentences"]  # the probe loss needs no sets
    for chart in (g1["fig_downstream"], g2["fig_downstream"]):
        assert chart.to_dict()  # a valid chart: the loss panels, or E[conv] alone
