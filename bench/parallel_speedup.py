"""What running two things at once buys on this host. The test suite's work is trainings and
exports run as single-threaded processes side by side, so its wall time is its CPU work
divided by this figure, not by the core count.

For each kind of work, runs it in one process alone, then in N processes at once (N: the core
count), and prints each process's CPU seconds and the throughput of N at once against one
alone (ideal: N×):
- train: 60 training steps of MobileNetV1 α 0.5 at 64 px, batch 32, one thread (as the test
  fixtures train);
- export: `edgeexport export mobilenet_v1 --alpha 0.5 --resolution 64` of a random network
  (every format: torch.export tracing, conversions, quantization, validation).

    python bench/parallel_speedup.py [--processes N]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train_steps(n: int) -> None:
    """The test fixtures' training (tests.synthetic_data.train) on random images."""
    import numpy as np
    import torch
    sys.path.insert(0, str(ROOT))  # this checkout's tests package, not an installed one
    from edgeexport.models import create_model
    from tests.synthetic_data import train
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((64, 3, 64, 64)).astype(np.float32)
    train(create_model("mobilenet_v1", 0.5, 4), images, rng.integers(0, 4, 64), n)


def command(kind: str, scratch: Path) -> list[str]:
    if kind == "train":
        return [sys.executable, __file__, "--train-steps", "60"]
    return [sys.executable, "-m", "edgeexport", "export", "mobilenet_v1", "--alpha", "0.5",
            "--resolution", "64", "--out", str(scratch)]


def together(kind: str, count: int) -> tuple[float, list[float]]:
    """Wall seconds for ``count`` processes started at once, and each one's CPU seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        procs = [subprocess.Popen(command(kind, Path(tmp) / str(i)), cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
                 for i in range(count)]
        cpu = []
        for p in procs:
            _, status, usage = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            if p.returncode != 0:
                raise SystemExit(f"{kind} worker exited {p.returncode}")
            cpu.append(usage.ru_utime + usage.ru_stime)
        return time.perf_counter() - start, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--train-steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_steps:
        train_steps(args.train_steps)
        return
    n = args.processes
    print(f"host: {os.cpu_count()} CPUs; {n} processes at once against 1 alone")
    for kind in ("train", "export"):
        alone_wall, (alone,) = together(kind, 1)
        wall, each = together(kind, n)
        print(f"{kind:6s}: alone {alone:5.1f} s CPU ({alone_wall:5.1f} s wall); {n} at once "
              f"{', '.join(f'{c:.1f}' for c in each)} s CPU each ({wall:5.1f} s wall); "
              f"throughput {n * alone_wall / wall:.2f}× (ideal {n}.00×)")


if __name__ == "__main__":
    main()
