"""Clear errors instead of tracebacks (issue 16, items 10, 11, 13, 14, 15 and the hub's duplicated revisions)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from lmconv import book, cli, io, paths
from lmconv.analysis.cache import CacheCorruption, TableCache
from lmconv.checkpoints import hubcache, suites
from lmconv.checkpoints.suites import CheckpointRef, LocalSource
from lmconv.errors import LmconvError
from lmconv.training import train
from lmconv.training.profiles import ProbeSettings

ROOT = Path(__file__).resolve().parents[1]
S1_96 = CheckpointRef("lmconv", "s", 1, 96)


@pytest.fixture
def suite_copy(smoke_suite, tmp_path) -> Path:
    """A copy of the smoke suite's checkpoints, to damage."""
    root = tmp_path / "smoke"
    shutil.copytree(smoke_suite.source.root, root)
    return root


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _rewrite(folder: Path, name: str, data: bytes) -> None:
    """Replace one checkpoint file and record its new sha256, so only the content is wrong."""
    (folder / name).write_bytes(data)
    sums = json.loads((folder / "checksums.json").read_text())
    sums[name] = io.sha256_bytes(data)
    (folder / "checksums.json").write_text(json.dumps(sums))


# item 10 ------------------------------------------------------------------------------------------------------


def test_the_cache_key_follows_the_config_as_well_as_the_weights(suite_copy):
    """Item 12: the same weights read as another network (config.json edited, its checksum updated) get another
    engine cache key, so no table of the old network is served for them; the key is stable otherwise."""
    from lmconv.io import sha256_file

    folder = suite_copy / S1_96.run / S1_96.revision
    before = LocalSource(suite_copy).sha(S1_96)
    assert LocalSource(suite_copy).sha(S1_96) == before
    config = json.loads((folder / "config.json").read_text())
    config["layer_norm_eps"] = config["layer_norm_eps"] * 10
    (folder / "config.json").write_text(json.dumps(config))
    sums = json.loads((folder / "checksums.json").read_text())
    sums["config.json"] = sha256_file(folder / "config.json")
    (folder / "checksums.json").write_text(json.dumps(sums))
    assert LocalSource(suite_copy).sha(S1_96) != before
    del sums["config.json"]
    (folder / "checksums.json").write_text(json.dumps(sums))
    with pytest.raises(LmconvError, match=r"checksums.json records no config.json \(only "):
        LocalSource(suite_copy).sha(S1_96)


def test_checksums_without_the_weights_or_malformed_are_named(suite_copy):
    folder = suite_copy / S1_96.run / S1_96.revision
    sums = json.loads((folder / "checksums.json").read_text())
    del sums["model.safetensors"]
    (folder / "checksums.json").write_text(json.dumps(sums))
    with pytest.raises(LmconvError, match=r"checksums.json records no model.safetensors \(only config.json, ") as e:
        LocalSource(suite_copy).sha(S1_96)
    assert str(folder) in e.value.fix and "lmconv train" in e.value.fix
    (folder / "checksums.json").write_text("[1, 2]")
    with pytest.raises(LmconvError, match=r"checksums.json does not map file names to sha256 strings"):
        LocalSource(suite_copy).verify_files(S1_96)
    (folder / "checksums.json").write_text('{"config.json": "ab')  # truncated by a full disk
    with pytest.raises(LmconvError, match=r"checksums.json is not valid JSON") as e:
        LocalSource(suite_copy).sha(S1_96)
    assert str(folder / "checksums.json") in str(e.value) and "delete it" in e.value.fix


def test_a_malformed_config_is_named(suite_copy):
    folder = suite_copy / S1_96.run / S1_96.revision
    _rewrite(folder, "config.json", b'{"hidden_size": 6')
    src = LocalSource(suite_copy)
    with pytest.raises(LmconvError, match=r"config.json is not valid JSON|cannot load the tokenizer"):
        src.load_tokenizer(S1_96)
    with pytest.raises(LmconvError, match=r"config.json"):
        src.load_model(S1_96)


def test_a_checkpoint_of_another_size_inside_a_run_is_refused(suite_copy):
    """xs's step 16 (with its own valid checksums) copied into run s-seed1: same names, another network."""
    target = suite_copy / "lmconv-s-seed1" / "step16"
    shutil.rmtree(target)
    shutil.copytree(suite_copy / "lmconv-xs-seed1" / "step16", target)
    src = LocalSource(suite_copy)
    with pytest.raises(LmconvError, match=r"lmconv-s-seed1/step16 is another network than lmconv-s-seed1/step0"):
        src.load_model(CheckpointRef("lmconv", "s", 1, 16))
    src.load_model(CheckpointRef("lmconv", "s", 1, 32))  # its neighbours still load


def test_corrupt_resume_state_is_named(tmp_path):
    state = tmp_path / "lmconv-s-seed1" / train.STATE_DIR
    state.mkdir(parents=True)
    (state / "state.json").write_text('{"step": 4')
    with pytest.raises(LmconvError, match=r"state.json is not valid JSON") as e:
        train.load_state(tmp_path / "lmconv-s-seed1")
    assert str(state / "state.json") in str(e.value)
    with pytest.raises(json.JSONDecodeError):  # callers that catch the standard error still do
        io.read_json(state / "state.json")


def test_train_with_an_unknown_arm_stops(capsys):
    rc, out, err = _cli(capsys, "train", "--profile", "smoke", "--arms", "nope", "--quiet")
    assert rc == 2 and "suite ready" not in out
    assert "unknown arm 'nope'" in err and "--arms lmconv" in err


def test_analyze_checks_its_options_as_the_chapters_do(capsys):
    rc, _, err = _cli(capsys, "analyze", "--profile", "smoke", "--probe-tokens", "5", "--quiet")
    assert rc == 2 and "probe_tokens=5" in err and "[64, 10000000]" in err and "lmconv analyze --help" in err
    rc, _, err = _cli(capsys, "analyze", "--profile", "smoke", "--seeds", "1,1", "--quiet")
    assert rc == 2 and "listed more than once" in err


def test_hub_cache_of_an_absent_step_or_seed_stops_before_copying(smoke_suite, tmp_path, capsys):
    out = tmp_path / "hub"
    for extra in (["--steps", "17"], ["--seeds", "9"]):
        rc, _, err = _cli(capsys, "hub-cache", "--profile", "smoke", "--out", str(out), *extra)
        assert rc == 2 and ("unknown step 17" in err or "unknown seed 9" in err), err
        assert not out.exists()


def test_a_cache_manifest_that_lacks_a_table_is_recomputed(tmp_path):
    cache = TableCache("t", tmp_path)
    df = pd.DataFrame({"x": [1, 2]})
    cache.save("k1", {"a": df, "b": df})
    man = cache.folder("k1") / "manifest.json"
    m = json.loads(man.read_text())
    del m["files"]["b"]  # the manifest no longer lists a table its folder holds
    man.write_text(json.dumps(m))
    with pytest.warns(CacheCorruption, match=r"lacks the table\(s\) \['b'\]"):
        assert cache.load("k1") is None
    cache.save("k2", {"a": df})
    with pytest.warns(CacheCorruption, match=r"lacks the table\(s\) \['b'\]"):
        assert cache.load("k2", expect=("a", "b")) is None  # the engine names the tables it needs
    cache.save("k3", {"a": df, "b": df})
    assert set(cache.load("k3", expect=("a", "b"))) == {"a", "b"}


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_full_or_read_only_disks_name_the_path_and_the_way_out(tmp_path, monkeypatch, capsys, code):
    def full(*_a, **_k):
        raise OSError(code, os.strerror(code))

    target = tmp_path / "corpus" / "manifest.json"
    with monkeypatch.context() as m:
        m.setattr(io.os, "replace", full)
        with pytest.raises(LmconvError, match="LMCONV_HOME") as e:
            io.write_json(target, {"a": 1})
    assert str(target) in str(e.value) and isinstance(e.value, OSError) and e.value.errno == code
    ckpt = tmp_path / "suites" / "smoke" / "lmconv-s-seed1" / "step8"
    with pytest.raises(LmconvError, match="LMCONV_HOME") as e, io.atomic_dir(ckpt) as tmp:
        (tmp / "model.safetensors").write_bytes(b"x")
        full()  # save_pretrained meets a full disk
    assert str(ckpt) in str(e.value) and not ckpt.exists()
    full_fs = os.statvfs(tmp_path)
    fake = dict(f_flag=os.ST_RDONLY, f_bavail=full_fs.f_bavail, f_frsize=full_fs.f_frsize)
    if code == errno.ENOSPC:
        fake = dict(f_flag=0, f_bavail=3, f_frsize=4096)
    with pytest.raises(LmconvError, match=os.strerror(code)) as e, io.atomic_dir(ckpt) as tmp:
        monkeypatch.setattr(io.os, "statvfs", lambda _p: type("St", (), fake)())
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")  # torch's words
    monkeypatch.undo()
    assert str(ckpt) in str(e.value) and "LMCONV_HOME" in e.value.fix
    with pytest.raises(RuntimeError, match="file write failed"), io.atomic_dir(ckpt):
        raise RuntimeError("file write failed")  # the same failure on a disk with room is not blamed on it
    from lmconv.data import corpus

    monkeypatch.setattr(corpus, "manifest", lambda _c: (_ for _ in ()).throw(OSError(code, "no", "/x/corpus/a")))
    rc, _, err = _cli(capsys, "corpus")
    assert rc == 2 and "/x/corpus/a" in err and "LMCONV_HOME" in err


def _read_only(home: Path, argv: list[str]) -> subprocess.CompletedProcess | None:
    """``lmconv ARGV`` with ``home`` mounted read-only (a private mount namespace), or None where that is refused."""
    if not shutil.which("unshare") or os.geteuid() != 0:
        return None
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        return None
    script = f'mount --bind "{home}" "{home}" && mount -o remount,ro,bind "{home}" && exec "$@"'
    cmd = ["unshare", "-m", "sh", "-c", script, "sh", sys.executable, "-m", "lmconv", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=os.environ)


def test_train_on_a_complete_suite_in_a_read_only_home_succeeds(smoke_suite, home):
    r = _read_only(home, ["train", "--profile", "smoke", "--quiet"])
    if r is None:
        pytest.skip("no private mount namespace here")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "suite ready" in r.stdout


# item 11 ------------------------------------------------------------------------------------------------------


@pytest.fixture
def no_execution(monkeypatch):
    """Parameter checks come before papermill: reaching it means a bad parameter got through."""
    import papermill

    def refuse(*_a, **_k):
        raise AssertionError("the chapter was executed")

    monkeypatch.setattr(papermill, "execute_notebook", refuse)


def test_an_unknown_chapter_parameter_lists_the_chapters_own(no_execution, tmp_path):
    with pytest.raises(LmconvError, match=r"chapter 01_suite takes no parameter 'nope'") as e:
        book.run_chapter("01_suite", {"profile": "smoke", "nope": 1}, tmp_path, quiet=True)
    assert "register" not in str(e.value) and e.value.fix.startswith("its parameters are profile")


def test_a_known_parameter_the_chapter_does_not_take_is_refused(no_execution, tmp_path):
    own = book.page_parameters(book.notebook_source("02_kl_convergence"))
    assert "steps" not in own
    with pytest.raises(LmconvError, match=r"chapter 02_kl_convergence takes no parameter 'steps'") as e:
        book.run_chapter("02_kl_convergence", {"profile": "smoke", "steps": [0, 96]}, tmp_path, quiet=True)
    assert all(name in e.value.fix for name in own)


def test_malformed_json_on_the_command_line_is_refused(no_execution, capsys):
    rc, _, err = _cli(capsys, "chapter", "02_kl_convergence", "--profile", "smoke", "-p", "seeds", "[1, 2")
    assert rc == 2 and "-p seeds '[1, 2' is not valid JSON" in err
    assert cli._param_value("sizes", "1.1m") == "1.1m" and cli._param_value("seeds", "[1, 2]") == [1, 2]


# item 13 ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_files_and_folders_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        io.write_text(tmp_path / "a.txt", "x")
        with io.atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("y")
        with io.atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"z")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~umask


# item 14 ------------------------------------------------------------------------------------------------------


def test_status_takes_a_profile_path_and_refuses_an_unknown_one(smoke_suite, capsys):
    rc, out, _ = _cli(capsys, "status", "--profile", str(paths.PROFILES / "smoke.yaml"))
    got = json.loads(out)
    assert rc == 0 and got["trained"] is True and got["profile"] == "smoke" and got["checkpoints"] > 0
    rc, out, err = _cli(capsys, "status", "--profile", "nope")
    assert rc == 2 and not out and "nope" in err


def test_every_option_has_help_and_hub_cache_offers_no_quiet():
    p = cli.parser()
    subs = next(a for a in p._actions if a.dest == "command").choices
    missing = [
        f"{name} {'/'.join(a.option_strings) or a.dest}"
        for name, sp in subs.items()
        for a in sp._actions
        if a.help in (None, "") and a.dest != "help"
    ]
    assert not missing, missing
    with pytest.raises(SystemExit):
        p.parse_args(["hub-cache", "--out", "x", "--quiet"])


def test_the_readme_states_where_the_data_home_is(monkeypatch, tmp_path):
    monkeypatch.delenv("LMCONV_HOME")
    monkeypatch.chdir(tmp_path)
    assert paths.data_home() == ROOT / "_data"  # not ./_data of the working directory
    readme = (ROOT / "README.md").read_text()
    assert "./_data" not in readme and "`_data` folder of this checkout" in readme


# item 15 ------------------------------------------------------------------------------------------------------


def test_stale_temporaries_of_killed_cache_writes_are_removed(tmp_path):
    bucket = tmp_path / "engine" / "ab"
    stale, fresh, old = bucket / ".abcd.x1.tmp", bucket / ".abce.x2.tmp", bucket / ".abcf.old"
    for d in (stale, fresh, old):
        d.mkdir(parents=True)
        (d / "pairs.parquet").write_bytes(b"partial")
    hour_ago = time.time() - 2 * 3600
    for d in (stale, old):
        os.utime(d, (hour_ago, hour_ago))
    entry = bucket / "abcd"
    entry.mkdir()
    os.utime(entry, (hour_ago, hour_ago))
    TableCache("engine", tmp_path)
    assert not stale.exists() and not old.exists()
    assert fresh.exists() and entry.exists()  # a live writer's temporary and a real entry stay


# the hub's duplicated revisions -------------------------------------------------------------------------------


@pytest.fixture
def duplicated_hub(smoke_suite, tmp_path) -> Path:
    """A hub-layout cache where revision step16 of pythia-s serves step96's weights (as pythia#205 reports)."""
    cache = tmp_path / "hf"
    hubcache.build(cache, smoke_suite.source, "lmconv", ["s"], [1, 2], [0, 16, 96], seed_map={1: 0, 2: 2})
    repo = hubcache.repo_folder(cache, "EleutherAI/pythia-s")
    snapshot = {rev: repo / "snapshots" / (repo / "refs" / rev).read_text() for rev in ("step16", "step96")}
    shutil.copy2(snapshot["step96"] / "model.safetensors", snapshot["step16"] / "model.safetensors")
    return cache


def test_duplicated_hub_revisions_stop_before_any_compute(duplicated_hub, monkeypatch):
    from lmconv import analysis

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = suites.HubSource(cache_dir=duplicated_hub, known_only=False)

    def no_compute(*_a, **_k):
        raise AssertionError("a model was loaded before the duplicate was found")

    monkeypatch.setattr(suites.HubSource, "load_model", no_compute)
    with pytest.raises(LmconvError, match=r"pythia-s: revisions step16 and step96 serve the same weights"):
        analysis.run_hub(["s"], [0, 2], [0, 16, 96], probe=ProbeSettings(256, 64, 32), source=hub, progress=False)
    fresh = suites.HubSource(cache_dir=duplicated_hub, known_only=False)
    assert fresh.sha(CheckpointRef("pythia", "s", 0, 0)) and fresh.sha(CheckpointRef("pythia", "s", 0, 96))


def test_known_bad_hub_revisions_are_recorded(recwarn, monkeypatch):
    bad = suites.KNOWN_BAD_REVISIONS["EleutherAI/pythia-2.8b"]
    assert "pythia#205" in bad["note"] and "86 of its 154" in bad["note"]
    suites.HubSource(known_only=False).check(CheckpointRef("pythia", "2.8b", 0, 1000))
    assert any("pythia#205" in str(w.message) for w in recwarn)
    # a revision the table names is refused outright; the run's others pass
    monkeypatch.setitem(suites.KNOWN_BAD_REVISIONS, "EleutherAI/pythia-s", {"revisions": {"step16"}, "note": "n"})
    hub = suites.HubSource(known_only=False)
    with pytest.raises(LmconvError, match=r"EleutherAI/pythia-s@step16 is a known bad revision \(n\)"):
        hub.check(CheckpointRef("pythia", "s", 0, 16))
    hub.check(CheckpointRef("pythia", "s", 0, 32))
