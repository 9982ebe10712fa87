"""Every location of the project, defined once.

``LMCONV_HOME`` moves the data home (corpus, trained suites, metric caches) anywhere; everything else is
relative to the repository root. ``LMCONV_TABLES`` (tables mode, :mod:`lmconv.checkpoints.bundle`) reads the suites
from a release bundle's tables instead of the data home.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROFILES = Path(__file__).resolve().parent / "training" / "profiles"
NOTEBOOKS = ROOT / "notebooks"
BOOK = ROOT / "book"
BOOK_CONFIG = ROOT / "_config.yml"
NODE_MODULES = ROOT / "node_modules"
NPM_LOCK = ROOT / "package-lock.json"
# Set while a chapter executes: the JSON file where lmconv.analysis.run records the analyses the chapter ran.
LEDGER_ENV = "LMCONV_LEDGER"
# Tables mode: the folder of a release bundle (``make release``) whose tables the chapters read instead of suites.
TABLES_ENV = "LMCONV_TABLES"


def data_home() -> Path:
    """The data home: ``$LMCONV_HOME`` if set, else ``<repo>/_data``."""
    env = os.environ.get("LMCONV_HOME")
    return Path(env).expanduser().resolve() if env else ROOT / "_data"


def corpus_dir() -> Path:
    return data_home() / "corpus"


def suites_dir() -> Path:
    return data_home() / "suites"


def tables_bundle() -> Path | None:
    """The release bundle of tables mode (``$LMCONV_TABLES``), or None when the suites are trained here."""
    env = os.environ.get(TABLES_ENV)
    return Path(env).expanduser().resolve() if env else None


def suite_dir(profile: str) -> Path:
    """A suite's folder: in the data home, or in tables mode the bundle's copy (logs and checksums, no weights)."""
    bundle = tables_bundle()
    return bundle / "tables" / profile / "runs" if bundle else suites_dir() / profile


def tokenizers_dir() -> Path:
    return data_home() / "tokenizers"


def cache_dir() -> Path:
    return data_home() / "cache"


def hub_cache_dir() -> Path:
    """Where a Hugging Face hub cache is looked for when the ``hub`` source is used."""
    env = os.environ.get("HF_HUB_CACHE")
    return Path(env) if env else data_home() / "hub"
