"""The "Methods" page (``notebooks/methods.md``): the probe set, the engine's options, the event detectors'
settings and measured rates, the constants of the intervals and verdicts, and whether training in bf16 changes
the findings."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from types import SimpleNamespace

import pandas as pd
from IPython.display import Markdown
from pandas.io.formats.style import Styler

from .. import analysis
from ..analysis import engine
from ..book import status
from ..checkpoints import suites
from ..data import probe
from ..findings import claims
from ..lenses import precision as prec
from ..metrics import calibration, stats
from ..metrics import phases as ph
from ..training import profiles
from . import Glued, section

DET_DRAWS = 100  # seeded synthetic curves per row of the detector table
DERIVATIVE = "loss elbow (derivative)"  # the alternative loss rule, whose null rate is quoted apart


@dataclass
class MethodsData:
    """The profile, the probe built from its first checkpoint's tokenizer, the engine's default options and the
    number of synthetic draws per row of the detector table."""

    prof: profiles.Profile
    probe: probe.Probe
    opts: engine.EngineOptions
    det_draws: int = DET_DRAWS
    precision_profile: str | None = None  # the fp32 twin (default: the profile's companions.precision)


def load(P: SimpleNamespace) -> MethodsData:
    """Build the probe of ``P.profile`` as every chapter does (tokenizer of the smallest size's last checkpoint)."""
    prof = profiles.load(P.profile)
    suite = analysis.Suite.open(P.profile)
    smallest = next(iter(prof.sizes))
    ref = suites.CheckpointRef(suite.family(), smallest, prof.seeds[0], prof.checkpoint_steps()[-1])
    pr = probe.build(suite.source.load_tokenizer(ref), prof.corpus, prof.probe)
    return MethodsData(prof, pr, engine.EngineOptions(), precision_profile=getattr(P, "precision_profile", None))


@section
def setup(d: MethodsData) -> Glued:
    """The probe's sizes and windows, the engine's sample sizes and the number of seeds and ordered pairs."""
    pp, n_seeds = d.prof.probe, len(d.prof.seeds)
    return {
        "probe_tokens": d.probe.n_tokens,
        "probe_windows": len(d.probe.starts),
        "probe_context": pp.context,
        "probe_stride": pp.stride,
        "probe_overlap": pp.context - pp.stride,
        "probe_segment": 4 * pp.context,
        "probe_stream": len(d.probe.stream),
        "cka_samples": d.opts.cka_samples,
        "grad_windows": d.opts.grad_windows,
        "n_seeds": n_seeds,
        "n_pairs": n_seeds * (n_seeds - 1),
    }


def _default(fn, name: str):
    return inspect.signature(fn).parameters[name].default


def detector_table(rates: pd.DataFrame) -> Styler:
    """The rates of :func:`lmconv.metrics.calibration.detector_rates` as the page shows them."""
    shown = rates.rename(
        columns={
            "found_rate": "found",
            "within_tol_rate": "within tol",
            "tol_decades": "tol",
            "median_error_decades": "median error (decades)",
        }
    ).drop(columns="draws")
    formats = {
        "noise": "{:.1%}",
        "found": "{:.0%}",
        "within tol": "{:.0%}",
        "tol": "{:.2f}",
        "median error (decades)": "{:.3f}",
    }
    return shown.style.hide(axis="index").format(formats, na_rep="–")


@section
def detectors(d: MethodsData) -> Glued:
    """The detectors' default settings, their false-positive rates on null curves and the rates table."""
    rates = calibration.detector_rates(n_draws=d.det_draws, seed=0)
    null = rates[rates.kind == "null"]
    derivative = null.detector == DERIVATIVE
    return {
        "det_draws": d.det_draws,
        "det_kl_smooth": _default(ph.kl_phases, "smooth"),
        "det_kl_z": _default(ph.kl_phases, "z"),
        "det_min_fall": _default(ph.sosd_point, "min_fall"),
        "det_min_f": _default(ph.loss_elbow, "min_f"),
        "det_max_fp": float(null[~derivative].found_rate.max()),
        "det_deriv_fp": float(null[derivative].found_rate.max()),
        "tab_detector_rates": detector_table(rates),
    }


@section
def intervals(d: MethodsData) -> Glued:
    """The constants of the intervals and verdicts (level, exact-bootstrap limit, sign test, coincidence)."""
    return {
        "iv_level": stats.LEVEL,
        "iv_exact_max": stats.EXACT_MAX,
        "iv_resamples_4": stats.n_distinct_resamples(4),
        "iv_sign_p_4": stats.sign_test([1, 1, 1, 1]).p_pos,
        "iv_sync_tol": claims.SYNC_TOL,
    }


def _train_minutes(profile: str, runs: list[str]) -> float:
    """The training minutes of some runs of a suite (:func:`lmconv.book.status.run_training_seconds`)."""
    seconds = status.run_training_seconds(profile)
    return sum(seconds[r] for r in runs) / 60


@section
def precision(d: MethodsData) -> Glued:
    """Does bf16 training change the findings? The main suite against its fp32 twin
    (:mod:`lmconv.lenses.precision`), or, where the main suite trains in fp32, why there is nothing to compare.
    Both cases glue the same names."""
    main = d.prof
    if "precision" not in profiles.needed_companions(main):
        twin = "not needed" if prec.precision_of(main) == prec.REFERENCE else "none named"
        shown = pd.DataFrame([{"suite": main.name, "trains in": prec.precision_of(main), "fp32 twin": twin}])
        return {
            "precision_main": prec.precision_of(main),
            "precision_verdict": Markdown(prec.unchecked(main)),
            "tab_precision": shown.set_index("suite"),
        }
    data = prec.load(main.name, d.precision_profile)
    summary = prec.compare(data)  # the KL-phase detector at its defaults, as chapter 2
    minutes = {}
    for p in (main, data.companion):
        runs = [suites.format_run(p.arm().family, s, k) for s in data.sizes for k in data.seeds]
        minutes[prec.precision_of(p)] = _train_minutes(p.name, runs)
    return {
        "precision_main": prec.precision_of(main),
        "precision_verdict": Markdown(f"{prec.verdict(summary, data.ref, data.other)} {prec.timing(minutes, data)}"),
        "tab_precision": prec.table(summary, data.ref, data.other).set_index(["size", "measure"]),
    }
