"""`edgeexport build`: the α/ρ sweep for a target, incremental and parallel.

Exports run in parallel processes; measurements run afterwards one at a time, so that no
timing is taken while another variant is being exported on the same cores. A variant's
directory is complete when its build.json (written last, atomically) carries the cache key
of its inputs; such a variant is not rebuilt, and an interrupted build resumes from there.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from edgeexport.errors import UserError
from edgeexport.fileio import file_entry, safe_relative, sha256, write_json
from edgeexport.records import Variant
from edgeexport.targets import Target

if TYPE_CHECKING:
    from edgeexport.device import Device

BUILD_FILE = "build.json"
INDEX = "index.json"
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")
PROFILE_RUNS, PROFILE_WARMUP = 30, 5


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


@dataclass
class BuildOutcome:
    built: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    device_error: str | None = None  # the board became unusable; later variants not measured


def default_grid(target: Target, families: list[str] | None, alphas: list[float] | None,
                 resolutions: list[int] | None) -> list[Variant]:
    """The families' default α × resolution grids, narrowed by the target file, then by
    the command line."""
    from edgeexport.models import FAMILIES, family
    variants = []
    for name in families or list(FAMILIES):
        fam = family(name)
        grid = target.grid.get(name, {})
        fam_alphas = alphas or grid.get("alphas") or list(fam.alphas)
        fam_res = resolutions or grid.get("resolutions") or list(fam.resolutions)
        variants += [Variant(name, float(a), int(r)) for a in fam_alphas for r in fam_res]
    return variants


def weights_for(variant: Variant, weights_dir: Path | None) -> Path | None:
    """``<family>_<alpha>.{safetensors,pt,pth}`` in the weights directory (weights do not
    depend on resolution); None: random initialisation."""
    if weights_dir is None:
        return None
    for suffix in WEIGHT_SUFFIXES:
        path = safe_relative(weights_dir, f"{variant.family}_{variant.alpha:g}{suffix}")
        if path.is_file():
            return path
    return None


def _source_digest() -> str:
    """The pipeline's own code is an input too: a changed stage rebuilds everything."""
    import edgeexport
    import edgeexport.models
    digest = hashlib.sha256()
    for package in (edgeexport, edgeexport.models):
        root = Path(package.__file__).parent
        for path in sorted(root.glob("*.py")):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def calibration_digest(calib: Path | None) -> str:
    if calib is None:
        return "synthetic"
    from edgeexport.calibration import list_images
    files, _, _ = list_images(calib)
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(calib)).encode() + b"\0" + sha256(path).encode())
    return digest.hexdigest()


def cache_key(variant: Variant, plan: BuildPlan, calib_digest: str, source: str) -> str:
    from edgeexport.versions import tool_versions
    weights = weights_for(variant, plan.weights_dir)
    # The target file's text, and for `local` the CPU detected here.
    target = json.dumps([plan.target.source, plan.target.cpu], sort_keys=True)
    parts = {"variant": variant.to_json(), "weights": sha256(weights) if weights else None,
             "calibration": calib_digest, "tools": tool_versions(), "source": source,
             "target": hashlib.sha256(target.encode()).hexdigest(), "formats": plan.formats}
    if plan.device is not None:  # measured on a board: not interchangeable with a local build
        parts["device"] = plan.device.name
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def is_complete(directory: Path, key: str) -> bool:
    """build.json with this key, and every file it lists present with its hash."""
    try:
        record = json.loads((directory / BUILD_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if record.get("cache_key") != key:
        return False
    for name, entry in record.get("files", {}).items():
        path = safe_relative(directory, name)
        if not path.is_file() or path.stat().st_size != entry["bytes"]:
            return False
    return True


def export_variant(variant: Variant, plan: BuildPlan, directory: Path) -> None:
    """Worker: the export of the export command, into a fresh directory."""
    import torch
    from edgeexport.export import ExportOptions, run_export
    torch.set_num_threads(1)
    if directory.exists():
        shutil.rmtree(directory)
    run_export(ExportOptions(variant=variant, target=plan.target, out=directory,
                             formats=plan.formats, weights=weights_for(variant, plan.weights_dir),
                             calib=plan.calib))


def measure_here(directory: Path, target: Target) -> dict:
    from edgeexport.profile import profile
    measured = {}
    for precision in ("int8", "fp32"):
        measured[f"onnxruntime_{precision}"] = profile(
            directory, target, "onnxruntime", precision, 1, PROFILE_RUNS, PROFILE_WARMUP)
        if (directory / f"model.{precision}.tflite").exists():
            measured[f"litert_{precision}"] = profile(
                directory, target, "litert", precision, 1, PROFILE_RUNS, PROFILE_WARMUP)
    return measured


def measure_variant(variant: Variant, plan: BuildPlan, directory: Path, key: str) -> None:
    """Profile here or on the plan's board (onnxruntime per layer, LiteRT end to end),
    estimate for the target,
    then seal the directory with build.json."""
    from edgeexport.estimate import estimate
    from edgeexport.profile import ANALYSIS
    if plan.device is not None:
        from edgeexport.device import measure_on_device
        measured = measure_on_device(directory, plan.device, plan.target, PROFILE_RUNS,
                                     PROFILE_WARMUP)
    else:
        measured = measure_here(directory, plan.target)
    write_json(directory / "profile.json", measured)
    analysis = json.loads((directory / ANALYSIS).read_text())
    estimates = {}
    if plan.target.latency_model is not None:
        estimates = {p: estimate(analysis, plan.target, p) for p in ("int8", "fp32")}
    write_json(directory / "estimate.json", estimates)
    files = {p.name: file_entry(p) for p in sorted(directory.iterdir())
             if p.is_file() and p.name != BUILD_FILE and not p.name.startswith(".")}
    write_json(directory / BUILD_FILE, {"cache_key": key, "variant": variant.to_json(),
                                        "files": files})


def run_build(plan: BuildPlan,
              on_event: Callable[[str, str, str], None] = lambda v, stage, detail: None
              ) -> BuildOutcome:
    """on_event(variant_id, stage, detail): stage in cached/export/exported/measure/done/failed."""
    start = time.perf_counter()
    outcome = BuildOutcome()
    if plan.device is not None:  # before any work: a board that cannot measure stops here
        from edgeexport.device import board_facts
        for warning in board_facts(plan.device).warnings():
            on_event(plan.device.name, "warning", warning)
    root = plan.out / plan.target.name
    root.mkdir(parents=True, exist_ok=True)
    calib_digest = calibration_digest(plan.calib)
    source = _source_digest()
    keys = {v.id: cache_key(v, plan, calib_digest, source) for v in plan.variants}
    todo = []
    for v in plan.variants:
        if is_complete(root / v.id, keys[v.id]):
            outcome.cached.append(v.id)
            on_event(v.id, "cached", "")
        else:
            todo.append(v)

    exported = []
    if todo:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=max(1, plan.jobs), mp_context=context) as pool:
            futures = {}
            for v in todo:
                on_event(v.id, "export", "")
                futures[pool.submit(export_variant, v, plan, root / v.id)] = v
            for future in as_completed(futures):
                v = futures[future]
                try:
                    future.result()
                    exported.append(v)
                    on_event(v.id, "exported", "")
                except Exception as e:  # one variant's failure must not stop the others
                    outcome.failed[v.id] = _one_line(e)
                    on_event(v.id, "failed", outcome.failed[v.id])
    from edgeexport.device import DeviceError
    for v in sorted(exported, key=plan.variants.index):
        if outcome.device_error is not None:  # the board is gone: the rest wait for a rerun
            outcome.failed[v.id] = f"not measured: {outcome.device_error}"
            on_event(v.id, "failed", outcome.failed[v.id])
            continue
        on_event(v.id, "measure", "")
        try:
            measure_variant(v, plan, root / v.id, keys[v.id])
            outcome.built.append(v.id)
            on_event(v.id, "done", "")
        except DeviceError as e:
            outcome.device_error = str(e)
            outcome.failed[v.id] = str(e)
            on_event(v.id, "failed", outcome.failed[v.id])
        except Exception as e:
            outcome.failed[v.id] = _one_line(e)
            on_event(v.id, "failed", outcome.failed[v.id])
    write_index(plan, root, outcome)
    outcome.seconds = time.perf_counter() - start
    return outcome


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{e.__class__.__name__}: {text[0] if text else ''}"[:300]


def headline(directory: Path) -> dict:
    card = json.loads((directory / "card.json").read_text())
    measured = json.loads((directory / "profile.json").read_text())
    estimates = json.loads((directory / "estimate.json").read_text())
    head = {"params": card["params"], "macs": card["macs"],
            "int8_cosine_onnx": card["validation"]["onnx_int8_vs_onnx_fp32"]["cosine_mean"]}
    for name, report in measured.items():
        head[f"measured_{name}_p50_ms"] = report["end_to_end"]["p50_ms"]
    for precision, report in estimates.items():
        head[f"estimated_{precision}_ms"] = report["end_to_end"]["latency_ms"]
        head[f"estimated_{precision}_board_mj"] = report["energy"]["board_mj"]
    from edgeexport.board_report import estimate_error
    error = estimate_error({"measured": measured, "estimates": estimates})
    if error is not None:  # measured on the target's board: how far off the estimate was
        head["estimated_int8_error_vs_board"] = error
    return head


def write_index(plan: BuildPlan, root: Path, outcome: BuildOutcome) -> dict:
    """index.json over every complete variant of the plan; then the reports."""
    from edgeexport.report import write_reports
    entries = []
    for v in plan.variants:
        directory = root / v.id
        build_file = directory / BUILD_FILE
        if v.id in outcome.failed or not build_file.is_file():
            continue
        record = json.loads(build_file.read_text())
        entries.append({"id": v.id, "variant": v.to_json(),
                        "files": {f"{v.id}/{name}": entry
                                  for name, entry in record["files"].items()},
                        "headline": headline(directory)})
    index = {"target": plan.target.name, "variants": entries,
             "failed": dict(sorted(outcome.failed.items()))}
    write_json(root / INDEX, index)
    if entries:
        write_reports(root, plan.target, entries)
    return index
