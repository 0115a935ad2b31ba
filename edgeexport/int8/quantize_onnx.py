"""Stage: fp32 ONNX → int8 ONNX (onnxruntime static quantization, QDQ).

Weights: per-channel symmetric int8. Activations: the target file's type (int8 or uint8) —
onnxruntime fuses DQ → Conv/MatMul → Q with int8 activations only on Arm builds
(``QDQIsInt8Allowed()``), so on x86 only uint8 activations fuse every Conv. The graph is first
rewritten so MobileNetV3's pools and hard-sigmoid gates fuse too (edgeexport.int8.onnx_graph).
``quantized_op_counts`` reports what actually runs quantized after onnxruntime's graph
optimisation on the machine doing the export.
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

from edgeexport.core.fileio import atomic_path
from edgeexport.int8.export_memo import once_per_export
from edgeexport.int8.onnx_graph import int8_friendly
from edgeexport.int8.precision_plan import PrecisionPlan

COUNTED_OPS = ("Conv", "Add", "Gemm", "Mul", "MatMul", "GlobalAveragePool", "ReduceMean",
               "HardSigmoid", "HardSwish")
QUANTIZED_KERNELS = {"QLinearConv": "Conv", "QLinearAdd": "Add", "QGemm": "Gemm",
                     "QLinearMul": "Mul", "QLinearMatMul": "MatMul", "MatMulInteger": "MatMul",
                     "ConvInteger": "Conv", "QLinearGlobalAveragePool": "GlobalAveragePool"}


class _Reader:
    def __init__(self, inputs: np.ndarray, name: str) -> None:
        self._batches = iter([{name: x[None]} for x in inputs])

    def get_next(self):
        return next(self._batches, None)


def quantize_onnx(fp32_path: Path, out_path: Path, calibration: np.ndarray,
                  activation_type: str, weight_type: str = "int8",
                  method: str = "MinMax", plan: PrecisionPlan | None = None) -> Path:
    """``plan``: layers kept at 16-bit activations and hard-sigmoid ranges (precision_plan)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    qtype = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    wide = {"int8": QuantType.QInt16, "uint8": QuantType.QUInt16}[activation_type]
    input_name = onnx.load(str(fp32_path), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp, atomic_path(out_path) as out_tmp:
        rewritten, prepared = Path(tmp) / "rewritten.onnx", Path(tmp) / "prepared.onnx"
        onnx.save(int8_friendly(onnx.load(str(fp32_path))), str(rewritten))
        quant_pre_process(str(rewritten), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared)).graph
        true_ranges = (_true_ranges(prepared, plan.onnx_true_range_tensors(graph), calibration,
                                    input_name, Path(tmp))
                       if plan and plan.true_ranges() else None)
        overrides = plan.onnx_tensor_overrides(graph, wide, true_ranges) if plan else {}
        if method == "MSE":  # every other activation at its searched range
            searched = _mse_ranges(prepared, calibration, input_name, Path(tmp))
            overrides.update({t: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}]
                              for t, (lo, hi) in searched.items() if t not in overrides})
        reduce_range = activation_type == "uint8" and not (plan and plan.every_layer)
        excluded = plan.onnx_float_nodes(graph) if plan else []
        rounded = (_rounded_weights(prepared, calibration, input_name, 64 if reduce_range
                                    else 127, set(excluded), Path(tmp) / "rounded.onnx")
                   if plan and plan.weight_rounding == "GPTQ" else prepared)
        # The calibrators print progress; a 16-bit plan logs its opset 21 upgrade.
        with contextlib.redirect_stdout(io.StringIO()), _no_logging():
            quantize_static(
                str(rounded), str(out_tmp), _Reader(calibration, input_name),
                quant_format=QuantFormat.QDQ, per_channel=True,
                # U8S8 on x86 without VNNI multiplies in saturating 16-bit pairs: measured
                # here (AMD EPYC), a trained V3-Small fell to cosine 0.90 with 8-bit weights
                # and kept 0.998 with 7-bit ones. onnxruntime's documented remedy. With every
                # activation at 16 bits no U8S8 kernel runs (16-bit islands run in float),
                # so the weights keep their 8th bit.
                reduce_range=reduce_range, nodes_to_exclude=excluded,
                activation_type=qtype[activation_type], weight_type=qtype[weight_type],
                calibrate_method=getattr(CalibrationMethod, {
                    "MovingAverage": "MinMax", "MSE": "MinMax"}.get(method, method)),
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                               "CalibMovingAverage": method == "MovingAverage",
                               "TensorQuantOverrides": overrides})
        _normalise(out_tmp)
    return out_path


def _true_ranges(prepared: Path, tensors: list[str], calibration: np.ndarray,
                 input_name: str, tmp: Path) -> dict[str, tuple[float, float]]:
    """Min/max of ``tensors`` over the calibration set (onnxruntime's MinMax calibrator). The
    ladder asks for them at every attempt, from the same graph and images: every tensor's
    range is calibrated once per export (export_memo)."""
    def calibrate() -> dict[str, tuple[float, float]]:
        from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator
        with contextlib.redirect_stdout(io.StringIO()), _no_logging():
            calibrator = create_calibrator(str(prepared), augmented_model_path=str(
                tmp / "augmented.onnx"), calibrate_method=CalibrationMethod.MinMax)
            calibrator.collect_data(_Reader(calibration, input_name))
            data = calibrator.compute_data()
        return {t: tuple(float(np.asarray(v).reshape(-1)[0]) for v in data[t].range_value)
                for t in data}
    ranges = once_per_export("onnx true ranges", prepared, calibration, calibrate)
    return {t: ranges[t] for t in tensors if t in ranges}


def _mse_ranges(prepared: Path, calibration: np.ndarray, input_name: str,
                tmp: Path) -> dict[str, tuple[float, float]]:
    """Every calibrated tensor's MSE range (edgeexport.int8.range_search) over the
    calibration set, from the values onnxruntime's calibration graph gives per image, over
    their true min/max (_true_ranges); once per export."""
    def search() -> dict[str, tuple[float, float]]:
        from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

        from edgeexport.int8.range_search import Histograms
        with contextlib.redirect_stdout(io.StringIO()), _no_logging():
            calibrator = create_calibrator(
                str(prepared), augmented_model_path=str(tmp / "augmented_mse.onnx"),
                calibrate_method=CalibrationMethod.Entropy)
        session = calibrator.infer_session
        names = [o.name for o in session.get_outputs()]
        bounds = _true_ranges(prepared, [n for n in names if n != input_name], calibration,
                              input_name, tmp)
        histograms = Histograms(bounds)
        for x in calibration:
            for name, values in zip(names, session.run(None, {input_name: x[None]})):
                if name in bounds:
                    histograms.add(name, values)
        return histograms.ranges()
    return once_per_export("onnx MSE ranges", prepared, calibration, search)


def _rounded_weights(prepared: Path, calibration: np.ndarray, input_name: str, levels: int,
                     excluded: set[str], out: Path) -> Path:
    """``prepared`` with the weights of every quantized Conv on onnxruntime's per-channel grid
    of ``levels`` steps (7-bit: 64, reduce_range; else 127), rounded by GPTQ
    (edgeexport.int8.weight_rounding) from the layers' inputs over the calibration set,
    gathered once per export; the Convs left in float (``excluded``) keep their weights."""
    from onnx import numpy_helper

    from edgeexport.int8.weight_rounding import ConvLayer
    model = onnx.load(str(prepared))
    weights = {i.name: i for i in model.graph.initializer}
    convs = {node.name: node for node in model.graph.node
             if node.op_type == "Conv" and node.input[1] in weights}

    def gather() -> tuple[dict[str, ConvLayer], dict]:
        import onnxruntime as ort
        layers = {}
        for name, node in convs.items():
            a = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
            kernel = tuple(numpy_helper.to_array(weights[node.input[1]]).shape[2:])
            if len(kernel) == 2 and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET") \
                    and tuple(a.get("dilations", (1, 1))) == (1, 1):
                top, left, bottom, right = a.get("pads", (0, 0, 0, 0))
                layers[name] = ConvLayer(name, kernel, tuple(a.get("strides", (1, 1))),
                                         (top, left, bottom, right), a.get("group", 1))
        probe = onnx.ModelProto()
        probe.CopyFrom(model)  # before any weight is rounded
        wanted = sorted({convs[n].input[0] for n in layers} - {input_name})
        probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for t in wanted)
        session = ort.InferenceSession(probe.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        for x in calibration:
            values = dict(zip(wanted, session.run(wanted, {input_name: x[None]}) if wanted
                              else []), **{input_name: x[None]})
            for name, layer in layers.items():
                layer.add(values[convs[name].input[0]])
        return layers, {}
    layers, done = once_per_export("onnx weight hessians", prepared, calibration, gather)
    for name, layer in layers.items():
        if name in excluded:
            continue
        source = weights[convs[name].input[1]]
        if (name, levels) not in done:
            done[name, levels] = layer.round(numpy_helper.to_array(source), levels)
        source.CopyFrom(numpy_helper.from_array(done[name, levels], source.name))
    onnx.save(model, str(out))
    return out


@contextlib.contextmanager
def _no_logging():
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _normalise(path: Path) -> None:
    """Drop producer strings that carry timestamps or paths, for byte-identical output."""
    proto = onnx.load(str(path))
    proto.doc_string = ""
    del proto.metadata_props[:]
    onnx.save(proto, str(path))


def quantized_op_counts(int8_path: Path, threads: int = 1) -> dict[str, dict[str, int]]:
    """After onnxruntime's optimisations here: per op kind, how many run quantized vs float."""
    import onnxruntime as ort

    from edgeexport.core.runtimes import session_options
    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        so = session_options(threads)
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.optimized_model_filepath = str(optimized)
        ort.InferenceSession(str(int8_path), so, providers=["CPUExecutionProvider"])
        return optimized_op_counts(optimized)


def optimized_op_counts(optimized: Path) -> dict[str, dict[str, int]]:
    """A graph onnxruntime saved after its optimisations (here or on another machine): per
    op kind, how many nodes run quantized vs float."""
    ops = Counter(n.op_type for n in onnx.load(str(optimized)).graph.node)
    counts = {}
    for op in COUNTED_OPS:
        quantized = sum(ops[kernel] for kernel, base in QUANTIZED_KERNELS.items() if base == op)
        fused_float = ops[op] + ops[f"Fused{op}"]
        if quantized or fused_float:
            counts[op] = {"quantized": quantized, "float": fused_float}
    return counts
