"""Tables mode: a chapter runs from a release bundle's tables (``make release``), with no training and no
checkpoints, so a class can read the default suite's real results on any laptop.

Set ``LMCONV_TABLES`` to the bundle's folder (``lmconv chapter NAME --tables BUNDLE`` does it for one chapter).
Then :func:`lmconv.paths.suite_dir` is the bundle's copy of each suite (``tables/{profile}/runs``: every run's
logs and spectra, and per checkpoint its ``checksums.json`` and ``config.json``, but no weights), and
:func:`lmconv.analysis.run` returns the tables the book's own chapters computed, found by their request
(:func:`lmconv.analysis.request_id`) instead of running the engine. Every file is checked against the bundle's
``SHA256SUMS`` before it is read. What needs the models themselves (an exercise that loads a checkpoint, an
analysis with other sizes, seeds, steps or probe than the book ran) stops with an error that says so.
"""

from __future__ import annotations

from functools import cache, cached_property
from pathlib import Path

import pandas as pd
import transformers

from .. import paths
from ..errors import LmconvError
from ..io import read_json, sha256_file
from .suites import TOKENIZER_FILES, CheckpointRef, LocalSource

SUMS = "SHA256SUMS"
TOKENIZER = "tokenizer"  # tables/{profile}/tokenizer: the suite's one tokenizer (the checkpoints do not carry it)


def _fix_bundle(root: Path) -> str:
    return f"download the release bundle again (or run `sha256sum -c {SUMS}` in {root} to see which files differ)"


class Bundle:
    """A release bundle's folder, its files checked against ``SHA256SUMS`` (each folder once per process)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if not (self.root / SUMS).is_file() or not (self.root / "tables").is_dir():
            raise LmconvError(
                f"{paths.TABLES_ENV}={self.root} is not a release bundle (it needs {SUMS} and tables/)",
                f"point {paths.TABLES_ENV} at the folder `make release` writes (lmconv-VERSION-DATE, unpacked), "
                "or unset it to train the suites here",
            )
        self._checked: set[str] = set()

    @cached_property
    def sums(self) -> dict[str, str]:
        out = {}
        for line in (self.root / SUMS).read_text(encoding="utf-8").splitlines():
            sha, _, rel = line.partition("  ")
            if len(sha) != 64 or not rel:
                raise LmconvError(f"{self.root / SUMS} has a malformed line: {line[:120]!r}", _fix_bundle(self.root))
            out[rel] = sha
        return out

    def profiles(self) -> list[str]:
        return sorted(p.name for p in (self.root / "tables").iterdir() if (p / "runs").is_dir())

    def check(self, folder: Path) -> None:
        """Verify every file the bundle lists under ``folder`` (once per process); a missing or altered file is
        named with the way out."""
        prefix = folder.relative_to(self.root).as_posix().rstrip("/") + "/"
        if prefix in self._checked:
            return
        for rel, sha in self.sums.items():
            if rel.startswith(prefix):
                f = self.root / rel
                if not f.is_file():
                    raise LmconvError(f"the release bundle lacks {rel}, which its {SUMS} lists", _fix_bundle(self.root))
                if sha256_file(f) != sha:
                    raise LmconvError(
                        f"{f} does not match its sha256 in {self.root / SUMS} (corrupt or truncated)",
                        _fix_bundle(self.root),
                    )
        self._checked.add(prefix)

    def suite_root(self, profile: str) -> Path:
        root = self.root / "tables" / profile / "runs"
        if not root.is_dir():
            raise LmconvError(
                f"the release bundle {self.root} holds no tables of the {profile!r} suite (it has: "
                f"{', '.join(self.profiles()) or 'none'})",
                f"run the chapter with one of those profiles (-p profile NAME), or unset {paths.TABLES_ENV} and "
                f"train it: lmconv train --profile {profile}",
            )
        self.check(root)
        return root


@cache
def _open(root: Path) -> Bundle:
    return Bundle(root)


def active() -> Bundle | None:
    """The bundle of tables mode (``$LMCONV_TABLES``), or None when the suites are trained here."""
    root = paths.tables_bundle()
    return _open(root) if root else None


class BundleSource(LocalSource):
    """A suite as a release bundle holds it: the checkpoints' checksums and configs without their weights, one
    tokenizer, and the tables of every analysis the book ran."""

    def __init__(self, bundle: Bundle, profile: str) -> None:
        super().__init__(bundle.suite_root(profile))
        self.bundle, self.profile = bundle, profile

    def load_model(self, ref: CheckpointRef, dtype=None):
        raise LmconvError(
            f"tables mode ({paths.TABLES_ENV}={self.bundle.root}) has the {self.profile!r} suite's tables, not its "
            f"checkpoints: the model {ref} cannot be loaded",
            f"unset {paths.TABLES_ENV} and train the suite (lmconv train --profile {self.profile}) to run what "
            "needs the models",
        )

    def load_tokenizer(self, ref: CheckpointRef) -> transformers.PreTrainedTokenizerBase:
        folder = self.root.parent / TOKENIZER
        self.bundle.check(folder)
        sums = self.checksums(ref)
        for name in TOKENIZER_FILES:
            if name in sums and sha256_file(folder / name) != sums[name]:
                raise LmconvError(
                    f"the release bundle's tokenizer ({folder / name}) is not the one {ref} was trained with "
                    "(its checksums.json records another sha256)",
                    _fix_bundle(self.bundle.root),
                )
        return transformers.AutoTokenizer.from_pretrained(str(folder))

    def tables(self, family: str, request: dict, request_id: str, names: tuple[str, ...]) -> dict[str, pd.DataFrame]:
        """The tables of one analysis the book ran (its ``request``), as the release wrote them."""
        folder = self.root.parent / family / request_id
        if not (folder / "request.json").is_file():
            raise LmconvError(
                f"tables mode: the release bundle holds no analysis of the {self.profile!r} suite with sizes "
                f"{request['sizes']}, seeds {request['seeds']}, {len(request['steps'])} steps and this probe; it "
                f"holds {self.describe(family)}",
                "run the chapter with the parameters the book used (its defaults), or unset "
                f"{paths.TABLES_ENV} and train the suite (lmconv train --profile {self.profile})",
            )
        self.bundle.check(folder)
        if read_json(folder / "request.json")["request"] != request:
            raise LmconvError(f"{folder / 'request.json'} records another analysis", _fix_bundle(self.bundle.root))
        return {name: pd.read_parquet(folder / f"{name}.parquet") for name in names}

    def describe(self, family: str) -> str:
        """The analyses the bundle holds for ``family``, in words."""
        got = []
        for f in sorted((self.root.parent / family).glob("*/request.json")):
            r = read_json(f)["request"]
            got.append(f"sizes {r['sizes']} x seeds {r['seeds']} at {len(r['steps'])} steps")
        return "; ".join(got) or "none"
