"""What the chapters call: resolve a suite, build its probe, run the one-pass engine (cached), and return
tidy tables with the probe's per-token annotations."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from .. import paths
from ..checkpoints import bundle as bundle_mod
from ..checkpoints import suites
from ..data import downstream as downstream_mod
from ..data import probe as probe_mod
from ..data import tokenizer as tok_mod
from ..errors import LmconvError, no_repeats
from ..findings import papers
from ..io import read_json, sha256_json, write_json
from ..metrics import kl as kl_mod
from ..training import profiles
from . import engine


@dataclass
class Suite:
    """A trained suite on disk (one profile) with the profile it came from."""

    profile: profiles.Profile
    source: suites.LocalSource

    @classmethod
    def open(cls, profile: str | profiles.Profile) -> Suite:
        """The trained suite of ``profile``; in tables mode (:mod:`lmconv.checkpoints.bundle`) the release
        bundle's copy of it."""
        prof = profile if isinstance(profile, profiles.Profile) else profiles.load(profile)
        if bundle := bundle_mod.active():
            return cls(prof, bundle_mod.BundleSource(bundle, prof.name))
        root = paths.suite_dir(prof.name)
        if not root.exists():
            raise LmconvError(
                f"the {prof.name!r} suite has not been trained (no {root})",
                f"train it first: lmconv train --profile {prof.name}   (or make book PROFILE={prof.name})",
            )
        return cls(prof, suites.LocalSource(root))

    def family(self, arm: str | None = None) -> str:
        return self.profile.arm(arm).family

    def train_logs(self, family: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Training (per step) and validation logs of every run, with family/size/seed columns."""
        fams = [family] if family else list(self.profile.arms)
        train, val = [], []
        for fam in fams:
            for size in self.profile.sizes:
                for seed in self.profile.seeds:
                    run = self.source.root / suites.format_run(fam, size, seed)
                    if not suites.run_finished(run):
                        continue
                    for frame, name in ((train, "train_log"), (val, "val_log")):
                        df = pd.read_parquet(run / f"{name}.parquet")
                        df.insert(0, "seed", seed)
                        df.insert(0, "size", size)
                        df.insert(0, "family", fam)
                        frame.append(df)
        if not train:
            raise LmconvError(f"no finished runs in {self.source.root}", f"lmconv train --profile {self.profile.name}")
        return pd.concat(train, ignore_index=True), pd.concat(val, ignore_index=True)

    def spectra_records(self, family: str, size: str, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Per-step singular values recorded during training: ``(steps, values[records, matrices, r], names)``."""
        f = self.source.root / suites.format_run(family, size, seed) / "spectra.npz"
        if not f.exists():
            raise LmconvError(f"{f} does not exist", "set spectra_every in the profile and retrain")
        z = np.load(f)
        return z["steps"], z["values"], [str(n) for n in z["names"]]


@dataclass
class Results:
    """Engine tables for a set of sizes, seeds and steps, plus the probe and the unigram counts."""

    suite: Suite | None  # None for the hub source
    family: str
    sizes: list[str]
    seeds: list[int]
    steps: list[int]
    probe: probe_mod.Probe
    counts: np.ndarray
    tables: dict[str, pd.DataFrame] = field(repr=False)
    evals: downstream_mod.EvalSets | None = field(default=None, repr=False)  # the downstream sets scored

    def __getattr__(self, name: str) -> pd.DataFrame:
        if name in engine.TABLES and "tables" in self.__dict__:
            return self.tables[name]
        raise AttributeError(name)

    @cached_property
    def targets(self) -> pd.DataFrame:
        """The probe's scored tokens with their training-split frequency."""
        t = self.probe.targets.copy()
        t["frequency"] = self.counts[t.target_id.to_numpy()]
        return t


def _resolve(values, allowed, kind: str, profile: str) -> list:
    if values is None:
        return list(allowed)
    if isinstance(values, str | int) and not isinstance(values, bool):
        values = [values]
    no_repeats(kind, list(values), f"pick each {kind} once (notebook parameter or --{kind}s)")
    out = []
    for v in values:
        if v not in allowed:
            raise LmconvError(
                f"unknown {kind} {v!r} for the {profile!r} suite; it has {list(allowed)}",
                f"pick {kind}s from that list (notebook parameter or --{kind}s)",
            )
        out.append(v)
    return out


def analysed_steps(suite: Suite, family: str, sizes: list[str], seeds: list[int], steps=None) -> list[int]:
    """The checkpoint steps to analyse: ``steps`` (default: every step of the profile's schedule), all of which
    every run of ``sizes`` × ``seeds`` must hold; a clear error naming the runs that lack some."""
    prof = suite.profile
    wanted = _resolve(steps, prof.checkpoint_steps(family), "step", prof.name)
    if not wanted:
        raise LmconvError("no checkpoint steps to analyse", "pass at least one step (or none, for all of them)")
    check_ascending(wanted)
    lacking = {}
    for size in sizes:
        for seed in seeds:
            held = set(suite.source.steps(family, size, seed))
            if gone := [st for st in wanted if st not in held]:
                lacking[suites.format_run(family, size, seed)] = gone
    if lacking:
        listed = "; ".join(f"{run} lacks step{'s' * (len(gone) > 1)} {_few(gone)}" for run, gone in lacking.items())
        raise LmconvError(
            f"the {prof.name!r} suite in {suite.source.root} is missing checkpoints: {listed}",
            f"lmconv train --profile {prof.name}   (it trains the missing checkpoints again)",
        )
    return wanted


def check_ascending(steps: list[int]) -> None:
    """Refuse steps out of order: the last one is the final checkpoint (CKA's reference, the converged model)."""
    if steps != sorted(steps):
        order = sorted(steps)
        raise LmconvError(
            f"steps {list(steps)} are not in ascending order (the last one is taken as the final checkpoint)",
            f"list them in ascending order: --steps {','.join(map(str, order))} (or -p steps '{order}')",
        )


def _few(values: list, n: int = 8) -> str:
    """``values`` written out, the first ``n`` of them when there are more."""
    shown = ", ".join(str(v) for v in values[:n])
    return shown + (f" and {len(values) - n} more" if len(values) > n else "")


def run(
    profile: str = "default",
    arm: str | None = None,
    sizes: list[str] | None = None,
    seeds: list[int] | None = None,
    steps: list[int] | None = None,
    probe: profiles.ProbeSettings | None = None,
    options: engine.EngineOptions | None = None,
    progress: bool = True,
    client=None,
) -> Results:
    """Analyse a trained local suite (every table of the engine) on ``probe`` (default: the profile's), from the
    cache where possible; with a Dask ``client`` (:func:`lmconv.analysis.fanout.client`) each checkpoint step
    runs as a task on its workers."""
    suite = Suite.open(profile)
    prof = suite.profile
    family = suite.family(arm)
    src = suite.source
    sizes = _resolve(sizes, [s for s in prof.sizes if s in src.sizes(family)], "size", prof.name)
    if not sizes:
        raise LmconvError(f"no trained sizes of {family} in {src.root}", f"lmconv train --profile {prof.name}")
    seeds = _resolve(seeds, src.seeds(family, sizes[0]), "seed", prof.name)
    if len(seeds) < 2:
        raise LmconvError("cross-seed analyses need at least two seeds", "pass two or more seeds")
    steps = analysed_steps(suite, family, sizes, seeds, steps)
    ref0 = suites.CheckpointRef(family, sizes[0], seeds[0], steps[-1])
    suites.check_consistent(src, [suites.CheckpointRef(family, s, k, st) for s in sizes for k in seeds for st in steps])
    tok = src.load_tokenizer(ref0)
    probe = probe or prof.probe
    pr = probe_mod.build(tok, prof.corpus, probe)
    counts = tok_mod.token_frequencies(prof.corpus, prof.vocab_size)
    uni = kl_mod.unigram_logprobs(counts)
    options = options or engine.EngineOptions(device=prof.arm(family).train.device)
    evals = downstream_sets(tok, prof.corpus, prof.downstream, prof.context)
    request = {
        "profile": prof.name,
        "arm": arm,
        "sizes": sizes,
        "seeds": [int(k) for k in seeds],
        "steps": [int(st) for st in steps],
        "probe": asdict(probe),
        "options": asdict(options),
    }
    if isinstance(src, bundle_mod.BundleSource):  # tables mode: the tables the book computed, not the engine
        tables = src.tables(family, request, request_id(request), (*engine.TABLES, "probe_targets"))
        if not np.array_equal(tables.pop("probe_targets")["target_id"].to_numpy(), pr.targets["target_id"].to_numpy()):
            raise LmconvError(
                f"the probe built here from {prof.corpus} is not the one the release bundle's tables score",
                "install the corpus version the bundle names (see its notebooks' data chapter), then run again",
            )
    else:
        per_size = [
            engine.analyze(
                src, family, s, seeds, steps, pr, uni, len(tok), options, progress=progress, client=client, evals=evals
            )
            for s in sizes
        ]
        tables = {name: pd.concat([t[name] for t in per_size], ignore_index=True) for name in engine.TABLES}
    # in a chapter the book executes: record the request, so that the release publishes exactly these tables
    if os.environ.get(paths.LEDGER_ENV):
        record(Path(os.environ[paths.LEDGER_ENV]), request)
    return Results(suite, family, sizes, seeds, steps, pr, counts, tables, evals)


_EVALS: dict[tuple, downstream_mod.EvalSets | None] = {}


def downstream_sets(
    tok, corpus_spec: str, settings: profiles.DownstreamSettings, context: int
) -> downstream_mod.EvalSets | None:
    """The downstream sets for this tokenizer, corpus and context (built once per process); None when the
    settings ask for none or the corpus has no gold tags (a text folder), so that the rest of the pass runs."""
    key = (tok_mod.fingerprint(tok), corpus_spec, settings, context)
    if key not in _EVALS:
        wanted = settings.pairs > 0 or settings.lastword > 0
        has_tags = corpus_spec == "brown"
        _EVALS[key] = downstream_mod.build(tok, corpus_spec, settings, context) if wanted and has_tags else None
    return _EVALS[key]


def request_id(request: dict) -> str:
    """A short name for one analysis request (what the release calls its folder of tables)."""
    return sha256_json(request)[:12]


def record(ledger: Path, request: dict) -> None:
    """Add one analysis request to a ledger file (a JSON list, written atomically; duplicates kept once)."""
    got = read_json(ledger) if ledger.exists() else []
    if request not in got:
        write_json(ledger, [*got, request])


def replay(request: dict) -> Results:
    """Run a recorded request again (from the cache when the build's entries are still there)."""
    r = dict(request)
    keys = {"profile", "arm", "sizes", "seeds", "steps", "probe", "options"}
    if set(r) != keys:
        raise LmconvError(
            f"not a recorded analysis request: {json.dumps(request)[:200]}",
            "rebuild the book (make book) so that each chapter records its analyses again",
        )
    options = engine.EngineOptions(**r.pop("options"))
    return run(**r | {"probe": profiles.ProbeSettings(**r["probe"])}, options=options, progress=False)


def probe_settings(profile: str, tokens: int | None = None) -> profiles.ProbeSettings:
    """The probe of ``profile``, with ``tokens`` scored positions instead of its own where given."""
    own = profiles.load(profile).probe
    return dataclasses.replace(own, tokens=tokens) if tokens else own


# the PolyPythias' probe: the cross-seed paper's sliding windows over 4,096 scored tokens of our corpus
HUB_PROBE = profiles.ProbeSettings(tokens=4096, context=papers.KL_CONTEXT, stride=papers.KL_STRIDE)


def run_hub(
    sizes: list[str],
    seeds: list[int],
    steps: list[int],
    corpus_spec: str = "brown",
    probe: profiles.ProbeSettings = HUB_PROBE,
    source: suites.HubSource | None = None,
    options: engine.EngineOptions | None = None,
    progress: bool = True,
    client=None,
) -> Results:
    """The PolyPythias (or any hub family) through the same engine: the probe is cut from our corpus with the
    hub tokenizer, and unigram counts come from our training split tokenised the same way."""
    from ..data import corpus as corpus_mod

    no_repeats("step", list(steps), "list each step once (--steps)")
    check_ascending(list(steps))
    src = source or suites.HubSource()
    refs = [suites.CheckpointRef(src.family, s, k, steps[-1]) for s in sizes for k in seeds]
    for r in refs:
        src.check(r)
    suites.check_same_tokenizer(src, refs)
    tok = src.load_tokenizer(refs[0])
    vocab = len(tok)
    pr = probe_mod.build(tok, corpus_spec, probe)
    ids, _, _ = tok_mod.encode_documents(tok, corpus_mod.load(corpus_spec, "train"))
    counts = np.bincount(ids, minlength=vocab)[:vocab].astype(np.int64)
    uni = kl_mod.unigram_logprobs(counts)
    evals = downstream_sets(
        tok, corpus_spec, profiles.DownstreamSettings(), min(probe.context, downstream_mod.HUB_CONTEXT)
    )
    per_size = [
        engine.analyze(
            src, src.family, s, seeds, steps, pr, uni, vocab, options, progress=progress, client=client, evals=evals
        )
        for s in sizes
    ]
    tables = {name: pd.concat([t[name] for t in per_size], ignore_index=True) for name in engine.TABLES}
    return Results(None, src.family, list(sizes), list(seeds), list(steps), pr, counts, tables, evals)


def suite_root(profile: str) -> Path:
    return paths.suite_dir(profile)
