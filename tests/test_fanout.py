"""The Dask fan-out gives the in-process engine's tables exactly, and resumes from the shared cache."""

from __future__ import annotations

import pandas as pd
import pytest

from lmconv.analysis import engine, fanout
from lmconv.analysis.cache import TableCache
from lmconv.checkpoints import suites
from lmconv.data import probe
from lmconv.data import tokenizer as tok_mod
from lmconv.errors import LmconvError
from lmconv.io import read_json
from lmconv.metrics import kl as kl_mod
from lmconv.training.profiles import ProbeSettings

STEPS = [0, 4, 16, 48, 96]


@pytest.fixture(scope="module")
def inputs(smoke_suite):
    src = smoke_suite.source
    tok = src.load_tokenizer(suites.CheckpointRef("lmconv", "s", 1, 96))
    pr = probe.build(tok, "brown", ProbeSettings(512, 64, 32))
    uni = kl_mod.unigram_logprobs(tok_mod.token_frequencies("brown", 1024))
    return src, pr, uni


def analyze(inputs, cache, client=None):
    src, pr, uni = inputs
    return engine.analyze(
        src, "lmconv", "s", [1, 2, 3], STEPS, pr, uni, 1024, cache=cache, progress=False, client=client
    )


def assert_same(a: dict, b: dict) -> None:
    for name in engine.TABLES:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)


@pytest.mark.slow
def test_local_cluster_matches_in_process_and_resumes(inputs, tmp_path):
    local = analyze(inputs, TableCache("engine", tmp_path / "local"))
    shared = TableCache("engine", tmp_path / "dask")
    with fanout.client(workers=2) as c:
        assert len(c.scheduler_info()["workers"]) == 2
        remote = analyze(inputs, shared, c)
        assert_same(local, remote)
        # an interrupted run: two steps' entries lost; a rerun computes only those and merges with the rest
        entries = sorted(p for p in shared.root.glob("*/*") if p.is_dir())
        assert len(entries) == 2 * len(STEPS)  # per step: its own tables, and its comparison with the final
        lost = [p for p in entries if read_json(p / "manifest.json")["meta"]["step"] in (4, 48)]
        kept = {p.name: p.stat().st_mtime_ns for p in entries if p not in lost}
        assert len(lost) == 4
        for p in lost:
            for f in p.iterdir():
                f.unlink()
            p.rmdir()
        again = analyze(inputs, shared, c)
    assert_same(local, again)
    assert {p.name: p.stat().st_mtime_ns for p in entries if p not in lost} == kept
    assert all(p.exists() for p in lost)


def test_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(LmconvError, match="Dask scheduler"), fanout.client("tcp://127.0.0.1:9", timeout="2s"):
        pass


def test_zero_workers_is_rejected():
    with pytest.raises(LmconvError, match="workers"), fanout.client(workers=0):
        pass
