"""Chapter 10: is "not reproduced" a matter of training length? A cooldown ladder on one constant-rate trunk.

A ladder profile (``ladder.yaml``) trains, per size and seed, one *trunk* at a constant rate after warmup, and
branches from it *cooled* arms (``cool-L``): each starts from the trunk's exact state at the start of its decay
and ends at step L, a complete run of L steps. Every length L of the ladder is read twice:

- **constant**: the trunk read up to step L (its checkpoint at L is the "final" one): what length alone does;
- **cooled**: the arm ``cool-L``: the same run with the learning-rate decay at its end.

At every rung the book's own judges (:mod:`lmconv.findings.claims`) decide three length-dependent claims on the
same evidence the main suite's chapters use; :func:`lmconv.lenses.ladder.length_answers` then asks, per claim,
whether the verdict changes with the length (cooled rungs) and whether the decay changes it (cooled against
constant at the same length).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from .. import analysis
from ..analysis import engine
from ..chapters import params
from ..checkpoints import summaries
from ..errors import LmconvError
from ..findings import claims
from ..training import profiles
from . import activations as act
from . import kl as K
from . import spectral as sp

params.register("ladder_profile", params.choice_param((None, *profiles.available())))

CONSTANT, COOLED = "constant", "cooled"
VARIANTS = (CONSTANT, COOLED)
#: The claims (ids of :data:`lmconv.findings.claims.CLAIMS`) whose verdict the ladder re-decides at every rung.
CLAIMS = ("stab.early_20pct", "sosd.at_loss_transition", "kl.reconvergence_by_size")


def companion(profile: str, given: str | None = None) -> str:
    """The ladder suite of a book profile: ``given``, else its ``companions.ladder``."""
    return profiles.companion(profile, "ladder", given)


@dataclass(frozen=True)
class Rung:
    """One length of the ladder read one way: the trunk up to ``length`` (constant) or the cooled arm."""

    length: int
    variant: Literal["constant", "cooled"]
    arm: str  # the arm whose checkpoints it reads
    branch_step: int | None  # cooled: the trunk step its decay starts from

    @property
    def label(self) -> str:
        return f"{self.variant} {self.length:,}"


def trunk_arm(profile: profiles.Profile) -> str:
    """The arm every cooldown branches from; it trains from step 0 at a constant rate."""
    parents = {str(b["arm"]) for a in profile.arms.values() if (b := a.train.branch_from)}
    fix = "a ladder profile has one constant-rate trunk arm and cooled arms that branch from it (see ladder.yaml)"
    if len(parents) != 1:
        raise LmconvError(f"profile {profile.name!r} is no ladder: its arms branch from {sorted(parents)}", fix)
    trunk = parents.pop()
    t = profile.arm(trunk).train
    if t.branch_from or t.schedule.kind != "constant":
        raise LmconvError(
            f"the trunk {trunk!r} of profile {profile.name!r} must train from step 0 at a constant rate", fix
        )
    return trunk


def rungs(profile: profiles.Profile) -> list[Rung]:
    """Every length of the ladder (the cooled arms' lengths, short → long), constant then cooled."""
    trunk = trunk_arm(profile)
    kept = set(profile.checkpoint_steps(trunk))
    cooled = sorted(
        (a for a in profile.arms.values() if (b := a.train.branch_from) and b["arm"] == trunk),
        key=lambda a: a.train.steps,
    )
    out = []
    for a in cooled:
        n = a.train.steps
        if n not in kept:
            raise LmconvError(
                f"arm {a.family} of profile {profile.name!r} ends at step {n}, which is no checkpoint of the trunk",
                f"add {n} to checkpoints.extra, so the trunk can be read up to that length",
            )
        out += [Rung(n, CONSTANT, trunk, None), Rung(n, COOLED, a.family, int(a.train.branch_from["step"]))]
    return out


def regime(profile: profiles.Profile, train_tokens: int) -> pd.DataFrame:
    """Per size and length: the tokens a run of that length sees, per parameter, and in epochs of the training
    split (``train_tokens`` tokens)."""
    params = summaries.sizes_table(profile).set_index("size").parameters
    rows = []
    for r in rungs(profile):
        if r.variant != COOLED:
            continue
        t = profile.arm(r.arm).train
        tokens = r.length * t.batch_size * profile.context
        for size in profile.sizes:
            rows.append(
                {
                    "size": size,
                    "length": r.length,
                    "tokens": tokens,
                    "tokens_per_parameter": tokens / float(params[size]),
                    "epochs": tokens / train_tokens,
                }
            )
    return pd.DataFrame(rows)


def regime_sentence(ladder: Sequence[float], main: Sequence[float], papers: Sequence[float]) -> str:
    """Where the ladder's tokens per parameter lie against the main suite's and the papers' suites' (each a list
    of values): how far it stretches the main suite's range, and whether it reaches the papers'."""
    lo, hi = min(ladder), max(ladder)
    m_lo, m_hi, p_lo, p_hi = min(main), max(main), min(papers), max(papers)
    stretch = f"the ladder spans {lo:.1f}–{hi:.0f} tokens per parameter against the main suite's {m_lo:.1f}–{m_hi:.0f}"
    if hi < p_lo:
        reach = f"its longest run stays a factor {p_lo / hi:.0f} below the least-trained papers' suite ({p_lo:,.0f})"
    elif lo > p_hi:
        reach = f"its shortest run lies above every one of the papers' suites (at most {p_hi:,.0f})"
    else:
        reach = f"it overlaps the papers' range ({p_lo:,.0f}–{p_hi:,.0f})"
    return f"{stretch[0].upper()}{stretch[1:]}; {reach}"


def steps_trained(profile: profiles.Profile) -> dict[str, int]:
    """Optimizer steps per size and seed: ``ladder`` as trained (every arm from its branch point), and
    ``from scratch`` as if every arm trained from step 0."""
    own = sum(a.train.steps - (int(b["step"]) if (b := a.train.branch_from) else 0) for a in profile.arms.values())
    return {"ladder": own, "from scratch": sum(a.train.steps for a in profile.arms.values())}


#: The key under which :func:`lmconv.lenses.ladder.rung_evidence` returns the per-run t_S and t_L table.
SOSD_EVENTS = "sosd events"


def rung_results(profile: profiles.Profile, rung: Rung, sizes: Sequence[str], seeds: Sequence[int]) -> analysis.Results:
    """The engine's one pass over the rung's checkpoints up to its length (cached); the last one is the final
    checkpoint every CKA compares with. The rungs share the trunk's checkpoints, read against different finals:
    the pass keeps their activations, so each checkpoint runs forward once for the whole ladder."""
    steps = [s for s in profile.checkpoint_steps(rung.arm) if s <= rung.length]
    options = engine.EngineOptions(device=profile.arm(rung.arm).train.device, keep_activations=True)
    return analysis.run(
        profile.name, arm=rung.arm, sizes=list(sizes), seeds=list(seeds), steps=steps, options=options, progress=False
    )


def rung_stabilisation(res: analysis.Results, rung: Rung, cka_threshold: float = 0.9) -> pd.DataFrame:
    """Each layer's stabilisation step on the rung (:func:`lmconv.lenses.activations.stabilisation`), as a
    fraction of the rung's length."""
    return act.stabilisation(act.select_cka(res.cka), rung.length, threshold=cka_threshold)


def rung_evidence(
    suite: analysis.Suite,
    rung: Rung,
    sizes: Sequence[str],
    seeds: Sequence[int],
    *,
    rel_tol: float = 0.05,
    cka_threshold: float = 0.9,
    sosd_rule: sp.SosdRule | None = None,
) -> dict[str, tuple]:
    """The judges' arguments for :data:`lmconv.lenses.ladder.CLAIMS` on one rung
    (:func:`lmconv.lenses.ladder.rung_results`, its spectra and its validation loss up to ``rung.length``), and
    the per-run SoSD events under :data:`lmconv.lenses.ladder.SOSD_EVENTS`."""
    res = rung_results(suite.profile, rung, sizes, seeds)
    shares = act.early_shares(rung_stabilisation(res, rung, cka_threshold), sizes=res.sizes)
    events, _ = sp.run_events(suite, res.family, res.sizes, res.seeds, sosd_rule, upto=rung.length)
    spreads = K.phase_spreads(K.pair_cubes(res.pairs, "ordered", res.probe.n_tokens), rel_tol)
    return {
        "stab.early_20pct": (shares,),
        "sosd.at_loss_transition": (sp.delta_by_size(events, res.sizes),),
        "kl.reconvergence_by_size": (spreads,),
        SOSD_EVENTS: events,
    }


@dataclass(frozen=True)
class Ladder:
    """Every rung's verdicts on :data:`lmconv.lenses.ladder.CLAIMS`, and the regime of each length."""

    profile: str  # the ladder suite
    sizes: list[str]
    seeds: list[int]
    rungs: list[Rung]
    verdicts: dict[tuple[int, str], dict[str, claims.Verdict]]  # (length, variant) → claim → verdict
    regime: pd.DataFrame  # :func:`lmconv.lenses.ladder.regime`
    # (length, variant) → per run t_S, t_L and why (:func:`lmconv.lenses.spectral.sosd_summary`)
    sosd: dict[tuple[int, str], pd.DataFrame] = field(default_factory=dict)


def measure(profile: str, sizes: Sequence[str] | None = None, seeds: Sequence[int] | None = None, **kw: Any) -> Ladder:
    """Judge :data:`lmconv.lenses.ladder.CLAIMS` at every rung of the ladder suite ``profile`` (``kw``: see
    :func:`lmconv.lenses.ladder.rung_evidence`)."""
    from ..training import train as train_mod

    suite = analysis.Suite.open(profile)
    prof = suite.profile
    sizes = list(sizes or prof.sizes)
    seeds = list(seeds or prof.seeds)
    verdicts, sosd, ladder = {}, {}, rungs(prof)
    for r in ladder:
        ev = rung_evidence(suite, r, sizes, seeds, **kw)
        verdicts[(r.length, r.variant)] = {c: claims.judge(c, *ev[c]) for c in CLAIMS}
        sosd[(r.length, r.variant)] = ev[SOSD_EVENTS]
    reg = regime(prof, len(train_mod.prepare_data(prof).train))
    return Ladder(prof.name, sizes, seeds, ladder, verdicts, reg[reg["size"].isin(sizes)], sosd)


def lengths(lad: Ladder) -> list[int]:
    """The ladder's lengths, short → long."""
    return sorted({r.length for r in lad.rungs})


def table(lad: Ladder) -> pd.DataFrame:
    """One row per size, length and variant: tokens per parameter, epochs, and per claim the verdict, the
    statistic (mean over units) and its interval where it has one."""
    reg = lad.regime.set_index(["size", "length"])
    rows = []
    for size in lad.sizes:
        for n in lengths(lad):
            for variant in VARIANTS:
                row: dict[str, Any] = {
                    "size": size,
                    "length": n,
                    "variant": variant,
                    "tokens_per_parameter": float(reg.loc[(size, n), "tokens_per_parameter"]),
                    "epochs": float(reg.loc[(size, n), "epochs"]),
                }
                for c, v in lad.verdicts[(n, variant)].items():
                    e = v.per_size.get(size)
                    row[f"{c}:verdict"] = v.outcome
                    row[f"{c}:value"] = e.value if e else None
                    iv = e.interval if e else None
                    row[f"{c}:interval"] = f"[{claims.fmt(iv.lo)}, {claims.fmt(iv.hi)}]" if iv else ""
                rows.append(row)
    return pd.DataFrame(rows)


def sosd_table(lad: Ladder) -> pd.DataFrame:
    """Per size, length and variant: in how many runs the SoSD point t_S and the loss transition t_L are found,
    their medians over those runs, and the t_S detector's most frequent reason: over the runs without a point
    where there are any (why it is absent), else over all."""
    rows = []
    for size in lad.sizes:
        for n in lengths(lad):
            for variant in VARIANTS:
                ev = lad.sosd[(n, variant)]
                ev = ev[ev["size"] == size]
                t_s, t_l = (pd.to_numeric(ev[c], errors="coerce").dropna() for c in ("t_S", "t_L"))
                absent = ev[pd.to_numeric(ev.t_S, errors="coerce").isna()]
                rows.append(
                    {
                        "size": size,
                        "length": n,
                        "variant": variant,
                        "runs": len(ev),
                        "t_S found": len(t_s),
                        "t_L found": len(t_l),
                        "median t_S": float(t_s.median()) if len(t_s) else None,
                        "median t_L": float(t_l.median()) if len(t_l) else None,
                        "why (t_S)": sp.common_reason(list((absent if len(absent) else ev).t_S_reason)),
                    }
                )
    return pd.DataFrame(rows)


def interval_kinds(lad: Ladder) -> str:
    """What the intervals of :func:`lmconv.lenses.ladder.table` are, in words (each kind once)."""
    kinds = {
        f"{e.interval.level:.0%} {e.interval.method}"
        for vs in lad.verdicts.values()
        for v in vs.values()
        for e in v.per_size.values()
        if e.interval is not None
    }
    return "; ".join(sorted(kinds)) or "none"


@dataclass(frozen=True)
class LengthAnswer:
    """Whether one claim's verdict depends on the length of training, and whether the decay changes it."""

    claim: str
    length: Literal["yes", "not seen"]  # does the cooled runs' verdict differ between two lengths?
    decay: Literal["yes", "not seen"]  # does a cooled run's verdict differ from the trunk's at the same length?
    outcomes: dict[tuple[int, str], str]  # (length, variant) → verdict
    path: dict[str, list[float | None]]  # size → the statistic of the cooled runs, short → long
    rule: str
    sentence: str


#: The rule of :func:`lmconv.lenses.ladder.length_answer`, in words.
LENGTH_RULE = (
    "depends on the length when the verdict of the cooled runs (complete runs with the decay) differs between two "
    "lengths; the decay changes it when, at some length, the cooled run's verdict differs from the trunk's read up "
    "to the same step. The rungs share their trunk's seeds, so they are not independent units and no p-value is "
    "given; the statistic's path over the lengths is shown beside the verdicts"
)


def _value(v: claims.Verdict, size: str) -> float | None:
    e = v.per_size.get(size)
    return None if e is None or e.value is None or not math.isfinite(e.value) else float(e.value)


def _span(lad: Ladder) -> str:
    tpp = lad.regime.tokens_per_parameter
    return f"{tpp.min():.1f}–{tpp.max():.0f} tokens per parameter"


def length_answer(lad: Ladder, claim: str) -> LengthAnswer:
    """:data:`lmconv.lenses.ladder.LENGTH_RULE` for one claim of :data:`lmconv.lenses.ladder.CLAIMS`."""
    ns = lengths(lad)
    out = {(n, var): lad.verdicts[(n, var)][claim].outcome for n in ns for var in VARIANTS}
    cooled = [out[(n, COOLED)] for n in ns]
    length = "yes" if len(set(cooled)) > 1 else "not seen"
    differ = [n for n in ns if out[(n, COOLED)] != out[(n, CONSTANT)]]
    decay = "yes" if differ else "not seen"
    path = {s: [_value(lad.verdicts[(n, COOLED)][claim], s) for n in ns] for s in lad.sizes}
    by_len = ", ".join(f"{n:,} steps {out[(n, COOLED)]}" for n in ns)
    head = (
        f"Depends on the length within {_span(lad)}: the cooled runs' verdict changes ({by_len})"
        if length == "yes"
        else f"No dependence on the length seen within {_span(lad)}: the cooled runs' verdict is {cooled[0]} at "
        f"every length ({', '.join(f'{n:,}' for n in ns)} steps)"
    )
    stat = lad.verdicts[(ns[-1], COOLED)][claim].statistic
    moves = "; ".join(f"{s} " + " → ".join(claims.fmt(x) for x in xs) for s, xs in path.items())
    dec = (
        "the decay changes the verdict at "
        + ", ".join(f"{n:,} steps ({out[(n, CONSTANT)]} without it, {out[(n, COOLED)]} with it)" for n in differ)
        if differ
        else "the decay does not change the verdict at any length"
    )
    sentence = f"{head}; {stat}, short → long: {moves}; {dec}"
    return LengthAnswer(claim, length, decay, out, path, LENGTH_RULE, sentence)


def length_answers(lad: Ladder) -> dict[str, LengthAnswer]:
    """:func:`lmconv.lenses.ladder.length_answer` for every claim of :data:`lmconv.lenses.ladder.CLAIMS`."""
    return {c: length_answer(lad, c) for c in CLAIMS}


#: Training steps averaged to read the trunk's training loss at a length (the batches just before it).
TRAIN_WINDOW = 100


@dataclass(frozen=True)
class Repetition:
    """Whether repeating the training split limits the trunk: per size, does its held-out loss still fall over
    the last doubling of length, by more than the seeds spread?"""

    table: pd.DataFrame  # per size and length: epochs, held-out and training loss (seed means), gap, seed spread
    falling: dict[str, bool]  # size → the held-out loss fell beyond the seed spread over the last two lengths
    sentence: str


def repetition(
    train_log: pd.DataFrame, val_log: pd.DataFrame, regime: pd.DataFrame, window: int = TRAIN_WINDOW
) -> Repetition:
    """The trunk (constant rate, no decay) read at every length of ``regime`` (:func:`lmconv.lenses.ladder.regime`):
    held-out loss at that step and training loss over the ``window`` steps before it (means over seeds), their
    gap (held-out − training), and the held-out loss's spread (max − min) over seeds. At a size the held-out loss
    *still falls* when its mean drops between the two longest lengths by more than the spread at the longest:
    then the repeated data has not stopped the runs from generalising better, and the longest rungs measure
    length, not the limit of the data."""
    rows = []
    for (size, n), reg in regime.set_index(["size", "length"]).iterrows():
        seeds = set(val_log.seed[val_log["size"] == size])
        v = val_log[(val_log["size"] == size) & (val_log.step == n)]
        t = train_log[(train_log["size"] == size) & (train_log.step > n - window) & (train_log.step <= n)]
        if v.empty or t.empty or set(v.seed) != seeds or set(t.seed) != seeds:
            raise LmconvError(
                f"the trunk of size {size} has no validation loss at step {n} or no training loss before it "
                f"for every seed ({sorted(seeds)})",
                "train the ladder with val_every dividing every length (ladder.yaml) and read its constant arm",
            )
        held, train = float(v.val_loss.mean()), float(t.groupby("seed").loss.mean().mean())
        rows.append(
            {
                "size": size,
                "length": int(n),
                "epochs": float(reg.epochs),
                "held-out loss": held,
                "training loss": train,
                "gap": held - train,
                "seed spread": float(v.val_loss.max() - v.val_loss.min()),
            }
        )
    tab = pd.DataFrame(rows)
    falling, parts = {}, []
    for size, g in tab.groupby("size", sort=False):
        g = g.sort_values("length")
        if len(g) < 2:
            raise LmconvError(f"the ladder has one length for size {size}", "give ladder.yaml two cooled arms or more")
        a, b = g.iloc[-2], g.iloc[-1]
        fall = a["held-out loss"] - b["held-out loss"]
        falling[str(size)] = bool(fall > b["seed spread"])
        parts.append(
            f"{size}: {a['held-out loss']:.3f} nats at {a.epochs:.1f} epochs, {b['held-out loss']:.3f} at "
            f"{b.epochs:.1f} ({-fall:+.3f}; seeds spread {b['seed spread']:.3f}), the gap to the training loss "
            f"{a.gap:+.3f} → {b.gap:+.3f}"
        )
    flat = [s for s, f in falling.items() if not f]
    if not flat:
        verdict = (
            "at every size the held-out loss still falls over the trunk's last doubling by more than the seeds "
            "spread, so repeating the training split has not yet stopped the runs from improving: the longest rungs "
            "measure the length of training, not the limit of the data"
        )
    else:
        verdict = (
            f"at {', '.join(flat)} the held-out loss no longer falls over the last doubling by more than the seeds "
            "spread: from there on the rungs mix the length of training with the repetition of the data"
        )
    return Repetition(tab, falling, f"Over the trunk's last doubling — {'; '.join(parts)} — {verdict}")
