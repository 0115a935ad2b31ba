"""Build time per variant and the time of a rebuild that has nothing to do.

Runs `edgeexport build` twice on a grid in a temporary directory; the first run is the
baseline the rebuild is compared with. With --existing DIR (e.g. the `dist` of
`make build TARGET=rpi4`), times only the no-op rebuild of that build, whole command included.
Usage: python bench/build_time.py [--models ...] [--alpha ...] [--resolution ...] [--jobs N]
       python bench/build_time.py --existing dist [--target rpi4]
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
    for flag, option in (("models", "--family"), ("alpha", "--alpha"),
                         ("resolution", "--resolution")):
        if getattr(args, flag):
            cmd += [option, getattr(args, flag)]
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
    parser.add_argument("--existing", help="an existing build's --out: time its no-op rebuild")
    args = parser.parse_args()
    if args.existing:
        args.models = args.alpha = args.resolution = None  # the build's own (default) grid
        times = []
        for _ in range(3):
            seconds, again = build(args, args.existing)
            if again["built"]:
                sys.exit(f"not a no-op: {len(again['built'])} variants were rebuilt")
            times.append(seconds)
        print(f"no-op rebuild of {args.existing}/{args.target}: {len(again['cached'])} variants "
              f"unchanged; {min(times):.2f} s (best of 3; all: "
              f"{', '.join(f'{s:.2f}' for s in times)})")
        return
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
