"""The probe set: held-out text every analysis evaluates, cut into sliding windows.

The probe documents form one token stream (each followed by ``<|endoftext|>``). It is read in ``segments``
spread evenly over the stream; each segment is covered by windows of ``context`` tokens moving by ``stride``
(the cross-seed paper's 2,048/1,024 idea scaled down): the first window of a segment scores every position,
later windows only the positions the previous window did not reach, so every scored token sees at least
``context − stride`` tokens of context except at a segment's start. Contexts cross document boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import LmconvError
from ..io import sha256_bytes, sha256_json
from . import corpus
from . import tokenizer as tok_mod

if TYPE_CHECKING:
    from ..training.profiles import ProbeSettings


@dataclass(frozen=True)
class Probe:
    stream: np.ndarray  # token ids of the whole probe stream
    starts: np.ndarray  # (n_windows,) stream index of each window's first input token
    score_from: np.ndarray  # (n_windows,) first scored output offset in the window
    context: int
    targets: (
        pd.DataFrame
    )  # one row per scored token: pos, window, offset, target_index, target_id, context_len, doc, start, end
    sha256: str

    @property
    def n_tokens(self) -> int:
        return len(self.targets)

    def window_inputs(self, idx: np.ndarray | slice) -> np.ndarray:
        s = self.starts[idx]
        return self.stream[s[:, None] + np.arange(self.context)[None, :]]


def build(tokenizer, corpus_spec: str, spec: ProbeSettings, segment: int | None = None) -> Probe:
    """Cut ``spec.tokens`` scored positions from the probe split, in windows of ``spec.context`` tokens moving by
    ``spec.stride`` (``segment`` defaults to 4 × context)."""
    tokens, context, stride = spec.tokens, spec.context, spec.stride
    for name, v in (("tokens", tokens), ("context", context), ("stride", stride)):
        if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < 1:
            raise LmconvError(f"probe {name} must be a positive integer, got {v!r}")
    if stride > context:
        raise LmconvError(f"probe stride {stride} exceeds the context {context}", "use stride ≤ context")
    seg = segment or 4 * context
    if tokens < context:
        seg = tokens
    docs = corpus.load(corpus_spec, "probe")
    stream, doc_idx, spans = tok_mod.encode_documents(tokenizer, docs, with_offsets=True)
    n_seg = -(-tokens // seg)
    if n_seg * (seg + 1) > len(stream):
        raise LmconvError(
            f"the probe split has {len(stream)} tokens, too few for {tokens} scored tokens",
            f"ask for at most about {len(stream) // 2} probe tokens",
        )
    seg_starts = np.linspace(0, len(stream) - seg - 1, n_seg).astype(np.int64)
    starts, score_from, rows = [], [], []
    remaining = tokens
    for a in seg_starts:
        want = min(seg, remaining)
        remaining -= want
        covered = 0  # targets a+1 … a+covered are scored
        w = 0
        while covered < want:
            s = a + w * stride
            first = 0 if w == 0 else covered - (s - a)
            last = min(context, want - (s - a))  # exclusive: offsets [first, last)
            if s + context >= len(stream):
                s = len(stream) - context - 1
            win = len(starts)
            starts.append(s)
            score_from.append(first)
            for o in range(first, last):
                rows.append((win, o, s + o + 1))
            covered = (s - a) + last
            w += 1
    win_arr, off_arr, tgt = (np.asarray(c, dtype=np.int64) for c in zip(*rows, strict=True))
    targets = pd.DataFrame(
        {
            "pos": np.arange(len(tgt), dtype=np.int32),
            "window": win_arr.astype(np.int32),
            "offset": off_arr.astype(np.int16),
            "target_index": tgt.astype(np.int32),
            "target_id": stream[tgt].astype(np.int32),
            "context_len": (off_arr + 1).astype(np.int16),
            "doc": doc_idx[tgt],
            "start": spans[tgt, 0],
            "end": spans[tgt, 1],
        }
    )
    sha = sha256_json(
        {
            "stream": sha256_bytes(stream.tobytes()),
            "starts": sha256_bytes(np.asarray(starts).tobytes()),
            "targets": sha256_bytes(tgt.tobytes()),
            "context": context,
        }
    )
    return Probe(
        stream.astype(np.int64),
        np.asarray(starts, np.int64),
        np.asarray(score_from, np.int64),
        context,
        targets,
        sha,
    )
