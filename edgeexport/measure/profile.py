"""Measure a model where it runs: end-to-end latency statistics, and per-layer kernel times
from onnxruntime's profiler mapped back to the static analysis' layer names.

Needs only the device install (numpy, onnxruntime, ai-edge-litert): no torch.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np

from edgeexport.contracts.artifacts import (
    ANALYSIS,
    PROFILE,
    EndToEnd,
    LayerLatency,
    Measured,
    Profile,
    measurement_key,
    model_file,
    read_record,
    write_record,
)
from edgeexport.contracts.variant import COMPUTE_OPS, Analysis, LayerCost
from edgeexport.core.board_facts import runs_on_cpu
from edgeexport.core.errors import UserError
from edgeexport.core.fileio import safe_relative
from edgeexport.estimate.energy import energy_summary, layer_energy_uj
from edgeexport.targets import Target, cpu_description

KERNEL_SUFFIX = "_kernel_time"


def resolve_model(path: Path, runtime: str | None,
                  precision: str) -> tuple[Path, str, Analysis | None]:
    """An export directory or a model file → (model file, runtime, static analysis or None)."""
    if path.is_dir():
        runtime = runtime or "onnxruntime"
        suffix = "onnx" if runtime == "onnxruntime" else "tflite"
        model = safe_relative(path, model_file(precision, suffix))
        if not model.is_file():
            raise UserError(f"{path}: no {model.name} (is it an export directory?)")
        return model, runtime, read_analysis(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file or directory")
    inferred = {".onnx": "onnxruntime", ".tflite": "litert"}.get(path.suffix)
    if inferred is None:
        raise UserError(f"{path}: not an .onnx or .tflite file")
    if runtime and runtime != inferred:
        raise UserError(f"{path}: a {path.suffix} file cannot run in {runtime}")
    return path, inferred, None


def read_analysis(directory: Path) -> Analysis | None:
    """The export's analysis.json, None if there is none (a bare model file was copied)."""
    path = directory / ANALYSIS
    return read_analysis_file(path) if path.is_file() else None


def read_analysis_file(path: Path) -> Analysis:
    """An analysis.json by path (``profile --analysis``: a board's cache keeps it apart)."""
    try:
        return Analysis.from_json(json.loads(path.read_text("utf-8")))
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{path}: not a readable analysis ({e})") from None


def _stats(times_ms: list[float]) -> dict:
    arr = np.asarray(times_ms)
    return {"p50_ms": float(np.percentile(arr, 50)), "p90_ms": float(np.percentile(arr, 90)),
            "mean_ms": float(arr.mean()), "std_ms": float(arr.std(ddof=1)) if len(arr) > 1
            else 0.0}


def _random_input(shape, dtype) -> np.ndarray:
    rng = np.random.default_rng(0)
    shape = [int(d) if isinstance(d, (int, np.integer)) and d > 0 else 1 for d in shape]
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max + 1, shape).astype(dtype)
    return rng.standard_normal(shape).astype(np.float32)


def _time_calls(call: Callable[[], object], runs: int, warmup: int,
                alongside: Callable[[], object] = lambda: None) -> list[float]:
    """Milliseconds per ``call()`` over ``runs`` after ``warmup`` untimed ones; ``alongside()``
    runs untimed after every call (the interleaved profiling session)."""
    times = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        call()
        elapsed = (time.perf_counter() - start) * 1e3
        alongside()
        if i >= warmup:
            times.append(elapsed)
    return times


def _onnx_feed(session) -> dict[str, np.ndarray]:
    inp = session.get_inputs()[0]
    return {inp.name: _random_input(inp.shape, np.float32)}


def time_onnx(model: Path, threads: int, runs: int, warmup: int) -> list[float]:
    from edgeexport.core.runtimes import onnx_session
    session = onnx_session(model, threads)
    feed = _onnx_feed(session)
    return _time_calls(lambda: session.run(None, feed), runs, warmup)


def time_litert(model: Path, threads: int, runs: int, warmup: int) -> list[float]:
    from edgeexport.core.runtimes import litert_interpreter
    interpreter = litert_interpreter(model, threads)
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], _random_input(detail["shape"], detail["dtype"]))
    return _time_calls(interpreter.invoke, runs, warmup)


def measure_onnx(model: Path, threads: int, runs: int,
                 warmup: int) -> tuple[list[float], list[tuple[str, str, float]], list[float]]:
    """Unprofiled run times (ms); per-node mean kernel time (ms) from onnxruntime's profiler, in
    execution order; and the profiled runs' own durations (ms).

    A plain and a profiling session run in alternation, so both see the same machine state
    (clock, neighbours): the gap between them is the profiler's own cost, not drift between
    two measuring phases."""
    from edgeexport.core.runtimes import onnx_session
    plain = onnx_session(model, threads)
    feed = _onnx_feed(plain)
    with tempfile.TemporaryDirectory() as tmp:
        profiled = onnx_session(model, threads, profile_prefix=os.path.join(tmp, "ort"))
        times = _time_calls(lambda: plain.run(None, feed), runs, warmup,
                            alongside=lambda: profiled.run(None, feed))
        events = json.loads(Path(profiled.end_profiling()).read_text())
    run_events = sorted((e for e in events if e.get("name") == "model_run"),
                        key=lambda e: e["ts"])[warmup:]
    kernels = sorted((e for e in events if e.get("cat") == "Node"
                      and e.get("name", "").endswith(KERNEL_SUFFIX)), key=lambda e: e["ts"])
    totals: dict[tuple[str, str], float] = {}
    for run in run_events:
        lo, hi = run["ts"], run["ts"] + run["dur"]
        for e in kernels:
            if lo <= e["ts"] <= hi:
                key = (e["name"][: -len(KERNEL_SUFFIX)], e.get("args", {}).get("op_name", "?"))
                totals[key] = totals.get(key, 0.0) + e["dur"]
    per_node = [(node, op, us / len(run_events) / 1e3) for (node, op), us in totals.items()]
    return times, per_node, [r["dur"] / 1e3 for r in run_events]


# Nodes onnxruntime adds that prepare the next kernel's input; other unnamed nodes (layout
# reorders back, decomposed activations, the output DequantizeLinear) finish the previous one.
INPUT_SIDE_OPS = {"ReorderInput", "QuantizeLinear", "Transpose", "DynamicQuantizeLinear"}


# onnxruntime names a fused Conv/Gemm + activation after the activation node.
COMPUTE_KERNELS = {"Conv", "FusedConv", "QLinearConv", "ConvInteger", "Gemm", "FusedGemm",
                   "QGemm", "MatMul", "FusedMatMul"}


def _compute_owner(static: list[LayerCost]) -> dict[str, str]:
    """act/hardswish/bn row → the compute row it follows (where a fused kernel's time belongs)."""
    owner, last = {}, None
    for row in static:
        if row.op in COMPUTE_OPS:
            last = row.name
        elif row.op in ("act", "hardswish", "bn") and last is not None:
            owner[row.name] = last
    return owner


def layer_of(node: str, known: set[str]) -> str | None:
    prefix = node.split("/", 1)[0]
    return prefix if prefix in known else None


def attribute(per_node: list[tuple[str, str, float]],
              analysis: Analysis | None) -> list[LayerLatency]:
    """Kernel times, in execution order, → layers. A node named after a layer (fused Conv +
    activation, QLinear kernels, Q/DQ nodes of its tensors) counts for that layer; a node
    onnxruntime created under a name of its own counts for the neighbouring layer in execution
    order (INPUT_SIDE_OPS: the next; others: the previous). Every kernel lands in a row, and
    each row lists the kernels it holds. Without an analysis, rows are node-name prefixes."""
    static = analysis.layers if analysis else []
    known = {layer.name for layer in static}
    owner = _compute_owner(static)
    times: dict[str, float] = defaultdict(float)
    kernels: dict[str, list[str]] = defaultdict(list)
    pending: list[tuple[str, float]] = []
    previous = None
    for node, op, ms in per_node:
        layer = layer_of(node, known) if known else node.split("/", 1)[0]
        if layer is None:
            if op in INPUT_SIDE_OPS or previous is None:
                pending.append((op, ms))
                continue
            layer = previous
        if op in COMPUTE_KERNELS:
            layer = owner.get(layer, layer)
        for pending_op, pending_ms in pending:
            times[layer] += pending_ms
            kernels[layer].append(pending_op)
        pending = []
        times[layer] += ms
        kernels[layer].append(op)
        previous = layer
    for pending_op, pending_ms in pending:  # trailing input-side nodes: the last layer
        times[previous or "(graph)"] += pending_ms
        kernels[previous or "(graph)"].append(pending_op)
    rows = [LayerLatency(layer.name, layer.op, times.pop(layer.name, 0.0), layer.macs,
                         layer.params, kernels=sorted(kernels.pop(layer.name, [])))
            for layer in static]
    rows += [LayerLatency(name, "node", ms, None, None, kernels=sorted(kernels[name]))
             for name, ms in sorted(times.items())]
    return rows


def profile(path: Path, target: Target, runtime: str | None = None, precision: str = "int8",
            threads: int = 1, runs: int = 50, warmup: int = 10,
            analysis_path: Path | None = None) -> Measured:
    """``analysis_path``: the static analysis for a bare model file (a board's cache holds
    the model and its analysis.json apart)."""
    from edgeexport.core.board_facts import gather
    model, runtime, analysis = resolve_model(path, runtime, precision)
    if not path.is_dir():  # a bare model.fp32.onnx is fp32 whatever --precision says
        precision = next((p for p in ("int8", "fp32") if model.name.startswith(f"model.{p}.")),
                         precision)
    if analysis_path is not None:
        analysis = read_analysis_file(analysis_path)
    board = gather()  # before timing: the state the runs start from
    layers: list[LayerLatency] = []
    overhead: dict[str, float] = {}
    if runtime == "onnxruntime":
        import onnxruntime
        version = onnxruntime.__version__
        times, per_node, profiled_runs = measure_onnx(model, threads, runs, warmup)
        layers = attribute(per_node, analysis)
        mean_ms = float(np.mean(times))
        overhead = {"layer_sum_ms": sum(r.latency_ms for r in layers),
                    "profiled_run_ms": float(np.mean(profiled_runs)),
                    "profiler_overhead": float(np.mean(profiled_runs)) / mean_ms - 1}
        note = ("per-layer: onnxruntime profiler kernel times, mean over the measured runs of a "
                "profiling session run in alternation with the end-to-end one; nodes "
                "onnxruntime adds (layout reorders, input quantization) count for the "
                "neighbouring layer; the profiler slows each kernel a little, so the rows are "
                "in profiled time (see profiler_overhead)")
    else:
        from importlib.metadata import version as pkg_version
        version = f"ai-edge-litert {pkg_version('ai-edge-litert')} (XNNPACK)"
        times = time_litert(model, threads, runs, warmup)
        note = ("per-layer times are not available from LiteRT's Python API; use --runtime "
                "onnxruntime for a per-layer profile")
    end_to_end = EndToEnd(**_stats(times), runs=runs, warmup=warmup, threads=threads,
                          runtime=runtime, runtime_version=version)
    compute = None
    if analysis:
        static = {x.name: x for x in analysis.layers}
        for row in layers:
            if row.name in static:
                row.energy_uj = layer_energy_uj(static[row.name], precision)
        compute = sum(layer_energy_uj(x, precision) for x in analysis.layers)
    energy = energy_summary(end_to_end.mean_ms, compute, target)
    if energy.board_mj is not None and runs_on_cpu(target.cpu["model"]):
        energy.board_source = (f"mean latency measured on {cpu_description()} × "
                               f"{energy.board_source}")
    elif energy.board_mj is not None:  # this machine's latency × another machine's power
        energy.board_mj = None
        energy.board_source = (f"not reported: measured on {cpu_description()}, not on a "
                               f"{target.name} board ({target.cpu['model']}), whose power "
                               f"would not go with this latency; `edgeexport estimate --target "
                               f"{target.name}` estimates the board's energy")
    return Measured(
        where={"cpu": cpu_description(), "machine": platform.node(),
               "target_profile": target.name},
        model=str(model), precision=precision, end_to_end=end_to_end,
        variant=analysis.variant if analysis else None, layers=layers, energy=energy,
        layer_note=note, board=board, board_warnings=board.warnings(), **overhead)


def save_profile(directory: Path, report: Measured) -> Path:
    """``report`` into ``directory``/profile.json (written atomically), beside the
    measurements of other runtimes and precisions already there (same key: replaced); so
    ``quant-report`` shows its latencies."""
    measurements = {}
    if (directory / PROFILE).is_file():
        measurements = read_record(directory, Profile).measurements
    key = measurement_key(report.end_to_end.runtime, report.precision)
    measurements[key] = report
    directory.mkdir(parents=True, exist_ok=True)
    return write_record(directory, Profile(measurements))
