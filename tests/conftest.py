"""Shared fixtures: one data home for the whole session, holding the smoke suite trained once."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

HOME = Path(os.environ.get("LMCONV_TEST_HOME") or tempfile.mkdtemp(prefix="lmconv-test-"))
os.environ["LMCONV_HOME"] = str(HOME)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def home() -> Path:
    return HOME


@pytest.fixture(scope="session")
def smoke_profile():
    from lmconv import profiles

    return profiles.load("smoke")


@pytest.fixture(scope="session")
def smoke_suite(smoke_profile):
    """The smoke profile's suite, trained once per session (about 15 s)."""
    from lmconv import analysis, train

    train.train_profile(smoke_profile, progress=False)
    return analysis.Suite.open(smoke_profile)


@pytest.fixture(scope="session")
def smoke_results(smoke_suite):
    from lmconv import analysis

    return analysis.run("smoke", progress=False)
