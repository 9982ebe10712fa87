"""Initialisation or data order? Cross-seed KL and final spectra within three kinds of seed pair.

In the main suite one seed sets both the initial weights and the batch order. Its *decoupled* companion profile
trains the same models with one of the two fixed for every run of an arm (``TrainSettings.init_seed`` or
``data_seed``), so a pair of its runs differs in one source only. Kinds of pair (``KINDS``):

- ``both``: two runs of the main suite (the companion's seeds), which differ in initialisation and data order;
- ``data``: two runs of an arm that fixes the initialisation: only the data order differs;
- ``weight``: two runs of an arm that fixes the data order: only the initialisation differs.

Rules used throughout (each a choice of ours, stated in the book):

- A pair's curve is KL(p_i‖p_j) averaged over the probe's positions, per checkpoint, for every ordered pair
  i ≠ j of the kind's runs; the kind's curve is the mean over its pairs and the band the min–max over pairs.
- Three moments are compared across kinds: the first checkpoint (step 0), the peak of the ``both`` curve (the
  step where the main suite's seeds are furthest apart) and the last checkpoint.
- At each moment the source that *dominates* is the one whose single-source pairs all lie further apart than
  every pair of the other single source (the two min–max ranges over pairs do not overlap); when they overlap,
  neither source dominates there. The ratio of each kind's mean to the ``both`` mean says how much of the
  joint divergence one source reproduces.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from .. import analysis
from ..chapters import params
from ..errors import LmconvError
from ..metrics import phases, spectrum
from ..training import profiles
from . import annealing as A

KINDS = ("both", "data", "weight")  # what differs between the two runs of a pair
KIND_WORDS = {
    "both": "initialisation and data order",
    "data": "data order only",
    "weight": "initialisation only",
}
SOURCE_WORDS = {"data": "the data order", "weight": "the initialisation"}
MOMENTS = ("start", "peak", "end")
MOMENT_WORDS = {"start": "at step 0", "peak": "at the peak", "end": "at the end"}
SAME_KEYS = ("corpus", "vocab_size", "context")  # must equal the main profile's (every arm is read on its probe)
PHASE_NUMERALS = dict(zip(phases.PHASE_KEYS, ("(i)", "(ii)", "(iii)", "(iv)"), strict=True))
CKA_MODULES, CKA_VARIANT, CKA_ESTIMATOR = ("attn_ov", "mlp"), "last", "biased"  # chapter 5's default CKA

params.register("decoupled_profile", params.choice_param((None, *profiles.available())))


def companion(profile: str, given: str | None = None) -> str:
    """The decoupled profile of a main profile: ``given``, else the profile's ``companions.decoupled``."""
    return profiles.companion(profile, "decoupled", given)


def arm_kind(arm: profiles.Arm) -> str:
    """The kind of pair two runs of ``arm`` form: ``data`` when it fixes the initialisation, ``weight`` when it
    fixes the data order; an error when it fixes both or neither."""
    init, data = arm.train.init_seed, arm.train.data_seed
    if (init is None) == (data is None):
        raise LmconvError(
            f"arm {arm.family!r} fixes {'both seeds' if init is not None else 'neither seed'}: its runs' pairs "
            "differ in no source or in both",
            "set exactly one of init_seed (runs differ in data order) or data_seed (runs differ in initialisation)",
        )
    return "data" if init is not None else "weight"


def check_design(main: profiles.Profile, comp: profiles.Profile) -> dict[str, str]:
    """Raise unless ``comp`` trains the main profile's models with one source fixed per arm; return
    ``{kind: arm}``.

    Rule: corpus, vocabulary and context equal (every arm is analysed on the main profile's probe, whatever the
    companion's own); its sizes a subset of the main profile's with equal
    shapes; its seeds among the main profile's (those runs are the ``both`` pairs); every arm's training settings
    equal to the main arm's except the fixed seed (and the device, thread count and precision, which change bits:
    the methods chapter measures that bf16 training moves no finding beyond the seed spread, and a GPU profile
    reads these CPU-trained arms); one arm per kind, each with at least two seeds.
    """
    bad = [k for k in SAME_KEYS if main.raw.get(k) != comp.raw.get(k)]
    bad += [f"sizes.{n}" for n, s in comp.sizes.items() if main.sizes.get(n) != s]
    bad += [f"seeds {sorted(set(comp.seeds) - set(main.seeds))}"] if set(comp.seeds) - set(main.seeds) else []
    m = main.arm().train
    kinds: dict[str, str] = {}
    for a in comp.arms.values():
        kind = arm_kind(a)
        if kind in kinds:
            bad.append(f"arms {kinds[kind]} and {a.family} are both of kind {kind}")
        kinds[kind] = a.family
        if (
            replace(a.train, init_seed=None, data_seed=None, device=m.device, threads=m.threads, precision=m.precision)
            != m
        ):
            bad.append(f"arms.{a.family} (training settings other than the fixed seed)")
        if comp.checkpoint_steps(a.family) != main.checkpoint_steps():
            bad.append(f"arms.{a.family} checkpoints")
    if bad or len(comp.seeds) < 2:
        raise LmconvError(
            f"profile {comp.name!r} is not a decoupled companion of {main.name!r}: "
            + (f"they differ in {bad}" if bad else "it needs at least two seeds"),
            f"copy those settings from lmconv/training/profiles/{main.name}.yaml and fix one seed per arm",
        )
    return kinds


# ---------------------------------------------------------------------------------------------------------
# tables → curves and summaries (pure functions; the tests feed them synthetic tables)
# ---------------------------------------------------------------------------------------------------------


def pair_curves(pairs: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Mean KL over probe positions per (size, step, ordered seed pair), labelled with the kind."""
    return A.pair_curves(pairs, kind, column="kind")


def mean_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """Per (kind, size, step): mean, min and max KL over the kind's seed pairs, and E[conv] = −KL with its band."""
    return A.mean_curves(curves, column="kind")


def step_zero(curves: pd.DataFrame, tol: float = 1e-9) -> dict[str, Any]:
    """What the design fixes at the first checkpoint, measured: the data-order-only pairs share their weights (KL
    0), and the initialisation-only pairs hold the joint pairs' models (the same KL). ``holds`` says whether both
    are true to within ``tol`` nats, ``words`` says so for the page."""
    first = curves[curves.step == curves.step.min()]
    wide = first.pivot_table(index=["size", "seed_i", "seed_j"], columns="kind", values="kl")
    data_max = float(wide["data"].abs().max())
    weight_gap = float((wide["weight"] - wide["both"]).abs().max())
    holds = data_max <= tol and weight_gap <= tol
    words = "as the design requires" if holds else f"which breaks the design (more than {tol:g} nats): check the arms"
    return {"data_max": data_max, "weight_gap": weight_gap, "holds": holds, "words": words}


def _wide(curves: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(steps, KL per pair × step) of one kind and size."""
    w = curves.pivot_table(index=["seed_i", "seed_j"], columns="step", values="kl").sort_index(axis=1)
    return w.columns.to_numpy().astype(int), w.to_numpy(dtype=float)


def moment_steps(curves: pd.DataFrame, size: str, rel_tol: float = 0.05) -> dict[str, int]:
    """The three moments' steps for one size: the first and last checkpoints and the peak of the ``both`` curve
    (its phase (iii) end as the KL-phase detector finds it on the pair mean)."""
    c = curves[(curves["size"] == size) & (curves.kind == "both")]
    if c.empty:
        raise LmconvError(f"no 'both' pairs for size {size}", "analyse the main suite at the companion's seeds")
    steps, kp = _wide(c)
    peak = phases.kl_phases(steps, np.nanmean(kp, axis=0), rel_tol=rel_tol).peak_step
    return {"start": int(steps[0]), "peak": int(peak), "end": int(steps[-1])}


def peak_words(summary: dict[str, Any]) -> str:
    """How the moment "at the peak" of one size was found: the end of the joint curve's phase (iii), or, when the
    detector sees no divergence there, only its highest point."""
    if summary["kinds"]["both"]["has_divergence"]:
        return "the end of the joint curve's divergence"
    return "the joint curve's highest point: the detector sees no divergence phase in it"


def kind_summary(curves: pd.DataFrame, moments: dict[str, int], rel_tol: float = 0.05) -> dict[str, Any]:
    """One kind and size: the KL-phase detector on its pair mean and per pair (observed phases and boundaries),
    and its mean KL with the min–max over pairs at each moment. ``curves``: rows (step, seed_i, seed_j, kl)."""
    steps, kp = _wide(curves)
    by_pair = phases.kl_phases_by_pair(steps, kp, rel_tol=rel_tol)
    ph = by_pair.mean_curve
    out: dict[str, Any] = {
        "n_pairs": by_pair.n_pairs,
        "phases": ph.observed(),
        "spans": {k: v for k, v in ph.spans().items() if v is not None},  # (start, end) step of each phase seen
        "peak_step": ph.peak_step,
        "has_divergence": ph.has_divergence,
        "has_reconvergence": ph.has_reconvergence,
        "pairs_reconverge": by_pair.n_reconvergence,
        "fall": ph.fall,
        "absent": dict(ph.absent),
    }
    for name, step in moments.items():
        k = np.flatnonzero(steps == step)
        if not k.size:
            raise LmconvError(f"no checkpoint at step {step} for this kind", "analyse the same steps for every kind")
        v = kp[:, k[0]]
        out[name] = {"kl": float(np.nanmean(v)), "lo": float(np.nanmin(v)), "hi": float(np.nanmax(v)), "step": step}
    return out


def dominant(data: dict[str, float], weight: dict[str, float]) -> str:
    """Which single source dominates at one moment, from each kind's ``{"kl", "lo", "hi"}`` (min–max over pairs):
    ``weight`` when every initialisation-only pair lies further apart than every data-order-only pair, ``data``
    for the reverse, ``neither`` when the two ranges overlap. Only ``lo`` and ``hi`` are read."""
    if weight["lo"] > data["hi"]:
        return "weight"
    if data["lo"] > weight["hi"]:
        return "data"
    return "neither"


def attribution(summary: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per moment of one size: the dominant source (:func:`dominant`), and each single source's mean KL as a
    share of the ``both`` mean (None when the ``both`` mean is 0)."""
    out = {}
    for m in MOMENTS:
        both = summary["both"][m]["kl"]
        share = {k: (summary[k][m]["kl"] / both if both > 0 else None) for k in ("data", "weight")}
        out[m] = {"source": dominant(summary["data"][m], summary["weight"][m]), "share": share}
    return out


def summarise(curves: pd.DataFrame, rel_tol: float = 0.05) -> dict[str, dict[str, Any]]:
    """Per size: ``{"moments": steps, "kinds": {kind: kind_summary}, "attribution": attribution}``."""
    out = {}
    for size in dict.fromkeys(curves["size"]):
        moments = moment_steps(curves, size, rel_tol)
        c = curves[curves["size"] == size]
        kinds = {k: kind_summary(c[c.kind == k], moments, rel_tol) for k in KINDS if k in set(c.kind)}
        missing = [k for k in KINDS if k not in kinds]
        if missing:
            raise LmconvError(f"size {size} has no pairs of kind {missing}", "train and analyse every arm")
        out[size] = {"moments": moments, "kinds": kinds, "attribution": attribution(kinds)}
    return out


def final_spectra(records: dict[tuple[str, str, int], np.ndarray]) -> pd.DataFrame:
    """ΔΣ between the final singular distributions of two runs of one kind: per unordered pair, the mean over
    weight matrices of ‖Σ̂_i − Σ̂_j‖₂. ``records``: (kind, size, seed) → the last record's singular values,
    shape (matrices, r); rows follow the order in which (kind, size) first appear."""
    rows = []
    for kind, size in dict.fromkeys((kd, sz) for kd, sz, _ in records):
        seeds = sorted(k for (kd, sz, k) in records if kd == kind and sz == size)
        for a, i in enumerate(seeds):
            for j in seeds[a + 1 :]:
                pi, pj = spectrum.distribution(records[kind, size, i]), spectrum.distribution(records[kind, size, j])
                d = float(np.linalg.norm(pi - pj, axis=-1).mean())
                rows.append({"kind": kind, "size": size, "seed_i": i, "seed_j": j, "delta_sigma": d})
    return pd.DataFrame(rows)


def final_cka(seed_cka: pd.DataFrame, kind: str) -> pd.DataFrame:
    """1 − CKA between two seeds' final activations, per unordered pair: the mean over layers and over the
    attention (OV) and MLP circuits of the biased CKA on each window's last token (chapter 5's default
    definition). ``seed_cka`` is the engine's table of one kind; rows (kind, size, seed_i, seed_j,
    cka_distance)."""
    sel = seed_cka[
        (seed_cka.variant == CKA_VARIANT) & (seed_cka.estimator == CKA_ESTIMATOR) & seed_cka.module.isin(CKA_MODULES)
    ]
    if sel.empty:
        raise LmconvError("no CKA between seeds at the final step", "analyse the suites up to their last checkpoint")
    g = sel.groupby(["size", "seed_i", "seed_j"], as_index=False, observed=True).cka.mean()
    g.insert(0, "kind", kind)
    g["cka_distance"] = 1.0 - g.pop("cka")
    return g


def pair_summary(table: pd.DataFrame, column: str) -> dict[str, dict[str, Any]]:
    """Per size: each kind's mean ``column`` (a distance between two runs) with its min–max over pairs, and the
    dominant source (:func:`dominant`)."""
    out = {}
    for size, d in table.groupby("size", sort=False):
        kinds = {}
        for k, g in d.groupby("kind"):
            kinds[k] = {"value": float(g[column].mean()), "lo": float(g[column].min()), "hi": float(g[column].max())}
        out[str(size)] = {"kinds": kinds, "source": dominant(kinds["data"], kinds["weight"])}
    return out


# ---------------------------------------------------------------------------------------------------------
# words
# ---------------------------------------------------------------------------------------------------------


def _range(x: dict[str, float], fmt: str = ".4f") -> str:
    return f"{x['kl']:{fmt}} ({x['lo']:{fmt}}–{x['hi']:{fmt}})"


def source_sentence(source: str, moment: str) -> str:
    """What :func:`dominant` found at one moment, in words."""
    if source == "neither":
        return f"{MOMENT_WORDS[moment]} neither source dominates, the two single-source ranges overlapping"
    return f"{MOMENT_WORDS[moment]} {SOURCE_WORDS[source]} dominates"


def verdict(size: str, s: dict[str, Any]) -> str:
    """One Markdown statement per size: per moment, the dominant source and the three kinds' KL, and whether each
    kind reconverges; every number from ``s`` (an entry of :func:`summarise`)."""
    k, a, m = s["kinds"], s["attribution"], s["moments"]
    parts = []
    for moment in MOMENTS:
        nums = ", ".join(f"{KIND_WORDS[kind]} {_range(k[kind][moment])}" for kind in KINDS)
        where = f"step {m[moment]}, {peak_words(s)}" if moment == "peak" else f"step {m[moment]}"
        parts.append(f"{source_sentence(a[moment]['source'], moment)} ({where}: KL {nums} nats)")
    rec = [KIND_WORDS[kind] for kind in KINDS if k[kind]["has_reconvergence"]]
    tail = (
        f"by the phase (iv) rule, the pairs that reconverge are those of {', '.join(rec)}"
        if rec
        else "by the phase (iv) rule no kind of pair reconverges"
    )
    return f"**{size}**: " + "; ".join(parts) + f"; {tail}."


def conclusion(summary: dict[str, dict[str, Any]]) -> str:
    """The section's answer in one sentence: per moment, which source dominates (:func:`dominant`) in how many
    sizes."""
    n = len(summary)
    parts = []
    for moment in MOMENTS:
        found = [s["attribution"][moment]["source"] for s in summary.values()]
        phrases = [
            f"{'neither source' if src == 'neither' else SOURCE_WORDS[src]} in {found.count(src)} of {n} sizes"
            for src in ("weight", "data", "neither")
            if src in found
        ]
        parts.append(f"{MOMENT_WORDS[moment]}, " + " and ".join(phrases))
    return "The source that dominates the cross-seed KL: " + "; ".join(parts) + "."


def table(summary: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per (size, kind): KL at each moment as "mean (min–max over pairs)" (the peak is the joint curve's,
    at "peak step"), the phases the detector sees on the kind's pair mean with their steps, and how many pairs
    reconverge."""
    rows = []
    for size, s in summary.items():
        for kind in KINDS:
            k = s["kinds"][kind]
            row = {"size": size, "pair differs in": KIND_WORDS[kind], "peak step": s["moments"]["peak"]}
            row |= {f"KL {MOMENT_WORDS[m]}": _range(k[m]) for m in MOMENTS}
            spans = [f"{PHASE_NUMERALS[p]} {a}–{b}" for p, (a, b) in k["spans"].items()]
            row["phases seen (steps)"] = ", ".join(spans) or "none"
            row["pairs reconverging"] = f"{k['pairs_reconverge']}/{k['n_pairs']}"
            rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------------
# loading the suites
# ---------------------------------------------------------------------------------------------------------


@dataclass
class SourcesData:
    """Everything the section shows, for the sizes both profiles share."""

    main: profiles.Profile
    companion: profiles.Profile
    arms: dict[str, str]  # kind → arm of the companion
    sizes: list[str]
    seeds: list[int]
    curves: pd.DataFrame  # kind, size, step, seed_i, seed_j, kl
    spectra: pd.DataFrame  # kind, size, seed_i, seed_j, delta_sigma (final singular distributions)
    cka: pd.DataFrame  # kind, size, seed_i, seed_j, cka_distance (final activations)

    def fixed_seed(self, kind: str) -> int:
        """The seed the arm of ``kind`` holds fixed (of the initialisation for ``data``, of the order for
        ``weight``)."""
        t = self.companion.arm(self.arms[kind]).train
        return int(t.init_seed if kind == "data" else t.data_seed)


def _among(pairs: pd.DataFrame, seeds: list[int]) -> pd.DataFrame:
    """The rows of a seed-pair table whose two seeds are both in ``seeds``."""
    return pairs[pairs.seed_i.isin(seeds) & pairs.seed_j.isin(seeds)]


def load(profile: str, decoupled_profile: str | None = None, sizes: list[str] | None = None) -> SourcesData:
    """Analyse the main suite at the companion's seeds and every arm of the companion (through
    :func:`lmconv.analysis.run`, cached), and reduce the tables to pair curves and final-spectra distances."""
    main = profiles.load(profile)
    comp = profiles.load(companion(profile, decoupled_profile))
    arms = check_design(main, comp)
    avail = [s for s in comp.sizes if s in main.sizes]
    unknown = [s for s in sizes or [] if s not in avail]
    if unknown:
        raise LmconvError(f"sizes {unknown} are not in both {main.name} and {comp.name}", f"pick from {avail}")
    sizes, seeds = list(sizes or avail), list(comp.seeds)
    curves, cka, records = [], [], {}
    for kind, prof, arm in (("both", main, None), *((k, comp, a) for k, a in arms.items())):
        # the main suite with all its seeds: the cached pass chapter 2 makes, not a second one over a subset
        r = analysis.run(
            prof.name, arm=arm, sizes=sizes, seeds=None if arm is None else seeds, probe=main.probe, progress=False
        )
        curves.append(pair_curves(_among(r.pairs, seeds), kind))
        cka.append(final_cka(_among(r.seed_cka, seeds), kind))
        family = r.family
        for size in sizes:
            for k in seeds:
                _, values, _ = r.suite.spectra_records(family, size, k)
                records[kind, size, k] = values[-1]
    cat = lambda frames: pd.concat(frames, ignore_index=True)  # noqa: E731
    return SourcesData(main, comp, arms, sizes, seeds, cat(curves), final_spectra(records), cat(cka))
