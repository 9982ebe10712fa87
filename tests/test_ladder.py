"""The cooldown ladder (chapter 10): branches of several lengths from one constant-rate trunk, and the lens that
re-decides the length-dependent claims at every rung."""

from __future__ import annotations

import shutil
from collections import Counter

import pandas as pd
import pytest

from lmconv import analysis, io, paths
from lmconv.analysis import engine
from lmconv.checkpoints import suites, summaries
from lmconv.errors import LmconvError
from lmconv.findings import claims
from lmconv.lenses import ladder as L
from lmconv.training import profiles, train


def _tiny_ladder(name: str, arms: dict) -> profiles.Profile:
    smoke = profiles.load("smoke-ladder").raw
    raw = smoke | {
        "seeds": [1],
        "sizes": {"xs": smoke["sizes"]["xs"]},
        "train": smoke["train"] | {"steps": 64},
        "arms": {"constant": {}, **arms},
        "checkpoints": {"log_until": 16, "per_octave": 1, "every": 16, "extra": [40]},
    }
    shutil.rmtree(paths.suite_dir(name), ignore_errors=True)
    return profiles.parse(raw, name)


def test_a_shorter_branch_starts_from_the_trunks_exact_state():
    """A branch that ends before the trunk, with the trunk's own (constant) schedule, gives the trunk's weights
    at its last step bit for bit: the weights *and* the optimizer state it starts from are the trunk's. With the
    decay it differs; its records up to the branch step are the trunk's."""
    prof = _tiny_ladder(
        "tinyladder",
        {
            "same-48": {"steps": 48, "branch_from": {"arm": "constant", "step": 40}},
            "cool-48": {
                "steps": 48,
                "schedule": {"kind": "wsd", "warmup": 8, "decay_fraction": 0.167, "final_ratio": 0.1},
                "branch_from": {"arm": "constant", "step": 40},
            },
        },
    )
    root = train.train_profile(prof, progress=False)
    trunk, same, cool = (root / f"{a}-xs-seed1" for a in ("constant", "same-48", "cool-48"))

    def sha(run, step):
        return io.sha256_file(run / f"step{step}" / "model.safetensors")

    assert sha(same, 48) == sha(trunk, 48)  # Adam's moments carried over exactly, or this step would differ
    assert sha(cool, 40) == sha(trunk, 40) and sha(cool, 48) != sha(trunk, 48)
    lt, lc = pd.read_parquet(trunk / "train_log.parquet"), pd.read_parquet(cool / "train_log.parquet")
    assert lc.step.max() == 48 and lt.step.max() == 64  # a record's step is the one its update led to
    head = lc[lc.step <= 40].reset_index(drop=True)
    assert len(head) == 40 and head.equals(lt[lt.step <= 40].reset_index(drop=True))
    assert (lc[lc.step > 40].lr.diff().dropna() < 0).all()  # the decay


def test_every_optimizer_step_is_counted_once(smoke_ladder):
    """The ladder's steps trained per run, against the train logs: a branch's log repeats the trunk's records up
    to its branch point exactly, and only the records after it are its own."""
    root = paths.suite_dir(smoke_ladder.name)

    def log(arm: str) -> pd.DataFrame:
        return pd.read_parquet(root / f"{arm}-xs-seed1" / "train_log.parquet")

    trunk, own, total = log("constant"), 0, 0
    for arm in smoke_ladder.arms:
        lg, b = log(arm), smoke_ladder.arm(arm).train.branch_from
        start = int(b["step"]) if b else 0
        copied = lg[lg.step <= start].reset_index(drop=True)
        assert copied.equals(trunk[trunk.step <= start].reset_index(drop=True))
        assert lg.step.tolist() == list(range(1, smoke_ladder.arm(arm).train.steps + 1))
        own, total = own + len(lg) - len(copied), total + len(lg)
    n = L.steps_trained(smoke_ladder)
    assert (n["ladder"], n["from scratch"]) == (own, total) == (192 + 8 + 16 + 32, 192 + 48 + 96 + 192)


def test_the_rungs_and_the_regime_come_from_the_profile_and_the_corpus(smoke_ladder):
    rungs = L.rungs(smoke_ladder)
    assert [(r.length, r.variant) for r in rungs] == [(n, v) for n in (48, 96, 192) for v in ("constant", "cooled")]
    assert {r.arm for r in rungs if r.variant == "constant"} == {"constant"}
    assert [r.branch_step for r in rungs if r.variant == "cooled"] == [40, 80, 160]
    n_train = len(train.prepare_data(smoke_ladder).train)
    reg = L.regime(smoke_ladder, n_train).set_index(["size", "length"])
    for size in smoke_ladder.sizes:
        s = smoke_ladder.size(size)
        params = summaries.parameter_count(s.hidden, s.layers, smoke_ladder.vocab_size)[0]
        for n in (48, 96, 192):
            tokens = n * 8 * 64  # the YAML's batch_size and context
            assert reg.loc[(size, n), "tokens_per_parameter"] == pytest.approx(tokens / params)
            assert reg.loc[(size, n), "epochs"] == pytest.approx(tokens / n_train)


@pytest.mark.parametrize("name", sorted({profiles.companion(p, "ladder") for p in ("default", "smoke", "gpu")}))
def test_every_shipped_ladder_reads_its_trunk_at_each_length(name):
    """Each cooled arm ends at a checkpoint of the trunk and branches where a decay of its own share starts."""
    prof = profiles.load(name)
    cooled = [r for r in L.rungs(prof) if r.variant == "cooled"]
    assert len(cooled) >= 2 and len(prof.sizes) >= 2 and len(prof.seeds) >= 2
    for r in cooled:
        t = prof.arm(r.arm).train
        assert r.branch_step == t.schedule.decay_start(r.length) and t.schedule.kind == "wsd"
        trunk = prof.arm(L.trunk_arm(prof)).train.schedule
        assert all(t.schedule.multiplier(s, r.length) == trunk.multiplier(s, 10**9) for s in range(r.branch_step))
        assert r.length % prof.arm(L.trunk_arm(prof)).train.val_every == 0  # the trunk's held-out loss at each length


def test_a_profile_that_is_no_ladder_gets_a_clear_error(smoke_ladder):
    with pytest.raises(LmconvError, match="is no ladder"):
        L.rungs(profiles.load("smoke"))
    raw = smoke_ladder.raw | {"checkpoints": smoke_ladder.raw["checkpoints"] | {"extra": [40, 80, 160], "every": 64}}
    raw["arms"] = {"constant": {}, "cool-56": {"steps": 56, "branch_from": {"arm": "constant", "step": 40}}}
    with pytest.raises(LmconvError, match="ends at step 56, which is no checkpoint of the trunk"):
        L.rungs(profiles.parse(raw, "noladder"))


def test_a_cooled_rung_reads_the_trunks_checkpoints_up_to_its_branch(smoke_ladder):
    """The one pass over a cooled arm and over the trunk read to the same length see the same weights up to the
    branch step (the same spectra there), and the last step of each is its own final checkpoint."""
    kw = {"sizes": ["xs"], "seeds": [1, 2], "progress": False}
    steps = [s for s in smoke_ladder.checkpoint_steps("constant") if s <= 96]
    trunk = analysis.run(smoke_ladder.name, arm="constant", steps=steps, **kw)
    cool = analysis.run(smoke_ladder.name, arm="cool-96", **kw)
    assert trunk.steps == cool.steps and trunk.steps[-1] == 96
    key = ["size", "seed", "step", "matrix"]
    cols = [*key, "fro", "spectral", "nuclear", "cos_init"]  # cos_final compares with each run's own final step

    def upto_branch(r: analysis.Results) -> pd.DataFrame:
        return r.weights.loc[r.weights.step <= 80, cols].sort_values(key).reset_index(drop=True)

    pd.testing.assert_frame_equal(upto_branch(trunk), upto_branch(cool), check_exact=True)
    assert not upto_branch(trunk).empty
    final_t, final_c = (r.weights[r.weights.step == 96].nuclear.to_numpy() for r in (trunk, cool))
    assert (final_t != final_c).any()


def test_the_ladder_judges_every_rung_end_to_end(smoke_ladder):
    lad = L.measure(smoke_ladder.name)
    assert set(lad.verdicts) == {(n, v) for n in (48, 96, 192) for v in L.VARIANTS}
    for vs in lad.verdicts.values():
        assert set(vs) == set(L.CLAIMS) and all(v.outcome in claims.OUTCOMES for v in vs.values())
        shares = [u for e in vs["stab.early_20pct"].per_size.values() for u in e.units]
        assert len(shares) == 4 and all(0 <= u <= 1 for u in shares)  # 2 sizes x 2 seeds
    t = L.table(lad)
    assert len(t) == 2 * 3 * 2
    ev = L.sosd_table(lad).set_index(["size", "length", "variant"])
    for (n, variant), vs in lad.verdicts.items():
        deltas = vs["sosd.at_loss_transition"].per_size
        for size, e in deltas.items():  # the judge's δ is found exactly where both events are
            both = sum(1 for u in e.units if u == u)
            row = ev.loc[(size, n, variant)]
            assert row["runs"] == 2 and both <= min(row["t_S found"], row["t_L found"])
    answers = L.length_answers(lad)
    assert set(answers) == set(L.CLAIMS)
    for a in answers.values():
        assert (a.length == "yes") == (len({a.outcomes[(n, "cooled")] for n in (48, 96, 192)}) > 1)
        assert a.sentence.startswith(("Depends on the length", "No dependence on the length seen"))


def test_the_ladder_runs_each_checkpoint_forward_once(smoke_ladder, tmp_path, monkeypatch):
    """The rungs read the trunk's checkpoints (hard links in the cooled arms) against different finals; with the
    activations kept, every distinct checkpoint runs forward once for the whole ladder."""
    monkeypatch.setattr(paths, "cache_dir", lambda: tmp_path)
    engine.LOADS.counts.clear()
    L.measure(smoke_ladder.name)
    source = analysis.Suite.open(smoke_ladder.name).source
    read = {
        suites.CheckpointRef(r.arm, size, seed, step)
        for r in L.rungs(smoke_ladder)
        for size in smoke_ladder.sizes
        for seed in smoke_ladder.seeds
        for step in smoke_ladder.checkpoint_steps(r.arm)
        if step <= r.length
    }
    forward = Counter()
    for ref, n in engine.LOADS.counts.items():
        forward[source.sha(ref)] += n
    assert set(forward.values()) == {1} and set(forward) == {source.sha(ref) for ref in read}
    assert len(read) > 2 * len(forward)  # the rungs read each checkpoint more than twice on average


def _verdict(cid: str, outcome: str, value: float) -> claims.Verdict:
    return claims.Verdict(cid, outcome, "x", value, None, {"s": claims.Estimate(value, None, (value,))})


def _planted(outcomes: dict[tuple[int, str], str]) -> L.Ladder:
    rungs = [L.Rung(n, v, "a", None) for n, v in outcomes]
    verdicts = {k: {c: _verdict(c, o, 0.1 * k[0]) for c in L.CLAIMS} for k, o in outcomes.items()}
    reg = pd.DataFrame({"size": ["s", "s"], "length": [1, 2], "tokens_per_parameter": [1.0, 2.0]})
    return L.Ladder("p", ["s"], [1], rungs, verdicts, reg)


@pytest.mark.parametrize(
    ("outcomes", "length", "decay"),
    [
        # null: the same verdict everywhere
        ({(1, "constant"): "contradicted", (1, "cooled"): "contradicted", (2, "constant"): "contradicted",
          (2, "cooled"): "contradicted"}, "not seen", "not seen"),
        # the longer cooled run reproduces: length matters, and the decay (the trunk at 2 still contradicts)
        ({(1, "constant"): "contradicted", (1, "cooled"): "contradicted", (2, "constant"): "contradicted",
          (2, "cooled"): "reproduced"}, "yes", "yes"),
        # the trunk changes with length but every cooled run agrees: not the length (for complete runs); decay yes
        ({(1, "constant"): "inconclusive", (1, "cooled"): "contradicted", (2, "constant"): "contradicted",
          (2, "cooled"): "contradicted"}, "not seen", "yes"),
    ],
)  # fmt: skip
def test_the_length_answer_follows_the_verdicts(outcomes, length, decay):
    a = L.length_answer(_planted(outcomes), "sosd.at_loss_transition")
    assert (a.length, a.decay) == (length, decay)
    assert ("changes the verdict at 2 steps" in a.sentence) == (
        decay == "yes" and outcomes[(1, "constant")] == outcomes[(1, "cooled")]
    )


def test_the_regime_sentence_places_the_ladder_against_the_papers():
    below = L.regime_sentence([1.0, 28.0], [1.6, 14.0], [740.0, 21000.0])
    assert below.startswith("The ladder spans 1.0–28") and "a factor 26 below" in below
    assert "overlaps the papers' range" in L.regime_sentence([10.0, 1000.0], [1.6, 14.0], [740.0, 21000.0])
    assert "above every one" in L.regime_sentence([30000.0, 40000.0], [1.6, 14.0], [740.0, 21000.0])


def _trunk_logs(held_out: dict[int, list[float]], train_loss: float = 3.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Planted logs of one size's trunk: held-out loss per length and seed, a flat training loss."""
    seeds = range(1, len(next(iter(held_out.values()))) + 1)
    rows = [(n, k, x) for n, xs in held_out.items() for k, x in zip(seeds, xs, strict=True)]
    val = pd.DataFrame([{"size": "a", "seed": k, "step": n, "val_loss": x} for n, k, x in rows])
    steps = range(1, max(held_out) + 1)
    train_log = pd.DataFrame([{"size": "a", "seed": k, "step": s, "loss": train_loss} for k in seeds for s in steps])
    regime = pd.DataFrame([{"size": "a", "length": n, "epochs": n / 100} for n in held_out])
    return train_log, val, regime


def test_repetition_tells_a_falling_held_out_loss_from_a_flat_one():
    train_log, val, regime = _trunk_logs({200: [4.0, 4.1], 400: [3.8, 3.85]})
    rep = L.repetition(train_log, val, regime)
    assert rep.falling == {"a": True}
    row = rep.table.set_index("length").loc[400]
    assert row["held-out loss"] == pytest.approx(3.825) and row["training loss"] == pytest.approx(3.0)
    assert row["gap"] == pytest.approx(0.825) and row["seed spread"] == pytest.approx(0.05)
    assert "4.050 nats at 2.0 epochs, 3.825 at 4.0 (-0.225; seeds spread 0.050)" in rep.sentence
    assert "the longest rungs measure the length of training" in rep.sentence
    # a fall within the seeds' spread at the longest length is no fall
    flat = L.repetition(*_trunk_logs({200: [4.0, 4.1], 400: [3.9, 4.1]}))
    assert flat.falling == {"a": False}
    assert "at a the held-out loss no longer falls" in flat.sentence


def test_repetition_needs_the_held_out_loss_at_every_length():
    train_log, val, regime = _trunk_logs({200: [4.0, 4.1], 400: [3.8, 3.85]})
    with pytest.raises(LmconvError, match="no validation loss at step 400"):
        L.repetition(train_log, val[val.step != 400], regime)
    # one seed missing at a length would make the mean and the spread over the others: refused too
    with pytest.raises(LmconvError, match=r"at step 400 .*for every seed \(\[1, 2\]\)"):
        L.repetition(train_log, val[(val.step != 400) | (val.seed != 2)], regime)
