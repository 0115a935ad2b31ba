"""fp32 vs int8 latency of MobileNetV2 1.0-224, onnxruntime and LiteRT, 1 and 2 threads.

Exports once (random weights: latency does not depend on them), then measures each file in
the same run; prints p50 latencies and the fp32/int8 ratio (the baseline is fp32).
Usage: python bench/int8_latency.py [--runs N]
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgeexport.measure.profile import time_litert, time_onnx


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        subprocess.run([sys.executable, "-m", "edgeexport", "export", "mobilenet_v2", "--alpha",
                        "1.0", "--resolution", "224", "--out", str(out)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print("MobileNetV2 1.0-224, p50 of", args.runs, "runs after", args.warmup, "warm-up")
        print(f"{'runtime':<12} {'threads':>7} {'fp32 ms':>9} {'int8 ms':>9} {'fp32/int8':>10}")
        for runtime, timer, suffix in (("onnxruntime", time_onnx, "onnx"),
                                       ("litert", time_litert, "tflite")):
            for threads in (1, 2):
                p50 = {p: float(np.median(timer(out / f"model.{p}.{suffix}", threads, args.runs,
                                                args.warmup))) for p in ("fp32", "int8")}
                print(f"{runtime:<12} {threads:>7} {p50['fp32']:>9.3f} {p50['int8']:>9.3f} "
                      f"{p50['fp32'] / p50['int8']:>9.2f}×")


if __name__ == "__main__":
    main()
