"""The modules behind five short pages (the suite, methods, status, data, and section 2a on annealing): every
section on the smoke suite (2a on synthetic arms with known answers), checked against the names the pages glue
and against the numbers recomputed by hand."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

from lmconv import book, chapters, paths
from lmconv.chapters import annealing, data, methods, params, status, suite
from lmconv.data import corpus, tokenizer
from lmconv.errors import LmconvError
from lmconv.lenses import annealing as A
from lmconv.metrics import stats
from lmconv.training import profiles

ROOT = Path(__file__).resolve().parents[1]


def page(name: str) -> Path:
    return ROOT / "notebooks" / f"{name}.md"


def smoke_parameters(name: str) -> SimpleNamespace:
    """A page's parameters at their defaults, on the smoke profile."""
    return params.from_namespace(book.page_parameters(page(name), profile="smoke"))


def page_glued(module: object, name: str, d: object) -> dict:
    """Every section the page shows, run on ``d``."""
    return chapters.collect(module, d, book.page_sections(page(name)))


# ---------------------------------------------------------------------------------------------------------
# 01_suite
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def suite_glued(smoke_suite):
    d = suite.load(smoke_parameters("01_suite"))
    return d, page_glued(suite, "01_suite", d)


def test_suite_sections_glue_what_the_page_uses(suite_glued):
    d, g = suite_glued
    per_size = {f"final_val_{s}" for s in d.prof.sizes} | {f"final_val_sd_{s}" for s in d.prof.sizes}
    assert set(g) == book.glue_names(page("01_suite")) | per_size | {"late_rise"}  # late_rise: in overfit_text


def test_suite_numbers_agree_with_the_profile_and_the_logs(suite_glued):
    d, g = suite_glued
    tab = g["tab_sizes"]
    assert len(tab) == g["n_sizes"] == len(d.prof.sizes) and list(tab.index) == list(d.prof.sizes)
    assert (g["params_min"], g["params_max"]) == (tab.parameters.min(), tab.parameters.max())
    assert g["epochs"] == pytest.approx(g["n_steps"] * g["batch"] * g["context"] / g["train_tokens"])
    last = d.val_log[d.val_log.step == g["n_steps"]]
    small = last[last["size"] == g["size_small"]].val_loss
    assert g["final_val_small"] == pytest.approx(small.mean()) and len(small) == g["n_seeds"]
    spans = [v.max() - v.min() for _, v in last.groupby("size").val_loss]
    assert g["seed_range_max"] == pytest.approx(max(spans))
    assert f"{g['late_rise']:.3f}" in g["overfit_text"]
    assert len(g["tab_polypythia"]) == len(d.prof.sizes)


def test_suite_late_degradation_by_hand(suite_glued, smoke_results):
    """The smallest size's last-word accuracy at the last step, and the start of the late phase, recomputed
    from the engine's downstream table."""
    _, g = suite_glued
    t, r = smoke_results.downstream, smoke_results
    last = t[(t["size"] == r.sizes[0]) & (t.step == max(r.steps)) & (t.set == "lastword")]
    assert g["lw_last_small"] == pytest.approx(last.groupby("seed").greedy.mean().mean())
    total = profiles.load("smoke").arm().train.steps
    assert g["late_start"] == min(r.steps, key=lambda s: abs(s - total / 2))
    assert g["degrade_claim"].split(":")[0].lower() in ("reproduced", "contradicted", "inconclusive")


# ---------------------------------------------------------------------------------------------------------
# methods
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def methods_glued(smoke_suite, smoke_precision):
    d = dataclasses.replace(methods.load(smoke_parameters("methods")), det_draws=4)  # the page draws 100 (17 s)
    return d, page_glued(methods, "methods", d)


def test_methods_sections_glue_what_the_page_uses(methods_glued):
    assert set(methods_glued[1]) == book.glue_names(page("methods"))


def test_methods_numbers(methods_glued):
    d, g = methods_glued
    assert g["n_pairs"] == g["n_seeds"] * (g["n_seeds"] - 1) == 6  # three smoke seeds, ordered pairs
    assert g["probe_overlap"] == d.prof.probe.context - d.prof.probe.stride
    assert g["probe_tokens"] <= g["probe_stream"]
    assert g["det_draws"] == 4 and 0.0 <= g["det_max_fp"] <= 1.0 and 0.0 <= g["det_deriv_fp"] <= 1.0
    assert g["iv_sign_p_4"] == pytest.approx(0.5**4)  # one-sided p of four agreeing signs
    assert g["iv_resamples_4"] == stats.n_distinct_resamples(4) == 35  # multisets of 4 from 4
    html = g["tab_detector_rates"].to_html()
    assert "found_rate" not in html and "within tol" in html and "draws" not in html


# ---------------------------------------------------------------------------------------------------------
# status
# ---------------------------------------------------------------------------------------------------------


def executed(folder: Path, name: str, seconds: float) -> None:
    meta = {"papermill": {"duration": seconds, "end_time": "2026-01-01T00:00:00.5", "parameters": {"profile": "x"}}}
    (folder / f"{name}.ipynb").write_text(json.dumps({"metadata": meta, "cells": []}))


def test_status_sections(smoke_suite, tmp_path):
    d = status.load(smoke_parameters("status"), chapters_dir=tmp_path)
    g = page_glued(status, "status", d)
    assert set(g) == book.glue_names(page("status"))
    assert g["profile"] == "smoke" and len(g["manifest"]) == 16 and g["built"].endswith(" UTC")
    names = ["smoke", *profiles.load("smoke").raw["companions"].values()]
    t = status.suites_table(d)
    assert list(t.index) == names and t.loc["smoke", "checkpoints"] > 0
    runs = [json.loads(f.read_text())["train_seconds"] for f in paths.suite_dir("smoke").glob("*/run.json")]
    assert t.loc["smoke", "training (min)"] == round(sum(runs) / 60, 1) and len(runs) > 0
    assert status.chapter_times(d) == "no executed chapters yet"
    executed(tmp_path, "01_suite", 12.34)
    executed(tmp_path, "status", 1.0)  # the previous build's own page: left out
    times = status.chapter_times(d)
    assert list(times.index) == ["01_suite"] and times.loc["01_suite", "seconds"] == 12.3
    assert "packages" not in status.environment_table(d).index and len(status.packages_table(d)) > 0
    assert "requirements.lock" in status.lock_note(d).data


def test_status_benchmarks_say_why_there_are_none(smoke_suite, tmp_path, capsys):
    d = status.load(smoke_parameters("status"), chapters_dir=tmp_path)
    assert status.benchmarks(d, tmp_path / "absent.json") == [status.NO_BENCH]
    (tmp_path / "old.json").write_text(json.dumps({"kl": "no longer a table"}))
    assert status.benchmarks(d, tmp_path / "old.json") == [status.OLD_BENCH]
    status.emit([status.NO_BENCH])
    assert capsys.readouterr().out == status.NO_BENCH + "\n"


# ---------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------


def test_data_sections(smoke_suite):
    d = data.load(smoke_parameters("data"))
    g = page_glued(data, "data", d)
    assert set(g) == book.glue_names(page("data"))
    docs = {s: corpus.load(d.prof.corpus, s) for s in corpus.SPLITS}
    assert g["n_docs"] == sum(map(len, docs.values())) and g["n_probe_docs"] == len(docs["probe"])
    assert set(g["tab_splits"].index) == set(corpus.SPLITS)
    assert g["n_probe_genres"] == len({doc.genre for doc in docs["probe"]}) <= g["n_genres"]
    tdir = tokenizer.tokenizer_dir(d.prof.corpus, d.prof.vocab_size)
    assert all((tdir / f).exists() for f in g["tab_tokenizer"].index) and g["vocab"] == d.prof.vocab_size


# ---------------------------------------------------------------------------------------------------------
# 02a_annealing: synthetic arms of the smoke profiles, with known answers
# ---------------------------------------------------------------------------------------------------------

SEEDS = (1, 2, 3)


def kl_of(arm: str, step: int, size_factor: float) -> float:
    """All arms 0.01 through the warmup (step 8); constant rises to the end; cosine rises more slowly, peaks at 48
    and falls by 30 % × size_factor; wsd is constant until 80, then falls by 20 %."""
    if step <= 8:
        return 0.01
    rising = 0.01 + 0.001 * (step - 8)
    if arm == "constant" or (arm == "wsd" and step <= 80):
        return rising
    if arm == "wsd":
        return rising * (1 - 0.2 * (step - 80) / 16)
    slower = 0.01 + 0.0009 * (min(step, 48) - 8)
    return slower if step <= 48 else slower * (1 - 0.3 * size_factor * (step - 48) / 48)


CE = {"cosine": 5.0, "constant": 5.2, "wsd": 5.05}  # final mean cross-entropy per arm


def synthetic(main: profiles.Profile, anneal: profiles.Profile) -> A.AnnealData:
    specs = A.arm_specs(main, anneal)
    steps = sorted(set(main.checkpoint_steps()) | set(anneal.checkpoint_steps("wsd")))
    sizes = {"xs": 0.5, "s": 1.0}
    pairs = [(i, j) for i in SEEDS for j in SEEDS if i != j]
    cur, uni, ce = [], [], []
    for sp in specs:
        for z, f in sizes.items():
            for st in steps:
                kl = kl_of(sp.label, st, f)
                cur += [(sp.label, z, st, i, j, kl * (1 + 0.01 * k)) for k, (i, j) in enumerate(pairs)]
                uni += [(sp.label, z, st, s, abs(np.log2(st + 1) - 4) + 1.0) for s in SEEDS]
                ce += [(sp.label, z, st, s, CE[sp.label] + 1.0 / (st + 1)) for s in SEEDS]
    frame = lambda rows, cols: pd.DataFrame(rows, columns=["arm", "size", "step", *cols])  # noqa: E731
    return A.AnnealData(
        main,
        anneal,
        specs,
        list(sizes),
        A.decay_start(specs),
        frame(cur, ["seed_i", "seed_j", "kl"]),
        frame(uni, ["seed", "kl_unigram"]),
        frame(ce, ["seed", "surprisal"]),
    )


@pytest.fixture(scope="module")
def anneal_glued(home, tmp_path_factory):
    raw = profiles.load("smoke-anneal").raw
    f = tmp_path_factory.mktemp("anneal") / "chapter-test-anneal.yaml"  # its own suite folder for run.json
    f.write_text(yaml.safe_dump(raw))
    anneal = profiles.load(f)
    root = paths.suite_dir(anneal.name)
    for run, seconds in (("constant-s-seed1", 90.0), ("wsd-s-seed1", 30.0)):  # the training time: their sum
        (root / run).mkdir(parents=True, exist_ok=True)
        (root / run / "run.json").write_text(json.dumps({"steps": 96, "train_seconds": seconds}))
    dat = synthetic(profiles.load("smoke"), anneal)
    d = annealing.AnnealingData(dat, A.summarise(dat, rel_tol=0.05), A.mean_curves(dat.curves), 0.05)
    return d, page_glued(annealing, "02a_annealing", d)


def test_annealing_sections_glue_what_the_page_uses(anneal_glued):
    g = anneal_glued[1]
    extra = book.unused_glue(page("02a_annealing"), g)  # per-arm numbers the prose does not quote
    assert all(re.fullmatch(r"(cosine|constant|wsd)_\w+", k) for k in extra), extra


def test_annealing_numbers_follow_the_synthetic_arms(anneal_glued):
    d, g = anneal_glued
    assert (g["n_steps"], g["decay_start"], g["decay_steps"], g["warmup"]) == (96, 80, 16, 8)
    assert g["same_until"] == 8 and g["same_tol"] == "1e-9"  # the arms part after the warmup
    assert g["train_minutes"] == pytest.approx(2.0) and g["n_runs"] == 2 * 2 * 3
    assert g["wsd_trained_steps"] == 16 * 2 * 3 and g["n_pairs"] == 6
    assert g["early_n_sizes"] == 2 and g["early_n_arm_sizes"] == 6 and g["early_unigram_lo"] == 16
    assert g["focus"] == "s"  # its cosine arm falls 30 %, that of xs 15 %
    assert g["cosine_peak_step"] == 48 and g["constant_peak_step"] == 96
    assert (g["cosine_reconverges"], g["constant_reconverges"]) == ("does", "does not")
    arms = d.summary["s"]["arms"]
    assert [g[f"{a}_reconverges"] == ("does" if arms[a]["reconverges"] else "does not") for a in arms] == [True] * 3
    assert g["constant_pairs_reconverge"] == 0 and g["cosine_pairs_reconverge"] == 6
    assert g["cosine_final_kl"] == pytest.approx(0.046 * 0.7 * np.mean([1 + 0.01 * k for k in range(6)]))
    assert g["cmp_const_fall_window"].startswith("+") and g["cmp_cos_fall_window"].startswith("−")
    assert (g["cosine_ce"], g["constant_ce"]) == (pytest.approx(CE["cosine"] + 1 / 97), pytest.approx(5.2 + 1 / 97))
    assert (g["ce_word"], g["kl_word"], g["decay_ce_effect"], g["wsd_word"]) == (
        "higher",
        "further apart",
        "lowers",
        "above",
    )
    assert "follows the learning rate" in g["lesson"]
    assert g["verdicts"].data.count("\n- ") == 1 and g["verdicts"].data.startswith("- ")  # one line per size
    assert g["tab_annealing"].shape[1] == 2 * 3  # one column per size and arm


def test_annealing_on_the_smoke_anneal_suite_or_without_it(smoke_results):
    """Trained (the book's build trains it): every section runs on the real arms. Absent: the page stops at load,
    naming the suite to train, as the book does without it."""
    P = smoke_parameters("02a_annealing")
    if not paths.suite_dir("smoke-anneal").exists():
        with pytest.raises(LmconvError, match="'smoke-anneal' suite has not been trained"):
            annealing.load(P)
        return
    d = annealing.load(P)
    g = page_glued(annealing, "02a_annealing", d)
    assert book.glue_names(page("02a_annealing")) <= set(g)
    assert set(d.summary) == set(d.data.sizes) == {"xs", "s"} and g["n_runs"] == 2 * 2 * 3
