"""Chapter 4's module on the smoke suite: every section glues what the page names, and its numbers are the ones
the prose says (recomputed here from the cubes and the tags)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from lmconv import linguistics as L
from lmconv import params
from lmconv.chapters import parts_of_speech as ch
from lmconv.lenses import kl as K

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "04_parts_of_speech.md"
DEFAULTS = {
    "profile": "smoke",
    "sizes": None,
    "seeds": None,
    "probe_tokens": None,
    "kl_direction": "ordered",
    "pos_source": "spacy",
    "tag_position": "current",
}
# glued since before the page was a thin one, read by no prose or caption (kept: the glued values stay the same)
UNREAD = {"size_small", "n_fn_small", "n_ct_small", "fn_min_small", "ct_min_small"}
SECTIONS = (ch.setup, ch.tagging, ch.by_tag, ch.function_words, ch.cross_entropy)


def glue_names(text: str) -> set[str]:
    """The names a page's markdown glues: {glue:text}`name`, {glue:text}`name:fmt`, {glue:}`name`,
    {glue:figure} name."""
    roles = re.findall(r"\{glue(?::\w*)?\}`([^`:]+)", text)
    figures = re.findall(r"^```\{glue:figure\} (\S+)", text, re.M)
    return set(roles) | set(figures)


@pytest.fixture(scope="module")
def d(smoke_suite) -> ch.PartsOfSpeechData:
    return ch.load(params.from_namespace(DEFAULTS))


@pytest.fixture(scope="module")
def glued(d) -> dict[str, dict]:
    return {f.__name__: f(d) for f in SECTIONS}


def final_value(cube: K.Cube, labels, group: str) -> float:
    """Brute force: the mean over replicates of the group's token mean at the last step."""
    mask = np.array([x == group for x in labels])
    return float(np.mean([cube.values[-1, rep, mask].mean() for rep in range(len(cube.reps))]))


def test_sections_glue_exactly_the_names_the_page_uses(glued):
    names = [n for values in glued.values() for n in values]
    assert len(names) == len(set(names)), "a name is glued by two sections"
    assert set(names) - UNREAD == glue_names(NOTEBOOK.read_text())


def test_setup_counts_ordered_seed_pairs(d, glued):
    s = glued["setup"]
    k = len(d.r.seeds)
    assert (s["n_seeds"], s["n_pairs"]) == (k, k * (k - 1))
    assert (s["size_small"], s["size_large"]) == (d.r.sizes[0], d.r.sizes[-1])
    assert (s["other_position"], s["position_text"]) == ("context", "the target token")


def test_tagging_names_the_weakest_classes_and_counts_untagged_targets(d, glued):
    t = glued["tagging"]
    per = d.tags.accuracy["per_upos"]
    big = per[per["words"] >= t["min_words"]]["accuracy"]
    assert t["worst1_acc"] == big.min() and t["worst1_acc"] <= t["worst2_acc"]
    assert {t["worst1"], t["worst2"]} <= set(big.index)
    assert (big.drop([t["worst1"], t["worst2"]]) >= t["worst2_acc"]).all()
    current = [d.ptb[i] for i in d.r.targets["target_index"]]
    assert t["n_unk"] == sum(tag == L.UNK for tag in current)
    assert t["n_tok"] == len(current) == d.r.probe.n_tokens
    assert 0 < t["acc"] <= 1 and t["acc_words"] == per["words"].sum()


def test_best_and_worst_groups_are_the_extremes_at_the_last_step(d, glued):
    b = glued["by_tag"]
    labels = ch.tag_labels(d, "grouped", "current")
    groups = sorted({g for g in labels if g is not None})
    for name, size in (("small", d.small), ("large", d.large)):
        values = {g: -final_value(d.cubes[size], labels, g) for g in groups}
        assert b[f"best_{name}"] == max(values, key=values.get)
        assert b[f"worst_{name}"] == min(values, key=values.get)
        assert b[f"best_val_{name}"] == pytest.approx(values[b[f"best_{name}"]])
        assert b[f"worst_val_{name}"] == pytest.approx(values[b[f"worst_{name}"]])


def test_function_word_numbers_follow_the_curves(d, glued):
    f = glued["function_words"]
    classes = ch.target_classes(d)
    assert f["n_fn_large"] == sum(c == "function" for c in classes)
    assert f["n_ct_large"] == sum(c == "content" for c in classes)
    for name, size in (("small", d.small), ("large", d.large)):
        assert f[f"fn_final_{name}"] == pytest.approx(-final_value(d.cubes[size], classes, "function"))
        assert f[f"ct_final_{name}"] == pytest.approx(-final_value(d.cubes[size], classes, "content"))
        assert f[f"fn_min_{name}"] <= f[f"fn_final_{name}"] and f[f"ct_min_{name}"] <= f[f"ct_final_{name}"]
        assert 0 <= f[f"fn_ahead_{name}"] <= 1
    assert f["depth_word"] == ("shallower" if f["fn_min_large"] > f["ct_min_large"] else "not shallower")
    for name, size in (("small", d.small), ("large", d.large)):  # the verdict's numbers: the final difference
        assert f"{size} {f[f'fn_final_{name}'] - f[f'ct_final_{name}']:.3g}" in f["fw_verdict"]
    assert ch.target_classes(d, neither="other").tolist() == [
        L.word_class(d.upos[i]) for i in d.r.targets["target_index"]
    ]


def test_cross_entropy_ranks_the_largest_size_groups(d, glued):
    c = glued["cross_entropy"]
    labels = ch.tag_labels(d, "grouped", "current")
    groups = sorted({g for g in labels if g is not None})
    values = {g: final_value(d.surprisal[d.large], labels, g) for g in groups}
    assert (c["ce_best"], c["ce_worst"]) == (min(values, key=values.get), max(values, key=values.get))
    assert c["ce_best_val"] == pytest.approx(min(values.values()))
    assert c["ce_worst_val"] == pytest.approx(max(values.values()))


def test_context_position_and_gold_tags_switch_what_is_grouped(d):
    ctx = dataclasses.replace(d, P=params.from_namespace({**DEFAULTS, "tag_position": "context"}))
    s = ch.setup(ctx)
    assert (s["tag_position"], s["other_position"], s["position_text"]) == (
        "context",
        "current",
        "the last context token",
    )
    b = ch.by_tag(ctx)
    labels = ch.tag_labels(d, "grouped", "context")
    assert b["best_val_large"] == pytest.approx(-final_value(d.cubes[d.large], labels, b["best_large"]))
    ptb, upos = d.tags.stream_tags("gold")
    gold = dataclasses.replace(d, P=params.from_namespace({**DEFAULTS, "pos_source": "gold"}), ptb=ptb, upos=upos)
    f = ch.function_words(gold)
    assert f["n_fn_large"] == sum(c == "function" for c in ch.target_classes(gold))
    assert ch.setup(gold)["pos_source"] == "gold"
