"""Content-addressed tables: parquet files (and NumPy arrays beside them) under a key that hashes every input,
written atomically and verified by sha256 whenever they are read. A corrupt or truncated entry is reported and
recomputed."""

from __future__ import annotations

import contextlib
import shutil
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .. import paths
from ..errors import LmconvError
from ..io import atomic_dir, read_json, sha256_file, sha256_json, write_json


class CacheCorruption(UserWarning):
    """A cached file did not match its recorded sha256; it is recomputed."""


STALE_SECONDS = 3600.0  # a write's temporary older than this belongs to a writer that was killed


def remove_stale_writes(root: Path, older_than: float = STALE_SECONDS) -> int:
    """Delete the temporaries (``.{key}.*.tmp``, ``.{key}.old``) that killed writes of :meth:`TableCache.save`
    left in ``root/{key[:2]}/``, once they are ``older_than`` seconds (a live writer's are fresh); return how many."""
    n = 0
    now = time.time()
    for pattern in ("*/.*.tmp", "*/.*.old"):
        for p in root.glob(pattern):
            with contextlib.suppress(FileNotFoundError):
                if now - p.stat().st_mtime > older_than:
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                    n += 1
    return n


def key_of(parts: dict) -> str:
    return sha256_json(parts)


class TableCache:
    """``{root}/{namespace}/{key[:2]}/{key}/`` holding ``{table}.parquet`` files, ``{array}.npy`` files and
    ``manifest.json`` (the sha256 of each, under ``files`` and ``arrays``)."""

    def __init__(self, namespace: str, root: Path | None = None) -> None:
        self.root = (root or paths.cache_dir()) / namespace
        with contextlib.suppress(OSError):  # a read-only cache keeps its leftovers
            remove_stale_writes(self.root)

    def folder(self, key: str) -> Path:
        return self.root / key[:2] / key

    def load(
        self, key: str, expect: Iterable[str] = (), arrays: bool = True
    ) -> dict[str, pd.DataFrame | np.ndarray] | None:
        """The tables under ``key``, and its arrays unless ``arrays`` is False (None when absent); an entry that
        is corrupt, or lacks one of the names ``expect`` lists or a file its folder holds, is reported, removed
        and counts as absent."""
        folder = self.folder(key)
        man_path = folder / "manifest.json"
        if not man_path.exists():
            return None
        try:
            man = read_json(man_path)
            shas = {**man["files"], **man.get("arrays", {})}
            held = {**{n: "parquet" for n in man["files"]}, **{n: "npy" for n in man.get("arrays", {})}}
            on_disk = {(f.stem, f.suffix[1:]) for ext in ("parquet", "npy") for f in folder.glob(f"*.{ext}")}
            missing = sorted({n for n in expect if n not in held} | {n for n, ext in on_disk if held.get(n) != ext})
            if missing:
                raise ValueError(f"its manifest lacks the table(s) {missing}")
            out = {}
            for name, ext in held.items():
                if ext == "npy" and not arrays:
                    continue
                f = folder / f"{name}.{ext}"
                if not f.exists() or sha256_file(f) != shas[name]:
                    raise ValueError(f"{f.name} does not match its sha256")
                out[name] = pd.read_parquet(f) if ext == "parquet" else np.load(f, allow_pickle=False)
            return out
        except Exception as e:  # corrupt manifest, missing or tampered file
            warnings.warn(f"cache entry {folder} is corrupt ({e}); recomputing it", CacheCorruption, stacklevel=2)
            shutil.rmtree(folder, ignore_errors=True)
            return None

    def array_names(self, key: str) -> set[str]:
        """The arrays the manifest of ``key`` lists (read, not verified; empty when there is no such entry)."""
        try:
            return set(read_json(self.folder(key) / "manifest.json").get("arrays", {}))
        except (OSError, ValueError, AttributeError):
            return set()

    def save(self, key: str, tables: dict[str, pd.DataFrame | np.ndarray], meta: dict | None = None) -> None:
        folder = self.folder(key)
        try:
            with atomic_dir(folder) as tmp:
                files, arrays = {}, {}
                for name, value in tables.items():
                    if isinstance(value, np.ndarray):
                        np.save(f := tmp / f"{name}.npy", value, allow_pickle=False)
                        arrays[name] = sha256_file(f)
                    else:
                        value.to_parquet(f := tmp / f"{name}.parquet", index=False)
                        files[name] = sha256_file(f)
                write_json(tmp / "manifest.json", {"files": files, "arrays": arrays, "meta": meta or {}})
        except OSError as e:
            raise LmconvError(
                f"cannot write the metric cache in {self.root}: {e.strerror or e}",
                "the folder is read-only or the disk is full: free space, or set LMCONV_HOME to a writable folder",
            ) from e

    def get_or_compute(self, key: str, compute: Callable[[], dict[str, pd.DataFrame]], meta: dict | None = None):
        got = self.load(key)
        if got is None:
            got = compute()
            self.save(key, got, meta)
        return got

    def bytes_used(self) -> int:
        return sum(f.stat().st_size for f in self.root.rglob("*") if f.is_file()) if self.root.exists() else 0
