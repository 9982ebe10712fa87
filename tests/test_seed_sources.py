"""Initialisation or data order: fixing one seed per arm separates the two sources of a run's randomness, the
pair kinds group the right runs (against a brute-force loop), the rule that names a dominant source, the hub's
decoupled runs, and section 2b on the smoke suites."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lmconv import analysis, book, chapters, io, paths
from lmconv.chapters import params
from lmconv.chapters import seed_sources as page_module
from lmconv.checkpoints import hubcache, suites
from lmconv.checkpoints.suites import CheckpointRef
from lmconv.errors import LmconvError
from lmconv.lenses import seed_sources as S
from lmconv.training import profiles, train

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "notebooks" / "02b_seed_sources.md"


def tree_hashes(root: Path) -> dict[str, str]:
    """Every file's sha256 but the run's timings (as the training tests compare runs)."""
    skip = ("timing.json", "run.json")
    return {
        str(p.relative_to(root)): io.sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in skip
    }


# ---------------------------------------------------------------------------------------------------------
# training: two seeds instead of one
# ---------------------------------------------------------------------------------------------------------


def _decoupled(name: str) -> profiles.Profile:
    """Two xs runs of the smoke settings per arm, 8 steps, with the initialisation (data) or the order (weight)
    fixed at seed 7."""
    smoke = {k: v for k, v in profiles.load("smoke").raw.items() if k != "companions"}
    raw = smoke | {"seeds": [1, 2], "sizes": {"xs": smoke["sizes"]["xs"]}, "train": smoke["train"] | {"steps": 8}}
    raw |= {"arms": {"data": {"init_seed": 7}, "weight": {"data_seed": 7}}}
    shutil.rmtree(paths.suite_dir(name), ignore_errors=True)
    return profiles.parse(raw, name)


def test_one_fixed_seed_shares_the_init_or_the_batches_and_nothing_else(monkeypatch):
    drawn: dict[tuple[str, int], list[torch.Tensor]] = {}
    real = train.TrainData.batch

    def record(self, seed, step, batch_size):
        x = real(self, seed, step, batch_size)
        drawn.setdefault(current, []).append(x.clone())
        return x

    monkeypatch.setattr(train.TrainData, "batch", record)
    prof = _decoupled("tinydecoupled")
    root = paths.suite_dir(prof.name)
    for arm in ("data", "weight"):
        for seed in (1, 2):
            current = (arm, seed)
            train.train_profile(prof, arms=[arm], seeds=[seed], progress=False)
    h = {(a, k): tree_hashes(root / suites.format_run(a, "xs", k)) for a in ("data", "weight") for k in (1, 2)}
    w0, w8 = "step0/model.safetensors", "step8/model.safetensors"
    # same initialisation: bit-identical step 0, then other batches (from the first step) and other weights
    assert h["data", 1][w0] == h["data", 2][w0] and h["data", 1][w8] != h["data", 2][w8]
    assert not torch.equal(drawn["data", 1][0], drawn["data", 2][0])
    # same data order: identical batches at every step, other initial weights
    assert len(drawn["weight", 1]) == len(drawn["weight", 2]) == 8
    assert all(torch.equal(a, b) for a, b in zip(drawn["weight", 1], drawn["weight", 2], strict=True))
    assert h["weight", 1][w0] != h["weight", 2][w0]
    # the seeds each run used are recorded beside its logs
    info = io.read_json(root / "weight-xs-seed2" / "run.json")
    assert (info["init_seed"], info["data_seed"]) == (2, 7)


def test_a_seed_fixed_at_the_runs_own_value_trains_the_same_bytes(smoke_suite, smoke_decoupled):
    """Seed 1 of either arm of smoke-decoupled fixes its factor at 1, its own seed: every file equals the smoke
    suite's seed-1 run (so the default, both seeds equal, is today's training)."""
    main = tree_hashes(smoke_suite.source.root / "lmconv-s-seed1")
    root = paths.suite_dir(smoke_decoupled.name)
    for arm in ("data", "weight"):
        assert tree_hashes(root / f"{arm}-s-seed1") == main
    assert profiles.TrainSettings(steps=1, batch_size=1).init_seed is None


def test_an_arm_fixing_both_seeds_or_other_settings_is_no_decoupled_companion():
    main, comp = profiles.load("smoke"), profiles.load("smoke-decoupled")
    assert S.check_design(main, comp) == {"data": "data", "weight": "weight"}
    assert S.check_design(profiles.load("default"), profiles.load(S.companion("default"))) == {
        "data": "data",
        "weight": "weight",
    }
    raw = comp.raw | {"arms": {"data": {"init_seed": 1, "data_seed": 1}, "weight": {"data_seed": 1}}}
    with pytest.raises(LmconvError, match="fixes both seeds") as e:
        S.check_design(main, profiles.parse(raw, "bothfixed"))
    assert "set exactly one of init_seed" in e.value.fix
    raw = comp.raw | {"arms": {"data": {"init_seed": 1, "lr": 1.0e-3}, "weight": {"data_seed": 1}}}
    with pytest.raises(LmconvError, match=r"arms.data \(training settings other than the fixed seed\)"):
        S.check_design(main, profiles.parse(raw, "otherlr"))


# ---------------------------------------------------------------------------------------------------------
# the rule and the words, on synthetic numbers
# ---------------------------------------------------------------------------------------------------------


def r(kl: float, lo: float, hi: float) -> dict[str, float]:
    return {"kl": kl, "lo": lo, "hi": hi}


def test_a_source_dominates_only_when_the_ranges_do_not_overlap():
    assert S.dominant(r(0.0, 0.0, 0.0), r(0.01, 0.009, 0.011)) == "weight"
    assert S.dominant(r(0.08, 0.07, 0.09), r(0.05, 0.04, 0.06)) == "data"
    assert S.dominant(r(0.06, 0.05, 0.07), r(0.065, 0.055, 0.08)) == "neither"
    assert S.dominant(r(0.06, 0.05, 0.06), r(0.07, 0.06, 0.08)) == "neither"  # touching ranges overlap


def synthetic_curves() -> pd.DataFrame:
    """Kinds of pair with known answers: step 0 from the initialisation only (data pairs at 0); the joint curve
    peaks at step 64 (0.1), where data-order pairs reach 0.08 and initialisation pairs 0.05, and falls 30 % by
    step 96 (the data pairs with it, the initialisation pairs level at 0.05)."""
    steps = [0, 1, 2, 4, 8, 16, 32, 64, 80, 96]
    pairs = [(i, j) for i in (1, 2, 3) for j in (1, 2, 3) if i != j]

    def kl(kind: str, t: int) -> float:
        start = {"both": 0.01, "data": 0.0, "weight": 0.01}[kind]
        top = {"both": 0.1, "data": 0.08, "weight": 0.05}[kind]
        if t <= 8:
            return start
        if t <= 64:
            return start + (top - start) * np.log2(t / 8) / 3
        return top * (1 - 0.3 * (t - 64) / 32) if kind != "weight" else top

    rows = [
        (k, "xs", t, i, j, kl(k, t) * (1 + 0.01 * n)) for k in S.KINDS for t in steps for n, (i, j) in enumerate(pairs)
    ]
    return pd.DataFrame(rows, columns=["kind", "size", "step", "seed_i", "seed_j", "kl"])


def test_the_summary_finds_the_planted_sources():
    s = S.summarise(synthetic_curves())["xs"]
    assert s["moments"] == {"start": 0, "peak": 64, "end": 96}
    a = s["attribution"]
    assert [a[m]["source"] for m in S.MOMENTS] == ["weight", "data", "data"]
    assert a["peak"]["share"]["data"] == pytest.approx(0.8) and a["peak"]["share"]["weight"] == pytest.approx(0.5)
    k = s["kinds"]
    assert k["data"]["start"] == {"kl": 0.0, "lo": 0.0, "hi": 0.0, "step": 0}
    assert k["both"]["has_reconvergence"] and k["data"]["has_reconvergence"] and not k["weight"]["has_reconvergence"]
    text = S.verdict("xs", s)
    assert "(step 64, the end of the joint curve's divergence: KL" in text
    assert text.startswith("**xs**: at step 0 the initialisation dominates") and "at the peak the data order" in text
    assert "those of initialisation and data order, data order only." in text
    assert S.conclusion({"xs": s}) == (
        "The source that dominates the cross-seed KL: at step 0, the initialisation in 1 of 1 sizes; at the peak, "
        "the data order in 1 of 1 sizes; at the end, the data order in 1 of 1 sizes."
    )
    assert list(S.table({"xs": s})["peak step"]) == [64, 64, 64]


def test_final_spectra_pair_only_runs_of_one_kind():
    rng = np.random.default_rng(0)
    rec = {(k, "xs", s): rng.random((2, 4)) + 0.1 for k in S.KINDS for s in (1, 2, 3)}
    t = S.final_spectra(rec)
    assert len(t) == 9 and set(t.kind) == set(S.KINDS)
    row = t[(t.kind == "data") & (t.seed_i == 1) & (t.seed_j == 3)].iloc[0]
    from lmconv.metrics import spectrum

    by_hand = np.mean([spectrum.delta_sigma(rec["data", "xs", 1][m], rec["data", "xs", 3][m]) for m in range(2)])
    assert row.delta_sigma == pytest.approx(by_hand)
    assert S.pair_summary(t, "delta_sigma")["xs"]["source"] in ("data", "weight", "neither")


# ---------------------------------------------------------------------------------------------------------
# the real smoke suites: pair kinds against a brute-force loop, and the page
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sources(smoke_suite, smoke_decoupled):
    return S.load("smoke", sizes=["xs"])


def test_pair_kinds_equal_a_brute_force_loop_over_the_runs(sources, smoke_decoupled):
    """Per kind, the mean KL over the probe of every ordered pair at the last step, recomputed in float64 from the
    checkpoints of the runs that kind pairs (the main suite's for "both", each arm's own for the others)."""
    main = analysis.Suite.open("smoke").source
    comp = analysis.Suite.open(smoke_decoupled.name).source
    where = {"both": (main, "lmconv"), "data": (comp, "data"), "weight": (comp, "weight")}
    tok = main.load_tokenizer(CheckpointRef("lmconv", "xs", 1, 96))
    from lmconv.data import probe

    pr = probe.build(tok, "brown", profiles.load("smoke").probe)
    t = pr.targets
    x = torch.from_numpy(pr.window_inputs(np.arange(int(t.window.max()) + 1)))
    win, off = (torch.tensor(t[c].to_numpy(dtype=np.int64)) for c in ("window", "offset"))
    c = sources.curves[(sources.curves.step == 96)]
    for kind, (src, fam) in where.items():
        lp = {}
        for k in (1, 2, 3):
            with torch.no_grad():
                logits = src.load_model(CheckpointRef(fam, "xs", k, 96))(x).logits.double()
            lp[k] = torch.log_softmax(logits[win, off], -1)
        for i in (1, 2, 3):
            for j in (1, 2, 3):
                if i == j:
                    continue
                direct = float((lp[i].exp() * (lp[i] - lp[j])).sum(-1).mean())
                got = c[(c.kind == kind) & (c.seed_i == i) & (c.seed_j == j)].kl
                assert len(got) == 1 and float(got.iloc[0]) == pytest.approx(direct, rel=1e-4), (kind, i, j)
    # what the design fixes at step 0: data-order pairs share their weights, initialisation pairs the joint ones'
    first = sources.curves[sources.curves.step == 0].pivot_table(
        index=["seed_i", "seed_j"], columns="kind", values="kl"
    )
    assert (first["data"] == 0).all() and np.allclose(first["weight"], first["both"], rtol=0, atol=1e-9)


def test_the_page_glues_what_it_uses_from_the_smoke_suites(smoke_decoupled):
    P = params.from_namespace(book.page_parameters(PAGE, profile="smoke"))
    d = page_module.load(P)
    g = chapters.collect(page_module, d, book.page_sections(PAGE))
    assert book.glue_names(PAGE) == set(g)
    assert g["step0_data_max"] == 0.0 and g["step0_weight_gap"] < 1e-9 and g["step0_words"] == "as the design requires"
    assert (g["n_pairs"], g["data_fixed"], g["weight_fixed"], g["n_runs"]) == (6, 1, 1, 12)
    assert g["source_verdicts"].data.count("\n- ") == 1 and g["tab_sources"].shape[0] == 2 * 3
    assert set(d.summary) == {"xs", "s"}


# ---------------------------------------------------------------------------------------------------------
# the hub's decoupled runs
# ---------------------------------------------------------------------------------------------------------


def test_decoupled_hub_names_and_the_known_bad_step_0():
    assert suites.format_hub_repo("160m", 2, variant="data") == "EleutherAI/pythia-160m-data-seed2"
    assert suites.hub_variant("EleutherAI/pythia-160m-weight-seed3") == "weight"
    assert suites.hub_variant("EleutherAI/pythia-160m-seed3") is None
    assert suites.parse_hub_repo("EleutherAI/pythia-160m-data-seed1") == ("pythia", "160m", 1)
    with pytest.raises(LmconvError, match="unknown hub variant 'order'"):
        suites.format_hub_repo("160m", 1, variant="order")
    hub = suites.HubSource(variant="weight")
    with pytest.raises(LmconvError, match="unknown weight-seed PolyPythia size '410m'"):
        hub.check(CheckpointRef("pythia", "410m", 1, 1000))
    with pytest.raises(LmconvError, match="unknown weight-seed PolyPythia seed 4"):
        hub.check(CheckpointRef("pythia", "160m", 4, 1000))
    with pytest.raises(
        LmconvError, match=r"pythia-160m-weight-seed1@step0 is a known bad revision \(EleutherAI/pythia#203"
    ):
        hub.check(CheckpointRef("pythia", "160m", 1, 0))
    suites.HubSource(variant="data").check(CheckpointRef("pythia", "160m", 1, 0))  # the data-seed runs' step 0 is fine


def test_the_engine_reads_data_seed_runs_from_a_hub_cache(smoke_decoupled, tmp_path, monkeypatch):
    """The decoupled arm served as pythia-s-data-seed{1,2} in a hub-layout cache gives the local arm's numbers."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    comp = analysis.Suite.open(smoke_decoupled.name).source
    repos = hubcache.build(tmp_path, comp, "data", ["s"], [1, 2], [0, 96], variant="data")
    assert repos == ["EleutherAI/pythia-s-data-seed1", "EleutherAI/pythia-s-data-seed2"]
    hub = suites.HubSource(cache_dir=tmp_path, known_only=False, variant="data")
    probe = profiles.ProbeSettings(256, 64, 32)
    res = analysis.run_hub(["s"], [1, 2], [0, 96], probe=probe, source=hub, progress=False)
    local = analysis.run(
        smoke_decoupled.name, arm="data", sizes=["s"], seeds=[1, 2], steps=[0, 96], probe=probe, progress=False
    )
    hub_kl, local_kl = res.pairs.groupby("step").kl.mean(), local.pairs.groupby("step").kl.mean()
    assert hub_kl.to_numpy() == pytest.approx(local_kl.to_numpy(), rel=1e-6) and hub_kl[0] == 0.0
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_seed_cka_is_the_cka_of_two_seeds_activations():
    """The engine's seed_cka rows against the plain CKA of the two activation matrices (and CKA's symmetry)."""
    from lmconv.analysis import engine
    from lmconv.metrics import cka as cka_mod

    rng = np.random.default_rng(1)
    keys = [("last", "mlp", 0), ("last", "attn_ov", 1)]
    acts = {k: {key: rng.normal(size=(48, 6)) for key in keys} for k in (1, 2, 3)}
    refs = {k: {key: cka_mod.Reference(a) for key, a in acts[k].items()} for k in acts}
    t = engine._seed_cka_table(acts, refs)
    assert len(t) == 3 * len(keys) * 2 and set(zip(t.seed_i, t.seed_j, strict=True)) == {(1, 2), (1, 3), (2, 3)}
    for row in t.itertuples():
        x, y = (
            acts[row.seed_i][row.variant, row.module, row.layer],
            acts[row.seed_j][row.variant, row.module, row.layer],
        )
        debiased = row.estimator == "debiased"
        assert row.cka == pytest.approx(cka_mod.cka(x, y, debiased=debiased), rel=1e-6)
        assert row.cka == pytest.approx(cka_mod.cka(y, x, debiased=debiased), rel=1e-6)


def test_seed_cka_rows_come_only_from_the_final_step(sources):
    t = analysis.run("smoke", sizes=["xs"], progress=False).seed_cka
    assert set(t.step) == {96} and t.cka.between(0, 1 + 1e-9)[t.estimator == "biased"].all()
    assert set(sources.cka.kind) == set(S.KINDS) and (sources.cka.cka_distance > 0).all()


def test_a_broken_step_zero_and_a_peak_without_divergence_are_said():
    """Planted: data pairs that do not start equal break the design, and the page says so; a joint curve that only
    falls has no divergence, and its "peak" is called its highest point."""
    c = synthetic_curves()
    c.loc[(c.kind == "data") & (c.step == 0), "kl"] = 0.002
    z = S.step_zero(c)
    assert not z["holds"] and z["data_max"] == pytest.approx(0.002) and "breaks the design" in z["words"]
    flat = c.assign(kl=np.where(c.kind == "both", 0.05 / (1 + c.step), c.kl))
    s = S.summarise(flat)["xs"]
    assert not s["kinds"]["both"]["has_divergence"]
    assert "the detector sees no divergence phase in it" in S.verdict("xs", s)


def test_the_gpu_profile_takes_the_default_companions():
    """The gpu profile (a larger probe, more seeds, CUDA) reads the default's CPU-trained companions: every arm is
    analysed on the main profile's probe, and the annealing arms at their own seeds."""
    from lmconv.lenses import annealing as A

    gpu = profiles.load("gpu")
    assert S.check_design(gpu, profiles.load(profiles.companion("gpu", "decoupled")))
    A.check_compatible(gpu, profiles.load(profiles.companion("gpu", "anneal")))
    bad = dict(profiles.load("anneal").raw, seeds=[1, 2, 99])
    with pytest.raises(LmconvError, match="seeds"):
        A.check_compatible(gpu, profiles.parse(bad, "anneal"))
