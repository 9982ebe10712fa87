"""Training is deterministic, resumable after a kill, and refuses bad input with a clear message."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lmconv import io, paths
from lmconv.checkpoints import suites
from lmconv.errors import LmconvError
from lmconv.training import profiles, train

ROOT = Path(__file__).resolve().parents[1]
TINY = """
description: tiny profile for resume tests
corpus: brown
vocab_size: 1024
context: 64
seeds: [1, 2]
sizes:
  xs: {hidden: 16, layers: 1, heads: 2}
train:
  steps: 160
  batch_size: 8
  lr: 3.0e-3
  schedule: {kind: cosine, warmup: 8, final_ratio: 0.1}
  threads: 2
  val_every: 8
  val_tokens: 1024
  spectra_every: 4
checkpoints: {log_until: 16, per_octave: 1, every: 16}
probe: {tokens: 1024, context: 64, stride: 32}
"""


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): io.sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in ("timing.json", "run.json")
    }


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lmconv", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def tiny_yaml(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("profiles") / "tinyresume.yaml"
    p.write_text(TINY)
    return p


def test_same_seed_same_bytes_other_seed_other_bytes(smoke_suite, tmp_path, monkeypatch):
    first = tree_hashes(smoke_suite.source.root / "lmconv-xs-seed1")
    monkeypatch.setenv("LMCONV_HOME", str(tmp_path))
    prof = profiles.load("smoke")
    train.train_profile(prof, sizes=["xs"], seeds=[1, 2], progress=False)
    again = tree_hashes(tmp_path / "suites" / "smoke" / "lmconv-xs-seed1")
    assert again == first
    other = tree_hashes(tmp_path / "suites" / "smoke" / "lmconv-xs-seed2")
    assert other["step0/model.safetensors"] != first["step0/model.safetensors"]  # the seed sets the init
    assert other["step0/tokenizer.json"] == first["step0/tokenizer.json"]  # one shared tokenizer


@pytest.mark.slow
def test_resume_after_kill_gives_identical_files(tiny_yaml, tmp_path):
    from lmconv.data import corpus

    corpus.prepare("brown")
    ref_home, kill_home = tmp_path / "ref", tmp_path / "kill"
    for h in (ref_home, kill_home):
        shutil.copytree(Path(os.environ["LMCONV_HOME"]) / "corpus", h / "corpus")
    r = cli("train", "--profile", str(tiny_yaml), "--quiet", env={"LMCONV_HOME": str(ref_home)})
    assert r.returncode == 0, r.stderr
    # kill the same command at several points (after given checkpoints appear), then let it finish
    suite = kill_home / "suites" / "tinyresume"
    for run, step in (("xs-seed1", 16), ("xs-seed1", 112), ("xs-seed2", 48)):
        proc = subprocess.Popen(
            [sys.executable, "-m", "lmconv", "train", "--profile", str(tiny_yaml), "--quiet"],
            env={**os.environ, "LMCONV_HOME": str(kill_home)},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 120
        while not (suite / f"lmconv-{run}" / f"step{step}").exists() and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (suite / "lmconv-xs-seed2" / "step160").exists(), "the run finished before it was killed"
        for p in suite.glob("*/step*"):
            assert (p / "checksums.json").exists(), f"partial checkpoint visible under its final name: {p}"
    r = cli("train", "--profile", str(tiny_yaml), "--quiet", env={"LMCONV_HOME": str(kill_home)})
    assert r.returncode == 0, r.stderr
    a = tree_hashes(ref_home / "suites" / "tinyresume")
    b = tree_hashes(kill_home / "suites" / "tinyresume")
    assert a == b


def test_corrupt_checkpoint_is_reported(smoke_suite, tmp_path):
    src_root = smoke_suite.source.root
    bad = tmp_path / "suite"
    shutil.copytree(src_root / "lmconv-s-seed1", bad / "lmconv-s-seed1")
    f = bad / "lmconv-s-seed1" / "step16" / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    src = suites.LocalSource(bad)
    with pytest.raises(LmconvError, match="does not match its recorded sha256"):
        src.load_model(suites.CheckpointRef("lmconv", "s", 1, 16))
    (bad / "lmconv-s-seed1" / "step32" / "config.json").unlink()
    with pytest.raises(LmconvError, match=r"lacks config\.json"):
        src.load_model(suites.CheckpointRef("lmconv", "s", 1, 32))
    # the untouched step still loads
    assert src.load_model(suites.CheckpointRef("lmconv", "s", 1, 48)) is not None


def test_cli_errors_exit_nonzero_with_a_fix():
    r = cli("train", "--profile", "nope")
    assert r.returncode == 2
    assert "unknown profile 'nope'" in r.stderr and "fix:" in r.stderr
    r = cli("train", "--profile", "smoke", "--sizes", "huge")
    assert r.returncode == 2 and "unknown size 'huge'" in r.stderr


def test_tokenizer_mismatch_is_rejected(smoke_suite, tmp_path):
    import json

    root = tmp_path / "mixed"
    for seed in (1, 2):
        shutil.copytree(smoke_suite.source.root / f"lmconv-s-seed{seed}", root / f"lmconv-s-seed{seed}")
    tok = root / "lmconv-s-seed2" / "step96" / "tokenizer.json"
    spec = json.loads(tok.read_text())
    vocab = spec["model"]["vocab"]
    a, b = list(vocab)[300:302]
    vocab[a], vocab[b] = vocab[b], vocab[a]  # same size, different ids: a different tokenizer
    tok.write_text(json.dumps(spec))
    src = suites.LocalSource(root, verify=False)
    refs = [suites.CheckpointRef("lmconv", "s", k, 96) for k in (1, 2)]
    with pytest.raises(LmconvError, match="do not share one tokenizer"):
        suites.check_same_tokenizer(src, refs)


def test_training_data_order_depends_on_seed_only(smoke_profile):
    data = train.prepare_data(smoke_profile)
    a = data.batch(1, 5, 4)
    assert (a == data.batch(1, 5, 4)).all()
    assert not (a == data.batch(2, 5, 4)).all()
    assert not (a == data.batch(1, 6, 4)).all()


def test_a_branched_arm_shares_history_then_diverges(tmp_path, monkeypatch):
    monkeypatch.setenv("LMCONV_HOME", str(tmp_path))
    raw = profiles.load("smoke").raw | {
        "seeds": [1],
        "sizes": {"xs": {"hidden": 16, "layers": 1, "heads": 2}},
        "train": profiles.load("smoke").raw["train"] | {"steps": 64, "schedule": {"kind": "constant", "warmup": 8}},
        "arms": {
            "constant": {},
            "wsd": {
                "schedule": {"kind": "wsd", "decay_fraction": 0.25, "final_ratio": 0.0},
                "branch_from": {"arm": "constant", "step": 48},
            },
        },
    }
    prof = profiles.parse(raw, "branchtest")
    root = train.train_profile(prof, progress=False)
    a, b = root / "constant-xs-seed1", root / "wsd-xs-seed1"
    assert io.sha256_file(a / "step48" / "model.safetensors") == io.sha256_file(b / "step48" / "model.safetensors")
    assert io.sha256_file(a / "step64" / "model.safetensors") != io.sha256_file(b / "step64" / "model.safetensors")
    import pandas as pd

    la, lb = pd.read_parquet(a / "train_log.parquet"), pd.read_parquet(b / "train_log.parquet")
    assert (la.loss[:48] == lb.loss[:48]).all() and lb.lr.iloc[-1] < la.lr.iloc[-1]


class Killed(BaseException):
    """A simulated kill at a chosen code point (not an Exception: nothing on the way may catch it)."""


def _kill(m: pytest.MonkeyPatch, obj, name: str, before=None, after=None) -> None:
    """Make ``obj.name`` raise :class:`Killed` before (or after) a call for which the predicate holds."""
    real = getattr(obj, name)

    def fake(*a, **k):
        if before and before(*a, **k):
            raise Killed(name)
        out = real(*a, **k)
        if after and after(*a, **k):
            raise Killed(name)
        return out

    m.setattr(obj, name, fake)


def _tiny(name: str, arms: dict | None = None, fresh: bool = True, **train_over) -> profiles.Profile:
    """One xs run of the smoke settings, 48 steps (checkpoints 0, 1, 2, 4, 8, 16, 32, 48), in the session's home."""
    smoke = profiles.load("smoke").raw
    raw = smoke | {"seeds": [1], "sizes": {"xs": smoke["sizes"]["xs"]}, "train": smoke["train"] | {"steps": 48}}
    raw["train"] |= train_over
    prof = profiles.parse(raw | ({"arms": arms} if arms else {}), name)
    if fresh:
        shutil.rmtree(paths.suite_dir(name), ignore_errors=True)
    return prof


@pytest.fixture(scope="module")
def tiny_reference() -> tuple[Path, dict[str, str]]:
    """An uninterrupted tiny run: the files every interrupted and repaired run must end with."""
    run = train.train_profile(_tiny("tinyref"), progress=False) / "lmconv-xs-seed1"
    return run, tree_hashes(run)


def test_resume_verifies_the_checkpoint_it_starts_from(tiny_reference, monkeypatch):
    import json

    import torch
    from safetensors.torch import load_file

    prof = _tiny("tinycorrupt")
    run = paths.suite_dir(prof.name) / "lmconv-xs-seed1"
    with monkeypatch.context() as m:
        _kill(m, train, "save_state", after=lambda _run, tr: tr.step == 32)
        with pytest.raises(Killed):
            train.train_profile(prof, progress=False)
    assert train.load_state(run) == 32
    weights = run / "step32" / "model.safetensors"
    good = weights.read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    weights.write_bytes(bytes(bad))
    with pytest.raises(LmconvError, match=r"step32/model\.safetensors does not match its recorded sha256") as e:
        train.train_profile(prof, progress=False)
    assert f"delete {run / 'resume'}" in e.value.fix
    # weights only as a pickle (pytorch_model.bin, recorded in checksums.json): refused, never unpickled
    weights.write_bytes(good)
    torch.save(load_file(str(weights)), run / "step32" / "pytorch_model.bin")
    weights.unlink()
    sums = json.loads((run / "step32" / "checksums.json").read_text())
    sums["pytorch_model.bin"] = io.sha256_file(run / "step32" / "pytorch_model.bin")
    del sums["model.safetensors"]
    (run / "step32" / "checksums.json").write_text(json.dumps(sums))
    with pytest.raises(LmconvError, match=r"step32/model\.safetensors is missing"):
        train.train_profile(prof, progress=False)
    # the fix it names works: without the state the run trains again and ends with the same files
    shutil.rmtree(run / "resume")
    train.train_profile(prof, progress=False)
    assert tree_hashes(run) == tiny_reference[1]


def test_a_kill_while_a_run_finishes_is_repaired_on_rerun(tiny_reference, monkeypatch):
    from lmconv import analysis

    prof = _tiny("tinyfinish")
    root = paths.suite_dir(prof.name)
    run = root / "lmconv-xs-seed1"
    with monkeypatch.context() as m:  # killed after train_log.parquet, before val_log, spectra and run.json
        _kill(m, train, "_write_parquet", before=lambda path, df: path == run / "val_log.parquet")
        with pytest.raises(Killed):
            train.train_profile(prof, progress=False)
    assert (run / "train_log.parquet").exists() and not (run / "val_log.parquet").exists()
    suite = analysis.Suite(prof, suites.LocalSource(root))
    with pytest.raises(LmconvError, match="no finished runs"):  # a half-finished run is not read as finished
        suite.train_logs()
    train.train_profile(prof, progress=False)
    assert (run / "run.json").exists() and tree_hashes(run) == tiny_reference[1]
    _, val = suite.train_logs()
    assert val.step.max() == 48


def test_a_kill_between_the_renames_of_a_state_loses_nothing(tiny_reference, monkeypatch):
    prof = _tiny("tinyrename")
    run = paths.suite_dir(prof.name) / "lmconv-xs-seed1"

    def second_rename(src, dst) -> bool:  # the state of step 32 replaces that of step 16: kill after the first
        new_state = Path(src) / "state.json"
        return Path(dst) == run / "resume" and new_state.exists() and io.read_json(new_state)["step"] == 32

    with monkeypatch.context() as m:
        _kill(m, io.os, "replace", before=second_rename)
        with pytest.raises(Killed):
            train.train_profile(prof, progress=False)
    assert not (run / "resume").exists() and (run / ".resume.old" / "state.json").exists()
    saved: list[int] = []
    with monkeypatch.context() as m:  # the rerun goes on from step 16, not from step 0
        _kill(m, train, "save_state", before=lambda _run, tr: saved.append(tr.step) is None)
        with pytest.raises(Killed):
            train.train_profile(prof, progress=False)
    assert saved == [32]
    train.train_profile(prof, progress=False)
    assert tree_hashes(run) == tiny_reference[1]


def test_a_second_trainer_of_a_run_is_refused_while_the_first_holds_it(tiny_reference):
    run = tiny_reference[0]
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(run / '.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode())\n"
            "print('locked', flush=True); time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LmconvError, match=rf"in use by another process \(pid {holder.pid}\b") as e:
            train.train_profile(_tiny("tinyref", fresh=False), progress=False)
        assert f"kill {holder.pid}" in e.value.fix
    finally:
        holder.kill()
        holder.wait()
    train.train_profile(_tiny("tinyref", fresh=False), progress=False)  # free again; the lock file goes with its holder
    assert not (run / ".lock").exists()


def test_a_branch_point_killed_while_copied_or_broken_is_rebuilt(monkeypatch):
    wsd = {"schedule": {"kind": "wsd", "decay_fraction": 0.5, "final_ratio": 0.0}}
    arms = {"constant": {}, "wsd": wsd | {"branch_from": {"arm": "constant", "step": 16}}}
    prof = _tiny("tinybranch", arms, steps=32, schedule={"kind": "constant", "warmup": 8})
    root = paths.suite_dir(prof.name)
    point = root / "constant-xs-seed1" / "resume-step16"
    real_copytree = shutil.copytree

    def half_copy(src, dst, *a, **k):  # the kill comes in the middle of copying the state
        real_copytree(src, dst, *a, ignore=shutil.ignore_patterns("optimizer.pt"), **k)
        raise Killed("copytree")

    with monkeypatch.context() as m:
        m.setattr(shutil, "copytree", half_copy)
        with pytest.raises(Killed):
            train.train_profile(prof, progress=False)
    assert not point.exists() or not (point / "optimizer.pt").exists()
    train.train_profile(prof, progress=False)
    assert (point / "optimizer.pt").exists() and (root / "wsd-xs-seed1" / "run.json").exists()
    ref = tree_hashes(root)
    # a branch point broken by an older version (copied in place, then killed) is detected and rebuilt
    (point / "optimizer.pt").unlink()
    shutil.rmtree(root / "wsd-xs-seed1")
    train.train_profile(prof, progress=False)
    assert tree_hashes(root) == ref


def test_arms_sizes_and_seeds_listed_twice_are_refused(smoke_profile):
    with pytest.raises(LmconvError, match=r"seed 1 listed more than once in \[1, 1, 2\]"):
        train.train_profile(smoke_profile, seeds=[1, 1, 2], progress=False)
    with pytest.raises(LmconvError, match=r"size 'xs' listed more than once"):
        train.train_profile(smoke_profile, sizes=["xs", "xs"], progress=False)


def _count_steps(m: pytest.MonkeyPatch) -> list[int]:
    """Record the step each training step starts from."""
    taken: list[int] = []
    real = train._train_step
    m.setattr(train, "_train_step", lambda run, data, tr: taken.append(tr.step) or real(run, data, tr))
    return taken


def test_a_corrupt_checkpoint_of_a_finished_run_is_trained_again_as_its_error_says(tiny_reference, capsys):
    prof = _tiny("tinygap")
    run = train.train_profile(prof, progress=False) / "lmconv-xs-seed1"
    weights = run / "step16" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])  # truncated
    with pytest.raises(LmconvError, match=r"xs-seed1/step16: model\.safetensors does not match") as e:
        suites.LocalSource(run.parent).load_model(suites.CheckpointRef("lmconv", "xs", 1, 16))
    assert e.value.fix.startswith(f"delete {run / 'step16'}, then rerun `lmconv train`")
    assert "from step 0 when none is kept" in e.value.fix
    shutil.rmtree(run / "step16")
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as m:  # the repair is resumable too: kill it once on the way
        _kill(m, train, "save_state", after=lambda _run, tr: tr.step == 8)
        with pytest.raises(Killed):
            train.train_profile(prof, progress=False)
    assert "lmconv-xs-seed1: checkpoint step16 missing; training it again from step 0" in capsys.readouterr().err
    with pytest.MonkeyPatch.context() as m:
        taken = _count_steps(m)
        train.train_profile(prof, progress=False)
    assert taken[0] == 8 and tree_hashes(run) == tiny_reference[1]
    # the run lacking a listed file of its final checkpoint is not finished either (the fix of "lacks")
    (run / "step48" / "config.json").unlink()
    with pytest.raises(LmconvError, match=r"lacks config\.json") as e:
        suites.LocalSource(run.parent).load_model(suites.CheckpointRef("lmconv", "xs", 1, 48))
    assert e.value.fix.startswith("rerun `lmconv train`")
    train.train_profile(prof, progress=False)
    assert tree_hashes(run) == tiny_reference[1]


def test_a_gap_is_trained_from_the_latest_saved_state_before_it(capsys):
    wsd = {"schedule": {"kind": "wsd", "decay_fraction": 0.5, "final_ratio": 0.0}}
    arms = {"constant": {}, "wsd": wsd | {"branch_from": {"arm": "constant", "step": 16}}}
    prof = _tiny("tinygaps", arms, steps=32, schedule={"kind": "constant", "warmup": 8})  # steps 0 1 2 4 8 16 32
    root = train.train_profile(prof, progress=False)
    ref = tree_hashes(root)
    const, branched = root / "constant-xs-seed1", root / "wsd-xs-seed1"
    cases = [  # (checkpoints deleted, the first step trained again, the state it starts from)
        ([const / "step32"], 16, "the saved state of step 16"),  # kept at the branch point
        ([const / "step8", const / "step32"], 0, "step 0"),  # the gap lies before every kept state
        ([branched / "step32"], 16, "the saved state of step 16"),  # the branch starts from constant's state
        ([branched / "step8"], None, None),  # shared history: linked again from constant, nothing trained
    ]
    for gone, first, where in cases:
        for folder in gone:
            shutil.rmtree(folder)
        capsys.readouterr()
        with pytest.MonkeyPatch.context() as m:
            taken = _count_steps(m)
            train.train_profile(prof, progress=False)
        assert (taken[0] if taken else None) == first, gone
        err = capsys.readouterr().err
        assert (f"training it again from {where}" in err) if where else "training it again" not in err
        assert tree_hashes(root) == ref, gone


def test_analysis_names_the_runs_that_lack_checkpoints(smoke_suite, tmp_path, monkeypatch):
    from lmconv import analysis

    monkeypatch.setenv("LMCONV_HOME", str(tmp_path))
    root = paths.suite_dir("smoke")
    shutil.copytree(smoke_suite.source.root, root, copy_function=os.link)  # hard links: nothing copied
    shutil.rmtree(root / "lmconv-s-seed2" / "step32")
    (root / "lmconv-xs-seed3" / "step96" / "checksums.json").unlink()  # the final step of one seed (CKA's reference)
    with pytest.raises(LmconvError, match="missing checkpoints") as e:
        analysis.run("smoke", progress=False)
    assert e.value.problem.endswith(": lmconv-xs-seed3 lacks step 96; lmconv-s-seed2 lacks step 32")
    assert "lmconv-s-seed1" not in e.value.problem and e.value.fix.startswith("lmconv train --profile smoke")
    suite = analysis.Suite.open("smoke")
    assert analysis.analysed_steps(suite, "lmconv", ["s", "xs"], [1, 2, 3], [16, 80]) == [16, 80]
    with pytest.raises(LmconvError) as e:
        analysis.analysed_steps(suite, "lmconv", ["s"], [1, 2], [16, 32])
    assert e.value.problem.endswith("checkpoints: lmconv-s-seed2 lacks step 32")
    with pytest.raises(LmconvError, match=r"unknown step 33"):
        analysis.analysed_steps(suite, "lmconv", ["s"], [1, 2], [33])


def test_a_first_run_that_stops_before_step_0_does_not_pin_the_profile_version(monkeypatch):
    prof = _tiny("tinyfirst")
    root = paths.suite_dir(prof.name)

    def too_big(*_a, **_k):
        raise RuntimeError("not enough memory for size xs")  # the user's typo in a size

    with monkeypatch.context() as m:
        m.setattr(train, "init_model", too_big)
        with pytest.raises(RuntimeError, match="not enough memory"):
            train.train_profile(prof, progress=False)
    assert not list(root.glob("*/step*"))
    fixed = _tiny("tinyfirst", fresh=False, lr=2.0e-3)  # the YAML, corrected
    assert fixed.sha256 != prof.sha256
    train.train_profile(fixed, progress=False)
    assert io.read_json(root / "suite.json")["profile_sha256"] == fixed.sha256
    assert io.read_json(root / "profile.json") == fixed.raw
    # a suite that holds checkpoints still refuses another version of its profile
    with pytest.raises(LmconvError, match="trained from a different version of profile 'tinyfirst'"):
        train.train_profile(prof, progress=False)


def test_fp32_written_out_trains_the_same_bytes_as_the_default(tiny_reference):
    """``precision: fp32`` is the default and changes nothing: every file equals that of a profile without the key
    (the suites trained before the key existed keep their checksums)."""
    assert profiles.TrainSettings(steps=1, batch_size=1).precision == "fp32"
    run = train.train_profile(_tiny("tinyfp32", precision="fp32"), progress=False) / "lmconv-xs-seed1"
    assert tree_hashes(run) == tiny_reference[1]
    assert io.read_json(run / "run.json")["precision"] == "fp32"


@pytest.fixture(scope="module")
def bf16_reference() -> tuple[Path, dict[str, str]]:
    """An uninterrupted tiny run in bf16."""
    run = train.train_profile(_tiny("tinybf16", precision="bf16"), progress=False) / "lmconv-xs-seed1"
    return run, tree_hashes(run)


def test_a_bf16_run_killed_and_resumed_ends_bit_identical(bf16_reference):
    prof = _tiny("tinybf16kill", precision="bf16")
    run = paths.suite_dir(prof.name) / "lmconv-xs-seed1"
    for kill_at in (4, 32):  # the second resumes from the first kill's state, then is killed in turn
        with pytest.MonkeyPatch.context() as m:
            _kill(m, train, "save_state", after=lambda _run, tr, k=kill_at: tr.step == k)
            with pytest.raises(Killed):
                train.train_profile(prof, progress=False)
        assert train.load_state(run) == kill_at
    with pytest.MonkeyPatch.context() as m:
        taken = _count_steps(m)
        train.train_profile(prof, progress=False)
    assert taken[0] == 32 and tree_hashes(run) == bf16_reference[1]


def test_bf16_really_autocasts_yet_agrees_with_fp32_and_keeps_fp32_checkpoints(tiny_reference, bf16_reference):
    """One seed in both precisions: the same initialisation (step 0), other weights after it (the forward really ran
    in bf16), validation in the run's precision, and final validation losses within 0.01 nats (measured: about
    1e-4 on this run). Checkpoints hold fp32 weights; run.json and suite.json record the precision."""
    import pandas as pd
    import torch
    from safetensors.torch import load_file

    (fp32_run, fp32), (bf16_run, bf16) = tiny_reference, bf16_reference
    assert bf16["step0/model.safetensors"] == fp32["step0/model.safetensors"]
    assert bf16["step48/model.safetensors"] != fp32["step48/model.safetensors"]
    assert bf16["step48/config.json"] == fp32["step48/config.json"]  # the bf16 step's attention is not recorded
    a, b = (pd.read_parquet(r / "val_log.parquet").val_loss for r in (fp32_run, bf16_run))
    # step 0, the same weights: the validation forward ran in bf16 too, and moved the mean by little (about 1e-5)
    assert a.iloc[0] != b.iloc[0] and abs(a.iloc[0] - b.iloc[0]) < 1e-3
    assert (a.iloc[1:] != b.iloc[1:]).any() and abs(a.iloc[-1] - b.iloc[-1]) < 0.01
    assert {t.dtype for t in load_file(str(bf16_run / "step48" / "model.safetensors")).values()} == {torch.float32}
    assert io.read_json(bf16_run / "run.json")["precision"] == "bf16"
    assert io.read_json(bf16_run.parent / "suite.json")["precision"] == {"lmconv": "bf16"}


def test_a_bf16_step_on_the_cpu_is_compiled_and_computes_the_eager_steps_loss(bf16_reference):
    """The bf16 step runs compiled (recorded in run.json and in the profile's hash); fp32 stays eager. The compiled
    loss and gradients are the eager ones up to rounding (the same function: 1e-5 in the loss, 2e-3 relative in
    each gradient; measured about 1e-6 and 1e-4)."""
    import torch

    bf16 = _tiny("tinycompiled", precision="bf16").arm().train
    assert train.step_loss(bf16) is not train._lm_loss
    assert train.step_loss(profiles.TrainSettings(1, 1)) is train._lm_loss  # fp32: eager
    assert io.read_json(bf16_reference[0] / "run.json")["compiled"] == "inductor"
    prof = _tiny("tinycompiled")
    model, x = train.init_model(prof, prof.size("xs"), 1), torch.arange(65).reshape(1, 65) % 200
    out = {}
    with train._deterministic(True):
        for name, fn in (("eager", train._lm_loss), ("compiled", train.step_loss(bf16))):
            model.zero_grad()
            loss = fn(model, x, "bf16")
            loss.backward()
            out[name] = float(loss), [p.grad.clone() for p in model.parameters()]
    (le, ge), (lc, gc) = out["eager"], out["compiled"]
    assert abs(le - lc) < 1e-5
    assert all(float((a - b).norm() / a.norm()) < 2e-3 for a, b in zip(ge, gc, strict=True))


def test_the_hash_names_the_step_compiler(monkeypatch):
    """A bf16 profile hashes apart from the same profile whose steps ran eagerly (they round differently); fp32
    profiles, never compiled, keep the hash they had."""
    smoke = {k: v for k, v in profiles.load("smoke").raw.items() if k != "companions"}
    bf16 = smoke | {"train": smoke["train"] | {"precision": "bf16"}}
    compiled = profiles.parse(bf16, "x").sha256, profiles.parse(smoke, "x").sha256
    monkeypatch.setattr(profiles, "COMPILED_STEPS", {})
    assert profiles.parse(bf16, "x").sha256 != compiled[0]
    assert profiles.parse(smoke, "x").sha256 == compiled[1]
    # bf16 validation is hashed too (it changes the logs): another validation, another hash (compiler held fixed)
    eager = profiles.parse(bf16, "x").sha256
    monkeypatch.setattr(profiles, "VALIDATION_PRECISION", "fp32")
    assert profiles.parse(bf16, "x").sha256 != eager
    assert profiles.parse(smoke, "x").sha256 == compiled[1]


def test_validation_runs_in_the_training_precision():
    """evaluate() of one model: bf16 really autocasts (another value) yet agrees with fp32 within 1e-3 nats."""
    prof = _tiny("tinyval")
    model = train.init_model(prof, prof.size("xs"), 1)
    windows = (np.arange(4 * 65).reshape(4, 65) * 7) % 200
    fp32, bf16 = (train.evaluate(model, windows, p) for p in ("fp32", "bf16"))
    assert fp32 == train.evaluate(model, windows) and fp32 != bf16 and abs(fp32 - bf16) < 1e-3


def test_a_compiled_step_without_a_cxx_compiler_is_refused_before_training(monkeypatch):
    from torch._inductor import cpp_builder, exc

    def missing():
        raise exc.InvalidCxxCompiler

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", missing)
    prof = _tiny("tinynocxx", precision="bf16")
    with pytest.raises(LmconvError, match="needs a C\\+\\+ compiler") as e:
        train.train_profile(prof, progress=False)
    assert "LMCONV_PRECISION=fp32" in e.value.fix and "g++" in e.value.fix
    assert not paths.suite_dir(prof.name).exists()


def test_two_jobs_train_the_same_bf16_files_as_one_at_a_time():
    """Compiled bf16 steps in two spawned processes (each compiling for itself) write the files of one process
    training the runs in turn: the compiled kernels are the same in every process, at two threads too."""
    hashes = {}
    for jobs in (1, 2):
        prof = _tiny(f"tinybf16jobs{jobs}", precision="bf16")
        prof = profiles.parse(prof.raw | {"seeds": [1, 2]}, prof.name)
        hashes[jobs] = _run_hashes(train.train_profile(prof, progress=False, jobs=jobs))
    assert len(hashes[1]) == 2 and hashes[2] == hashes[1]


def _run_hashes(root: Path) -> dict[str, dict[str, str]]:
    return {run.name: tree_hashes(run) for run in sorted(root.iterdir()) if (run / "run.json").exists()}


def test_two_jobs_train_the_same_files_as_one_at_a_time():
    """The smoke suite at one thread per run: trained two runs at once (spawned processes) or one after another,
    every file of every run is the same."""
    smoke = profiles.load("smoke").raw
    one_thread = smoke | {"train": smoke["train"] | {"threads": 1}}
    hashes = {}
    for jobs in (1, 2):
        prof = profiles.parse(one_thread, f"smokejobs{jobs}")
        shutil.rmtree(paths.suite_dir(prof.name), ignore_errors=True)
        hashes[jobs] = _run_hashes(train.train_profile(prof, progress=False, jobs=jobs))
    assert len(hashes[1]) == 6 and hashes[2] == hashes[1]
    with pytest.raises(LmconvError, match="jobs must be a whole number ≥ 1, got 0"):
        train.train_profile(prof, progress=False, jobs=0)


def test_jobs_wait_for_the_run_a_branch_starts_from_and_stop_with_a_workers_error():
    wsd = {"schedule": {"kind": "wsd", "decay_fraction": 0.5, "final_ratio": 0.0}}
    arms = {"constant": {}, "wsd": wsd | {"branch_from": {"arm": "constant", "step": 16}}}
    over = {"steps": 32, "schedule": {"kind": "constant", "warmup": 8}, "threads": 1}
    ref = _run_hashes(train.train_profile(_tiny("tinyjobs1", arms, **over), progress=False))
    prof = _tiny("tinyjobs2", arms, **over)
    root = train.train_profile(prof, progress=False, jobs=2)  # wsd started early would find no state to start from
    assert _run_hashes(root) == ref
    # a worker's error comes back as itself (its fix included), and stops the call
    shutil.rmtree(root / "wsd-xs-seed1")
    weights = root / "constant-xs-seed1" / "step16" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    with pytest.raises(LmconvError, match=r"step16/model\.safetensors does not match its recorded sha256") as e:
        train.train_profile(prof, progress=False, jobs=2)
    assert e.value.fix.startswith("delete ")


def _workers(parent: int) -> list[int]:
    """The spawned training workers of process ``parent`` (not its resource tracker)."""
    out = []
    for kid in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
        cmdline = Path(f"/proc/{kid}/cmdline").read_bytes() if Path(f"/proc/{kid}").exists() else b""
        if b"spawn_main" in cmdline:
            out.append(int(kid))
    return out


def _ended(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads child processes from /proc (Linux)")
def test_killing_a_parallel_training_ends_its_workers(tmp_path):
    """`lmconv train` killed (SIGKILL: no handler runs) while two runs train at once: its workers end too, instead
    of training on unseen beside the next command (a rerun resumes the runs)."""
    env = os.environ | {"LMCONV_HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "lmconv", "train", "--profile", "smoke", "--jobs", "2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while len(workers := _workers(proc.pid)) < 2:
            assert proc.poll() is None and time.time() < deadline, "the training ended before both workers started"
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
    # A worker killed while still starting (spawn imports torch before the initializer that watches the parent
    # runs: over 10 s on a loaded 2-core machine, seen in CI) ends as soon as that initializer runs.
    deadline = time.time() + 120
    while not all(_ended(w) for w in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert all(_ended(w) for w in workers), f"workers {workers} outlived the killed training"
