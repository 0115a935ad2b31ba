import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EDGEEXPORT = [sys.executable, "-m", "edgeexport"]


def run_cli(*args, cwd=None, check=True, env=None):
    """Run the real command in a subprocess: exit codes and stderr as a user sees them."""
    proc = subprocess.run([*EDGEEXPORT, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"edgeexport {' '.join(map(str, args))} exited "
                             f"{proc.returncode}:\n{proc.stderr}")
    return proc


def run_json(*args, **kw):
    return json.loads(run_cli(*args, "--json", **kw).stdout)


def assert_one_line_error(proc, *needles):
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]


@pytest.fixture(scope="session")
def torchvision_models():
    """torchvision's MobileNet modules, loaded without its compiled-ops package __init__."""
    import importlib
    import types
    ref = os.environ.get("TORCHVISION_REFERENCE")
    if not ref or not (Path(ref) / "torchvision").is_dir():
        pytest.fail("torchvision reference not installed: run the tests with `make test`")
    pkg = types.ModuleType("torchvision")
    pkg.__path__ = [str(Path(ref) / "torchvision")]
    saved = sys.modules.get("torchvision")
    sys.modules["torchvision"] = pkg
    try:
        yield {"mobilenet_v2": importlib.import_module("torchvision.models.mobilenetv2"),
               "mobilenet_v3": importlib.import_module("torchvision.models.mobilenetv3")}
    finally:
        if saved is not None:
            sys.modules["torchvision"] = saved


# ---- shared across test files: trained once, exported once per test run ----

@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    from tests.synthetic_data import write_dataset
    root = tmp_path_factory.mktemp("data")
    # 200 evaluation images: one flipped prediction moves top-1 by 0.5 points.
    return {"train": write_dataset(root / "train", 48, 80, seed=0),
            "eval": write_dataset(root / "eval", 50, 80, seed=1)}


@pytest.fixture(scope="session")
def trained(dataset, tmp_path_factory):
    """family → (trained torch model, its weights.pt), trained once per test run."""
    from tests.trained import TRAIN_STEPS, train_and_save
    cache = {}

    def get(family):
        if family not in cache:
            cache[family] = train_and_save(family, dataset, tmp_path_factory.mktemp(family),
                                           TRAIN_STEPS[family])
        return cache[family]
    return get


@pytest.fixture(scope="session")
def exported(dataset, trained, tmp_path_factory):
    """family → (model, export directory, card) of `edgeexport export` on the trained net."""
    from tests.trained import ALPHA, RES
    cache = {}

    def get(family):
        if family not in cache:
            model, weights = trained(family)
            out = tmp_path_factory.mktemp(f"{family}-export")
            card = json.loads(run_cli(
                "export", family, "--alpha", ALPHA, "--resolution", RES, "--num-classes", 4,
                "--weights", weights, "--calib", dataset["train"], "--eval", dataset["eval"],
                "--target", "rpi4", "--out", out, "--json").stdout)
            cache[family] = (model, out, card)
        return cache[family]
    return get


# A small real build, shared by the build and pull tests: V1 and V3-Small α 0.25 at 64/96 px.
BUILD_GRID = ["--target", "rpi4", "--models", "mobilenet_v1,mobilenet_v3_small", "--alpha", "0.25",
              "--resolution", "64,96"]
BUILD_IDS = ["mobilenet_v1_0.25_64", "mobilenet_v1_0.25_96", "mobilenet_v3_small_0.25_64",
             "mobilenet_v3_small_0.25_96"]


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """(dist directory, build summary) of `edgeexport build` on BUILD_GRID, once per run."""
    out = tmp_path_factory.mktemp("dist")
    proc = run_cli("build", *BUILD_GRID, "--out", out, "--json", "--jobs", "2")
    return out, json.loads(proc.stdout)


@pytest.fixture(scope="session")
def full_size_exports(tmp_path_factory):
    """Full-size (α 1.0, 224 px) ONNX exports, untrained: latency does not depend on weights."""
    cache = {}

    def get(family):
        if family not in cache:
            out = tmp_path_factory.mktemp(f"{family}-224")
            run_cli("export", family, "--formats", "onnx", "--out", out)
            cache[family] = out
        return cache[family]
    return get
