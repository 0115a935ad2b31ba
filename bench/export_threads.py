"""CPU of the export stages that do their work in numpy, with numpy's OpenBLAS on its default
thread count (the baseline: one per core) against one thread (what ``edgeexport`` sets, in
edgeexport/cli/process_defaults.py): the int8 error map (onnxruntime and ai-edge-quantizer
per-tensor SQNR) and the two int8 quantizers, on the files of one export of a random
V2 α 0.5 at 64 px. Each measured in a fresh process, the two settings alternating, best of
--repeats; the outputs of both settings are compared (the same bytes; the same SQNR to the
0.001 dB that card.json keeps).
Usage: python bench/export_threads.py [--repeats 3]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Run in the child: each stage's CPU seconds and a digest of what it produced.
STAGES = r"""
import hashlib, json, resource, sys
from pathlib import Path
import numpy as np
from edgeexport.inputs.imagesets import SYNTHETIC_CALIBRATION_SEED, Preprocessing, synthetic_images
from edgeexport.models import family
from edgeexport.int8.error_map import onnx_errors, tflite_errors
from edgeexport.int8.quantize_onnx import quantize_onnx
from edgeexport.export.tflite_export import quantize_int8

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

export, scratch = Path(sys.argv[1]), Path(sys.argv[2])
f = family("mobilenet_v2")
x = synthetic_images(Preprocessing.for_variant(64, f.mean, f.std), 64,
                     SYNTHETIC_CALIBRATION_SEED).inputs
stages = {
    "onnx error map": lambda: onnx_errors(export / "model.fp32.onnx",
                                          export / "model.int8.onnx", x[:16]),
    "tflite error map": lambda: tflite_errors(export / "model.fp32.tflite",
                                              export / "model.int8.tflite", x[:16]),
    "onnx int8 quantize": lambda: quantize_onnx(export / "model.fp32.onnx",
                                                scratch / "q.onnx", x, "uint8"),
    "tflite int8 quantize": lambda: quantize_int8(export / "model.fp32.tflite", x,
                                                  scratch / "q.tflite", "int8"),
}
out = {}
for name, run in stages.items():
    start = cpu()
    result = run()
    seconds = cpu() - start
    # Files: their bytes. SQNR maps: rounded to 0.001 dB, as card.json keeps them (the sums
    # of a BLAS reduction on one thread or two differ in the last bits).
    data = result.read_bytes() if isinstance(result, Path) else json.dumps(
        {k: [None if v is None else round(float(v), 3) for v in np.atleast_1d(e)]
         for k, e in sorted(result.items())}).encode()
    out[name] = [seconds, hashlib.sha256(data).hexdigest()]
print(json.dumps(out))
"""


def measure(export: Path, one_thread: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    if one_thread:
        env["OPENBLAS_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory() as scratch:
        proc = subprocess.run([sys.executable, "-c", STAGES, str(export), scratch], env=env,
                              capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "export"
        subprocess.run([sys.executable, "-m", "edgeexport", "export", "mobilenet_v2",
                        "--alpha", "0.5", "--resolution", "64", "--out", export],
                       check=True, capture_output=True, cwd=ROOT)
        runs = {False: [], True: []}
        for _ in range(args.repeats):
            for one_thread in (False, True):
                runs[one_thread].append(measure(export, one_thread))
    print(f"OpenBLAS threads: default ({os.cpu_count()} cores here) vs 1; CPU seconds, "
          f"best of {args.repeats}")
    print("stage                  default     1 thread   ratio  same output")
    totals = [0.0, 0.0]
    for stage in runs[False][0]:
        default = min(r[stage][0] for r in runs[False])
        one = min(r[stage][0] for r in runs[True])
        same = len({r[stage][1] for r in runs[False] + runs[True]}) == 1
        totals[0] += default
        totals[1] += one
        print(f"{stage:<22}{default:>8.2f}  {one:>11.2f}  {one / default:>5.2f}×  "
              f"{'yes' if same else 'NO'}")
    print(f"{'all four':<22}{totals[0]:>8.2f}  {totals[1]:>11.2f}  "
          f"{totals[1] / totals[0]:>5.2f}×")


if __name__ == "__main__":
    main()
