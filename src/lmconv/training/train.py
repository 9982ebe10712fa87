"""Training a profile's suite: GPT-NeoX models × arms × sizes × seeds, deterministic and resumable.

The seed sets both the initialisation and the data order (as in the PolyPythias), unless the arm fixes one of
them (``init_seed``, ``data_seed``): the batch of step ``t`` is drawn by a generator seeded with
``(data seed, t)``, so it needs no saved RNG state. At every checkpoint step the
weights are written (``save_pretrained``, safetensors) into ``step{N}/`` by an atomic rename, then the resume
state (optimizer state and logs up to that step) likewise. Rerunning the command after a kill continues from
the last complete checkpoint and ends with files identical to an uninterrupted run (at the same thread count).
A run counts as complete only with every scheduled checkpoint on disk: one that lost a checkpoint trains again
from the latest saved state before it (or from step 0) and writes the same files.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import transformers
from tqdm import tqdm  # text bars (tqdm.auto warns in notebooks without ipywidgets)

from .. import paths
from ..checkpoints.suites import RUN_FINISHED, format_revision, format_run, run_finished
from ..data import corpus
from ..data import tokenizer as tok_mod
from ..errors import LmconvError, no_repeats
from ..io import (
    atomic_dir,
    atomic_path,
    exclusive_lock,
    read_json,
    remove_stale_temporaries,
    sha256_file,
    write_json,
    write_text,
)
from . import neox
from .profiles import PRECISION_ENV, ROTARY_PCT, Arm, Profile, Size, TrainSettings, step_compiler

STATE_DIR = "resume"
transformers.utils.logging.disable_progress_bar()


@dataclass
class TrainData:
    """Token streams for training (random windows) and validation (fixed windows)."""

    train: np.ndarray
    val_windows: np.ndarray  # (n, context + 1)
    context: int
    tokenizer_dir: Path

    def batch(self, seed: int, step: int, batch_size: int) -> torch.Tensor:
        rng = np.random.default_rng([int(seed), int(step), 0x5EED])
        starts = rng.integers(0, len(self.train) - self.context - 1, size=batch_size)
        idx = starts[:, None] + np.arange(self.context + 1)[None, :]
        return torch.from_numpy(self.train[idx].astype(np.int64))


def fixed_windows(stream: np.ndarray, context: int, n_tokens: int) -> np.ndarray:
    """Non-overlapping ``context+1`` windows, evenly spread over the stream, covering ~``n_tokens`` targets."""
    n_avail = (len(stream) - 1) // context
    n = max(1, min(n_avail, -(-n_tokens // context)))
    starts = np.linspace(0, (n_avail - 1) * context, n).astype(np.int64) // context * context
    return np.stack([stream[s : s + context + 1] for s in starts]).astype(np.int64)


def prepare_data(profile: Profile) -> TrainData:
    tdir = tok_mod.train(profile.corpus, profile.vocab_size)
    tok = tok_mod.load(tdir)
    cache = tdir / "streams.npz"
    if not cache.exists():
        train_ids, _, _ = tok_mod.encode_documents(tok, corpus.load(profile.corpus, "train"))
        val_ids, _, _ = tok_mod.encode_documents(tok, corpus.load(profile.corpus, "val"))
        with atomic_path(cache) as tmp, open(tmp, "wb") as f:
            np.savez(f, train=train_ids, val=val_ids)
    z = np.load(cache)
    settings = next(iter(profile.arms.values())).train
    return TrainData(z["train"], fixed_windows(z["val"], profile.context, settings.val_tokens), profile.context, tdir)


def model_config(profile: Profile, size: Size):
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(
        vocab_size=profile.vocab_size,
        hidden_size=size.hidden,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        intermediate_size=4 * size.hidden,
        max_position_embeddings=profile.context,
        rotary_pct=ROTARY_PCT,
        rotary_emb_base=10000,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        initializer_range=0.02,
        bos_token_id=tok_mod.EOT_ID,
        eos_token_id=tok_mod.EOT_ID,
        attn_implementation="sdpa",
    )


def init_model(profile: Profile, size: Size, seed: int):
    from transformers import GPTNeoXForCausalLM

    torch.manual_seed(seed)
    return GPTNeoXForCausalLM(model_config(profile, size)).float()


def make_optimizers(model, s: TrainSettings) -> list[torch.optim.Optimizer]:
    """AdamW (decoupled weight decay on matrices only); or Muon for hidden matrices with AdamW for the rest."""
    hidden, matrices, vectors = [], [], []
    for name, p in model.named_parameters():
        if p.ndim >= 2 and "embed" not in name and "lm_head" not in name:
            hidden.append(p)
        elif p.ndim >= 2:
            matrices.append(p)
        else:
            vectors.append(p)
    adam_kw = {"lr": s.lr, "betas": s.betas, "eps": s.eps}
    if s.optimizer == "adamw":
        groups = [
            {"params": hidden + matrices, "weight_decay": s.weight_decay},
            {"params": vectors, "weight_decay": 0.0},
        ]
        return [torch.optim.AdamW(groups, **adam_kw)]
    muon = torch.optim.Muon(hidden, lr=s.muon_lr or s.lr, weight_decay=s.weight_decay, adjust_lr_fn="match_rms_adamw")
    adam = torch.optim.AdamW(
        [{"params": matrices, "weight_decay": s.weight_decay}, {"params": vectors, "weight_decay": 0.0}],
        **adam_kw,
    )
    return [muon, adam]


def training_device(s: TrainSettings) -> torch.device:
    """The profile's device; on CUDA with deterministic kernels where CUDA has them (bit-identical reruns are
    promised on the CPU, at a pinned thread count)."""
    if s.device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise LmconvError(
            f"the profile trains on {s.device!r}, but this torch ({torch.__version__}) sees no CUDA device",
            "run it on a machine with a GPU and a CUDA build of torch, or train a CPU profile (default, smoke)",
        )
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.device(s.device)


@torch.no_grad()
def evaluate(model, windows: np.ndarray, precision: str = "fp32", batch: int = 32) -> float:
    """Mean next-token cross-entropy over ``windows``, the forward in the run's ``precision`` as its training steps
    (bf16: 0.51x the fp32 time at 1.1m and 0.42x at 2.5m, one thread on an AVX512-BF16 EPYC, 2026-12-06; the mean
    moved by under 1e-5 nats) and the loss in fp32."""
    model.eval()
    dev = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        x = torch.from_numpy(windows[i : i + batch]).to(dev)
        logits = _logits(model, x[:, :-1], precision).float()
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum"
        )
        total += float(loss)
        count += x[:, 1:].numel()
    model.train()
    return total / count


@torch.no_grad()
def layer_spectra(model) -> np.ndarray:
    """Singular values of every layer matrix (``neox.matrices`` order), as float32 ``(n_matrices, d)``."""
    mats = neox.matrices(model)
    return np.stack([torch.linalg.svdvals(w.detach()).cpu().numpy() for w in mats.values()])


def save_checkpoint(model, folder: Path, tokenizer_dir: Path) -> None:
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        for f in tokenizer_dir.iterdir():
            if f.is_file() and f.name not in ("manifest.json", "train_counts.npy", "streams.npz"):
                shutil.copy2(f, tmp / f.name)
        (tmp / "generation_config.json").unlink(missing_ok=True)
        sums = {f.name: sha256_file(f) for f in sorted(tmp.iterdir()) if f.is_file()}
        write_json(tmp / "checksums.json", sums)


class RunLog:
    """Per-step training log, validation losses and spectra records, kept in step with checkpoints."""

    def __init__(self) -> None:
        self.train: list[tuple[int, float, float, float]] = []  # (step, lr, loss, grad_norm)
        self.val: list[tuple[int, float]] = []
        self.spectra_steps: list[int] = []
        self.spectra: list[np.ndarray] = []

    def write(self, folder: Path, matrix_names: list[str]) -> None:
        _write_parquet(
            folder / "train_log.parquet",
            pd.DataFrame(self.train, columns=["step", "lr", "loss", "grad_norm"]),
        )
        _write_parquet(folder / "val_log.parquet", pd.DataFrame(self.val, columns=["step", "val_loss"]))
        if self.spectra:
            with atomic_path(folder / "spectra.npz") as tmp, open(tmp, "wb") as f:
                np.savez(
                    f,
                    steps=np.asarray(self.spectra_steps),
                    values=np.stack(self.spectra),
                    names=np.asarray(matrix_names),
                )

    @classmethod
    def read(cls, folder: Path, upto: int) -> RunLog:
        log = cls()
        if (folder / "train_log.parquet").exists():
            t = pd.read_parquet(folder / "train_log.parquet")
            log.train = [tuple(r) for r in t[t.step <= upto].itertuples(index=False)]
            log.train = [(int(a), float(b), float(c), float(d)) for a, b, c, d in log.train]
            v = pd.read_parquet(folder / "val_log.parquet")
            log.val = [(int(a), float(b)) for a, b in v[v.step <= upto].itertuples(index=False)]
        if (folder / "spectra.npz").exists():
            z = np.load(folder / "spectra.npz")
            keep = z["steps"] <= upto
            log.spectra_steps = [int(s) for s in z["steps"][keep]]
            log.spectra = list(z["values"][keep])
        return log


def _write_parquet(path: Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def _state_files(opts: list[torch.optim.Optimizer]) -> dict:
    return {f"optimizer{i}": o.state_dict() for i, o in enumerate(opts)}


@dataclass(frozen=True)
class RunSpec:
    """One run of a profile's suite: its arm, size and seed, in the suite folder ``root``."""

    profile: Profile
    arm: Arm
    size: Size
    seed: int
    root: Path

    @property
    def dir(self) -> Path:
        return self.root / format_run(self.arm.family, self.size.name, self.seed)

    @property
    def settings(self) -> TrainSettings:
        return self.arm.train

    @property
    def init_seed(self) -> int:
        """The seed of the initial weights: the arm's fixed ``init_seed``, else the run's seed."""
        return self.seed if self.settings.init_seed is None else int(self.settings.init_seed)

    @property
    def data_seed(self) -> int:
        """The seed of the batch order: the arm's fixed ``data_seed``, else the run's seed."""
        return self.seed if self.settings.data_seed is None else int(self.settings.data_seed)

    @cached_property
    def checkpoints(self) -> frozenset[int]:
        """The steps whose checkpoints the run keeps (the profile's schedule)."""
        return frozenset(self.profile.checkpoint_steps(self.arm.family))

    @cached_property
    def branch_points(self) -> frozenset[int]:
        """Steps where other arms branch off this run: their resume states are kept, in ``resume-step{N}``."""
        arms = self.profile.arms.values()
        return frozenset(int(b["step"]) for a in arms if (b := a.train.branch_from) and b["arm"] == self.arm.family)

    @property
    def cost(self) -> int:
        """A run's training work in relative units, to schedule parallel runs: the steps it trains (from its branch
        point, for a branched arm) times its weights (12·hidden² per layer, embedding and unembedding)."""
        start = self.branch_source[1] if self.branch_source else 0
        h = self.size.hidden
        return (self.settings.steps - start) * (12 * self.size.layers * h * h + 2 * self.profile.vocab_size * h)

    @property
    def branch_source(self) -> tuple[Path, int] | None:
        """The run this one branches from, and the step, for a branched arm."""
        b = self.settings.branch_from
        return (self.root / format_run(b["arm"], self.size.name, self.seed), int(b["step"])) if b else None


@dataclass(frozen=True)
class SavedState:
    """A resume state on disk: its step, its folder, and the run folder that holds the checkpoint of that step."""

    step: int
    folder: Path
    run_dir: Path

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / format_revision(self.step)


@dataclass
class Training:
    """A run in progress: model and optimizers at ``step``, the logs so far, and the wall time spent before."""

    model: torch.nn.Module
    opts: list[torch.optim.Optimizer]
    log: RunLog
    step: int
    spent: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    @cached_property
    def names(self) -> list[str]:
        return list(neox.matrices(self.model))

    def seconds(self) -> float:
        """Wall time spent training the run, this process and earlier ones together."""
        return self.spent + time.perf_counter() - self.started


def save_state(run_dir: Path, tr: Training) -> None:
    """Write the resume state of ``tr`` (optimizers, logs, step) to ``run_dir/resume`` in one rename."""
    with atomic_dir(run_dir / STATE_DIR) as tmp:
        torch.save(_state_files(tr.opts), tmp / "optimizer.pt")
        tr.log.write(tmp, tr.names)
        write_json(tmp / "state.json", {"step": tr.step})
        write_json(tmp / "timing.json", {"seconds": round(tr.seconds(), 1)})  # wall time so far (not deterministic)


def load_state(run_dir: Path) -> int | None:
    f = run_dir / STATE_DIR / "state.json"
    return read_json(f)["step"] if f.exists() else None


def state_complete(folder: Path, step: int) -> bool:
    """Whether ``folder`` holds a whole saved state, of ``step``."""
    files = ("state.json", "optimizer.pt", "train_log.parquet", "val_log.parquet")
    return all((folder / f).is_file() for f in files) and read_json(folder / "state.json").get("step") == step


def _branch_state_dir(run_dir: Path, step: int) -> Path:
    return run_dir / f"{STATE_DIR}-step{step}"


def _keep_branch_state(run_dir: Path, step: int) -> None:
    """Copy the resume state of ``step`` to ``resume-step{step}``, where branched arms start, in one rename."""
    with atomic_dir(_branch_state_dir(run_dir, step)) as tmp:
        shutil.copytree(run_dir / STATE_DIR, tmp, dirs_exist_ok=True)


def verify_checkpoint(folder: Path, why: str, fix: str) -> None:
    """Raise unless ``folder`` holds safetensors weights and a config whose bytes match its ``checksums.json``."""
    sums = read_json(folder / "checksums.json") if (folder / "checksums.json").is_file() else {}
    for name in dict.fromkeys(("checksums.json", "config.json", "model.safetensors", *sums)):
        f = folder / name
        if not f.is_file():
            problem = f"{f} is missing"
        elif name != "checksums.json" and name not in sums:
            problem = f"{f} is not recorded in {folder / 'checksums.json'}"
        elif name != "checksums.json" and sha256_file(f) != sums[name]:
            problem = f"{f} does not match its recorded sha256 (corrupt or truncated)"
        else:
            continue
        raise LmconvError(f"{problem}; {why}", fix)


def _checkpoint_present(folder: Path) -> bool:
    """Whether ``folder`` holds a written checkpoint: its ``checksums.json`` and every file it lists (unhashed)."""
    try:
        sums = read_json(folder / "checksums.json")
    except (OSError, ValueError):
        return False
    return all((folder / name).is_file() for name in sums)


def missing_checkpoints(run: RunSpec) -> list[int]:
    """The scheduled checkpoint steps of ``run`` that are not on disk."""
    return sorted(s for s in run.checkpoints if not _checkpoint_present(run.dir / format_revision(s)))


def broken_branch_points(run: RunSpec) -> list[int]:
    """Branch points of ``run`` whose saved state is lost or incomplete (rebuilt by training past them again)."""
    return sorted(k for k in run.branch_points if not state_complete(_branch_state_dir(run.dir, k), k))


def run_complete(run: RunSpec) -> bool:
    """Whether ``run`` is finished with every scheduled checkpoint and every kept branch state on disk."""
    return run_finished(run.dir) and not missing_checkpoints(run) and not broken_branch_points(run)


def _own_states(run: RunSpec) -> list[SavedState]:
    """The run's saved states: its latest (``resume``) and those kept at branch points, latest first."""
    states = [
        SavedState(k, _branch_state_dir(run.dir, k), run.dir)
        for k in run.branch_points
        if state_complete(_branch_state_dir(run.dir, k), k)
    ]
    if (step := load_state(run.dir)) is not None:
        states.append(SavedState(step, run.dir / STATE_DIR, run.dir))
    return sorted(states, key=lambda st: (-st.step, st.folder.name != STATE_DIR))


def _branch_start(run: RunSpec, limit: float) -> SavedState:
    """The state a branched arm starts from: its source run's, at the branch point (which must be whole)."""
    src_run, step = run.branch_source
    folder = _branch_state_dir(src_run, step)
    if step >= limit:
        problem = f"shares the checkpoints up to step {step} with {src_run.name}, which lacks some of them"
    elif not state_complete(folder, step):
        problem = f"branches from {src_run.name} at step {step}, which has no complete saved state ({folder})"
    else:
        return SavedState(step, folder, src_run)
    raise LmconvError(
        f"arm {run.arm.family} {problem}",
        f"train that run first (it rebuilds the state): lmconv train --profile {run.profile.name} "
        f"--arms {run.settings.branch_from['arm']}",
    )


def choose_start(run: RunSpec) -> SavedState | None:
    """The latest saved state ``run`` can go on from (None: step 0): one before its first missing checkpoint and
    not past a lost branch point, so that training from it writes every missing file again."""
    missing, broken = missing_checkpoints(run), broken_branch_points(run)
    limit = min([*missing, *(k + 1 for k in broken)], default=math.inf)
    usable = [st for st in _own_states(run) if st.step < limit]
    start = usable[0] if usable else _branch_start(run, limit) if run.branch_source else None
    _report_repair(run, missing, broken, start)
    return start


def _report_repair(run: RunSpec, missing: list[int], broken: list[int], start: SavedState | None) -> None:
    """Say so when a finished run, or one with a gap before its last checkpoint, is trained again."""
    reached = math.inf if run_finished(run.dir) else max(run.checkpoints.difference(missing), default=-1)
    lost = [f"checkpoint {format_revision(m)}" for m in missing if m < reached]
    lost += [f"the saved state of branch point {k}" for k in broken if k < reached]
    if not lost:
        return
    where = f"the saved state of step {start.step}" if start else "step 0 (no saved state before the gap is kept)"
    tqdm.write(f"{run.dir.name}: {', '.join(lost)} missing; training it again from {where}", file=sys.stderr)


def resume_training(run: RunSpec, state: SavedState, dev: torch.device) -> Training:
    """The model, optimizers and logs of ``state``, after checking the checkpoint it starts from."""
    from transformers import GPTNeoXForCausalLM

    fix = (
        f"delete {state.folder} and rerun `lmconv train`: the run that state belongs to then trains again from an "
        "earlier saved state (or from step 0) and writes the same checkpoints"
    )
    verify_checkpoint(state.checkpoint, f"the saved state {state.folder} resumes from that checkpoint", fix)
    try:
        model = GPTNeoXForCausalLM.from_pretrained(str(state.checkpoint), dtype=torch.float32, use_safetensors=True)
        model = model.to(dev)
        opts = make_optimizers(model, run.settings)
        saved = torch.load(state.folder / "optimizer.pt", weights_only=True, map_location=dev)
        for i, o in enumerate(opts):
            o.load_state_dict(saved[f"optimizer{i}"])
        log = RunLog.read(state.folder, state.step)
    except Exception as e:  # weights that match their checksums but do not load, or a damaged state
        raise LmconvError(f"cannot resume from {state.checkpoint} with the state in {state.folder}: {e}", fix) from e
    timing = state.folder / "timing.json"
    own = state.run_dir == run.dir  # a branched arm's time counts from its branch point
    spent = float(read_json(timing)["seconds"]) if own and timing.exists() else 0.0
    if state.folder == run.dir / STATE_DIR and state.step in run.branch_points:
        _keep_branch_state(run.dir, state.step)  # the kill may have come while it was being copied
    return Training(model, opts, log, state.step, spent)


def fresh_training(run: RunSpec, dev: torch.device) -> Training:
    """A new model (initialised by the run's initialisation seed) with fresh optimizers, at step 0."""
    model = init_model(run.profile, run.size, run.init_seed).to(dev)
    return Training(model, make_optimizers(model, run.settings), RunLog(), 0)


def train_run(run: RunSpec, data: TrainData, progress: bool = True) -> Path:
    """Train one run to its last step, resuming from its last complete checkpoint. Returns the run folder.

    A finished run with a scheduled checkpoint (or a kept branch state) missing trains again from the latest
    saved state before the gap, or from step 0. One process at a time per run: a second one stops with an
    error naming the first (a lock in the run folder)."""
    with exclusive_lock(run.dir / ".lock", f"run {run.dir}"):
        _train_run(run, data, progress)
    return run.dir


def _train_run(run: RunSpec, data: TrainData, progress: bool) -> None:
    torch.set_num_threads(run.settings.threads)
    dev = training_device(run.settings)
    remove_stale_temporaries(run.dir)
    if run.branch_source:
        src_run, step = run.branch_source
        _link_checkpoints(src_run, run.dir, [c for c in run.checkpoints if c <= step])
    if run_complete(run):
        shutil.rmtree(run.dir / STATE_DIR, ignore_errors=True)  # in case the kill came just before this
        return
    state = choose_start(run)
    tr = resume_training(run, state, dev) if state else fresh_training(run, dev)
    _train_steps(run, data, tr, progress)


def _train_steps(run: RunSpec, data: TrainData, tr: Training, progress: bool) -> None:
    """Train from ``tr.step`` to the run's last step, recording and writing checkpoints on the way."""
    final = run.settings.steps
    tr.model.train()
    if tr.step == 0:
        _record(run, data, tr)
    bar = tqdm(
        total=final,
        initial=tr.step,
        desc=run.dir.name,
        unit="step",
        disable=not progress,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
        dynamic_ncols=True,
    )
    with _deterministic(step_compiler(run.settings) is not None):
        while tr.step < final:
            loss = _train_step(run, data, tr)
            _record(run, data, tr)
            bar.update(1)
            if tr.step % 50 == 0:
                bar.set_postfix(loss=f"{loss:.3f}", val=f"{tr.log.val[-1][1]:.3f}", refresh=False)
    bar.close()


@contextlib.contextmanager
def _deterministic(on: bool):
    """Deterministic algorithms for the block where ``on``: a compiled step then scatters the embedding's gradient
    with the eager kernel instead of inductor's atomic adds, which sum in another order at every step on 2 threads
    (measured: the embedding's gradient differed between two runs of the same step). Inductor reads the flag when
    it compiles, at the first forward and at the first backward, both inside the block."""
    before, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    if on:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn)


def _train_step(run: RunSpec, data: TrainData, tr: Training) -> float:
    """One optimizer step (learning rate from the schedule, batch from the data seed and step); returns the loss."""
    s, step = run.settings, tr.step
    lr_mult = s.schedule.multiplier(step, s.steps)
    for o in tr.opts:
        for g in o.param_groups:
            g["lr"] = ((s.muon_lr or s.lr) if isinstance(o, torch.optim.Muon) else s.lr) * lr_mult
    x = data.batch(run.data_seed, step, s.batch_size).to(next(tr.model.parameters()).device)
    out = step_loss(s)(tr.model, x, s.precision)
    out.backward()
    gn = torch.nn.utils.clip_grad_norm_(tr.model.parameters(), s.grad_clip if s.grad_clip > 0 else float("inf"))
    for o in tr.opts:
        o.step()
        o.zero_grad(set_to_none=True)
    tr.step = step + 1
    loss = float(out.detach())
    tr.log.train.append((tr.step, s.lr * lr_mult, loss, float(gn)))
    return loss


def _record(run: RunSpec, data: TrainData, tr: Training) -> None:
    """What step ``tr.step`` records: validation loss, spectra, and the checkpoint where one is scheduled."""
    _record_validation(run, data, tr)
    _record_spectra(run, tr)
    if tr.step in run.checkpoints:
        _write_checkpoint(run, data, tr)


def _record_validation(run: RunSpec, data: TrainData, tr: Training) -> None:
    val, step = tr.log.val, tr.step
    if (step % max(run.settings.val_every, 1) == 0 or step in run.checkpoints) and (not val or val[-1][0] != step):
        val.append((step, evaluate(tr.model, data.val_windows, run.settings.precision)))


def _record_spectra(run: RunSpec, tr: Training) -> None:
    every, log = run.settings.spectra_every, tr.log
    if every and tr.step % every == 0 and (not log.spectra_steps or log.spectra_steps[-1] != tr.step):
        log.spectra_steps.append(tr.step)
        log.spectra.append(layer_spectra(tr.model))


def _write_checkpoint(run: RunSpec, data: TrainData, tr: Training) -> None:
    """The weights of ``tr.step``, then its resume state (or, at the last step, the run's logs and ``run.json``)."""
    save_checkpoint(tr.model, run.dir / format_revision(tr.step), data.tokenizer_dir)
    if tr.step == run.settings.steps:
        finish_run(run, tr)
    else:
        save_state(run.dir, tr)
    if tr.step in run.branch_points:
        _keep_branch_state(run.dir, tr.step)


def finish_run(run: RunSpec, tr: Training) -> None:
    """Write the run's logs, then ``run.json`` (last: the run counts as finished once it exists), then drop the
    resume state."""
    s = run.settings
    tr.log.write(run.dir, tr.names)
    write_json(
        run.dir / RUN_FINISHED,
        {
            "steps": s.steps,
            "train_seconds": round(tr.seconds(), 1),
            "threads": s.threads,
            "precision": s.precision,
            "compiled": step_compiler(s),
            "init_seed": run.init_seed,
            "data_seed": run.data_seed,
            "tokens": s.steps * s.batch_size * run.profile.context,
        },
    )
    shutil.rmtree(run.dir / STATE_DIR, ignore_errors=True)


def _link_checkpoints(src_run: Path, dst_run: Path, steps: list[int]) -> None:
    """A branched arm shares its history with the arm it branches from: hard-link those checkpoints."""
    for step in sorted(steps):
        src, dst = src_run / format_revision(step), dst_run / format_revision(step)
        if _checkpoint_present(dst) or not (src / "checksums.json").exists():
            continue
        with atomic_dir(dst) as tmp:
            for f in src.iterdir():
                try:
                    os.link(f, tmp / f.name)
                except OSError:
                    shutil.copy2(f, tmp / f.name)


# The attention a bf16 training step uses, per device type (others keep the model's own, sdpa). On the CPU the
# fused sdpa kernel's backward is slower in bf16 than in fp32, and the plain matrix products of "eager" attention
# (autocast to bf16, softmax in fp32) beat both: a step took 0.83-0.93x the time of one with bf16 sdpa, against
# 0.89-0.92x with sdpa upcast to fp32 inside the step (three paired runs per size of the default profile, 2 threads,
# alternating blocks of 5 steps). It is no setting of the model: config.json is the same in both precisions.
BF16_ATTENTION = {"cpu": "eager"}


@contextlib.contextmanager
def _attention(model, implementation: str | None):
    """Run the block with the model's attention set to ``implementation`` (None: unchanged), then restore it."""
    before = model.config._attn_implementation
    if implementation:
        model.config._attn_implementation = implementation
    try:
        yield
    finally:
        model.config._attn_implementation = before


def _logits(model, x: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """The model's logits over ``x``, its matrix products in ``precision`` (bf16: under autocast, with the attention
    of :data:`BF16_ATTENTION`)."""
    if precision == "fp32":
        return model(x).logits
    with torch.autocast(x.device.type, dtype=torch.bfloat16), _attention(model, BF16_ATTENTION.get(x.device.type)):
        return model(x).logits


def _lm_loss(model, x: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """Next-token cross-entropy of ``x``; the forward in ``precision``, the loss always in fp32 (outside autocast,
    so the backward that follows runs outside it too)."""
    logits = _logits(model, x[:, :-1], precision).float()  # a no-op in fp32
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))


_COMPILED: dict[str, object] = {}


def step_loss(s: TrainSettings):
    """The function a training step of ``s`` computes its loss with: :func:`_lm_loss`, compiled where
    :func:`~lmconv.training.profiles.step_compiler` says (static shapes, so the kernels of a run do not depend on
    the shapes an earlier run in the same process saw; one compilation per model shape, and past 64 an error
    rather than the eager step dynamo falls back to, which would round differently)."""
    compiler = step_compiler(s)
    if compiler is None:
        return _lm_loss
    if compiler not in _COMPILED:
        check_compiler(s)
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        torch._dynamo.config.fail_on_recompile_limit_hit = True
        _COMPILED[compiler] = torch.compile(_lm_loss, backend=compiler, dynamic=False)
    return _COMPILED[compiler]


def check_compiler(s: TrainSettings) -> None:
    """A compiled step needs inductor's C++ compiler on the PATH: a clear error before training if it is missing."""
    if step_compiler(s) != "inductor":
        return
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        found = shutil.which(get_cpp_compiler())
    except Exception:  # inductor raises when neither $CXX nor any compiler it knows is found
        found = None
    if not found:
        raise LmconvError(
            f"a {s.precision} training step on the {s.device} is compiled by torch.compile, which needs a C++ "
            "compiler, and none was found ($CXX, g++)",
            f"install one (as root, scripts/setup.sh installs g++), or train in fp32: {PRECISION_ENV}=fp32",
        )


def arm_order(profile: Profile) -> list[Arm]:
    """Arms sorted so that an arm comes after the arm it branches from."""
    done: list[Arm] = []
    pending = list(profile.arms.values())
    while pending:
        for a in pending:
            b = a.train.branch_from
            if not b or any(d.family == b["arm"] for d in done):
                done.append(a)
                pending.remove(a)
                break
        else:
            raise LmconvError(f"profile {profile.name}: branch_from arms form a cycle or name a missing arm")
    return done


def suite_info(profile: Profile, data: TrainData) -> dict:
    return {
        "profile": profile.name,
        "profile_sha256": profile.sha256,
        "tokenizer": read_json(data.tokenizer_dir / "manifest.json"),
        "corpus": corpus.manifest(profile.corpus)["splits"],
        "torch": torch.__version__,
        "threads": {a.family: a.train.threads for a in profile.arms.values()},
        "precision": {a.family: a.train.precision for a in profile.arms.values()},
    }


def record_suite(root: Path, profile: Profile, data: TrainData) -> None:
    """Write ``suite.json`` and ``profile.json`` for a suite about to be trained. A suite that holds checkpoints
    from another version of the profile is refused; one with none yet (its first run stopped before writing
    step 0, e.g. on a bad size) takes the new version."""
    info = suite_info(profile, data)
    if (root / "suite.json").exists() and any(root.glob("*/step*/checksums.json")):
        old = read_json(root / "suite.json")
        if old["profile_sha256"] != info["profile_sha256"] and old.get("precision", {}) != info["precision"]:
            raise LmconvError(
                f"the suite in {root} was trained in {_precision_words(old.get('precision', {}))}, but profile "
                f"{profile.name!r} trains in {_precision_words(info['precision'])} here (precision: auto follows the "
                "machine: bf16 where it multiplies bf16 matrices natively)",
                f"finish it in its own precision ({PRECISION_ENV}=bf16 or fp32), delete {root} to retrain "
                "it, or set LMCONV_HOME to another folder",
            )
        if old["profile_sha256"] != info["profile_sha256"]:
            raise LmconvError(
                f"the suite in {root} was trained from a different version of profile {profile.name!r}",
                f"delete {root} to retrain it, or set LMCONV_HOME to another folder",
            )
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / "suite.json", info)
    write_text(root / "profile.json", json.dumps(profile.raw, indent=1, sort_keys=True) + "\n")


def _precision_words(by_arm: dict[str, str]) -> str:
    values = sorted(set(by_arm.values()))
    return " and ".join(values) if values else "fp32"


def train_profile(
    profile: Profile,
    arms: list[str] | None = None,
    sizes: list[str] | None = None,
    seeds: list[int] | None = None,
    progress: bool = True,
    jobs: int | None = None,
) -> Path:
    """Train (or finish) every run of the profile; return the suite root ``{data}/suites/{profile}``.

    ``jobs`` (default: the profile's) > 1 trains up to that many runs at once, each in a process of its own
    (spawned) at the profile's own thread count, so every file is the one training them one after another writes.
    A run of a branched arm starts once the run it branches from is finished; the first run that fails stops the
    others, with its error. (A script that calls this with ``jobs`` > 1 needs the ``if __name__ == "__main__":``
    guard that spawned processes need; ``lmconv train --jobs N``, notebooks and tests do not.)"""
    for kind, values in (("arm", arms), ("size", sizes), ("seed", seeds)):
        no_repeats(kind, values or [], f"list each {kind} once (--{kind}s)")
    for name in sizes or []:
        profile.size(name)
    for k in seeds or []:
        if k not in profile.seeds:
            raise LmconvError(f"seed {k} is not in profile {profile.name} (seeds {list(profile.seeds)})")
    jobs = profile.jobs if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise LmconvError(f"jobs must be a whole number ≥ 1, got {jobs!r}", "pass --jobs 1 (one run at a time) or more")
    if bundle := paths.tables_bundle():
        raise LmconvError(
            f"{paths.TABLES_ENV}={bundle} is set (tables mode reads a release bundle and trains nothing)",
            f"unset {paths.TABLES_ENV} to train the {profile.name!r} suite here",
        )
    for arm in profile.arms.values():
        training_device(arm.train)  # a GPU profile on a machine without one stops before anything is written
        check_compiler(arm.train)
    root = paths.suite_dir(profile.name)
    data = prepare_data(profile)
    record_suite(root, profile, data)
    t0 = time.time()
    runs = selected_runs(profile, root, arms, sizes, seeds)
    if jobs == 1 or len(runs) < 2:
        for run in runs:
            train_run(run, data, progress)
    else:
        _train_in_parallel(runs, data, progress, jobs)
    timing = root / "timing.json"
    with contextlib.suppress(Exception):
        prev = read_json(timing) if timing.exists() else {}
        prev[time.strftime("%Y-%m-%dT%H:%M:%S")] = round(time.time() - t0, 1)
        write_json(timing, prev)
    return root


def selected_runs(
    profile: Profile, root: Path, arms: list[str] | None, sizes: list[str] | None, seeds: list[int] | None
) -> list[RunSpec]:
    """The runs to train, in training order: arms after the arm they branch from (which counts as selected with
    them), then sizes, then seeds."""
    out = []
    for arm in arm_order(profile):
        if (
            arms
            and arm.family not in arms
            and not any((b := profile.arms[a].train.branch_from) and b["arm"] == arm.family for a in arms)
        ):
            continue
        for size_name in sizes or list(profile.sizes):
            for seed in seeds or list(profile.seeds):
                out.append(RunSpec(profile, arm, profile.sizes[size_name], seed, root))
    return out


def _end_with_parent(parent: int) -> None:
    """A training worker's initializer: end the worker once the process that started it is gone (stopped by a
    signal, even SIGKILL, which no handler sees), so no run goes on writing on its own; a rerun resumes it."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


def _train_in_parallel(runs: list[RunSpec], data: TrainData, progress: bool, jobs: int) -> None:
    """Train ``runs`` in up to ``jobs`` spawned processes, the costliest ready one first (``RunSpec.cost``), each
    once the run it branches from is done. The first error stops the rest (their workers are ended; a rerun
    resumes them) and is raised here."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    selected = {r.dir for r in runs}
    waits_for = {r.dir: src for r in runs if r.branch_source and (src := r.branch_source[0]) in selected}
    waiting, running, done = list(runs), {}, set()
    pool = ProcessPoolExecutor(
        min(jobs, len(runs)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_end_with_parent,
        initargs=(os.getpid(),),
    )
    try:
        while waiting or running:
            ready = [r for r in waiting if r.dir not in waits_for or waits_for[r.dir] in done]
            for run in sorted(ready, key=lambda r: -r.cost):  # the longest first: the last runs end together
                if len(running) == jobs:
                    break
                waiting.remove(run)
                running[pool.submit(train_run, run, data, progress)] = run
            if not running:  # cannot happen: arm_order puts every parent first
                raise RuntimeError(f"runs wait for one another: {[r.dir.name for r in waiting]}")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                run = running.pop(f)
                f.result()  # the worker's error, raised in this process
                done.add(run.dir)
    except BaseException:
        for proc in list(getattr(pool, "_processes", {}).values()):  # the others' runs resume on a rerun
            proc.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
