"""``make bench``: the performance targets measured in one run, printed as ratios and written to
``{data}/bench/latest.json``, whose summary and missed goals :mod:`lmconv.book.bench_report` states (the status
page shows them). It lives beside the package: ``python -m benchmarks.bench`` from the checkout.

1. all-pairs KL, batched (the engine's path), in passes over the block of log-probs and vs the anchor's per-pair loop;
2. the whole analysis of checkpoints vs its floor (their forward passes and the gradient batch's backward),
   with load counts;
3. bytes stored per analysed checkpoint vs the anchor's 469 MB;
4. training throughput per size and precision (tokens/s, GFLOP/s) vs this machine's dense matmul rate in that
   precision, the bf16 step time over the fp32 one, and training all seeds of a size at once (stacked with
   ``torch.func.vmap``) vs one after another, and a short suite trained the profile's way (``jobs`` runs at once
   at its thread count) vs one run at a time on every core;
5. a warm rebuild of the book with nothing changed.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from lmconv import book, paths
from lmconv.book.bench_report import GOALS, gap_causes, results_file
from lmconv.findings import papers
from lmconv.io import write_json


def _child(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (clean peak-memory reading); it prints one JSON line."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


KL_CASE = """
import json, resource, time, torch
from lmconv.metrics import kl
torch.manual_seed(0)
S, V, n, method = {S}, {V}, {n}, "{method}"
# the anchor stored log-softmax rows over the padded output width (50,304 for a 50,277-token vocabulary)
raw = torch.log_softmax(torch.randn(n, V + 27) * 2 + 0.3 * torch.randn(S, n, V + 27), -1)
lp32 = torch.log_softmax(raw[..., :V], -1)
lp64 = lp32.double()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
def run():
    if method == "anchor":  # seeds_kl_torch.py: per ordered pair, truncate, re-normalise, then sum p (lp - lq)
        out = torch.zeros(S, S, n)
        for i in range(S):
            for j in range(S):
                if i != j:
                    a = torch.log_softmax(raw[i, :, :V], -1)
                    b = torch.log_softmax(raw[j, :, :V], -1)
                    out[i, j] = (a.exp() * (a - b)).sum(-1)
        return out
    if method == "loop":  # per ordered pair over the same (already normalised) log-probs
        return kl.pairwise_kl_loop(lp32)
    if method == "pass":  # one elementwise pass over the float64 log-probs: the floor of any method reading them
        return lp64.exp()
    return kl.all_pairs_kl(lp64 if method == "batched64" else lp32)
run()
# best of the repetitions within 1.5 s (at least 3), as timeit does: a shared machine only ever adds time
times, t0 = [], time.perf_counter()
while time.perf_counter() - t0 < 1.5 or len(times) < 3:
    t = time.perf_counter(); run(); times.append(time.perf_counter() - t)
dt = min(times)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
print(json.dumps({{"seconds": dt, "peak_extra_mb": peak / 1024, "input_mb": lp32.numel() * 4 / 2**20}}))
"""


METHODS = ("anchor", "loop", "batched64", "batched32", "pass")


def bench_kl(seeds=(4, 5, 10), vocabs=(8192, 50304), n: int = 256) -> list[dict]:
    """Best seconds per block of ``n`` tokens for each method, each in a fresh process (peak memory above inputs)."""
    rows = []
    for v in vocabs:
        for s in seeds:
            res = {m: _child(KL_CASE.format(S=s, V=v, n=n, method=m)) for m in METHODS}
            row = {"seeds": s, "vocab": v, "tokens": n, "input_mb": res["loop"].get("input_mb")}
            for m, r in res.items():
                row[f"{m}_s"] = r.get("seconds")
                row[f"{m}_peak_mb"] = r.get("peak_extra_mb")
            for m in ("batched64", "batched32"):
                row[f"speedup_{m}_vs_anchor"] = row["anchor_s"] / row[f"{m}_s"] if row[f"{m}_s"] else None
                row[f"speedup_{m}_vs_loop"] = row["loop_s"] / row[f"{m}_s"] if row[f"{m}_s"] else None
            # in passes over the block: how far each method is from merely reading its log-probs once
            row["anchor_passes"] = row["anchor_s"] / row["pass_s"] if row["pass_s"] else None
            row["batched64_passes"] = row["batched64_s"] / row["pass_s"] if row["pass_s"] else None
            rows.append(row)
            print(
                f"  KL S={s:2d} V={v}: anchor {row['anchor_s']:.3f} s, loop {row['loop_s']:.3f} s, batched "
                f"float64 {row['batched64_s']:.3f} s ({row['speedup_batched64_vs_anchor']:.1f}x the anchor, "
                f"{row['speedup_batched64_vs_loop']:.1f}x the loop), float32 {row['batched32_s']:.3f} s "
                f"({row['speedup_batched32_vs_anchor']:.1f}x, {row['speedup_batched32_vs_loop']:.1f}x); one pass "
                f"over the float64 block {row['pass_s']:.3f} s (batched = {row['batched64_passes']:.1f} passes, "
                f"anchor = {row['anchor_passes']:.1f}); peak {row['batched64_peak_mb']:.0f} MB beside "
                f"{row['input_mb']:.0f} MB of float32 log-probs",
                flush=True,
            )
    return rows


def bench_analysis(profile: str = "default", size: str | None = None, n_steps: int = 6) -> dict:
    """Engine pass over ``n_steps`` checkpoints × all seeds of one size, into a fresh cache, vs its floor: the
    forward passes over the probe and over the downstream sets, plus the one forward and backward of the gradient
    batch that gradient PER needs (the downstream forwards are also reported alone: what the sets cost).

    The forward pass's cost grows with the model, the statistics over the full vocabulary and the spectra do
    not (much): the ratio is the fixed cost of the analysis over the floor, and it falls with size."""
    from lmconv import analysis
    from lmconv.analysis import engine
    from lmconv.analysis.cache import TableCache
    from lmconv.checkpoints import suites
    from lmconv.data import probe
    from lmconv.data import tokenizer as tok_mod
    from lmconv.metrics import kl as kl_mod

    suite = analysis.Suite.open(profile)
    fam, src, prof = suite.family(), suite.source, suite.profile
    size = size or list(prof.sizes)[len(prof.sizes) // 2]
    seeds = src.seeds(fam, size)
    all_steps = src.steps(fam, size)
    steps = sorted({all_steps[int(i)] for i in np.linspace(0, len(all_steps) - 1, n_steps)})
    ref = suites.CheckpointRef(fam, size, seeds[0], steps[-1])
    tok = src.load_tokenizer(ref)
    pr = probe.build(tok, prof.corpus, prof.probe)
    uni = kl_mod.unigram_logprobs(tok_mod.token_frequencies(prof.corpus, prof.vocab_size))
    evals = analysis.downstream_sets(tok, prof.corpus, prof.downstream, prof.context)
    per_batch = engine.downstream_batch_tokens(len(tok), engine.EngineOptions())
    ds_batches = [torch.from_numpy(b) for _, b in evals.batches(per_batch)] if evals else []
    # the floor: load each checkpoint, run it forward over the probe windows and the downstream batches, and once
    # forward and backward over a gradient batch of the engine's size; nothing else
    x = torch.from_numpy(pr.window_inputs(slice(0, len(pr.starts))))
    g = engine.EngineOptions().grad_windows
    xg = torch.from_numpy(pr.stream[pr.starts[:g, None] + np.arange(pr.context + 1)[None, :]])
    forward_s = backward_s = downstream_s = 0.0
    for st in steps:
        for k in seeds:
            t0 = time.perf_counter()
            m = src.load_model(suites.CheckpointRef(fam, size, k, st))
            with torch.no_grad():
                for i in range(0, len(x), 16):
                    m(x[i : i + 16])
                t1 = time.perf_counter()
                for b in ds_batches:
                    m(b)
            t2 = time.perf_counter()
            logits = m(xg[:, :-1]).logits
            torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), xg[:, 1:].reshape(-1)).backward()
            forward_s, downstream_s = forward_s + t1 - t0, downstream_s + t2 - t1
            backward_s += time.perf_counter() - t2
    floor_s = forward_s + downstream_s + backward_s
    with tempfile.TemporaryDirectory() as tmp:
        cache = TableCache("engine", Path(tmp))
        engine.LOADS.counts.clear()
        t0 = time.perf_counter()
        engine.analyze(src, fam, size, seeds, steps, pr, uni, len(tok), cache=cache, progress=False, evals=evals)
        analysis_s = time.perf_counter() - t0
        stored = cache.bytes_used()
    loads = sorted(set(engine.LOADS.counts.values()))
    n_ckpt = len(steps) * len(seeds)
    out = {
        "profile": profile,
        "size": size,
        "seeds": len(seeds),
        "steps": steps,
        "probe_tokens": pr.n_tokens,
        "forward_s": forward_s,
        "downstream_forward_s": downstream_s,
        "gradient_batch_s": backward_s,
        "floor_s": floor_s,
        "analysis_s": analysis_s,
        "ratio": analysis_s / floor_s,
        "loads_per_checkpoint": loads,
        "bytes_per_checkpoint": stored / n_ckpt,
        "bytes_fraction_of_anchor": stored / n_ckpt / (papers.KL_STORAGE_MB_PER_CHECKPOINT * 2**20),
    }
    print(
        f"  analysis of {n_ckpt} checkpoints ({size}, {len(seeds)} seeds): {analysis_s:.1f} s vs its floor "
        f"{floor_s:.1f} s (forward {forward_s:.1f} s, downstream sets {downstream_s:.1f} s, gradient batch "
        f"{backward_s:.1f} s) = {out['ratio']:.2f}x; "
        f"loads per checkpoint {loads}; "
        f"{out['bytes_per_checkpoint'] / 1e6:.2f} MB stored per checkpoint "
        f"({100 * out['bytes_fraction_of_anchor']:.3f}% of the anchor's 469 MB)",
        flush=True,
    )
    return out


def matmul_gflops(n: int = 1536, reps: int = 6, precision: str = "fp32") -> float:
    """This machine's dense matrix-product rate, in GFLOP/s, for square float32 (``fp32``) or bfloat16 (``bf16``)
    matrices: the yardstick of training in that precision."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def train_flops_per_token(hidden: int, layers: int, vocab: int, context: int) -> float:
    """6 × (matrix parameters + output embedding) plus attention scores and mixing, forward + backward."""
    matrix = layers * 12 * hidden * hidden + vocab * hidden
    attention = layers * 2 * 2 * context * hidden  # QKᵀ and AV per token
    return 6 * matrix + 3 * attention


PRECISIONS = ("fp32", "bf16")


def bench_training(profile: str = "default", steps: int = 20) -> list[dict]:
    """Seconds per training step of every size in both precisions (the steps of ``train``: forward, fp32 loss,
    backward, clipping, optimizer), each against the dense matmul rate of its own precision. The two precisions
    of a size are timed in alternating halves, so a machine whose speed drifts slows both alike; the bf16 row also
    gives its step time over the fp32 one and, where training compiles the bf16 step, over the eager bf16 step
    (timed in the same halves, not reported as a row of its own)."""
    from dataclasses import replace

    from lmconv.training import profiles, train

    prof = profiles.load(profile)
    s = prof.arm().train
    torch.set_num_threads(s.threads)
    data = train.prepare_data(prof)
    peak = {p: matmul_gflops(precision=p) for p in PRECISIONS}
    tokens = s.batch_size * prof.context
    # what each timed variant trains in, and how its loss is computed (as training does, and the eager bf16 step)
    losses = {p: train.step_loss(replace(s, precision=p)) for p in PRECISIONS}
    variants = {p: (p, losses[p]) for p in PRECISIONS}
    compiled = losses["bf16"] is not train._lm_loss
    if compiled:
        variants["bf16 eager"] = ("bf16", train._lm_loss)
    rows = []
    for size in prof.sizes.values():
        runs = {}
        for v in variants:
            model = train.init_model(prof, size, prof.seeds[0])
            runs[v] = (model, train.make_optimizers(model, s))

        def one(v: str, step: int, runs=runs) -> None:
            model, opts = runs[v]
            p, loss_fn = variants[v]
            loss = loss_fn(model, data.batch(prof.seeds[0], step, s.batch_size), p)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
            for o in opts:
                o.step()
                o.zero_grad(set_to_none=True)

        spent = dict.fromkeys(variants, 0.0)
        with train._deterministic(compiled):  # as a compiled training step runs
            for v in variants:
                one(v, 0)  # compiles, where the step is compiled
            halves = (steps // 2, steps - steps // 2)
            for k, n in enumerate(halves):
                for v in list(variants) if k == 0 else list(variants)[::-1]:
                    t = time.perf_counter()
                    for i in range(n):
                        one(v, 1 + sum(halves[:k]) + i)
                    spent[v] += time.perf_counter() - t
        for p in PRECISIONS:
            dt = spent[p] / steps
            flops = train_flops_per_token(size.hidden, size.layers, prof.vocab_size, prof.context) * tokens
            row = {
                "size": size.name,
                "precision": p,
                "s_per_step": dt,
                "tokens_per_s": tokens / dt,
                "gflops": flops / dt / 1e9,
                "matmul_gflops": peak[p],
                "fraction_of_matmul_peak": flops / dt / 1e9 / peak[p],
            }
            if p != "fp32":
                row["time_vs_fp32"] = dt * steps / spent["fp32"]
            if f"{p} eager" in spent:
                row["compiled_vs_eager"] = spent[p] / spent[f"{p} eager"]
            rows.append(row)
            print(
                f"  train {size.name} {p}: {tokens / dt:,.0f} tokens/s, {row['gflops']:.1f} GFLOP/s "
                f"({100 * row['fraction_of_matmul_peak']:.0f}% of the {peak[p]:.0f} GFLOP/s {p} matmul rate)"
                + (f"; {row['time_vs_fp32']:.2f}x the fp32 step time" if "time_vs_fp32" in row else "")
                + (f"; compiled {row['compiled_vs_eager']:.2f}x the eager step" if "compiled_vs_eager" in row else ""),
                flush=True,
            )
    rows += [{"size": "matmul", "precision": p, "gflops": peak[p]} for p in PRECISIONS]
    return rows


def bench_jobs(profile: str = "default", steps: int = 100, n_seeds: int = 2) -> dict:
    """Wall time of training the first ``n_seeds`` seeds of every size for ``steps`` steps (the profile's first arm,
    checkpoints, validation and spectra as it sets them, process start-up included) two ways: one run at a time at
    one thread per core, and the profile's way (``jobs`` runs at once at its ``threads``). The suites go to
    throw-away folders of the data home (its corpus and tokenizers are reused) and are removed after."""
    from lmconv.training import profiles, train

    prof = profiles.load(profile)
    cores = os.cpu_count() or 1
    ways = {"one run, every core": (cores, 1), "the profile's": (prof.arm().train.threads, prof.jobs)}
    out: dict = {"steps": steps, "seeds": n_seeds, "sizes": list(prof.sizes)}
    for way, (threads, jobs) in ways.items():
        raw = copy.deepcopy(prof.raw)
        for key in ("companions", "arms", "family"):
            raw.pop(key, None)
        raw["train"] |= {"steps": steps, "threads": threads}
        raw |= {"jobs": jobs, "seeds": raw["seeds"][:n_seeds]}
        p = profiles.parse(raw, f"bench-jobs-{threads}x{jobs}")
        root = paths.suite_dir(p.name)
        shutil.rmtree(root, ignore_errors=True)
        t = time.perf_counter()
        try:
            train.train_profile(p, progress=False)
            out[way] = {"threads": threads, "jobs": jobs, "seconds": round(time.perf_counter() - t, 1)}
        finally:
            shutil.rmtree(root, ignore_errors=True)
        print(f"  train {way} ({jobs} x {threads} threads): {out[way]['seconds']:.0f} s", flush=True)
    out["speedup"] = out["one run, every core"]["seconds"] / out["the profile's"]["seconds"]
    print(f"  the profile's way is {out['speedup']:.2f}x as fast", flush=True)
    return out


def bench_stacked(profile: str = "default", steps: int = 10) -> dict:
    """All seeds of the smallest size in one vmapped step vs one seed after another (same math per seed)."""
    from torch.func import functional_call, grad_and_value, stack_module_state, vmap

    from lmconv.training import profiles, train

    prof = profiles.load(profile)
    s = prof.arm().train
    torch.set_num_threads(s.threads)
    data = train.prepare_data(prof)
    size = next(iter(prof.sizes.values()))
    models = [train.init_model(prof, size, k) for k in prof.seeds]
    tokens = s.batch_size * prof.context * len(models)
    # one after another
    opts = [train.make_optimizers(m, s) for m in models]
    t = time.perf_counter()
    for step in range(steps):
        for k, (m, o) in enumerate(zip(models, opts, strict=True)):
            loss = train._lm_loss(m, data.batch(prof.seeds[k], step, s.batch_size))
            loss.backward()
            for opt in o:
                opt.step()
                opt.zero_grad(set_to_none=True)
    sequential = (time.perf_counter() - t) / steps
    try:
        params, buffers = stack_module_state(models)
        base = train.init_model(prof, size, prof.seeds[0]).to("meta")

        def loss_fn(p, b, x):
            logits = functional_call(base, (p, b), (x[:, :-1],)).logits
            return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))

        step_fn = vmap(grad_and_value(loss_fn), in_dims=(0, 0, 0))
        adam = torch.optim.AdamW([v.requires_grad_(False) for v in params.values()], lr=s.lr)
        t = time.perf_counter()
        # vmap warns where an operator has no batching rule (it then loops over the seeds): keep those as a finding
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for step in range(steps):
                x = torch.stack([data.batch(k, step, s.batch_size) for k in prof.seeds])
                grads, _ = step_fn(params, buffers, x)
                for name, p in params.items():
                    p.grad = grads[name]
                adam.step()
        stacked = (time.perf_counter() - t) / steps
        fallbacks = sorted(
            {m.group(1) for w in caught if (m := re.search(r"batching rule for (\S+?)\.? ", str(w.message)))}
        )
        err = None
    except Exception as e:  # vmap over the transformers model may not be supported
        stacked, err, fallbacks = None, f"{type(e).__name__}: {str(e).splitlines()[0][:200]}", []
    out = {
        "size": size.name,
        "seeds": len(models),
        "sequential_s_per_step": sequential,
        "stacked_s_per_step": stacked,
        "tokens_per_s_sequential": tokens / sequential,
        "speedup": sequential / stacked if stacked else None,
        "unbatched_ops": fallbacks,  # operators vmap ran one seed at a time
        "error": err,
    }
    if stacked:
        print(
            f"  all {len(models)} seeds of {size.name} stacked (vmap): {stacked:.3f} s/step vs "
            f"{sequential:.3f} s one after another = {out['speedup']:.2f}x"
            + (
                f" (vmap has no batching rule for {', '.join(fallbacks)}: it loops over the seeds there)"
                if fallbacks
                else ""
            ),
            flush=True,
        )
    else:
        print(f"  stacked training not possible: {err}", flush=True)
    return out


def bench_rebuild(profile: str = "default") -> dict:
    html = paths.BOOK / "_build" / "html" / "index.html"
    if not html.exists():
        print("  warm rebuild: the book has not been built yet (make book first)", flush=True)
        return {"seconds": None}
    cmd = [sys.executable, "-m", "lmconv", "book", "--profile", profile]
    # first bring the book up to date (after a code change every chapter runs again), then time a rebuild
    subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    dt = time.perf_counter() - t
    ran = [c for c in re.findall(r"^\[chapter\] (\S+) \{", r.stdout, flags=re.M) if c != "status"]
    print(f"  warm rebuild of the book with nothing changed: {dt:.0f} s (exit {r.returncode})", flush=True)
    return {"seconds": dt, "returncode": r.returncode, "chapters_executed": ran}


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__)
    ap.add_argument("--profile", default="default")
    ap.add_argument("--quick", action="store_true", help="smaller cases (for a smoke run)")
    a = ap.parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    print(
        f"[bench] {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        flush=True,
    )
    results: dict = {
        "date": started,
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "tcmalloc": "tcmalloc" in os.environ.get("LD_PRELOAD", ""),
        "goals": GOALS,
    }
    print("[bench] 1. all-pairs KL", flush=True)
    results["kl"] = bench_kl(seeds=(4, 5) if a.quick else (4, 5, 10), vocabs=(8192,) if a.quick else (8192, 50304))
    print("[bench] 2-3. analysis vs forward, bytes stored", flush=True)
    from lmconv.training import profiles

    prof = profiles.load(a.profile)
    sizes = list(prof.sizes)
    # the precision the profile trains in here (precision: auto resolves to bf16 where bf16 products are native)
    results["profile_precision"] = sorted(profiles.precisions(prof))
    results["analysis"] = [bench_analysis(a.profile, s, n_steps=3 if a.quick else 6) for s in sizes]
    print("[bench] 4. training", flush=True)
    results["training"] = bench_training(a.profile, steps=5 if a.quick else 20)
    results["stacked"] = bench_stacked(a.profile, steps=3 if a.quick else 10)
    results["jobs"] = bench_jobs(a.profile, steps=10 if a.quick else 100, n_seeds=2)
    print("[bench] 5. warm rebuild; the recorded builds", flush=True)
    results["rebuild"] = bench_rebuild(a.profile) if not a.quick else {"seconds": None}
    results["builds"] = book.build_records()  # the first build of this data home, stage by stage, and the latest
    for kind, b in results["builds"].items():
        print(f"  {kind} make book ({b['date']}): {b['total_s'] / 60:.0f} min", flush=True)
    kl_min = min(r["speedup_batched64_vs_anchor"] for r in results["kl"] if r["speedup_batched64_vs_anchor"])
    verdict = {
        "kl_passes_max": max(r["batched64_passes"] or 0.0 for r in results["kl"]),
        "kl_speedup_min": kl_min,
        "analysis_over_floor": {r["size"]: r["ratio"] for r in results["analysis"]},
        "bytes_fraction": max(r["bytes_fraction_of_anchor"] for r in results["analysis"]),
        "warm_rebuild_s": results["rebuild"]["seconds"],
        "train_fraction_of_matmul": {
            f"{t['size']} {t['precision']}": t["fraction_of_matmul_peak"]
            for t in results["training"]
            if t["size"] != "matmul"
        },
        "train_bf16_time_vs_fp32": {t["size"]: t["time_vs_fp32"] for t in results["training"] if "time_vs_fp32" in t},
        "train_jobs_speedup": results["jobs"]["speedup"],
    }
    results["summary"] = verdict
    results["causes"] = gap_causes(results)
    write_json(results_file(), results)
    print("[bench] summary (goal in brackets):")
    print(f"  all-pairs KL in passes, worst       {verdict['kl_passes_max']:8.2f}    [≤ {GOALS['kl_passes']}]")
    print(f"  all-pairs KL vs the anchor, worst   {kl_min:8.1f}x   [≥ {GOALS['kl_speedup']:.0f}x]")
    for size, ratio in verdict["analysis_over_floor"].items():
        print(f"  analysis / its floor, {size:13s} {ratio:8.2f}x   [≤ {GOALS['analysis_over_floor']}x]")
    print(f"  bytes per checkpoint / 469 MB       {100 * verdict['bytes_fraction']:8.3f}%   [≤ 1%]")
    train_goal = 100 * GOALS["train_fraction_of_matmul"]
    for run, frac in verdict["train_fraction_of_matmul"].items():
        print(f"  training / matmul rate, {run:11s} {100 * frac:7.0f}%   [≥ {train_goal:.0f}%]")
    for size, ratio in verdict["train_bf16_time_vs_fp32"].items():
        print(f"  bf16 / fp32 step time, {size:12s} {ratio:8.2f}x")
    print(f"  the profile trains in               {', '.join(results['profile_precision']):>8}")
    print(f"  the profile's jobs vs one run       {verdict['train_jobs_speedup']:8.2f}x")
    wr = verdict["warm_rebuild_s"]
    print(f"  warm rebuild                        {'n/a' if wr is None else f'{wr:6.0f} s':>8}   [≤ 120 s]")
    for line in results["causes"]:
        print(f"[bench] gap: {line}")
    print(f"[bench] written to {results_file()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
