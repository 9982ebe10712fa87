"""A suite's training time: one definition (the sum of the runs' recorded ``train_seconds``), the one the
status page and the chapters print."""

from __future__ import annotations

import json

import pytest

from lmconv import paths
from lmconv.book import status
from lmconv.errors import LmconvError

RUNS = {"lmconv-s-seed1": 12.5, "lmconv-s-seed2": 7.25, "wsd-s-seed1": 0.5}  # a branched run counts its own part


def fake_suite(name: str) -> None:
    """A suite folder with three finished runs, one unfinished run and a training-call log that disagrees."""
    root = paths.suite_dir(name)
    for run, seconds in RUNS.items():
        (root / run).mkdir(parents=True, exist_ok=True)
        (root / run / "run.json").write_text(json.dumps({"steps": 96, "train_seconds": seconds}))
    (root / "lmconv-s-seed3" / "step16").mkdir(parents=True, exist_ok=True)  # unfinished: no run.json
    (root / "timing.json").write_text(json.dumps({"2026-01-01T00:00:00": 999.0}))
    (root / "suite.json").write_text(json.dumps({"profile_sha256": "0" * 64}))


def test_training_seconds_is_the_sum_over_finished_runs(home):
    fake_suite("timing-sum")
    assert status.run_training_seconds("timing-sum") == RUNS
    assert status.training_seconds("timing-sum") == pytest.approx(sum(RUNS.values()))  # not timing.json's 999


def test_suite_status_reports_the_same_training_time(home):
    fake_suite("timing-status")
    st = status.suite_status("timing-status")
    assert st["training_seconds"] == status.training_seconds("timing-status")
    assert st["run_train_seconds"] == RUNS and st["train_call_seconds"] == {"2026-01-01T00:00:00": 999.0}


def test_training_seconds_null_and_missing_suites(home):
    paths.suite_dir("timing-empty").mkdir(parents=True, exist_ok=True)
    assert status.training_seconds("timing-empty") == 0.0
    with pytest.raises(LmconvError, match="does not exist"):
        status.training_seconds("no-such-suite")


def test_smoke_suite_training_time_matches_its_runs(smoke_suite):
    root = paths.suite_dir("smoke")
    brute = sum(json.loads(p.read_text())["train_seconds"] for p in root.glob("*/run.json"))
    assert status.training_seconds("smoke") == pytest.approx(brute) and brute > 0
