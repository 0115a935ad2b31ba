"""Instructions per inference on the emulated Cortex-A72 (rpi4) and Cortex-A76 (rpi5), counted
by a QEMU TCG plugin, and whether they rank the MobileNet V1 grid as the real Raspberry Pi 4
measurements in edgeexport/data do (Spearman), beside the ranking by multiply-accumulates.

EMULATED: the counts are guest instructions executed by QEMU's model of the core, with no
caches, no pipeline and no clock: a count is no time. They tell how much work a runtime's
aarch64 kernels do for a file, and whether that ranks files as a Pi does.

How it counts. Debian's dynamic qemu-aarch64 (package qemu-user; the static one of the
emulated board cannot load plugins) runs the prepared board's arm64 Python with
bench/arm_instructions_plugin.c, compiled here against QEMU 7.2's qemu-plugin.h. One emulated
process per core and runtime runs every file: load, one inference (first-call costs), then
--repeats blocks of --runs inferences, the guest making a marker system call after each; the
plugin prints the running count at each marker. Per inference: a block's count / --runs; the
spread is the largest minus the smallest block. Only the inference loop is counted (the
Python call of invoke()/run() included), never the interpreter start or the model load.

Files: `edgeexport export mobilenet_v1 --alpha A --resolution R` (random weights: the
kernels, so the count, do not depend on their values), kept under the cache and reused.

Prerequisites (each missing one: one line, exit 1): qemu-aarch64 (apt-get install qemu-user),
gcc, QEMU 7.2's qemu-plugin.h (Debian ships it in no binary package: give --plugin-header
the header or QEMU's source tarball, e.g. from `apt-get source --download-only qemu` with a
deb-src line; it is kept in the cache), the emulated boards (edgeexport device emulate rpi4,
rpi5).

Usage: python bench/arm_instructions.py [--boards rpi4,rpi5] [--runtimes litert,litert-builtin]
  [--alphas 0.25,0.5,0.75] [--resolutions 128,160,192,224] [--runs 1] [--repeats 2]
  [--plugin-header FILE]   (litert: LiteRT's default, XNNPACK; litert-builtin: TFLite's own
  kernels, no default delegate, ruy on aarch64 like the measured TFLite 2.7.1; onnxruntime)
"""
import argparse
import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np

from edgeexport.core.errors import UserError
from edgeexport.measure import emulator

PLUGIN_SOURCE = Path(__file__).with_name("arm_instructions_plugin.c")
HEADER = "qemu-plugin.h"
HEADER_PLACES = (Path("/usr/include/qemu") / HEADER, Path("/usr/include") / HEADER)
QEMU = "qemu-aarch64"
MARKER = 4000  # the plugin's marker system call (arm_instructions_plugin.c)
FILES = {"litert": "tflite", "litert-builtin": "tflite", "onnxruntime": "onnx"}
REAL = (("rpi4_mlperf_v2.0_krai_calibration.csv", "tflite", "TFLite 2.7.1 ruy"),
        ("rpi4_mlperf_v2.0_krai_calibration.csv", "armnn", "ArmNN 21.11 Neon"),
        ("rpi4_mlperf_v1.0_krai_calibration.csv", None, "TFLite 2.4.1 ruy"))

# Runs inside the emulated Python: argv[1] is a JSON list of [runtime, path] jobs.
GUEST = f"""
import ctypes, json, sys
import numpy as np
syscall = ctypes.CDLL(None).syscall
def mark(tag):
    syscall(ctypes.c_long({MARKER}), ctypes.c_long(tag))
def random_input(shape, dtype):
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)
def litert(path, builtin):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    kind = (OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if builtin
            else OpResolverType.AUTO)
    it = Interpreter(model_path=path, num_threads=1, experimental_op_resolver_type=kind)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    it.set_tensor(inp["index"], random_input(inp["shape"], inp["dtype"]))
    return it.invoke
def onnxruntime(path):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    dtype = np.float32 if inp.type == "tensor(float)" else np.uint8
    feed = {{inp.name: random_input([d if isinstance(d, int) else 1 for d in inp.shape], dtype)}}
    return lambda: session.run(None, feed)
jobs, runs, repeats = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
tag = 0
for runtime, path in jobs:
    infer = onnxruntime(path) if runtime == "onnxruntime" else litert(
        path, runtime == "litert-builtin")
    infer()
    for block in range(repeats + 1):
        if block:
            for _ in range(runs):
                infer()
        mark(tag)
        tag += 1
    del infer
"""


def fail(message: str):
    print(f"arm_instructions: {message}", file=sys.stderr)
    sys.exit(1)


def work_dir() -> Path:
    return emulator.cache_root() / "arm-instructions"


# ---- the plugin ----

def header_from(given: Path, keep: Path) -> None:
    """Copy qemu-plugin.h to ``keep`` from a header file or a QEMU source tarball."""
    if not given.is_file():
        fail(f"--plugin-header {given}: no such file")
    if not tarfile.is_tarfile(given):
        shutil.copyfile(given, keep)
        return
    with tarfile.open(given) as tar:
        member = next((m for m in tar if m.name.endswith(f"include/qemu/{HEADER}")), None)
        if member is None:
            fail(f"--plugin-header {given}: no include/qemu/{HEADER} in that tarball")
        keep.write_bytes(tar.extractfile(member).read())


def find_header(given: Path | None) -> Path:
    keep = work_dir() / HEADER
    if given is not None:
        keep.parent.mkdir(parents=True, exist_ok=True)
        header_from(given, keep)
    for place in (keep, *HEADER_PLACES):
        if place.is_file():
            return place
    fail(f"QEMU 7.2's {HEADER} not found (no Debian binary package ships it): pass "
         "--plugin-header FILE, the header or QEMU's source tarball (apt-get source "
         "--download-only qemu, with a deb-src line)")


def build_plugin(header: Path) -> Path:
    """The plugin, compiled once per source and header (by content hash) into the cache."""
    if shutil.which("gcc") is None:
        fail("gcc not found: apt-get install gcc")
    key = hashlib.sha256(PLUGIN_SOURCE.read_bytes() + header.read_bytes()).hexdigest()[:16]
    plugin = work_dir() / f"count-{key}.so"
    if plugin.exists():
        return plugin
    tmp = plugin.with_name(f".{plugin.name}.{os.getpid()}")
    proc = subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-I", str(header.parent), "-o",
                           str(tmp), str(PLUGIN_SOURCE)], capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        fail(f"the plugin does not compile against {header}: "
             f"{(proc.stderr.strip().splitlines() or ['?'])[0]}")
    os.replace(tmp, plugin)
    return plugin


# ---- the files ----

def variant_dir(alpha: float, resolution: int) -> Path:
    return work_dir() / "files" / f"mobilenet_v1-{alpha:g}-{resolution}"


def export(alpha: float, resolution: int, formats: set[str]) -> Path:
    """The exported variant, made once (into a temporary directory, then renamed)."""
    final = variant_dir(alpha, resolution)
    if all((final / f"model.{p}.{ext}").exists() for p in ("fp32", "int8") for ext in formats):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    edgeexport = Path(sys.executable).with_name("edgeexport")
    proc = subprocess.run([str(edgeexport), "export", "mobilenet_v1", "--alpha", str(alpha),
                           "--resolution", str(resolution), "--formats", ",".join(sorted(formats)),
                           "--out", str(tmp)], capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        fail(f"export mobilenet_v1 {alpha:g}-{resolution} failed: "
             f"{(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    return final


def total_macs(variant: Path) -> int:
    return json.loads((variant / "analysis.json").read_text())["total_macs"]


# ---- counting ----

def guest_environment(board: emulator.Prepared) -> dict[str, str]:
    """The emulated process's environment: its own PYTHONPATH (the board's aarch64 wheels,
    never ours), one OpenBLAS/OpenMP thread (one computing thread: the plugin's counter is not
    atomic)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "QEMU_", "LD_")) and k != "VIRTUAL_ENV"}
    env.update(PYTHONPATH=str(Path(board.site) / "lib"), PYTHONNOUSERSITE="1",
               PYTHONSAFEPATH="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return env


def count(board: emulator.Prepared, qemu: str, plugin: Path, jobs: list[tuple[str, Path]],
          runs: int, repeats: int) -> list[list[float]]:
    """Per job, the instructions per inference of each block, in one emulated process."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "plugin.log"
        root = Path(board.root)
        argv = [qemu, "-cpu", board.core, "-L", str(root), "-plugin", str(plugin),
                "-d", "plugin", "-D", str(log), str(root / emulator.PYTHON), "-c", GUEST,
                json.dumps([[runtime, str(path)] for runtime, path in jobs]), str(runs),
                str(repeats)]
        proc = subprocess.run(argv, capture_output=True, text=True, env=guest_environment(board),
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            fail(f"emulated {board.board} ({board.core}) failed: "
                 f"{(proc.stderr.strip().splitlines() or ['exit %d' % proc.returncode])[-1]}")
        marks = [int(line.split()[2]) for line in log.read_text().splitlines()
                 if line.startswith("mark ")]
    if len(marks) != len(jobs) * (repeats + 1):
        fail(f"emulated {board.board}: {len(marks)} markers, expected "
             f"{len(jobs) * (repeats + 1)} (does {QEMU} load the plugin?)")
    per_job = np.diff(np.array(marks).reshape(len(jobs), repeats + 1), axis=1) / runs
    return per_job.tolist()


# ---- the real Pi 4 ----

def real_latencies(csv_name: str, runtime: str | None) -> dict[tuple[float, int, bool], float]:
    """(α, resolution, quantized) → mean latency ms of the V1 rows of one shipped file."""
    text = (resources.files("edgeexport.data") / csv_name).read_text()
    return {(float(r["width_multiplier"]), int(r["resolution"]), r["quantized"] == "true"):
            float(r["mean_latency_ms"]) for r in csv.DictReader(text.splitlines())
            if r["model_family"] == "v1" and (runtime is None or r["runtime"] == runtime)}


def ranks(values) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank."""
    values = np.asarray(values, float)
    order = values.argsort(kind="stable")
    result = np.empty(len(values))
    result[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        result[tied] = result[tied].mean()
    return result


def spearman(x, y) -> float:
    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


def ratio_spread(work, latency) -> float:
    """Largest over smallest ms per unit of work across the files: 1.0 when latency is
    proportional to the work, what a one-coefficient estimator would need (Spearman only
    asks for the order)."""
    ratio = np.asarray(latency) / np.asarray(work)
    return float(ratio.max() / ratio.min())


# ---- the run ----

def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boards", default="rpi4,rpi5")
    parser.add_argument("--runtimes", default="litert,litert-builtin",
                        help="of litert, litert-builtin, onnxruntime")
    parser.add_argument("--alphas", default="0.25,0.5,0.75")
    parser.add_argument("--resolutions", default="128,160,192,224")
    parser.add_argument("--runs", type=int, default=1, help="inferences per block")
    parser.add_argument("--repeats", type=int, default=2, help="blocks per file")
    parser.add_argument("--plugin-header", type=Path)
    args = parser.parse_args()
    args.boards = args.boards.split(",")
    args.runtimes = args.runtimes.split(",")
    unknown = set(args.runtimes) - set(FILES)
    if unknown:
        fail(f"--runtimes: unknown {', '.join(sorted(unknown))} (of {', '.join(FILES)})")
    args.grid = [(float(a), int(r)) for a in args.alphas.split(",")
                 for r in args.resolutions.split(",")]
    return args


def prerequisites(args) -> tuple[str, Path, list[emulator.Prepared]]:
    qemu = shutil.which(QEMU)
    if qemu is None:
        fail(f"{QEMU} not found (Debian's dynamic QEMU, which loads TCG plugins; the static "
             "one cannot): apt-get install qemu-user")
    plugin = build_plugin(find_header(args.plugin_header))
    try:
        boards = [emulator.load(name) for name in args.boards]
    except UserError as error:
        fail(str(error))
    return qemu, plugin, boards


def print_counts(rows: list[dict]) -> None:
    print(f"\n{'board':<5} {'core':<11} {'runtime':<15} {'file':<25} {'MACs':>6} "
          f"{'instructions/inference':>23} {'spread':>8}")
    for r in rows:
        print(f"{r['board']:<5} {r['core']:<11} {r['runtime']:<15} {r['file']:<25} "
              f"{r['macs'] / 1e6:>5.0f}M {r['mean'] / 1e6:>22.2f}M {r['spread'] / 1e6:>7.3f}M")


def print_rankings(rows: list[dict]) -> None:
    """Spearman of counts (and of MACs) against each real source, fp32 files against fp32
    rows, int8 files against the quantized (uint8) rows."""
    print("\nSpearman rank correlation with the real Pi 4's mean latency (MobileNet V1 rows of "
          "the grid; n files; MACs: the same files ranked by multiply-accumulates), and in "
          "brackets the spread of ms per unit of work (largest/smallest ratio, 1.00× = "
          "proportional):")
    for csv_name, runtime, title in REAL:
        real = real_latencies(csv_name, runtime)
        for board, core, rt, precision in sorted({(r["board"], r["core"], r["runtime"],
                                                   r["precision"]) for r in rows}):
            matched = [r for r in rows if (r["board"], r["runtime"], r["precision"]) ==
                       (board, rt, precision) and r["key"] + (precision == "int8",) in real]
            if len(matched) < 3:
                continue
            latency = [real[r["key"] + (precision == "int8",)] for r in matched]
            counts, macs = [r["mean"] for r in matched], [r["macs"] for r in matched]
            print(f"  {title:<17} {'uint8' if precision == 'int8' else 'fp32':<5} vs "
                  f"{board} {core:<11} {rt:<15} {precision:<4}: counts "
                  f"{spearman(counts, latency):+.3f} ({ratio_spread(counts, latency):.2f}×), "
                  f"MACs {spearman(macs, latency):+.3f} ({ratio_spread(macs, latency):.2f}×) "
                  f"(n={len(matched)})")


def main() -> None:
    args = parse()
    started = time.monotonic()
    qemu, plugin, boards = prerequisites(args)
    formats = {FILES[r] for r in args.runtimes}
    print(f"EMULATED instruction counts (QEMU {QEMU}, TCG plugin {plugin.name}): "
          "correctness and ranking only, never time.")
    variants = {key: export(*key, formats) for key in args.grid}
    print(f"{len(variants)} MobileNet V1 variants exported under {work_dir() / 'files'} "
          f"({time.monotonic() - started:.0f} s so far)")
    rows = []
    for board in boards:
        for runtime in args.runtimes:
            ext = FILES[runtime]
            jobs = [(key, precision, variant / f"model.{precision}.{ext}")
                    for key, variant in variants.items() for precision in ("fp32", "int8")]
            t0 = time.monotonic()
            blocks = count(board, qemu, plugin, [(runtime, path) for _, _, path in jobs],
                           args.runs, args.repeats)
            print(f"  {board.board} ({board.core}) {runtime}: {len(jobs)} files counted in "
                  f"{time.monotonic() - t0:.0f} s")
            for (key, precision, path), counts in zip(jobs, blocks):
                rows.append({"board": board.board, "core": board.core, "runtime": runtime,
                             "key": key, "precision": precision,
                             "file": f"{key[0]:g}-{key[1]} {path.name}",
                             "macs": total_macs(variants[key]), "mean": float(np.mean(counts)),
                             "spread": max(counts) - min(counts)})
    print_counts(rows)
    print_rankings(rows)
    print(f"\n{args.runs} inference(s) × {args.repeats} blocks per file after one first "
          f"inference; spread = largest − smallest block. Whole run: "
          f"{time.monotonic() - started:.0f} s.")


if __name__ == "__main__":
    main()
