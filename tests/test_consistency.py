"""Issue 16, item 12 and the analysed steps' order: every analysed checkpoint of a suite is checked, before any
compute, to be one network per size and to share one tokenizer; steps must be listed once and in order."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from lmconv import analysis, cli, io, paths
from lmconv.checkpoints import suites
from lmconv.errors import LmconvError


class Reached(Exception):
    """Raised where analysis would start computing: the checks before it all passed."""


@pytest.fixture
def suite_copy(smoke_suite, tmp_path, monkeypatch) -> Path:
    """A hard-linked copy of the smoke suite that ``analysis.run("smoke")`` reads, stopped before its probe."""
    root = tmp_path / "smoke"

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:  # another file system
            shutil.copy2(src, dst)

    shutil.copytree(smoke_suite.source.root, root, copy_function=link)
    real = paths.suite_dir
    monkeypatch.setattr(paths, "suite_dir", lambda name: root if name == "smoke" else real(name))

    def no_compute(*_a, **_k):
        raise Reached

    monkeypatch.setattr(analysis.probe_mod, "build", no_compute)
    return root


def _rewrite(folder: Path, name: str, data: bytes) -> None:
    """Replace one file of a hard-linked checkpoint (a new inode: the original stays) and record its sha256."""
    for f, text in ((folder / name, data), (folder / "checksums.json", None)):
        if text is None:
            sums = json.loads(f.read_text())
            sums[name] = io.sha256_bytes(data)
            text = json.dumps(sums).encode()
        f.unlink()
        f.write_bytes(text)


def _analyse(**kw) -> None:
    with pytest.raises(Reached):
        analysis.run("smoke", progress=False, **kw)


def _refused(match: str, **kw) -> LmconvError:
    with pytest.raises(LmconvError, match=match) as e:
        analysis.run("smoke", progress=False, **kw)
    return e.value


def test_a_seed_of_another_network_is_refused_before_any_compute(suite_copy):
    _analyse()  # the untouched copy passes every check
    run = suite_copy / "lmconv-s-seed2"
    for step in sorted(run.glob("step*")):  # every step alike, so no check within the run can see it
        config = json.loads((step / "config.json").read_text())
        config["rope_parameters"]["partial_rotary_factor"] = 0.5
        _rewrite(step, "config.json", json.dumps(config).encode())
    suites.LocalSource(suite_copy).verify_files(suites.CheckpointRef("lmconv", "s", 2, 96))  # checksums agree
    e = _refused(r"the checkpoints of lmconv-s are not one network: lmconv-s-seed2/step0,")
    assert "differ from lmconv-s-seed1/step0" in e.problem and "partial_rotary_factor': 0.5" in e.problem
    assert f"delete {run}," in e.fix and "lmconv train" in e.fix
    _analyse(seeds=[1, 3])  # the other seeds still analyse
    _analyse(sizes=["xs"])


def test_one_step_of_another_network_is_named(suite_copy):
    step = suite_copy / "lmconv-xs-seed3" / "step32"
    config = json.loads((step / "config.json").read_text())
    _rewrite(step, "config.json", json.dumps(config | {"layer_norm_eps": 1e-6}).encode())
    e = _refused(r"lmconv-xs-seed3/step32 differ from lmconv-xs-seed1/step0 in config.json: layer_norm_eps 1e-06")
    assert f"delete {step}," in e.fix
    _analyse(steps=[0, 16, 48, 96])


def _change_merges(step: Path) -> None:
    spec = json.loads((step / "tokenizer.json").read_text())
    spec["model"]["merges"] = spec["model"]["merges"][:-1]  # one merge fewer: text splits differently
    _rewrite(step, "tokenizer.json", json.dumps(spec).encode())


def test_a_tokenizer_changed_at_an_intermediate_step_is_refused(suite_copy):
    step = suite_copy / "lmconv-xs-seed2" / "step16"
    _change_merges(step)
    e = _refused(r"do not share one tokenizer: lmconv-xs-seed2/step16 split text unlike lmconv-xs-seed1/step0")
    assert "tokenizer.json differs" in e.problem and f"delete {step}," in e.fix
    _analyse(steps=[0, 32, 96])
    sums = json.loads((step / "checksums.json").read_text())  # unrecorded tokenizer files: the fingerprint decides
    del sums["tokenizer.json"], sums["tokenizer_config.json"]
    _rewrite(step, "checksums.json", json.dumps(sums).encode())
    _refused(r"do not share one tokenizer: lmconv-xs-seed2/step16 split text unlike")


def test_tokenizer_files_rewritten_alike_pass(suite_copy):
    """Other bytes (another JSON layout) for the same tokenizer: the files' hashes differ, the fingerprint not."""
    step = suite_copy / "lmconv-s-seed3" / "step64"
    spec = json.loads((step / "tokenizer.json").read_text())
    _rewrite(step, "tokenizer.json", json.dumps(spec, indent=1).encode())
    _analyse()
    _change_merges(suite_copy / "lmconv-s-seed3" / "step96")  # the check still sees a real change beside it
    _refused(r"lmconv-s-seed3/step96 split text unlike")


def test_steps_out_of_order_are_refused_with_the_sorted_list(suite_copy, capsys):
    e = _refused(r"steps \[96, 0, 16\] are not in ascending order", steps=[96, 0, 16])
    assert "--steps 0,16,96" in e.fix and "-p steps '[0, 16, 96]'" in e.fix
    _refused(r"step 96 listed more than once", steps=[0, 96, 96])
    _refused(r"unknown step 17 ", steps=[0, 17])
    _analyse(steps=[0, 16, 96])
    assert cli.main(["analyze", "--profile", "smoke", "--steps", "96,0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "not in ascending order" in err and "--steps 0,96" in err


def test_hub_steps_out_of_order_are_refused_before_any_load():
    with pytest.raises(LmconvError, match=r"steps \[96, 0\] are not in ascending order"):
        analysis.run_hub(["s"], [0, 1], [96, 0], source=object())
    with pytest.raises(LmconvError, match=r"step 0 listed more than once"):
        analysis.run_hub(["s"], [0, 1], [0, 0], source=object())
