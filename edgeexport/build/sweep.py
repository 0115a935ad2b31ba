"""`edgeexport build`: the α/ρ sweep for a target, incremental and parallel.

Where exports and measurements run is a Runner's job: here (LocalRunner: parallel export
processes, then measurements one at a time) or on a Dask farm (edgeexport.build.farm). A variant's
directory is complete when its build.json (written last, atomically) carries the cache key
of its inputs; such a variant is not rebuilt, and an interrupted build resumes from there.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Protocol

from edgeexport.contracts.artifacts import (
    PRECISIONS,
    REPORTS,
    ArtifactError,
    BuildRecord,
    Card,
    Estimates,
    FileEntry,
    Headline,
    Index,
    IndexEntry,
    Measured,
    Profile,
    measurement_key,
    model_file,
    read_record,
    write_record,
)
from edgeexport.contracts.placement import Placement
from edgeexport.contracts.variant import Variant
from edgeexport.core.errors import UserError
from edgeexport.core.fileio import exclusive, file_entry, safe_relative, sha256, write_json
from edgeexport.core.lifetime import die_with_parent
from edgeexport.targets import Target

if TYPE_CHECKING:
    from edgeexport.core.device_address import Device

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")
PROFILE_RUNS, PROFILE_WARMUP = 30, 5
LOCK_FILE = ".build.lock"
# Written beside a finished export with the key of what shaped its files (every input but
# where it is measured): a build stopped before measuring it (a board lost mid-build) measures
# it on the rerun without exporting it again, and `build --device` measures the exports of a
# local build on a board without exporting them again.
EXPORTED = ".exported.json"
MEASUREMENT_ONLY = ("device", "arm_check")  # inputs that change the measurements, not the files
# Modules that do not shape a variant's files (paths under edgeexport/): changing them
# rebuilds nothing. Every other module of the package, the models and the targets do.
NOT_SHAPING = ("__init__.py", "__main__.py", "cli/", "build/", "distribute/", "core/console.py",
               "estimate/fit_data.py", "analysis/cache.py")


@dataclass
class BuildPlan:
    target: Target
    variants: list[Variant]
    out: Path
    weights_dir: Path | None = None
    calib: Path | None = None
    jobs: int = 1
    formats: tuple[str, ...] = ("onnx", "tflite")
    device: "Device | None" = None  # measure on this board over SSH instead of here
    # the emulated board (rpi4, rpi5) of the ARM check of every variant (edgeexport.app.arm_check)
    arm_board: str | None = None
    # what ``device`` said it is when its own facts say emulated (BoardFacts.emulated): it
    # runs the files, time-free, and the times are measured here
    device_emulated: str | None = None


@dataclass
class BuildOutcome:
    built: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)  # variant → why it was (re)built
    seconds: float = 0.0
    device_error: str | None = None  # the board became unusable; later variants not measured
    device_emulated: str | None = None  # the board said it is emulated (BuildPlan)


def default_grid(target: Target, families: list[str] | None, alphas: list[float] | None,
                 resolutions: list[int] | None, num_classes: int = 1000) -> list[Variant]:
    """The families' default α × resolution grids, narrowed by the target file, then by
    the command line."""
    from edgeexport.models import FAMILIES, family
    variants = []
    for name in families or list(FAMILIES):
        fam = family(name)
        grid = target.grid.get(name, {})
        fam_alphas = alphas or grid.get("alphas") or list(fam.alphas)
        fam_res = resolutions or grid.get("resolutions") or list(fam.resolutions)
        variants += [Variant(name, float(a), int(r), num_classes)
                     for a in fam_alphas for r in fam_res]
    return variants


def weights_for(variant: Variant, weights_dir: Path | None) -> Path | None:
    """``<family>_<alpha>.{safetensors,pt,pth}`` in the weights directory, α written any way
    that parses to the variant's (``1``, ``1.0``, ``0.50``); weights do not depend on
    resolution. None: random initialisation. Two files for one variant are refused."""
    if weights_dir is None:
        return None
    found = []
    for path in sorted(weights_dir.iterdir()):
        family_name, _, alpha = path.stem.rpartition("_")
        if path.suffix not in WEIGHT_SUFFIXES or family_name != variant.family:
            continue
        try:
            matches = float(alpha) == variant.alpha
        except ValueError:
            raise UserError(f"--weights {path}: cannot read α from {path.name!r} "
                            f"(expected {variant.family}_<alpha>{path.suffix})") from None
        if matches and path.is_file():
            found.append(path)
    if len(found) > 1:
        raise UserError(f"--weights {weights_dir}: {' and '.join(p.name for p in found)} are "
                        f"both weights for {variant.family} α {variant.alpha:g}; keep one")
    return found[0] if found else None


def shaping_sources() -> list[tuple[str, Path]]:
    """The code that shapes a variant's files, as (name, path): the stage modules, the models,
    the target loader."""
    import importlib.util
    found = []
    for package in ("edgeexport", "edgeexport.models"):
        (root,) = importlib.util.find_spec(package).submodule_search_locations
        for path in sorted(Path(root).rglob("*.py")):
            name = path.relative_to(root).as_posix()
            if package == "edgeexport" and name.startswith(NOT_SHAPING):
                continue
            found.append((f"{package}/{name}", path))
    found.append(("edgeexport.targets", Path(importlib.util.find_spec("edgeexport.targets").origin)))
    return found


def source_digest() -> str:
    """The code that shapes a variant's files is an input too: a changed stage rebuilds
    everything; a changed report or CLI does not. No torch import: a farm's board computes it
    too, to show it measures with the same code."""
    digest = hashlib.sha256()
    for name, path in shaping_sources():
        digest.update(name.encode() + path.read_bytes())
    return digest.hexdigest()


def calibration_digest(calib: Path | None) -> str:
    if calib is None:
        return "synthetic"
    from edgeexport.inputs.imagesets import list_images
    files, _, _ = list_images(calib)
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(calib)).encode() + b"\0" + sha256(path).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheKey:
    """A variant's inputs, each as a digest, and their hash: the key its build.json carries.
    Kept apart in build.json, the inputs say which one changed (`build --dry-run`)."""
    inputs: dict[str, str]

    @property
    def key(self) -> str:
        return _digest(self.inputs)

    @property
    def export_key(self) -> str:
        return _digest({k: v for k, v in self.inputs.items() if k not in MEASUREMENT_ONLY})


def cache_key(variant: Variant, plan: BuildPlan, calib_digest: str, source: str) -> CacheKey:
    from edgeexport.core.versions import tool_versions
    weights = weights_for(variant, plan.weights_dir)
    parts = {"variant": variant.to_json(), "weights": sha256(weights) if weights else None,
             "calibration": calib_digest, "tools": tool_versions(), "source": source,
             # The target file's text, and for `local` the CPU detected here.
             "target": [plan.target.source, plan.target.cpu], "formats": list(plan.formats)}
    if plan.device is not None:  # measured on a board: not interchangeable with a local build
        parts["device"] = plan.device.name
    if plan.arm_board is not None:  # its card carries the ARM check of that board
        parts["arm_check"] = plan.arm_board
    return CacheKey({name: _digest(value) for name, value in parts.items()})


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def rebuild_reason(directory: Path, key: CacheKey) -> str | None:
    """None when the directory is complete for this key: its build.json carries the key and
    every file it lists is there with its sha256. Otherwise why it must be rebuilt; a missing,
    stale, corrupt or hostile build.json (paths outside the directory) included."""
    if not (directory / BuildRecord.FILE).exists():
        return "not built yet"
    try:
        record = read_record(directory, BuildRecord)
    except ArtifactError:
        return f"{BuildRecord.FILE} unreadable or of another edgeexport version"
    if record.cache_key != key.key:
        changed = sorted(name for name in key.inputs.keys() | record.inputs.keys()
                         if key.inputs.get(name) != record.inputs.get(name))
        return f"changed: {', '.join(changed)}" if record.inputs else "built from other inputs"
    return _files_differ(directory, record.files, BuildRecord.FILE)


def _files_differ(directory: Path, files: dict[str, FileEntry], listed_in: str) -> str | None:
    """None when every listed file is in the directory with its sha256; else the first that is
    not (a path outside the directory included)."""
    for name, entry in files.items():
        try:
            if sha256(safe_relative(directory, name)) != entry.sha256:
                return f"{name}: sha256 differs from {listed_in}"
        except ValueError:
            return f"{listed_in} lists a path outside the variant ({name!r})"
        except OSError:
            return f"{name}: missing"
    return None


def is_exported(directory: Path, key: CacheKey) -> bool:
    """An export of these inputs whose card lists every file, each present with its sha256."""
    try:
        if json.loads((directory / EXPORTED).read_text("utf-8")).get("export_key") != \
                key.export_key:
            return False
        card = read_record(directory, Card)
    except (ArtifactError, ValueError, OSError, AttributeError):
        return False
    return bool(card.files) and _files_differ(directory, card.files, Card.FILE) is None


def build_lock(root: Path):
    """One build at a time per output directory: a second one fails at once, naming the first."""
    return exclusive(root, "build", LOCK_FILE)


def export_variant(variant: Variant, plan: BuildPlan, directory: Path) -> None:
    """Worker: the export of the export command, into a fresh directory."""
    import torch

    from edgeexport.export.pipeline import ExportOptions, run_export
    torch.set_num_threads(1)
    if directory.exists():
        shutil.rmtree(directory)
    run_export(ExportOptions(variant=variant, target=plan.target, out=directory,
                             formats=plan.formats, weights=weights_for(variant, plan.weights_dir),
                             calib=plan.calib))


def measure_variant(target: Target, directory: Path) -> dict[str, Measured]:
    """Profile the export directory on this machine: onnxruntime per layer, LiteRT end to end."""
    from edgeexport.measure.profile import profile
    measured = {}
    for precision in PRECISIONS:
        measured[measurement_key("onnxruntime", precision)] = profile(
            directory, target, "onnxruntime", precision, 1, PROFILE_RUNS, PROFILE_WARMUP)
        if (directory / model_file(precision, "tflite")).exists():
            measured[measurement_key("litert", precision)] = profile(
                directory, target, "litert", precision, 1, PROFILE_RUNS, PROFILE_WARMUP)
    return measured


def seal_variant(variant: Variant, plan: BuildPlan, directory: Path, key: CacheKey,
                 measured: dict[str, Measured], farm: Placement | None = None,
                 emulated: dict[str, dict] | None = None) -> None:
    """Write the measurements and the target's estimates, then seal the directory with
    build.json (``farm``: which farm workers exported and measured it; ``emulated``: the
    time-free runs of an emulated board, Profile.emulated)."""
    from edgeexport.estimate.estimates import estimate
    from edgeexport.measure.profile import read_analysis
    write_record(directory, Profile(measured, emulated or {}))
    analysis = read_analysis(directory)
    estimates = {}
    if plan.target.latency_model is not None and analysis is not None:
        estimates = {p: estimate(analysis, plan.target, p) for p in PRECISIONS}
    write_record(directory, Estimates(estimates))
    files = {p.name: FileEntry(**file_entry(p)) for p in sorted(directory.iterdir())
             if p.is_file() and p.name != BuildRecord.FILE and not p.name.startswith(".")}
    write_record(directory, BuildRecord(cache_key=key.key, inputs=key.inputs, variant=variant,
                                        files=files, farm=farm))


def emulated_runs(directory: Path, plan: BuildPlan) -> dict[str, dict]:
    """The variant's files run by the plan's board, which said it is emulated: each run
    time-free, keyed as the measurements are."""
    from edgeexport.measure.board import measure_on_device
    from edgeexport.measure.emulator import time_free
    return {key: time_free(m, plan.device.name) for key, m in measure_on_device(
        directory, plan.device, plan.target, PROFILE_RUNS, PROFILE_WARMUP).items()}


def check_on_arm(directory: Path, board: str, on_event, vid: str) -> str | None:
    """The ARM check of a measured variant into its card; the failure of a file that missed
    its tolerance on the emulated board (the variant fails like any other validation)."""
    from edgeexport.app.arm_check import arm_check, record_arm_check
    on_event(vid, "arm-check", board)
    check = arm_check(directory, board)
    record_arm_check(directory, check)
    return None if check.passed else check.failures[0]


class Runner(Protocol):
    """Where a build's exports and measurements run: here (LocalRunner) or on a Dask farm
    (edgeexport.build.farm.FarmRunner). Planning, caching, locking and the index stay in run_build."""

    def run(self, plan: BuildPlan, root: Path, todo: list[Variant], keys: dict[str, CacheKey],
            on_event: Callable[[str, str, str], None]) -> Iterator[tuple[Variant, str | None]]:
        """Export, measure and seal every variant of ``todo`` into root/<id>/; yield each
        variant with None once sealed, or with a one-line reason once it failed."""
        ...


class LocalRunner:
    """Exports in parallel processes on this machine, then measures here one at a time, so
    that no timing is taken while another variant is being exported on the same cores."""

    device_error: str | None = None  # the plan's board became unusable (edgeexport.measure.board)

    def run(self, plan, root, todo, keys, on_event):
        from edgeexport.measure.board import DeviceError, measure_on_device
        failed: dict[Variant, str] = {}
        # Exported by an earlier run (which lost its board before measuring them, or measured
        # them elsewhere): measure only.
        ready = [v for v in todo if is_exported(root / v.id, keys[v.id])]
        exported = _export_all([v for v in todo if v not in ready], plan, root, failed,
                               on_event, keys)
        yield from failed.items()
        for v in sorted(ready + exported, key=plan.variants.index):
            if self.device_error is not None:  # the board is gone: a rerun measures the rest
                yield v, f"not measured: {self.device_error}"
                continue
            on_event(v.id, "measure", "")
            directory = root / v.id
            try:
                emulated = None
                if plan.device is not None and plan.device_emulated is None:
                    measured = measure_on_device(directory, plan.device, plan.target,
                                                 PROFILE_RUNS, PROFILE_WARMUP)
                else:
                    measured = measure_variant(plan.target, directory)
                if plan.device_emulated is not None:
                    emulated = emulated_runs(directory, plan)
                if plan.arm_board is not None:
                    arm_failure = check_on_arm(directory, plan.arm_board, on_event, v.id)
                    if arm_failure is not None:
                        yield v, arm_failure
                        continue
                seal_variant(v, plan, directory, keys[v.id], measured, emulated=emulated)
                yield v, None
            except DeviceError as e:
                self.device_error = str(e)
                yield v, str(e)
            except Exception as e:
                yield v, one_line(e)


def plan_build(plan: BuildPlan) -> tuple[dict[str, CacheKey], dict[str, str | None]]:
    """Each variant's cache key, and why it must be (re)built (None: complete, cached)."""
    root = plan.out / plan.target.name
    calib_digest = calibration_digest(plan.calib)
    source = source_digest()
    keys = {v.id: cache_key(v, plan, calib_digest, source) for v in plan.variants}
    return keys, {v.id: rebuild_reason(root / v.id, keys[v.id]) for v in plan.variants}


def run_build(plan: BuildPlan,
              on_event: Callable[[str, str, str], None] = lambda v, stage, detail: None,
              runner: Runner | None = None) -> BuildOutcome:
    """on_event(variant_id, stage, detail): stage in cached/export/exported/measure/done/failed.
    ``runner``: where exports and measurements run (default: here, LocalRunner)."""
    start = time.perf_counter()
    outcome = BuildOutcome()
    root = plan.out / plan.target.name
    with build_lock(root):
        keys, reasons = plan_build(plan)
        todo = []
        for v in plan.variants:
            if reasons[v.id] is None:
                outcome.cached.append(v.id)
                on_event(v.id, "cached", "")
            else:
                outcome.reasons[v.id] = reasons[v.id]
                todo.append(v)
        if plan.device is not None and todo:  # an unusable board: no work
            from edgeexport.measure.board import board_facts
            facts = board_facts(plan.device)
            for warning in facts.warnings():
                on_event(plan.device.name, "warning", warning)
            if facts.emulated:
                on_event(plan.device.name, "emulated", f"{facts.emulated}: it runs the files, "
                         "time-free; the times are measured here")
                plan = replace(plan, device_emulated=facts.emulated)
                outcome.device_emulated = facts.emulated
        if todo:
            runner = runner or LocalRunner()
            for v, failure in runner.run(plan, root, todo, keys, on_event):
                if failure is None:
                    outcome.built.append(v.id)
                    on_event(v.id, "done", "")
                else:
                    outcome.failed[v.id] = failure
                    on_event(v.id, "failed", failure)
            outcome.device_error = getattr(runner, "device_error", None)
        write_index(plan, root, outcome)
    outcome.seconds = time.perf_counter() - start
    return outcome


def _export_all(todo: list[Variant], plan: BuildPlan, root: Path, failed: dict[Variant, str],
                on_event, keys: dict[str, CacheKey]) -> list[Variant]:
    """Export in parallel processes; the exported variants, in plan order."""
    exported = []
    context = multiprocessing.get_context("spawn")
    # Workers die with this process (a killed build leaves none writing into its directory).
    with ProcessPoolExecutor(max_workers=max(1, plan.jobs), mp_context=context,
                             initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
        futures = {}
        for v in todo:
            on_event(v.id, "export", "")
            futures[pool.submit(export_variant, v, plan, root / v.id)] = v
        for future in as_completed(futures):
            v = futures[future]
            try:
                future.result()
                write_json(root / v.id / EXPORTED, {"export_key": keys[v.id].export_key})
                exported.append(v)
                on_event(v.id, "exported", "")
            except Exception as e:  # one variant's failure must not stop the others
                failed[v] = one_line(e)
    return sorted(exported, key=plan.variants.index)


def one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{e.__class__.__name__}: {text[0] if text else ''}"[:300]


def index_entry(root: Path, variant: Variant) -> IndexEntry:
    """A sealed variant's files (relative to the index) and headline figures."""
    directory = root / variant.id
    record = read_record(directory, BuildRecord)
    headline = Headline.of(read_record(directory, Card), read_record(directory, Profile),
                           read_record(directory, Estimates))
    return IndexEntry(id=variant.id, variant=variant,
                      files={f"{variant.id}/{name}": e for name, e in record.files.items()},
                      headline=headline)


def write_index(plan: BuildPlan, root: Path, outcome: BuildOutcome) -> Index:
    """index.json over every complete variant of the plan; then the reports, unless the index
    and the reports are already what they would be (a build that changed nothing)."""
    entries = [index_entry(root, v) for v in plan.variants
               if v.id not in outcome.failed and (root / v.id / BuildRecord.FILE).is_file()]
    index = Index(target=plan.target.name, variants=entries,
                  failed=dict(sorted(outcome.failed.items())))
    text = json.dumps(index.to_json(), indent=2, sort_keys=True) + "\n"
    unchanged = ((root / Index.FILE).is_file()
                 and (root / Index.FILE).read_text("utf-8") == text
                 and all((root / name).is_file() for name in REPORTS))
    if unchanged:
        return index
    write_json(root / Index.FILE, index.to_json())
    if entries:
        from edgeexport.build.report import write_reports
        write_reports(root, plan.target, index)
    return index
