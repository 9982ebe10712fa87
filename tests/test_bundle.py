"""Tables mode (``LMCONV_TABLES``): a release bundle's tables stand in for a trained suite, checked against their
checksums, and nothing that needs the models runs quietly."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from lmconv import analysis, bootstrap, io, paths
from lmconv.analysis import engine
from lmconv.book import release
from lmconv.checkpoints import bundle as bundle_mod
from lmconv.checkpoints import suites
from lmconv.errors import LmconvError
from lmconv.training import train


@pytest.fixture(scope="module")
def recorded(smoke_suite, tmp_path_factory):
    """The smoke suite analysed here (the reference tables mode must reproduce), with the request
    ``analysis.run`` recorded in a ledger, as it does while the book executes a chapter."""
    ledger = tmp_path_factory.mktemp("ledger") / "analyses.json"
    os.environ[paths.LEDGER_ENV] = str(ledger)
    try:
        res = analysis.run("smoke", progress=False)
    finally:
        del os.environ[paths.LEDGER_ENV]
    (request,) = io.read_json(ledger)
    return res, request


@pytest.fixture(scope="module")
def local(recorded):
    return recorded[0]


@pytest.fixture(scope="module")
def bundle(recorded, tmp_path_factory):
    """A bundle of the smoke suite holding the one analysis ``local`` ran, as ``make release`` writes it."""
    root = tmp_path_factory.mktemp("bundle")
    release.copy_suite(paths.suite_dir("smoke"), root / "tables" / "smoke")
    release.write_analysis(root, recorded[1], ["02_kl_convergence"])
    release.write_sums(root)
    return root


@pytest.fixture
def tables_mode(bundle, monkeypatch):
    monkeypatch.setenv(paths.TABLES_ENV, str(bundle))
    bundle_mod._open.cache_clear()
    yield bundle
    bundle_mod._open.cache_clear()


def test_the_bundle_holds_no_weights(bundle):
    assert not list(bundle.rglob("*.safetensors"))
    assert list((bundle / "tables" / "smoke" / bundle_mod.TOKENIZER).glob("tokenizer*.json"))


def test_tables_mode_returns_the_tables_the_engine_computed(local, tables_mode):
    got = analysis.run("smoke", progress=False)
    assert isinstance(got.suite.source, bundle_mod.BundleSource)
    assert (got.sizes, got.seeds, got.steps) == (local.sizes, local.seeds, local.steps)
    for name in engine.TABLES:
        pd.testing.assert_frame_equal(got.tables[name], local.tables[name], check_dtype=False)
    pd.testing.assert_frame_equal(got.targets, local.targets)
    # the logs the chapters read come from the bundle's copy of the runs, equal to the suite's own
    for a, b in zip(got.suite.train_logs(), local.suite.train_logs(), strict=True):
        pd.testing.assert_frame_equal(a, b)


def test_tables_mode_never_loads_a_model_nor_trains(local, tables_mode, smoke_profile):
    src = analysis.Suite.open("smoke").source
    with pytest.raises(LmconvError, match="tables, not its checkpoints") as e:
        src.load_model(suites.CheckpointRef(local.family, local.sizes[0], local.seeds[0], local.steps[-1]))
    assert paths.TABLES_ENV in e.value.fix
    with pytest.raises(LmconvError, match="trains nothing"):
        train.train_profile(smoke_profile, progress=False)


def test_an_analysis_the_book_did_not_run_names_what_the_bundle_holds(local, tables_mode):
    with pytest.raises(LmconvError, match="holds no analysis") as e:
        analysis.run("smoke", seeds=local.seeds[:2], progress=False)
    assert f"seeds {local.seeds}" in str(e.value) and "defaults" in e.value.fix


def test_a_suite_the_bundle_lacks_is_named(tables_mode):
    with pytest.raises(LmconvError, match="holds no tables of the 'default' suite") as e:
        analysis.Suite.open("default")
    assert "smoke" in str(e.value)


def test_an_altered_table_is_refused(local, bundle, tmp_path, monkeypatch):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    table = next(copy.rglob("pairs.parquet"))
    data = bytearray(table.read_bytes())
    data[len(data) // 2] ^= 0xFF
    table.write_bytes(bytes(data))
    monkeypatch.setenv(paths.TABLES_ENV, str(copy))
    bundle_mod._open.cache_clear()
    try:
        with pytest.raises(LmconvError, match="does not match its sha256") as e:
            analysis.run("smoke", progress=False)
        assert "SHA256SUMS" in e.value.fix
    finally:
        bundle_mod._open.cache_clear()


def test_a_folder_that_is_no_bundle_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.TABLES_ENV, str(tmp_path))
    bundle_mod._open.cache_clear()
    try:
        with pytest.raises(LmconvError, match="is not a release bundle"):
            analysis.Suite.open("smoke")
    finally:
        bundle_mod._open.cache_clear()


def test_the_run_yourself_profile(tmp_path, monkeypatch, tables_mode):
    """In tables mode the cell trains nothing; outside a checkout without the suite it trains the classroom
    profile (or LMCONV_RUN_PROFILE's)."""
    trained = []
    monkeypatch.setattr(train, "train_profile", lambda prof, **kw: trained.append(prof.name))
    monkeypatch.setattr(paths, "ROOT", tmp_path)  # no Makefile: outside a checkout
    assert bootstrap.ensure_suite("default") == "default" and trained == []
    monkeypatch.delenv(paths.TABLES_ENV)
    monkeypatch.setattr(bootstrap, "ensure_corpus", lambda: None)
    monkeypatch.setenv("LMCONV_HOME", str(tmp_path / "home"))
    assert bootstrap.ensure_suite("default") == bootstrap.RUN_PROFILE == "classroom" and trained == ["classroom"]
    monkeypatch.setenv(bootstrap.RUN_PROFILE_ENV, "smoke")
    trained.clear()
    assert bootstrap.ensure_suite("default") == "smoke"
    assert trained[0] == "smoke"


def test_the_classroom_suite_is_the_default_one_made_smaller():
    """The classroom profile's runs have the default suite's settings (so its phases are the default's phases of
    those sizes), and it names no companion to train outside a checkout."""
    from lmconv.training import profiles

    cls, default = profiles.load("classroom"), profiles.load("default")
    assert set(cls.sizes) < set(default.sizes) and set(cls.seeds) < set(default.seeds) and len(cls.seeds) >= 3
    assert all(cls.sizes[s] == default.sizes[s] for s in cls.sizes)
    assert cls.arm(None) == default.arm(None)
    for key in ("corpus", "vocab_size", "context", "checkpoints", "probe"):
        assert cls.raw[key] == default.raw[key], key
    assert not cls.raw.get("companions")


def test_the_exercise_that_loads_a_checkpoint_says_why_it_cannot_in_tables_mode(tables_mode):
    from lmconv.chapters import exercises

    got = exercises.per_by_hand(analysis.run("smoke", progress=False))
    assert "release bundle does not hold" in got["by hand"]


def test_lmconv_chapter_refuses_a_folder_that_is_no_bundle_before_it_starts(tmp_path):
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "lmconv", "chapter", "02_kl_convergence", "--tables", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "is not a release bundle" in r.stderr and "[chapter]" not in r.stdout
    assert not list(tmp_path.iterdir())  # nothing written
