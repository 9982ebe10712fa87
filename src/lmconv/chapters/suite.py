"""Chapter 1, "The suite" (``notebooks/01_suite.md``): what was trained and how training went."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pandas as pd

from .. import analysis
from ..checkpoints import summaries
from ..data.downstream import SETS
from ..figures import downstream as FD
from ..figures import plots
from ..findings import claims, papers
from ..lenses import downstream as ds
from ..metrics import stats
from ..training import profiles
from ..training import train as train_mod
from . import Glued, section


@dataclass
class SuiteData:
    """The suite's profile, its main arm and its training and validation logs."""

    name: str  # the profile as the page names it
    prof: profiles.Profile
    arm: profiles.Arm
    train_log: pd.DataFrame
    val_log: pd.DataFrame

    @property
    def tokens_per_step(self) -> int:
        return self.arm.train.batch_size * self.prof.context


def load(P: SimpleNamespace) -> SuiteData:
    """Open the suite of ``P.profile`` and read the logs of its main family."""
    suite = analysis.Suite.open(P.profile)
    train_log, val_log = suite.train_logs(suite.family())
    return SuiteData(P.profile, suite.profile, suite.profile.arm(), train_log, val_log)


@section
def what_was_trained(d: SuiteData) -> Glued:
    """Sizes, seeds, steps, tokens and schedule of the suite, and the table of its sizes."""
    prof, train = d.prof, d.arm.train
    n_train_tokens = len(train_mod.prepare_data(prof).train)
    sizes = summaries.sizes_table(prof)
    return {
        "n_sizes": len(prof.sizes),
        "n_seeds": len(prof.seeds),
        "n_steps": train.steps,
        "n_checkpoints": len(prof.checkpoint_steps()),
        "batch": train.batch_size,
        "context": prof.context,
        "tokens_per_step": d.tokens_per_step,
        "train_tokens": n_train_tokens,
        "epochs": train.steps * d.tokens_per_step / n_train_tokens,
        "vocab": prof.vocab_size,
        "peak_lr": train.lr,
        "warmup": train.schedule.warmup,
        "final_ratio": train.schedule.final_ratio,
        "params_min": int(sizes.parameters.min()),
        "params_max": int(sizes.parameters.max()),
        "tab_sizes": sizes.set_index("size"),
    }


@section
def polypythia(d: SuiteData) -> Glued:
    """The PolyPythias' range and schedule, and each of our sizes beside its nearest PolyPythia."""
    return {
        "pp_smallest": papers.POLYPYTHIA_SIZES[0].upper(),
        "pp_largest": papers.POLYPYTHIA_SIZES[-1].upper(),
        "pp_steps": papers.PYTHIA_STEPS,
        "pp_tokens_per_step": papers.PYTHIA_TOKENS_PER_STEP / 1e6,
        "tab_polypythia": summaries.nearest_polypythia(d.prof).set_index("size"),
        "tab_polypythia_all": summaries.polypythia_table().set_index("size"),
    }


def final_val_loss(d: SuiteData) -> pd.DataFrame:
    """Mean, standard deviation, min and max over seeds of the validation loss at the last step, per size."""
    last = d.val_log[d.val_log.step == d.arm.train.steps]
    return last.groupby("size").val_loss.agg(["mean", "std", "min", "max"])


@section
def training_curves(d: SuiteData) -> Glued:
    """The validation-loss figure, the final losses per size and the late-rise (overfitting) sentence."""
    val = d.val_log[d.val_log.step > 0]
    band = stats.band(val, "val_loss", ["size", "step"])
    chart = plots.band_lines(band, "size", y_title="validation loss (nats/token)", width=plots.WIDTH)
    final = final_val_loss(d)
    out: Glued = {"fig_loss": chart}
    for s in d.prof.sizes:
        out[f"final_val_{s}"] = final.loc[s, "mean"]
        out[f"final_val_sd_{s}"] = final.loc[s, "std"]
    names = list(d.prof.sizes)
    smallest, largest = names[0], names[-1]
    rise, _, overfit_text = summaries.late_rise(d.val_log, d.arm.train.steps)
    return out | {
        "size_small": smallest,
        "size_large": largest,
        "final_val_small": final.loc[smallest, "mean"],
        "final_val_large": final.loc[largest, "mean"],
        "seed_range_max": float((final["max"] - final["min"]).max()),
        "late_rise": rise,
        "overfit_text": overfit_text,
    }


@section
def lr_schedule(d: SuiteData) -> Glued:
    """The learning-rate schedule of every arm of the profile."""
    lr = pd.concat([summaries.lr_curve(d.prof, a) for a in d.prof.arms])
    return {"fig_lr": plots.lr_schedule(lr, color="arm")}


@section
def late_degradation(d: SuiteData) -> Glued:
    """The stability paper's "small models degrade late": accuracy on the downstream sets and the held-out loss
    (all and rare tokens) over training per size, their change over the late phase, the verdict and the seeds'
    agreement on the items at the last step."""
    r = analysis.run(d.name, progress=False)
    loss = ds.heldout_loss(r.tokens, r.targets.frequency.to_numpy())
    total = d.arm.train.steps
    loss_change = {t: ds.late_change(loss[loss.tokens == t], r.sizes, total) for t in ("all", "rare")}
    start = ds.late_step(r.steps, total)
    out: Glued = {
        "late_start": start,
        "late_start_frac": start / total,
        "loss_sentences": " ".join(
            ds.degradation_sentence(loss_change[t], f"The probe loss on {t} tokens") + "." for t in loss_change
        ),
        "rare_count": loss.attrs["rare_count"],
        "rare_share": loss.attrs["rare_share"],
    }
    loss_band = stats.band(loss, "value", ["size", "step", "tokens"])
    if r.evals is None:  # a corpus without gold tags, or downstream sizes of 0: the loss alone, the claim untested
        return out | _no_sets(loss_band) | _paper_fall(d)
    scores = ds.item_scores(r.downstream)
    acc = ds.accuracy(scores)
    change = {s: ds.late_change(acc[acc.set == s], r.sizes, total) for s in SETS}
    agree = ds.agreement(scores)
    last = agree[agree.step == agree.step.max()]
    peak = ds.peak_then_fall(acc[acc.set == "lastword"], r.sizes[0])
    return (
        out
        | _paper_fall(d)
        | {
            "fig_downstream": FD.accuracy_and_loss(
                stats.band(acc, "value", ["size", "step", "set"]), loss_band, ds.SET_WORDS
            ),
            "degrade_claim": claims.judge_late_degradation(change["lastword"]).sentence(),
            "late_sentences": " ".join(
                ds.degradation_sentence(change[s], f"Accuracy on the {ds.SET_WORDS[s]} set") + "." for s in SETS
            ),
            "lw_best_step_small": peak["best_step"],
            "lw_best_small": peak["best"],
            "lw_last_small": peak["last"],
            "tab_agreement": last.assign(set=last.set.map(ds.SET_WORDS))[["size", "set", "value", "lo", "hi", "chance"]]
            .rename(
                columns={"value": "agreement", "lo": "lowest pair", "hi": "highest pair", "chance": "if independent"}
            )
            .set_index(["size", "set"]),
        }
    )


def _no_sets(loss_band: pd.DataFrame) -> Glued:
    """The section's downstream values when the profile builds no downstream sets: said in words, the loss
    panels alone, the claim untested."""
    return {
        "fig_downstream": FD.accuracy_and_loss(loss_band.iloc[:0].assign(set=[]), loss_band, ds.SET_WORDS),
        "degrade_claim": claims.judge_late_degradation(None).sentence(),
        "late_sentences": f"No accuracy is measured: {ds.ABSENT}.",
        "lw_best_step_small": "not measured",
        "lw_best_small": float("nan"),
        "lw_last_small": float("nan"),
        "tab_agreement": pd.DataFrame({"agreement": []}, index=pd.Index([], name="size")),
    }


def _paper_fall(d: SuiteData) -> Glued:
    """The stability paper's late fall of Pythia-160M's LAMBADA accuracy, and the training length behind it."""
    (from_step, from_acc), (to_step, to_acc) = papers.STAB_LAMBADA_160M
    return {
        "paper_lambada_from": from_acc,
        "paper_lambada_to": to_acc,
        "paper_lambada_steps": f"{from_step:,} to {to_step:,}",
        "paper_lambada_frac": from_step / papers.PYTHIA_STEPS,
        "paper_tpp_at_fall": float(summaries.polypythia_tokens_per_parameter()["160m"])
        * from_step
        / papers.PYTHIA_STEPS,
        "tpp_text": tokens_per_parameter(d),
    }


def tokens_per_parameter(d: SuiteData) -> str:
    """The tokens one run sees per parameter, from the smallest to the largest size: "14 (0.3m) to 1.6 (2.5m)"."""
    tpp = summaries.tokens_per_parameter(d.prof)
    return f"{tpp.iloc[0]:.2g} ({tpp.index[0]}) to {tpp.iloc[-1]:.2g} ({tpp.index[-1]})"
