"""The probe of the ARM check: run model files on given raw input tensors and keep the raw
outputs, and (ONNX) the graph onnxruntime optimised for this CPU.

The same code runs on both sides: here (x86) in the checking process, and inside the
emulated board (``python3.11 -m edgeexport.measure.arm_probe REQUEST.json``), in that one
process (no binfmt: it cannot start another aarch64 program). It imports nothing but the
standard library, numpy, onnxruntime and ai_edge_litert: it runs on the board's light install.

REQUEST.json: {"out": DIR, "files": [{"name", "path", "kind": "onnx"|"tflite",
"inputs": FILE.npy}]}. Writes DIR/NAME.npy (the outputs, one row per input, in the file's own
output type) and DIR/NAME.optimized.onnx (ONNX), and DIR/probe.json: the machine, the runtime
versions, per file the output dtype and quantization (scale, zero point) of TFLite outputs.
"""
from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np


def _cpu_features() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Features", "flags"):
                return value.strip()
    except OSError:
        pass
    return None


def run_onnx(path: str, inputs: np.ndarray, optimized: Path) -> tuple[np.ndarray, dict]:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(optimized)
    session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out = np.concatenate([session.run(None, {name: x[None]})[0] for x in inputs])
    return out, {"dtype": str(out.dtype), "quantization": None}


def run_tflite(path: str, inputs: np.ndarray) -> tuple[np.ndarray, dict]:
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=path, num_threads=1)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    rows = []
    for x in inputs:
        interpreter.set_tensor(inp["index"], x[None].astype(inp["dtype"]))
        interpreter.invoke()
        rows.append(interpreter.get_tensor(out["index"]).copy())
    result = np.concatenate(rows)
    scale, zero = out["quantization"]
    quant = None if out["dtype"] == np.float32 else [float(scale), int(zero)]
    return result, {"dtype": str(result.dtype), "quantization": quant}


def probe(request: dict) -> dict:
    """Run every file of the request; write its outputs; the probe.json record."""
    import onnxruntime as ort
    out = Path(request["out"])
    out.mkdir(parents=True, exist_ok=True)
    try:
        from importlib.metadata import version
        litert = version("ai-edge-litert")
    except Exception:  # noqa: BLE001 (a metadata-less install)
        litert = "?"
    record = {"machine": platform.machine(), "cpu_features": _cpu_features(),
              "python": sys.version.split()[0], "onnxruntime": ort.__version__,
              "numpy": np.__version__, "litert": litert, "files": {}}
    for entry in request["files"]:
        inputs = np.load(entry["inputs"])
        if entry["kind"] == "onnx":
            result, info = run_onnx(entry["path"], inputs,
                                    out / f"{entry['name']}.optimized.onnx")
        else:
            result, info = run_tflite(entry["path"], inputs)
        np.save(out / f"{entry['name']}.npy", result)
        record["files"][entry["name"]] = info
    (out / "probe.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return record


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m edgeexport.measure.arm_probe REQUEST.json", file=sys.stderr)
        return 2
    probe(json.loads(Path(argv[0]).read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
