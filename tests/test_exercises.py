"""Exercises: every solution runs and is right, and no chapter's stub drifts from its solution."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

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
