"""What the analysis cache saves: CPU seconds of the commands that read registry networks'
static analyses, each run as a user runs it (a fresh process), with an empty cache (the
baseline) and then with the cache that run left.

- `edgeexport estimate mobilenet_v2 --target rpi4`: one analysis;
- the analyses a build's report and `calibrate` make: rpi4's 19 reference networks (the
  shipped MLPerf rows).
Usage: python bench/analysis_cache.py
"""
import os
import resource
import subprocess
import sys
import tempfile

REFERENCE_ANALYSES = """
from edgeexport.analysis.cache import cached_analysis
from edgeexport.contracts.variant import Variant
from edgeexport.build.report import reference_table
networks = sorted({(m["family"], m["alpha"], m["resolution"]) for m in reference_table()})
for n in networks:
    cached_analysis(Variant(*n))
print(len(networks))
"""


def cpu_seconds(cmd: list[str], cache: str) -> tuple[float, str]:
    """User + system CPU of the child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True,
                          env={**os.environ, "EDGEEXPORT_CACHE_DIR": cache})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime,
            proc.stdout.strip())


def main() -> None:
    cases = {"estimate mobilenet_v2 1.0 224 (rpi4)":
             [sys.executable, "-m", "edgeexport", "estimate", "mobilenet_v2", "--target", "rpi4",
              "--json"],
             "rpi4's reference networks (report, calibrate)":
             [sys.executable, "-c", REFERENCE_ANALYSES]}
    for name, cmd in cases.items():
        with tempfile.TemporaryDirectory() as cache:
            cold, cold_out = cpu_seconds(cmd, cache)
            warm, warm_out = cpu_seconds(cmd, cache)
        if cold_out != warm_out:
            sys.exit(f"{name}: the cached run printed something else than the fresh one")
        print(f"{name}: {cold:.2f} s of CPU with an empty cache, {warm:.2f} s with it "
              f"({cold / warm:.1f}× less), same output")


if __name__ == "__main__":
    main()
