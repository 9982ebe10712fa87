"""Training profiles are data (YAML in ``lmconv/profiles``), read into typed, validated objects.

A profile names sizes, seeds, data, the optimizer and learning-rate schedule, and when checkpoints are kept.
It may hold several *arms* (variants of the training settings, e.g. schedules in a sweep); each arm is a suite
of its own whose family name is the arm's name.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field
from typing_extensions import TypedDict

from .. import paths
from ..data import corpus
from ..errors import LmconvError, choose, no_repeats
from ..io import sha256_json
from .profile_schema import (
    EXAMPLE,
    Count,
    Fraction,
    NonNegative,
    Positive,
    PositiveReal,
    Report,
    Text,
    choice_fix,
    closed,
    one_of,
)

SCHEDULES = ("cosine", "constant", "wsd", "step")
OPTIMIZERS = ("adamw", "muon")
DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "bf16")  # of a training step's matrix products; weights, optimizer, loss and checkpoints: fp32
# "auto": bf16 where the device multiplies bf16 matrices natively, else fp32 (see native_precision); resolved when
# the profile is read, and the resolved precision is part of the profile's hash and of every run's identity.
PRECISION_SETTINGS = ("auto", *PRECISIONS)
PRECISION_ENV = "LMCONV_PRECISION"  # fp32 or bf16: what `precision: auto` resolves to on this machine
# CPU flags of native bf16 matrix products (x86: AVX512-BF16 dot products, AMX tiles). Measured there: a training
# step of 1.1m took 0.68x and of 2.5m 0.54x the fp32 time (AMX Xeon); without them bf16 was 20-50x slower.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# How a training step of (device, precision) is compiled, where it is (others run eagerly): a bf16 step on the CPU
# by torch.compile (inductor's C++ kernels, static shapes). Measured one thread, 30 steps after warm-up (AMX Xeon,
# 2026-12-04): 0.3m 32 ms against 57 eager, 1.1m 63 against 89, 2.5m 140 against 158; a compiled fp32 step was
# slower (1.1m 189 against 131 ms), so fp32 stays eager. Part of the hash: compiled steps round differently.
COMPILED_STEPS = {("cpu", "bf16"): "inductor"}
# The validation loss of a run trained in bf16 has its forward in bf16 too (train.evaluate); hashed for such
# profiles, whose logs it changes (the checkpoints stay as they were), so no run mixes two kinds of validation.
VALIDATION_PRECISION = "step precision"
# the suites a book profile may name (see companion)
COMPANION_ROLES = ("anneal", "sweep", "decoupled", "ladder", "precision")
ROTARY_PCT = 0.25  # GPT-NeoX's partial rotary embedding, as in Pythia
# A byte-level BPE starts from 256 byte tokens plus <|endoftext|>; a smaller vocabulary gives ids the model's
# embedding lacks. The upper bound is far above any vocabulary trained here (Pythia's: 50,304); much larger ones
# end inside the Rust tokenizer (2**32 and more abort the process) or in an embedding that fills the memory.
MIN_VOCAB, MAX_VOCAB = 257, 2**20
VocabSize = Annotated[int, Field(strict=True, ge=MIN_VOCAB, le=MAX_VOCAB)]
Beta = Annotated[float, Field(strict=True, ge=0, lt=1)]  # Adam's moment decay rates
ScheduleKind = one_of("schedule", SCHEDULES)
Optimizer = one_of("optimizer", OPTIMIZERS)
Device = one_of("device", DEVICES)
Precision = one_of("precision", PRECISION_SETTINGS)
CompanionRole = one_of("companion role", COMPANION_ROLES)


@closed
@dataclass(frozen=True)
class Size:
    name: str
    hidden: Positive
    layers: Positive
    heads: Positive

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


@closed
@dataclass(frozen=True)
class Schedule:
    kind: ScheduleKind = "cosine"
    warmup: Count = 100
    final_ratio: Fraction = 0.1
    decay_fraction: Fraction = 0.2  # wsd: share of steps spent decaying at the end
    milestones: tuple[Fraction, ...] = (0.8, 0.9)  # step: fractions of training where the LR drops
    factors: tuple[NonNegative, ...] = (0.316, 0.1)  # step: LR multiplier after each milestone

    def multiplier(self, step: int, total: int) -> float:
        """LR multiplier used for the update that takes the weights from ``step`` to ``step + 1``."""
        if self.warmup > 0 and step < self.warmup:
            return (step + 1) / self.warmup
        if self.kind == "constant":
            return 1.0
        if self.kind == "cosine":
            span = max(total - self.warmup, 1)
            progress = min(max(step - self.warmup, 0) / span, 1.0)
            return self.final_ratio + (1 - self.final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        if self.kind == "wsd":
            start = self.decay_start(total)
            if step < start:
                return 1.0
            progress = min((step - start) / max(total - start, 1), 1.0)
            return 1.0 - (1.0 - self.final_ratio) * progress
        # step-wise
        m = 1.0
        for frac, factor in zip(self.milestones, self.factors, strict=True):
            if step >= round(frac * total):
                m = factor
        return m

    def decay_start(self, total: int) -> int:
        return round(total * (1 - self.decay_fraction))


@closed
class Branch(TypedDict):
    """Where an arm starts: another arm's saved state at one of that arm's checkpoint steps."""

    arm: Text
    step: Count


@closed
@dataclass(frozen=True)
class TrainSettings:
    steps: Positive
    batch_size: Positive
    optimizer: Optimizer = "adamw"
    lr: PositiveReal = 1e-3
    betas: tuple[Beta, Beta] = (0.9, 0.95)
    eps: PositiveReal = 1e-8
    weight_decay: NonNegative = 0.01
    muon_lr: PositiveReal | None = None  # Muon's peak LR; None: the AdamW LR (Muon matches AdamW's update RMS)
    grad_clip: NonNegative = 1.0  # 0: no clipping
    schedule: Schedule = field(default_factory=Schedule)
    threads: Positive = 2
    device: Device = "cpu"  # "cuda" trains (and analyses) on a GPU; the project's checks run on the CPU
    # "bf16": each step's forward runs under bf16 autocast (fp32 master weights and optimizer, loss in fp32, backward
    # outside the autocast); validation loss, spectra and checkpoints stay fp32. Part of a checkpoint's identity.
    # "auto": bf16 where the device has native bf16 matrix products, else fp32 (resolved when the profile is read).
    precision: Precision = "fp32"
    val_every: Positive = 50
    val_tokens: Positive = 16384
    spectra_every: Count = 0  # record singular values of every weight matrix every N steps (0: never)
    branch_from: Branch | None = None  # {"arm": name, "step": N}: start from another arm's state at step N
    # The two sources of a run's randomness, fixed for every run of the arm (None: the run's own seed sets it, as
    # in the PolyPythias' main runs): the initial weights, and the order of the training batches.
    init_seed: Count | None = None
    data_seed: Count | None = None


@closed
@dataclass(frozen=True)
class CheckpointSchedule:
    log_until: Positive = 512
    per_octave: Positive = 1
    every: Positive = 1000
    extra: tuple[Count, ...] = ()  # further steps to keep (e.g. where another arm branches off)

    def steps(self, total: int) -> list[int]:
        """0, then log-spaced steps (``per_octave`` per doubling) up to ``log_until``, then every ``every``."""
        out = {0, total}
        k = 0
        while True:
            s = round(2 ** (k / self.per_octave))
            if s > min(self.log_until, total):
                break
            out.add(s)
            k += 1
        s = self.log_until
        while s <= total:
            out.add(s)
            s += self.every
        out.update(self.extra)
        return sorted(x for x in out if x <= total)


@closed
@dataclass(frozen=True)
class ProbeSettings:
    tokens: Positive = 16384
    context: Positive = 128
    stride: Positive = 64


@closed
@dataclass(frozen=True)
class DownstreamSettings:
    """The downstream sets' sizes (``lmconv.data.downstream``): at most ``pairs`` minimal pairs per phenomenon
    and ``lastword`` last-word passages, a seeded sample of the candidates (100 each: the cross-seed paper's 100
    pairs per BLiMP task). Not part of the profile's hash: they do not change the trained checkpoints."""

    pairs: Count = 100
    lastword: Count = 100


@dataclass(frozen=True)
class Arm:
    """One suite of a profile: a family name and its training settings."""

    family: str
    train: TrainSettings


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    corpus: str
    vocab_size: int
    context: int
    seeds: tuple[int, ...]
    sizes: dict[str, Size]
    arms: dict[str, Arm]
    checkpoints: CheckpointSchedule
    probe: ProbeSettings
    downstream: DownstreamSettings = DownstreamSettings()
    jobs: int = 1
    raw: dict = field(repr=False, compare=False, default_factory=dict)
    auto_precision: dict[str, str] = field(default_factory=dict)  # arm: what its `precision: auto` resolved to

    @property
    def sha256(self) -> str:
        """Hash of what determines the trained checkpoints (prose, companion suites, downstream sets and how many runs
        train at once excluded; what `precision: auto` resolved to and how the steps are compiled included)."""
        skip = ("description", "companions", "downstream", "jobs")
        hashed = _as_hashed({k: v for k, v in self.raw.items() if k not in skip}, self.auto_precision)
        if compilers := sorted({c for a in self.arms.values() if (c := step_compiler(a.train))}):
            hashed = {**hashed, "compiled_step": compilers}
        if {a.train.precision for a in self.arms.values()} - {"fp32"}:  # validation in the step's precision
            hashed = {**hashed, "validation": VALIDATION_PRECISION}
        return sha256_json(hashed)

    def checkpoint_steps(self, arm: str | None = None) -> list[int]:
        return self.checkpoints.steps(self.arm(arm).train.steps)

    def arm(self, name: str | None = None) -> Arm:
        if name is None:
            return next(iter(self.arms.values()))
        choose("arm", name, self.arms, f"arms of profile {self.name!r}")
        return self.arms[name]

    def size(self, name: str) -> Size:
        where = f"sizes of profile {self.name!r}: see lmconv/training/profiles/{self.name}.yaml"
        choose("size", name, self.sizes, where)
        return self.sizes[name]


def step_compiler(s: TrainSettings) -> str | None:
    """What compiles a training step of these settings (:data:`COMPILED_STEPS`), or None where it runs eagerly."""
    return COMPILED_STEPS.get((s.device, s.precision))


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU multiplies bf16 matrices natively: one of :data:`BF16_CPU_FLAGS` among the ``flags`` of
    ``/proc/cpuinfo`` (``cpuinfo``: its text; no such file, as off Linux: no)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    flags = {f for line in cpuinfo.splitlines() if line.startswith("flags") for f in line.partition(":")[2].split()}
    return any(f in flags for f in BF16_CPU_FLAGS)


def native_precision(device: str = "cpu") -> str:
    """What ``precision: auto`` trains in on this machine: ``$LMCONV_PRECISION`` if set, else bf16 where ``device``
    multiplies bf16 matrices natively (a CPU with :data:`BF16_CPU_FLAGS`, a CUDA device that supports bf16), else
    fp32."""
    forced = os.environ.get(PRECISION_ENV)
    if forced:
        if forced not in PRECISIONS:
            raise LmconvError(
                f"{PRECISION_ENV}={forced!r} is not a precision",
                f"set it to one of {', '.join(PRECISIONS)}, or unset it to let the machine decide",
            )
        return forced
    if device == "cuda":
        import torch

        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def _as_hashed(raw: dict, resolved: dict[str, str]) -> dict:
    """``raw`` as hashed: each ``precision: auto`` replaced by what it resolved to (``resolved``: arm → precision),
    so a profile hashes the same whether it asks for auto or writes the precision auto gave (the checkpoints are
    the same), and ``train.precision: fp32`` (written or resolved) left out as the default it is, so the suites
    trained before the key existed keep their hash. Where arms that inherit ``train.precision: auto`` resolved
    differently (devices differ), each arm's resolution is hashed as well."""
    if not resolved and (raw.get("train") or {}).get("precision") != "fp32":
        return raw
    out = copy.deepcopy(raw)
    arms = out.get("arms") or {}
    inherited = {resolved[a] for a in resolved if "precision" not in (arms.get(a) or {})}
    for a, over in arms.items():
        if isinstance(over, dict) and over.get("precision") == "auto":
            over["precision"] = resolved[a]
    train = out["train"]
    if train.get("precision") == "auto":
        if len(inherited) == 1:
            train["precision"] = inherited.pop()
        elif inherited:
            out["precision_resolved"] = dict(sorted(resolved.items()))
    if train.get("precision") == "fp32":
        del train["precision"]
    return out


def companion(profile: str, role: str, given: str | None = None) -> str:
    """The suite a book profile uses for ``role`` (``anneal``, ``sweep``): ``given`` if set, else the profile's
    ``companions`` entry; a clear error when it names none."""
    if given:
        return given
    named = (load(profile).raw.get("companions") or {}).get(role)
    if not named:
        raise LmconvError(
            f"profile {profile!r} names no {role} suite",
            f"add `companions: {{{role}: NAME}}` to its YAML, or pass the chapter parameter {role}_profile",
        )
    return str(named)


def needed_companions(profile: str | Profile) -> dict[str, str]:
    """The companion suites a book profile needs trained, by role: its ``companions`` entries, less the
    ``precision`` companion where the profile's own runs already train in the companion's precision (``auto``
    resolved to fp32: the main suite is then the reference itself, and nothing is trained twice)."""
    prof = profile if isinstance(profile, Profile) else load(profile)
    named = dict(prof.raw.get("companions") or {})
    if "precision" in named and precisions(prof) <= precisions(load(named["precision"])):
        del named["precision"]
    return named


def precisions(profile: Profile) -> set[str]:
    """The precisions the profile's arms train in (``auto`` resolved)."""
    return {a.train.precision for a in profile.arms.values()}


def available() -> list[str]:
    return sorted(p.stem for p in paths.PROFILES.glob("*.yaml"))


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@closed
@dataclass(frozen=True)
class ProfileFile:
    """The keys of a profile's YAML, checked before a :class:`Profile` is built from them."""

    description: Text
    corpus: Text  # "brown" or "textdir:/path/to/folder"
    vocab_size: VocabSize
    context: Positive
    seeds: Annotated[list[Count], Field(min_length=1)]
    sizes: Annotated[dict[Any, dict], Field(min_length=1)]  # name: a Size's keys but its name
    train: TrainSettings
    checkpoints: CheckpointSchedule
    probe: ProbeSettings
    downstream: DownstreamSettings = DownstreamSettings()
    # Runs trained at once, each in a process of its own at the arm's thread count (the files are the same as one
    # at a time). Not part of the hash. `lmconv train --jobs N` overrides it.
    jobs: Positive = 1
    arms: Annotated[dict[Text, dict | None], Field(min_length=1)] | None = None  # name: overrides of train
    family: Text | None = None  # the one arm's name in a profile without arms (default "lmconv")
    companions: dict[CompanionRole, Text] | None = None


def parse(raw: dict, name: str = "<profile>", source: str | None = None) -> Profile:
    """Validate a profile given as a dict (the YAML's content); ``source`` (its file) names it in errors.

    Every problem is found before anything runs, and raised as one :class:`LmconvError` naming each key."""
    report = Report(source or f"profile {name!r}")
    top = report.validate(ProfileFile, raw)
    report.raise_if_any()
    sizes = {str(k): _size(report, str(k), s) for k, s in top.sizes.items()}
    arms = _arms(report, raw, top)
    report.raise_if_any()
    auto = {a: native_precision(arm.train.device) for a, arm in arms.items() if arm.train.precision == "auto"}
    arms = {a: Arm(a, replace(arm.train, precision=auto[a])) if a in auto else arm for a, arm in arms.items()}
    profile = Profile(
        name=name,
        description=top.description,
        corpus=top.corpus,
        vocab_size=top.vocab_size,
        context=top.context,
        seeds=tuple(top.seeds),
        sizes=sizes,
        arms=arms,
        checkpoints=top.checkpoints,
        probe=top.probe,
        downstream=top.downstream,
        jobs=top.jobs,
        raw=raw,
        auto_precision=auto,
    )
    _check(report, profile)
    report.raise_if_any()
    return profile


def _size(report: Report, key: str, spec: dict) -> Size | None:
    path = ("sizes", key)
    if "-" in key or "/" in key:
        fix = "rename it: size names must fit {family}-{size}-seed{k}"
        report.add(path, f"size name {key!r} contains '-' or '/'", fix)
    if "name" in spec:
        report.add((*path, "name"), "is not a key of a size (a size is named by its key)", "remove it")
        return None
    size = report.validate(Size, {**spec, "name": key}, path, implied=("name",))
    if size is None:
        return None
    if size.hidden % size.heads:
        report.add(
            (*path, "heads"),
            f"hidden {size.hidden} is not divisible by heads {size.heads}",
            "choose a number of heads that divides hidden",
        )
    elif int(size.head_dim * ROTARY_PCT) % 2:
        report.add(
            (*path, "heads"),
            f"head dimension {size.head_dim} gives an odd number of rotary dimensions "
            f"({int(size.head_dim * ROTARY_PCT)}); rotary embeddings rotate pairs",
            "choose heads so that hidden / heads is a multiple of 8",
        )
    return size


def _arms(report: Report, raw: dict, top: ProfileFile) -> dict[str, Arm]:
    """Each arm's settings: ``train`` with the arm's overrides merged in (a profile without arms has one)."""
    if top.arms is None:
        family = top.family or "lmconv"
        _arm_name(report, ("family",), family)
        return {family: Arm(family, top.train)}
    if top.family is not None:
        report.add(("family",), "names the one arm of a profile without arms; this one has arms", "remove it")
    arms = {}
    for arm, over in top.arms.items():
        _arm_name(report, ("arms", arm), arm)
        settings = report.validate(TrainSettings, _merge(raw["train"], over or {}), ("arms", arm))
        if settings is not None:
            arms[arm] = Arm(arm, settings)
    return arms


def _arm_name(report: Report, path: tuple, name: str) -> None:
    if "-seed" in name or "/" in name:
        fix = "rename it: runs are named {family}-{size}-seed{k}"
        report.add(path, f"arm name {name!r} contains '-seed' or '/'", fix)


def _origin(profile: Profile, arm: str, *keys: str) -> tuple:
    """Where an arm's setting ``keys`` (a path into its train settings) is written: the arm's overrides or ``train``."""
    over = (profile.raw.get("arms") or {}).get(arm) or {}
    for k in keys:
        over = over.get(k) if isinstance(over, dict) else None
    return ("arms", arm, *keys) if over is not None else ("train", *keys)


def _check(report: Report, profile: Profile) -> None:
    """The rules that relate keys to one another (each key on its own is checked by its type)."""
    report.adopt(("seeds",), no_repeats, "seed", list(profile.seeds))
    report.adopt(("corpus",), corpus.corpus_key, profile.corpus)
    p = profile.probe
    if p.stride > p.context:
        report.add(("probe", "stride"), f"{p.stride} exceeds probe.context {p.context}", "use stride ≤ context")
    if p.context > profile.context:
        report.add(
            ("probe", "context"),
            f"{p.context} is longer than the models' context {profile.context}",
            f"use probe.context ≤ {profile.context}",
        )
    for arm in profile.arms.values():
        _check_schedule(report, profile, arm)
        if arm.train.branch_from:
            _check_branch(report, profile, arm)
    if not report.problems:
        _check_branch_cycles(report, profile)


def _check_schedule(report: Report, profile: Profile, arm: Arm) -> None:
    s = arm.train.schedule
    if len(s.milestones) != len(s.factors):
        report.add(
            _origin(profile, arm.family, "schedule", "factors"),
            f"has {len(s.factors)} entries for {len(s.milestones)} milestones",
            "give one factor per milestone",
        )
    if any(b <= a for a, b in zip(s.milestones, s.milestones[1:], strict=False)):
        report.add(
            _origin(profile, arm.family, "schedule", "milestones"),
            f"{list(s.milestones)} do not increase",
            "list them in increasing order",
        )


def _check_branch(report: Report, profile: Profile, arm: Arm) -> None:
    """The arm it branches from exists, and keeps its state at the step (a checkpoint before this arm's end)."""
    parent, step = arm.train.branch_from["arm"], arm.train.branch_from["step"]
    path = _origin(profile, arm.family, "branch_from")
    if parent not in profile.arms or parent == arm.family:
        others = [a for a in profile.arms if a != arm.family]
        what = "an arm cannot branch from itself" if parent == arm.family else f"{parent!r} is no arm of this profile"
        report.add((*path, "arm"), what, choice_fix(parent, others) if others else "remove branch_from")
        return
    if step >= arm.train.steps:
        report.add(
            (*path, "step"),
            f"{step} is not before the end of arm {arm.family} ({arm.train.steps} steps)",
            "branch earlier",
        )
    kept = profile.checkpoint_steps(parent)
    if step not in kept:
        near = [c for c in kept if c < step][-1:] + [c for c in kept if c > step][:1]
        report.add(
            (*path, "step"),
            f"{step} is not a checkpoint of arm {parent} (the nearest are {near}): its state is never saved",
            f"branch at one of {near}, or add {step} to checkpoints.extra",
        )


def _check_branch_cycles(report: Report, profile: Profile) -> None:
    for start in profile.arms:
        chain = [start]
        while (b := profile.arms[chain[-1]].train.branch_from) and b["arm"] not in chain:
            chain.append(b["arm"])
        if b and b["arm"] == start:
            report.add(
                ("arms",),
                f"branch_from forms a cycle: {' → '.join([*chain, start])}",
                "let one of these arms start from step 0 (drop its branch_from)",
            )
            return


def load(name_or_path: str | Path) -> Profile:
    """Load a profile by name (``smoke``, ``default``, ...) or from a YAML path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        path, name = p, p.stem
    else:
        name = str(name_or_path)
        choose("profile", name, available(), "pass a profile name or a path to a YAML file")
        path = paths.PROFILES / f"{name}.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise LmconvError(f"profile file {path} is not valid YAML: {e}", "correct the syntax where it says") from e
    if not isinstance(raw, dict):
        raise LmconvError(f"profile file {path} is not a YAML mapping", f"write `key: value` lines, as in {EXAMPLE}")
    return parse(raw, name, f"profile file {path}")


def to_dict(profile: Profile) -> dict:
    return {k: v for k, v in asdict(profile).items() if k != "raw"}
