"""The scorecard page: every claim of the three papers, judged on one suite, and how the settings differ."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from ..findings import claims, scorecard
from ..findings.claims import Verdict
from ..metrics import stats
from . import Glued, section


@dataclass
class ScorecardData:
    """The suite's evidence for every claim, and the verdicts on it."""

    P: SimpleNamespace
    evidence: scorecard.Evidence
    verdicts: list[Verdict]
    lengths: dict[str, str]  # claim id → depends on training length? (the cooldown ladder, chapter 10)


def load(P: SimpleNamespace) -> ScorecardData:
    ev = scorecard.evidence(P.profile)
    return ScorecardData(P, ev, scorecard.collect(ev), scorecard.length_dependence(P.profile))


@section
def the_claims(d: ScorecardData) -> Glued:
    """The counts of verdicts, the scorecard table, the rules' constants and the table of settings."""
    from IPython.display import Markdown

    n = scorecard.counts(d.verdicts)
    return {
        "profile": d.P.profile,
        "n_claims": len(d.verdicts),
        "n_reproduced": n["reproduced"],
        "n_contradicted": n["contradicted"],
        "n_inconclusive": n["inconclusive"],
        "n_sizes": len(d.evidence.sizes),
        "n_seeds": len(d.evidence.seeds),
        "level": stats.LEVEL,
        "n_resamples": stats.n_distinct_resamples(len(d.evidence.seeds)),
        "sync_tol": claims.SYNC_TOL,
        "sync_factor": 10**claims.SYNC_TOL,
        "nearly_all": claims.NEARLY_ALL,
        "fall_decades": claims.FALL_DECADES,
        "prop_tol": claims.PROPORTIONAL_TOL,
        "tab_scorecard": Markdown(scorecard.markdown(d.verdicts, d.P.profile, d.lengths)),
        "tab_setting": scorecard.setting_table(d.P.profile).set_index("lens"),
    }


@section
def beyond_the_papers(d: ScorecardData) -> Glued:
    """The answers of the book's own controlled experiments (:func:`lmconv.findings.scorecard.beyond`)."""
    from IPython.display import Markdown

    return {"tab_beyond": Markdown(scorecard.beyond_markdown(scorecard.beyond(d.P.profile)))}
