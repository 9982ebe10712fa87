"""The release bundle (``make release``): the built HTML, every executed chapter, the suites' manifests, the
metric tables, and ``SHA256SUMS`` — so a reader can check that a figure was drawn from the published tables
without retraining (load a table with pandas and call the figure function named in its caption)."""

from __future__ import annotations

import json
import shutil
import tarfile
import time
from pathlib import Path

from .. import __version__, analysis, book, paths
from ..analysis import engine
from ..checkpoints import bundle as bundle_mod
from ..checkpoints.suites import RUN_FINISHED, TOKENIZER_FILES
from ..errors import LmconvError
from ..io import atomic_dir, read_json, sha256_file, write_json, write_text
from . import status

README = """lmconv release bundle
=====================
html.tar.gz        the rendered book (open index.html; it needs no network)
notebooks/         every chapter as executed for this build (papermill output; Colab and Binder open these)
suites/            per profile: the manifest of every checkpoint's file checksums, and the suite's status
tables/            the metric tables the chapters read: tables/{profile}/{family}/{request}/{table}.parquet (the
                   engine's cross-seed tables of one analysis a chapter ran; request.json says which sizes, seeds,
                   steps and probe, and which chapters used it; downstream_pairs and downstream_lastword are the
                   items the downstream table scores) and tables/{profile}/runs/{run}/ (each run's training,
                   validation and spectra logs, which chapters 1, 7 and 8 read, and each checkpoint's
                   checksums.json and config.json, without the weights); tables/{profile}/tokenizer/ the suite's
                   tokenizer. Tables mode runs a chapter from these: LMCONV_TABLES=<this folder> lmconv chapter NAME
SHA256SUMS         checksums of every file above; verify with:  sha256sum -c SHA256SUMS
"""


SUITE_FILES = ("suite.json", "profile.json", "timing.json")
RUN_FILES = ("*/*_log.parquet", "*/spectra.npz", f"*/{RUN_FINISHED}", "*/step*/checksums.json", "*/step*/config.json")


def profiles_of_build(book_dir: Path) -> list[str]:
    """The profiles the executed chapters were run with, and their companion suites."""
    used: list[str] = []
    for nb in sorted((book_dir / "chapters").glob("*.ipynb")):
        prof = json.loads(nb.read_text()).get("metadata", {}).get("papermill", {}).get("parameters", {}).get("profile")
        if prof and prof not in used:
            used.append(prof)
    out: list[str] = []
    for p in used:
        for q in [p, *book.companion_profiles(p)]:
            if q not in out:
                out.append(q)
    return out


def chapter_analyses(book_dir: Path) -> dict[str, dict]:
    """Every analysis the executed chapters ran (their ledgers): request id → the request and its chapters."""
    out: dict[str, dict] = {}
    for name in book.toc_chapters(book_dir):
        ledger = book.ledger_of(name, book_dir)
        for request in read_json(ledger) if ledger.exists() else []:
            out.setdefault(analysis.request_id(request), {"request": request, "chapters": []})["chapters"].append(name)
    return out


def copy_suite(root: Path, dest: Path) -> None:
    """A suite without its weights, as tables mode reads it (:mod:`lmconv.checkpoints.bundle`): ``dest/runs`` holds
    the suite's own records, each run's logs, spectra and ``run.json``, and per checkpoint its ``checksums.json``
    and ``config.json``; ``dest/tokenizer`` the one tokenizer every checkpoint records."""
    files = [f for f in SUITE_FILES if (root / f).exists()]
    files += [p.relative_to(root) for pattern in RUN_FILES for p in sorted(root.glob(pattern))]
    for rel in files:
        (dest / "runs" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, dest / "runs" / rel)
    checkpoint = next(iter(sorted(root.glob("*/step*/checksums.json"))), None)  # any: they share one tokenizer
    if checkpoint is not None:
        (dest / bundle_mod.TOKENIZER).mkdir(parents=True, exist_ok=True)
        for name in TOKENIZER_FILES:
            shutil.copy2(checkpoint.parent / name, dest / bundle_mod.TOKENIZER / name)


def make_bundle(out: Path | None = None, book_dir: Path | None = None) -> Path:
    book_dir = book_dir or paths.BOOK
    html = book_dir / "_build" / "html"
    if not (html / "index.html").exists():
        raise LmconvError(f"no built book in {html}", "build it first: make book")
    final = (out or paths.ROOT / "_release") / f"lmconv-{__version__}-{time.strftime('%Y%m%d')}"
    # built in a temporary folder that replaces the old bundle only when complete: never half a bundle
    with atomic_dir(final) as bundle:
        with tarfile.open(bundle / "html.tar.gz", "w:gz") as tar:
            tar.add(html, arcname="html")
        (bundle / "notebooks").mkdir()
        for nb in sorted((book_dir / "chapters").glob("*.ipynb")):
            if not nb.name.endswith(".failed.ipynb"):
                shutil.copy2(nb, bundle / "notebooks" / nb.name)
        for prof_name in profiles_of_build(book_dir):
            st = status.suite_status(prof_name)
            if not st["trained"]:
                continue
            write_json(bundle / "suites" / f"{prof_name}-status.json", st)
            write_json(bundle / "suites" / f"{prof_name}-manifest.json", status.suite_manifest(prof_name))
            copy_suite(paths.suite_dir(prof_name), bundle / "tables" / prof_name)
        for used in chapter_analyses(book_dir).values():
            write_analysis(bundle, used["request"], used["chapters"])
        write_text(bundle / "README.txt", README)
        write_sums(bundle)
    return final


def write_analysis(bundle: Path, request: dict, chapters: list[str]) -> Path:
    """One analysis a chapter ran (its recorded ``request``), as tables under the bundle; return the folder."""
    res = analysis.replay(request)
    folder = bundle / "tables" / request["profile"] / res.family / analysis.request_id(request)
    folder.mkdir(parents=True, exist_ok=True)
    for name in engine.TABLES:
        res.tables[name].to_parquet(folder / f"{name}.parquet", index=False)
    res.targets.to_parquet(folder / "probe_targets.parquet", index=False)
    if res.evals is not None:  # the downstream items themselves, beside their scores
        res.evals.pairs.to_parquet(folder / "downstream_pairs.parquet", index=False)
        res.evals.lastword.to_parquet(folder / "downstream_lastword.parquet", index=False)
    write_json(folder / "request.json", {"request": request, "chapters": chapters})
    return folder


def write_sums(bundle: Path) -> None:
    """``SHA256SUMS`` over every file of the bundle (``sha256sum -c`` reads it; so does tables mode)."""
    files = sorted(f for f in bundle.rglob("*") if f.is_file() and f.name != bundle_mod.SUMS)
    write_text(bundle / bundle_mod.SUMS, "".join(f"{sha256_file(f)}  {f.relative_to(bundle)}\n" for f in files))
