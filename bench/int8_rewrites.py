"""What the int8 graph rewrites buy, in one interleaved run: fp32, int8 as the quantizers emit
it, and int8 as edgeexport emits it (edgeexport.tflite.hardswish, edgeexport.int8.onnx_graph), for one family at
224 px, in LiteRT and onnxruntime, 1 thread; p50 of the calling thread's CPU time and of wall
time (see bench/int8_speed.py for why both), XNNPACK partitions of each .tflite.

Usage: python bench/int8_rewrites.py [--family mobilenet_v3_small] [--exports DIR] [--runs N]
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

import edgeexport.export.tflite_export as tflite_export
import edgeexport.int8.quantize_onnx as quantize_onnx
from edgeexport.inputs.imagesets import Preprocessing, synthetic_images
from edgeexport.models import family as get_family
from edgeexport.tflite.xnnpack import xnnpack_delegation

sys.path.insert(0, str(Path(__file__).parent))
from int8_speed import export, runner  # noqa: E402
from interleaved import int8_isa, interleaved  # noqa: E402


def plain_int8(fp32_dir: Path, out: Path, family: str) -> None:
    """Quantize as edgeexport does, with the rewrites switched off."""
    f = get_family(family)
    calib = synthetic_images(Preprocessing.for_variant(224, f.mean, f.std), 64, 0).inputs
    rewrite_tflite, rewrite_onnx = tflite_export.delegable_hard_swish, quantize_onnx.int8_friendly
    tflite_export.delegable_hard_swish = lambda data: (data, 0)
    quantize_onnx.int8_friendly = lambda model: model
    try:
        tflite_export.quantize_int8(fp32_dir / "model.fp32.tflite", calib,
                                    out / "model.int8.tflite", "int8")
        quantize_onnx.quantize_onnx(fp32_dir / "model.fp32.onnx", out / "model.int8.onnx",
                                    calib, "uint8")
    finally:
        tflite_export.delegable_hard_swish = rewrite_tflite
        quantize_onnx.int8_friendly = rewrite_onnx


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--family", default="mobilenet_v3_small")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--exports", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.exports or Path(tmp)
        emitted = export(args.family, root / args.family)
        plain = root / f"{args.family}-plain"
        plain.mkdir(exist_ok=True)
        if not (plain / "model.int8.onnx").exists():
            plain_int8(emitted, plain, args.family)
        files = {"fp32": emitted, "int8 as quantized": plain, "int8 as emitted": emitted}
        calls = {}
        for runtime, suffix in (("litert", "tflite"), ("onnxruntime", "onnx")):
            for label, directory in files.items():
                precision = "fp32" if label == "fp32" else "int8"
                calls[runtime, label] = runner(runtime, directory / f"model.{precision}.{suffix}")
        load = os.getloadavg()[0]
        wall, cpu = interleaved(calls, args.runs, args.warmup)
        print(f"{args.family} 1.0-224, random weights, 1 thread, {args.runs} interleaved rounds "
              f"after {args.warmup} warm-up, load average {load:.1f} → {os.getloadavg()[0]:.1f}; "
              f"{int8_isa()}")
        print("| runtime | file | p50 CPU ms | fp32/this | p50 wall ms | fp32/this | "
              "XNNPACK partitions |")
        print("|---|---|---|---|---|---|---|")
        for (runtime, label) in calls:
            c, w = np.median(cpu[runtime, label]), np.median(wall[runtime, label])
            c0, w0 = np.median(cpu[runtime, "fp32"]), np.median(wall[runtime, "fp32"])
            precision = "fp32" if label == "fp32" else "int8"
            parts = (xnnpack_delegation(files[label] / f"model.{precision}.tflite").partitions
                     if runtime == "litert" else "")
            print(f"| {runtime} | {label} | {c:.2f} | {c0 / c:.2f}× | {w:.2f} | {w0 / w:.2f}× | "
                  f"{parts} |")


if __name__ == "__main__":
    main()
