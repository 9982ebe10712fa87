"""Lay out local checkpoints as a Hugging Face hub cache (``models--{org}--{name}/refs|snapshots``).

The tests build one from a tiny local suite and load it through the real hub code with ``HF_HUB_OFFLINE=1``;
readers can use it to serve their own suite to tools that only speak hub names.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from ..io import disk_errors, write_text
from .suites import CheckpointRef, LocalSource, format_hub_repo


def repo_folder(cache: Path, repo_id: str) -> Path:
    return Path(cache) / ("models--" + repo_id.replace("/", "--"))


def add_checkpoint(cache: Path, source: LocalSource, ref: CheckpointRef, repo_id: str, main: bool = False) -> Path:
    """Copy one local checkpoint into ``cache`` as revision ``step{N}`` of ``repo_id`` (and ``main`` if asked)."""
    src = source.path(ref)
    commit = hashlib.sha1((src / "checksums.json").read_bytes()).hexdigest()
    repo = repo_folder(cache, repo_id)
    snap = repo / "snapshots" / commit
    with disk_errors(snap):
        snap.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            if f.is_file() and f.name != "checksums.json":
                shutil.copy2(f, snap / f.name)
    write_text(repo / "refs" / ref.revision, commit)
    if main:
        write_text(repo / "refs" / "main", commit)
    return snap


def build(
    cache: Path,
    source: LocalSource,
    family: str,
    sizes: list[str],
    seeds: list[int],
    steps: list[int],
    org: str = "EleutherAI",
    hub_family: str = "pythia",
    seed_map: dict[int, int] | None = None,
    variant: str | None = None,
) -> list[str]:
    """Mirror a local suite as hub repos ``{org}/{hub_family}-{size}[-{variant}][-seed{k}]``; returns the repo
    ids. A size, seed or step the suite lacks stops it before anything is copied."""
    for size in sizes:
        for seed in seeds:
            for step in steps:
                source.check(CheckpointRef(family, size, seed, step))
    repos = []
    for size in sizes:
        for seed in seeds:
            hub_seed = (seed_map or {}).get(seed, seed)
            repo_id = format_hub_repo(size, hub_seed, org, hub_family, variant)
            for step in steps:
                add_checkpoint(cache, source, CheckpointRef(family, size, seed, step), repo_id, main=step == max(steps))
            repos.append(repo_id)
    return repos
