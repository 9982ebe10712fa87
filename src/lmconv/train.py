"""Training a profile's suite: GPT-NeoX models × arms × sizes × seeds, deterministic and resumable.

The seed sets both the initialisation and the data order (as in the PolyPythias): the batch of step ``t`` is
drawn by a generator seeded with ``(seed, t)``, so it needs no saved RNG state. At every checkpoint step the
weights are written (``save_pretrained``, safetensors) into ``step{N}/`` by an atomic rename, then the resume
state (optimizer state and logs up to that step) likewise. Rerunning the command after a kill continues from
the last complete checkpoint and ends with files identical to an uninterrupted run (at the same thread count).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import transformers
from tqdm import tqdm  # text bars (tqdm.auto warns in notebooks without ipywidgets)

from . import corpus, neox, paths
from . import tokenizer as tok_mod
from .errors import LmconvError, no_repeats
from .io import (
    atomic_dir,
    atomic_path,
    exclusive_lock,
    read_json,
    remove_stale_temporaries,
    sha256_file,
    write_json,
    write_text,
)
from .profiles import ROTARY_PCT, Arm, Profile, Size, TrainSettings
from .suites import RUN_FINISHED, format_revision, format_run, run_finished

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
def evaluate(model, windows: np.ndarray, batch: int = 32) -> float:
    model.eval()
    dev = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        x = torch.from_numpy(windows[i : i + batch]).to(dev)
        logits = model(x[:, :-1]).logits.float()
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


def save_state(
    run_dir: Path, step: int, opts: list[torch.optim.Optimizer], log: RunLog, names: list[str], seconds: float
) -> None:
    with atomic_dir(run_dir / STATE_DIR) as tmp:
        torch.save(_state_files(opts), tmp / "optimizer.pt")
        log.write(tmp, names)
        write_json(tmp / "state.json", {"step": step})
        write_json(tmp / "timing.json", {"seconds": round(seconds, 1)})  # wall time so far (not deterministic)


def load_state(run_dir: Path) -> int | None:
    f = run_dir / STATE_DIR / "state.json"
    return read_json(f)["step"] if f.exists() else None


def state_complete(folder: Path, step: int) -> bool:
    """Whether ``folder`` holds a whole saved state, of ``step``."""
    files = ("state.json", "optimizer.pt", "train_log.parquet", "val_log.parquet")
    return all((folder / f).is_file() for f in files) and read_json(folder / "state.json").get("step") == step


def _keep_branch_state(run_dir: Path, step: int) -> None:
    """Copy the resume state of ``step`` to ``resume-step{step}``, where branched arms start, in one rename."""
    with atomic_dir(run_dir / f"{STATE_DIR}-step{step}") as tmp:
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


def train_run(
    profile: Profile, arm: Arm, size: Size, seed: int, data: TrainData, root: Path, progress: bool = True
) -> Path:
    """Train one run to its last step, resuming from its last complete checkpoint. Returns the run folder.

    One process at a time per run: a second one stops with an error naming the first (a lock in the run folder)."""
    run_dir = root / format_run(arm.family, size.name, seed)
    with exclusive_lock(run_dir / ".lock", f"run {run_dir}"):
        _train_run(profile, arm, size, seed, data, root, run_dir, progress)
    return run_dir


def _train_run(
    profile: Profile, arm: Arm, size: Size, seed: int, data: TrainData, root: Path, run_dir: Path, progress: bool
) -> None:
    s = arm.train
    torch.set_num_threads(s.threads)
    dev = training_device(s)
    remove_stale_temporaries(run_dir)
    ckpt_steps = set(profile.checkpoint_steps(arm.family))
    keep_state = {
        int(b["step"]) for a in profile.arms.values() if (b := a.train.branch_from) and b["arm"] == arm.family
    }
    # a branch point lost to a kill (or never written) is rebuilt by training this run past it again
    broken = {k for k in keep_state if not state_complete(run_dir / f"{STATE_DIR}-step{k}", k)}
    final = s.steps
    if run_finished(run_dir) and (run_dir / format_revision(final) / "checksums.json").exists() and not broken:
        shutil.rmtree(run_dir / STATE_DIR, ignore_errors=True)  # in case the kill came just before this
        return

    start = load_state(run_dir)
    if start is not None and any(k < start for k in broken):
        start = None  # the lost branch point lies behind the resume state: train again from step 0
    src_dir = run_dir
    if start is None and s.branch_from:
        src_dir = root / format_run(s.branch_from["arm"], size.name, seed)
        start = int(s.branch_from["step"])
        if not state_complete(src_dir / f"{STATE_DIR}-step{start}", start):
            raise LmconvError(
                f"arm {arm.family} branches from {src_dir.name} at step {start}, which has no complete saved state "
                f"({src_dir / f'{STATE_DIR}-step{start}'})",
                f"train that run first (it rebuilds the state): lmconv train --profile {profile.name} "
                f"--arms {s.branch_from['arm']}",
            )
    if start is not None and src_dir != run_dir:
        _link_checkpoints(src_dir, run_dir, [c for c in ckpt_steps if c <= start])
    if start is not None:
        from transformers import GPTNeoXForCausalLM

        state_dir = run_dir / STATE_DIR if src_dir == run_dir else src_dir / f"{STATE_DIR}-step{start}"
        ckpt = src_dir / format_revision(start)
        fix = (
            f"delete {state_dir} and rerun `lmconv train`: the run that state belongs to then trains again from its "
            "start and writes the same checkpoints"
        )
        verify_checkpoint(ckpt, f"the saved state {state_dir} resumes from that checkpoint", fix)
        try:
            model = GPTNeoXForCausalLM.from_pretrained(str(ckpt), dtype=torch.float32, use_safetensors=True)
            model = model.to(dev)
            opts = make_optimizers(model, s)
            state = torch.load(state_dir / "optimizer.pt", weights_only=True, map_location=dev)
            for i, o in enumerate(opts):
                o.load_state_dict(state[f"optimizer{i}"])
            log = RunLog.read(state_dir, start)
        except Exception as e:  # weights that match their checksums but do not load, or a damaged state
            raise LmconvError(f"cannot resume from {ckpt} with the state in {state_dir}: {e}", fix) from e
        timing = state_dir / "timing.json"
        spent = float(read_json(timing)["seconds"]) if src_dir == run_dir and timing.exists() else 0.0
        if src_dir == run_dir and start in keep_state:
            _keep_branch_state(run_dir, start)  # the kill may have come while it was being copied
    else:
        model = init_model(profile, size, seed).to(dev)
        opts = make_optimizers(model, s)
        start, log, spent = 0, RunLog(), 0.0
    names = list(neox.matrices(model))

    t_start = time.perf_counter()

    def record(step: int) -> None:
        if (step % max(s.val_every, 1) == 0 or step in ckpt_steps) and (not log.val or log.val[-1][0] != step):
            log.val.append((step, evaluate(model, data.val_windows)))
        if s.spectra_every and step % s.spectra_every == 0 and (not log.spectra_steps or log.spectra_steps[-1] != step):
            log.spectra_steps.append(step)
            log.spectra.append(layer_spectra(model))
        if step in ckpt_steps:
            save_checkpoint(model, run_dir / format_revision(step), data.tokenizer_dir)
            seconds = spent + time.perf_counter() - t_start
            if step == final:
                log.write(run_dir, names)
                write_json(  # last: the run counts as finished once this exists (suites.run_finished)
                    run_dir / RUN_FINISHED,
                    {
                        "steps": final,
                        "train_seconds": round(seconds, 1),
                        "threads": s.threads,
                        "tokens": final * s.batch_size * profile.context,
                    },
                )
                shutil.rmtree(run_dir / STATE_DIR, ignore_errors=True)
            else:
                save_state(run_dir, step, opts, log, names, seconds)
            if step in keep_state:
                _keep_branch_state(run_dir, step)

    model.train()
    if start == 0:
        record(0)
    bar = tqdm(
        total=final,
        initial=start,
        desc=f"{arm.family}-{size.name}-seed{seed}",
        unit="step",
        disable=not progress,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
        dynamic_ncols=True,
    )
    for step in range(start, final):
        lr_mult = s.schedule.multiplier(step, final)
        for o in opts:
            for g in o.param_groups:
                g["lr"] = ((s.muon_lr or s.lr) if isinstance(o, torch.optim.Muon) else s.lr) * lr_mult
        x = data.batch(seed, step, s.batch_size).to(dev)
        loss = _lm_loss(model, x)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip if s.grad_clip > 0 else float("inf"))
        for o in opts:
            o.step()
            o.zero_grad(set_to_none=True)
        log.train.append((step + 1, s.lr * lr_mult, float(loss.detach()), float(gn)))
        record(step + 1)
        bar.update(1)
        if (step + 1) % 50 == 0:
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", val=f"{log.val[-1][1]:.3f}", refresh=False)
    bar.close()


def _link_checkpoints(src_run: Path, dst_run: Path, steps: list[int]) -> None:
    """A branched arm shares its history with the arm it branches from: hard-link those checkpoints."""
    for step in sorted(steps):
        src, dst = src_run / format_revision(step), dst_run / format_revision(step)
        if dst.exists() or not (src / "checksums.json").exists():
            continue
        with atomic_dir(dst) as tmp:
            for f in src.iterdir():
                try:
                    os.link(f, tmp / f.name)
                except OSError:
                    shutil.copy2(f, tmp / f.name)


def _lm_loss(model, x: torch.Tensor) -> torch.Tensor:
    logits = model(x[:, :-1]).logits
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))


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
    }


def train_profile(
    profile: Profile,
    arms: list[str] | None = None,
    sizes: list[str] | None = None,
    seeds: list[int] | None = None,
    progress: bool = True,
) -> Path:
    """Train (or finish) every run of the profile; return the suite root ``{data}/suites/{profile}``."""
    for kind, values in (("arm", arms), ("size", sizes), ("seed", seeds)):
        no_repeats(kind, values or [], f"list each {kind} once (--{kind}s)")
    for name in sizes or []:
        profile.size(name)
    for k in seeds or []:
        if k not in profile.seeds:
            raise LmconvError(f"seed {k} is not in profile {profile.name} (seeds {list(profile.seeds)})")
    for arm in profile.arms.values():
        training_device(arm.train)  # a GPU profile on a machine without one stops before anything is written
    root = paths.suite_dir(profile.name)
    data = prepare_data(profile)
    info = suite_info(profile, data)
    if (root / "suite.json").exists():
        old = read_json(root / "suite.json")
        if old["profile_sha256"] != info["profile_sha256"]:
            raise LmconvError(
                f"the suite in {root} was trained from a different version of profile {profile.name!r}",
                f"delete {root} to retrain it, or set LMCONV_HOME to another folder",
            )
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / "suite.json", info)
    write_text(root / "profile.json", json.dumps(profile.raw, indent=1, sort_keys=True) + "\n")
    t0 = time.time()
    for arm in arm_order(profile):
        if (
            arms
            and arm.family not in arms
            and not any((b := profile.arms[a].train.branch_from) and b["arm"] == arm.family for a in arms)
        ):
            continue
        for size_name in sizes or list(profile.sizes):
            for seed in seeds or list(profile.seeds):
                train_run(profile, arm, profile.sizes[size_name], seed, data, root, progress)
    timing = root / "timing.json"
    with contextlib.suppress(Exception):
        prev = read_json(timing) if timing.exists() else {}
        prev[time.strftime("%Y-%m-%dT%H:%M:%S")] = round(time.time() - t0, 1)
        write_json(timing, prev)
    return root
