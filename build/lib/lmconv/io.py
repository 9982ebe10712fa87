"""Atomic writes and checksums: no partial file is ever visible under its final name."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import LmconvError

# Write failures the user fixes by freeing space or pointing LMCONV_HOME elsewhere (not a bug of ours).
DISK_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_json(obj: Any) -> str:
    """Hash of a JSON-able object in canonical form (sorted keys, no spaces)."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode())


def _init(err: LmconvError, problem: str, fix: str) -> None:
    """Set up an error that is both an :class:`LmconvError` and a standard one (whose own ``__init__`` differs)."""
    Exception.__init__(err, problem)
    err.problem, err.fix = problem, fix


class DiskError(LmconvError, OSError):
    """A write failed because the disk is full or the folder is read-only; names the path and the way out."""

    def __init__(self, e: OSError, path: str | Path) -> None:
        _init(
            self,
            f"cannot write {path}: {e.strerror or e} ({errno.errorcode.get(e.errno or 0, e.errno)})",
            "the disk is full or the folder is read-only: free space, or set LMCONV_HOME to a writable folder "
            "(the data home: corpus, suites, caches)",
        )
        self.errno, self.strerror, self.filename = e.errno, e.strerror, str(path)

    __str__ = LmconvError.__str__


class MalformedJSON(LmconvError, json.JSONDecodeError):
    """A JSON file that does not parse (a kill or a full disk while it was written, or a hand edit)."""

    def __init__(self, e: json.JSONDecodeError, path: str | Path) -> None:
        _init(
            self,
            f"{path} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}): damaged by a kill, a full "
            "disk or an edit",
            "delete it (or the checkpoint, state or cache folder holding it) and rerun the command that wrote it; "
            "lmconv train and lmconv analyze rebuild what is missing",
        )
        self.msg, self.doc, self.pos, self.lineno, self.colno = e.msg, e.doc, e.pos, e.lineno, e.colno

    __str__ = LmconvError.__str__


@contextlib.contextmanager
def disk_errors(path: str | Path) -> Iterator[None]:
    """Turn a full disk or a read-only folder met in the block into a :class:`DiskError` naming ``path``."""
    try:
        yield
    except LmconvError:
        raise
    except OSError as e:
        if e.errno not in DISK_ERRNOS:
            raise
        raise DiskError(e, path) from e
    except Exception as e:  # libraries report a failed write in their own words (torch: "file write failed")
        code = _unwritable(Path(path))
        if code is None:
            raise
        raise DiskError(OSError(code, os.strerror(code)), path) from e


def _unwritable(path: Path) -> int | None:
    """``EROFS`` or ``ENOSPC`` when the file system that would hold ``path`` is read-only or (nearly) full."""
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    if st.f_flag & os.ST_RDONLY:
        return errno.EROFS
    return errno.ENOSPC if st.f_bavail * st.f_frsize < 1 << 20 else None


def _umask() -> int:
    """The process's umask, read without changing it (``/proc``), else by setting and restoring it."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        lines = Path("/proc/self/status").read_text().splitlines()
        return int(next(ln for ln in lines if ln.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path`` in one step."""
    path = Path(path)
    with disk_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600: give the file what open() would have
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with disk_errors(path):
            yield tmp_path
            with open(tmp_path, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp_path, path)
            _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` atomically; a file that already holds exactly these bytes is left alone (so rerunning a
    finished command in a read-only data home writes nothing)."""
    path = Path(path)
    with contextlib.suppress(OSError):
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    """The JSON in ``path``; a file that does not parse raises :class:`MalformedJSON` naming it."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise MalformedJSON(e, path) from None


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` by one rename."""
    path = Path(path)
    with disk_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700: give the folder what mkdir() would have
    try:
        with disk_errors(path):
            yield tmp
            _commit_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _commit_dir(tmp: Path, path: Path) -> None:
    """Sync the files of ``tmp`` and move it onto ``path`` (the old folder aside, then gone)."""
    for f in tmp.rglob("*"):
        if f.is_file():
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
    _fsync_dir(path.parent)


def remove_stale_temporaries(folder: str | Path) -> int:
    """Undo interrupted atomic writes below ``folder``: delete temporaries (``.name.*.tmp``), and put back a
    folder that :func:`atomic_dir` had moved aside (``.name.old``) when the kill came before its replacement."""
    n = 0
    for p in Path(folder).rglob(".*.tmp"):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        n += 1
    for old in Path(folder).rglob(".*.old"):
        target = old.with_name(old.name[1:-4])
        if old.is_dir() and not target.exists():
            os.replace(old, target)  # the kill fell between atomic_dir's two renames: the old folder is the good one
        else:
            shutil.rmtree(old, ignore_errors=True)
        n += 1
    return n


@contextlib.contextmanager
def exclusive_lock(path: str | Path, what: str) -> Iterator[None]:
    """Hold a non-blocking ``flock`` on ``path`` (which records our pid) for the block; when another process
    holds it, stop with an error naming that process. The file is removed on release."""
    import fcntl

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o644))
    except OSError as e:
        if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        yield  # a read-only folder: this process can write nothing there (any try stops with a DiskError)
        return
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LmconvError(
                f"{what} is in use by another process (pid {pid}, which holds the lock {path})",
                f"wait for that process to finish, or stop it (kill {pid}) and rerun the command",
            ) from None
        with contextlib.suppress(FileNotFoundError):
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break  # locked the file that is still under that name (not one a releasing process just removed)
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)
