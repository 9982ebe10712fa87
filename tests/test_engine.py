"""The one-pass engine: each checkpoint forward once, KL tables equal to a direct recomputation, a cache that
detects corruption and recomputes identical tables."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from lmconv.analysis import engine
from lmconv.analysis.cache import CacheCorruption, TableCache
from lmconv.checkpoints import suites
from lmconv.data import probe
from lmconv.data import tokenizer as tok_mod
from lmconv.metrics import kl as kl_mod
from lmconv.training.profiles import ProbeSettings


@pytest.fixture(scope="module")
def setup(smoke_suite, tmp_path_factory):
    src = smoke_suite.source
    tok = src.load_tokenizer(suites.CheckpointRef("lmconv", "s", 1, 96))
    pr = probe.build(tok, "brown", ProbeSettings(512, 64, 32))
    uni = kl_mod.unigram_logprobs(tok_mod.token_frequencies("brown", 1024))
    cache = TableCache("engine", tmp_path_factory.mktemp("cache"))
    return src, pr, uni, cache


def run(setup, steps=(0, 16, 96)):
    src, pr, uni, cache = setup
    return engine.analyze(src, "lmconv", "s", [1, 2, 3], list(steps), pr, uni, 1024, cache=cache, progress=False)


def test_each_checkpoint_loads_once_and_the_cache_serves_reruns(setup):
    engine.LOADS.counts.clear()
    first = run(setup)
    assert set(engine.LOADS.counts.values()) == {1}
    assert len(engine.LOADS.counts) == 9  # 3 seeds x 3 steps
    engine.LOADS.counts.clear()
    again = run(setup)
    assert engine.LOADS.counts == {}
    for name in engine.TABLES:
        pd.testing.assert_frame_equal(first[name], again[name])


def test_pair_kl_equals_direct_computation(setup, smoke_suite):
    src, pr, _, _ = setup
    tables = run(setup)
    pairs = tables["pairs"]
    t = pr.targets
    models = {k: src.load_model(suites.CheckpointRef("lmconv", "s", k, 96)) for k in (1, 3)}
    for pos in (0, 100, 511):
        w, off = int(t.window[pos]), int(t.offset[pos])
        x = torch.from_numpy(pr.window_inputs(np.array([w])))
        with torch.no_grad():
            lp = {k: torch.log_softmax(m(x).logits[0, off].double(), -1) for k, m in models.items()}
        direct = float((lp[1].exp() * (lp[1] - lp[3])).sum())
        row = pairs[(pairs.step == 96) & (pairs.seed_i == 1) & (pairs.seed_j == 3) & (pairs.pos == pos)]
        assert float(row.kl.iloc[0]) == pytest.approx(direct, rel=1e-5)
        surprisal = tables["tokens"]
        s = surprisal[(surprisal.step == 96) & (surprisal.seed == 1) & (surprisal.pos == pos)].surprisal.iloc[0]
        assert float(s) == pytest.approx(-float(lp[1][int(t.target_id[pos])]), rel=1e-5)


def test_table_shapes_and_invariants(setup):
    tables = run(setup)
    n = 512
    assert len(tables["tokens"]) == 3 * 3 * n
    assert len(tables["pairs"]) == 3 * 6 * n  # ordered pairs i != j
    assert (tables["pairs"].seed_i != tables["pairs"].seed_j).all()
    assert (tables["pairs"].kl >= 0).all()
    cka = tables["cka"]
    final = cka[cka.step == 96]
    assert np.allclose(final.cka, 1.0)  # every activation matches itself at the final step
    w = tables["weights"]
    assert np.allclose(w[w.step == 96].cos_final, 1.0)
    assert np.allclose(w[w.step == 0].cos_init, 1.0) and (w[w.step == 96].cos_init < 1).all()
    assert w[w.step == 16].prev_step.unique().tolist() == [0]
    assert w[w.step == 96].prev_step.unique().tolist() == [16]
    assert (w[w.step > 0].delta_nuclear > 0).all()
    r = tables["rank"]
    assert set(r.kind) == {"weight", "grad"} and r.per.between(0, 1.0000001).all()


def test_corrupt_cache_entries_are_recomputed(setup):
    cache = setup[3]
    before = run(setup)
    files = sorted(cache.root.rglob("pairs.parquet"))
    data = bytearray(files[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    files[0].write_bytes(bytes(data))
    engine.LOADS.counts.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        after = run(setup)
    assert any(issubclass(w.category, CacheCorruption) for w in caught)
    assert sum(engine.LOADS.counts.values()) > 0  # it recomputed
    for name in engine.TABLES:
        pd.testing.assert_frame_equal(before[name], after[name])


def test_probe_windows_cover_each_target_once(smoke_suite):
    tok = smoke_suite.source.load_tokenizer(suites.CheckpointRef("lmconv", "s", 1, 96))
    pr = probe.build(tok, "brown", ProbeSettings(1000, 64, 16))
    t = pr.targets
    assert len(t) == 1000 and t.target_index.is_unique
    assert (pr.starts[t.window] + t.offset + 1 == t.target_index).all()
    assert (pr.stream[t.target_index] == t.target_id).all()
    later = t[t.window.map(lambda w: w not in set(t.groupby("window").window.first().index[:1]))]
    assert later.context_len.min() >= 1
    with pytest.raises(Exception, match="stride 80 exceeds"):
        probe.build(tok, "brown", ProbeSettings(1000, 64, 80))


def analyze(setup, steps, cache, options=None):
    src, pr, uni, _ = setup
    return engine.analyze(src, "lmconv", "s", [1, 2, 3], list(steps), pr, uni, 1024, options, cache, progress=False)


def assert_same_tables(a: dict, b: dict) -> None:
    for name in engine.TABLES:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)


def test_a_reading_against_another_final_reuses_the_kept_activations(setup, tmp_path):
    keep = engine.EngineOptions(keep_activations=True)
    cache = TableCache("engine", tmp_path / "kept")
    analyze(setup, (0, 16, 96), cache, keep)
    engine.LOADS.counts.clear()
    short = analyze(setup, (0, 16), cache, keep)  # the same checkpoints, read against step 16
    assert engine.LOADS.counts == {}  # no forward pass: CKA and cosines from the kept activations and weights
    fresh = analyze(setup, (0, 16), TableCache("engine", tmp_path / "fresh"))
    assert_same_tables(short, fresh)
    assert set(short["seed_cka"].step) == {16} and np.allclose(short["cka"].query("step == 16").cka, 1.0)
    engine.LOADS.counts.clear()
    assert_same_tables(analyze(setup, (0, 16), cache, keep), fresh)  # now both entries are cached
    assert engine.LOADS.counts == {}


def test_without_kept_activations_another_final_runs_the_pass_again(setup, tmp_path):
    cache = TableCache("engine", tmp_path / "plain")
    analyze(setup, (0, 16, 96), cache)
    engine.LOADS.counts.clear()
    short = analyze(setup, (0, 16), cache)
    assert len(engine.LOADS.counts) == 6 and set(engine.LOADS.counts.values()) == {1}
    assert_same_tables(short, analyze(setup, (0, 16), TableCache("engine", tmp_path / "fresh")))


def test_corrupt_kept_activations_are_recomputed(setup, tmp_path):
    keep = engine.EngineOptions(keep_activations=True)
    cache = TableCache("engine", tmp_path / "kept")
    analyze(setup, (0, 16, 96), cache, keep)
    for f in cache.root.rglob("acts_all.npy"):  # every step's, the new final's among them
        data = bytearray(f.read_bytes())
        data[-3] ^= 0xFF
        f.write_bytes(bytes(data))
    engine.LOADS.counts.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        short = analyze(setup, (0, 16), cache, keep)
    assert any(issubclass(w.category, CacheCorruption) for w in caught)
    assert sum(engine.LOADS.counts.values()) > 0
    assert_same_tables(short, analyze(setup, (0, 16), TableCache("engine", tmp_path / "fresh")))
