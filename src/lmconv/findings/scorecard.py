"""The scorecard: every claim of :mod:`lmconv.findings.claims` judged on one suite, from the measurements its chapters
make.

:func:`evidence` gathers, with the chapters' default settings, what each judge needs (phases of the cross-seed
KL, per-token effects, CKA stabilisation, effective rank, SoSD events, the schedule sweep); :func:`collect`
judges every claim; :func:`table` lays the verdicts out for the book, one row per claim, with what differs from
the paper's setting. Missing companion data (a sweep suite not trained) give *inconclusive* rows that say so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import analysis
from ..checkpoints import suites, summaries
from ..errors import LmconvError
from ..lenses import activations as act
from ..lenses import downstream as ds
from ..lenses import kl as K
from ..lenses import spectral as sp
from ..metrics import stats
from . import claims, papers
from .claims import Estimate, Verdict

N_BOOT = 400  # resamples of documents × seeds for the per-token effects
COS_THRESHOLD = 0.99  # chapter 7's default for the saturation of cos(σ_t, σ_T) and cos(W_t, W_T)


# ---------------------------------------------------------------------------------------------------------
# per-token effects with an interval over documents and seeds
# ---------------------------------------------------------------------------------------------------------


def token_effects(
    cube: K.Cube,
    x: np.ndarray,
    docs: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = stats.LEVEL,
) -> Estimate:
    """An effect on per-token E[conv] (= −KL) at the cube's last checkpoint, with a bootstrap over documents
    and seeds.

    Without ``groups``: the least-squares slope of E[conv] on ``x`` (e.g. log10 frequency), per seed pair, then
    averaged over pairs. With ``groups`` (an array of "a", "b" or None per token): mean E[conv] of the "a"
    tokens minus that of the "b" tokens, per pair, averaged over pairs. Interval: central ``level`` percentile
    interval over ``n_boot`` resamples that draw the probe's documents with replacement (a token weighs as
    often as its document is drawn) and, independently, the seeds (a pair weighs count(i)·count(j)), so that
    neither tokens of one document nor pairs sharing a seed are taken as independent. Units: the per-pair values.
    """
    y = -cube.values[-1]  # (R, N)
    pairs = [tuple(int(s) for s in p) for p in cube.reps]
    docs = np.asarray(docs)
    _, doc_idx = np.unique(docs, return_inverse=True)
    n_docs = int(doc_idx.max()) + 1
    rng = np.random.default_rng(seed)

    def per_pair(w: np.ndarray) -> np.ndarray:
        if groups is None:
            xm = (w * x).sum() / w.sum()
            dx = x - xm
            return (y * (w * dx)).sum(axis=1) / (w * dx * dx).sum()
        a, b = w * (groups == "a"), w * (groups == "b")
        return (y @ a) / a.sum() - (y @ b) / b.sum()

    ones = np.ones(y.shape[1])
    units = per_pair(ones)
    value = float(units.mean())
    pw = stats.seed_pair_weights(pairs, n_boot, seed)
    boots = []
    for b in range(n_boot):
        w = np.bincount(rng.integers(0, n_docs, n_docs), minlength=n_docs)[doc_idx].astype(float)
        if pw[b].sum() == 0 or (groups is None and np.ptp(x[w > 0]) == 0):
            continue
        if groups is not None and ((w * (groups == "a")).sum() == 0 or (w * (groups == "b")).sum() == 0):
            continue
        boots.append(float(pw[b] @ per_pair(w) / pw[b].sum()))
    a = (1 - level) / 2
    lo, hi = np.quantile(boots, [a, 1 - a]) if boots else (math.nan, math.nan)
    iv = stats.Interval(
        float(lo),
        float(hi),
        level,
        f"percentile bootstrap over {n_docs} documents and the seeds, {len(boots)} resamples",
        len(pairs),
    )
    return Estimate(value, iv, tuple(float(u) for u in units))


def frequency_effects(cubes: dict[str, K.Cube], targets: pd.DataFrame, **kw) -> dict[str, Estimate]:
    """Per size: :func:`token_effects` slope of E[conv] on log10(1 + training count) (``targets``: the probe's
    scored tokens with ``frequency`` and ``doc``), the evidence of ``lmconv.findings.claims.judge_frequency``."""
    x = np.log10(1.0 + targets["frequency"].to_numpy(dtype=float))
    return {s: token_effects(c, x, targets["doc"].to_numpy(), **kw) for s, c in cubes.items()}


def function_word_effects(
    cubes: dict[str, K.Cube], targets: pd.DataFrame, classes: np.ndarray, **kw
) -> dict[str, Estimate]:
    """Per size: :func:`token_effects` E[conv] of function words minus content words (``classes`` from
    ``lmconv.lenses.kl.word_classes``), the evidence of ``lmconv.findings.claims.judge_function_words``."""
    ab = np.array([{"function": "a", "content": "b"}.get(c) for c in classes], dtype=object)
    x = np.zeros(len(ab))
    return {s: token_effects(c, x, targets["doc"].to_numpy(), ab, **kw) for s, c in cubes.items()}


# ---------------------------------------------------------------------------------------------------------
# evidence
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Evidence:
    """What the judges need, per claim id: the positional arguments of its judge."""

    profile: str
    sizes: list[str]
    seeds: list[int]
    by_claim: dict[str, tuple]


def _kl_evidence(res: analysis.Results, prof, rel_tol: float, pos_source: str) -> dict[str, tuple]:
    cubes = K.pair_cubes(res.pairs, "ordered", res.probe.n_tokens)
    spreads = K.phase_spreads(cubes, rel_tol)
    targets = res.targets
    tok = res.suite.source.load_tokenizer(suites.CheckpointRef(res.family, res.sizes[0], res.seeds[0], res.steps[-1]))
    tags = K.probe_tags(prof.corpus, tok, res.probe, accuracy=False)
    ptb, upos = tags.stream_tags(pos_source)
    cur = K.position_tags(upos, targets, "current")
    freq = frequency_effects(cubes, targets)
    func = function_word_effects(cubes, targets, K.word_classes(cur))
    cur_ptb = None if ptb is None else K.position_tags(ptb, targets, "current")
    groups = K.tag_groups(cur_ptb, cur, "grouped")
    by_group = K.econv(cubes, "pairs", {s: groups for s in cubes})
    orders = {s: K.order_by_last(by_group, s) for s in cubes}
    return {
        "kl.four_phases": (spreads,),
        "kl.reconvergence_by_size": (spreads,),
        "kl.frequency": (freq,),
        "kl.function_words": (func,),
        "kl.pos_order": (orders,),
    }


def _activation_evidence(res: analysis.Results, total: int) -> dict[str, tuple]:
    cka = act.select_cka(res.cka)
    stab = act.stabilisation(cka, total)
    shares = act.early_shares(stab, papers.CKA_STABLE_FRACTION, res.sizes)
    fractions = act.median_fractions(stab, res.sizes)
    per_layer = act.per_by_layer(res.rank)
    units = act.link_units(cka, per_layer, stab)
    corr = {
        c: act.bootstrap_corr(g, "per_w_mean", "stab_fraction", scope="within")
        for c, g in units.groupby("circuit", sort=False)
    }
    return {
        "stab.early_20pct": (shares,),
        "stab.smaller_slower": (fractions,),
        "stab.rank": (corr,),
    }


def _downstream_evidence(res: analysis.Results, total: int, rel_tol: float) -> dict[str, tuple]:
    if res.evals is None or not len(res.downstream):
        return {"stab.late_degradation": (None,), "kl.downstream_reconvergence": (None,)}
    scores = ds.item_scores(res.downstream)
    acc = ds.accuracy(scores)
    last = acc[acc.set == "lastword"]
    return {
        "stab.late_degradation": (ds.late_change(last, res.sizes, total),),
        "kl.downstream_reconvergence": (ds.phase_spreads(ds.pair_kl(scores), res.sizes, rel_tol),),
    }


def _spectral_evidence(suite: analysis.Suite, res: analysis.Results) -> dict[str, tuple]:
    events, dense = sp.run_events(suite, res.family, res.sizes, res.seeds)
    sat = sp.saturation_steps(sp.checkpoint_spectra(res.weights), COS_THRESHOLD)
    return {
        "sosd.before_weights": (sp.saturation_gap(sat, int(max(res.steps)), res.sizes),),
        "sosd.falls_to_floor": (sp.fall_by_size(events, res.sizes),),
        "sosd.at_loss_transition": (sp.delta_by_size(events, res.sizes),),
        "sosd.mlp_below_attention": (sp.mlp_attention_ratio(dense["deltas"], events, res.sizes),),
    }


def _sweep_evidence(profile: str) -> dict[str, tuple]:
    name = sp.sweep_profile_for(profile)
    try:  # the sweep is a companion suite: not trained (or not finished) means these claims are not tested here
        suite = analysis.Suite.open(name)
        seeds = sp.complete_seeds(suite)
    except LmconvError:
        return {"sosd.across_schedules": (None,), "sosd.norm_floor": (None,)}
    prof = suite.profile
    arms, deltas, norms = {}, [], []
    for arm in prof.arms:
        fam = prof.arm(arm).family
        events, dense = sp.run_events(suite, fam, list(prof.sizes), seeds)
        arms[arm] = [f for fs in sp.fall_by_size(events, list(prof.sizes)).values() for f in fs]
        deltas.append(dense["deltas"])
        norms.append(dense["norms"])
    table = sp.scaling_table(prof, pd.concat(deltas, ignore_index=True), pd.concat(norms, ignore_index=True))
    fit = sp.scaling_fit(table)
    return {"sosd.across_schedules": (arms,), "sosd.norm_floor": (fit,)}


def evidence(profile: str = "default", *, rel_tol: float = 0.05, pos_source: str = "spacy") -> Evidence:
    """Run the chapters' measurements on ``profile`` (cached analyses) and return each judge's arguments."""
    suite = analysis.Suite.open(profile)
    res = analysis.run(profile, progress=False)
    prof = suite.profile
    total = prof.arm(res.family).train.steps
    by: dict[str, tuple] = {}
    by.update(_kl_evidence(res, prof, rel_tol, pos_source))
    by.update(_activation_evidence(res, total))
    by.update(_downstream_evidence(res, total, rel_tol))
    by.update(_spectral_evidence(suite, res))
    by.update(_sweep_evidence(profile))
    return Evidence(profile, list(res.sizes), list(res.seeds), by)


def collect(ev: Evidence) -> list[Verdict]:
    """Judge every claim of :data:`lmconv.findings.claims.CLAIMS` on the evidence (a claim without evidence is
    missing)."""
    out = []
    for c in claims.CLAIMS:
        args = ev.by_claim.get(c.id)
        out.append(claims.judge(c.id, *args) if args is not None else claims.missing(c.id, c.words, "not measured"))
    return out


# ---------------------------------------------------------------------------------------------------------
# for the book
# ---------------------------------------------------------------------------------------------------------


def _count(n: float) -> str:
    """A parameter count for prose: 12k, 1.1M, 2.8B."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.2g}{unit}" if n < 10 * div else f"{n / div:.0f}{unit}"
    return f"{n:.0f}"


def setting(profile: str) -> dict[str, str]:
    """What differs from each paper's setting, per lens, from the profile (scale, tokens per parameter, data)."""
    prof = analysis.Suite.open(profile).profile
    sizes = summaries.sizes_table(prof)
    tpp = summaries.tokens_per_parameter(prof)
    ours = (
        f"ours: {_count(sizes.parameters.min())}–{_count(sizes.parameters.max())} parameters, "
        f"{tpp.min():.1f}–{tpp.max():.0f} tokens per parameter, {prof.corpus} corpus, {len(prof.seeds)} seeds"
    )
    pp_tpp = summaries.polypythia_tokens_per_parameter()
    span = f"{pp_tpp.min():,.0f}–{pp_tpp.max():,.0f}"
    pythia = f"{pp_tpp.index[0]}–{pp_tpp.index[-1]}, {span} tokens per parameter, the Pile"
    return {
        "cross-seed KL": f"paper: PolyPythia {pythia}, 5 seeds; {ours}",
        "activations": f"paper: Pythia 70m–2.8b, one seed, the Pile; {ours}",
        "effective rank": f"paper: Pythia 70m–2.8b, one seed, the Pile; {ours}",
        "downstream": f"paper: Pythia zero-shot ARC-Easy and LAMBADA (BLiMP for the cross-seed KL); {ours}; "
        "our analogues: minimal pairs and a last-word set cut from held-out Brown text",
        "spectra": f"paper: GPT-2 and LLaMA up to 2B, one run per setting; {ours}",
    }


#: The entry of :func:`lmconv.findings.scorecard.length_dependence` for a claim the cooldown ladder does not test.
NOT_TESTED = "–"


def length_dependence(profile: str) -> dict[str, str]:
    """Per claim id, "depends on training length?" from the profile's cooldown ladder (chapter 10,
    :func:`lmconv.lenses.ladder.length_answers` at its default settings): "yes" or "not seen" within the ladder's
    tokens per parameter, and whether the decay changes the verdict; :data:`lmconv.findings.scorecard.NOT_TESTED`
    for a claim the ladder does not test; "not measured" for all when the profile names no ladder or it is not
    trained."""
    from ..lenses import ladder as L

    try:
        lad = L.measure(L.companion(profile))
    except LmconvError:  # no ladder companion, or not trained (or not finished) here
        return {c.id: "not measured" for c in claims.CLAIMS}
    tpp = lad.regime.tokens_per_parameter
    span = f"{tpp.min():.1f}–{tpp.max():.0f} tokens per parameter"
    out = {c.id: NOT_TESTED for c in claims.CLAIMS}
    for cid, a in L.length_answers(lad).items():
        out[cid] = f"{a.length} ({span}); the decay changes the verdict: {a.decay}"
    return out


def table(verdicts: Sequence[Verdict], profile: str, lengths: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per claim: paper, its words, source, our verdict, the key number with its interval, the reason
    (per-size values), the figure that shows it, what differs from the paper's setting and whether the verdict
    depends on training length (``lengths``: :func:`lmconv.findings.scorecard.length_dependence`)."""
    diff = setting(profile)
    lengths = lengths if lengths is not None else length_dependence(profile)
    rows = []
    for v in verdicts:
        c = claims.claim(v.claim)
        num = claims.fmt(v.value, ".3g")
        if v.interval is not None and math.isfinite(v.interval.lo):
            num += f" {v.interval.text('{:.3g}')}"
        rows.append(
            {
                "claim": c.id,
                "paper": c.paper,
                "the paper's words": c.words,
                "source": f"{c.source}, {c.where}",
                "verdict": v.outcome,
                "statistic": v.statistic,
                "value [interval]": num,
                "why": v.reason,
                "figure": c.figure,
                "setting": diff.get(c.lens, ""),
                "depends on training length?": lengths.get(c.id, NOT_TESTED),
            }
        )
    return pd.DataFrame(rows)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _key_number(v: Verdict) -> str:
    num = claims.fmt(v.value, ".3g")
    if v.interval is not None and math.isfinite(v.interval.lo) and math.isfinite(v.interval.hi):
        num += f" [{v.interval.lo:.3g}, {v.interval.hi:.3g}]"
    return num


def _length_cell(text: str) -> str:
    """The table's short form of a :func:`lmconv.findings.scorecard.length_dependence` entry, linked to the chapter
    that decides it."""
    if text in (NOT_TESTED, "not measured"):
        return text
    return f"{text.split(' (')[0]} ({{ref}}`ch-training-length`)"


def markdown(verdicts: Sequence[Verdict], profile: str, lengths: Mapping[str, str] | None = None) -> str:
    """The scorecard in MyST (for ``{glue:md}`` with ``:format: myst``): a table with one row per claim (its
    words with the paper cited, our verdict in bold, the key number with its interval, the chapter that shows
    it, whether it depends on training length), then per claim its id, source, statistic, reason, interval,
    rule and length answer as a list, which a table narrow enough for the page would cut."""
    lengths = lengths if lengths is not None else length_dependence(profile)
    lines = [
        "| the paper's claim | verdict | key number [interval] | shown in | depends on training length? |",
        "|---|---|---|---|---|",
    ]
    for v in verdicts:
        c = claims.claim(v.claim)
        length = _length_cell(lengths.get(c.id, NOT_TESTED))
        lines.append(
            f"| {_cell(c.words)} {{cite:p}}`{c.paper}` | **{v.outcome}** | {_key_number(v)} | {{ref}}`{c.figure}` "
            f"| {length} |"
        )
    lines.append("")
    for v in verdicts:
        c = claims.claim(v.claim)
        iv = f" *Interval:* {_cell(v.interval.text('{:.3g}'))}." if v.interval is not None else ""
        units = "; ".join(
            f"{k} " + ", ".join(claims.fmt(u, ".3g") for u in e.units[:12]) + (" …" if len(e.units) > 12 else "")
            for k, e in v.per_size.items()
            if e.units
        )
        iv += f" *Per {v.unit}:* {_cell(units)}." if units else ""
        if lengths.get(c.id, NOT_TESTED) != NOT_TESTED:
            iv += f" *Depends on training length?* {_cell(lengths[c.id])}."
        lines.append(
            f"- **{_cell(c.words)}** (`{c.id}`; {c.source}, {_cell(c.where)}): **{v.outcome}**. "
            f"{_cell(v.statistic)}: {_cell(v.reason)}.{iv} *Rule:* {_cell(v.rule)}."
        )
    return "\n".join(lines)


def setting_table(profile: str) -> pd.DataFrame:
    """What differs from each paper's setting, one row per lens."""
    return pd.DataFrame({"lens": list(setting(profile)), "paper's setting vs ours": list(setting(profile).values())})


def headline_figure(profile: str):
    """Chapter 9's figure of every lens's events on one log-step axis, with its default settings."""
    from ..figures import synthesis as fig
    from ..lenses import synthesis as syn

    res = analysis.run(profile, progress=False)
    total = res.suite.profile.arm().train.steps
    events = pd.concat(
        [
            syn.kl_events(res.pairs),
            syn.cka_events(res.cka, total),
            syn.sosd_events(res.suite, res.family, res.sizes, res.seeds),
        ],
        ignore_index=True,
    )
    return fig.events_chart(events, syn.summarise(events, res.sizes), res.sizes)


# ---------------------------------------------------------------------------------------------------------
# beyond the papers: the controlled experiments of our own
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """The answer of one experiment the papers did not run, as its section's tested function words it."""

    question: str
    answer: str  # the section's conclusion, or what is missing to measure it
    figure: str  # label of the section that shows it
    function: str  # the function that wrote ``answer``


def beyond(profile: str) -> list[Finding]:
    """The answers of the book's own experiments on ``profile`` and its companion suites (annealing, section 2a;
    initialisation or data order, section 2b); a companion not trained gives an answer that says so."""
    from ..lenses import annealing as A
    from ..lenses import seed_sources as S

    def anneal() -> str:
        return A.conclusion(A.summarise(A.load(profile)))

    def sources() -> str:
        return S.conclusion(S.summarise(S.load(profile).curves))

    experiments = (
        (
            "Is late reconvergence learned, or an effect of the decaying learning rate?",
            "ch-annealing",
            anneal,
            "lmconv.lenses.annealing.conclusion",
        ),
        (
            "Which source of a seed drives each phase of the cross-seed KL?",
            "ch-seed-sources",
            sources,
            "lmconv.lenses.seed_sources.conclusion",
        ),
    )
    out = []
    for question, figure, measure, function in experiments:
        try:
            answer = measure()
        except LmconvError as e:  # a companion suite not trained: the row says so, and how to train it
            answer = f"Not measured in this build: {e.problem}" + (f" ({e.fix})" if e.fix else "")
        out.append(Finding(question, answer, figure, function))
    return out


def beyond_markdown(findings: Sequence[Finding]) -> str:
    """The findings in MyST: one row per question, its answer and the section that shows it."""
    lines = ["| question | answer | shown in |", "|---|---|---|"]
    for f in findings:
        lines.append(f"| {_cell(f.question)} | {_cell(f.answer)} ({{py:func}}`{f.function}`) | {{ref}}`{f.figure}` |")
    return "\n".join(lines)


def counts(verdicts: Sequence[Verdict]) -> dict[str, int]:
    """How many claims got each outcome."""
    return {o: sum(v.outcome == o for v in verdicts) for o in claims.OUTCOMES}


def headline(verdicts: Sequence[Verdict], profile: str) -> str:
    """The introduction's one paragraph of findings, built from the verdicts."""
    n = counts(verdicts)
    by = {v.claim: v for v in verdicts}

    def named(outcome: str) -> str:
        ids = [claims.claim(v.claim).words for v in verdicts if v.outcome == outcome]
        return "; ".join(ids) if ids else "none"

    diff = setting(profile)["cross-seed KL"].split("; ours: ")[-1]
    parts = [
        f"Of the {len(verdicts)} claims tested on the {profile!r} suite ({diff}), {n['reproduced']} are reproduced, "
        f"{n['contradicted']} contradicted and {n['inconclusive']} inconclusive.",
        f"Reproduced: {named('reproduced')}.",
        f"Contradicted: {named('contradicted')}.",
    ]
    if "sosd.at_loss_transition" in by:
        sync = by["sosd.at_loss_transition"].sentence()
        parts.append(f"On the timing of the spectrum: {sync[0].lower()}{sync[1:]}")
    return " ".join(parts)


__all__ = [
    "NOT_TESTED",
    "Evidence",
    "Finding",
    "beyond",
    "beyond_markdown",
    "collect",
    "counts",
    "evidence",
    "frequency_effects",
    "function_word_effects",
    "headline",
    "headline_figure",
    "length_dependence",
    "markdown",
    "setting",
    "setting_table",
    "table",
    "token_effects",
]
