"""Training profiles are data (YAML in ``lmconv/profiles``), read into typed, validated objects.

A profile names sizes, seeds, data, the optimizer and learning-rate schedule, and when checkpoints are kept.
It may hold several *arms* (variants of the training settings, e.g. schedules in a sweep); each arm is a suite
of its own whose family name is the arm's name.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import paths
from .errors import LmconvError, choose
from .io import sha256_json

SCHEDULES = ("cosine", "constant", "wsd", "step")
OPTIMIZERS = ("adamw", "muon")
DEVICES = ("cpu", "cuda")
ROTARY_PCT = 0.25  # GPT-NeoX's partial rotary embedding, as in Pythia


@dataclass(frozen=True)
class Size:
    name: str
    hidden: int
    layers: int
    heads: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


@dataclass(frozen=True)
class Schedule:
    kind: str = "cosine"
    warmup: int = 100
    final_ratio: float = 0.1
    decay_fraction: float = 0.2  # wsd: share of steps spent decaying at the end
    milestones: tuple[float, ...] = (0.8, 0.9)  # step: fractions of training where the LR drops
    factors: tuple[float, ...] = (0.316, 0.1)  # step: LR multiplier after each milestone

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


@dataclass(frozen=True)
class TrainSettings:
    steps: int
    batch_size: int
    optimizer: str = "adamw"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.01
    muon_lr: float | None = None  # Muon's peak LR; None: the AdamW LR (Muon matches AdamW's update RMS)
    grad_clip: float = 1.0
    schedule: Schedule = field(default_factory=Schedule)
    threads: int = 2
    device: str = "cpu"  # "cuda" trains (and analyses) on a GPU; the project's checks run on the CPU
    val_every: int = 50
    val_tokens: int = 16384
    spectra_every: int = 0  # record singular values of every weight matrix every N steps (0: never)
    branch_from: dict | None = None  # {"arm": name, "step": N}: start from another arm's state at step N


@dataclass(frozen=True)
class CheckpointSchedule:
    log_until: int = 512
    per_octave: int = 1
    every: int = 1000
    extra: tuple[int, ...] = ()  # further steps to keep (e.g. where another arm branches off)

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


@dataclass(frozen=True)
class ProbeSettings:
    tokens: int = 16384
    context: int = 128
    stride: int = 64


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
    raw: dict = field(repr=False, compare=False, default_factory=dict)

    @property
    def sha256(self) -> str:
        """Hash of what determines the trained checkpoints (prose and companion suites excluded)."""
        return sha256_json({k: v for k, v in self.raw.items() if k not in ("description", "companions")})

    def checkpoint_steps(self, arm: str | None = None) -> list[int]:
        return self.checkpoints.steps(self.arm(arm).train.steps)

    def arm(self, name: str | None = None) -> Arm:
        if name is None:
            return next(iter(self.arms.values()))
        choose("arm", name, self.arms, f"arms of profile {self.name!r}")
        return self.arms[name]

    def size(self, name: str) -> Size:
        choose("size", name, self.sizes, f"sizes of profile {self.name!r}: see lmconv/profiles/{self.name}.yaml")
        return self.sizes[name]


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


def available() -> list[str]:
    return sorted(p.stem for p in paths.PROFILES.glob("*.yaml"))


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _build(cls: type, data: dict, where: str) -> Any:
    known = set(cls.__dataclass_fields__)
    unknown = set(data) - known
    if unknown:
        raise LmconvError(f"{where}: unknown key(s) {sorted(unknown)}", f"allowed keys: {sorted(known)}")
    try:
        return cls(**data)
    except TypeError as e:
        raise LmconvError(f"{where}: {e}", "check the profile YAML against lmconv/profiles/default.yaml") from e


def _train(data: dict, where: str) -> TrainSettings:
    d = dict(data)
    sched = dict(d.pop("schedule", {}))
    for key in ("milestones", "factors"):
        if key in sched:
            sched[key] = tuple(sched[key])
    if "betas" in d:
        d["betas"] = tuple(d["betas"])
    t = _build(TrainSettings, {**d, "schedule": _build(Schedule, sched, f"{where}.schedule")}, where)
    choose("optimizer", t.optimizer, OPTIMIZERS)
    choose("schedule", t.schedule.kind, SCHEDULES)
    choose("device", t.device, DEVICES)
    for key in ("steps", "batch_size", "threads"):
        if not isinstance(getattr(t, key), int) or getattr(t, key) < 1:
            raise LmconvError(f"{where}.{key} must be a positive integer, got {getattr(t, key)!r}")
    return t


def parse(raw: dict, name: str = "<profile>") -> Profile:
    """Validate a profile given as a dict (the YAML's content)."""
    required = {
        "description",
        "corpus",
        "vocab_size",
        "context",
        "seeds",
        "sizes",
        "train",
        "checkpoints",
        "probe",
    }
    missing = required - set(raw)
    if missing:
        raise LmconvError(f"profile {name!r} lacks {sorted(missing)}", "copy the keys from profiles/default.yaml")
    sizes = {}
    for key, s in raw["sizes"].items():
        key = str(key)
        if "-" in key or "/" in key:
            raise LmconvError(f"size name {key!r} contains '-' or '/'", "size names must fit {family}-{size}-seed{k}")
        size = _build(Size, {"name": key, **s}, f"sizes.{key}")
        if size.hidden % size.heads:
            raise LmconvError(f"size {key}: hidden {size.hidden} is not divisible by heads {size.heads}")
        if int(size.head_dim * ROTARY_PCT) % 2:
            raise LmconvError(
                f"size {key}: head dimension {size.head_dim} gives an odd number of rotary dimensions "
                f"({int(size.head_dim * ROTARY_PCT)}); rotary embeddings rotate pairs",
                "choose heads so that hidden / heads is a multiple of 8",
            )
        sizes[key] = size
    arms = {}
    for arm_name, over in (raw.get("arms") or {raw.get("family", "lmconv"): {}}).items():
        if "-seed" in arm_name or "/" in arm_name:
            raise LmconvError(f"arm name {arm_name!r} cannot contain '-seed' or '/'")
        arms[arm_name] = Arm(arm_name, _train(_merge(raw["train"], over or {}), f"arms.{arm_name}"))
    seeds = tuple(int(s) for s in raw["seeds"])
    if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise LmconvError(f"profile {name!r}: seeds must be distinct non-negative integers, got {list(seeds)}")
    return Profile(
        name=name,
        description=raw["description"],
        corpus=raw["corpus"],
        vocab_size=int(raw["vocab_size"]),
        context=int(raw["context"]),
        seeds=seeds,
        sizes=sizes,
        arms=arms,
        checkpoints=_build(
            CheckpointSchedule,
            {**raw["checkpoints"], "extra": tuple(raw["checkpoints"].get("extra", ()))},
            "checkpoints",
        ),
        probe=_build(ProbeSettings, raw["probe"], "probe"),
        raw=raw,
    )


def load(name_or_path: str | Path) -> Profile:
    """Load a profile by name (``smoke``, ``default``, ...) or from a YAML path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        path, name = p, p.stem
    else:
        name = str(name_or_path)
        choose("profile", name, available(), "pass a profile name or a path to a YAML file")
        path = paths.PROFILES / f"{name}.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise LmconvError(f"profile file {path} is not a YAML mapping")
    return parse(raw, name)


def to_dict(profile: Profile) -> dict:
    return {k: v for k, v in asdict(profile).items() if k != "raw"}
