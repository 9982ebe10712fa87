"""Chapter 10, "Is it the length of training?" (``notebooks/10_training_length.md``): the length-dependent
claims re-decided at every rung of a cooldown ladder (:mod:`lmconv.lenses.ladder`), against tokens per parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pandas as pd

from .. import analysis
from ..book import status
from ..checkpoints import summaries
from ..figures import ladder as fig
from ..findings import claims, papers
from ..lenses import ladder as L
from ..lenses import spectral as sp
from ..training import profiles
from . import Glued, section

SHORT = {"stab.early_20pct": "stab", "sosd.at_loss_transition": "sosd", "kl.reconvergence_by_size": "kl"}


@dataclass
class LadderPage:
    """The ladder's verdicts at every rung, its table and the answer per claim."""

    P: SimpleNamespace
    main: profiles.Profile
    prof: profiles.Profile  # the ladder suite's profile
    lad: L.Ladder
    table: pd.DataFrame  # :func:`lmconv.lenses.ladder.table`
    answers: dict[str, L.LengthAnswer]
    repetition: L.Repetition  # does repeating the data limit the trunk?


def load(P: SimpleNamespace) -> LadderPage:
    """Judge the claims at every rung of the main profile's ladder companion (cached analyses)."""
    name = L.companion(P.profile, P.ladder_profile)
    rule = sp.SosdRule.from_params(P)
    lad = L.measure(name, P.sizes, P.seeds, rel_tol=P.rel_tol, cka_threshold=P.cka_threshold, sosd_rule=rule)
    suite = analysis.Suite.open(name)
    logs = suite.train_logs(suite.family(L.trunk_arm(suite.profile)))
    train, val = (df[df["size"].isin(lad.sizes) & df.seed.isin(lad.seeds)] for df in logs)
    rep = L.repetition(train, val, lad.regime)
    return LadderPage(P, profiles.load(P.profile), suite.profile, lad, L.table(lad), L.length_answers(lad), rep)


def _statistics(d: LadderPage) -> dict[str, str]:
    last = d.lad.verdicts[(L.lengths(d.lad)[-1], L.COOLED)]
    return {c: last[c].statistic for c in L.CLAIMS}


@section
def design(d: LadderPage) -> Glued:
    """The ladder: its suite, sizes, seeds, trunk, lengths and decay, what it cost, and its regime against the
    main suite's and the PolyPythias'."""
    prof, lad = d.prof, d.lad
    trunk = prof.arm(L.trunk_arm(prof)).train
    cooled = [r for r in lad.rungs if r.variant == L.COOLED]
    decay = prof.arm(cooled[0].arm).train.schedule
    steps = L.steps_trained(prof)
    pp = summaries.polypythia_tokens_per_parameter()
    main = summaries.tokens_per_parameter(d.main)
    tpp, epochs = lad.regime.tokens_per_parameter, lad.regime.epochs
    return {
        "within": papers.CKA_STABLE_FRACTION,
        "main_profile": d.main.name,
        "ladder_profile": prof.name,
        "sizes_text": ", ".join(lad.sizes),
        "seeds_text": ", ".join(map(str, lad.seeds)),
        "n_seeds": len(lad.seeds),
        "trunk_steps": trunk.steps,
        "lengths_text": ", ".join(f"{n:,}" for n in L.lengths(lad)),
        "branch_text": ", ".join(f"{r.branch_step:,}" for r in cooled),
        "decay_share": decay.decay_fraction,
        "final_ratio": decay.final_ratio,
        "steps_ladder": steps["ladder"],
        "steps_scratch": steps["from scratch"],
        "train_minutes": status.training_seconds(prof.name) / 60,
        "tpp_min": float(tpp.min()),
        "tpp_max": float(tpp.max()),
        "epochs_min": float(epochs.min()),
        "epochs_max": float(epochs.max()),
        "main_tpp_min": float(main.min()),
        "main_tpp_max": float(main.max()),
        "pp_tpp_min": float(pp.min()),
        "pp_tpp_max": float(pp.max()),
        "says_regime": L.regime_sentence(list(tpp), list(main), list(pp)),
        "tab_regime": lad.regime.set_index(["size", "length"]).round(3),
        "says_repetition": d.repetition.sentence,
        "tab_repetition": d.repetition.table.set_index(["size", "length"]).round(3),
    }


def _verdict_cell(verdict: str, value: float | None, interval: str) -> str:
    return f"{verdict} ({claims.fmt(value)}{' ' + interval if interval else ''})"


@section
def rungs(d: LadderPage) -> Glued:
    """Every rung's verdict on each claim, with its statistic and interval, and the chart against tokens per
    parameter."""
    t = d.table
    show = t[["size", "length", "variant", "tokens_per_parameter", "epochs"]].round(2)
    for c in L.CLAIMS:
        show[c] = [
            _verdict_cell(v, x, i)
            for v, x, i in zip(t[f"{c}:verdict"], t[f"{c}:value"], t[f"{c}:interval"], strict=True)
        ]
    pp = summaries.polypythia_tokens_per_parameter()
    chart = fig.by_tokens_per_parameter(t, _statistics(d), (float(pp.min()), float(pp.max())))
    return {
        "tab_ladder": show.set_index(["size", "length", "variant"]),
        "tab_sosd_events": L.sosd_table(d.lad).set_index(["size", "length", "variant"]).round(0),
        "fig_ladder": chart,
        "interval_kinds": L.interval_kinds(d.lad),
    }


@section
def answers(d: LadderPage) -> Glued:
    """Per claim: does its verdict depend on the length, does the decay change it, in one sentence each."""
    out: Glued = {"length_rule": L.LENGTH_RULE}
    for c, a in d.answers.items():
        out[f"says_{SHORT[c]}"] = a.sentence
    return out
