"""The two costs this round took out of the TFLite stage, each against its baseline measured in
the same run on the same model:

1. the app file's pixel input: litert-torch converting the PyTorch module wrapped with the
   normalisation (the baseline: a second conversion per export) vs edgeexport's flatbuffer
   edit of model.fp32.tflite (edgeexport.tflite.pixel_input). Both app fp32 files are run on the same
   pixels to show they compute the same function;
2. calibration: ai-edge-quantizer's default calibrator (keeps every tensor, reads each back in
   Python) vs its profiler-based one (min/max in C++), on the same images, then the bytes of
   the int8 files quantized from each.

Random weights (time does not depend on them). Usage:
python bench/tflite_stage_time.py [--family F] [--alpha A] [--resolution R] [--images N]
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgeexport.core.runtimes import litert_interpreter
from edgeexport.export.tflite_export import convert_fp32, per_op_layout, quiet
from edgeexport.models import create_model
from edgeexport.models import family as get_family
from edgeexport.tflite.pixel_input import normalisation_constants, pixel_input


class NormalisedFromPixels(torch.nn.Module):
    """The baseline: the module fed pixels, x = pixel × multiply + add, converted again."""

    def __init__(self, model, mean, std):
        super().__init__()
        multiply, add = normalisation_constants(mean, std)
        self.model = model
        self.register_buffer("multiply", torch.from_numpy(multiply).reshape(1, 3, 1, 1))
        self.register_buffer("add", torch.from_numpy(add).reshape(1, 3, 1, 1))

    def forward(self, pixels):
        return self.model(pixels * self.multiply + self.add)


def run(path: Path, nhwc: np.ndarray) -> np.ndarray:
    interpreter = litert_interpreter(path)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    results = []
    for x in nhwc:
        interpreter.set_tensor(inp["index"], x[None])
        interpreter.invoke()
        results.append(interpreter.get_tensor(out["index"]).copy())
    return np.concatenate(results)


def calibrate_and_quantize(fp32: Path, nhwc: np.ndarray, mode) -> tuple[float, bytes]:
    from ai_edge_quantizer import calibrator, quantizer, recipe, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils
    interpreter = litert_interpreter(fp32)
    signature, spec = next(iter(interpreter.get_signature_list().items()))
    samples = [{spec["inputs"][0]: x[None]} for x in nhwc]
    with quiet():
        manager = recipe_manager.RecipeManager()
        manager.load_quantization_recipe(recipe.static_wi8_ai8())
        start = time.perf_counter()
        cal = calibrator.Calibrator(str(fp32), num_threads=1, mode=mode,
                                    qsv_update_func=qsv_utils.min_max_update)
        cal.calibrate({signature: samples}, manager)
        seconds = time.perf_counter() - start
        qsvs = cal.get_model_qsvs()
        if mode == calibrator.CalibrationMode.CALIBRATION_PROFILER_BASED:
            qsvs = per_op_layout(qsvs, interpreter)
        result = quantizer.Quantizer(str(fp32), recipe.static_wi8_ai8()).quantize(
            qsvs, enable_progress_report=False)
    return seconds, bytes(result.quantized_model)


def main() -> None:
    from ai_edge_quantizer.calibrator import CalibrationMode
    parser = argparse.ArgumentParser()
    parser.add_argument("--family", default="mobilenet_v3_small")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--images", type=int, default=192)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    fam = get_family(args.family)
    model = create_model(args.family, args.alpha, 4).eval()
    res = args.resolution
    pixels = np.random.default_rng(0).integers(0, 256, (args.images, res, res, 3))
    pixels = pixels.astype(np.float32)
    print(f"{args.family} α {args.alpha} {res} px, 1 thread, {args.images} calibration images")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        convert_fp32(model, res, tmp / "warm-up.tflite")  # imports and first-call costs
        start = time.perf_counter()
        fp32 = convert_fp32(model, res, tmp / "model.fp32.tflite")
        convert_s = time.perf_counter() - start
        start = time.perf_counter()
        convert_fp32(NormalisedFromPixels(model, fam.mean, fam.std), res, tmp / "baseline.tflite")
        baseline_s = time.perf_counter() - start
        start = time.perf_counter()
        (tmp / "edited.tflite").write_bytes(pixel_input(fp32.read_bytes(), fam.mean, fam.std))
        edit_s = time.perf_counter() - start
        diff = np.abs(run(tmp / "edited.tflite", pixels[:16])
                      - run(tmp / "baseline.tflite", pixels[:16])).max()
        print(f"app file pixel input: second conversion {baseline_s:.2f} s (the first: "
              f"{convert_s:.2f} s), flatbuffer edit {edit_s:.3f} s: {baseline_s / edit_s:.0f}× "
              f"less; outputs of the two on 16 images differ by at most {diff:.2e}")
        mean, std = np.asarray(fam.mean, np.float32), np.asarray(fam.std, np.float32)
        normalised = (pixels / 255 - mean) / std
        default_s, default_bytes = calibrate_and_quantize(
            fp32, normalised, CalibrationMode.CALIBRATION_PRESERVE_ALL_TENSORS)
        profiler_s, profiler_bytes = calibrate_and_quantize(
            fp32, normalised, CalibrationMode.CALIBRATION_PROFILER_BASED)
        print(f"calibration: default {default_s:.2f} s, profiler-based {profiler_s:.2f} s: "
              f"{default_s / profiler_s:.1f}× faster; int8 files byte-identical: "
              f"{default_bytes == profiler_bytes}")


if __name__ == "__main__":
    main()
