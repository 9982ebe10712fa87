"""The "Data and provenance" page (``notebooks/data.md``): the corpus, its splits, the tokenizer and the other
inputs of the book, with their terms and checksums."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pandas as pd

from ..data import corpus, linguistics, tokenizer
from ..io import read_json
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
