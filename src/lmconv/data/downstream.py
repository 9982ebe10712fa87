"""Downstream sets built from held-out Brown text: minimal pairs from the gold tags, and a last-word set.

The cross-seed paper measures convergence on BLiMP minimal pairs and the stability paper reads Pythia's LAMBADA
accuracy; neither data set can be downloaded here, and both are far beyond models of our size. These are their
small analogues, cut only from the validation and probe documents (never the training split), by stated rules:

* **agreement** (subject–verb number): a finite verb right after a noun or pronoun whose gold tag marks its
  number, the two agreeing (``AGREEMENT_RULE``); the bad sentence swaps the verb's number (is/are, was/were,
  has/have, does/do, and -s present forms by ``present_plural``).
* **determiner** (determiner–noun number): this/that before a singular noun, these/those before a plural one;
  the bad sentence swaps the determiner's number.
* **last word** (LAMBADA-style): the last word of a sentence that also occurs earlier in its passage
  (``LASTWORD_RULE``); scored by the probability of all its BPE pieces, correct when greedy decoding gives it.

Each pair differs in exactly one word. A seeded sample of at most ``DownstreamSettings.pairs`` pairs per
phenomenon and ``lastword`` passages is kept; :func:`build` tokenises them for the engine, which scores every
checkpoint on them in the same pass as the probe.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import LmconvError
from ..io import sha256_json
from . import corpus
from .tokenizer import EOT_ID

if TYPE_CHECKING:
    from ..training.profiles import DownstreamSettings

SPLITS = ("val", "probe")  # held-out documents only
PHENOMENA = ("agreement", "determiner")
SETS = (*PHENOMENA, "lastword")
MIN_WORDS = 4  # shorter sentences are left out
HUB_CONTEXT = 128  # the hub's models read the sets at the default suite's context, so passages are as long as ours
SAMPLE_SEED = 0

# finite verbs: gold tag → (number, the other number's tag, word swaps)
_VERBS = {
    "bez": ("sg", "ber", {"is": "are"}),
    "ber": ("pl", "bez", {"are": "is"}),
    "bedz": ("sg", "bed", {"was": "were"}),
    "bed": ("pl", "bedz", {"were": "was"}),
    "hvz": ("sg", "hv", {"has": "have"}),
    "hv": ("pl", "hvz", {"have": "has"}),
    "doz": ("sg", "do", {"does": "do"}),
    "do": ("pl", "doz", {"do": "does"}),
    "vbz": ("sg", "vb", {}),  # regular -s forms: present_plural, checked against the corpus's VB forms
}
_SUBJECTS = {"nn": "sg", "np": "sg", "pps": "sg", "nns": "pl", "nps": "pl"}
_PLURAL_PRONOUNS = {"we", "they"}  # PPSS also tags I and you, whose number the tag does not give
_DETERMINERS = {
    ("this", "dt", "nn"): "these",
    ("that", "dt", "nn"): "those",
    ("these", "dts", "nns"): "this",
    ("those", "dts", "nns"): "that",
}
AGREEMENT_RULE = (
    "a verb tagged is/are, was/were, has/have, does/do (BEZ/BER, BEDZ/BED, HVZ/HV, DOZ/DO) or a present -s form "
    "(VBZ), right after a noun or pronoun whose tag gives its number (NN, NP, PPS singular; NNS, NPS, we/they "
    "plural) and agreeing with it; the verb swapped for the other number (-s forms: present_plural, kept only "
    "when the corpus tags that form as a base verb somewhere)"
)
DETERMINER_RULE = "this/that (DT) before a singular noun (NN), these/those (DTS) before a plural noun (NNS)"
LASTWORD_RULE = (
    "the last word of a sentence (letters only, at least 3 of them) that occurs earlier in its passage, "
    "the passage being that sentence and as many whole sentences before it in the same document as fit in the "
    "context; one item per sentence"
)
_WORD = re.compile(r"[A-Za-z]{3,}")


@dataclass(frozen=True)
class Sentence:
    doc: str
    start: int  # offset of the sentence in its document's text
    text: str
    words: tuple[tuple[int, int, str], ...]  # spans relative to ``text``

    @property
    def eligible(self) -> bool:
        """Long enough (``MIN_WORDS``) and not a headline: a sentence items may be cut from."""
        return len(self.words) >= MIN_WORDS and not any(t.endswith("-hl") for _, _, t in self.words)


def sentences(doc: corpus.Document, every: bool = False) -> list[Sentence]:
    """The document's sentences: runs of words ending at a word tagged ``.``; only the eligible ones unless
    ``every``."""
    out, cur = [], []
    for w in doc.words:
        cur.append(w)
        if w[2] == ".":
            out.append(cur)
            cur = []
    result = []
    for ws in out:
        a = ws[0][0]
        sent = Sentence(doc.id, a, doc.text[a : ws[-1][1]], tuple((s - a, e - a, t) for s, e, t in ws))
        if every or sent.eligible:
            result.append(sent)
    return result


def present_plural(form: str) -> str | None:
    """The base form of a present -s verb by the spelling rule (goes → go, tries → try, makes → make)."""
    w = form.lower()
    if not w.endswith("s") or len(w) < 3:
        return None
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith("es") and re.search(r"(s|sh|ch|x|z|o)es$", w):
        return w[:-2]
    return w[:-1]


def _swap(s: Sentence, i: int, new: str) -> tuple[str, str]:
    """The sentence with word ``i`` replaced by ``new`` (capitalised like the old one), and the new word."""
    a, b, _ = s.words[i]
    if s.text[a:b][:1].isupper():
        new = new[:1].upper() + new[1:]
    return s.text[:a] + new + s.text[b:], new


def _word(s: Sentence, i: int) -> str:
    a, b, _ = s.words[i]
    return s.text[a:b]


def agreement_pair(s: Sentence, base_verbs: set[str]) -> tuple[int, str] | None:
    """The first verb of ``s`` that the agreement rule accepts: (its word index, the swapped form), else None."""
    for i in range(1, len(s.words)):
        tag = s.words[i][2]
        if tag not in _VERBS:
            continue
        number, _, table = _VERBS[tag]
        prev_tag, prev = s.words[i - 1][2], _word(s, i - 1).lower()
        subject = _SUBJECTS.get(prev_tag) or ("pl" if prev_tag == "ppss" and prev in _PLURAL_PRONOUNS else None)
        if subject != number:
            continue
        verb = _word(s, i)
        if not verb.islower():
            continue
        new = table.get(verb) if tag != "vbz" else present_plural(verb)
        if new and (tag != "vbz" or new in base_verbs):
            return i, new
    return None


def determiner_pair(s: Sentence) -> tuple[int, str] | None:
    """The first determiner of ``s`` that the determiner rule accepts, with its other-number form."""
    for i in range(len(s.words) - 1):
        key = (_word(s, i).lower(), s.words[i][2], s.words[i + 1][2])
        if key in _DETERMINERS:
            return i, _DETERMINERS[key]
    return None


def base_verb_forms(docs: Iterable[corpus.Document]) -> set[str]:
    """Every word the gold tags mark as a base-form verb (VB), lower-cased: the lexicon -s forms are checked in."""
    return {d.text[a:b].lower() for d in docs for a, b, t in d.words if t == "vb"}


def minimal_pairs(held_out: Sequence[corpus.Document], lexicon: set[str]) -> pd.DataFrame:
    """Every candidate pair of the held-out documents: phenomenon, doc, good, bad, good_word, bad_word, index
    (the changed word's position in the sentence); at most one pair per sentence and phenomenon."""
    rows = []
    for d in held_out:
        for s in sentences(d):
            for phen, hit in (("agreement", agreement_pair(s, lexicon)), ("determiner", determiner_pair(s))):
                if hit is None:
                    continue
                i, new = hit
                bad, bad_word = _swap(s, i, new)
                rows.append((phen, s.doc, s.text, bad, _word(s, i), bad_word, i))
    cols = ["phenomenon", "doc", "good", "bad", "good_word", "bad_word", "index"]
    return pd.DataFrame(rows, columns=cols)


def lastword_candidates(held_out: Sequence[corpus.Document], tok, context: int) -> pd.DataFrame:
    """Every last-word item of the held-out documents: doc, passage (the document's text before the word, from
    the start of a sentence), word; built by ``LASTWORD_RULE`` so that BOS + passage + word fits ``context``
    tokens."""
    found = []  # (document, its sentences, sentence index, the word's span in that sentence)
    for d in held_out:
        sents = sentences(d, every=True)
        for k, s in enumerate(sents):
            content = [i for i, (_, _, t) in enumerate(s.words) if t != "."]
            if not s.eligible or not content or content[-1] != len(s.words) - 2:  # the word before the stop
                continue
            a, b, _ = s.words[content[-1]]
            if _WORD.fullmatch(s.text[a:b]):
                found.append((d, sents, k, a, b))
    docs = {d.id: sents for d, sents, *_ in found}
    by_doc = {i: _lengths(tok, [x.text for x in sents]) for i, sents in docs.items()}
    words = _lengths(tok, [" " + s[k].text[a:b] for _, s, k, a, b in found])
    heads = _lengths(tok, [s[k].text[:a] for _, s, k, a, _ in found])
    rows, passages = [], []
    for (d, sents, k, a, b), n_word, used in zip(found, words, heads, strict=True):
        budget = context - 1 - n_word
        lengths, j = by_doc[d.id], k
        while j > 0 and used + lengths[j - 1] + 1 <= budget:  # whole sentences before it, by their own lengths
            j, used = j - 1, used + lengths[j - 1] + 1
        passages.append((d, sents, j, k, sents[k].start + a, budget, sents[k].text[a:b]))
    exact = _lengths(tok, [d.text[sents[j].start : end].rstrip() for d, sents, j, _, end, *_ in passages])
    for (d, sents, j, k, end, budget, word), n in zip(passages, exact, strict=True):
        while n > budget and j < k:  # tokens can merge across a joint: drop sentences until it fits exactly
            j += 1
            n = len(_encode(tok, d.text[sents[j].start : end].rstrip()))
        passage = d.text[sents[j].start : end].rstrip()
        if n <= budget and re.search(rf"\b{word}\b", passage):
            rows.append((d.id, passage, word))
    return pd.DataFrame(rows, columns=["doc", "passage", "word"])


def _lengths(tok, texts: list[str]) -> list[int]:
    return [len(e.ids) for e in tok.backend_tokenizer.encode_batch(texts)] if texts else []


def _encode(tok, text: str) -> list[int]:
    return tok.backend_tokenizer.encode(text).ids


def _sample(df: pd.DataFrame, n: int, seed: int, texts: pd.Series, training: str) -> pd.DataFrame:
    """At most ``n`` rows of ``df`` in a seeded random order, skipping those whose text occurs in the training
    split (checked only as far as the sample needs), kept in their original order."""
    keep = []
    for i in np.random.default_rng(seed).permutation(len(df)):
        if len(keep) == n:
            break
        if texts.iloc[i] not in training:
            keep.append(i)
    return df.iloc[sorted(keep)].reset_index(drop=True)


@dataclass(frozen=True)
class EvalSets:
    """The scored sequences of every downstream item, and the items themselves.

    ``sequences`` holds one row per scored sequence: set, item, role (``good``/``bad`` for pairs, ``word`` for
    the last-word set), ``ids`` (BOS + text [+ EOS]) and ``score_from`` (the first target position summed)."""

    pairs: pd.DataFrame  # the kept minimal pairs (with ``item``)
    lastword: pd.DataFrame  # the kept last-word items (with ``item``)
    sequences: pd.DataFrame
    available: dict[str, int]  # candidates found per set, before sampling
    sha256: str

    @property
    def sizes(self) -> dict[str, int]:
        out = {p: int((self.pairs.phenomenon == p).sum()) for p in PHENOMENA}
        return {**out, "lastword": len(self.lastword)}

    def batches(self, max_tokens: int = 8192) -> list[tuple[np.ndarray, np.ndarray]]:
        """Sequences grouped by length (row indices, right-padded ids); padding never reaches a scored
        position, since the models are causal."""
        lengths = self.sequences.ids.map(len).to_numpy()
        order = np.argsort(lengths, kind="stable")
        out, cur = [], []
        for i in order:
            if cur and (len(cur) + 1) * lengths[i] > max_tokens:
                out.append(cur)
                cur = []
            cur.append(i)
        if cur:
            out.append(cur)
        result = []
        for rows in out:
            width = int(lengths[rows].max())
            x = np.full((len(rows), width), EOT_ID, dtype=np.int64)
            for r, i in enumerate(rows):
                x[r, : lengths[i]] = self.sequences.ids.iloc[i]
            result.append((np.asarray(rows, dtype=np.int64), x))
        return result


def build(tok, corpus_spec: str, spec: DownstreamSettings, context: int) -> EvalSets:
    """The downstream sets of ``corpus_spec``'s held-out documents, tokenised with ``tok`` to fit ``context``."""
    if spec.pairs < 1 and spec.lastword < 1:
        raise LmconvError("downstream sets of size 0", "set downstream.pairs or downstream.lastword ≥ 1")
    train_docs = corpus.load(corpus_spec, "train")
    held = [d for split in SPLITS for d in corpus.load(corpus_spec, split)]
    if not any(d.words for d in held):
        raise LmconvError(
            f"corpus {corpus_spec!r} has no gold tags, so the minimal pairs cannot be built",
            "use corpus: brown, or set downstream: {pairs: 0, lastword: 0} in the profile",
        )
    training = "\n".join(d.text for d in train_docs)
    eos = tok.eos_token_id if tok.eos_token_id is not None else EOT_ID
    cands = minimal_pairs(held, base_verb_forms([*train_docs, *held]))
    longest = np.maximum(_lengths(tok, list(cands.good)), _lengths(tok, list(cands.bad))) if len(cands) else []
    cands = cands[np.asarray(longest) + 2 <= context]
    last = lastword_candidates(held, tok, context)
    available = {p: int((cands.phenomenon == p).sum()) for p in PHENOMENA} | {"lastword": len(last)}
    by_phen = [cands[cands.phenomenon == p] for p in PHENOMENA]
    pairs = pd.concat([_sample(c, spec.pairs, SAMPLE_SEED, c.good, training) for c in by_phen], ignore_index=True)
    pairs.insert(1, "item", pairs.groupby("phenomenon").cumcount().astype(np.int32))
    last = _sample(last, spec.lastword, SAMPLE_SEED, last.passage + " " + last.word, training)
    last.insert(0, "item", np.arange(len(last), dtype=np.int32))
    rows = []
    for p in pairs.itertuples():
        for role, text in (("good", p.good), ("bad", p.bad)):
            rows.append((p.phenomenon, p.item, role, np.asarray([eos, *_encode(tok, text), eos], np.int64), 1))
    for w in last.itertuples():
        head = [eos, *_encode(tok, w.passage)]
        rows.append(("lastword", w.item, "word", np.asarray([*head, *_encode(tok, " " + w.word)], np.int64), len(head)))
    seqs = pd.DataFrame(rows, columns=["set", "item", "role", "ids", "score_from"])
    sha = sha256_json(
        {
            "sequences": [[r.set, int(r.item), r.role, r.ids.tolist(), int(r.score_from)] for r in seqs.itertuples()],
            "context": context,
        }
    )
    return EvalSets(pairs, last, seqs, available, sha)


def score(logp: np.ndarray, ids: np.ndarray, score_from: int) -> tuple[float, bool]:
    """A sequence's summed log-probability of ``ids[score_from:]`` under ``logp`` (positions × vocabulary, the
    model's log-probs at each input position), and whether greedy decoding gives exactly those tokens."""
    t = np.arange(score_from, len(ids))
    lp = logp[t - 1, ids[t]]
    return float(lp.sum()), bool(np.all(logp[t - 1].argmax(-1) == ids[t]))
