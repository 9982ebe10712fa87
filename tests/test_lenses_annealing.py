"""The annealing section's rules on synthetic tables with known answers, and its profiles' consistency."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from lmconv.chapters import params
from lmconv.errors import LmconvError
from lmconv.figures import annealing as fig
from lmconv.lenses import annealing as A
from lmconv.training import profiles

STEPS = [0, 1, 2, 4, 8, 16, 32, 64, 128, 192, 256]
SEEDS = (1, 2, 3)


def pair_frame(kl_of_step, label="cosine", size="m", seeds=SEEDS, jitter=0.0) -> pd.DataFrame:
    """Pair curves: every ordered pair gets kl_of_step(step) · (1 + jitter · pair index)."""
    rows = []
    pairs = [(i, j) for i in seeds for j in seeds if i != j]
    for k, (i, j) in enumerate(pairs):
        for st in STEPS:
            rows.append(
                {
                    "arm": label,
                    "size": size,
                    "step": st,
                    "seed_i": i,
                    "seed_j": j,
                    "kl": kl_of_step(st) * (1 + jitter * k),
                }
            )
    return pd.DataFrame(rows)


def unigram_frame(argmins: dict[int, int]) -> pd.DataFrame:
    """KL to unigram per seed: |log2(step + 1) − log2(argmin + 1)| + 1, minimal at each seed's argmin."""
    rows = []
    for seed, m in argmins.items():
        for st in STEPS:
            rows.append({"step": st, "seed": seed, "kl_unigram": abs(np.log2(st + 1) - np.log2(m + 1)) + 1.0})
    return pd.DataFrame(rows)


def spec(kind="cosine", label="cosine", total=256, **kw) -> A.ArmSpec:
    sched = profiles.Schedule(kind=kind, warmup=4, final_ratio=0.1, **kw)
    return A.ArmSpec(label, "p", None, sched, total, 1e-3, None)


# a rise to a peak at step 64, then a fall: KL 0.1 at 64, 0.08 at 192 (S), 0.06 at 256
PEAKED = {0: 0.01, 1: 0.01, 2: 0.01, 4: 0.01, 8: 0.012, 16: 0.03, 32: 0.07, 64: 0.1, 128: 0.09, 192: 0.08, 256: 0.06}
RISING = {st: 0.01 + 0.0004 * st for st in STEPS}


def test_pair_curves_average_positions_per_pair():
    df = pd.DataFrame(
        {
            "size": "m",
            "step": [8] * 4,
            "seed_i": [1, 1, 2, 2],
            "seed_j": [2, 2, 1, 1],
            "pos": [0, 1, 0, 1],
            "kl": [1.0, 3.0, 5.0, 7.0],
        }
    )
    out = A.pair_curves(df, "constant").set_index(["seed_i", "seed_j"]).kl
    assert out[(1, 2)] == 2.0 and out[(2, 1)] == 6.0
    u = A.seed_unigram(pd.DataFrame({"size": "m", "step": 1, "seed": [1, 1], "kl_unigram": [1.0, 2.0]}), "wsd")
    assert u.kl_unigram.tolist() == [1.5] and u.arm.tolist() == ["wsd"]


def test_splice_takes_the_parent_before_the_branch_step_and_the_branch_from_it():
    parent = pair_frame(lambda s: 1.0, label="constant")
    branch = pair_frame(lambda s: 2.0, label="wsd")
    branch = branch[branch.step.isin([0, 192, 256])]
    out = A.splice(parent, branch, 192)
    assert set(out.arm) == {"wsd"}
    assert sorted(out.step.unique()) == STEPS
    assert (out[out.step < 192].kl == 1.0).all() and (out[out.step >= 192].kl == 2.0).all()
    assert len(out) == len(parent)  # one row per (step, pair): step 0 comes once, from the parent


def test_mean_curves_band_sign_and_relative_kl():
    df = pair_frame(lambda s: PEAKED[s], jitter=0.1)
    m = A.mean_curves(df).set_index("step")
    pairs = 6
    factor = np.mean([1 + 0.1 * k for k in range(pairs)])
    assert m.loc[64, "kl"] == pytest.approx(0.1 * factor)
    assert m.loc[64, "kl_max"] == pytest.approx(0.1 * 1.5) and m.loc[64, "kl_min"] == pytest.approx(0.1)
    assert m.loc[64, "conv"] == pytest.approx(-m.loc[64, "kl"]) and m.loc[64, "conv_lo"] == pytest.approx(-0.15)
    assert m.loc[64, "kl_rel"] == pytest.approx(10.0)  # 0.1 / 0.01, the pair factor cancels
    assert (m.pairs == pairs).all()


def test_arm_summary_segments_falls_and_multipliers():
    df = pair_frame(lambda s: PEAKED[s], jitter=0.1)
    uni = unigram_frame({1: 16, 2: 16, 3: 32})
    s = spec()
    out = A.arm_summary(df, uni, s, split=192)
    factor = np.mean([1 + 0.1 * k for k in range(6)])
    assert out["peak_step"] == 64 and out["peak_kl"] == pytest.approx(0.1 * factor)
    assert out["peak_rel"] == pytest.approx(10.0)
    assert out["fall_stable"] == pytest.approx(0.02 * factor)  # KL(64) − KL(192)
    assert out["fall_decay"] == pytest.approx(0.02 * factor)  # KL(192) − KL(256)
    assert out["fall_total"] == pytest.approx(0.04 * factor)
    assert out["fall_total_rel"] == pytest.approx(0.4)
    assert out["fall_total_lo"] == pytest.approx(0.04) and out["fall_total_hi"] == pytest.approx(0.04 * 1.5)
    assert out["fall_stable_span"] == (64, 192) and out["fall_decay_span"] == (192, 256)
    assert out["reconverges"] and out["pairs_reconverge"] == 6
    assert not out["converges_early"]
    # the LR multiplier of the update that produced each checkpoint (cosine: decreasing after warmup)
    assert out["lr_peak"] == pytest.approx(s.schedule.multiplier(63, 256))
    assert out["lr_final"] == pytest.approx(s.schedule.multiplier(255, 256))
    assert out["lr_peak"] > out["lr_split"] > out["lr_final"]
    assert out["unigram_step"] == 16 and (out["unigram_step_lo"], out["unigram_step_hi"]) == (16, 32)
    assert out["fall_common"] is None  # no common start given
    out = A.arm_summary(df, uni, s, split=192, common_start=32)
    assert out["fall_common"] == pytest.approx(-0.01 * factor) and out["fall_common_span"] == (32, 192)


def test_summarise_measures_every_arm_from_the_cosine_peak():
    uni = pd.concat([unigram_frame({1: 16, 2: 16, 3: 16}).assign(arm=a, size="m") for a in ("cosine", "constant")])
    later = dict(PEAKED) | {64: 0.09, 128: 0.1, 192: 0.11, 256: 0.12}  # constant: still rising
    curves = pd.concat([pair_frame(lambda s: PEAKED[s]), pair_frame(lambda s: later[s], label="constant")])
    specs = [spec(), spec("constant", "constant")]
    m = profiles.load("smoke")
    data = A.AnnealData(m, m, specs, ["m"], 192, curves, uni, pd.DataFrame())
    out = A.summarise(data)["m"]
    assert out["arms"]["cosine"]["fall_common"] == pytest.approx(0.02)  # KL(64) − KL(192), its own stable fall
    assert out["arms"]["constant"]["fall_common"] == pytest.approx(0.09 - 0.11)  # same steps, though it peaks later
    assert out["compare"]["window"] == (64, 256)


def test_arm_summary_without_reconvergence_or_with_a_peak_after_the_split():
    out = A.arm_summary(pair_frame(lambda s: RISING[s]), unigram_frame({1: 8, 2: 8, 3: 8}), spec("constant"), 192)
    assert out["peak_step"] == 256 and not out["reconverges"]
    assert out["fall_stable"] is None and out["fall_total"] is None  # the peak is the last step
    assert out["fall_decay"] == pytest.approx(RISING[192] - RISING[256])  # negative: KL rose during the decay
    assert out["lr_peak"] == out["lr_split"] == out["lr_final"] == 1.0


def test_arm_summary_sees_phase_ii_when_kl_dips_below_its_band():
    dip = dict(PEAKED) | {4: 0.008, 8: 0.009}
    out = A.arm_summary(pair_frame(lambda s: dip[s]), unigram_frame({1: 4, 2: 4, 3: 4}), spec(), 192)
    assert out["converges_early"] and out["trough_step"] == 4
    assert out["dip_depth"] == pytest.approx(0.2)


def test_compare_shares_and_verdicts():
    cos = pair_frame(lambda s: PEAKED[s], label="cosine")
    flat_end = dict(PEAKED) | {128: 0.1, 192: 0.1, 256: 0.1}  # constant: peak then a plateau
    con = pair_frame(lambda s: flat_end[s], label="constant")
    wsd_kl = dict(flat_end) | {256: 0.07}
    wsd = pair_frame(lambda s: wsd_kl[s], label="wsd")
    uni = unigram_frame({1: 16, 2: 16, 3: 16})
    specs = {"cosine": spec(), "constant": spec("constant", "constant"), "wsd": spec("wsd", "wsd", decay_fraction=0.25)}
    curves = {"cosine": cos, "constant": con, "wsd": wsd}
    summ = {k: A.arm_summary(curves[k], uni, specs[k], 192) for k in specs}
    c = A.compare(summ, curves)
    assert c["window"] == (64, 256)
    assert c["cos_fall_window"] == pytest.approx(0.04) and c["const_fall_window"] == pytest.approx(0.0)
    assert c["share_window"] == pytest.approx(0.0) and c["share_own"] == pytest.approx(0.0)
    assert c["wsd_fall_decay"] == pytest.approx(0.03) and c["cos_fall_decay"] == pytest.approx(0.02)
    assert c["wsd_fall_stable_window"] == pytest.approx(0.0)
    text = A.verdict("m", summ, c, 0.05)
    assert text.startswith("**m**") and "falls by 0.040 nats (40% of its peak) from step 64 to step 256" in text
    assert "peaks at step 64 (0.100 nats) and ends 0% from that peak" in text
    assert "(steps 192–256) KL changes by −0.030 nats (−30% of its peak)" in text
    assert text.endswith("by the rule the WSD arm reconverges.")
    assert A.conclusion({"m": {"arms": summ}}) == (
        "No reconvergence survives without annealing: of the sizes that reconverge under cosine (m), none does "
        "with a constant learning rate, while the short WSD decay alone makes KL reconverge in 1 of 1 sizes (m)."
    )
    # a constant arm that rises to the end: nothing of the cosine fall is left
    rising = pair_frame(lambda s: RISING[s], label="constant")
    s2 = dict(summ) | {"constant": A.arm_summary(rising, uni, specs["constant"], 192)}
    c2 = A.compare(s2, curves | {"constant": rising})
    text = A.verdict("m", s2, c2, 0.05)
    assert "rises to the last step, where it is 0.112 nats (11.2 times its step-0 value)" in text
    assert "changes by +0.077 nats where the cosine arm's changes by −0.040: none of the cosine" in text
    # half the cosine fall survives: constant ends at 0.08
    half = dict(PEAKED) | {128: 0.095, 192: 0.09, 256: 0.08}
    curves["constant"] = pair_frame(lambda s: half[s], label="constant")
    summ["constant"] = A.arm_summary(curves["constant"], uni, specs["constant"], 192)
    c = A.compare(summ, curves)
    assert c["share_window"] == pytest.approx(0.5) and c["share_own"] == pytest.approx(0.5)
    assert "reconverges too" in A.verdict("m", summ, c, 0.05) and "50%" in A.verdict("m", summ, c, 0.05)
    assert A.conclusion({"m": {"arms": summ}}).startswith("Reconvergence survives without annealing in 1 of the 1")
    flat = {k: v for k, v in summ.items() if k != "wsd"} | {"cosine": summ["constant"] | {"reconverges": False}}
    assert A.conclusion({"m": {"arms": flat}}).startswith("No size reconverges under cosine")
    with pytest.raises(LmconvError):
        A.compare({"cosine": summ["cosine"]}, curves)


def test_identical_until_late_start_and_focus():
    a = pair_frame(lambda s: PEAKED[s], label="cosine")
    b = pair_frame(lambda s: PEAKED[s] + (1e-3 if s > 8 else 0.0), label="constant")
    assert A.identical_until(pd.concat([a, b])) == 8
    assert A.identical_until(pd.concat([a, a.assign(arm="wsd")])) == 256
    assert A.late_start(a) == 32  # first checkpoint ≥ 10% of 256
    summ = {"s": {"arms": {"cosine": {"fall_total_rel": 0.1}}}, "m": {"arms": {"cosine": {"fall_total_rel": 0.3}}}}
    assert A.focus_size(summ) == "m"


def test_multiplier_is_that_of_the_update_that_produced_the_checkpoint():
    s = spec("wsd", "wsd", decay_fraction=0.25)  # decay starts at 192
    assert s.multiplier(0) == s.schedule.multiplier(0, 256) == pytest.approx(0.25)  # warmup (step + 1) / 4
    assert s.multiplier(192) == 1.0  # produced by the update at step 191, before the decay
    assert s.multiplier(256) == pytest.approx(s.schedule.multiplier(255, 256)) and s.multiplier(256) < 0.2


@pytest.mark.parametrize("main", ["default", "smoke"])
def test_anneal_profiles_are_companions_and_branch_at_their_decay_start(main):
    m, a = profiles.load(main), profiles.load(A.companion(main))
    A.check_compatible(m, a)
    specs = A.arm_specs(m, a)
    assert [s.label for s in specs][:2] == ["cosine", "constant"]
    wsd = next(s for s in specs if s.schedule.kind == "wsd")
    start = A.decay_start(specs)
    assert wsd.branch == ("constant", start)
    for arm in a.arms:
        assert start in a.checkpoint_steps(arm)
    assert start in m.checkpoint_steps(), "the cosine arm needs a checkpoint where the decay starts"
    assert a.arm("constant").train.schedule.warmup == m.arm().train.schedule.warmup
    assert wsd.schedule.final_ratio == m.arm().train.schedule.final_ratio


def test_check_compatible_names_what_differs():
    m = profiles.load("smoke")
    raw = profiles.load("smoke-anneal").raw
    for bad in (
        {"vocab_size": 2048},
        {"seeds": [1, 2, 7]},  # a seed the main profile lacks (a subset is fine)
        {"checkpoints": {"log_until": 16, "per_octave": 1, "every": 32}},
    ):
        with pytest.raises(LmconvError, match="is not a companion"):
            A.check_compatible(m, profiles.parse(raw | bad, "bad"))


def test_companion_prefers_the_profiles_own_entry(tmp_path):
    assert A.companion("smoke") == "smoke-anneal" and A.companion("smoke", "anneal") == "anneal"
    raw = profiles.load("smoke").raw | {"companions": {"anneal": "anneal"}}
    f = tmp_path / "mine.yaml"
    f.write_text(yaml.safe_dump(raw))
    assert A.companion(str(f)) == "anneal"
    f2 = tmp_path / "other.yaml"
    f2.write_text(yaml.safe_dump({k: v for k, v in profiles.load("smoke").raw.items() if k != "companions"}))
    with pytest.raises(LmconvError, match="names no anneal suite"):
        A.companion(str(f2))


def test_parameters_are_registered():
    assert params.validate(anneal_profile=None, abs_tol=0.0).anneal_profile is None
    assert params.validate(anneal_profile="smoke-anneal").anneal_profile == "smoke-anneal"
    with pytest.raises(LmconvError):
        params.validate(anneal_profile="no-such-profile")
    with pytest.raises(LmconvError):
        params.validate(abs_tol=-1.0)


def test_table_has_a_row_per_size_and_arm():
    uni = unigram_frame({1: 16, 2: 16, 3: 16})
    arms = {
        "cosine": A.arm_summary(pair_frame(lambda s: PEAKED[s]), uni, spec(), 192),
        "constant": A.arm_summary(pair_frame(lambda s: RISING[s]), uni, spec("constant", "constant"), 192),
    }
    t = A.table({"m": {"arms": arms}})
    assert t[["size", "arm"]].values.tolist() == [["m", "cosine"], ["m", "constant"]]
    assert t.loc[1, "fall, peak→S"] == "–" and t.loc[0, "peak step"] == "64 (64–64)"
    assert t.loc[1, "fall, S→end"].startswith("−0.026")  # KL rose by 0.0004 × 64 during the decay


def test_figure_one_panel_per_size_plus_schedule_and_small_data():
    cur = pd.concat([pair_frame(lambda s: PEAKED[s], label=a, size=z) for a in ("cosine", "wsd") for z in ("s", "m")])
    m = A.mean_curves(cur)
    lr = pd.DataFrame({"arm": "cosine", "step": STEPS, "lr": 1e-3, "multiplier": 1.0})
    spec_ = fig.conv_by_arm(m, lr, 192, sizes=["s", "m"]).to_dict()
    assert len(spec_["vconcat"]) == 3  # two sizes, then the schedule
    assert [p["title"] for p in spec_["vconcat"][:2]] == ["size s", "size m"]
    top = spec_["vconcat"][0]["layer"]
    assert top[0]["mark"]["type"] == "line" and top[1]["mark"]["type"] == "area"  # legend from the lines
    assert top[0]["encoding"]["x"]["scale"]["type"] == "symlog" and top[2]["mark"]["type"] == "circle"
    assert top[3]["mark"]["type"] == "rule"
    rows = sum(len(v) for v in spec_["datasets"].values())
    assert rows < 2000
    late = fig.conv_by_arm(m, lr, 192, sizes=["s", "m"], min_step=64, linear=True).to_dict()
    assert late["vconcat"][0]["layer"][0]["encoding"]["x"]["scale"]["domain"] == [64, 256]


def test_lr_gap_is_zero_in_the_shared_warmup_and_grows_after():
    cos, con = spec(), spec("constant", "constant")
    assert A.lr_gap([cos, con], 4) == 0.0  # checkpoints 0–4 come from warmup updates 0–3
    m = cos.schedule.multiplier(127, 256)
    assert A.lr_gap([cos, con], 128) == pytest.approx((1 - m) / m)
    assert A.lr_gap([cos, con], 64) < A.lr_gap([cos, con], 128)


def test_early_phases_counts():
    def arm(u, conv, dip):
        return {"unigram_step": u, "converges_early": conv, "dip_depth": dip}

    summ = {
        "s": {"arms": {"cosine": arm(16, False, 0.01), "constant": arm(16, False, 0.02)}},
        "m": {"arms": {"cosine": arm(8, True, 0.1), "constant": arm(16, True, 0.1)}},
    }
    e = A.early_phases(summ, 0.05)
    assert (e["same_unigram"], e["n_sizes"], e["unigram_lo"], e["unigram_hi"]) == (1, 2, 8, 16)
    assert (e["n_convergence"], e["n_arm_sizes"]) == (2, 4)
    assert e["min_dip"] == pytest.approx(0.9) and e["max_dip"] == pytest.approx(0.99)


def _arms(const: bool, cos: bool, wsd: bool) -> dict:
    return {"arms": {"constant": {"reconverges": const}, A.COSINE: {"reconverges": cos}, "wsd": {"reconverges": wsd}}}


def test_lesson_follows_the_phase_flags():
    assert "follows the learning rate" in A.lesson({"s": _arms(False, True, True), "l": _arms(False, False, True)})
    assert "even at a constant learning rate in l" in A.lesson(
        {"s": _arms(False, True, True), "l": _arms(True, True, True)}
    )
    assert "no arm reconverges" in A.lesson({"s": _arms(False, False, False)})


def test_comparison_words_follow_the_numbers():
    ce = {"constant": 5.0, A.COSINE: 5.2, "wsd": 4.9}
    arms = {"constant": {"final_kl": 0.3}, A.COSINE: {"final_kl": 0.2}, "wsd": {"final_kl": 0.25}}
    w = A.comparison_words(ce, arms)
    assert w == {"ce_word": "lower", "kl_word": "further apart", "decay_ce_effect": "lowers", "wsd_word": "above"}
    ce2 = {"constant": 5.3, A.COSINE: 5.2, "wsd": 5.4}
    arms2 = {"constant": {"final_kl": 0.1}, A.COSINE: {"final_kl": 0.2}, "wsd": {"final_kl": 0.15}}
    w2 = A.comparison_words(ce2, arms2)
    assert w2 == {"ce_word": "higher", "kl_word": "closer", "decay_ce_effect": "raises", "wsd_word": "below"}
