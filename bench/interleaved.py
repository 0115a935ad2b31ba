"""The timing loop the int8 benchmarks share: every model called in turn, round after round,
so all of them see the same machine state; wall and calling-thread CPU time per call (ms)."""
import time


def interleaved(calls: dict, runs: int, warmup: int) -> tuple[dict, dict]:
    wall = {k: [] for k in calls}
    cpu = {k: [] for k in calls}
    for i in range(warmup + runs):
        for key, call in calls.items():
            w0, c0 = time.perf_counter(), time.thread_time()
            call()
            c1, w1 = time.thread_time(), time.perf_counter()
            if i >= warmup:
                wall[key].append((w1 - w0) * 1e3)
                cpu[key].append((c1 - c0) * 1e3)
    return wall, cpu
