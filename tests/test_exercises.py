"""Exercises: every solution runs and is right, and no chapter's stub drifts from its solution."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmconv import book
from lmconv.chapters import exercises

ROOT = Path(__file__).resolve().parents[1]
EXERCISE = re.compile(r"```\{exercise-start\}\n:label: (?P<label>[\w-]+)\n```(?P<body>.*?)```\{exercise-end\}", re.S)
STUB = re.compile(r"```python\n(?P<code>.*?)```", re.S)


def stubs() -> list[tuple[str, str, str]]:
    """(notebook, exercise label, one stub function's code) for every function stub of every exercise."""
    out = []
    for nb in sorted((ROOT / "notebooks").glob("*.md")):
        for m in EXERCISE.finditer(nb.read_text()):
            for s in STUB.finditer(m["body"]):
                for chunk in re.split(r"\n(?=def )", s["code"]):
                    if chunk.strip():
                        out.append((nb.name, m["label"], chunk))
    return out


def test_every_chapter_exercise_has_a_stub():
    assert stubs(), "no exercises found"


@pytest.mark.parametrize(("notebook", "label", "code"), stubs(), ids=[f"{s[1]}-{i}" for i, s in enumerate(stubs())])
def test_stub_matches_its_solution(notebook, label, code):
    """Each stub names a solution in lmconv.chapters.exercises; its non-``...`` lines appear, in order, in that
    solution."""
    m = re.search(r"def (\w+)\((.*?)\):", code)
    assert m, f"{label} in {notebook}: the stub defines no function"
    func = getattr(exercises, m[1], None)
    assert func is not None, f"{label}: lmconv.chapters.exercises has no {m[1]}"
    solution = [ln.strip() for ln in inspect.getsource(func).splitlines()]
    solution = [ln for ln in solution if ln and not ln.startswith(('"""', "#"))]
    sig = inspect.signature(func)
    assert [p.strip().split(":")[0].split("=")[0] for p in m[2].split(",") if p.strip()] == list(sig.parameters), (
        f"{label}: the stub's parameters differ from the solution's"
    )
    pos = 0
    for line in (ln.strip() for ln in code.splitlines()):
        if not line or line == "..." or line.startswith("def "):
            continue
        try:
            pos = solution.index(line, pos) + 1
        except ValueError:
            raise AssertionError(f"{label} in {notebook}: stub line not in the solution (in order): {line!r}") from None


def test_first_step_below_on_a_known_log():
    log = pd.DataFrame(
        {
            "size": ["a"] * 6 + ["b"] * 6,
            "seed": [1, 2] * 6,
            "step": [0, 0, 10, 10, 20, 20] * 2,
            "val_loss": [9, 9, 7, 6, 5, 5, 9, 9, 8, 8, 6.4, 6.6],
        }
    )
    got = exercises.first_step_below(log, 6.6)
    assert got["a"] == 10 and got["b"] == 20


def test_unigram_entropy_known_values():
    assert exercises.unigram_entropy(np.array([5, 5, 0])) == pytest.approx(np.log(2))
    assert exercises.unigram_entropy(np.array([1, 1, 1, 1])) == pytest.approx(np.log(4))


def test_solutions_run_on_the_smoke_suite(smoke_suite):
    from lmconv.data import tokenizer

    prof = smoke_suite.profile
    _, val = smoke_suite.train_logs()
    h1 = exercises.unigram_entropy(tokenizer.token_frequencies(prof.corpus, prof.vocab_size))
    assert 0 < h1 < np.log(prof.vocab_size)
    first = exercises.first_step_below(val, h1)
    for size, step in first.items():  # at that step the mean is below, at the step before it is not
        mean = val[val["size"] == size].groupby("step").val_loss.mean()
        assert mean[step] < h1 and (mean[mean.index < step] >= h1).all()


def _pairs_table() -> pd.DataFrame:
    rows = []
    for size, scale in (("a", 1.0), ("b", 2.0)):
        for step, kl_level in ((0, 1.0), (10, 3.0), (20, 2.0)):
            for i in (1, 2, 3):
                for j in (1, 2, 3):
                    if i != j:
                        for pos in range(4):
                            rows.append((size, step, i, j, pos, scale * kl_level * (1 + 0.1 * (i > j)) + 0.01 * pos))
    return pd.DataFrame(rows, columns=["size", "step", "seed_i", "seed_j", "pos", "kl"])


def test_expected_convergence_and_reconvergence_on_a_known_table():
    pairs = _pairs_table()
    e = exercises.expected_convergence(pairs, 10)
    assert e["a"] == pytest.approx(-(3.0 * 1.05 + 0.015)) and e["b"] < e["a"]
    r = exercises.reconvergence(pairs)
    assert r.loc["a", "peak_step"] == 10 and r.loc["a", "fall"] == pytest.approx(
        1 - (2 * 1.05 + 0.015) / (3 * 1.05 + 0.015)
    )


def test_kl_asymmetry_is_zero_for_a_symmetric_table():
    pairs = _pairs_table()
    sym = pairs.assign(kl=pairs.kl.where(pairs.seed_i < pairs.seed_j))
    sym["kl"] = sym.groupby(["size", "step", "pos"]).kl.transform("max")
    assert (exercises.kl_asymmetry(sym, 10) == 0).all()
    assert (exercises.kl_asymmetry(pairs, 10) > 0).all()


def test_frequency_rank_correlation_sign():
    pairs = _pairs_table()
    targets = pd.DataFrame({"pos": range(4), "frequency": [400, 300, 200, 100]})  # KL grows with pos
    assert exercises.frequency_rank_correlation(pairs, targets, 10).tolist() == pytest.approx([-1.0, -1.0])


def test_cka_rank_and_spectral_change_solutions_agree_with_the_library():
    from lmconv.metrics import cka, rank, spectrum

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 5)), rng.normal(size=(60, 7))
    assert exercises.linear_cka(x, y) == pytest.approx(cka.cka(x, y))
    s = rng.uniform(0.1, 3, size=12)
    assert exercises.proportional_effective_rank(s, 8) == pytest.approx(rank.proportional_effective_rank(s, 8))
    t = rng.uniform(0.1, 3, size=12)
    assert exercises.spectral_change(s, t) == pytest.approx(spectrum.delta_sigma(s, t))
    assert exercises.spectral_change(s, 5 * s) == pytest.approx(0)


def test_econv_by_group_on_a_known_table():
    pairs = _pairs_table()
    groups = np.array(["function", "function", "content", "content"])
    got = exercises.econv_by_group(pairs, groups, 10)
    assert got.loc["a", "function"] == pytest.approx(-(3.0 * 1.05 + 0.005))
    assert (got["function"] > got["content"]).all()  # the synthetic KL grows with the position


def test_final_loss_by_arm_on_a_known_log():
    log = pd.DataFrame(
        {
            "family": ["a", "a", "b", "b", "a", "b"],
            "seed": [1, 2, 1, 2, 1, 1],
            "step": [10, 10, 10, 10, 5, 5],
            "val_loss": [4.0, 5.0, 3.0, 3.5, 9.0, 1.0],
        }
    )
    got = exercises.final_loss_by_arm(log)
    assert list(got.index) == ["b", "a"] and got["a"] == pytest.approx(4.5)


# --- the course: every chapter's exercises, their shown solutions, and each solution on the smoke suite ----------

SOLUTION = re.compile(r"```\{solution-start\} (?P<label>[\w-]+)\n(?P<body>.*?)```\{solution-end\}", re.S)
PYOBJECT = re.compile(r"```\{literalinclude\} (?P<path>\S+)\n:pyobject: (?P<name>\w+)\n")
NUMBERED = sorted(p for p in (ROOT / "notebooks").glob("*.md") if re.match(r"\d\d", p.name))


def test_every_numbered_chapter_has_two_to_four_exercises():
    assert len(NUMBERED) == 12, [p.name for p in NUMBERED]
    counts = {nb.name: len(EXERCISE.findall(nb.read_text())) for nb in NUMBERED}
    assert all(2 <= n <= 4 for n in counts.values()), counts


@pytest.mark.parametrize("nb", NUMBERED, ids=[p.stem for p in NUMBERED])
def test_every_solution_answers_an_exercise_and_shows_its_code(nb):
    """Each ``{solution-start}`` names an exercise of its page and literalincludes, from the file the built page
    reaches (``lmconv.book.EXERCISES_INCLUDE``, a copy of the module the build writes), functions that exist in
    lmconv.chapters.exercises; each exercise has a
    solution; each page has a 'change one parameter' exercise that gives the make command to run."""
    text = nb.read_text()
    labels = [m["label"] for m in EXERCISE.finditer(text)]
    solutions = list(SOLUTION.finditer(text))
    assert sorted(s["label"] for s in solutions) == sorted(labels), f"{nb.name}: exercises and solutions differ"
    for s in solutions:
        shown = list(PYOBJECT.finditer(s["body"]))
        assert shown, f"{nb.name} {s['label']}: the solution shows no code (literalinclude)"
        for m in shown:
            assert m["path"] == book.EXERCISES_INCLUDE
            assert callable(getattr(exercises, m["name"], None)), f"{s['label']}: no exercises.{m['name']}"
        called = [m["name"] for m in shown if f"exercises.{m['name']}(" in s["body"]]
        assert called, f"{nb.name} {s['label']}: the solution cell runs none of the functions it shows"
    assert re.search(rf"make chapter NAME={nb.stem} ARGS='-p \w+ [^']+'", text), f"{nb.name}: no parameter exercise"


def load_chapter(name: str, module: str):
    import importlib

    from lmconv import book
    from lmconv.chapters import params

    ch = importlib.import_module(f"lmconv.chapters.{module}")
    return ch.load(params.from_namespace(book.page_parameters(ROOT / "notebooks" / f"{name}.md", profile="smoke")))


def test_loss_against_unigram_on_the_smoke_suite(smoke_suite):
    d = load_chapter("01_suite", "suite")
    t = exercises.loss_against_unigram(d)
    assert list(t.index) == list(d.prof.sizes)
    steps = d.arm.train.steps * d.tokens_per_step
    assert (t["tokens per parameter"] * t.parameters).round().eq(steps).all()
    for size, row in t.iterrows():  # brute force: the seed-mean curve, step by step
        mean = d.val_log[d.val_log["size"] == size].groupby("step").val_loss.mean()
        below = [s for s, v in mean.items() if v < row["unigram entropy"]]
        assert (row["first step below it"] == below[0]) if below else np.isnan(row["first step below it"])
        assert row["final val loss"] == pytest.approx(mean.iloc[-1])


def _flags_shrink(t: pd.DataFrame, low: float, high: float, cols: list[str]) -> None:
    """A wider band can hide a phase but never show one the narrower band missed."""
    a, b = t.loc[low], t.loc[high]
    for c in cols:
        assert not (b[c].astype(bool) & ~a[c].astype(bool)).any(), (c, a[c], b[c])


def test_phases_at_tolerance_on_the_smoke_suite(smoke_suite):
    d = load_chapter("02_kl_convergence", "kl_convergence")
    t = exercises.phases_at_tolerance(d, 0.3)
    mine = t.loc[d.P.rel_tol]
    for size, sp in d.spreads.items():  # at the chapter's own tolerance: the chapter's phases
        m = sp.mean_curve
        assert (mine.loc[size, "(iii) seen"], mine.loc[size, "end of (i)"]) == (m.has_divergence, m.uniform_end)
    _flags_shrink(t, d.P.rel_tol, 0.3, ["(iii) seen", "(iv) seen"])
    assert set(t.index.get_level_values("rel_tol")) == {d.P.rel_tol, 0.3}


@pytest.fixture(scope="module")
def anneal(smoke_suite):
    from lmconv.training import profiles, train

    train.train_profile(profiles.load(profiles.companion("smoke", "anneal")), progress=False)
    return load_chapter("02a_annealing", "annealing")


def test_anneal_at_tolerance_and_final_over_start(anneal):
    d = anneal
    t = exercises.anneal_at_tolerance(d, 0.3)
    for size, s in d.summary.items():
        for arm, a in s["arms"].items():
            assert t.loc[(d.rel_tol, size, arm), "reconverges"] == a["reconverges"]
    _flags_shrink(t, d.rel_tol, 0.3, ["reconverges"])
    r = exercises.final_over_start(d.data.curves)
    for (size, arm), value in r.items():  # brute force on one arm's rows
        c = d.data.curves[(d.data.curves["size"] == size) & (d.data.curves.arm == arm)]
        assert value == pytest.approx(c[c.step == c.step.max()].kl.mean() / c[c.step == c.step.min()].kl.mean())
    assert len(r) == len(d.summary) * len(d.data.specs)


@pytest.fixture(scope="module")
def sources(smoke_decoupled):
    return load_chapter("02b_seed_sources", "seed_sources")


def test_moments_at_tolerance_and_source_shares(sources):
    d = sources
    t = exercises.moments_at_tolerance(d, 0.3)
    for size, s in d.summary.items():
        for moment, step in s["moments"].items():
            assert t.loc[(d.rel_tol, size, moment), "step"] == step
            if moment != "peak":  # the first and the last checkpoint do not depend on the band
                assert t.loc[(0.3, size, moment), "step"] == step
                assert t.loc[(0.3, size, moment), "dominant source"] == s["attribution"][moment]["source"]
    curves = d.data.curves
    last = exercises.source_shares(curves, curves.step.max())
    for size, s in d.summary.items():
        share = s["attribution"]["end"]["share"]
        assert (last.loc[size, "data"], last.loc[size, "weight"]) == pytest.approx((share["data"], share["weight"]))
    first = exercises.source_shares(curves, curves.step.min())
    assert (first["data"] == 0).all()  # same initialisation, nothing trained yet: identical predictions


def test_extremes_at_on_the_smoke_suite(smoke_suite):
    d = load_chapter("03_what_converges_first", "what_converges_first")
    t = exercises.extremes_at(d, 4)
    assert set(t.index.get_level_values("kl_table_n")) == {d.P.kl_table_n, 4}
    assert (t.loc[4, "tokens"] <= 4).all() and (t.loc[4, "tokens"] <= t.loc[d.P.kl_table_n, "tokens"]).all()
    from lmconv.chapters import what_converges_first as ch

    ext = ch.extremes_table(d)
    for (size, group), row in t.loc[d.P.kl_table_n].iterrows():
        g = ext[(ext["size"] == size) & (ext["group"] == group)]
        assert row["median training count"] == pytest.approx(float(np.median(g.frequency)))


def test_function_word_lead_on_the_smoke_suite(smoke_suite):
    from lmconv.chapters import parts_of_speech as ch

    d = load_chapter("04_parts_of_speech", "parts_of_speech")
    t = exercises.function_word_lead(d, "context")
    assert set(t.index.get_level_values("tag_position")) == {"current", "context"}
    wc = ch.word_class_curves(d)
    for (pos, size), row in t.iterrows():
        fn = wc[(wc.position == pos) & (wc["size"] == size) & (wc.group == "function")].sort_values("step")
        assert row["function, final"] == pytest.approx(fn["value"].iloc[-1])
        assert 0 <= row["function ahead (share of steps)"] <= 1


def test_stabilisation_at_on_the_smoke_suite(smoke_suite):
    from lmconv.lenses import activations as act

    d = load_chapter("05_activations", "activations")
    t = exercises.stabilisation_at(d, 0.99)
    mine, strict = t.loc[d.P.cka_threshold], t.loc[0.99]
    assert (mine["stabilised"] == d.stab.groupby("size").stabilised.sum().loc[mine.index]).all()
    assert (strict["stabilised"] <= mine["stabilised"]).all() and (strict["units"] == mine["units"]).all()
    tight = act.stabilisation(d.cka, d.total_steps, threshold=0.99, min_run=d.P.cka_min_run).set_index(act.UNIT)
    loose = d.stab.set_index(act.UNIT)
    both = tight.stabilised & loose.stabilised  # a stricter threshold never stabilises a unit earlier
    assert (tight.step[both] >= loose.step[both]).all()


def test_per_by_hand_and_per_at_v_slice_on_the_smoke_suite(smoke_suite):
    d = load_chapter("06_effective_rank", "effective_rank")
    row = exercises.per_by_hand(d.res)
    assert row["by hand"] == pytest.approx(row["engine"], rel=1e-4)
    t = exercises.per_at_v_slice(d, "faithful")
    split, faithful = t.loc["split"], t.loc["faithful"]
    mlp = split.index.get_level_values("circuit") == "mlp"
    assert faithful.per[mlp].to_numpy() == pytest.approx(split.per[mlp].to_numpy())  # V does not enter the MLP


def test_sosd_at_window_on_the_smoke_suites(smoke_suite, smoke_sweep):
    d = load_chapter("07_spectral_stability", "spectral_stability")
    t = exercises.sosd_at_window(d.rec.curves, d.rec.val_log, d.P, 11)
    ev = d.rec.events
    mine = t.loc[d.P.sosd_window]
    for (family, size), row in mine.iterrows():
        g = ev[(ev.family == family) & (ev["size"] == size)]
        assert row["t_S found"] == g.t_S.count() and row["runs"] == len(g)
    assert t.loc[11, "median t_L"].equals(mine["median t_L"])  # the window smooths ΔΣ, not the loss
    s = load_chapter("08_schedules_optimizers", "schedules_optimizers")
    t8 = exercises.sosd_at_window(s.curves, s.val_log, s.P, 11)
    assert set(t8.index.get_level_values("family")) == set(s.arms)
    assert t8.loc[s.P.sosd_window, "t_S found"].sum() == s.events.t_S.count()


def test_aligned_at_and_event_gap_on_the_smoke_suite(smoke_suite):
    d = load_chapter("09_three_lenses", "three_lenses")
    t = exercises.aligned_at(d, 0.6)
    assert (t.loc[0.6, "sizes_aligned"] >= t.loc[d.P.align_tol, "sizes_aligned"]).all()
    assert (t.loc[0.6, "sizes_aligned"] <= t.loc[0.6, "sizes_measured"]).all()
    for _, g in d.gap_table.iterrows():
        got = exercises.event_gap(d.summary, g["size"], g.a, g.b)
        assert (got == pytest.approx(g.gap_decades)) if np.isfinite(g.gap_decades) else np.isnan(got)


def test_event_gap_on_a_known_summary():
    summary = pd.DataFrame({"size": ["a", "a", "a"], "event": ["x", "y", "z"], "median": [10.0, 1000.0, np.nan]})
    assert exercises.event_gap(summary, "a", "x", "y") == pytest.approx(2.0)
    assert exercises.event_gap(summary, "a", "y", "x") == pytest.approx(-2.0)
    assert np.isnan(exercises.event_gap(summary, "a", "x", "z"))


def test_source_shares_and_final_over_start_on_known_tables():
    curves = pd.DataFrame(
        {
            "size": ["s"] * 6,
            "kind": ["both", "data", "weight"] * 2,
            "arm": ["both", "data", "weight"] * 2,
            "step": [0, 0, 0, 5, 5, 5],
            "kl": [2.0, 1.0, 0.5, 4.0, 1.0, 3.0],
        }
    )
    got = exercises.source_shares(curves, 5)
    assert (got.loc["s", "data"], got.loc["s", "weight"]) == pytest.approx((0.25, 0.75))
    ratio = exercises.final_over_start(curves)
    assert ratio[("s", "weight")] == pytest.approx(6.0) and ratio[("s", "both")] == pytest.approx(2.0)


# --- student notebooks ---------------------------------------------------------------------------------------------


def test_student_notebooks_keep_every_exercise_and_no_solution(tmp_path):
    from lmconv.book import student

    written = student.write(tmp_path)
    assert {p.name for p in written} == {f"{p.stem}.ipynb" for p in (ROOT / "notebooks").glob("*.md")}
    assert all(json.loads(p.read_text())["cells"] for p in written)  # notebooks Jupyter and Colab open
    solution_calls = re.compile(r"exercises\.(" + "|".join(n for n in dir(exercises) if not n.startswith("_")) + r")\(")
    for nb in NUMBERED:
        out = (tmp_path / nb.name).read_text()
        assert "solution-start" not in out and "solution-end" not in out, nb.name
        assert "exercises.py" not in out and ":pyobject:" not in out, nb.name
        assert not solution_calls.search(out), f"{nb.name} still calls a solution"
        assert [m["label"] for m in EXERCISE.finditer(out)] == [m["label"] for m in EXERCISE.finditer(nb.read_text())]
        assert [s["code"] for s in STUB.finditer(out)] == [s["code"] for s in STUB.finditer(nb.read_text())]
        import jupytext

        jupytext.reads(out, fmt="md:myst")  # still a notebook


def test_student_command_writes_the_folder(tmp_path):
    from lmconv import cli

    assert cli.main(["student", "--out", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "02_kl_convergence.md").exists()


@pytest.fixture(scope="module")
def ladder(smoke_ladder):
    return load_chapter("10_training_length", "training_length")


def test_early_shares_at_and_tokens_per_parameter(ladder):
    d = ladder
    t = exercises.early_shares_at(d, 0.5)
    for n in (r.length for r in d.lad.rungs if r.variant == "cooled"):
        judged = d.lad.verdicts[(n, "cooled")]["stab.early_20pct"].per_size
        for size, e in judged.items():  # the chapter's threshold gives the judge's own shares back
            assert t.loc[(d.P.cka_threshold, size, n), "share"] == pytest.approx(np.mean(e.units))
            assert t.loc[(0.5, size, n), "share"] >= t.loc[(d.P.cka_threshold, size, n), "share"]  # looser: more
    reg = d.lad.regime.set_index(["size", "length"])
    from lmconv.checkpoints import summaries

    for size in d.lad.sizes:
        s, arm = d.prof.size(size), d.prof.arm("cool-96").train
        n_params = summaries.parameter_count(s.hidden, s.layers, d.prof.vocab_size)[0]
        got = exercises.tokens_per_parameter(96, arm.batch_size, d.prof.context, n_params)
        assert got == pytest.approx(reg.loc[(size, 96), "tokens_per_parameter"])
