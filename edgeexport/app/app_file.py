"""Stage: the app-ready .tflite (`model.app.tflite`), the file a mobile or Raspberry Pi app
loads without writing any preprocessing of its own.

- Input: RGB pixels, uint8 0–255, NHWC at the variant's resolution (scale 1, zero point 0).
- The per-channel normalisation (x / 255 − mean) / std is part of the network: a MUL and an
  ADD put in front of ``model.fp32.tflite`` (edgeexport.tflite.pixel_input), quantized with the rest.
- Output: the class logits, uint8 (dequantize with the output's scale and zero point); no
  softmax, as in every other file of the export. float32 when the repair needed it
  (PrecisionPlan.float_output: the card says so).
- TFLite Metadata embedded (edgeexport.tflite.metadata), labels as an associated file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from edgeexport.contracts.app import AppTflite
from edgeexport.core.errors import ValidationError
from edgeexport.core.fileio import write_bytes
from edgeexport.core.runtimes import dequantize, litert_interpreter
from edgeexport.core.validate import Comparison, compare
from edgeexport.inputs.imagesets import ImageSet, Preprocessing
from edgeexport.int8.precision_plan import PrecisionPlan
from edgeexport.tflite.inspect import read_tflite

APP_TFLITE = "model.app.tflite"
PIXEL_QUANTIZATION = (1.0, 0)  # uint8 input: real value = (q − 0) × 1 = the pixel


def to_pixels(images: ImageSet | np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Normalised NCHW float images → the uint8 NHWC pixels they were made from (exact:
    Preprocessing.apply divides uint8 values by 255 and normalises in float32)."""
    x = images.inputs if isinstance(images, ImageSet) else images
    mean = np.asarray(prep.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(prep.std, np.float32).reshape(1, 3, 1, 1)
    pixels = np.round((x * std + mean) * 255)
    return np.clip(pixels, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1).copy()


def run_app(path: Path, pixels_nhwc: np.ndarray, threads: int = 1) -> np.ndarray:
    """Feed uint8 NHWC pixels to the app file as they are; return dequantized logits."""
    interpreter = litert_interpreter(path, threads)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    results = []
    for image in pixels_nhwc:
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        results.append(dequantize(interpreter.get_tensor(out["index"]), out))
    return np.concatenate(results)


def xnnpack_partitions(path: Path) -> dict:
    """How LiteRT's default XNNPACK delegate splits the graph: the number of DELEGATE nodes in
    the execution plan, and the operators left on the built-in kernels around them (the ones
    producing a delegate input or consuming a delegate output)."""
    interpreter = litert_interpreter(path)
    ops = interpreter._get_ops_details()
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    fed = {int(t) for d in delegates for t in d["inputs"]}
    produced = {int(t) for d in delegates for t in d["outputs"]}
    outside = [op["op_name"] for op in ops if op["op_name"] != "DELEGATE" and (
        {int(t) for t in op["outputs"]} & fed or {int(t) for t in op["inputs"]} & produced)]
    return {"partitions": len(delegates), "outside_delegate": outside}


def make_app_file(fp32_file: Path, prep: Preprocessing, calib: ImageSet,
                  held_out: ImageSet, reference: np.ndarray, staging: Path,
                  check_int8: Callable, describe: dict, int8_file: Path,
                  plan: PrecisionPlan, quantize_int8: Callable,
                  validated: Callable | None = None) -> tuple[Path, Comparison, AppTflite]:
    """Pixel input on the fp32 file, quantize with ``int8_file``'s precision plan (its range
    method, hard-sigmoid ranges and repaired layers), give uint8 pixel I/O, embed metadata,
    validate against PyTorch. ``describe``: name/description/version/author/license/labels
    for the metadata. ``quantize_int8``: tflite_export's, passed in (that stage calls this
    one). ``validated(quantize, evaluate, plan)`` → (path, comparison, plan): the int8
    stage's check of the app file, which may climb the repair ladder past ``plan``
    (edgeexport.int8.stage); default: ``plan`` as it is."""
    from edgeexport.tflite.metadata import ModelDescription, embed_metadata
    from edgeexport.tflite.pixel_input import pixel_input
    from edgeexport.tflite.uint8 import uint8_interface

    fp32 = staging / "app.fp32.tflite"
    write_bytes(fp32, pixel_input(fp32_file.read_bytes(), prep.mean, prep.std))
    pixels = to_pixels(calib, prep).transpose(0, 3, 1, 2).astype(np.float32)
    description = ModelDescription(**describe, mean=prep.mean, std=prep.std)
    path = staging / APP_TFLITE
    metadata_summary = {}

    def quantize(plan: PrecisionPlan) -> Path:
        int8 = quantize_int8(fp32, pixels, staging / "app.int8.tflite", "int8", plan)
        data = uint8_interface(int8.read_bytes(), input_quantization=PIXEL_QUANTIZATION,
                               float_output=plan.float_output)
        int8.unlink()
        data, summary = embed_metadata(data, description)
        metadata_summary.update(summary)
        write_bytes(path, data)
        return path

    def evaluate(path: Path) -> Comparison:
        return compare("pytorch fp32", reference, APP_TFLITE,
                       run_app(path, to_pixels(held_out, prep)), held_out.labels)

    if validated is None:
        def validated(quantize, evaluate, plan):
            return quantize(plan), None, plan
    path, comparison, app_plan = validated(quantize, evaluate, plan)
    fp32.unlink()
    summary = read_tflite(path)
    problems = summary.full_integer_problems("uint8", mixed=bool(app_plan.keep),
                                             float_islands=bool(app_plan.float_layers),
                                             float_output=app_plan.float_output)
    if problems:
        raise ValidationError(f"{APP_TFLITE} is not fully integer: {'; '.join(problems)}")
    xnnpack = xnnpack_partitions(path)
    # The normalisation must not split the graph: with the same precision plan, the app file
    # gets as many XNNPACK partitions as model.int8.tflite (1 for V1/V2; V3's int8 HARD_SWISH
    # is not delegated by this XNNPACK, a property of the int8 graph). XNNPACK converts
    # float↔int8 but not uint8↔int8: the two boundary QUANTIZE ops run on the built-in
    # kernels. (A repair of the app file's own keeps more 16-bit ops, outside XNNPACK.)
    int8_split = xnnpack_partitions(int8_file)
    if app_plan == plan and xnnpack["partitions"] != int8_split["partitions"]:
        raise ValidationError(f"{APP_TFLITE}: XNNPACK runs it in {xnnpack['partitions']} "
                              f"partition(s), model.int8.tflite in {int8_split['partitions']}")
    validation = check_int8(comparison or evaluate(path))
    interpreter = litert_interpreter(path)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    out_scale, out_zero = out["quantization"]
    record = AppTflite(
        file=APP_TFLITE,
        input={"shape": [int(d) for d in inp["shape"]], "layout": "NHWC", "dtype": "uint8",
               "pixels": "RGB 0–255 after resize/centre-crop to the resolution; "
                         "normalisation (x/255 − mean)/std is inside the model",
               "scale": float(inp["quantization"][0]),
               "zero_point": int(inp["quantization"][1])},
        output={"shape": [int(d) for d in out["shape"]], "dtype": "uint8",
                "scores": "logits (no softmax)", "scale": float(out_scale),
                "zero_point": int(out_zero),
                "dequantize": "logits = (q - zero_point) * scale"}
        if not app_plan.float_output else  # the repair's last widening
        {"shape": [int(d) for d in out["shape"]], "dtype": "float32",
         "scores": "logits (no softmax)", "dequantize": "none: the output is float32 "
         "(an 8-bit output could not hold the tolerance)"},
        xnnpack={**xnnpack, "model.int8.tflite_partitions": int8_split["partitions"],
                 "measured_with": "ai-edge-litert Interpreter, default XNNPACK delegate, "
                                  "_get_ops_details() DELEGATE count"},
        metadata=metadata_summary,
        operators=summary.op_histogram,
        how_to_call="MediaPipe Tasks ImageClassifier (Android/iOS/Python): pass the image, "
                    "labels come from the embedded metadata. Plain interpreter: resize/crop "
                    "to the input shape, feed the RGB uint8 pixels as they are, dequantize "
                    "the output.")
    return path, validation, record


def app_description(variant, labels: list[str] | None) -> dict:
    """The metadata's name/description/version/author/license for a variant."""
    from importlib.metadata import version
    return {"name": variant.id,
            "description": f"{variant.family} α {variant.alpha}, {variant.resolution} px, "
                           f"{variant.num_classes} classes; int8, exported by edgeexport",
            "version": f"edgeexport {version('edgeexport')}",
            "author": "edgeexport",
            "license": "Apache-2.0 (edgeexport; the weights carry their own licence)",
            "labels": tuple(labels) if labels is not None else None}
