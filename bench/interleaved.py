"""The timing loop the int8 benchmarks share: every model called in turn, round after round,
so all of them see the same machine state; wall and calling-thread CPU time per call (ms).
And the host's int8 instructions, which decide what int8 can gain over fp32 here."""
import platform
import time
from pathlib import Path

# x86 int8 dot-product extensions; without them XNNPACK's and MLAS' int8 GEMMs multiply
# through 16-bit pairs (AVX2) and gain little over fp32 FMA.
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "avx512bw", "avx2")


def int8_isa() -> str:
    """"x86_64 AMD EPYC, AVX2, no VNNI"-style: the CPU model and its int8-relevant flags
    (Linux /proc/cpuinfo; on Arm the 'asimddp' dot-product flag)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    fields = {}
    for line in info.splitlines():  # the first CPU's fields
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    model = fields.get("model name", "")
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    have = [f for f in (*INT8_FLAGS, "asimddp") if f in flags]
    vnni = any(f in flags for f in ("avx512_vnni", "avx_vnni", "asimddp"))
    return (f"{platform.machine()} {model}, {', '.join(have) or 'no SIMD int8 flags'}"
            f"{'' if vnni else ', no int8 dot-product (VNNI/asimddp)'}")


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
