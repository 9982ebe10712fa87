"""Shared fixtures: one data home for the whole session, holding the smoke suite trained once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HOME = Path(os.environ.get("LMCONV_TEST_HOME") or tempfile.mkdtemp(prefix="lmconv-test-"))
if worker := os.environ.get("PYTEST_XDIST_WORKER"):  # make test runs two workers: each trains in its own home
    HOME = HOME / worker
    HOME.mkdir(parents=True, exist_ok=True)
os.environ["LMCONV_HOME"] = str(HOME)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def home() -> Path:
    return HOME


@pytest.fixture(scope="session")
def smoke_profile():
    from lmconv.training import profiles

    return profiles.load("smoke")


@pytest.fixture(scope="session")
def smoke_suite(smoke_profile):
    """The smoke profile's suite, trained once per session (about 15 s)."""
    from lmconv import analysis
    from lmconv.training import train

    train.train_profile(smoke_profile, progress=False)
    return analysis.Suite.open(smoke_profile)


@pytest.fixture(scope="session")
def smoke_sweep(smoke_profile):
    """The smoke profile's sweep companion (``smoke-sweep``, chapter 8's suite), trained once per session."""
    from lmconv.training import profiles, train

    sweep = profiles.load(profiles.companion(smoke_profile.name, "sweep"))
    train.train_profile(sweep, progress=False)
    return sweep


@pytest.fixture(scope="session")
def smoke_decoupled(smoke_profile):
    """The smoke profile's decoupled companion (``smoke-decoupled``, section 2b's suite), trained once per session."""
    from lmconv.training import profiles, train

    decoupled = profiles.load(profiles.companion(smoke_profile.name, "decoupled"))
    train.train_profile(decoupled, progress=False)
    return decoupled


@pytest.fixture(scope="session")
def smoke_ladder(smoke_profile):
    """The smoke profile's ladder companion (``smoke-ladder``, chapter 10's suite), trained once per session."""
    from lmconv.training import profiles, train

    ladder = profiles.load(profiles.companion(smoke_profile.name, "ladder"))
    train.train_profile(ladder, progress=False)
    return ladder


@pytest.fixture(scope="session")
def smoke_precision(smoke_profile):
    """The smoke profile's precision companion (``smoke-precision``: size s in bf16, the methods page's twin)."""
    from lmconv.training import profiles, train

    twin = profiles.load(profiles.companion(smoke_profile.name, "precision"))
    train.train_profile(twin, progress=False)
    return twin


@pytest.fixture(scope="session")
def smoke_results(smoke_suite):
    from lmconv import analysis

    return analysis.run("smoke", progress=False)


ROOT = Path(__file__).resolve().parents[1]


def netless(cmd: list[str]) -> list[str]:
    """Run ``cmd`` in a network namespace with only loopback (kernels talk over 127.0.0.1)."""
    if shutil.which("unshare") and os.geteuid() == 0:
        probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
        if probe.returncode == 0:
            return ["unshare", "-n", "sh", "-c", 'ip link set lo up 2>/dev/null; exec "$@"', "sh", *cmd]
    return cmd


@pytest.fixture(scope="session")
def built_book(smoke_suite, smoke_sweep, smoke_decoupled, smoke_ladder, smoke_precision, tmp_path_factory) -> Path:
    """The whole book built from the smoke suite, with the network cut, in a copy of book/ (the build finds the
    sweep trained and trains only what is still missing)."""
    book = tmp_path_factory.mktemp("book") / "book"
    shutil.copytree(ROOT / "book", book, ignore=shutil.ignore_patterns("_build", "chapters", "_generated"))
    r = subprocess.run(
        netless([sys.executable, "-m", "lmconv", "book", "--profile", "smoke", "--book-dir", str(book)]),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=os.environ,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return book


BOOK_FILE = "test_book.py"  # the one file of tests that read the built smoke book


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects (make quicktest)
def pytest_collection_modifyitems(config, items) -> None:
    """A test of the built book is slow, and lives in test_book.py: make test distributes whole files to its two
    xdist workers (``--dist loadfile``), so the book is built once. (``--dist loadgroup`` with an
    ``xdist_group`` mark would allow other files, but it silently stops grouping on pytest 9.2:
    pytest-dev/pytest-xdist#1386.)"""
    for item in items:
        if "built_book" in getattr(item, "fixturenames", ()):
            if item.path.name != BOOK_FILE:
                raise pytest.UsageError(f"{item.nodeid} uses built_book: move it to tests/{BOOK_FILE}")
            item.add_marker(pytest.mark.slow)
