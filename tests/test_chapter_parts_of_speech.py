"""Chapter 4's module on the smoke suite: every section glues what the page names, and its numbers are the ones
the prose says (recomputed here from the cubes and the tags)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from lmconv import book, chapters
from lmconv.chapters import params
from lmconv.chapters import parts_of_speech as ch
from lmconv.data import linguistics as L
from lmconv.lenses import kl as K

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "04_parts_of_speech.md"
SECTIONS = book.page_sections(NOTEBOOK)
# glued since before the page was a thin one, read by no prose or caption (kept: the glued values stay the same)
UNREAD = {"size_small", "n_fn_small", "n_ct_small", "fn_min_small", "ct_min_small"}


def smoke_parameters(**overrides):
    """The page's parameters on the smoke suite, with ``overrides``, validated as the page does."""
    return params.from_namespace(book.page_parameters(NOTEBOOK, profile="smoke", **overrides))


@pytest.fixture(scope="module")
def d(smoke_suite) -> ch.PartsOfSpeechData:
    return ch.load(smoke_parameters())


@pytest.fixture(scope="module")
def g(d) -> dict:
    return chapters.collect(ch, d, SECTIONS)


def final_value(cube: K.Cube, labels, group: str) -> float:
    """Brute force: the mean over replicates of the group's token mean at the last step."""
    mask = np.array([x == group for x in labels])
    return float(np.mean([cube.values[-1, rep, mask].mean() for rep in range(len(cube.reps))]))


def test_sections_glue_exactly_the_names_the_page_uses(g):
    used = book.glue_names(NOTEBOOK)
    assert set(g) == used | UNREAD and not used & UNREAD


def test_setup_counts_ordered_seed_pairs(d, g):
    k = len(d.r.seeds)
    assert (g["n_seeds"], g["n_pairs"]) == (k, k * (k - 1))
    assert (g["size_small"], g["size_large"]) == (d.r.sizes[0], d.r.sizes[-1])
    assert (g["other_position"], g["position_text"]) == ("context", "the target token")


def test_tagging_names_the_weakest_classes_and_counts_untagged_targets(d, g):
    per = d.tags.accuracy["per_upos"]
    big = per[per["words"] >= g["min_words"]]["accuracy"]
    assert g["worst1_acc"] == big.min() and g["worst1_acc"] <= g["worst2_acc"]
    assert {g["worst1"], g["worst2"]} <= set(big.index)
    assert (big.drop([g["worst1"], g["worst2"]]) >= g["worst2_acc"]).all()
    current = [d.ptb[i] for i in d.r.targets["target_index"]]
    assert g["n_unk"] == sum(tag == L.UNK for tag in current)
    assert g["n_tok"] == len(current) == d.r.probe.n_tokens
    assert 0 < g["acc"] <= 1 and g["acc_words"] == per["words"].sum()


def test_best_and_worst_groups_are_the_extremes_at_the_last_step(d, g):
    labels = ch.tag_labels(d, "grouped", "current")
    groups = sorted({x for x in labels if x is not None})
    for name, size in (("small", d.ends["small"]), ("large", d.ends["large"])):
        values = {x: -final_value(d.cubes[size], labels, x) for x in groups}
        assert g[f"best_{name}"] == max(values, key=values.get)
        assert g[f"worst_{name}"] == min(values, key=values.get)
        assert g[f"best_val_{name}"] == pytest.approx(values[g[f"best_{name}"]])
        assert g[f"worst_val_{name}"] == pytest.approx(values[g[f"worst_{name}"]])


def test_function_word_numbers_follow_the_curves(d, g):
    classes = ch.target_classes(d)
    assert g["n_fn_large"] == sum(c == "function" for c in classes)
    assert g["n_ct_large"] == sum(c == "content" for c in classes)
    for name, size in (("small", d.ends["small"]), ("large", d.ends["large"])):
        assert g[f"fn_final_{name}"] == pytest.approx(-final_value(d.cubes[size], classes, "function"))
        assert g[f"ct_final_{name}"] == pytest.approx(-final_value(d.cubes[size], classes, "content"))
        assert g[f"fn_min_{name}"] <= g[f"fn_final_{name}"] and g[f"ct_min_{name}"] <= g[f"ct_final_{name}"]
        assert 0 <= g[f"fn_ahead_{name}"] <= 1
    assert g["depth_word"] == ("shallower" if g["fn_min_large"] > g["ct_min_large"] else "not shallower")
    for name, size in d.ends.items():  # the verdict's numbers: the final difference
        assert f"{size} {g[f'fn_final_{name}'] - g[f'ct_final_{name}']:.3g}" in g["fw_verdict"]
    assert ch.target_classes(d, neither="other").tolist() == [
        L.word_class(d.upos[i]) for i in d.r.targets["target_index"]
    ]


def test_cross_entropy_ranks_the_largest_size_groups(d, g):
    labels = ch.tag_labels(d, "grouped", "current")
    groups = sorted({x for x in labels if x is not None})
    values = {x: final_value(d.surprisal[d.ends["large"]], labels, x) for x in groups}
    assert (g["ce_best"], g["ce_worst"]) == (min(values, key=values.get), max(values, key=values.get))
    assert g["ce_best_val"] == pytest.approx(min(values.values()))
    assert g["ce_worst_val"] == pytest.approx(max(values.values()))


def test_context_position_and_gold_tags_switch_what_is_grouped(d):
    ctx = dataclasses.replace(d, P=smoke_parameters(tag_position="context"))
    s = ch.setup(ctx)
    assert (s["tag_position"], s["other_position"], s["position_text"]) == (
        "context",
        "current",
        "the last context token",
    )
    b = ch.by_tag(ctx)
    labels = ch.tag_labels(d, "grouped", "context")
    assert b["best_val_large"] == pytest.approx(-final_value(d.cubes[d.ends["large"]], labels, b["best_large"]))
    ptb, upos = d.tags.stream_tags("gold")
    gold = dataclasses.replace(d, P=smoke_parameters(pos_source="gold"), ptb=ptb, upos=upos)
    f = ch.function_words(gold)
    assert f["n_fn_large"] == sum(c == "function" for c in ch.target_classes(gold))
    assert ch.setup(gold)["pos_source"] == "gold"
