"""Fan the engine's per-checkpoint work out over Dask distributed.

One task per checkpoint step (all seeds of it together, as in the one-pass engine): the final step runs first
(every other step's CKA compares with it), then every other step runs on whichever worker is free. Workers
read checkpoints from the source (a shared folder, or the hub cache for :class:`~lmconv.checkpoints.suites.HubSource`);
tables come back to the client, which writes them to its own verified cache as each finishes, so an
interrupted run resumes with what is done and results merge with in-process runs (same cache keys).

By default an embedded ``LocalCluster`` of worker processes; ``scheduler="tcp://host:8786"`` joins a running
cluster (for example one started by ``dask-jobqueue`` on Slurm, with a GPU per worker and
``EngineOptions(device="cuda")``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from ..errors import LmconvError


@contextlib.contextmanager
def client(
    scheduler: str | None = None, workers: int = 2, threads_per_worker: int = 1, timeout: str = "30s"
) -> Iterator:
    """A Dask client: to ``scheduler`` when given, else to an embedded ``LocalCluster`` of ``workers``
    processes (no dashboard, loopback only), closed on exit."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as e:  # pragma: no cover - dask is pinned in requirements.lock
        raise LmconvError("dask.distributed is not installed", "run `make setup` (it is pinned in the lock)") from e
    if scheduler:
        try:
            c = Client(scheduler, timeout=timeout)
        except OSError as e:
            raise LmconvError(
                f"cannot reach the Dask scheduler at {scheduler!r}: {e}",
                "start it (dask scheduler / dask-jobqueue) and pass its address as tcp://HOST:PORT",
            ) from e
        try:
            yield c
        finally:
            c.close()
        return
    if workers < 1:
        raise LmconvError(f"--workers must be at least 1, got {workers}", "pass --workers 2 (one per core)")
    # every worker inherits this environment (LMCONV_HOME, HF_HUB_OFFLINE, thread settings)
    env = {k: v for k, v in os.environ.items() if k.startswith(("LMCONV_", "HF_", "TRANSFORMERS_", "OMP_"))}
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            env=env,
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c
