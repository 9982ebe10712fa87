"""The "Data and provenance" page (``notebooks/data.md``): the corpus, its splits, the tokenizer and the other
inputs of the book, with their terms and checksums."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pandas as pd

from .. import analysis
from ..data import corpus, linguistics, tokenizer
from ..io import read_json
from ..lenses import downstream as ds
from ..training import profiles
from . import Glued, section


@dataclass
class DataData:
    """The profile and its corpus manifest (provenance, split rule, splits)."""

    prof: profiles.Profile
    manifest: dict


def load(P: SimpleNamespace) -> DataData:
    """The profile of ``P.profile`` and the manifest of its prepared corpus."""
    prof = profiles.load(P.profile)
    return DataData(prof, corpus.manifest(prof.corpus))


def splits_table(d: DataData) -> pd.DataFrame:
    """One row per split: documents, words, characters, its file and the file's sha256."""
    return pd.DataFrame(d.manifest["splits"]).T[["documents", "words", "characters", "file", "sha256"]]


def n_genres(spec: str, splits: tuple[str, ...] = corpus.SPLITS) -> int:
    """How many genres the documents of ``splits`` of the corpus ``spec`` cover."""
    return len({doc.genre for split in splits for doc in corpus.load(spec, split)})


@section
def corpus_section(d: DataData) -> Glued:
    """The corpus's provenance and terms, its split rule, sizes and genres, and the splits table."""
    prov, splits = d.manifest["provenance"], splits_table(d)
    return {
        "corpus_package": prov["package"],
        "corpus_what": prov["what"],
        "corpus_licence": prov["licence"],
        "corpus_sha": prov.get("content_sha256", "")[:16],
        "split_rule": d.manifest["rule"],
        "n_docs": int(splits.documents.sum()),
        "n_probe_docs": int(splits.loc["probe", "documents"]),
        "n_words": int(splits.words.sum()),
        "tab_splits": splits,
        "n_probe_genres": n_genres(d.prof.corpus, ("probe",)),
        "n_genres": n_genres(d.prof.corpus),
    }


@section
def tokenizer_section(d: DataData) -> Glued:
    """The tokenizer's vocabulary and the sha256 of its files (trained if needed, verified)."""
    tdir = tokenizer.train(d.prof.corpus, d.prof.vocab_size)
    tokenizer.verify(tdir)
    files = read_json(tdir / "manifest.json")["files"]
    return {"vocab": d.prof.vocab_size, "tab_tokenizer": pd.Series(files).to_frame("sha256")}


@section
def other_inputs(d: DataData) -> Glued:
    """The installed spaCy pipeline and its version."""
    return {"spacy_model": linguistics.spacy_model_label()}


@section
def downstream_section(d: DataData) -> Glued:
    """The downstream sets: each set's rule, candidates and kept items, their checksum, and a seeded sample of
    pairs for the reader to judge."""
    tok = tokenizer.load(tokenizer.train(d.prof.corpus, d.prof.vocab_size))
    evals = analysis.downstream_sets(tok, d.prof.corpus, d.prof.downstream, d.prof.context)
    if evals is None:
        return {
            "ds_what": "This profile builds no downstream sets (its corpus has no gold tags, or it asks for none).",
            "tab_downstream_sets": pd.DataFrame({"set": [], "rule": [], "candidates": [], "kept": []}),
            "tab_downstream_examples": pd.DataFrame({"phenomenon": [], "good": [], "bad word": []}),
            "ds_sha": "",
        }
    return {
        "ds_what": f"The sets hold {sum(evals.sizes.values()):,} items, {len(evals.sequences):,} scored sequences.",
        "tab_downstream_sets": ds.set_table(evals).set_index("set"),
        "tab_downstream_examples": ds.examples(evals.pairs).set_index("phenomenon"),
        "ds_sha": evals.sha256[:16],
    }
