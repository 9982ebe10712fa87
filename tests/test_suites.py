"""The naming contract, profiles and their checkpoint schedules, and clear errors for what a suite lacks."""

import inspect
import typing

import pytest

from lmconv.checkpoints import suites
from lmconv.checkpoints.suites import CheckpointRef
from lmconv.errors import LmconvError
from lmconv.findings import papers
from lmconv.training import profiles


@pytest.mark.parametrize(
    ("family", "size", "seed", "name"),
    [
        ("lmconv", "0.3m", 1, "lmconv-0.3m-seed1"),
        ("anneal-constant", "1.1m", 4, "anneal-constant-1.1m-seed4"),
        ("pythia", "160m", 3, "pythia-160m-seed3"),
    ],
)
def test_run_names_round_trip(family, size, seed, name):
    assert suites.format_run(family, size, seed) == name
    assert suites.parse_run(name) == (family, size, seed)


def test_revisions():
    assert suites.format_revision(512) == "step512"
    assert suites.parse_revision("step143000") == 143000
    assert suites.parse_revision("main") == papers.PYTHIA_STEPS
    assert suites.parse_revision("main", final_step=2000) == 2000
    with pytest.raises(LmconvError):
        suites.parse_revision("512")


def test_hub_repo_names():
    assert suites.format_hub_repo("160m", 3) == "EleutherAI/pythia-160m-seed3"
    assert suites.format_hub_repo("70m", 0) == "EleutherAI/pythia-70m"  # seed 0: the original, no suffix
    assert suites.parse_hub_repo("EleutherAI/pythia-70m") == ("pythia", "70m", 0)
    assert suites.parse_hub_repo("EleutherAI/pythia-410m-seed9") == ("pythia", "410m", 9)


def test_bad_names_are_rejected():
    with pytest.raises(LmconvError):
        suites.parse_run("lmconv-0.3m")
    with pytest.raises(LmconvError):
        suites.format_run("lmconv", "a-b", 1)


def test_polypythia_steps_match_the_release():
    steps = papers.POLYPYTHIA_STEPS
    assert steps[:11] == (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
    assert steps[11] == 1000 and steps[-1] == 143000 and len(steps) == 154


def test_profile_checkpoint_schedules():
    d = profiles.load("default")
    got = d.checkpoint_steps()
    assert got[:9] == [0, 1, 2, 3, 4, 6, 8, 11, 16]  # half-powers of two, rounded
    assert 256 in got and got[got.index(256) + 1] == 384  # then every 128
    assert got[-1] == d.arm().train.steps
    assert got == sorted(set(got))
    assert profiles.CheckpointSchedule(512, 1, 1000).steps(143000)[:12] == [
        0,
        1,
        2,
        4,
        8,
        16,
        32,
        64,
        128,
        256,
        512,
        1512,
    ]


def test_schedules_hit_their_defining_values():
    s = profiles.Schedule(kind="cosine", warmup=10, final_ratio=0.1)
    assert s.multiplier(0, 100) == pytest.approx(0.1)
    assert s.multiplier(9, 100) == pytest.approx(1.0)
    assert s.multiplier(100, 100) == pytest.approx(0.1)
    w = profiles.Schedule(kind="wsd", warmup=10, final_ratio=0.0, decay_fraction=0.2)
    assert w.multiplier(79, 100) == 1.0 and w.multiplier(90, 100) == pytest.approx(0.5)
    st = profiles.Schedule(kind="step", warmup=0)
    assert st.multiplier(79, 100) == 1.0 and st.multiplier(80, 100) == 0.316 and st.multiplier(95, 100) == 0.1


def test_profile_errors_name_the_problem(tmp_path):
    with pytest.raises(LmconvError, match="unknown profile 'nope'"):
        profiles.load("nope")
    raw = profiles.load("smoke").raw | {"sizes": {"bad-name": {"hidden": 16, "layers": 1, "heads": 2}}}
    with pytest.raises(LmconvError, match="contains '-'"):
        profiles.parse(raw)
    with pytest.raises(LmconvError, match="unknown size"):
        profiles.load("smoke").size("huge")


def test_local_source_reports_what_is_missing(smoke_suite):
    src = smoke_suite.source
    assert src.sizes("lmconv") == ["s", "xs"]
    assert src.seeds("lmconv", "s") == [1, 2, 3]
    with pytest.raises(LmconvError, match="unknown step 7"):
        src.check(CheckpointRef("lmconv", "s", 1, 7))
    with pytest.raises(LmconvError, match="unknown seed 9"):
        src.check(CheckpointRef("lmconv", "s", 9, 0))
    with pytest.raises(LmconvError, match="unknown size 'xl'"):
        src.check(CheckpointRef("lmconv", "xl", 1, 0))


def test_size_names_state_their_parameter_counts():
    """A size called "2.5m" has 2.5 million parameters (to the name's precision), in every profile."""
    import re

    from lmconv.training import train

    seen = {}
    for name in profiles.available():
        prof = profiles.load(name)
        for size in prof.sizes.values():
            m = re.fullmatch(r"(\d+(?:\.\d+)?)m", size.name)
            if not m or size in seen:
                continue
            model = train.init_model(prof, size, 0)
            seen[size] = n = sum(p.numel() for p in model.parameters())
            digits = len(m.group(1).split(".")[1]) if "." in m.group(1) else 0
            assert round(n / 1e6, digits) == pytest.approx(float(m.group(1))), (name, size, n)
    assert len(seen) >= 5


def test_gpu_profile_extends_the_default_suite():
    d, g = profiles.load("default"), profiles.load("gpu")
    assert g.arm().train.device == "cuda" and d.arm().train.device == "cpu"
    for key in ("corpus", "vocab_size", "context", "checkpoints"):
        assert d.raw[key] == g.raw[key], key
    assert d.raw["train"] == {k: v for k, v in g.raw["train"].items() if k != "device"}
    assert all(g.sizes[k] == v for k, v in d.sizes.items()) and len(g.sizes) > len(d.sizes)
    assert set(d.seeds) < set(g.seeds)
    assert d.checkpoint_steps() == g.checkpoint_steps()


def test_a_gpu_profile_without_a_gpu_stops_before_writing(tmp_path, monkeypatch):
    import torch

    from lmconv import paths
    from lmconv.training import train

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LMCONV_HOME", str(tmp_path))
    with pytest.raises(LmconvError, match="sees no CUDA device"):
        train.train_profile(profiles.load("gpu"))
    assert not paths.suite_dir("gpu").exists()


def test_sizes_need_an_even_number_of_rotary_dimensions():
    raw = profiles.load("smoke").raw | {"sizes": {"odd": {"hidden": 168, "layers": 1, "heads": 6}}}
    with pytest.raises(LmconvError, match="odd number of rotary dimensions"):
        profiles.parse(raw)
    with pytest.raises(LmconvError, match="unknown device"):
        profiles.parse(profiles.load("smoke").raw | {"train": {**profiles.load("smoke").raw["train"], "device": "tpu"}})


# ---------------------------------------------------------------------------------------------------------
# one protocol for every checkpoint source
# ---------------------------------------------------------------------------------------------------------

PROTOCOL_METHODS = ("check", "sha", "load_model", "load_tokenizer")


def test_both_sources_are_checkpoint_sources(tmp_path):
    assert isinstance(suites.LocalSource(tmp_path), suites.CheckpointSource)
    assert isinstance(suites.HubSource(), suites.CheckpointSource)

    class Partial:  # lacks load_tokenizer: not a source
        def check(self, ref): ...
        def sha(self, ref): ...
        def load_model(self, ref, dtype=None): ...

    assert not isinstance(Partial(), suites.CheckpointSource)


def test_protocol_lists_what_the_engine_calls():
    names = {n for n, v in vars(suites.CheckpointSource).items() if inspect.isfunction(v) and not n.startswith("_")}
    assert names == set(PROTOCOL_METHODS)


@pytest.mark.parametrize("cls", [suites.LocalSource, suites.HubSource])
@pytest.mark.parametrize("name", PROTOCOL_METHODS)
def test_source_methods_have_the_protocol_signature(cls, name):
    want, got = inspect.signature(getattr(suites.CheckpointSource, name)), inspect.signature(getattr(cls, name))
    assert list(got.parameters) == list(want.parameters), (cls, name)
    for p, q in zip(got.parameters.values(), want.parameters.values(), strict=True):
        assert (p.kind, p.default, p.annotation) == (q.kind, q.default, q.annotation), (cls, name, p)
    assert got.return_annotation == want.return_annotation, (cls, name)


def test_engine_and_analyses_take_a_checkpoint_source():
    from lmconv.analysis import engine

    hints = typing.get_type_hints(engine.analyze)
    assert hints["source"] is suites.CheckpointSource
    assert typing.get_type_hints(suites.check_same_tokenizer)["source"] is suites.CheckpointSource
