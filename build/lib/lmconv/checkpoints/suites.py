"""Checkpoint suites: one naming contract for our local suites and the PolyPythias on the hub.

Names follow Pythia. A run is ``{family}-{size}-seed{k}`` (the hub's seed-0 PolyPythia runs have no suffix:
``EleutherAI/pythia-{size}``), a checkpoint is the revision ``step{N}`` (on the hub, ``step143000`` is also
``main``). A local suite mirrors it on disk: ``{root}/{family}-{size}-seed{k}/step{N}/`` holding
``config.json``, ``model.safetensors``, the tokenizer files and ``checksums.json``.
``format_*`` and ``parse_*`` below are the only code that builds or splits these strings.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import transformers

from ..errors import LmconvError, choose
from ..findings import papers
from ..io import read_json, sha256_file, sha256_json

HUB_ORG = "EleutherAI"
HUB_FAMILY = "pythia"
transformers.utils.logging.disable_progress_bar()  # one bar per loaded checkpoint would drown the real ones
CHECKPOINT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")

# The config.json fields that make two checkpoints the same network (a step of another size or profile differs
# here). transformers 5 records rotary_pct as rope_parameters.partial_rotary_factor; older configs as rotary_pct.
ARCHITECTURE_KEYS = (
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
    "rotary_pct",
    "rope_parameters",
    "hidden_act",
    "use_parallel_residual",
    "tie_word_embeddings",
    "attention_bias",
    "layer_norm_eps",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")  # a checkpoint's tokenizer, as checksums.json names it
# Hub models with revisions known to serve the wrong weights. ``revisions`` None: which ones is not published in
# a form we can read offline, so the weights-hash check of HubSource.sha is what finds them.
HUB_VARIANTS = ("data", "weight")  # the decoupled PolyPythias: only the data order / only the initialisation varies
KNOWN_BAD_REVISIONS: dict[str, dict] = {
    "EleutherAI/pythia-2.8b": {
        "revisions": None,
        "note": "EleutherAI/pythia#205: 86 of its 154 step revisions serve final-era weights",
    },
    **{
        f"EleutherAI/pythia-160m-weight-seed{k}": {
            "revisions": ("step0",),
            "note": "EleutherAI/pythia#203: the later checkpoints do not descend from this published step 0",
        }
        for k in (1, 2, 3)
    },
}

RUN_FINISHED = "run.json"  # written last when a run ends, after its logs: the one sign that a run is finished
_RUN = re.compile(r"^(?P<family>[A-Za-z0-9_.]+(?:-[A-Za-z0-9_.]+)*?)-(?P<size>[A-Za-z0-9_.]+)-seed(?P<seed>\d+)$")
_STEP = re.compile(r"^step(?P<step>\d+)$")
_RETRAIN_STEP = (  # what lmconv.training.train does with a run that lacks a scheduled checkpoint
    "rerun `lmconv train` with the suite's profile: it trains that run again from its last saved state before "
    "the step (from step 0 when none is kept) and writes the same files"
)


@dataclass(frozen=True, order=True)
class CheckpointRef:
    """One checkpoint: which family (suite), size, seed and training step."""

    family: str
    size: str
    seed: int
    step: int

    @property
    def run(self) -> str:
        return format_run(self.family, self.size, self.seed)

    @property
    def revision(self) -> str:
        return format_revision(self.step)

    def __str__(self) -> str:
        return f"{self.run}/{self.revision}"


def _first_line(e: BaseException) -> str:
    """The first line of an error's message (a library's can run to pages), or its type when it has none."""
    return next(iter(str(e).splitlines()), "") or type(e).__name__


def format_run(family: str, size: str, seed: int) -> str:
    if "-" in size or not size:
        raise LmconvError(f"size name {size!r} is empty or contains '-'", "use names like 70m or d64")
    return f"{family}-{size}-seed{int(seed)}"


def parse_run(name: str) -> tuple[str, str, int]:
    """``'lmconv-m-seed3'`` → ``('lmconv', 'm', 3)``."""
    m = _RUN.match(name)
    if not m:
        raise LmconvError(f"{name!r} is not a run name", "run names look like {family}-{size}-seed{k}")
    return m["family"], m["size"], int(m["seed"])


def run_finished(run_dir: Path) -> bool:
    """Whether a local run has finished: its logs (``train_log``, ``val_log``, ``spectra``) are all written."""
    return (Path(run_dir) / RUN_FINISHED).exists()


def format_revision(step: int) -> str:
    if int(step) < 0:
        raise LmconvError(f"step {step} is negative")
    return f"step{int(step)}"


def parse_revision(revision: str, final_step: int = papers.PYTHIA_STEPS) -> int:
    """``'step512'`` → 512; ``'main'`` → the final step."""
    if revision == "main":
        return final_step
    m = _STEP.match(revision)
    if not m:
        raise LmconvError(f"{revision!r} is not a revision", "revisions look like step{N} (or main)")
    return int(m["step"])


def format_hub_repo(
    size: str, seed: int, org: str = HUB_ORG, family: str = HUB_FAMILY, variant: str | None = None
) -> str:
    """The PolyPythia repository: seed 0 is the original run, with no suffix; a decoupled run (``variant`` "data"
    or "weight") is ``{family}-{size}-{variant}-seed{k}``, k ≥ 1."""
    base = f"{org}/{family}-{size}"
    if variant is None:
        return base if int(seed) == 0 else f"{base}-seed{int(seed)}"
    choose("hub variant", variant, HUB_VARIANTS)
    if int(seed) < 1:
        raise LmconvError(f"a {variant}-seed run has a seed of at least 1, not {seed}", "pass seeds 1, 2, 3")
    return f"{base}-{variant}-seed{int(seed)}"


def hub_variant(repo_id: str) -> str | None:
    """``'EleutherAI/pythia-160m-data-seed1'`` → ``'data'``; None for a repository of the main runs."""
    m = re.search(r"-(?P<variant>[a-z]+)-seed\d+$", repo_id)
    return m["variant"] if m and m["variant"] in HUB_VARIANTS else None


def parse_hub_repo(repo_id: str) -> tuple[str, str, int]:
    """``'EleutherAI/pythia-160m-seed3'`` → ``('pythia', '160m', 3)``; no suffix means seed 0; a decoupled run's
    variant is dropped (``'pythia-160m-data-seed1'`` → ``('pythia', '160m', 1)``; see
    :func:`lmconv.checkpoints.suites.hub_variant`)."""
    _, _, name = repo_id.rpartition("/")
    if (variant := hub_variant(name)) is not None:
        name = name.replace(f"-{variant}-seed", "-seed")
    if re.search(r"-seed\d+$", name):
        return parse_run(name)
    family, _, size = name.rpartition("-")
    if not family or not size:
        raise LmconvError(f"{repo_id!r} is not a hub repository name", "expected {org}/{family}-{size}[-seed{k}]")
    return family, size, 0


@runtime_checkable
class CheckpointSource(Protocol):
    """What the engine and the analyses ask of a source of checkpoints (:class:`LocalSource`, :class:`HubSource`):
    whether it has a checkpoint, a cache key for its weights, the model and its tokenizer."""

    def check(self, ref: CheckpointRef) -> None:
        """Raise an ``LmconvError`` naming what is missing when the source lacks ``ref``."""
        ...

    def sha(self, ref: CheckpointRef) -> str:
        """A key that changes whenever the checkpoint's weights or its architecture (``config.json``) do (caches are
        keyed by it)."""
        ...

    def load_model(self, ref: CheckpointRef, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
        """The checkpoint's model, in eval mode."""
        ...

    def load_tokenizer(self, ref: CheckpointRef) -> transformers.PreTrainedTokenizerBase:
        """The tokenizer saved with the checkpoint."""
        ...


@dataclass
class LocalSource:
    """A folder in the ``{family}-{size}-seed{k}/step{N}`` layout: our suite or a user's own."""

    root: Path
    verify: bool = True
    _shas: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not self.root.is_dir():
            raise LmconvError(f"suite folder {self.root} does not exist", "train it: lmconv train --profile NAME")

    def path(self, ref: CheckpointRef) -> Path:
        return self.root / ref.run / ref.revision

    @cached_property
    def inventory(self) -> dict[tuple[str, str, int], list[int]]:
        """``{(family, size, seed): [steps]}`` of every complete checkpoint on disk."""
        out: dict[tuple[str, str, int], list[int]] = {}
        for run_dir in sorted(self.root.iterdir()):
            if not run_dir.is_dir() or run_dir.name.startswith("."):
                continue
            try:
                key = parse_run(run_dir.name)
            except LmconvError:
                continue
            steps = []
            for step_dir in run_dir.iterdir():
                if _STEP.match(step_dir.name) and (step_dir / "checksums.json").exists():
                    steps.append(parse_revision(step_dir.name))
            if steps:
                out[key] = sorted(steps)
        return out

    def families(self) -> list[str]:
        return sorted({f for f, _, _ in self.inventory})

    def sizes(self, family: str) -> list[str]:
        return sorted({s for f, s, _ in self.inventory if f == family})

    def seeds(self, family: str, size: str) -> list[int]:
        return sorted({k for f, s, k in self.inventory if f == family and s == size})

    def steps(self, family: str, size: str, seed: int | None = None) -> list[int]:
        """Steps present for the run, or (seed None) the steps every seed of the size has."""
        seeds = [seed] if seed is not None else self.seeds(family, size)
        sets = [set(self.inventory.get((family, size, k), [])) for k in seeds]
        return sorted(set.intersection(*sets)) if sets else []

    def check(self, ref: CheckpointRef) -> None:
        """Raise a clear error when the suite lacks what ``ref`` asks for."""
        choose("family", ref.family, self.families(), f"families in {self.root}")
        choose("size", ref.size, self.sizes(ref.family), f"sizes of {ref.family} in {self.root}")
        choose("seed", ref.seed, self.seeds(ref.family, ref.size), f"seeds of {ref.family}-{ref.size}")
        choose("step", ref.step, self.steps(ref.family, ref.size, ref.seed), f"steps of {ref.run}")

    def checksums(self, ref: CheckpointRef) -> dict[str, str]:
        folder = self.path(ref)
        if not (folder / "checksums.json").exists():
            self.check(ref)
        sums = read_json(folder / "checksums.json")
        if not isinstance(sums, dict) or not all(isinstance(v, str) for v in sums.values()):
            raise self._bad_checksums(ref, f"does not map file names to sha256 strings (it holds {str(sums)[:120]})")
        return sums

    def sha(self, ref: CheckpointRef) -> str:
        """A cache key from the sha256 of the weights and of ``config.json``, as recorded when the checkpoint was
        written: the same weights read as another network (a config edited by hand) are another checkpoint."""
        sums = self.checksums(ref)
        for name in ("model.safetensors", "config.json"):
            if name not in sums:
                raise self._bad_checksums(ref, f"records no {name} (only {', '.join(sorted(sums)) or 'nothing'})")
        return sha256_json({"weights": sums["model.safetensors"], "config": sums["config.json"]})

    def _bad_checksums(self, ref: CheckpointRef, what: str) -> LmconvError:
        folder = self.path(ref)
        return LmconvError(
            f"checkpoint {ref}: {folder / 'checksums.json'} {what}",
            f"delete {folder} and rerun `lmconv train` with the same profile; it writes that checkpoint again",
        )

    def check_architecture(self, ref: CheckpointRef) -> None:
        """Raise when ``ref``'s ``config.json`` describes another network than the run's first checkpoint."""
        steps = self.steps(ref.family, ref.size, ref.seed)
        first = CheckpointRef(ref.family, ref.size, ref.seed, steps[0]) if steps else ref
        if first == ref:
            return
        if differ := _differences(self.architecture(first), self.architecture(ref)):
            raise LmconvError(
                f"checkpoint {ref} is another network than {first} of the same run: {', '.join(differ)}",
                f"a checkpoint of another size or profile was copied into {self.root / ref.run}: delete "
                f"{self.path(ref)} and rerun `lmconv train` with the same profile",
            )

    def architecture(self, ref: CheckpointRef) -> dict:
        """The fields of ``ref``'s ``config.json`` that define the network (``ARCHITECTURE_KEYS``)."""
        config = read_json(self.path(ref) / "config.json")
        if not isinstance(config, dict):
            raise LmconvError(
                f"checkpoint {ref}: {self.path(ref) / 'config.json'} holds no JSON object ({str(config)[:80]})",
                f"delete {self.path(ref)}, then {_RETRAIN_STEP}",
            )
        return {k: config.get(k) for k in ARCHITECTURE_KEYS}

    def tokenizer_sha(self, ref: CheckpointRef) -> str | None:
        """The tokenizer files' sha256 as ``checksums.json`` records them (None when it records none of them)."""
        sums = self.checksums(ref)
        return "/".join(f"{sums.get(n)}" for n in TOKENIZER_FILES) if set(TOKENIZER_FILES) & set(sums) else None

    def verify_files(self, ref: CheckpointRef) -> None:
        folder = self.path(ref)
        for name, sha in self.checksums(ref).items():
            f = folder / name
            if not f.exists():
                raise LmconvError(f"checkpoint {ref} lacks {name} ({folder})", _RETRAIN_STEP)
            if self._shas.get(f) != sha and sha256_file(f) != sha:
                raise LmconvError(
                    f"checkpoint {ref}: {name} does not match its recorded sha256 (corrupt or truncated)",
                    f"delete {folder}, then {_RETRAIN_STEP}",
                )
            self._shas[f] = sha

    def load_model(self, ref: CheckpointRef, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
        from transformers import GPTNeoXForCausalLM

        self.check(ref)
        if self.verify:
            self.verify_files(ref)
        self.check_architecture(ref)
        try:
            model = GPTNeoXForCausalLM.from_pretrained(
                str(self.path(ref)), dtype=dtype, use_safetensors=True, trust_remote_code=False
            )
        except Exception as e:  # corrupt weights that still matched (verify off) or a bad config
            raise LmconvError(f"cannot load checkpoint {ref}: {e}", f"delete {self.path(ref)} and retrain it") from e
        return model.eval()

    def load_tokenizer(self, ref: CheckpointRef) -> transformers.PreTrainedTokenizerBase:
        try:
            return transformers.AutoTokenizer.from_pretrained(str(self.path(ref)))
        except Exception as e:  # a damaged config.json or tokenizer file
            raise LmconvError(
                f"cannot load the tokenizer of {ref} from {self.path(ref)}: {_first_line(e)}",
                f"delete {self.path(ref)} and rerun `lmconv train` with the same profile",
            ) from e


@dataclass
class HubSource:
    """The PolyPythias through ``from_pretrained(repo, revision="step{N}")``.

    Needs a network or a Hugging Face cache that already holds the checkpoints (then set ``HF_HUB_OFFLINE=1``).
    Loads safetensors only unless ``allow_pickle`` is set (old Pythia revisions ship only pickled weights). With
    ``variant`` "data" or "weight" it reads the decoupled runs ``{family}-{size}-{variant}-seed{k}`` instead.
    """

    org: str = HUB_ORG
    family: str = HUB_FAMILY
    variant: str | None = None
    cache_dir: Path | None = None
    allow_pickle: bool = False
    known_only: bool = True  # reject sizes, seeds and steps the PolyPythias do not have
    _weights: dict = field(default_factory=dict, repr=False)  # {repo: {weights sha256: revision}} seen so far

    def repo(self, ref: CheckpointRef) -> str:
        return format_hub_repo(ref.size, ref.seed, self.org, self.family, self.variant)

    def check(self, ref: CheckpointRef) -> None:
        if self.variant is not None:
            choose("hub variant", self.variant, HUB_VARIANTS)
        if self.known_only and self.family == HUB_FAMILY and self.org == HUB_ORG:
            decoupled = self.variant is not None
            what = f"{self.variant}-seed PolyPythia" if decoupled else "PolyPythia"
            choose(
                f"{what} size", ref.size, papers.POLYPYTHIA_DECOUPLED_SIZES if decoupled else papers.POLYPYTHIA_SIZES
            )
            choose(
                f"{what} seed", ref.seed, papers.POLYPYTHIA_DECOUPLED_SEEDS if decoupled else papers.POLYPYTHIA_SEEDS
            )
            choose(f"{what} step", ref.step, papers.POLYPYTHIA_STEPS)
        bad = KNOWN_BAD_REVISIONS.get(self.repo(ref))
        if bad and bad["revisions"] is not None and ref.revision in bad["revisions"]:
            raise LmconvError(
                f"{self.repo(ref)}@{ref.revision} is a known bad revision ({bad['note']})",
                "leave that step out of the analysis",
            )
        if bad and bad["revisions"] is None:
            warnings.warn(
                f"{self.repo(ref)} has bad revisions ({bad['note']}); revisions that serve the same weights are "
                "refused before any compute",
                stacklevel=2,
            )

    def _kwargs(self) -> dict:
        kw: dict = {"trust_remote_code": False}
        if self.cache_dir is not None:
            kw["cache_dir"] = str(self.cache_dir)
        return kw

    def load_model(self, ref: CheckpointRef, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
        from transformers import GPTNeoXForCausalLM

        self.check(ref)
        try:
            model = GPTNeoXForCausalLM.from_pretrained(
                self.repo(ref),
                revision=ref.revision,
                dtype=dtype,
                use_safetensors=None if self.allow_pickle else True,
                **self._kwargs(),
            )
        except OSError as e:
            offline = os.environ.get("HF_HUB_OFFLINE") == "1"
            raise LmconvError(
                f"cannot load {self.repo(ref)}@{ref.revision} from the hub: {_first_line(e)}",
                "on a machine with no network, fill a Hugging Face cache first and set HF_HUB_OFFLINE=1"
                if offline
                else "check the network, or pass allow_pickle=True for revisions without safetensors",
            ) from e
        return model.eval()

    def sha(self, ref: CheckpointRef) -> str:
        """The snapshot's commit hash (the hub's content address) as a cache key."""
        from huggingface_hub import snapshot_download

        folder = snapshot_download(
            self.repo(ref),
            revision=ref.revision,
            **{k: v for k, v in self._kwargs().items() if k == "cache_dir"},
            allow_patterns=["config.json"],
        )
        self.check_distinct(ref)
        return Path(folder).name

    def weights_sha(self, ref: CheckpointRef) -> str:
        """The sha256 of the revision's weights file: a cached blob's name (the hub names LFS blobs by their
        sha256), the file hashed when it is a plain copy, else the hub's record of it (nothing downloaded)."""
        from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

        names = ("model.safetensors", "pytorch_model.bin") if self.allow_pickle else ("model.safetensors",)
        for name in names:
            got = try_to_load_from_cache(self.repo(ref), name, self._kwargs().get("cache_dir"), ref.revision)
            if isinstance(got, str):
                blob = Path(got).resolve()
                return blob.name if Path(got).is_symlink() and len(blob.name) == 64 else sha256_file(blob)
        try:
            return get_hf_file_metadata(hf_hub_url(self.repo(ref), names[0], revision=ref.revision)).etag or ""
        except Exception as e:  # offline with nothing cached, or a revision without that file
            raise LmconvError(
                f"cannot read the weights of {self.repo(ref)}@{ref.revision}: {_first_line(e)}",
                "on a machine with no network, fill a Hugging Face cache first and set HF_HUB_OFFLINE=1",
            ) from e

    def check_distinct(self, ref: CheckpointRef) -> None:
        """Raise when another revision of ``ref``'s run already seen serves the same weights (a hub defect:
        such a revision is not the checkpoint its name says); called by :meth:`sha`, so before any compute."""
        repo = self.repo(ref)
        seen = self._weights.setdefault(repo, {})
        if ref.revision in seen.values():
            return  # checked already (the engine asks for each step's key more than once)
        sha = self.weights_sha(ref)
        other = seen.setdefault(sha, ref.revision)
        if other != ref.revision:
            note = KNOWN_BAD_REVISIONS.get(repo, {}).get("note", "a known hub defect, e.g. EleutherAI/pythia#205")
            raise LmconvError(
                f"{repo}: revisions {other} and {ref.revision} serve the same weights (sha256 {sha[:16]}…), so at "
                f"least one is not the checkpoint it names ({note})",
                "leave those steps out (--steps / -p steps), or fetch them again if the cache was filled by hand",
            )

    def load_tokenizer(self, ref: CheckpointRef) -> transformers.PreTrainedTokenizerBase:
        try:
            return transformers.AutoTokenizer.from_pretrained(self.repo(ref), revision=ref.revision, **self._kwargs())
        except Exception as e:  # nothing cached offline, or a damaged tokenizer file
            raise LmconvError(
                f"cannot load the tokenizer of {self.repo(ref)}@{ref.revision}: {_first_line(e)}",
                "on a machine with no network, fill a Hugging Face cache first and set HF_HUB_OFFLINE=1",
            ) from e


def _differences(a: dict, b: dict) -> list[str]:
    """``b``'s values that are not ``a``'s, as ``key new (not old)``."""
    return [f"{k} {b.get(k)!r} (not {a.get(k)!r})" for k in a | b if a.get(k) != b.get(k)]


def _odd_ones(keys: dict[CheckpointRef, object]) -> tuple[CheckpointRef, list[CheckpointRef]]:
    """The first checkpoint with the key most of them share, and those whose key is another."""
    common = Counter(keys.values()).most_common(1)[0][0]
    first = next(r for r, k in keys.items() if k == common)
    return first, [r for r, k in keys.items() if k != common]


def _named(refs: list[CheckpointRef], n: int = 6) -> str:
    """``refs`` written out, run by run, the first ``n`` runs when there are more."""
    runs: dict[str, list[str]] = {}
    for r in refs:
        runs.setdefault(r.run, []).append(r.revision)
    shown = [f"{run}/{','.join(revs)}" for run, revs in list(runs.items())[:n]]
    return "; ".join(shown) + (f" and {len(runs) - n} more runs" if len(runs) > n else "")


def _delete_fix(source: LocalSource, odd: list[CheckpointRef]) -> str:
    """Delete the odd checkpoints (a run's folder when every step it holds is odd), then retrain."""
    steps = {r.run: {o.step for o in odd if o.run == r.run} for r in odd}
    whole = {r.run for r in odd if set(source.steps(r.family, r.size, r.seed)) <= steps[r.run]}
    folders = sorted({str(source.root / r.run) if r.run in whole else str(source.path(r)) for r in odd})
    listed = ", ".join(folders[:4]) + (f" and {len(folders) - 4} more" if len(folders) > 4 else "")
    return f"delete {listed}, then {_RETRAIN_STEP}"


def check_consistent(source: LocalSource, refs: list[CheckpointRef]) -> None:
    """Before any compute: every checkpoint of a (family, size) in ``refs`` is one network (its ``config.json``'s
    ``ARCHITECTURE_KEYS``), and every one of ``refs`` has one tokenizer; raise naming the odd ones."""
    for family, size in dict.fromkeys((r.family, r.size) for r in refs):
        arch = {r: source.architecture(r) for r in refs if (r.family, r.size) == (family, size)}
        first, odd = _odd_ones({r: repr(a) for r, a in arch.items()})
        if odd:
            raise LmconvError(
                f"the checkpoints of {family}-{size} are not one network: {_named(odd)} differ from {first} in "
                f"config.json: {', '.join(_differences(arch[first], arch[odd[0]]))}",
                "a run or step of another profile or version was trained or copied into the suite: "
                + _delete_fix(source, odd),
            )
    check_same_tokenizer(source, refs)


def check_same_tokenizer(source: CheckpointSource, refs: list[CheckpointRef]) -> str:
    """All checkpoints must split text identically; return the shared fingerprint or raise naming the odd ones.

    A verified local checkpoint's tokenizer is known by its files' sha256 in ``checksums.json``, so only one per
    distinct set of files is loaded and fingerprinted; any other checkpoint is fingerprinted itself."""
    from ..data.tokenizer import fingerprint

    local = isinstance(source, LocalSource) and source.verify
    files = {r: (local and source.tokenizer_sha(r)) or f"unrecorded {r}" for r in refs}
    groups = {key: next(r for r in refs if files[r] == key) for key in dict.fromkeys(files.values())}
    prints = {key: fingerprint(tok := source.load_tokenizer(r)) + f"/{len(tok)}" for key, r in groups.items()}
    first, odd = _odd_ones({r: prints[files[r]] for r in refs})
    if odd:
        raise LmconvError(
            f"the checkpoints do not share one tokenizer: {_named(odd)} split text unlike {first} (another "
            f"vocabulary or merges{_tokenizer_files_differ(source, first, odd[0])})",
            "every checkpoint of a suite must be trained with the suite's one tokenizer: "
            + (_delete_fix(source, odd) if isinstance(source, LocalSource) else "compare only models trained with it"),
        )
    return prints[files[first]].split("/")[0]


def _tokenizer_files_differ(source: CheckpointSource, a: CheckpointRef, b: CheckpointRef) -> str:
    """``; tokenizer.json differs`` (the local files whose recorded sha256 differ between ``a`` and ``b``)."""
    if not isinstance(source, LocalSource):
        return ""
    sums = [source.checksums(r) for r in (a, b)]
    return "".join(f"; its {n} differs" for n in TOKENIZER_FILES if sums[0].get(n) != sums[1].get(n))
