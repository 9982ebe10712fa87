"""What the status page shows: the suites' manifests, the environment, and chapter execution times."""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

from .. import paths
from ..errors import LmconvError
from ..io import read_json, sha256_json


def suite_manifest(profile: str) -> dict[str, dict[str, str]]:
    """``{run/stepN: {file: sha256}}`` for every complete checkpoint of a trained suite."""
    root = paths.suite_dir(profile)
    manifest = {}
    for run in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for step_dir in sorted(run.glob("step*"), key=lambda p: int(p.name[4:]) if p.name[4:].isdigit() else -1):
            if (step_dir / "checksums.json").exists():
                manifest[f"{run.name}/{step_dir.name}"] = read_json(step_dir / "checksums.json")
    return manifest


def run_training_seconds(profile: str) -> dict[str, float]:
    """``{run: seconds}`` for every finished run of a suite: the ``train_seconds`` its ``run.json`` records."""
    from ..checkpoints.suites import RUN_FINISHED

    root = paths.suite_dir(profile)
    if not root.is_dir():
        raise LmconvError(f"suite folder {root} does not exist", f"train the suite: lmconv train --profile {profile}")
    return {p.parent.name: float(read_json(p)["train_seconds"]) for p in sorted(root.glob(f"*/{RUN_FINISHED}"))}


def training_seconds(profile: str) -> float:
    """A suite's training time, the one definition the book uses: the sum over its finished runs of the seconds
    each run's training loop took (``train_seconds`` in ``<run>/run.json``: from its first step, once the model
    is built or resumed, to its final checkpoint, evaluation, spectra and checkpoint writes included; resumed
    segments summed; a run branched from another counts from its branch point). Not counted: data preparation,
    building or resuming models, writing the final logs, unfinished runs. 0.0 when no run has finished."""
    return sum(run_training_seconds(profile).values())


def suite_status(profile: str) -> dict:
    """Runs and steps of a trained suite, and one hash over every checkpoint's checksums (the manifest hash)."""
    root = paths.suite_dir(profile)
    if not (root / "suite.json").exists():
        return {"profile": profile, "trained": False, "root": str(root)}
    manifest = suite_manifest(profile)
    runs: dict[str, dict] = {}
    for key in manifest:
        run, step = key.split("/")
        r = runs.setdefault(run, {"steps": 0, "last": 0})
        r["steps"] += 1
        r["last"] = max(r["last"], int(step[4:]))
    info = read_json(root / "suite.json")
    calls = read_json(root / "timing.json") if (root / "timing.json").exists() else {}
    run_seconds = run_training_seconds(profile)
    return {
        "profile": profile,
        "trained": True,
        "root": str(root),
        "profile_sha256": info["profile_sha256"],
        "manifest_sha256": sha256_json(manifest),
        "checkpoints": len(manifest),
        "runs": runs,
        "train_call_seconds": calls,  # wall time of each `lmconv train` call: a log, not the training time
        "run_train_seconds": run_seconds,  # per run, summed over resumed segments
        "training_seconds": training_seconds(profile),  # the suite's training time
    }


def environment() -> dict:
    lock = {}
    for line in (paths.ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, ver = line.split("==", 1)
            lock[name.lower()] = ver
    installed = {}
    for name in (
        "torch",
        "transformers",
        "tokenizers",
        "jupyter-book",
        "myst-nb",
        "papermill",
        "altair",
        "spacy",
        "numpy",
        "pandas",
        "pyarrow",
    ):
        try:
            installed[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed[name] = "missing"
    mismatched = {k: (v, lock.get(k)) for k, v in installed.items() if lock.get(k) and not v.startswith(lock[k])}
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "tcmalloc": "tcmalloc" in os.environ.get("LD_PRELOAD", ""),
        "packages": installed,
        "differs_from_lock": mismatched,
    }


def chapter_times(chapters_dir: Path) -> list[dict]:
    rows = []
    for nb in sorted(chapters_dir.glob("*.ipynb")):
        if nb.name.endswith(".failed.ipynb"):
            continue
        meta = json.loads(nb.read_text()).get("metadata", {})
        pm = meta.get("papermill", {})
        rows.append(
            {
                "chapter": nb.stem,
                "seconds": round(pm.get("duration") or 0.0, 1),
                "finished": (pm.get("end_time") or "")[:19],
                "parameters": json.dumps(pm.get("parameters", {})),
            }
        )
    return rows
