"""int8 against fp32 for all four families at 1.0-224, LiteRT (XNNPACK) and onnxruntime, in one
interleaved run: p50 latencies, the int8/fp32 speed-up, the int8 .tflite's XNNPACK partition
count and the ops left outside XNNPACK, and the ops the int8 ONNX still runs in float after
onnxruntime's optimisation.

Each family is exported once with ``edgeexport export`` (random weights, synthetic calibration:
latency does not depend on the weights). Then every timed round calls each of the 16 models
once, in turn, so all of them see the same machine load; 1 thread each. Two clocks per call:
wall time (perf_counter) and the calling thread's CPU time (thread_time). With 1 thread both
runtimes compute in the calling thread, so CPU time leaves out the time other processes took
the core, which on a shared host inflates wall time; the speed-ups are computed on both.

Usage: python bench/int8_speed.py [--runs N] [--warmup N] [--families a,b] [--exports DIR]
(--exports keeps the exports there and reuses them on the next run.)
"""
import argparse
import os
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np
from interleaved import int8_isa, interleaved  # bench/interleaved.py

from edgeexport.core.runtimes import litert_interpreter, onnx_session
from edgeexport.int8.quantize_onnx import quantized_op_counts
from edgeexport.tflite.xnnpack import xnnpack_delegation

FAMILIES = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")
MODELS = (("litert", "fp32"), ("litert", "int8"), ("onnxruntime", "fp32"),
          ("onnxruntime", "int8"))


def export(family: str, out: Path) -> Path:
    if not (out / "card.json").exists():
        subprocess.run([sys.executable, "-m", "edgeexport", "export", family, "--alpha", "1.0",
                        "--resolution", "224", "--out", str(out)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return out


def runner(runtime: str, path: Path):
    """A zero-argument call running one inference on a fixed random input."""
    rng = np.random.default_rng(0)
    if runtime == "onnxruntime":
        session = onnx_session(path, threads=1)
        inp = session.get_inputs()[0]
        feed = {inp.name: rng.standard_normal([1, 3, 224, 224]).astype(np.float32)}
        return lambda: session.run(None, feed)
    interpreter = litert_interpreter(path, threads=1)
    detail = interpreter.get_input_details()[0]
    if detail["dtype"] == np.float32:
        x = rng.standard_normal(detail["shape"]).astype(np.float32)
    else:
        info = np.iinfo(detail["dtype"])
        x = rng.integers(info.min, info.max + 1, detail["shape"]).astype(detail["dtype"])
    interpreter.set_tensor(detail["index"], x)
    return interpreter.invoke


def float_ops(counts: dict) -> str:
    left = {op: c["float"] for op, c in counts.items() if c["float"]}
    return ", ".join(f"{n} {op}" for op, n in left.items()) or "none"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--exports", type=Path, default=None)
    args = parser.parse_args()
    families = args.families.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.exports or Path(tmp)
        dirs = {f: export(f, root / f) for f in families}
        suffix = {"onnxruntime": "onnx", "litert": "tflite"}
        calls = {(f, rt, p): runner(rt, dirs[f] / f"model.{p}.{suffix[rt]}")
                 for f in families for rt, p in MODELS}
        load_before = os.getloadavg()
        wall, cpu = interleaved(calls, args.runs, args.warmup)
        load_after = os.getloadavg()
        print(f"measured here: {int8_isa()}, "
              f"{os.cpu_count()} cores, 1 thread per model, {args.runs} interleaved rounds after "
              f"{args.warmup} warm-up; load average {load_before[0]:.1f} before, "
              f"{load_after[0]:.1f} after; ai-edge-litert {metadata.version('ai-edge-litert')}, "
              f"onnxruntime {metadata.version('onnxruntime')}; random weights, 1.0-224")
        for clock, times in (("thread CPU time", cpu), ("wall time", wall)):
            print(f"\np50 {clock} (ms)")
            print("| model | LiteRT fp32 | LiteRT int8 | int8/fp32 | XNNPACK partitions (int8) "
                  "| onnxruntime fp32 | onnxruntime int8 | int8/fp32 |")
            print("|---|---|---|---|---|---|---|---|")
            for f in families:
                p50 = {(rt, p): float(np.median(times[(f, rt, p)])) for rt, p in MODELS}
                parts = xnnpack_delegation(dirs[f] / "model.int8.tflite").partitions
                print(f"| {f} | {p50['litert', 'fp32']:.2f} | {p50['litert', 'int8']:.2f} | "
                      f"{p50['litert', 'fp32'] / p50['litert', 'int8']:.2f}× | {parts} | "
                      f"{p50['onnxruntime', 'fp32']:.2f} | {p50['onnxruntime', 'int8']:.2f} | "
                      f"{p50['onnxruntime', 'fp32'] / p50['onnxruntime', 'int8']:.2f}× |")
        print("\nint8 ops outside the fast path")
        for f in families:
            delegation = xnnpack_delegation(dirs[f] / "model.int8.tflite")
            outside = ", ".join(sorted({n.op for n in delegation.not_delegated})) or "none"
            print(f"  {f}: LiteRT not delegated: {outside}; onnxruntime float after "
                  f"optimisation: {float_ops(quantized_op_counts(dirs[f] / 'model.int8.onnx'))}")


if __name__ == "__main__":
    main()
