"""Run a model file on a batch of inputs in onnxruntime or LiteRT (one image at a time)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeexport.core.errors import UserError


def session_options(threads: int = 1):
    """onnxruntime session options running ops one after another on ``threads`` threads
    (onnxruntime's default is one per core)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return so


def onnx_session(path: Path, threads: int = 1, profile_prefix: str | None = None):
    import onnxruntime as ort
    so = session_options(threads)
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for bad files
        raise UserError(f"{path}: not a loadable ONNX model ({_first_line(e)})") from None


def run_onnx(path: Path, inputs: np.ndarray, threads: int = 1) -> np.ndarray:
    session = onnx_session(path, threads)
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[None]})[0] for x in inputs])


def litert_interpreter(path: Path, threads: int = 1):
    from ai_edge_litert.interpreter import Interpreter
    data = read_tflite_bytes(path)
    try:
        interpreter = Interpreter(model_content=data, num_threads=threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise UserError(f"{path}: not a loadable TFLite model ({_first_line(e)})") from None
    return interpreter


def read_tflite_bytes(path: Path) -> bytes:
    """The file's bytes, refusing anything without the TFLite identifier."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror})") from None
    # A .tflite flatbuffer carries the identifier "TFL3" at bytes 4..8.
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise UserError(f"{path}: not a TFLite flatbuffer (missing the TFL3 identifier)")
    return data


def run_litert(path: Path, inputs_nchw: np.ndarray, threads: int = 1) -> np.ndarray:
    """Feed float NCHW images to a .tflite model (NHWC, quantizing if its input is integer);
    return float outputs (dequantized if its output is integer)."""
    interpreter = litert_interpreter(path, threads)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    results = []
    for x in inputs_nchw:
        interpreter.set_tensor(inp["index"], quantize(x.transpose(1, 2, 0)[None], inp))
        interpreter.invoke()
        results.append(dequantize(interpreter.get_tensor(out["index"]), out))
    return np.concatenate(results)


def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype == np.float32:
        return x.astype(np.float32)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y.astype(np.float32)
    scale, zero = detail["quantization"]
    return (y.astype(np.float32) - zero) * scale


def _first_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else e.__class__.__name__
