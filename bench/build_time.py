"""Build time per variant and the time of a rebuild that has nothing to do.

Runs `edgeexport build` twice on a grid in a temporary directory; the first run is the
baseline the rebuild is compared with.
Usage: python bench/build_time.py [--models ...] [--alpha ...] [--resolution ...] [--jobs N]
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time


def build(args, out):
    cmd = [sys.executable, "-m", "edgeexport", "build", "--target", args.target, "--out", out,
           "--jobs", str(args.jobs), "--json"]
    for flag in ("models", "alpha", "resolution"):
        if getattr(args, flag):
            cmd += [f"--{flag}", getattr(args, flag)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"build failed: {proc.stderr.strip().splitlines()[-1:]}")
    return seconds, json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", default="rpi4")
    parser.add_argument("--models", default="mobilenet_v1,mobilenet_v2")
    parser.add_argument("--alpha", default="0.5,0.25")
    parser.add_argument("--resolution", default="128,96")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        first, summary = build(args, out)
        second, again = build(args, out)
    n = len(summary["built"])
    print(f"grid: {args.models} α {args.alpha} × {args.resolution}, {args.jobs} jobs")
    print(f"first build: {n} variants in {first:.1f} s = {first / n:.1f} s per variant")
    print(f"rebuild:     {len(again['cached'])} unchanged, {len(again['built'])} rebuilt "
          f"in {second:.1f} s ({first / second:.0f}× faster than the first build)")


if __name__ == "__main__":
    main()
