"""Stage: PyTorch module → fp32 .tflite (litert-torch, NHWC input) → int8 .tflite
(ai-edge-quantizer static recipe: int8 weights per channel, int8 activations, int8 I/O).

No TensorFlow. The int8 file is checked by reading its flatbuffer: integer I/O, no float
tensor in any operator, per-channel conv weights, no TRANSPOSE at the input.
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edgeexport.contracts.artifacts import (
    TFLITE_APP_VS_PYTORCH,
    TFLITE_FP32_VS_PYTORCH,
    TFLITE_INT8_VS_PYTORCH,
)
from edgeexport.core.errors import ValidationError
from edgeexport.core.fileio import write_bytes
from edgeexport.core.runtimes import litert_interpreter, run_litert
from edgeexport.core.validate import compare, require_fp32_match
from edgeexport.inputs.imagesets import ImageSet, Preprocessing
from edgeexport.int8.precision_plan import PrecisionPlan
from edgeexport.int8.tflite_rounding import round_conv_weights
from edgeexport.int8.weight_rounding import rounding_note
from edgeexport.tflite.hardswish import delegable_hard_swish
from edgeexport.tflite.inspect import read_tflite
from edgeexport.tflite.xnnpack import xnnpack_delegation


@contextlib.contextmanager
def quiet():
    """The converters print progress to stdout/stderr; keep it out of our output."""
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), \
            contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def convert_fp32(model: torch.nn.Module, resolution: int, path: Path) -> Path:
    with quiet():
        import litert_torch
    wrapped = litert_torch.to_channel_last_io(model.eval(), args=[0]).eval()
    with quiet(), torch.no_grad():
        edge = litert_torch.convert(wrapped, (torch.zeros(1, resolution, resolution, 3),))
        write_bytes(path, bytes(edge.model_content()))
    return path


def quantize_int8(fp32_path: Path, calibration_nchw: np.ndarray, path: Path,
                  io_type: str, plan: PrecisionPlan | None = None) -> Path:
    """Static int8 with ai-edge-quantizer. ``plan`` (precision_plan; None: the default one):
    its ranges, with MinMax the true min/max over the calibration set (as onnxruntime's
    MinMax), with MSE the searched ones (mse_qsvs), otherwise the library's default moving
    average of per-image ranges, which clips rare outliers; its layers kept at int16
    activations and its hard-sigmoid ranges. int8 HARD_SWISH ops are then
    rewritten into ops XNNPACK runs in int8 (edgeexport.tflite.hardswish), so the file stays one
    partition. With the plan's GPTQ weight rounding the quantizer is given the conv weights
    rounded by edgeexport.int8.tflite_rounding, except the float layers'."""
    from ai_edge_quantizer import calibrator, quantizer, recipe, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils
    interpreter = litert_interpreter(fp32_path)
    signature, spec = next(iter(interpreter.get_signature_list().items()))
    input_name = spec["inputs"][0]
    samples = [{input_name: x.transpose(1, 2, 0)[None].astype(np.float32)}
               for x in calibration_nchw]
    plan = plan or PrecisionPlan()

    def calibrated(update) -> dict:
        manager = recipe_manager.RecipeManager()
        manager.load_quantization_recipe(recipe.static_wi8_ai8())
        cal = calibrator.Calibrator(str(fp32_path), num_threads=1, qsv_update_func=update,
                                    mode=calibrator.CalibrationMode.CALIBRATION_PROFILER_BASED)
        cal.calibrate({signature: samples}, manager)
        return per_op_layout(cal.get_model_qsvs(), interpreter)

    with quiet():
        true_qsvs = calibrated(qsv_utils.min_max_update)
        qsvs = (true_qsvs if plan.ranges == "MinMax"
                else mse_qsvs(fp32_path, calibration_nchw, true_qsvs) if plan.ranges == "MSE"
                else calibrated(qsv_utils.moving_average_update))
        true_qsvs = true_qsvs if plan.true_ranges() else None
        qsvs, config = plan.litert_recipe(interpreter, qsvs, recipe.static_wi8_ai8(), true_qsvs)
        with tempfile.TemporaryDirectory() as tmp:
            source = fp32_path
            if plan.weight_rounding == "GPTQ":
                source = Path(tmp) / "rounded.tflite"
                source.write_bytes(round_conv_weights(fp32_path, calibration_nchw,
                                                      plan.tflite_float_outputs(interpreter)))
            q = quantizer.Quantizer(str(source), config)
            result = q.quantize(qsvs, enable_progress_report=False)
    data, _ = delegable_hard_swish(bytes(result.quantized_model))
    if io_type == "uint8" or plan.wide_io or plan.float_layers:
        # wide_io: int16 I/O requantized to 8 bits; float rungs: an output left in float by
        # the quantizer, quantized to 8 bits over its calibrated range.
        from edgeexport.tflite.uint8 import eight_bit_interface
        outputs = {d["name"]: (float(np.min(qsvs[d["name"]]["min"])),
                               float(np.max(qsvs[d["name"]]["max"])))
                   for d in interpreter.get_output_details()
                   if d["name"] in qsvs and not plan.float_output}
        data = eight_bit_interface(data, io_type, output_ranges=outputs)
    write_bytes(path, data)
    return path


CALIBRATION_RANGES = {"MinMax": "min/max over the set",
                      "MovingAverage": "moving average of per-image min/max",
                      "MSE": "per tensor, the range of least squared error relative to each "
                             "image's values (edgeexport.int8.range_search)"}


def mse_qsvs(fp32_path: Path, calibration_nchw: np.ndarray, qsvs: dict) -> dict:
    """``qsvs`` (min/max over the calibration set) with every op output's range replaced by
    its MSE range (edgeexport.int8.range_search), from the values the fp32 file computes on
    each calibration image; searched once per export, as the ladder asks at every rung."""
    def search() -> dict[str, tuple[float, float]]:
        from ai_edge_litert.interpreter import Interpreter

        from edgeexport.int8.range_search import Histograms
        interpreter = Interpreter(model_content=fp32_path.read_bytes(), num_threads=1,
                                  experimental_preserve_all_tensors=True)
        interpreter.allocate_tensors()
        index = {t["name"]: t["index"] for t in interpreter.get_tensor_details()}
        written = {o for op in interpreter._get_ops_details() for o in op["outputs"]}
        histograms = Histograms({name: (float(np.min(q["min"])), float(np.max(q["max"])))
                                 for name, q in qsvs.items()
                                 if index.get(name) in written and "min" in q})
        source = interpreter.get_input_details()[0]["index"]
        for x in calibration_nchw:
            interpreter.set_tensor(source, x.transpose(1, 2, 0)[None].astype(np.float32))
            interpreter.invoke()
            for name in histograms.counts:
                histograms.add(name, interpreter.get_tensor(index[name]))
        return histograms.ranges()
    from edgeexport.int8.export_memo import once_per_export
    ranges = once_per_export("tflite MSE ranges", fp32_path, calibration_nchw, search)
    return {name: {**qsv, "min": np.full_like(qsv["min"], ranges[name][0]),
                   "max": np.full_like(qsv["max"], ranges[name][1])} if name in ranges else qsv
            for name, qsv in qsvs.items()}


def per_op_layout(qsvs: dict, interpreter) -> dict:
    """Ranges from the profiler-based calibrator (min/max tracked in C++: ~17× faster than the
    default calibrator, which keeps every tensor and reads it back in Python) in the layout the
    default one gives: float32, one axis per tensor dimension. With MinMax ranges the quantizer
    then writes the same bytes as after the default calibrator (checked on all four families);
    moving averages differ in the last bits (accumulated in float64 here, float32 there)."""
    ranks = {d["name"]: len(d["shape"]) for d in interpreter.get_tensor_details()}
    return {name: {key: np.asarray(value, np.float32).reshape((1,) * ranks[name])
                   for key, value in qsv.items()} for name, qsv in qsvs.items()}


def interface(path: Path, prep: Preprocessing) -> dict:
    """How an app feeds the model and reads its output: everything but the pixels."""
    interpreter = litert_interpreter(path)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    spec = {"input": {"shape": [int(d) for d in inp["shape"]], "layout": "NHWC",
                      "dtype": np.dtype(inp["dtype"]).name},
            "output": {"shape": [int(d) for d in out["shape"]],
                       "dtype": np.dtype(out["dtype"]).name}}
    if inp["dtype"] != np.float32:
        scale, zero = inp["quantization"]
        mean, std = np.asarray(prep.mean), np.asarray(prep.std)
        spec["input"].update({
            "scale": float(scale), "zero_point": int(zero),
            "from_rgb_uint8": "q = clip(round(((rgb / 255 - mean) / std) / scale) + "
                              "zero_point) per channel, after resize/centre-crop",
            "per_channel_affine": {"multiply": (1 / (255 * std * scale)).tolist(),
                                   "add": (zero - mean / (std * scale)).tolist(),
                                   "note": "q = clip(round(rgb * multiply + add))"}})
    else:
        spec["input"]["from_rgb_uint8"] = "x = (rgb / 255 - mean) / std per channel"
    if out["dtype"] != np.float32:
        scale, zero = out["quantization"]
        spec["output"].update({"scale": float(scale), "zero_point": int(zero),
                               "dequantize": "logits = (q - zero_point) * scale"})
    return spec


def export_tflite(model: torch.nn.Module, prep: Preprocessing, calib: ImageSet,
                  held_out: ImageSet, reference: np.ndarray, staging: Path, io_type: str,
                  check_int8: Callable, describe: dict,
                  validated_int8: Callable | None = None,
                  validated_app: Callable | None = None) -> dict:
    """``describe``: name/description/version/author/license/labels for the app file's
    TFLite Metadata. ``validated_int8(quantize, evaluate)`` → (path, comparison, plan): quantize
    with a precision plan and repair (edgeexport.int8.stage); default: the plain static int8
    recipe. ``validated_app(quantize, evaluate, plan)``: the same for the app file, from the
    int8 file's plan (app_file.make_app_file)."""
    if validated_int8 is None:
        def validated_int8(quantize, evaluate):
            path = quantize(PrecisionPlan())
            return path, evaluate(path), PrecisionPlan()
    fp32 = convert_fp32(model, prep.resolution, staging / "model.fp32.tflite")
    validation = {TFLITE_FP32_VS_PYTORCH: require_fp32_match(compare(
        "pytorch fp32", reference, "model.fp32.tflite", run_litert(fp32, held_out.inputs),
        held_out.labels))}
    int8, int8_comparison, plan = validated_int8(
        lambda plan: quantize_int8(fp32, calib.inputs, staging / "model.int8.tflite", io_type,
                                   plan),
        lambda path: compare("pytorch fp32", reference, "model.int8.tflite",
                             run_litert(path, held_out.inputs), held_out.labels))
    summary = read_tflite(int8)
    problems = summary.full_integer_problems(io_type, mixed=bool(plan.keep),
                                             float_islands=bool(plan.float_layers))
    if problems:
        raise ValidationError(f"model.int8.tflite is not fully integer: {'; '.join(problems)}")
    validation[TFLITE_INT8_VS_PYTORCH] = check_int8(int8_comparison)
    # ---- app-ready file (issue 12): uint8 pixels in, normalisation inside, metadata ----
    from edgeexport.app.app_file import APP_TFLITE, make_app_file
    from edgeexport.tflite.runtime_version import runtime_requirement
    app, validation[TFLITE_APP_VS_PYTORCH], app_record = make_app_file(
        fp32, prep, calib, held_out, reference, staging, check_int8, describe, int8, plan,
        quantize_int8, validated_app)
    requirements = {p.name: runtime_requirement(p) for p in (fp32, int8, app)}
    # ---- end app-ready file ----
    return {
        "files": {"model.fp32.tflite": fp32, "model.int8.tflite": int8, APP_TFLITE: app},
        "validation": validation,
        "app": app_record,
        "runtime_requirements": requirements,
        "fp32": interface(fp32, prep),
        "int8": {**interface(int8, prep), "operators": summary.op_histogram,
                 "quantization": "ai-edge-quantizer static_wi8_ai8: int8 per-channel weights "
                                 f"({rounding_note(plan.weight_rounding)}), int8 asymmetric "
                                 "activations; each int8 HARD_SWISH "
                                 "rewritten as x · clamp(x/6 + 1/2, 0, 1) (1×1 depthwise "
                                 "conv + MUL) so XNNPACK runs it",
                "calibration_ranges": CALIBRATION_RANGES.get(plan.ranges,
                                                             CALIBRATION_RANGES["MovingAverage"])},
        "xnnpack": xnnpack_delegation(int8),
        "runtime": "LiteRT (ai-edge-litert) with XNNPACK; no TensorFlow needed",
        "metadata": "TFLite Metadata embedded in model.app.tflite only (see app_tflite); "
                    "model.fp32/int8.tflite carry none: their normalisation is in card.json",
    }
