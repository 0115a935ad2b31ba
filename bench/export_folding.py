"""What folding BatchNorm into the convs before export (prepare.fold_batchnorm) saves: the
fp32 ONNX export (torch.onnx dynamo + onnxsim) and the fp32 TFLite conversion (litert-torch)
of one network, with and without the fold, in the same run (CPU seconds, after a warm-up
conversion of each kind, alternating, best of ``--rounds``). Also checks that both give the
same graph (node and operator counts) and the same function.

Random weights, BatchNorm statistics from random images (time does not depend on them). Usage:
python bench/export_folding.py [--family F] [--alpha A] [--resolution R] [--rounds N]
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch

from edgeexport.analysis.count import analyze
from edgeexport.contracts.variant import Variant
from edgeexport.core.runtimes import litert_interpreter, run_onnx
from edgeexport.export.onnx_export import export_onnx
from edgeexport.export.prepare import fold_batchnorm, reestimate_batchnorm
from edgeexport.export.tflite_export import convert_fp32
from edgeexport.models import create_model


def cpu_seconds(call) -> float:
    start = time.process_time()
    call()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", default="mobilenet_v3_large")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    variant = Variant(args.family, args.alpha, args.resolution, 1000)
    model = create_model(args.family, args.alpha, 1000)
    images = np.random.default_rng(1).standard_normal(
        (32, 3, args.resolution, args.resolution)).astype(np.float32)
    reestimate_batchnorm(model, images)  # else the logits of a random network are ~0
    analysis = analyze(variant, model)
    models = {"as defined": model, "folded": fold_batchnorm(model)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export_onnx(models["folded"], analysis, tmp / "warm-up.onnx")
        convert_fp32(models["folded"], args.resolution, tmp / "warm-up.tflite")
        best = {name: {"onnx": float("inf"), "tflite": float("inf")} for name in models}
        for _ in range(args.rounds):
            for name, net in models.items():
                onnx_s = cpu_seconds(lambda: export_onnx(net, analysis, tmp / f"{name}.onnx"))
                tflite_s = cpu_seconds(
                    lambda: convert_fp32(net, args.resolution, tmp / f"{name}.tflite"))
                best[name] = {"onnx": min(best[name]["onnx"], onnx_s),
                              "tflite": min(best[name]["tflite"], tflite_s)}
        print(f"{args.family} α {args.alpha:g} {args.resolution} px, CPU seconds, best of "
              f"{args.rounds}:")
        for name, t in best.items():
            print(f"  {name:>10}: ONNX {t['onnx']:5.1f}  TFLite {t['tflite']:5.1f}  "
                  f"both {t['onnx'] + t['tflite']:5.1f}")
        total = {name: t["onnx"] + t["tflite"] for name, t in best.items()}
        print(f"  folded / as defined: {total['folded'] / total['as defined']:.2f}")
        x = np.random.default_rng(0).standard_normal(
            (4, 3, args.resolution, args.resolution)).astype(np.float32)
        outputs = {name: run_onnx(tmp / f"{name}.onnx", x) for name in models}
        nodes = {name: len(onnx.load(str(tmp / f"{name}.onnx")).graph.node) for name in models}
        ops = {name: len(litert_interpreter(tmp / f"{name}.tflite")._get_ops_details())
               for name in models}
        gap = np.abs(outputs["folded"] - outputs["as defined"]).max()
        print(f"  ONNX nodes {nodes}, TFLite ops {ops}; largest output difference {gap:.2e} "
              f"(outputs up to {np.abs(outputs['as defined']).max():.2f})")


if __name__ == "__main__":
    main()
