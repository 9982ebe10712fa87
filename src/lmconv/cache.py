"""Content-addressed tables: parquet files under a key that hashes every input, written atomically and
verified by sha256 whenever they are read. A corrupt or truncated entry is reported and recomputed."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from . import paths
from .errors import LmconvError
from .io import atomic_dir, read_json, sha256_file, sha256_json, write_json


class CacheCorruption(UserWarning):
    """A cached file did not match its recorded sha256; it is recomputed."""


def key_of(parts: dict) -> str:
    return sha256_json(parts)


class TableCache:
    """``{root}/{namespace}/{key[:2]}/{key}/`` holding ``{table}.parquet`` files and ``manifest.json``."""

    def __init__(self, namespace: str, root: Path | None = None) -> None:
        self.root = (root or paths.cache_dir()) / namespace

    def folder(self, key: str) -> Path:
        return self.root / key[:2] / key

    def load(self, key: str) -> dict[str, pd.DataFrame] | None:
        folder = self.folder(key)
        man_path = folder / "manifest.json"
        if not man_path.exists():
            return None
        try:
            man = read_json(man_path)
            out = {}
            for name, sha in man["files"].items():
                f = folder / f"{name}.parquet"
                if not f.exists() or sha256_file(f) != sha:
                    raise ValueError(f"{f.name} does not match its sha256")
                out[name] = pd.read_parquet(f)
            return out
        except Exception as e:  # corrupt manifest, missing or tampered file
            warnings.warn(f"cache entry {folder} is corrupt ({e}); recomputing it", CacheCorruption, stacklevel=2)
            shutil.rmtree(folder, ignore_errors=True)
            return None

    def save(self, key: str, tables: dict[str, pd.DataFrame], meta: dict | None = None) -> None:
        folder = self.folder(key)
        try:
            with atomic_dir(folder) as tmp:
                files = {}
                for name, df in tables.items():
                    f = tmp / f"{name}.parquet"
                    df.to_parquet(f, index=False)
                    files[name] = sha256_file(f)
                write_json(tmp / "manifest.json", {"files": files, "meta": meta or {}})
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
