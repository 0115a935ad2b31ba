"""onnxruntime's per-node profiler: what share of a profiled run its kernel events cover, and
how much slower a profiled run is than an unprofiled one, for the four families at 1.0-224.

These are the timing figures the README quotes for `edgeexport profile`; the tests check only
structure (every kernel attributed once, inside its run). Exports once with random weights
(latency does not depend on them); the baseline is the unprofiled run measured in alternation.
Usage: python bench/profile_overhead.py [--runs N]
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from edgeexport.measure.profile import profile
from edgeexport.targets import load_target

CASES = [("mobilenet_v1", "fp32"), ("mobilenet_v2", "fp32"), ("mobilenet_v3_large", "fp32"),
         ("mobilenet_v3_small", "fp32"), ("mobilenet_v1", "int8"), ("mobilenet_v2", "int8")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    target = load_target("local")
    print(f"onnxruntime, 1 thread, {args.runs} runs after {args.warmup} warm-up, interleaved")
    print(f"{'model (1.0-224)':<20} {'prec':>5} {'p50 ms':>8} {'profiled ms':>12} "
          f"{'kernel sum ms':>14} {'coverage':>9} {'overhead':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for family in dict.fromkeys(f for f, _ in CASES):
            out = Path(tmp) / family
            subprocess.run([sys.executable, "-m", "edgeexport", "export", family, "--formats",
                            "onnx", "--out", str(out)], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        for family, precision in CASES:
            m = profile(Path(tmp) / family, target, "onnxruntime", precision, 1, args.runs,
                        args.warmup)
            print(f"{family:<20} {precision:>5} {m.end_to_end.p50_ms:>8.3f} "
                  f"{m.profiled_run_ms:>12.3f} {m.layer_sum_ms:>14.3f} "
                  f"{m.layer_sum_ms / m.profiled_run_ms:>9.2f} {m.profiler_overhead:>+9.0%}")


if __name__ == "__main__":
    main()
