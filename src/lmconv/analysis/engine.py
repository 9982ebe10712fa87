"""The one-pass engine: every checkpoint is loaded once and run forward once over the probe set, and every
analysis of the book reads what that pass produced.

For one (family, size) and each step, all seeds' models are loaded together; the probe windows are streamed in
blocks, and for each block every model's scored log-probabilities (float64, never stored beyond the block) feed
per-token statistics and the all-pairs KL across seeds. Forward hooks collect layer activations at fixed
positions for CKA against the final checkpoint (whose pass runs first); the weights give spectra, norms and
effective ranks; one backward pass on a fixed probe batch gives gradient ranks.

Each step's tables are cached in two entries: what depends only on the step's checkpoints (and the previous and
first steps, for ΔW and the cosine to the start) under one key, and what compares the step with the final
checkpoint (CKA, the cosine to the final weights, CKA between seeds at the final step) under a key that adds the
final's. With ``keep_activations`` the first entry also keeps the activations CKA uses, so that a reading of the
same checkpoints against another final one (chapter 10 reads one trunk up to four lengths) needs no forward pass.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm  # text bars (tqdm.auto warns in notebooks without ipywidgets)

from ..checkpoints.suites import CheckpointRef, CheckpointSource
from ..data.downstream import EvalSets
from ..data.probe import Probe
from ..metrics import cka as cka_mod
from ..metrics import kl as kl_mod
from ..metrics import rank as rank_mod
from ..metrics import spectrum
from ..training import neox
from .cache import CacheCorruption, TableCache, key_of

ENGINE_VERSION = 9  # 7: the seed_cka table; 8: the downstream table; 9: cached apart from the final checkpoint
TABLES = ("tokens", "pairs", "cka", "seed_cka", "weights", "rank", "downstream")
STEP_TABLES = ("tokens", "pairs", "weights", "rank", "downstream")  # cached without the final checkpoint
READING_TABLES = ("cka", "seed_cka", "cos_final")  # against the final checkpoint ("weights" without cos_final)
VARIANTS = ("last", "all")  # the positions CKA uses (see _selected_positions)
ACTS = tuple(f"acts_{v}" for v in VARIANTS)  # the kept activations: (seed, module x layer, position, hidden)
SEED_CKA_COLUMNS = ("seed_i", "seed_j", "layer", "module", "variant", "estimator", "cka")
DOWNSTREAM_COLUMNS = ("seed", "set", "item", "role", "logp", "greedy")
LOGIT_BYTES = 16  # per logit of a downstream batch: float32 logits, their float64 log-softmax, the argmax
ACT_MODULES = ("attn_ov", "attn_ov_faithful", "attn_out", "mlp")
TOKEN_STATISTICS = ("surprisal", "entropy", "kl_uniform", "kl_unigram")


@dataclass(frozen=True)
class EngineOptions:
    cka_samples: int = 1024  # positions sampled (fixed, seeded) for the all-token CKA variant
    grad_windows: int = 8  # probe windows in the fixed batch whose gradients give gradient ranks
    block_mb: int = 256  # memory budget for one block of log-probs across seeds
    device: str = "cpu"
    keep_activations: bool = False  # cache each step's CKA activations (for readings against another final)

    def cache_part(self) -> dict:
        d = asdict(self)
        for name in ("block_mb", "device", "keep_activations"):  # they do not change a table
            d.pop(name)
        return d


class LoadCounter:
    """Counts model loads per checkpoint (the tests check each is loaded exactly once per pass)."""

    def __init__(self) -> None:
        self.counts: dict[CheckpointRef, int] = {}

    def add(self, ref: CheckpointRef) -> None:
        self.counts[ref] = self.counts.get(ref, 0) + 1


LOADS = LoadCounter()


def _selected_positions(probe: Probe, n_all: int) -> dict[str, np.ndarray]:
    """(window, offset) pairs whose activations CKA uses: each window's last position, and a seeded sample."""
    last = np.stack([np.arange(len(probe.starts)), np.full(len(probe.starts), probe.context - 1)], 1)
    rng = np.random.default_rng(0)
    t = probe.targets
    pick = np.sort(rng.choice(len(t), size=min(n_all, len(t)), replace=False))
    return dict(zip(VARIANTS, (last, np.stack([t.window.to_numpy()[pick], t.offset.to_numpy()[pick]], 1)), strict=True))


class ActivationRecorder:
    """Forward hooks that keep each layer's activations at the selected positions only."""

    def __init__(self, model, selected: dict[str, np.ndarray]) -> None:
        self.model = model
        self.selected = selected
        self.heads = model.config.num_attention_heads
        d = model.config.hidden_size
        n_layers = model.config.num_hidden_layers
        self.out = {
            (v, m, i): np.zeros((len(sel), d), np.float32)
            for v, sel in selected.items()
            for m in ACT_MODULES
            for i in range(n_layers)
        }
        self.window_range = (0, 0)
        self.handles = []
        for i, layer in enumerate(neox.layers(model)):
            self.handles.append(layer.attention.query_key_value.register_forward_hook(self._qkv_hook(i, layer)))
            self.handles.append(layer.attention.register_forward_hook(self._store_hook(i, "attn_out")))
            self.handles.append(layer.mlp.register_forward_hook(self._store_hook(i, "mlp")))

    def _rows(self, variant: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        w0, w1 = self.window_range
        sel = self.selected[variant]
        idx = np.nonzero((sel[:, 0] >= w0) & (sel[:, 0] < w1))[0]
        return idx, sel[idx, 0] - w0, sel[idx, 1]

    def _put(self, module: str, layer: int, act: torch.Tensor) -> None:
        for v in self.selected:
            idx, lw, off = self._rows(v)
            if len(idx):
                self.out[(v, module, layer)][idx] = act[lw, off].detach().float().cpu().numpy()

    def _store_hook(self, layer: int, module: str) -> Callable:
        def hook(_mod, _inp, output):
            self._put(module, layer, output[0] if isinstance(output, tuple) else output)

        return hook

    def _qkv_hook(self, layer: int, layer_mod) -> Callable:
        w_o = layer_mod.attention.dense.weight

        def hook(_mod, _inp, output):
            v = neox.split_qkv(output, self.heads, dim=-1)[2]
            self._put("attn_ov", layer, v @ w_o.T)
            self._put("attn_ov_faithful", layer, neox.last_third(output, dim=-1) @ w_o.T)

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _weight_rows(model, final_w: dict | None, prev_w: dict | None, init_w: dict | None) -> tuple[list[dict], dict]:
    rows, current = [], {}
    for name, w in neox.matrices(model, embeddings=True).items():
        w = w.detach().double().cpu()
        current[name] = w
        sv = spectrum.singular_values(w, torch.float32)
        n = spectrum.norms(sv)
        layer, kind = neox.parse_matrix_name(name)
        row = {
            "matrix": name,
            "layer": layer,
            "kind": kind,
            **n,
            "cos_final": spectrum.cosine(w, final_w[name] if final_w else w),  # the final step compares with itself
            "delta_nuclear": float(spectrum.singular_values(w - prev_w[name], torch.float32).sum())
            if prev_w
            else float("nan"),
            "cos_init": spectrum.cosine(w, init_w[name]) if init_w else float("nan"),
            "rel_change_init": float(torch.linalg.norm(w - init_w[name]) / torch.linalg.norm(init_w[name]))
            if init_w
            else float("nan"),
            "sv": sv.astype(np.float32),
        }
        rows.append(row)
    return rows, current


def _rank_rows(model, probe: Probe, n_windows: int) -> list[dict]:
    """PER of weights and of gradients on a fixed probe batch (both V slices): ``n_windows`` disjoint windows,
    the first of evenly spaced probe segments."""
    firsts = np.nonzero(probe.score_from == 0)[0]
    idx = firsts[np.unique(np.linspace(0, len(firsts) - 1, min(n_windows, len(firsts))).round().astype(int))]
    s = probe.starts[idx]
    x = torch.from_numpy(probe.stream[s[:, None] + np.arange(probe.context + 1)[None, :]])
    x = x.to(next(model.parameters()).device)
    model.zero_grad(set_to_none=True)
    # one thread: the weight gradients sum over the batch, and a different thread count splits that sum
    # differently (a Dask worker's single thread gave other last bits than the in-process run)
    with torch.enable_grad(), _one_thread():
        logits = model(x[:, :-1]).logits
        v = logits.shape[-1]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, v).float(), x[:, 1:].reshape(-1))
        loss.backward()
    rows = []
    with _one_thread():
        for grads in (False, True):
            for faithful in (False, True):
                for r in rank_mod.per_rows(model, grads=grads, faithful_v=faithful):
                    rows.append({**r, "v_slice": "faithful" if faithful else "split"})
    model.zero_grad(set_to_none=True)
    return rows


@contextlib.contextmanager
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _forward(
    recorders: dict[int, ActivationRecorder],
    probe: Probe,
    vocab: int,
    unigram_logp: torch.Tensor,
    options: EngineOptions,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every seed's model (hooked by its recorder) over the probe windows in blocks: per-token statistics
    ``(S, positions)`` and the all-pairs KL ``(S, S, positions)``."""
    seeds = sorted(recorders)
    dev = torch.device(options.device)
    t = probe.targets
    win_of_pos = t.window.to_numpy()
    off_of_pos = t.offset.to_numpy()
    tgt = torch.from_numpy(t.target_id.to_numpy().astype(np.int64))
    n_win, n_pos = len(probe.starts), len(t)
    block = max(1, int(options.block_mb * 2**20 // (len(seeds) * probe.context * vocab * 8)))
    tok_cols = {k: np.zeros((len(seeds), n_pos), np.float32) for k in TOKEN_STATISTICS}
    pair_kl = np.zeros((len(seeds), len(seeds), n_pos), np.float32)
    uni = unigram_logp.double().to(dev)
    for w0 in range(0, n_win, block):
        w1 = min(n_win, w0 + block)
        x = torch.from_numpy(probe.window_inputs(slice(w0, w1))).to(dev)
        pos = np.nonzero((win_of_pos >= w0) & (win_of_pos < w1))[0]
        lw = torch.from_numpy(win_of_pos[pos] - w0)
        lo = torch.from_numpy(off_of_pos[pos].astype(np.int64))
        # each seed's float64 log-softmax written in place into the block (no float64 copy of the logits, no stack:
        # the same values, two passes over the block fewer)
        lp = torch.empty(len(seeds), len(pos), vocab, dtype=torch.float64, device=dev)  # (S, n, V)
        for n, k in enumerate(seeds):
            recorders[k].window_range = (w0, w1)
            logits = recorders[k].model(x).logits[..., :vocab]
            torch.log_softmax(logits[lw, lo], dim=-1, dtype=torch.float64, out=lp[n])
        stats = kl_mod.block_statistics(lp, tgt[pos].to(dev), uni)
        for key in tok_cols:
            tok_cols[key][:, pos] = stats[key].cpu().numpy()
        pair_kl[:, :, pos] = stats["pairs"].cpu().numpy()
        del lp
    return tok_cols, pair_kl


def _token_tables(seeds: list[int], tok_cols: dict[str, np.ndarray], pair_kl: np.ndarray) -> dict[str, pd.DataFrame]:
    """The ``tokens`` table (one row per seed and position) and the ``pairs`` table (per ordered seed pair)."""
    s_arr = np.asarray(seeds)
    n_pos = pair_kl.shape[-1]
    tokens = pd.DataFrame(
        {
            "seed": np.repeat(s_arr, n_pos).astype(np.int16),
            "pos": np.tile(np.arange(n_pos, dtype=np.int32), len(seeds)),
            **{k: v.reshape(-1) for k, v in tok_cols.items()},
        }
    )
    ii, jj = np.nonzero(~np.eye(len(seeds), dtype=bool))
    pairs = pd.DataFrame(
        {
            "seed_i": np.repeat(s_arr[ii], n_pos).astype(np.int16),
            "seed_j": np.repeat(s_arr[jj], n_pos).astype(np.int16),
            "pos": np.tile(np.arange(n_pos, dtype=np.int32), len(ii)),
            "kl": pair_kl[ii, jj].reshape(-1),
        }
    )
    return {"tokens": tokens, "pairs": pairs}


def _cka_table(acts: dict[int, dict], refs: dict[int, dict]) -> pd.DataFrame:
    """Biased and debiased CKA of every recorded activation with the final checkpoint's."""
    rows = []
    for k, by_key in acts.items():
        for (variant, module, layer), a in by_key.items():
            biased, debiased = cka_mod.cka_both(a, refs[k][(variant, module, layer)])
            for est, value in (("biased", biased), ("debiased", debiased)):
                rows.append(
                    {"seed": k, "layer": layer, "module": module, "variant": variant, "estimator": est, "cka": value}
                )
    return pd.DataFrame(rows)


def _seed_cka_table(acts: dict[int, dict], refs: dict[int, dict]) -> pd.DataFrame:
    """Biased and debiased CKA between the activations of every two seeds (i < j; CKA is symmetric) at the final
    step, per layer, module and variant: how alike the seeds' representations end up."""
    rows = []
    seeds = sorted(acts)
    for n, i in enumerate(seeds):
        for j in seeds[n + 1 :]:
            for (variant, module, layer), a in acts[i].items():
                biased, debiased = cka_mod.cka_both(a, refs[j][(variant, module, layer)])
                for est, value in (("biased", biased), ("debiased", debiased)):
                    rows.append((i, j, layer, module, variant, est, value))
    return pd.DataFrame(rows, columns=list(SEED_CKA_COLUMNS))


def downstream_batch_tokens(vocab: int, options: EngineOptions) -> int:
    """Padded tokens per forward batch of the downstream sequences, so that one batch's logits stay within
    ``options.block_mb`` (4,096 at our 4,096-token vocabulary; about 330 at Pythia's 50,304)."""
    return max(1, options.block_mb * 2**20 // (vocab * LOGIT_BYTES))


def _scored_positions(rows: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, ...]:
    """For one padded batch of downstream sequences (``rows``: their indices): the (row, position) of every scored
    token, row by row, and how many each sequence has."""
    counts = lengths[rows] - starts[rows]
    r = np.repeat(np.arange(len(rows)), counts)
    t = np.concatenate([np.arange(starts[i], lengths[i]) for i in rows]) if len(rows) else np.zeros(0, np.int64)
    return r, t, counts


def _downstream_table(
    models: dict[int, torch.nn.Module], evals: EvalSets | None, vocab: int, options: EngineOptions
) -> pd.DataFrame:
    """Every seed's summed log-probability of each downstream sequence's scored tokens, and whether greedy
    decoding gives them (float64 log-softmax; the sequences in length-sorted, right-padded batches).

    Only the positions that predict a scored token go through the float64 log-softmax (about half of a padded
    batch of our sets): each row's values are those of the whole batch's log-softmax, and each sequence's sum is
    taken over its own tokens in order, so the table is the same to the bit."""
    if evals is None or not len(evals.sequences):
        return pd.DataFrame({c: [] for c in DOWNSTREAM_COLUMNS})
    seqs = evals.sequences
    starts = seqs.score_from.to_numpy()
    lengths = seqs.ids.map(len).to_numpy()
    batches = [
        (rows, torch.from_numpy(x).to(options.device))
        for rows, x in evals.batches(downstream_batch_tokens(vocab, options))
    ]
    scored = [_scored_positions(np.asarray(rows), starts, lengths) for rows, _ in batches]
    frames = []
    for k in sorted(models):
        logp = np.zeros(len(seqs))
        greedy = np.zeros(len(seqs), dtype=bool)
        for (rows, xt), (r, t, counts) in zip(batches, scored, strict=True):
            r_t, t_t = torch.from_numpy(r).to(xt.device), torch.from_numpy(t).to(xt.device)
            logits = models[k](xt).logits[r_t, t_t - 1, :vocab]
            lp = torch.log_softmax(logits, dim=-1, dtype=torch.float64)
            tgt = xt[r_t, t_t]
            tok = lp.gather(1, tgt[:, None])[:, 0]
            # the float32 logits' argmax is the float64 log-softmax's (a monotone map of each row: order and ties
            # kept), at half the memory traffic
            hit = (logits.argmax(-1) == tgt).cpu().numpy()
            parts = torch.split(tok, counts.tolist())
            logp[rows] = [float(v.sum()) for v in parts]
            greedy[rows] = np.bincount(r, weights=~hit, minlength=len(rows)) == 0
            del lp
        frames.append(
            pd.DataFrame(
                {
                    "seed": np.int16(k),
                    "set": seqs.set.to_numpy(),
                    "item": seqs["item"].to_numpy(np.int32),
                    "role": seqs.role.to_numpy(),
                    "logp": logp,
                    "greedy": greedy,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _weight_tables(
    models: dict[int, torch.nn.Module], probe: Probe, options: EngineOptions, compare: dict[str, dict | None]
) -> tuple[dict[str, pd.DataFrame], dict]:
    """The ``weights`` (spectra, norms, cosines to the final and first checkpoints, ΔW to the previous) and
    ``rank`` tables, and this step's weight matrices; ``compare`` holds the final, previous and first states."""
    final, prev, init = compare["final"], compare["prev"], compare["init"]
    weight_rows, rank_rows, weights_now = [], [], {}
    for k in sorted(models):
        rank_rows += [{"seed": k, **r} for r in _rank_rows(models[k], probe, options.grad_windows)]
        with _one_thread():  # many small factorisations: waking a thread pool for each costs more than it saves
            rows, weights_now[k] = _weight_rows(
                models[k],
                final["weights"][k] if final else None,
                prev["weights"][k] if prev else None,
                init["weights"][k] if init else None,
            )
        weight_rows += [{"seed": k, "prev_step": prev["step"] if prev else -1, **r} for r in rows]
    return {"weights": pd.DataFrame(weight_rows), "rank": pd.DataFrame(rank_rows)}, weights_now


@torch.no_grad()
def process_step(
    models: dict[int, torch.nn.Module],
    probe: Probe,
    vocab: int,
    unigram_logp: torch.Tensor,
    options: EngineOptions,
    final: dict | None,
    prev: dict | None,
    init: dict | None = None,
    evals: EvalSets | None = None,
) -> tuple[dict[str, pd.DataFrame], dict]:
    """Run every seed's model once over the probe (and the downstream sets ``evals``); return this step's
    tables and its state (activations, weights) for the steps that compare against it. ``final``, ``prev`` and
    ``init`` are the states of the final, previous and first analysed steps (None: this step is that one, or has
    none)."""
    seeds = sorted(models)
    selected = _selected_positions(probe, options.cka_samples)
    recorders = {k: ActivationRecorder(models[k], selected) for k in seeds}
    try:
        tok_cols, pair_kl = _forward(recorders, probe, vocab, unigram_logp, options)
    finally:
        for r in recorders.values():
            r.remove()
    acts = {k: recorders[k].out for k in seeds}
    # the final checkpoint's activations, with their CKA statistics computed once
    refs = final["refs"] if final else {k: {key: cka_mod.Reference(a) for key, a in acts[k].items()} for k in seeds}
    tables = {**_token_tables(seeds, tok_cols, pair_kl), "cka": _cka_table(acts, refs)}
    # between seeds only at the final step (the one analysed without a final state): empty at the others
    tables["seed_cka"] = _seed_cka_table(acts, refs) if final is None else _seed_cka_table({}, {})
    weight_tables, weights_now = _weight_tables(models, probe, options, {"final": final, "prev": prev, "init": init})
    tables.update(weight_tables)
    tables["downstream"] = _downstream_table(models, evals, vocab, options)
    if options.keep_activations:
        tables.update(_pack_acts(acts))
    return tables, {"refs": refs, "weights": weights_now}


def _pack_acts(acts: dict[int, dict]) -> dict[str, np.ndarray]:
    """Every seed's recorded activations as one array per variant: (seed, module x layer, position, hidden)."""
    seeds = sorted(acts)
    out = {}
    for v, name in zip(VARIANTS, ACTS, strict=True):
        out[name] = np.stack([np.stack([a for (var, _, _), a in acts[k].items() if var == v]) for k in seeds])
    return out


def _unpack_acts(arrays: dict[str, np.ndarray], seeds: list[int]) -> dict[int, dict]:
    """The inverse of :func:`_pack_acts`, keyed as :class:`ActivationRecorder` keys them, in its order."""
    n_layers = arrays[ACTS[0]].shape[1] // len(ACT_MODULES)
    keys = [(m, i) for m in ACT_MODULES for i in range(n_layers)]
    return {
        k: {
            (v, m, i): arrays[name][s, j]
            for v, name in zip(VARIANTS, ACTS, strict=True)
            for j, (m, i) in enumerate(keys)
        }
        for s, k in enumerate(seeds)
    }


def _references(acts: dict[int, dict]) -> dict[int, dict]:
    """The final checkpoint's activations with their CKA statistics, computed once."""
    return {k: {key: cka_mod.Reference(a) for key, a in by_key.items()} for k, by_key in acts.items()}


def _step_part(tables: dict) -> dict:
    """What of a step's tables is cached without the final checkpoint (and the kept activations)."""
    out = {n: tables[n] for n in STEP_TABLES} | {n: tables[n] for n in ACTS if n in tables}
    out["weights"] = tables["weights"].drop(columns="cos_final")
    return out


def _reading_part(tables: dict) -> dict:
    """What of a step's tables compares it with the final checkpoint."""
    return {"cka": tables["cka"], "seed_cka": tables["seed_cka"], "cos_final": _cos_final_of(tables["weights"])}


def _cos_final_of(weights: pd.DataFrame) -> pd.DataFrame:
    return weights[["seed", "matrix", "cos_final"]].reset_index(drop=True)


def _merged(step: dict, reading: dict) -> dict[str, pd.DataFrame] | None:
    """A step's tables from its two cached parts (the cosine to the final weights back in its column); None,
    with a warning, when the parts do not list the same matrices."""
    w, cos = step["weights"].copy(), reading["cos_final"]
    if (
        len(w) != len(cos)
        or (w.seed.to_numpy() != cos.seed.to_numpy()).any()
        or (w.matrix.to_numpy() != cos.matrix.to_numpy()).any()
    ):
        warnings.warn(
            "a cached step's weights and cosines to the final differ; recomputing it", CacheCorruption, stacklevel=3
        )
        return None
    w.insert(w.columns.get_loc("delta_nuclear"), "cos_final", cos.cos_final.to_numpy())
    return {n: step[n] for n in STEP_TABLES} | {"weights": w, "cka": reading["cka"], "seed_cka": reading["seed_cka"]}


@dataclass
class _Pass:
    """One (family, size) over its seeds and steps: the checkpoints, the two cache keys of each step (``keys``,
    without the final checkpoint; ``reading_keys``, with it), and what every step's pass needs. Both the
    in-process and the Dask path run its steps in :meth:`order`."""

    source: CheckpointSource
    family: str
    size: str
    seeds: list[int]
    steps: list[int]
    probe: Probe
    unigram_logp: torch.Tensor
    vocab: int
    options: EngineOptions
    cache: TableCache
    evals: EvalSets | None = None

    def __post_init__(self) -> None:
        self.refs = {st: [CheckpointRef(self.family, self.size, k, st) for k in self.seeds] for st in self.steps}
        shas = {st: [self.source.sha(r) for r in self.refs[st]] for st in self.steps}
        base = {
            "engine": ENGINE_VERSION,
            "probe": self.probe.sha256,
            "vocab": self.vocab,
            "seeds": self.seeds,
            "unigram": float(self.unigram_logp.double().sum()),
            "options": self.options.cache_part(),
            "downstream": self.evals.sha256 if self.evals is not None else None,
            "init": shas[self.steps[0]],  # cos_init and rel_change_init are measured from the first step analysed
        }
        self.keys, self.reading_keys = {}, {}
        for st in self.steps:
            prev = self.previous(st)
            self.keys[st] = key_of(
                {**base, "step": st, "shas": shas[st], "prev": shas[prev] if prev is not None else None}
            )
            self.reading_keys[st] = key_of({"step": self.keys[st], "final": shas[self.final]})

    @property
    def final(self) -> int:
        return self.steps[-1]

    def previous(self, step: int) -> int | None:
        i = self.steps.index(step)
        return self.steps[i - 1] if i else None

    def order(self, todo: Sequence[int]) -> list[int]:
        """The steps to run: the final one first (every other step's CKA compares with it), then in order."""
        return [self.final] + [st for st in self.steps if st in todo and st != self.final]

    def meta(self, step: int) -> dict:
        return {"family": self.family, "size": self.size, "step": step, "seeds": self.seeds}

    def save(self, step: int, tables: dict[str, pd.DataFrame]) -> None:
        """Cache a step's tables computed by :func:`process_step`, as its two entries."""
        self.cache.save(self.keys[step], _step_part(tables), self.meta(step))
        self.save_reading(step, _reading_part(tables))

    def save_reading(self, step: int, reading: dict[str, pd.DataFrame]) -> None:
        self.cache.save(self.reading_keys[step], reading, {**self.meta(step), "final": self.final})

    def kept(self, step: int) -> bool:
        """Whether the step's cached entry lists the activations CKA needs."""
        return set(ACTS) <= self.cache.array_names(self.keys[step])

    def cached_final(self) -> dict | None:
        """The final step's state (its activations' CKA references and its weights) from its kept activations,
        without a forward pass; None when they are not kept (or the entry is corrupt)."""
        got = self.cache.load(self.keys[self.final], (*STEP_TABLES, *ACTS)) if self.kept(self.final) else None
        if got is None:
            return None
        refs = _references(_unpack_acts(got, self.seeds))
        return {"refs": refs, "weights": self.weights(self.final)["weights"]}

    def weights(self, step: int) -> dict:
        return {"step": step, "weights": _weights_only(self.source, self.refs[step])}

    def load(self, step: int) -> dict[int, torch.nn.Module]:
        out = {}
        for r in self.refs[step]:
            LOADS.add(r)
            out[r.seed] = self.source.load_model(r).to(self.options.device)
        return out

    def bar(self, n: int, progress: bool, label: str = "") -> tqdm:
        return tqdm(total=n, desc=f"analyse {self.family}-{self.size}{label}", unit="ckpt", disable=not progress)

    def tables(self, results: dict[int, dict[str, pd.DataFrame]]) -> dict[str, pd.DataFrame]:
        """Every step's tables stacked, with family, size and step columns."""
        out = {}
        for name in TABLES:
            frames = []
            for st in self.steps:
                df = results[st][name].copy()
                df.insert(0, "step", np.int32(st))
                frames.append(df)
            df = pd.concat(frames, ignore_index=True)
            df.insert(0, "size", self.size)
            df.insert(0, "family", self.family)
            out[name] = df
        return out


def analyze(
    source: CheckpointSource,
    family: str,
    size: str,
    seeds: Sequence[int],
    steps: Sequence[int],
    probe: Probe,
    unigram_logp: torch.Tensor,
    vocab: int,
    options: EngineOptions | None = None,
    cache: TableCache | None = None,
    progress: bool = True,
    client=None,
    evals: EvalSets | None = None,
) -> dict[str, pd.DataFrame]:
    """Tables for every step of one (family, size) over ``seeds``, from the cache or from one pass each (the
    downstream sets ``evals`` scored in the same pass); with a Dask ``client`` (see
    :mod:`lmconv.analysis.fanout`) the steps run as tasks on its workers."""
    job = _Pass(
        source,
        family,
        size,
        sorted(int(s) for s in seeds),
        sorted(int(s) for s in steps),
        probe,
        unigram_logp,
        vocab,
        options or EngineOptions(),
        cache or TableCache("engine"),
        evals,
    )
    results: dict[int, dict[str, pd.DataFrame]] = {}
    todo, light = [], []  # light: only the comparison with the final is missing, and the activations are kept
    for st in job.steps:
        step_part = job.cache.load(job.keys[st], STEP_TABLES, arrays=False)
        reading = job.cache.load(job.reading_keys[st], READING_TABLES) if step_part is not None else None
        merged = _merged(step_part, reading) if reading is not None else None
        if merged is not None:
            results[st] = merged
        elif step_part is not None and job.kept(st):
            light.append(st)
        else:
            todo.append(st)
    final_state = None
    if (todo or light) and job.final not in todo:
        final_state = job.cached_final()  # from its kept activations, without a forward pass
        if final_state is None:
            light = [st for st in light if st != job.final]  # its kept entry was corrupt
            if job.final in results:  # cached, activations not kept: its pass again, as the reference only
                final_state = _reference_state(job)
            else:
                todo.append(job.final)
    if todo:
        if client is not None:
            got, final_state = _analyze_on_cluster(client, job, todo, progress, final_state)
        else:
            got, final_state = _analyze_locally(job, todo, progress, final_state)
        results.update(got)
    for st in light:
        results[st] = _compare_with_final(job, st, final_state)
    return job.tables(results)


def _reference_state(job: _Pass) -> dict:
    """The final step's state (the CKA references of its activations, its weights) from its pass."""
    models = job.load(job.final)
    init = job.weights(job.steps[0])
    return process_step(models, job.probe, job.vocab, job.unigram_logp, job.options, None, None, init, job.evals)[1]


def _compare_with_final(job: _Pass, step: int, final_state: dict) -> dict[str, pd.DataFrame]:
    """A step whose own tables and activations are cached: only its CKA and weight cosine to the final
    checkpoint are computed (no forward pass) and cached; its full pass when the kept entry turns out corrupt."""
    got = job.cache.load(job.keys[step], (*STEP_TABLES, *ACTS))
    if got is None:
        before = job.previous(step)
        prev = job.weights(before) if before is not None else None
        final = None if step == job.final else final_state  # the final step is its own reference
        tables, _ = process_step(
            job.load(step), job.probe, job.vocab, job.unigram_logp, job.options, final, prev,
            job.weights(job.steps[0]), job.evals,
        )  # fmt: skip
        job.save(step, tables)
        return tables
    acts, refs = _unpack_acts(got, job.seeds), final_state["refs"]
    now = job.weights(step)["weights"]
    with _one_thread():  # as in process_step: the same cosines to the last bit
        cos = [
            spectrum.cosine(now[k][m], final_state["weights"][k][m])
            for k, m in zip(got["weights"].seed, got["weights"].matrix, strict=True)
        ]
    reading = {
        "cka": _cka_table(acts, refs),
        "seed_cka": _seed_cka_table(acts, refs) if step == job.final else _seed_cka_table({}, {}),
        "cos_final": pd.DataFrame({"seed": got["weights"].seed, "matrix": got["weights"].matrix, "cos_final": cos}),
    }
    job.save_reading(step, reading)
    return _merged(got, reading)


def _analyze_locally(
    job: _Pass, todo: list[int], progress: bool, final_state: dict | None
) -> tuple[dict[int, dict[str, pd.DataFrame]], dict]:
    """The steps in ``todo`` in this process, in ``job.order``, and the final step's state (``final_state``
    when it is not in ``todo``, else computed first); each step's weights are kept for the next one's ΔW, and
    the final step's ΔW to the step before is filled in once that step's weights are in memory."""
    out = {}
    bar = job.bar(len(todo), progress)
    init_state = job.weights(job.steps[0])
    if job.final in todo:
        final_tables, final_state = process_step(
            job.load(job.final), job.probe, job.vocab, job.unigram_logp, job.options, None, None, init_state, job.evals
        )
    prev_state = None
    for st in job.order(todo)[1:]:
        before = job.previous(st)
        if before is not None and (prev_state is None or prev_state["step"] != before):
            prev_state = job.weights(before)
        tables, state = process_step(
            job.load(st),
            job.probe,
            job.vocab,
            job.unigram_logp,
            job.options,
            final_state,
            prev_state if before is not None else None,
            init_state,
            job.evals,
        )
        job.save(st, tables)
        out[st] = tables
        prev_state = {"step": st, "weights": state["weights"]}
        bar.update(1)
    if job.final in todo:
        before = job.previous(job.final)
        if before is not None:
            if prev_state is None or prev_state["step"] != before:
                prev_state = job.weights(before)
            _fill_delta(final_tables["weights"], final_state["weights"], prev_state)
        job.save(job.final, final_tables)
        out[job.final] = final_tables
        bar.update(1)
    bar.close()
    return out, final_state


def _remote_step(
    source: CheckpointSource, refs_now, refs_prev, probe, vocab, unigram_logp, options, evals, final_state, init_state
):
    """One step as a Dask task: load its models (and the previous step's weights, for ΔW), run the pass."""
    models = {r.seed: source.load_model(r).to(options.device) for r in refs_now}
    prev = {"step": refs_prev[0].step, "weights": _weights_only(source, refs_prev)} if refs_prev else None
    return process_step(models, probe, vocab, unigram_logp, options, final_state, prev, init_state, evals)


def _init_state(source: CheckpointSource, refs: list[CheckpointRef]) -> dict:
    return {"step": refs[0].step, "weights": _weights_only(source, refs)}


def _analyze_on_cluster(
    client, job: _Pass, todo: list[int], progress: bool, final_state: dict | None
) -> tuple[dict[int, dict[str, pd.DataFrame]], dict]:
    """The steps in ``todo`` as tasks, in ``job.order``: the final step first (unless ``final_state`` is given
    and it is not in ``todo``), then the rest as workers free up; each result is cached as it arrives, so an
    interrupted run keeps what finished. Returns the tables and the final step's state."""
    from dask.distributed import as_completed

    def prev_refs(st: int):
        before = job.previous(st)
        return job.refs[before] if before is not None else None

    probe_f, uni_f, evals_f = client.scatter([job.probe, job.unigram_logp, job.evals], broadcast=True)
    args = (probe_f, job.vocab, uni_f, job.options, evals_f)
    init_f = client.submit(_init_state, job.source, job.refs[job.steps[0]], pure=False)
    out = {}
    bar = job.bar(len(todo), progress, " (dask)")
    if job.final in todo:
        final_f = client.submit(
            _remote_step, job.source, job.refs[job.final], prev_refs(job.final), *args, None, init_f, pure=False
        )
        final_tables, final_state = final_f.result()
        job.save(job.final, final_tables)
        out[job.final] = final_tables
        bar.update(1)
    state_f = client.scatter(final_state, broadcast=True)
    futures = {
        client.submit(_remote_step, job.source, job.refs[st], prev_refs(st), *args, state_f, init_f, pure=False): st
        for st in job.order(todo)[1:]
    }
    for fut in as_completed(futures):
        st = futures[fut]
        tables, _ = fut.result()
        job.save(st, tables)
        out[st] = tables
        bar.update(1)
    bar.close()
    return out, final_state


@_one_thread()
def _fill_delta(weights: pd.DataFrame, current: dict, prev: dict) -> None:
    # one thread, as in process_step: the same ΔW singular values to the last bit whichever path computes them
    for i, row in weights.iterrows():
        d = current[row.seed][row.matrix] - prev["weights"][row.seed][row.matrix]
        weights.at[i, "delta_nuclear"] = float(spectrum.singular_values(d, torch.float32).sum())
        weights.at[i, "prev_step"] = prev["step"]


def _weights_only(source: CheckpointSource, refs: list[CheckpointRef]) -> dict[int, dict]:
    """The previous checkpoint's weight matrices, for ΔW (loaded without a forward pass)."""
    out = {}
    for r in refs:
        model = source.load_model(r)
        out[r.seed] = {n: w.detach().double().cpu() for n, w in neox.matrices(model, embeddings=True).items()}
    return out
