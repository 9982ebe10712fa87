"""Profiles are checked against their schema when they load, before a tokenizer is trained or a step is run:
every problem is an LmconvError naming the file, the key path, what was wrong and the fix."""

import copy
import re

import pytest
import yaml

from lmconv import paths
from lmconv.errors import LmconvError
from lmconv.io import sha256_json
from lmconv.training import profiles


def base() -> dict:
    """A profile with arms and a branch (smoke-anneal's content), to break one key at a time."""
    return copy.deepcopy(profiles.load("smoke-anneal").raw)


def rejected(tmp_path, raw: dict, path: str, *words: str) -> LmconvError:
    """Load ``raw`` from a file; the error must name that file and ``path``, say ``words`` and give a fix."""
    f = tmp_path / "mine.yaml"
    f.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(LmconvError) as e:
        profiles.load(f)
    text = str(e.value)
    assert str(f) in text and re.search(rf"(^|\s){re.escape(path)}:", text), text
    assert all(w in text for w in words), text
    assert e.value.fix, text
    return e.value


def reference(raw: dict, name: str) -> profiles.Profile:
    """The Profile the dataclasses' own constructors build from ``raw``, unvalidated (what the loader built before
    the schema): the arms merge ``train`` with their overrides, one level deep as the shipped profiles do."""

    def settings(over: dict) -> profiles.TrainSettings:
        d = {**raw["train"], **over, "schedule": {**raw["train"].get("schedule", {}), **over.get("schedule", {})}}
        sched = {k: tuple(v) if isinstance(v, list) else v for k, v in d.pop("schedule").items()}
        if d.get("precision") == "auto":  # what this machine trains in (profiles.native_precision)
            d["precision"] = profiles.native_precision(d.get("device", "cpu"))
        return profiles.TrainSettings(
            **{k: tuple(v) if k == "betas" else v for k, v in d.items()}, schedule=profiles.Schedule(**sched)
        )

    arms = raw.get("arms") or {raw.get("family", "lmconv"): {}}
    ckpt = raw["checkpoints"] | {"extra": tuple(raw["checkpoints"].get("extra", ()))}
    auto = {
        a: settings(o or {}).precision
        for a, o in arms.items()
        if {**raw["train"], **(o or {})}.get("precision") == "auto"
    }
    return profiles.Profile(
        name, raw["description"], raw["corpus"], raw["vocab_size"], raw["context"], tuple(raw["seeds"]),
        {str(k): profiles.Size(str(k), **v) for k, v in raw["sizes"].items()},
        {a: profiles.Arm(a, settings(o or {})) for a, o in arms.items()},
        profiles.CheckpointSchedule(**ckpt), profiles.ProbeSettings(**raw["probe"]),
        profiles.DownstreamSettings(**raw.get("downstream", {})), raw.get("jobs", 1), raw, auto,
    )  # fmt: skip


@pytest.mark.parametrize("name", profiles.available())
def test_shipped_profiles_load_unchanged(name):
    """Validation changes no value: the objects equal the plain constructors' (types included), and ``raw`` is the
    file's content, so the hash recorded in suite.json (``profile_sha256``) is the one the suites were trained at."""
    prof = profiles.load(name)
    raw = yaml.safe_load((paths.PROFILES / f"{name}.yaml").read_text(encoding="utf-8"))
    ref = reference(raw, name)
    assert prof == ref
    assert repr(profiles.to_dict(prof)) == repr(profiles.to_dict(ref))  # 1.0 stays 1.0, tuples stay tuples
    assert prof.raw == raw
    skip = ("description", "companions", "downstream", "jobs")  # prose, other suites, downstream sets, parallelism
    hashed = {k: v for k, v in raw.items() if k not in skip}
    if hashed["train"].get("precision") == "auto":  # hashed as the precision it resolved to
        hashed["train"] = hashed["train"] | {
            "precision": profiles.native_precision(hashed["train"].get("device", "cpu"))
        }
    if hashed["train"].get("precision") == "fp32":  # the default, hashed as a profile without the key
        hashed["train"] = {k: v for k, v in hashed["train"].items() if k != "precision"}
    compiled = {profiles.COMPILED_STEPS.get((a.train.device, a.train.precision)) for a in prof.arms.values()}
    if compiled - {None}:  # how a step is compiled, where it is (a bf16 step on the CPU)
        hashed["compiled_step"] = sorted(compiled - {None})
    if {a.train.precision for a in prof.arms.values()} != {"fp32"}:  # validation in the step's precision
        hashed["validation"] = "step precision"
    assert prof.sha256 == sha256_json(hashed)


def test_jobs_is_a_positive_count_outside_the_hash(tmp_path):
    """How many runs train at once changes no file, so it leaves the hash (and the suites) as they are."""
    raw = base()
    raw["jobs"] = 2
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    prof = profiles.load(path)
    assert prof.jobs == 2 and prof.sha256 == profiles.parse(base(), "p").sha256
    raw["jobs"] = 0
    rejected(tmp_path, raw, "jobs", "≥ 1", "got 0")


def test_checkpoints_every_zero_is_rejected_not_looped_on(tmp_path):
    raw = base()
    raw["checkpoints"]["every"] = 0  # CheckpointSchedule.steps would add log_until + 0 forever
    rejected(tmp_path, raw, "checkpoints.every", "≥ 1", "got 0")


def test_checkpoints_per_octave_zero_is_rejected(tmp_path):
    raw = base()
    raw["checkpoints"]["per_octave"] = 0  # 2 ** (k / 0): a ZeroDivisionError at the first training run
    rejected(tmp_path, raw, "checkpoints.per_octave", "≥ 1")


def test_unknown_keys_name_the_closest_known_one(tmp_path):
    raw = base()
    raw["arm"] = raw.pop("arms")  # silently trained the one arm `lmconv` before
    rejected(tmp_path, raw, "arm", "not a known key", "did you mean `arms`?")
    raw = base()
    raw["arms"]["wsd"]["lrr"] = 1.0e-3  # an arm's override
    rejected(tmp_path, raw, "arms.wsd.lrr", "did you mean `lr`?")
    raw = base()
    raw["train"]["schedule"]["warmpu"] = 8  # a nested section
    rejected(tmp_path, raw, "train.schedule.warmpu", "did you mean `warmup`?")
    raw = base()
    raw["sizes"]["xs"]["hiden"] = 16
    err = rejected(tmp_path, raw, "sizes.xs.hiden", "did you mean `hidden`?")
    assert "name" not in err.fix  # the loader names a size after its key; the YAML cannot


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("sizes.xs.hidden", 0),
        ("sizes.xs.layers", -1),
        ("sizes.s.heads", 0),  # hidden % 0: a ZeroDivisionError before
        ("vocab_size", 0),
        ("vocab_size", -1024),
        ("vocab_size", 256),  # below the 256 byte tokens + <|endoftext|> every byte-level BPE has
        ("context", 0),
        ("context", -64),
        ("train.steps", 0),
        ("train.batch_size", -8),
        ("train.lr", 0),
        ("probe.tokens", 0),
    ],
)
def test_zero_or_negative_sizes_and_counts_are_rejected(tmp_path, path, value):
    raw = base()
    *parents, key = path.split(".")
    section = raw
    for p in parents:
        section = section[p]
    section[key] = value
    rejected(tmp_path, raw, path, f"got {value}")


def test_text_where_a_number_belongs_is_rejected_with_the_yaml_spelling(tmp_path):
    text = (paths.PROFILES / "smoke.yaml").read_text(encoding="utf-8").replace("lr: 3.0e-3", "lr: 3e-3")
    assert "lr: 3e-3" in text
    f = tmp_path / "mine.yaml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(LmconvError, match=r"train\.lr: must be a number, got the text '3e-3'") as e:
        profiles.load(f)  # PyYAML reads 3e-3 as text; the string once reached the optimizer
    assert str(f) in str(e.value) and "0.003" in e.value.fix
    assert yaml.safe_load("lr: 0.003")["lr"] == 0.003
    raw = base()
    raw["train"]["steps"] = "96"
    assert "write 96 (without quotes)" in rejected(tmp_path, raw, "train.steps", "whole number").fix
    raw = base()
    raw["train"]["threads"] = True
    rejected(tmp_path, raw, "train.threads", "got true")
    raw = base()
    raw["train"]["lr"] = 1  # a whole number is a number: accepted, as a float
    assert profiles.parse(raw).arm().train.lr == 1.0


@pytest.mark.parametrize("x", [1e-3, 3e-4, 1e-8, 2.5e-05, 1e20, 0.1, 1000.0, 1.5e-07])
def test_the_suggested_spelling_of_a_number_reads_back_as_that_number(x):
    from lmconv.training import profile_schema

    text = profile_schema.yaml_number(x)
    assert yaml.safe_load(f"v: {text}")["v"] == x and isinstance(yaml.safe_load(f"v: {text}")["v"], float), text


def test_a_huge_vocabulary_is_rejected_before_the_tokenizer_sees_it(tmp_path, monkeypatch):
    from lmconv.data import tokenizer

    def never(*a, **k):
        raise AssertionError("the tokenizer was trained")

    monkeypatch.setattr(tokenizer, "train", never)
    raw = base()
    raw["vocab_size"] = 2**32  # the Rust BPE trainer panicked and took the process down
    rejected(tmp_path, raw, "vocab_size", f"≤ {profiles.MAX_VOCAB}")


@pytest.mark.parametrize(("key", "empty"), [("seeds", []), ("sizes", {}), ("arms", {})])
def test_empty_seeds_sizes_or_arms_are_rejected(tmp_path, key, empty):
    raw = base() | {key: empty}  # "suite ready" with nothing trained, before
    rejected(tmp_path, raw, key, "has 0 entries", "at least 1")


def test_a_branch_step_that_is_no_checkpoint_is_rejected_at_load(tmp_path):
    raw = base()
    raw["arms"]["wsd"]["branch_from"]["step"] = 81  # reported only after the constant arm had trained, before
    err = rejected(tmp_path, raw, "arms.wsd.branch_from.step", "not a checkpoint of arm constant", "[80, 96]")
    assert "checkpoints.extra" in err.fix
    raw["checkpoints"]["extra"] = [81]  # the fix it names works
    assert profiles.parse(raw).arm("wsd").train.branch_from == {"arm": "constant", "step": 81}


def test_branches_name_an_existing_other_arm_without_cycles(tmp_path):
    raw = base()
    raw["arms"]["wsd"]["branch_from"]["arm"] = "constnt"
    rejected(tmp_path, raw, "arms.wsd.branch_from.arm", "no arm of this profile", "did you mean 'constant'?")
    raw = base()
    raw["arms"]["wsd"]["branch_from"]["arm"] = "wsd"
    rejected(tmp_path, raw, "arms.wsd.branch_from.arm", "cannot branch from itself")
    raw = base()
    raw["arms"]["constant"]["branch_from"] = {"arm": "wsd", "step": 16}
    rejected(tmp_path, raw, "arms", "cycle: constant → wsd → constant")
    raw = base()
    raw["arms"]["wsd"]["branch_from"]["step"] = 96
    rejected(tmp_path, raw, "arms.wsd.branch_from.step", "not before the end of arm wsd")


def test_choices_and_cross_key_rules(tmp_path):
    raw = base()
    raw["arms"]["wsd"]["schedule"]["kind"] = "wds"
    rejected(tmp_path, raw, "arms.wsd.schedule.kind", "unknown schedule 'wds'", "did you mean 'wsd'?")
    raw = base()
    raw["train"]["device"] = "tpu"
    rejected(tmp_path, raw, "train.device", "unknown device 'tpu'")
    raw = base()
    raw["arms"]["wsd"]["precision"] = "fp16"
    err = rejected(tmp_path, raw, "arms.wsd.precision", "unknown precision 'fp16'")
    assert "fp32, bf16" in err.fix and "did you mean" in err.fix, err.fix  # the allowed values, named
    raw = base() | {"seeds": [1, 2, 1]}
    rejected(tmp_path, raw, "seeds", "seed 1 listed more than once")
    raw = base()
    raw["probe"]["context"] = raw["context"] + 1
    rejected(tmp_path, raw, "probe.context", "longer than the models' context")
    raw = base()
    raw["train"]["schedule"] |= {"milestones": [0.5], "factors": [0.3, 0.1]}
    rejected(tmp_path, raw, "train.schedule.factors", "2 entries for 1 milestones")
    raw = base() | {"corpus": "brwon"}
    rejected(tmp_path, raw, "corpus", "unknown corpus 'brwon'")


def test_all_problems_come_in_one_error(tmp_path):
    raw = base() | {"vocab_size": 0, "context": "64"}
    raw["checkpoints"]["every"] = -1
    err = rejected(tmp_path, raw, "vocab_size", "has 3 problems")
    for line in ("  context: must be a whole number", "  checkpoints.every: must be ≥ 1"):
        assert line in str(err)
