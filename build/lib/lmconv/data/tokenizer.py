"""The byte-level BPE tokenizer, trained on the training split and shared by every model of a suite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from .. import paths
from ..errors import LmconvError
from ..io import atomic_dir, read_json, sha256_file, write_json
from . import corpus

EOT = "<|endoftext|>"
EOT_ID = 0


def tokenizer_dir(corpus_spec: str, vocab_size: int) -> Path:
    return paths.tokenizers_dir() / f"{corpus.corpus_key(corpus_spec)}-bpe{vocab_size}"


def train(corpus_spec: str, vocab_size: int) -> Path:
    """Train (once) a byte-level BPE on the training documents; save it as a transformers tokenizer."""
    out = tokenizer_dir(corpus_spec, vocab_size)
    if (out / "manifest.json").exists() and verify(out, quiet=True):
        return out
    docs = corpus.load(corpus_spec, "train")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((d.text for d in docs), trainer=trainer, length=len(docs))
    if tok.token_to_id(EOT) != EOT_ID:
        raise LmconvError("tokenizer training did not put the end-of-text token at id 0")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOT, eos_token=EOT, unk_token=EOT)
    with atomic_dir(out) as tmp:
        fast.save_pretrained(tmp)
        files = {f.name: sha256_file(f) for f in sorted(tmp.iterdir()) if f.is_file()}
        write_json(tmp / "manifest.json", {"corpus": corpus_spec, "vocab_size": vocab_size, "files": files})
    return out


def verify(folder: Path, quiet: bool = False) -> bool:
    man = read_json(folder / "manifest.json")
    for name, sha in man["files"].items():
        if not (folder / name).exists() or sha256_file(folder / name) != sha:
            if quiet:
                return False
            raise LmconvError(f"tokenizer file {folder / name} is missing or corrupt", "delete the folder and rerun")
    return True


def load(folder: str | Path) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast.from_pretrained(str(folder))


def fingerprint(tok: PreTrainedTokenizerFast) -> str:
    """A hash of the vocabulary and merges: equal for tokenizers that split text identically."""
    from ..io import sha256_bytes

    return sha256_bytes(tok.backend_tokenizer.to_str().encode())


def encode_documents(
    tok: PreTrainedTokenizerFast, docs: list[corpus.Document], with_offsets: bool = False
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """One token stream: each document followed by ``<|endoftext|>`` (the Pythia convention).

    With offsets, also returns per token the document index and the (start, end) character span in it
    (-1 for the separators).
    """
    enc = tok.backend_tokenizer.encode_batch([d.text for d in docs])
    ids, doc_idx, spans = [], [], []
    for i, e in enumerate(enc):
        ids.extend(e.ids)
        ids.append(EOT_ID)
        if with_offsets:
            doc_idx.extend([i] * len(e.ids) + [-1])
            spans.extend([tuple(o) for o in e.offsets] + [(-1, -1)])
    arr = np.asarray(ids, dtype=np.int32)
    if not with_offsets:
        return arr, None, None
    return arr, np.asarray(doc_idx, dtype=np.int32), np.asarray(spans, dtype=np.int32).reshape(-1, 2)


def token_frequencies(corpus_spec: str, vocab_size: int) -> np.ndarray:
    """Counts of every token id over the training stream (zero-initialised; separators included)."""
    folder = train(corpus_spec, vocab_size)
    path = folder / "train_counts.npy"
    if not path.exists():
        ids, _, _ = encode_documents(load(folder), corpus.load(corpus_spec, "train"))
        counts = np.bincount(ids, minlength=vocab_size).astype(np.int64)
        from ..io import atomic_path

        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, counts)
    return np.load(path)
