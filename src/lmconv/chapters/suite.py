"""Chapter 1, "The suite" (``notebooks/01_suite.md``): what was trained and how training went."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pandas as pd

from .. import analysis
from ..checkpoints import summaries
from ..figures import plots
from ..findings import papers
from ..metrics import stats
from ..training import profiles
from ..training import train as train_mod
from . import Glued, section


@dataclass
class SuiteData:
    """The suite's profile, its main arm and its training and validation logs."""

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
    return SuiteData(suite.profile, suite.profile.arm(), train_log, val_log)


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
