"""The ARM check: a variant's model files run on an emulated Raspberry Pi (the aarch64 builds
of onnxruntime and LiteRT under QEMU, edgeexport.measure.emulator) and here, on the same raw
input tensors; per file, how far the ARM outputs are from the x86 ones (cosine, top-1
agreement, bit-identical share), and for ONNX what onnxruntime's optimised graph runs
quantized or in float on each side (its fusions differ between x86 and ARM builds).

Both sides run the same probe (edgeexport.measure.arm_probe); the emulated one in one
process. The inputs: the first ``count`` of the export's synthetic validation images (seed
``SYNTHETIC_VALIDATION_SEED``), or images from a directory. Emulated: correctness and graph
facts only, never a time.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from edgeexport.contracts.arm import EMULATED_NOTE, ArmCheck, ArmFile
from edgeexport.core.errors import UserError
from edgeexport.core.fileio import write_json
from edgeexport.core.validate import FP32_ATOL_REL, compare

CHECKED = (("model.fp32.onnx", "onnxruntime"), ("model.int8.onnx", "onnxruntime"),
           ("model.fp32.tflite", "litert"), ("model.int8.tflite", "litert"),
           ("model.app.tflite", "litert"))
DEFAULT_IMAGES = 8


def _images(card, count: int, images_dir: Path | None):
    from edgeexport.inputs.imagesets import (
        SYNTHETIC_VALIDATION_SEED,
        Preprocessing,
        load_images,
        synthetic_images,
    )
    p = card.input.preprocessing
    prep = Preprocessing.for_variant(p["resolution"], p["mean"], p["std"])
    if images_dir is not None:
        return prep, load_images(images_dir, prep, count)
    return prep, synthetic_images(prep, count, SYNTHETIC_VALIDATION_SEED)


def _raw_inputs(path: Path, name: str, images: np.ndarray, prep) -> np.ndarray:
    """What the file takes: float NCHW (ONNX), uint8 pixels (the app file), NHWC float or
    quantized as its input tensor says (the other .tflite files)."""
    if name.endswith(".onnx"):
        return images.astype(np.float32)
    from edgeexport.app.app_file import to_pixels
    from edgeexport.core.runtimes import litert_interpreter, quantize
    detail = litert_interpreter(path).get_input_details()[0]
    if name == "model.app.tflite":
        return to_pixels(images, prep).astype(detail["dtype"])
    return quantize(images.transpose(0, 2, 3, 1), detail)


def _dequantized(y: np.ndarray, info: dict) -> np.ndarray:
    if info["quantization"] is None:
        return y.astype(np.float32)
    scale, zero = info["quantization"]
    return (y.astype(np.float32) - zero) * scale


def _bits(y: np.ndarray) -> np.ndarray:
    return y.view(f"u{y.dtype.itemsize}") if y.dtype.kind == "f" else y


def _ops(path: Path) -> dict[str, dict[str, int]] | None:
    from edgeexport.int8.quantize_onnx import optimized_op_counts
    return optimized_op_counts(path) if path.is_file() else None


VECTOR_FLAGS = ("asimd", "asimddp", "avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def _versions(record: dict) -> dict[str, str]:
    """A probe's machine and runtimes; of the CPU's flags, the vector ones int8 kernels pick
    by."""
    out = {k: str(record[k]) for k in ("machine", "python", "onnxruntime", "litert", "numpy")}
    flags = (record.get("cpu_features") or "").split()
    out["vector_flags"] = " ".join(f for f in VECTOR_FLAGS if f in flags) or "none"
    return out


def compare_file(name: str, runtime: str, x86: np.ndarray, arm: np.ndarray, x86_info: dict,
                 arm_info: dict, tolerances) -> ArmFile:
    """One file's ARM outputs against its x86 outputs, held to the card's tolerances: fp32
    files to float rounding (max |Δ| ≤ FP32_ATOL_REL × max |x86|), int8 files to the int8
    tolerances of the card (enforced when the card enforces them)."""
    a, b = _dequantized(x86, x86_info), _dequantized(arm, arm_info)
    c = compare(f"{name} (x86)", a, f"{name} (arm)", b)
    same = _bits(x86) == _bits(arm) if x86.dtype == arm.dtype else np.zeros(x86.shape, bool)
    int8 = ".fp32." not in name
    if int8:
        tolerance = (f"mean cosine ≥ {tolerances.int8_min_mean_cosine}, top-1 agreement ≥ "
                     f"{tolerances.int8_min_top1_agreement} (the card's int8 tolerances)")
        passed = (c.cosine_mean >= tolerances.int8_min_mean_cosine
                  and c.top1_agreement >= tolerances.int8_min_top1_agreement)
        enforced = bool(tolerances.int8_enforced)
    else:
        limit = FP32_ATOL_REL * max(1.0, c.max_abs_reference)
        tolerance = f"max |Δ| ≤ {limit:.3g} ({FP32_ATOL_REL:g} × max(1, max |x86|))"
        passed, enforced = c.max_abs_diff <= limit, True
    return ArmFile(name, runtime, c.inputs, round(c.cosine_mean, 6), round(c.cosine_min, 6),
                   c.top1_agreement, float(c.max_abs_diff), round(float(same.mean()), 6),
                   float(same.reshape(len(same), -1).all(axis=1).mean()), tolerance, enforced,
                   bool(passed))


def arm_check(directory: Path, board: str, count: int = DEFAULT_IMAGES,
              images_dir: Path | None = None) -> ArmCheck:
    """Run the variant's model files here and on the emulated ``board``; the check."""
    from edgeexport.contracts.artifacts import Card, read_record
    from edgeexport.measure import arm_probe, emulator
    prepared = emulator.load(board)
    card = read_record(directory, Card)
    prep, images = _images(card, count, images_dir)
    present = [(n, r) for n, r in CHECKED if (directory / n).is_file()]
    if not present:
        raise UserError(f"{directory}: no model file to check (model.*.onnx, model.*.tflite)")
    work = Path(tempfile.mkdtemp(prefix="edgeexport-arm-"))
    try:
        files = []
        for name, _ in present:
            np.save(work / f"{name}.inputs.npy",
                    _raw_inputs(directory / name, name, images.inputs, prep))
            files.append({"name": name, "path": str((directory / name).absolute()),
                          "kind": "onnx" if name.endswith(".onnx") else "tflite",
                          "inputs": str(work / f"{name}.inputs.npy")})
        for side in ("x86", "arm"):
            request = work / f"{side}.json"
            request.write_text(json.dumps({"out": str(work / side), "files": files}))
        x86 = arm_probe.probe(json.loads((work / "x86.json").read_text()))
        emulator.run(board, ["-m", "edgeexport.measure.arm_probe", work / "arm.json"],
                     timeout=3600)
        arm = json.loads((work / "arm" / "probe.json").read_text())
        results = []
        for name, runtime in present:
            f = compare_file(name, runtime, np.load(work / "x86" / f"{name}.npy"),
                             np.load(work / "arm" / f"{name}.npy"), x86["files"][name],
                             arm["files"][name], card.tolerances)
            if name.endswith(".onnx"):
                f.ops_arm = _ops(work / "arm" / f"{name}.optimized.onnx")
                f.ops_x86 = _ops(work / "x86" / f"{name}.optimized.onnx")
            results.append(f)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    failures = [f"{f.file} on emulated {board} ({prepared.core}) against x86: mean cosine "
                f"{f.cosine_mean:.4f}, top-1 agreement {f.top1_agreement:.3f}, max |Δ| "
                f"{f.max_abs_diff:.3g}; tolerance: {f.tolerance}"
                for f in results if f.enforced and not f.passed]
    return ArmCheck(prepared.board, prepared.core, EMULATED_NOTE,
                    f"{images.source}: {len(images.inputs)} images", _versions(arm),
                    _versions(x86), results, not failures, failures)


def record_arm_check(directory: Path, check: ArmCheck) -> None:
    """arm_check.json (this board's check) and the card's ``arm`` section, atomically."""
    from edgeexport.contracts.artifacts import Card, read_record, write_record
    write_json(directory / ArmCheck.FILE, check.to_json())
    card = read_record(directory, Card)
    card.arm = {**card.arm, check.board: check}
    write_record(directory, card)
