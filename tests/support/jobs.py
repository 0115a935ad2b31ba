"""The session's early jobs: one table (JOBS) of the shared work the tests read, started when
the session begins if a collected test uses the fixture reading it, side by side.

Tuned so that `make test` fits ~9 minutes on 2 cores (seed 0): the shared build and the
commands the tests run themselves go first (nice 0), the trainings fill whatever CPU those
leave. The chains the last tests wait for (V2, V3-Large and V3-Small: trainings and their
exports) run at CHAIN_NICE, the rest of the early work at EARLY_NICE: V1's chain ends last.

``order`` is where the tests reading a job run (tests.support.scheduler): the trained networks
and their exports are the last shared work to finish, so the tests reading them run after the
others (builds, the board, the farm, pull), which then run while the networks train. Among
them: those reading only weights first (a training ends a minute before its exports), then
those of one family in the order the families' exports were ready in measured runs, and last
those reading several families or naming theirs inside, and the collapsing V3's (a few seconds
each): what is left to run after the last export is that family's tests, not a quarter of all.
"""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import sys
from pathlib import Path

from tests.support.commands import EDGEEXPORT, ROOT
from tests.support.runner import Context, Job

EARLY_NICE = 10
CHAIN_NICE = 5


# ---- the trainings (tests.trained: one process each, on one thread) ----

# An under-trained V3-Large: 80 steps at a constant rate 2e-3 (tests of int8 drift). Measured
# (channels-last, one thread), plain int8 cosine / with 1 to 16 layers kept at 16 bits /
# heaviest tail: 80 steps 0.65 / 0.46-0.64 / 107×; 120 steps 0.51 / 0.37-0.51 / 121×; 250
# steps 0.69 / 0.58-0.69 / 115×: it collapses at each, 80 costs the least CPU.
COLLAPSING_STEPS = 80
COLLAPSING_RECIPE = ("lr=2e-3", "schedule=constant")


def train(family: str, steps: int | None = None, *recipe: str, directory: str | None = None):
    """Train ``family`` (TRAIN_STEPS unless ``steps``): the weights.pt path."""
    def start(ctx: Context) -> Path:
        from tests.trained import TRAIN_STEPS
        out = ctx.tmp(directory or family)
        data = ctx.inputs["dataset"]["train"].parent
        ctx.run([sys.executable, "-m", "tests.trained", family,
                 steps or TRAIN_STEPS[family], data, out, *recipe], cwd=ROOT)
        return out / "weights.pt"
    return start


# ---- the exports of the trained networks: started in the background as soon as one has
# trained, they run while the next networks train ----

# The .tflite I/O type of a family's plain export: the target's (int8) but for the families
# named here. V1's plain export also covers `--tflite-io uint8` (an export of its own cost
# ~30 s of CPU).
TFLITE_IO = {"mobilenet_v1": "uint8"}

# Exports of a trained network besides the plain one, by name: their extra arguments
# ("outlier_channel" also exports edited weights: _edited_weights).
EXPORT_VARIANTS = {"mobilenet_v3_large": {"outlier_channel": ["--calib-method", "MinMax"]}}


def export_args(family, weights, dataset, labels, out):
    """`edgeexport export` of a trained fixture network, as the `exported` fixture runs it."""
    from tests.trained import ALPHA, RES
    io = ["--tflite-io", TFLITE_IO[family]] if family in TFLITE_IO else []
    return ["export", family, "--alpha", ALPHA, "--resolution", RES, "--num-classes", 4,
            "--weights", weights, "--calib", dataset["train"], "--eval", dataset["eval"],
            "--labels", labels, "--target", "rpi4", *io, "--out", out]


def _edited_weights(name, model, directory: Path):
    """The variant's network and weights file: the trained one, or (outlier_channel) the
    trained one with an outlier channel (tests.trained.with_outlier_channel)."""
    import torch

    from tests.trained import with_outlier_channel
    if name != "outlier_channel":
        return model, None
    edited = with_outlier_channel(copy.deepcopy(model))
    torch.save(edited.state_dict(), directory / "weights.pt")
    return edited, directory / "weights.pt"


def exports(family: str):
    """The family's exports (the plain one and EXPORT_VARIANTS), started together in the
    background at the job's niceness: name → (network, export directory, Started)."""
    def start(ctx: Context) -> dict:
        from tests.trained import load_trained
        weights = ctx.result(f"trained:{family}")
        model = load_trained(family, weights)
        started = {}
        for name, extra in {"plain": [], **EXPORT_VARIANTS.get(family, {})}.items():
            out = ctx.tmp(f"{family}-{name}-export")
            logs = ctx.tmp(f"{family}-{name}-logs")
            net, edited = _edited_weights(name, model, logs)
            args = export_args(family, edited or weights, ctx.inputs["dataset"],
                               ctx.inputs["labels_file"], out)
            started[name] = (net, out, ctx.launch([*EDGEEXPORT, *args, *extra, "--json"],
                                                  logs, label=name))
        return started
    return start


def collapsing_exports(ctx: Context) -> dict:
    """The collapsing V3's two exports, started together in the background: "refused"
    (--no-repair: it must exit 1) and "repaired" (the default: no range setting holds, the
    repair ladder ships a mixed-precision file). name → (export directory, Started)."""
    from tests.trained import ALPHA, RES
    dataset = ctx.inputs["dataset"]
    common = ["export", "mobilenet_v3_large", "--alpha", ALPHA, "--resolution", RES,
              "--num-classes", 4, "--weights", ctx.result("trained:collapsing"),
              "--calib", dataset["train"], "--eval", dataset["eval"]]
    extra = {"refused": ["--no-repair"], "repaired": ["--target", "rpi4", "--json"]}
    started = {}
    for name, args in extra.items():
        out = ctx.tmp(f"collapsing-{name}")
        started[name] = (out, ctx.launch([*EDGEEXPORT, *common, *args, "--out", out],
                                         ctx.tmp(f"collapsing-{name}-logs"), label=name,
                                         watch=name == "repaired"))
    return started


# ---- the builds ----

# A small real build, shared by the build and pull tests: V1 and V3-Small α 0.25 at 64/96 px.
BUILD_GRID = ["--target", "rpi4", "--family", "mobilenet_v1,mobilenet_v3_small", "--alpha", "0.25",
              "--resolution", "64,96"]
BUILD_IDS = ["mobilenet_v1_0.25_64", "mobilenet_v1_0.25_96", "mobilenet_v3_small_0.25_64",
             "mobilenet_v3_small_0.25_96"]

# V1 α 0.25 and 0.5 at 128 px: variants the MLPerf reference table has a top-1 for (pull).
# ONNX only: the budget choice is under test there, the TFLite files are pulled from `built`.
BUILD_128_GRID = ["--target", "rpi4", "--family", "mobilenet_v1", "--alpha", "0.25,0.5",
                  "--resolution", "128", "--formats", "onnx"]


def build(directory: str, grid: list[str]):
    """`edgeexport build` of ``grid``: (dist directory, build summary). One worker process:
    a second one's imports cost ~10 s of CPU, and the trainings keep the other core busy."""
    def start(ctx: Context) -> tuple[Path, dict]:
        out = ctx.tmp(directory)
        proc = ctx.run([*EDGEEXPORT, "build", *grid, "--out", out, "--json", "--jobs", 1])
        return out, json.loads(proc.stdout)
    return start


# ---- venvs ----

# tflite-runtime 2.14, the last release Raspberry Pi OS users keep: its own venv (numpy < 2),
# created once and kept in .venv/ across runs (the marker names exactly what was installed).
TFLITE_RUNTIME_PINS = ("tflite-runtime==2.14.0", "numpy==1.26.4")


def tflite_runtime_venv(ctx: Context) -> Path:
    venv = ROOT / ".venv" / "tflite-runtime-2.14"
    marker = venv / ".installed"
    python = venv / "bin" / "python"
    if not marker.is_file() or marker.read_text() != " ".join(TFLITE_RUNTIME_PINS):
        ctx.run([sys.executable, "-m", "venv", "--clear", venv])
        ctx.run([python, "-m", "pip", "install", "-q", *TFLITE_RUNTIME_PINS])
        marker.write_text(" ".join(TFLITE_RUNTIME_PINS))
    return python


def _usable_by_everyone(path: Path) -> bool:
    """The interpreter and every directory above it can be entered by any account (a pyenv
    under /root cannot: the board's account could not run a venv made from it)."""
    real = Path(os.path.realpath(path))
    return all(os.stat(p).st_mode & 0o001 for p in [real, *real.parents])


def board_python() -> str:
    """An interpreter the board's unprivileged account can run."""
    import pytest
    if os.geteuid() != 0:
        return sys.executable
    for candidate in (getattr(sys, "_base_executable", sys.executable), "/usr/bin/python3"):
        if Path(candidate).exists() and _usable_by_everyone(Path(candidate)):
            return candidate
    pytest.fail("no Python interpreter that an unprivileged account can run")


def source_copy(dest: Path, version: str | None = None) -> Path:
    """The tracked source tree (setuptools writes build/ and *.egg-info into it)."""
    anywhere = shutil.ignore_patterns("*.egg-info", "__pycache__", ".pytest_cache")

    def ignore(directory, names):
        top = {".venv", ".git", "dist", "build", "site"} if Path(directory) == ROOT else set()
        return anywhere(directory, names) | (top & set(names))  # edgeexport/build/ is code
    shutil.copytree(ROOT, dest, ignore=ignore)
    if version is not None:
        pyproject = dest / "pyproject.toml"
        text = pyproject.read_text()
        assert 'version = "' in text
        pyproject.write_text(re.sub(r'(?m)^version = ".*"$', f'version = "{version}"', text))
    return dest


def device_venv(ctx: Context) -> Path:
    """A venv with only `edgeexport[device]` (non-editable, no torch), as on a Raspberry Pi,
    in the board's directory."""
    root = ctx.inputs["board_root"] / "device-venv"
    source = source_copy(ctx.tmp("source") / "edgeexport")
    ctx.run([board_python(), "-m", "venv", root])
    ctx.run([root / "bin" / "python", "-m", "pip", "install", "-q",
             "-c", ROOT / "constraints.txt", f"{source}[device]"])
    return root


# ---- the table ----

# Listed in the order they start (all at once; a job after those it needs). fixture: the
# fixture reading the job's result; inputs: the session fixtures it reads; order: see above.
JOBS = (
    Job("trained:mobilenet_v1", train("mobilenet_v1"), nice=EARLY_NICE, order=1,
        fixture="trained", family="mobilenet_v1", inputs=("dataset",)),
    Job("trained:mobilenet_v2", train("mobilenet_v2"), nice=CHAIN_NICE, order=1,
        fixture="trained", family="mobilenet_v2", inputs=("dataset",)),
    Job("trained:mobilenet_v3_large", train("mobilenet_v3_large"), nice=CHAIN_NICE, order=1,
        fixture="trained", family="mobilenet_v3_large", inputs=("dataset",)),
    Job("trained:mobilenet_v3_small", train("mobilenet_v3_small"), nice=CHAIN_NICE, order=1,
        fixture="trained", family="mobilenet_v3_small", inputs=("dataset",)),
    Job("trained:collapsing", train("mobilenet_v3_large", COLLAPSING_STEPS, *COLLAPSING_RECIPE,
                                    directory="immature"),
        nice=EARLY_NICE, order=1, fixture="collapsing_v3", inputs=("dataset",)),
    Job("device_venv", device_venv, fixture="device_venv", inputs=("board_root",)),
    Job("tflite_runtime_python", tflite_runtime_venv, fixture="tflite_runtime_python"),
    Job("built", build("dist", BUILD_GRID), fixture="built"),
    Job("built_128", build("dist128", BUILD_128_GRID), nice=EARLY_NICE, fixture="built_128"),
    Job("collapsing_exports", collapsing_exports, needs=("trained:collapsing",),
        nice=EARLY_NICE, order=6, fixture="collapsing_v3", inputs=("dataset",)),
    Job("exports:mobilenet_v1", exports("mobilenet_v1"), needs=("trained:mobilenet_v1",),
        nice=EARLY_NICE, order=5, fixture="exported", family="mobilenet_v1",
        inputs=("dataset", "labels_file")),
    Job("exports:mobilenet_v2", exports("mobilenet_v2"), needs=("trained:mobilenet_v2",),
        nice=CHAIN_NICE, order=3, fixture="exported", family="mobilenet_v2",
        inputs=("dataset", "labels_file")),
    Job("exports:mobilenet_v3_large", exports("mobilenet_v3_large"),
        needs=("trained:mobilenet_v3_large",), nice=CHAIN_NICE, order=4, fixture="exported",
        family="mobilenet_v3_large", inputs=("dataset", "labels_file")),
    Job("exports:mobilenet_v3_small", exports("mobilenet_v3_small"),
        needs=("trained:mobilenet_v3_small",), nice=CHAIN_NICE, order=2, fixture="exported",
        family="mobilenet_v3_small", inputs=("dataset", "labels_file")),
)

# Fixtures that read no job but whose tests must not run starved, in the first process
# (not "background"): the Dask farm's 5-second timeouts.
FOREGROUND_ONLY = ("farm",)
