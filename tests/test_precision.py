"""``precision: auto`` (bf16 where the machine multiplies bf16 matrices natively) and the precision check of the
methods chapter (:mod:`lmconv.lenses.precision`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmconv import io, paths
from lmconv.errors import LmconvError
from lmconv.lenses import precision as prec
from lmconv.training import profiles, train

XEON = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile amx_bf16\n"
EPYC_AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n"


def test_native_bf16_is_read_from_the_cpu_flags():
    assert profiles.cpu_has_native_bf16(XEON)
    assert profiles.cpu_has_native_bf16(XEON.replace(" avx512_bf16", ""))  # AMX alone
    assert not profiles.cpu_has_native_bf16(EPYC_AVX2)
    assert not profiles.cpu_has_native_bf16("model name\t: avx512_bf16 in a name, not a flag\n")
    assert not profiles.cpu_has_native_bf16("")


def test_auto_follows_the_machine_and_the_override(monkeypatch):
    monkeypatch.delenv(profiles.PRECISION_ENV, raising=False)
    monkeypatch.setattr(profiles, "cpu_has_native_bf16", lambda cpuinfo=None: True)
    assert profiles.native_precision("cpu") == "bf16"
    monkeypatch.setattr(profiles, "cpu_has_native_bf16", lambda cpuinfo=None: False)
    assert profiles.native_precision("cpu") == "fp32"
    monkeypatch.setenv(profiles.PRECISION_ENV, "bf16")
    assert profiles.native_precision("cpu") == "bf16"
    monkeypatch.setenv(profiles.PRECISION_ENV, "fp16")
    with pytest.raises(LmconvError, match="LMCONV_PRECISION='fp16' is not a precision") as e:
        profiles.native_precision("cpu")
    assert "fp32, bf16" in e.value.fix


def _auto(raw: dict, precision: str = "auto") -> dict:
    return raw | {"train": raw["train"] | {"precision": precision}}


def test_auto_resolves_when_read_and_hashes_as_the_precision_it_gave(monkeypatch):
    """The arms train in the resolved precision; the hash is that of the profile that writes it out, and differs
    between the two resolutions (a suite trained in one is never resumed in the other)."""
    smoke = {k: v for k, v in profiles.load("smoke").raw.items() if k != "companions"}
    for p in profiles.PRECISIONS:
        monkeypatch.setenv(profiles.PRECISION_ENV, p)
        auto = profiles.parse(_auto(smoke), "x")
        assert auto.arm().train.precision == p and auto.auto_precision == {"lmconv": p}
        assert auto.sha256 == profiles.parse(_auto(smoke, p), "x").sha256
        assert auto.raw["train"]["precision"] == "auto"  # the file as written (profile.json)
    assert profiles.parse(_auto(smoke, "fp32"), "x").sha256 != profiles.parse(_auto(smoke, "bf16"), "x").sha256
    # fp32, asked for or resolved, hashes as the profile without the key: suites trained before it keep their hash
    assert profiles.parse(_auto(smoke, "fp32"), "x").sha256 == profiles.parse(smoke, "x").sha256
    arms = _auto(smoke) | {"arms": {"a": {}, "b": {"precision": "fp32"}}}
    monkeypatch.setenv(profiles.PRECISION_ENV, "bf16")
    prof = profiles.parse(arms, "x")
    assert {a: v.train.precision for a, v in prof.arms.items()} == {"a": "bf16", "b": "fp32"}
    assert prof.sha256 == profiles.parse(_auto(arms, "bf16"), "x").sha256


def test_a_suite_is_not_resumed_in_another_precision(monkeypatch, smoke_profile):
    """A suite begun where auto gave bf16 is refused where it gives fp32, with the precisions and the way out."""
    raw = {k: v for k, v in smoke_profile.raw.items() if k != "companions"}
    tiny = _auto(raw | {"seeds": [1], "sizes": {"xs": raw["sizes"]["xs"]}}) | {"checkpoints": {"every": 16}}
    tiny["train"] = tiny["train"] | {"steps": 2}
    monkeypatch.setenv(profiles.PRECISION_ENV, "bf16")
    root = train.train_profile(profiles.parse(tiny, "tinyauto"), progress=False)
    assert io.read_json(root / "suite.json")["precision"] == {"lmconv": "bf16"}
    assert io.read_json(root / "lmconv-xs-seed1" / "run.json")["precision"] == "bf16"
    monkeypatch.setenv(profiles.PRECISION_ENV, "fp32")
    with pytest.raises(LmconvError, match="was trained in bf16, but profile 'tinyauto' trains in fp32 here") as e:
        train.train_profile(profiles.parse(tiny, "tinyauto"), progress=False)
    assert "LMCONV_PRECISION=bf16" in e.value.fix and str(paths.suite_dir("tinyauto")) in e.value.fix
    # the way out the message names: finished in its own precision, the suite is accepted again
    monkeypatch.setenv(profiles.PRECISION_ENV, "bf16")
    assert train.train_profile(profiles.parse(tiny, "tinyauto"), progress=False) == root


def test_the_fp32_twin_is_trained_only_where_the_main_suite_is_bf16(monkeypatch):
    monkeypatch.setenv(profiles.PRECISION_ENV, "bf16")
    assert profiles.needed_companions("default")["precision"] == "precision"
    prec.check_design(profiles.load("default"), profiles.load("precision"))
    monkeypatch.setenv(profiles.PRECISION_ENV, "fp32")
    named = profiles.needed_companions("default")
    assert "precision" not in named and set(named) == {"sweep", "anneal", "decoupled", "ladder"}
    with pytest.raises(LmconvError, match="both train in fp32: there is nothing to compare"):
        prec.check_design(profiles.load("default"), profiles.load("precision"))
    # the smoke suite is fp32 everywhere; its twin is bf16, so the tests run the comparison on every machine
    assert profiles.needed_companions("smoke")["precision"] == "smoke-precision"
    assert "need no precision check" in prec.unchecked(profiles.load("smoke"))
    # a bf16 suite without a named twin is said to be unchecked, not to need no check
    monkeypatch.setenv(profiles.PRECISION_ENV, "bf16")
    gpu = profiles.parse(
        profiles.load("gpu").raw | {"train": profiles.load("gpu").raw["train"] | {"device": "cpu"}}, "g"
    )
    assert "precision" not in profiles.needed_companions(gpu) and "is not checked here" in prec.unchecked(gpu)


def test_a_twin_that_differs_in_more_than_the_precision_is_refused():
    main, twin = profiles.load("smoke"), profiles.load("smoke-precision")
    prec.check_design(main, twin)
    bad = twin.raw | {"train": twin.raw["train"] | {"lr": 1e-2}}
    with pytest.raises(LmconvError, match=r"they differ in \['train \(settings other than the precision\)'\]"):
        prec.check_design(main, profiles.parse(bad, "bad"))
    with pytest.raises(LmconvError, match=r"seeds \[7\]"):
        prec.check_design(main, profiles.parse(twin.raw | {"seeds": [1, 7]}, "bad"))


# ---------------------------------------------------------------------------------------------------------
# the rules, on known values
# ---------------------------------------------------------------------------------------------------------


def test_agreement_compares_the_largest_change_of_a_unit_with_the_reference_spread():
    ref = pd.Series([3.0, 3.2, 3.1], index=[1, 2, 3])
    a = prec.agreement(ref, pd.Series([3.05, 3.1, 3.1], index=[1, 2, 3]))
    assert a["effect"] == pytest.approx(0.1) and a["spread"] == pytest.approx(0.2) and a["agree"]
    assert a["ref"] == {"value": pytest.approx(3.1), "lo": 3.0, "hi": 3.2}
    # every run moved by more than the seeds differ: not within the spread, even though the means are close
    b = prec.agreement(ref, pd.Series([3.25, 2.95, 3.1], index=[1, 2, 3]))
    assert b["effect"] == pytest.approx(0.25) and not b["agree"]
    assert prec.agreement(ref, ref)["agree"]  # the null case: twins identical
    assert prec.agreement(ref, ref[::-1])["effect"] == 0.0  # units are matched by index, not by position
    with pytest.raises(LmconvError, match="different units"):
        prec.agreement(ref, ref.iloc[:2])


def _curves(shift: float = 0.0, peak: float = 4.2, steps=(0, 1, 2, 4, 8, 16, 32, 64, 128, 256)) -> pd.DataFrame:
    """Three seeds' ordered pairs with a dip, a rise and a fall (every phase), in fp32 and in bf16 shifted up by
    ``shift`` nats and with the peak at ln(1 + step) = ``peak``."""
    steps = np.array(steps)
    x = np.log1p(steps)
    rows = []
    for p, extra, top in (("fp32", 0.0, 4.2), ("bf16", shift, peak)):
        base = 0.05 + 0.5 * np.exp(-(((x - top) / 0.8) ** 2)) - 0.04 * np.exp(-(((x - 1.5) / 0.5) ** 2))
        for n, (i, j) in enumerate([(a, b) for a in (1, 2, 3) for b in (1, 2, 3) if a != b]):
            for st, kl in zip(steps, base * (1 + 0.02 * n) + extra * (steps > 0), strict=True):
                rows.append({"precision": p, "size": "s", "step": int(st), "seed_i": i, "seed_j": j, "kl": kl})
    return pd.DataFrame(rows)


def test_the_curve_agrees_where_the_means_stay_inside_the_pairs_range():
    same = prec.curve_agreement(_curves(), "fp32", "bf16")
    assert same["agree"] and same["n_within"] == same["n_steps"] == 10 and same["max_effect"] == 0.0
    far = prec.curve_agreement(_curves(shift=0.1), "fp32", "bf16")
    assert not far["agree"] and far["n_within"] == 1  # step 0 only: the twins share their initial weights
    assert far["worst_effect"] == pytest.approx(0.1) and far["worst_spread"] < 0.1


def test_the_phases_agree_only_with_the_same_phases_and_boundaries():
    same = prec.phase_agreement(_curves(), "fp32", "bf16")
    assert same["agree"] and same["same_phases"] and not same["boundaries_off"]
    assert same["fp32"]["phases"] == same["bf16"]["phases"] and "divergence" in same["fp32"]["phases"]
    assert same["boundaries"]["peak_step"]["effect"] == 0.0
    # the same phases, but every pair's peak later while the fp32 pairs all peak at one checkpoint
    late = prec.phase_agreement(_curves(peak=4.9), "fp32", "bf16")
    assert late["same_phases"] and not late["agree"] and late["boundaries"]["peak_step"]["spread"] == 0
    assert any(b.startswith("peak: a pair's moves") for b in late["boundaries_off"])
    flat = _curves().assign(kl=lambda c: np.where(c.precision == "bf16", 0.05, c.kl))
    off = prec.phase_agreement(flat, "fp32", "bf16")
    assert not off["agree"] and not off["same_phases"] and "divergence" not in off["bf16"]["phases"]


def test_a_run_against_its_twin_in_final_spectra():
    rng = np.random.default_rng(0)
    a = np.sort(rng.random((3, 8)), axis=1)[:, ::-1]
    records = {("fp32", "s", 1): a, ("bf16", "s", 1): a, ("fp32", "s", 2): a, ("bf16", "s", 2): 2 * a}
    twins = prec.cross_precision_spectra(records, "fp32", "bf16")
    assert list(twins.seed) == [1, 2] and twins.delta_sigma.tolist() == [0.0, 0.0]  # trace-normalised: scale-free
    records["bf16", "s", 2] = a * np.linspace(2, 1, 8)  # a steeper spectrum: the largest values weigh more
    assert prec.cross_precision_spectra(records, "fp32", "bf16").delta_sigma.iloc[1] > 0


# ---------------------------------------------------------------------------------------------------------
# on trained suites: the smoke suite (fp32) and its bf16 twin
# ---------------------------------------------------------------------------------------------------------


def test_the_smoke_twins_compared_run_for_run(smoke_suite, smoke_precision):
    d = prec.load("smoke")
    assert (d.ref, d.other, d.sizes, d.seeds) == ("fp32", "bf16", ["s"], [1, 2, 3])
    s = prec.compare(d)["s"]
    # step 0: a run and its twin are the same weights, so the pair curves start equal
    first = d.curves[d.curves.step == 0].pivot_table(index=["seed_i", "seed_j"], columns="precision", values="kl")
    assert np.array_equal(first["fp32"], first["bf16"])
    loss = d.losses.pivot_table(index="seed", columns="precision", values="val_loss")
    assert s["loss"]["effect"] == pytest.approx((loss.bf16 - loss.fp32).abs().max())
    assert s["loss"]["spread"] == pytest.approx(loss.fp32.max() - loss.fp32.min())
    assert (loss.bf16 != loss.fp32).any()  # the twins really trained apart
    assert len(d.spectra) == 2 * 3 and len(d.twins) == 3 and (d.twins.delta_sigma > 0).all()
    words = prec.verdict({"s": s}, "fp32", "bf16")
    assert words.startswith("Training in bf16 instead of fp32 ")
    assert f"{s['twins']['value']:.4f}" in words and f"{s['spectra']['ref']['value']:.4f}" in words
    tab = prec.table({"s": s}, "fp32", "bf16")
    assert len(tab) == 5 and set(tab.verdict.str.split(" at ").str[0]) <= {
        "agrees within the seed spread",
        "differs by more than the seed spread",
    }
