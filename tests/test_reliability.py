"""Nothing lost, clear errors, determinism: kills at random points, corrupt and bad input, re-execution."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from lmconv.analysis import engine
from lmconv.analysis.cache import TableCache
from lmconv.chapters import params
from lmconv.data import corpus
from lmconv.errors import LmconvError

ROOT = Path(__file__).resolve().parents[1]


def _popen(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lmconv", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _count(root: Path, name: str) -> int:
    """Files called ``name`` below ``root``, while another process writes there: os.walk passes over a folder that
    vanishes under it (a temporary one renamed into place), where Path.rglob raises FileNotFoundError."""
    return sum(name in files for _, _, files in os.walk(root))


def _wait_for(pred, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not pred() and time.time() < deadline:
        time.sleep(0.05)


@pytest.mark.slow
def test_killed_analysis_resumes_to_identical_tables(smoke_suite):
    home = Path(os.environ["LMCONV_HOME"])
    env = {"LMCONV_HOME": str(home)}
    # an uninterrupted reference, computed in-process into its own cache
    from lmconv import analysis

    ref = analysis.run("smoke", progress=False, options=engine.EngineOptions())
    # the CLI run into a fresh cache, killed twice after some entries are written
    shutil.rmtree(home / "cache", ignore_errors=True)
    for n_entries in (2, 9):
        proc = _popen(["analyze", "--profile", "smoke", "--quiet"], env)
        _wait_for(lambda n=n_entries: _count(home / "cache" / "engine", "manifest.json") >= n)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for folder in (home / "cache" / "engine").glob("*/*"):
            if not folder.name.startswith("."):
                assert (folder / "manifest.json").exists(), f"partial cache entry visible: {folder}"
    r = subprocess.run(
        [sys.executable, "-m", "lmconv", "analyze", "--profile", "smoke", "--quiet"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    again = analysis.run("smoke", progress=False)
    for name in engine.TABLES:
        pd.testing.assert_frame_equal(ref.tables[name], again.tables[name])


@pytest.mark.slow
def test_killed_book_build_leaves_no_partial_files_and_completes(smoke_suite, tmp_path):
    book = tmp_path / "book"
    shutil.copytree(ROOT / "book", book, ignore=shutil.ignore_patterns("_build", "chapters", "_generated"))
    (book / "_toc.yml").write_text(  # a two-chapter book keeps this drill short
        "format: jb-book\nroot: intro\nchapters:\n  - file: chapters/01_suite\n  - file: references\n"
        "  - file: api\n  - file: chapters/status\n"
    )
    (book / "intro.md").write_text("# Intro\n\nA short book for the kill drill.\n")
    args = ["book", "--profile", "smoke", "--book-dir", str(book)]
    proc = _popen(args, {})
    _wait_for(lambda: (book / "_build" / "papermill").exists())
    time.sleep(2.0)  # somewhere inside papermill's execution of the first chapter
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for nb in (book / "chapters").glob("*.ipynb"):
        meta = json.loads(nb.read_text())["metadata"]["papermill"]
        assert meta.get("end_time"), f"half-executed notebook under its final name: {nb}"
    assert not (book / "_build" / "html").exists() or (book / "_build" / "html" / "index.html").exists()
    r = subprocess.run(
        [sys.executable, "-m", "lmconv", *args], cwd=ROOT, env=os.environ, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert (book / "_build" / "html" / "chapters" / "01_suite.html").exists()


def _glued(nb_path: Path) -> dict[str, str]:
    nb = json.loads(nb_path.read_text())
    out = {}
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            name = o.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:  # charts carry a random element id; everything else must match exactly
                out[name] = re.sub(r"altair-viz-[0-9a-f]+", "altair-viz", json.dumps(o["data"], sort_keys=True))
    return out


@pytest.mark.slow
def test_re_executing_a_chapter_gives_the_same_glued_numbers(smoke_suite, tmp_path):
    from lmconv import book

    first = _glued(book.run_chapter("01_suite", {"profile": "smoke"}, tmp_path / "a", quiet=True))
    second = _glued(book.run_chapter("01_suite", {"profile": "smoke"}, tmp_path / "b", quiet=True))
    assert first and first == second


def test_bad_parameters_stop_with_a_clear_message():
    with pytest.raises(LmconvError, match=r"parameter probe_tokens='lots' \(str\) is not valid"):
        params.validate(probe_tokens="lots")
    with pytest.raises(LmconvError, match=r"parameter rel_tol=2 .* in \[0.0, 1.0\]"):
        params.validate(rel_tol=2)
    with pytest.raises(LmconvError, match="a profile name"):
        params.validate(profile="huge")
    with pytest.raises(LmconvError, match="has no check"):
        params.validate(mystery=1)
    ok = params.validate(profile="smoke", sizes="s", seeds=[1, 2], probe_tokens=None)
    assert ok.sizes == ["s"] and ok.seeds == [1, 2]


def test_a_chapter_with_a_bad_parameter_writes_nothing(smoke_suite, tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "lmconv", "chapter", "01_suite", "--profile", "smoke", "--book-dir", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ},
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr  # the good case writes the executed notebook
    assert (tmp_path / "chapters" / "01_suite.ipynb").exists()
    bad = tmp_path / "bad"
    r = subprocess.run(
        [sys.executable, "-m", "lmconv", "chapter", "01_suite", "--profile", "nope", "--book-dir", str(bad)],
        cwd=ROOT,
        env={**os.environ},
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert "parameter profile='nope'" in r.stderr and "fix:" in r.stderr
    assert not (bad / "chapters" / "01_suite.ipynb").exists()


def test_empty_and_non_utf8_corpus_files_are_rejected(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    for i in range(25):
        (folder / f"d{i:02}.txt").write_text(f"Document {i} has some words in it.\n")
    (folder / "d03.txt").write_text("  \n")
    with pytest.raises(LmconvError, match=r"d03\.txt is empty"):
        corpus.read_textdir(folder)
    (folder / "d03.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(LmconvError, match=r"d03\.txt is not UTF-8"):
        corpus.read_textdir(folder)
    (folder / "d03.txt").write_text("café au lait, now in UTF-8.")
    assert len(corpus.read_textdir(folder)) == 25
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    with pytest.raises(LmconvError, match=r"no \.txt files"):
        corpus.read_textdir(empty)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_full_or_read_only_cache_gives_a_clear_error(tmp_path, monkeypatch, code):
    cache = TableCache("t", tmp_path)

    def refuse(*_a, **_k):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr("lmconv.io.tempfile.mkdtemp", refuse)
    with pytest.raises(LmconvError, match="cannot write the metric cache") as e:
        cache.save("k" * 64, {"x": pd.DataFrame({"a": [1]})})
    assert "LMCONV_HOME" in str(e.value)
    assert not any(tmp_path.rglob("*.parquet"))


def test_pickled_checkpoints_are_not_loaded(smoke_suite, tmp_path):
    import torch

    from lmconv.checkpoints import suites

    src_dir = smoke_suite.source.root / "lmconv-s-seed1" / "step96"
    run = tmp_path / "lmconv-s-seed1" / "step96"
    run.mkdir(parents=True)
    for f in src_dir.iterdir():
        if f.name != "model.safetensors":
            shutil.copy2(f, run / f.name)
    from safetensors.torch import load_file

    torch.save(load_file(str(src_dir / "model.safetensors")), run / "pytorch_model.bin")
    sums = json.loads((run / "checksums.json").read_text())
    del sums["model.safetensors"]
    (run / "checksums.json").write_text(json.dumps(sums))
    with pytest.raises(LmconvError, match="cannot load checkpoint"):
        suites.LocalSource(tmp_path).load_model(suites.CheckpointRef("lmconv", "s", 1, 96))


def test_values_listed_twice_are_refused(smoke_suite):
    from lmconv import analysis

    for name, value in (("seeds", [1, 1, 2]), ("seeds", [1, 1]), ("sizes", ["xs", "xs"]), ("steps", [96, 96, 0])):
        with pytest.raises(LmconvError, match=rf"parameter {name}: .* listed more than once") as e:
            params.validate(**{name: value})
        assert "list each value once" in e.value.fix
    for kw, what in (
        ({"seeds": [1, 1]}, "seed 1"),
        ({"sizes": ["xs", "xs"]}, "size 'xs'"),
        ({"steps": [96, 96, 0]}, "step 96"),
    ):
        with pytest.raises(LmconvError, match=rf"{what} listed more than once"):
            analysis.run("smoke", progress=False, **kw)
