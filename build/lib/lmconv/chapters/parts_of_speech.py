"""Chapter 4, "Parts of speech" (``notebooks/04_parts_of_speech.md``): E[conv] split by the part of speech of the
target token and of the last context token, in the paper's tag groups and as function against content words
(Fehlauer, Mahowald & Pimentel 2025), with spaCy's tags checked against the Brown Corpus's gold tags."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .. import analysis
from ..checkpoints import suites
from ..data import linguistics as L
from ..figures import kl as F
from ..figures import plots
from ..findings import claims, scorecard
from ..lenses import kl as K
from . import Glued, analysed, ends, section

if TYPE_CHECKING:
    import altair as alt

MIN_WORDS = 100  # a gold UPOS class needs this many probe words to be named among the weakest-tagged
WORD_CLASSES = ("function", "content")


@dataclass
class PartsOfSpeechData:
    """What the chapter reads once: the engine's results, the KL and surprisal cubes, the probe's tags."""

    P: SimpleNamespace
    r: analysis.Results
    cubes: dict[str, K.Cube]  # size → per-pair KL cube (direction ``P.kl_direction``)
    surprisal: dict[str, K.Cube]  # size → per-seed surprisal cube
    tags: K.ProbeTags
    ptb: np.ndarray | None  # stream PTB tags of ``P.pos_source`` (None: UPOS only)
    upos: np.ndarray  # stream UPOS tags of ``P.pos_source``

    @property
    def ends(self) -> dict[str, str]:
        """The smallest and the largest size, keyed as the glued names' suffixes (:func:`lmconv.chapters.ends`)."""
        return ends(self.r.sizes)

    @property
    def other_position(self) -> str:
        return "context" if self.P.tag_position == "current" else "current"


def load(P: SimpleNamespace) -> PartsOfSpeechData:
    """Run the engine for ``P``'s sizes, seeds and probe; tag the probe text (spaCy, cached) and take the stream
    tags of ``P.pos_source``."""
    r = analysed(P)
    n_tok = r.probe.n_tokens
    tok = r.suite.source.load_tokenizer(suites.CheckpointRef(r.family, r.sizes[0], r.seeds[0], r.steps[-1]))
    tags = K.probe_tags(r.suite.profile.corpus, tok, r.probe)
    ptb, upos = tags.stream_tags(P.pos_source)
    return PartsOfSpeechData(
        P,
        r,
        cubes=K.pair_cubes(r.pairs, P.kl_direction, n_tok),
        surprisal=K.token_cubes(r.tokens, "surprisal", n_tok),
        tags=tags,
        ptb=ptb,
        upos=upos,
    )


@section
def setup(d: PartsOfSpeechData) -> Glued:
    """The opening cell's values: sizes, pairs, seeds and the parameters as words."""
    current = d.P.tag_position == "current"
    return {
        "size_small": d.ends["small"],
        "size_large": d.ends["large"],
        "n_pairs": len(next(iter(d.cubes.values())).reps),
        "n_seeds": len(d.r.seeds),
        "pair_word": "ordered seed pairs" if d.P.kl_direction == "ordered" else "unordered seed pairs",
        "tag_position": d.P.tag_position,
        "other_position": d.other_position,
        "pos_source": d.P.pos_source,
        "position_text": "the target token" if current else "the last context token",
    }


def accuracy_table(d: PartsOfSpeechData) -> pd.DataFrame:
    """Per gold UPOS class: the probe words and the share on which spaCy agrees."""
    per = d.tags.accuracy["per_upos"]
    return per.rename_axis("gold UPOS").rename(columns={"words": "words", "accuracy": "spaCy agrees"})


@section
def tagging(d: PartsOfSpeechData) -> Glued:
    """Section "Tagging the probe text": spaCy against the gold tags, the two weakest classes, untagged tokens."""
    acc = d.tags.accuracy
    per = accuracy_table(d)
    worst = per[per["words"] >= MIN_WORDS].sort_values("spaCy agrees").head(2)
    cur_tags = K.position_tags(d.ptb if d.ptb is not None else d.upos, d.r.targets, "current")
    return {
        "spacy_model": L.spacy_model_name(),
        "n_docs": d.tags.n_docs,
        "acc": acc["accuracy"],
        "acc_1to1": acc["accuracy_one_to_one"],
        "acc_words": acc["n_words"],
        "acc_split": acc["n_split"],
        "tab_acc": per.style.format({"spaCy agrees": "{:.1%}"}),
        "worst1": worst.index[0],
        "worst1_acc": float(worst["spaCy agrees"].iloc[0]),
        "worst2": worst.index[1],
        "worst2_acc": float(worst["spaCy agrees"].iloc[1]),
        "min_words": MIN_WORDS,
        "n_unk": int((cur_tags == L.UNK).sum()),
        "n_tok": d.r.probe.n_tokens,
    }


def tag_labels(d: PartsOfSpeechData, grouping: str, position: str) -> np.ndarray:
    """Per probe position, its label in ``grouping`` (:func:`lmconv.lenses.kl.tag_groups`) by the tag at
    ``position``; None outside the grouping."""
    ptb = None if d.ptb is None else K.position_tags(d.ptb, d.r.targets, position)
    return K.tag_groups(ptb, K.position_tags(d.upos, d.r.targets, position), grouping)


def econv_by(d: PartsOfSpeechData, labels: np.ndarray) -> pd.DataFrame:
    """E[conv] per size, step and label (band over pairs), the same labels for every size."""
    return K.econv(d.cubes, "pairs", {s: labels for s in d.cubes})


def _panels(df: pd.DataFrame) -> alt.ConcatChart:
    """One panel per size, the legend ordered by the last-step value."""
    return F.panels_by_size(df, order=K.order_by_last(df), legend_title="tag")


@section
def by_tag(d: PartsOfSpeechData) -> Glued:
    """Section "E[conv] by tag": the paper's groups by both tag positions, its other groups, and the most and
    least convergent group of the smallest and largest size at the last step."""
    grouped = econv_by(d, tag_labels(d, "grouped", d.P.tag_position))
    out: Glued = {
        "fig_grouped": _panels(grouped),
        "fig_grouped_other": _panels(econv_by(d, tag_labels(d, "grouped", d.other_position))),
    }
    for g in ("other", "nouns", "verbs"):
        out[f"fig_{g}"] = _panels(econv_by(d, tag_labels(d, g, d.P.tag_position)))
    for name in d.ends:
        s = d.ends[name]
        o = K.order_by_last(grouped, s)
        out[f"best_{name}"] = o[0]
        out[f"best_val_{name}"] = K.value_at(grouped, s, group=o[0])
        out[f"worst_{name}"] = o[-1]
        out[f"worst_val_{name}"] = K.value_at(grouped, s, group=o[-1])
    out["tab_groups"] = K.groups_table().style
    return out


def target_classes(d: PartsOfSpeechData, neither: str | None = None) -> np.ndarray:
    """Per probe position, the word class of the target token's UPOS tag (:func:`lmconv.lenses.kl.word_classes`):
    "function", "content", or ``neither`` for the rest."""
    classes = K.word_classes(K.position_tags(d.upos, d.r.targets, "current"))
    return classes if neither is None else np.where(classes == None, neither, classes)  # noqa: E711


def word_class_curves(d: PartsOfSpeechData) -> pd.DataFrame:
    """E[conv] of function and content words by the current and by the context tag (column ``position``)."""
    frames = [
        econv_by(d, K.word_classes(K.position_tags(d.upos, d.r.targets, position))).assign(position=position)
        for position in ("current", "context")
    ]
    return pd.concat(frames, ignore_index=True)


def _class_numbers(cur: pd.DataFrame, size: str, name: str) -> Glued:
    """One size's function- and content-word numbers (``cur``: :func:`word_class_curves` at one position)."""
    sub = cur[cur["size"] == size]
    fn, ct = sub[sub["group"] == "function"], sub[sub["group"] == "content"]
    return {
        f"fn_final_{name}": K.value_at(cur, size, group="function"),
        f"ct_final_{name}": K.value_at(cur, size, group="content"),
        f"fn_sd_{name}": K.value_at(cur, size, group="function", col="sd"),
        f"ct_sd_{name}": K.value_at(cur, size, group="content", col="sd"),
        f"fn_min_{name}": float(fn["value"].min()),
        f"ct_min_{name}": float(ct["value"].min()),
        f"fn_ahead_{name}": float((fn["value"].to_numpy() > ct["value"].to_numpy()).mean()),
        f"n_fn_{name}": int(fn["n_tokens"].iloc[0]),
        f"n_ct_{name}": int(ct["n_tokens"].iloc[0]),
    }


@section
def function_words(d: PartsOfSpeechData) -> Glued:
    """Section "Function words and content words": their curves, final values, depth and the paper's claim."""
    wc = word_class_curves(d)
    fig = F.panels_by_size(
        wc, order=list(WORD_CLASSES), legend_title="word class", dash="position", dash_domain=["current", "context"]
    )
    cur = wc[wc["position"] == d.P.tag_position]
    out: Glued = {
        "fig_class": fig,
        "function_upos": ", ".join(L.FUNCTION_UPOS),
        "content_upos": ", ".join(L.CONTENT_UPOS),
    }
    for name in d.ends:
        out.update(_class_numbers(cur, d.ends[name], name))
    out["depth_word"] = claims.compare_word(
        out["fn_min_large"], out["ct_min_large"], more="shallower", less="not shallower", same="not shallower",
        missing="not measured",
    )  # fmt: skip
    fw = scorecard.function_word_effects(d.cubes, d.r.targets, target_classes(d))
    out["fw_verdict"] = claims.judge_function_words(fw).sentence()
    return out


@section
def cross_entropy(d: PartsOfSpeechData) -> Glued:
    """Section "Cross-entropy by tag": the largest size's surprisal per "grouped" tag, best and worst group."""
    labels = tag_labels(d, "grouped", d.P.tag_position)
    ce = K.seed_means({d.ends["large"]: d.surprisal[d.ends["large"]]}, {d.ends["large"]: labels})
    fig = plots.band_lines(
        ce, "group", domain=K.order_by_last(ce), y_title="cross-entropy (nats, log scale)", y_scale=plots.LOG_Y,
        legend_title="tag", tooltip=("n_tokens",),
    )  # fmt: skip
    last = ce[ce["step"] == ce["step"].max()].sort_values("value")
    return {
        "fig_ce_pos": fig,
        "ce_best": last["group"].iloc[0],
        "ce_best_val": float(last["value"].iloc[0]),
        "ce_worst": last["group"].iloc[-1],
        "ce_worst_val": float(last["value"].iloc[-1]),
    }
