"""The "Status" page (``notebooks/status.md``): when and from what this copy of the book was built, how long
each chapter took, the software it ran on and the last benchmark results."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
from IPython.display import Markdown, display

from .. import book
from ..book import bench_report
from ..book import status as status_mod
from . import Glued, section

NO_BENCH = "make bench has not been run on this machine yet"
OLD_BENCH = "the last make bench results are from an older version of the benchmark: run make bench again"


@dataclass
class StatusData:
    """The profile, the status of its suite and of its companions, the environment and the chapters' folder."""

    profile: str
    suites: list[dict]
    env: dict
    chapters_dir: Path
    built: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))


def load(P: SimpleNamespace, chapters_dir: Path | None = None) -> StatusData:
    """Read the status of ``P.profile``'s suite and its companions; ``chapters_dir`` (default: the working
    directory, where the book executes its chapters) holds the executed notebooks."""
    names = [P.profile, *book.companion_profiles(P.profile)]
    suites = [status_mod.suite_status(n) for n in names]
    return StatusData(P.profile, suites, status_mod.environment(), chapters_dir or Path.cwd())


@section
def setup(d: StatusData) -> Glued:
    """The build time, the profile and the first digits of its suite's manifest hash."""
    return {
        "built": d.built.strftime("%Y-%m-%d %H:%M UTC"),
        "profile": d.profile,
        "manifest": d.suites[0].get("manifest_sha256", "not trained")[:16],
    }


def suites_table(d: StatusData) -> pd.DataFrame:
    """One row per suite: complete checkpoints, runs, manifest and profile hashes, training minutes
    (:func:`lmconv.book.status.training_seconds`; 0 for a suite not trained)."""
    return pd.DataFrame(
        [
            {
                "suite": s["profile"],
                "checkpoints": s.get("checkpoints", 0),
                "runs": len(s.get("runs", {})),
                "manifest": s.get("manifest_sha256", "")[:12],
                "profile hash": s.get("profile_sha256", "")[:12],
                "training (min)": round(s.get("training_seconds", 0.0) / 60, 1),
            }
            for s in d.suites
        ]
    ).set_index("suite")


def chapter_times(d: StatusData) -> pd.DataFrame | str:
    """Execution time of each executed chapter, or a sentence when there is none yet."""
    times = pd.DataFrame(status_mod.chapter_times(d.chapters_dir))
    # this page runs last, so its own executed notebook is still the previous build's: leave it out
    times = times[times.chapter != "status"] if len(times) else times
    return times.set_index("chapter") if len(times) else "no executed chapters yet"


def environment_table(d: StatusData) -> pd.DataFrame:
    """The machine and interpreter (every environment entry but the package lists)."""
    return pd.Series({k: v for k, v in d.env.items() if k not in ("packages", "differs_from_lock")}).to_frame("value")


def packages_table(d: StatusData) -> pd.DataFrame:
    """The installed version of every listed package."""
    return pd.Series(d.env["packages"]).to_frame("version")


def lock_note(d: StatusData) -> Markdown:
    """Which packages differ from ``requirements.lock``, in a sentence."""
    differs = d.env["differs_from_lock"]
    return Markdown(
        f"Packages that differ from `requirements.lock`: {differs}"
        if differs
        else "Every listed package matches `requirements.lock`."
    )


def benchmarks(d: StatusData, bench_file: Path | None = None) -> list[Any]:
    """What the page shows of the last ``make bench`` (default file: ``<data home>/bench/latest.json``): its
    summary table and gaps, or a sentence (a ``str``) saying why there is none."""
    bench_file = bench_file or bench_report.results_file()
    if not bench_file.exists():
        return [NO_BENCH]
    try:
        results = json.loads(bench_file.read_text())
        table = bench_report.summary_table(results)
        gaps = bench_report.gap_causes(results)
    except (KeyError, TypeError):
        return [OLD_BENCH]
    return [
        table.assign(met=table.met.map({True: "yes", False: "no"}).fillna("—")),
        Markdown("\n".join(f"- **Gap:** {g}" for g in gaps) or "Every goal was met."),
    ]


def emit(items: list[Any]) -> None:
    """Show each item as the page always has: sentences printed, tables and Markdown displayed."""
    for item in items:
        if isinstance(item, str):
            print(item)
        else:
            display(item)
