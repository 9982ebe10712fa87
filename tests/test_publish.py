"""Publishing: the workflow files are well formed and call existing make targets; the release bundle verifies."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*):", text, flags=re.M))


@pytest.mark.parametrize("name", ["ci.yml", "publish.yml"])
def test_workflows_parse_and_call_existing_targets(name):
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as True
    assert on, "no trigger"
    steps = [s for job in wf["jobs"].values() for s in job.get("steps", [])]
    assert steps or name == "publish.yml"
    called = {m for s in steps for m in re.findall(r"\bmake (\w[\w-]*)", s.get("run", ""))}
    assert called, "the workflow must run the project through make"
    assert called <= make_targets(), called - make_targets()
    for s in steps:
        assert "uses" in s or "run" in s


def test_ci_runs_the_test_target_on_push_and_pull_requests():
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    on = wf.get("on", wf.get(True))
    assert "push" in on and "pull_request" in on
    runs = " ".join(s.get("run", "") for s in wf["jobs"]["test"]["steps"])
    assert "make test" in runs
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_publish_caches_suites_by_profile_hash_and_deploys_pages():
    text = (ROOT / ".github" / "workflows" / "publish.yml").read_text()
    wf = yaml.safe_load(text)
    steps = wf["jobs"]["book"]["steps"]
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache"))
    assert "hashFiles('src/lmconv/training/profiles/*.yaml'" in cache["with"]["key"]
    assert "_data/suites" in cache["with"]["path"]
    assert any(s.get("uses", "").startswith("actions/upload-pages-artifact") for s in steps)
    assert wf["jobs"]["deploy"]["steps"][0]["uses"].startswith("actions/deploy-pages")
    assert "make book" in text and "make release" in text


def test_citation_file_is_valid_yaml():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["title"] and cff["license"] == "MIT"


def test_analysis_ledger_keeps_each_request_once(tmp_path):
    from lmconv import analysis

    ledger = tmp_path / "chapter.analyses.json"
    a = {"profile": "smoke", "arm": None, "sizes": ["a"], "seeds": [1, 2], "steps": [0, 8]}
    b = {**a, "steps": [0, 4, 8]}
    for request in (a, b, a):
        analysis.record(ledger, request)
    assert json.loads(ledger.read_text()) == [a, b]
    assert analysis.request_id(a) != analysis.request_id(b) and len(analysis.request_id(a)) == 12


def test_a_release_that_fails_leaves_no_half_bundle(tmp_path):
    """An analysis that cannot be replayed stops the release with a clear error; the old bundle stays whole."""
    from lmconv import __version__
    from lmconv.book import release
    from lmconv.errors import LmconvError

    book_dir = tmp_path / "book"
    (book_dir / "_build" / "html").mkdir(parents=True)
    (book_dir / "_build" / "html" / "index.html").write_text("<html></html>")
    (book_dir / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: chapters/ch\n")
    (book_dir / "chapters").mkdir()
    request = {"profile": "no-such-profile", "arm": None, "sizes": ["a"], "seeds": [1, 2], "steps": [0]}
    request |= {"probe": {"tokens": 8, "context": 8, "stride": 8}, "options": {}}
    (book_dir / "chapters" / "ch.analyses.json").write_text(json.dumps([{"bad": "entry"}, request]))
    out = tmp_path / "release"
    old = out / f"lmconv-{__version__}-{__import__('time').strftime('%Y%m%d')}"
    old.mkdir(parents=True)
    (old / "SHA256SUMS").write_text("the previous bundle\n")
    with pytest.raises(LmconvError, match="not a recorded analysis request"):
        release.make_bundle(out, book_dir)
    (book_dir / "chapters" / "ch.analyses.json").write_text(json.dumps([request]))
    with pytest.raises(LmconvError, match="no-such-profile"):
        release.make_bundle(out, book_dir)
    assert [p.name for p in out.iterdir()] == [old.name]
    assert (old / "SHA256SUMS").read_text() == "the previous bundle\n"
