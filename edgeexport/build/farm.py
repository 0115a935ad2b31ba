"""`edgeexport build --farm tcp://scheduler:8786`: exports and measurements on a Dask cluster.

dask.distributed does the scheduling; this module only says what runs where:
- an export runs on any worker that has this machine's edgeexport code and tool versions
  (a board with the light device install has no torch, so it never exports);
- a measurement runs only on a worker advertising the target as a resource (a Raspberry Pi 4
  joins with ``dask worker tcp://…:8786 --resources "rpi4=1" --nthreads 1``), and each takes
  the whole resource, so a board runs one measurement at a time.
Files travel as bytes with their sha256 (edgeexport.build.filepack), never as paths: the scheduler
and the workers may be on other hosts. The build's plan, cache and index stay in
edgeexport.build.sweep; this is only its Runner.

Faults:
- a worker that dies mid-measurement: Dask reschedules its task on another worker advertising
  the target (a measurement has no side effect on the board); after
  ``distributed.scheduler.allowed-failures`` deaths (3) the variant fails;
- no worker advertising the target (none at the start, or the last one left): after
  ``timeout`` seconds the waiting variants fail with a one-line reason, the ones already
  measured are sealed and kept, and a rerun resumes from them;
- the scheduler unreachable: a one-line UserError naming it.

Dask workers execute the code they are sent: a farm trusts its workers as much as the build
machine. What comes back is still checked: names through safe_relative, bytes by sha256.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

from edgeexport.build.filepack import FilePack
from edgeexport.build.sweep import (
    BuildPlan,
    export_variant,
    measure_variant,
    one_line,
    seal_variant,
    source_digest,
    weights_for,
)
from edgeexport.contracts.artifacts import (
    ANALYSIS,
    FORMATS,
    PRECISIONS,
    BuildRecord,
    Measured,
    model_file,
)
from edgeexport.contracts.placement import Placement, WorkerRecord
from edgeexport.contracts.variant import Variant
from edgeexport.core.errors import UserError
from edgeexport.core.fileio import safe_relative
from edgeexport.core.versions import tool_versions
from edgeexport.targets import Target

DEFAULT_TIMEOUT = 60.0
POLL_SECONDS = 1.0
# What a board needs to measure a variant (the analysis maps onnxruntime's nodes to layers).
MEASURED_FILES = (ANALYSIS, *(model_file(p, f) for f in FORMATS for p in PRECISIONS))


class FarmError(Exception):
    """A worker's answer that cannot be used (other code, other tools, a bad file)."""


# ---- what runs on the workers ----

def worker_facts(dask_worker) -> dict[str, Any]:
    """What decides which stages a worker may run (called through Client.run)."""
    return {"source": source_digest(), "tools": tool_versions(),
            "resources": dict(dask_worker.state.total_resources)}


def export_task(variant: Variant, plan: BuildPlan, weights: FilePack | None,
                calib: FilePack | None) -> dict[str, Any]:
    """Export one variant in a scratch directory of this worker; return its files."""
    with tempfile.TemporaryDirectory(prefix="edgeexport-export-") as scratch:
        scratch = Path(scratch)
        here = dataclasses.replace(plan, weights_dir=None, calib=None)
        if weights is not None:
            weights.write(scratch / "weights")
            here = dataclasses.replace(here, weights_dir=scratch / "weights")
        if calib is not None:
            calib.write(scratch / "calib")
            here = dataclasses.replace(here, calib=scratch / "calib")
        out = scratch / "out"
        export_variant(variant, here, out)
        if calib is not None:
            _name_calibration_as_on_client(out, here.calib, plan.calib)
        return {"files": FilePack.of_directory(out), "worker": WorkerRecord.here(),
                "source": source_digest(), "tools": tool_versions()}


def _name_calibration_as_on_client(out: Path, worker_dir: Path, client_dir: Path) -> None:
    """The card names its calibration set by path: the client's, as a local build does
    (same inputs → same bytes), not this worker's scratch copy."""
    from edgeexport.contracts.artifacts import CARD
    card = out / CARD
    quoted = lambda p: json.dumps(str(p))[1:-1]  # noqa: E731 (the path as it appears in JSON)
    card.write_text(card.read_text("utf-8").replace(quoted(worker_dir), quoted(client_dir)),
                    "utf-8")


def measure_task(target: Target, models: FilePack) -> dict[str, Any]:
    """Profile one variant's models on this worker (the board)."""
    with tempfile.TemporaryDirectory(prefix="edgeexport-measure-") as scratch:
        scratch = Path(scratch)
        models.write(scratch)
        measured = measure_variant(target, scratch)
    # The model's name, not this worker's scratch path.
    measured = {k: dataclasses.replace(m, model=PurePosixPath(m.model).name)
                for k, m in measured.items()}
    return {"measured": measured, "worker": WorkerRecord.here(), "source": source_digest()}


# ---- the client side ----

class FarmRunner:
    """edgeexport.build.sweep.Runner on a Dask scheduler at ``address``."""

    def __init__(self, address: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.address, self.timeout = address, timeout

    def run(self, plan, root, todo, keys, on_event):
        client = self._connect()
        pending: dict = {}
        try:
            yield from self._run(client, pending, plan, root, todo, keys, on_event)
        finally:
            if pending:
                client.cancel(list(pending))
            client.close()

    def _connect(self):
        try:
            import dask
            from distributed import Client
        except ImportError:
            raise UserError("--farm needs Dask: pip install 'edgeexport[farm]'") from None
        # Worker losses are reported per variant; Dask's own log lines would only repeat them.
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
        dask.config.set({"distributed.admin.large-graph-warning-threshold": "1TiB"})
        try:
            return Client(self.address, timeout=self.timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as e:
            raise UserError(f"cannot reach the Dask scheduler at {self.address} "
                            f"(waited {self.timeout:g} s: {one_line(e)})") from None

    def _run(self, client, pending, plan, root, todo, keys, on_event):
        from distributed import wait
        source, tools = source_digest(), tool_versions()
        resource = plan.target.name
        exporters = self._wait_for_workers(client, resource, source, tools)
        calib = None
        if plan.calib is not None:
            from edgeexport.inputs.imagesets import list_images
            files, _, _ = list_images(plan.calib)
            pack = FilePack.of(plan.calib, [p.relative_to(plan.calib).as_posix() for p in files])
            calib = client.scatter(pack, workers=exporters, broadcast=True, hash=False)
        for v in todo:
            weights = weights_for(v, plan.weights_dir)
            inputs = FilePack.of(weights.parent, [weights.name]) if weights else None
            on_event(v.id, "export", "")
            future = client.submit(export_task, v, plan, inputs, calib, pure=False,
                                   key=_key("export", v), workers=exporters,
                                   allow_other_workers=False)
            pending[future] = (v, "export", None)
        starved_since: dict[str, float] = {}
        while pending:
            try:
                with client.as_current():
                    done = wait(list(pending), timeout=POLL_SECONDS,
                                return_when="FIRST_COMPLETED").done
            except TimeoutError:
                done = set()
            for future in done:
                v, stage, exported_by = pending.pop(future)
                try:
                    result = future.result()
                    directory = root / v.id
                    if stage == "export":
                        exported_by = _receive_export(result, directory, source, tools)
                        on_event(v.id, "exported", exported_by.address)
                        models = FilePack.of(directory, [n for n in MEASURED_FILES
                                                         if (directory / n).is_file()])
                        on_event(v.id, "measure", "")
                        measure = client.submit(measure_task, plan.target, models, pure=False,
                                                key=_key("measure", v),
                                                resources={resource: 1})
                        pending[measure] = (v, "measure", exported_by)
                    else:
                        measured, measured_by = _receive_measurement(result, directory, source)
                        seal_variant(v, plan, directory, keys[v.id], measured,
                                     Placement(exported_by, measured_by))
                        yield v, None
                except Exception as e:  # one variant's failure must not stop the others
                    yield v, one_line(e)
                finally:
                    future.release()
            yield from self._fail_starved(client, pending, starved_since, exporters, resource)

    def _wait_for_workers(self, client, resource: str, source: str, tools: dict) -> list[str]:
        """The workers that may export; waits up to the timeout for them and for one worker
        advertising the target, then fails with what is missing."""
        deadline = time.monotonic() + self.timeout
        while True:
            facts = {a: f for a, f in client.run(worker_facts, on_error="return").items()
                     if isinstance(f, dict)}
            exporters = sorted(a for a, f in facts.items()
                               if f["source"] == source and f["tools"] == tools)
            boards = [a for a, f in facts.items() if resource in f["resources"]]
            if exporters and boards:
                return exporters
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if not boards:
            raise UserError(
                f"no Dask worker at {self.address} advertises the resource '{resource}' "
                f"(waited {self.timeout:g} s); on the board run: dask worker {self.address} "
                f"--resources \"{resource}=1\" --nthreads 1")
        differences = "; ".join(f"{a}: {_difference(f, source, tools)}"
                                for a, f in sorted(facts.items()))
        raise UserError(f"no Dask worker at {self.address} can export with this machine's "
                        f"edgeexport code and tools (waited {self.timeout:g} s; {differences})")

    def _fail_starved(self, client, pending, starved_since, exporters, resource):
        """Fail the variants waiting for a kind of worker that has been absent for longer than
        the timeout (Dask itself would wait for one forever)."""
        workers = client.scheduler_info(n_workers=-1)["workers"]
        present = {"export": any(a in workers for a in exporters),
                   "measure": any(resource in w.get("resources", {}) for w in workers.values())}
        why = {"export": "no worker able to export",
               "measure": f"no worker advertising '{resource}'"}
        now = time.monotonic()
        for stage in ("export", "measure"):
            waiting = [f for f, (_, s, _) in pending.items() if s == stage]
            if not waiting or present[stage]:
                starved_since.pop(stage, None)
                continue
            since = starved_since.setdefault(stage, now)
            if now - since < self.timeout:
                continue
            client.cancel(waiting)
            for future in waiting:
                v, _, _ = pending.pop(future)
                yield v, (f"{why[stage]} connected to the Dask scheduler at {self.address} "
                          f"for {self.timeout:g} s (the worker left?)")


def _key(stage: str, v: Variant) -> str:
    return f"edgeexport-{stage}-{v.id}-{uuid.uuid4().hex[:8]}"


def _difference(facts: dict, source: str, tools: dict) -> str:
    if facts["source"] != source:
        return "other edgeexport code"
    return ", ".join(f"{name} {facts['tools'].get(name)} (here {version})"
                     for name, version in tools.items() if facts["tools"].get(name) != version)


def _receive_export(result: dict, directory: Path, source: str, tools: dict) -> WorkerRecord:
    """Check the worker's files and code, then move them into place as one directory."""
    worker = result["worker"]
    if result["source"] != source or result["tools"] != tools:
        raise FarmError(f"worker {worker.address} exported with other code or tools "
                        f"({_difference(result, source, tools)})")
    files: FilePack = result["files"]
    if BuildRecord.FILE in files.files:
        raise FarmError(f"worker {worker.address} sent a {BuildRecord.FILE}: only this machine "
                        "seals")
    incoming = directory.parent / f".{directory.name}.incoming"
    shutil.rmtree(incoming, ignore_errors=True)
    try:
        files.write(incoming)
        shutil.rmtree(directory, ignore_errors=True)
        os.replace(incoming, directory)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    return worker


def _receive_measurement(result: dict, directory: Path, source: str
                         ) -> tuple[dict[str, Measured], WorkerRecord]:
    worker = result["worker"]
    if result["source"] != source:
        raise FarmError(f"worker {worker.address} measured with other edgeexport code")
    # Each measurement names its model file as it is on this machine.
    measured = {k: dataclasses.replace(m, model=str(safe_relative(directory, m.model)))
                for k, m in result["measured"].items()}
    return measured, worker
