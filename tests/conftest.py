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
