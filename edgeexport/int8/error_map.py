"""The per-layer error map: where int8 loses the signal, keyed by the analysis' module paths.

For each layer, the SQNR (dB, mean over images of 20·log10(‖x‖/‖x − x̂‖), onnxruntime's
``compute_signal_to_quantization_noice_ratio``) of its output tensor:
- ``onnx_local_db``: in the int8 ONNX model, the tensor before against after its own
  QuantizeLinear/DequantizeLinear pair: the noise this layer's int8 range adds by itself, as
  the next layer sees it: each channel weighed by the norm of the (BatchNorm-folded) weights
  of the Conv/Gemm that reads the tensor (``consumer_weighted_sqnr``; plain SQNR when no
  Conv/Gemm reads it). One range serves all channels of a tensor: a channel 100× larger than
  the rest sets the range and crushes the others, and the next layer scales them back up; the
  plain SQNR of the tensor hides that (the large channel holds most of the energy: 22.9 dB
  measured on such a V3, 2.3 dB weighted). A heavy-tailed tensor (a range set by a few
  images) also scores low here.
- ``onnx_db``: int8 ONNX activation against the fp32 ONNX one (accumulated through the net);
  both from onnxruntime's ``qdq_loss_debug``.
- ``tflite_db``: int8 ``.tflite`` tensor (dequantized) against the fp32 ``.tflite`` one, from
  ai-edge-quantizer's ``model_validator.compare_model`` (LiteRT reference kernels: XNNPACK
  does not keep intermediate tensors).
Latency: per-layer onnxruntime kernel time from profile.json when the directory was profiled
(joined by quant-report and report.html, never stored in card.json, which stays byte-identical
from run to run).
"""
from __future__ import annotations

import contextlib
import io
import math
import tempfile
import warnings
from pathlib import Path

import numpy as np

from edgeexport.contracts.int8 import ErrorMap, LayerError
from edgeexport.int8.layer_names import onnx_layer, tflite_module_outputs

# Rows whose ops fold into the compute layer before them in the exported files.
FOLDED = ("bn",)
MAP_IMAGES = 32  # images the map runs (every intermediate tensor is kept in memory)


def map_sample(count: int) -> np.ndarray:
    """Indices of the calibration images the map runs: evenly spread over the set (the set
    is ordered by class folder)."""
    return np.unique(np.linspace(0, count - 1, min(count, MAP_IMAGES)).round().astype(int))


def _mean_sqnr(reference, candidate) -> float:
    from onnxruntime.quantization.qdq_loss_debug import (
        compute_signal_to_quantization_noice_ratio as sqnr,
    )
    return float(np.mean([sqnr(np.atleast_1d(r).astype(np.float64).ravel(),
                               np.atleast_1d(c).astype(np.float64).ravel())
                          for r, c in zip(reference, candidate)]))


def consumer_weighted_sqnr(reference, candidate, gains) -> float:
    """Mean over images of 10·log10(Σ_c g_c²‖r_c‖² / Σ_c g_c²‖r_c − q_c‖²): the SQNR of the
    tensor as the next layer's weights see it, each channel c (axis 1) weighed by the norm
    g_c of the weights that read it. ``gains`` None: every channel alike (the plain SQNR)."""
    eps = np.finfo(np.float64).eps
    dbs = []
    for r, q in zip(reference, candidate):
        r = np.asarray(r, np.float64)
        q = np.asarray(q, np.float64)
        channels = r.shape[1] if r.ndim >= 2 else 1
        r = np.moveaxis(r, 1, 0).reshape(channels, -1) if r.ndim >= 2 else r.reshape(1, -1)
        q = np.moveaxis(q, 1, 0).reshape(channels, -1) if q.ndim >= 2 else q.reshape(1, -1)
        g2 = np.ones(channels) if gains is None else np.asarray(gains, np.float64) ** 2
        signal = float(np.sum(g2 * np.sum(r * r, axis=1)))
        noise = float(np.sum(g2 * np.sum((r - q) ** 2, axis=1)))
        dbs.append(10 * math.log10(max(signal, eps) / max(noise, eps)))
    return float(np.mean(dbs)) if dbs else math.inf


def _consumer_gains(graph) -> dict[str, np.ndarray]:
    """Tensor → per-channel norm of the weights of the Conv or Gemm reading it (BatchNorm
    folded in: a channel the next layer scales up counts for more)."""
    from onnx import numpy_helper
    inits = {i.name: i for i in graph.initializer}
    gains = {}
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 2 \
                or node.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "Gemm":
            w = w if attrs.get("transB") and attrs["transB"].i else w.T  # → (out, in)
            g = np.linalg.norm(w, axis=0)
        elif attrs.get("group") and attrs["group"].i > 1:  # depthwise: one filter a channel
            g = np.linalg.norm(w.reshape(w.shape[0], -1), axis=1)
        else:
            g = np.linalg.norm(np.moveaxis(w, 1, 0).reshape(w.shape[1], -1), axis=1)
        gains.setdefault(node.input[0], g)
    return gains


def _reader(inputs: np.ndarray, name: str):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._items = iter([{name: x[None]} for x in inputs])

        def get_next(self):
            return next(self._items, None)
    return Reader()


def onnx_errors(fp32: Path, int8: Path, inputs: np.ndarray) -> dict[str, tuple[float, float]]:
    """Tensor name → (local SQNR, SQNR vs fp32), from onnxruntime's qdq_loss_debug.

    Local: the fp32 activation through the int8 model's own QuantizeLinear parameters for that
    tensor (onnxruntime's ``quantize_nparray``), not the int8 model's pre-QDQ tensor: where
    onnxruntime removed a Relu into the range, that tensor is the pre-activation."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    from edgeexport.core.runtimes import session_options
    options = session_options()  # one thread; unoptimised, as collect_activations' default
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    graph = onnx.shape_inference.infer_shapes(
        onnx.load(str(fp32), load_external_data=False)).graph
    name = graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        acts = {}
        for tag, path in (("float", fp32), ("qdq", int8)):
            augmented = str(Path(tmp) / f"{tag}.onnx")
            modify_model_output_intermediate_tensors(str(path), augmented)
            acts[tag] = collect_activations(augmented, _reader(inputs, name), options)
    matching = {k: v for k, v in create_activation_matching(acts["qdq"], acts["float"]).items()
                if "float" in v}
    errors = compute_activation_error(matching, err_func=_mean_sqnr)
    qparams = _activation_qparams(int8)
    shapes, gains = _tensor_shapes(graph), _consumer_gains(graph)
    out = {}
    for tensor, e in errors.items():
        local = None
        if tensor in qparams and tensor in shapes:  # qdq_loss_debug flattens activations
            floats = [x.reshape(shapes[tensor]) for x in acts["float"][tensor]]
            local = consumer_weighted_sqnr(
                floats, [_fake_quantize(x, *qparams[tensor]) for x in floats], gains.get(tensor))
        out[tensor] = (local, e["xmodel_err"])
    return out


def _tensor_shapes(graph) -> dict[str, tuple[int, ...]]:
    """Intermediate tensor → its static shape (of a shape-inferred graph)."""
    shapes = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        dims = [d.dim_value for d in info.type.tensor_type.shape.dim]
        if dims and all(d > 0 for d in dims):
            shapes[info.name] = tuple(dims)
    return shapes


def _activation_qparams(int8: Path) -> dict[str, tuple[int, float, int]]:
    """Activation tensor → (onnx element type, scale, zero point) of its QuantizeLinear."""
    import onnx
    from onnx import numpy_helper
    graph = onnx.load(str(int8), load_external_data=False).graph
    inits = {i.name: i for i in graph.initializer}
    out = {}
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in inits:
            zero = inits[node.input[2]]
            out[node.input[0]] = (zero.data_type,
                                  float(numpy_helper.to_array(inits[node.input[1]])),
                                  int(numpy_helper.to_array(zero)))
    return out


def _fake_quantize(x: np.ndarray, qtype: int, scale: float, zero: int) -> np.ndarray:
    from onnxruntime.quantization.quant_utils import quantize_nparray
    q = quantize_nparray(qtype, x.astype(np.float32), np.float32(scale), zero)
    return (q.astype(np.float32) - zero) * np.float32(scale)


def tflite_errors(fp32: Path, int8: Path, inputs_nchw: np.ndarray) -> dict[str, float]:
    """Tensor name → SQNR of the int8 .tflite against the fp32 one (ai-edge-quantizer)."""
    from ai_edge_quantizer import model_validator
    from ai_edge_quantizer.utils import validation_utils

    from edgeexport.core.runtimes import litert_interpreter
    signature, spec = next(iter(litert_interpreter(fp32).get_signature_list().items()))
    samples = [{spec["inputs"][0]: x.transpose(1, 2, 0)[None].astype(np.float32)}
               for x in inputs_nchw]
    sqnr = validation_utils.ValidationErrorMetric.SNR  # the metric slot; our function fills it
    with warnings.catch_warnings():
        # Keeping every intermediate tensor is the point here, not a debugging leftover.
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
        result = model_validator.compare_model(
            fp32.read_bytes(), int8.read_bytes(), {signature: samples}, error_metrics=[sqnr],
            compare_fns=[lambda target, reference: _mean_sqnr([reference], [target])],
            use_xnnpack=False, num_threads=1)
    tensors = result.get_signature_comparison_result(signature).intermediate_tensors
    return {k: v[sqnr.value] for k, v in tensors.items()}


def layer_tensors_onnx(fp32: Path, rows: list[dict]) -> dict[str, str]:
    """Layer → the output tensor of its last node in the fp32 graph."""
    import onnx
    known = {r["name"] for r in rows}
    out = {}
    for node in onnx.load(str(fp32), load_external_data=False).graph.node:
        layer = onnx_layer(node.name)
        if layer in known:
            out[layer] = node.output[0]
    return out


def layer_tensors_tflite(fp32: Path, rows: list[dict]) -> dict[str, str]:
    """Layer → its output tensor in the .tflite (a folded BatchNorm's → its conv)."""
    from edgeexport.core.runtimes import litert_interpreter
    owner = _fold_owner(rows)
    outputs = tflite_module_outputs(litert_interpreter(fp32), [r["name"] for r in rows])
    return {owner.get(layer, layer): tensor for layer, tensor in outputs.items()}


def _fold_owner(rows: list[dict]) -> dict[str, str]:
    owner, last = {}, None
    for row in rows:
        if row["op"] in FOLDED and last is not None:
            owner[row["name"]] = last
        elif row["op"] not in FOLDED:
            last = row["name"]
    return owner


def measure_error_map(analysis_rows: list[dict], onnx_files: tuple[Path, Path] | None,
                    tflite_files: tuple[Path, Path] | None, inputs: np.ndarray) -> ErrorMap:
    inputs = inputs[map_sample(len(inputs))]
    rows = [LayerError(r["name"], r["op"]) for r in analysis_rows if r["op"] not in FOLDED]
    by_name = {r.layer: r for r in rows}
    if onnx_files:
        errors = onnx_errors(*onnx_files, inputs)
        for layer, tensor in layer_tensors_onnx(onnx_files[0], analysis_rows).items():
            if tensor in errors and layer in by_name:
                by_name[layer].onnx_local_db, by_name[layer].onnx_db = errors[tensor]
    if tflite_files:
        errors = tflite_errors(*tflite_files, inputs)
        for layer, tensor in layer_tensors_tflite(tflite_files[0], analysis_rows).items():
            if tensor in errors and layer in by_name:
                by_name[layer].tflite_db = errors[tensor]
    return ErrorMap.of(rows, len(inputs))


def profile_latency(profile) -> tuple[dict[str, float], str] | None:
    """Per-layer int8 onnxruntime latency of a profile.json record (artifacts.Profile)."""
    measured = profile.measurements.get("onnxruntime_int8") if profile else None
    if measured is None or not measured.layers:
        return None
    run = measured.end_to_end
    return ({x.name: x.latency_ms for x in measured.layers},
            f"profile.json: measured on {measured.where.get('cpu', '?')}, {run.runtime} "
            f"{run.runtime_version}, {run.threads} thread(s), {run.runs} runs, int8 model")
