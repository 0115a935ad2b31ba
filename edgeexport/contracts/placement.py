"""Where a farm ran a variant's stages: the ``farm`` section of its build.json.

No Dask import at module level: build.json is read where Dask is not installed.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerRecord:
    """A Dask worker as it describes itself, from inside the task it ran."""
    hostname: str
    pid: int
    address: str
    resources: dict[str, float]
    nthreads: int

    @classmethod
    def here(cls) -> "WorkerRecord":
        """Called inside a task: the worker running it."""
        from distributed import get_worker
        worker = get_worker()
        return cls(socket.gethostname(), os.getpid(), worker.address,
                   {k: float(v) for k, v in worker.state.total_resources.items()},
                   worker.state.nthreads)


@dataclass(frozen=True)
class Placement:
    exported_by: WorkerRecord
    measured_by: WorkerRecord
