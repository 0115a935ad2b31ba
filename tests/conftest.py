"""The suite's fixtures. The shared work they read (trainings, exports, builds, venvs) is
started early by the scheduler plugin (tests/support/): its table of jobs is
tests/support/jobs.py."""
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# The suite runs trainings, exports and builds side by side on few cores: this process and
# every process it starts take edgeexport's own thread defaults (torch's OpenMP threads sleep
# rather than spin while another process holds the core they wait for; numpy's OpenBLAS on
# one thread), set before numpy or torch loads.
import edgeexport.cli.process_defaults  # noqa: E402,F401,I001

# Static analyses are cached between commands (edgeexport.analysis.cache): the session keeps
# its own cache, shared by every command it runs, so that it reads nothing from the user's.
os.environ["EDGEEXPORT_CACHE_DIR"] = tempfile.mkdtemp(prefix="edgeexport-test-cache-")
atexit.register(shutil.rmtree, os.environ["EDGEEXPORT_CACHE_DIR"], ignore_errors=True)
# No emulated board is prepared for the suite's commands (`build` checks files on one by
# default when it is): only tests/test_emulated.py points its own commands at its boards.
os.environ["EDGEEXPORT_EMULATED_DIR"] = tempfile.mkdtemp(prefix="edgeexport-test-emulated-")
atexit.register(shutil.rmtree, os.environ["EDGEEXPORT_EMULATED_DIR"], ignore_errors=True)

# The test files import these from here.
from tests.support.commands import (  # noqa: E402,F401
    EDGEEXPORT,
    ROOT,
    assert_one_line_error,
    run_cli,
    run_json,
)
from tests.support.jobs import (  # noqa: E402,F401
    BUILD_GRID,
    BUILD_IDS,
    TFLITE_IO,
    board_python,
    source_copy,
)

pytest_plugins = ["tests.support.scheduler"]  # the `early` fixture: jobs started at once


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


# ---- inputs of the early jobs ----

@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    from tests.synthetic_data import write_dataset
    root = tmp_path_factory.mktemp("data")
    # 200 evaluation images: one flipped prediction moves top-1 by 0.5 points.
    return {"train": write_dataset(root / "train", 48, 80, seed=0),
            "eval": write_dataset(root / "eval", 50, 80, seed=1)}


@pytest.fixture(scope="session")
def labels_file(tmp_path_factory):
    from tests.synthetic_data import CLASSES
    path = tmp_path_factory.mktemp("labels") / "labels.txt"
    path.write_text("\n".join(CLASSES) + "\n")
    return path


@pytest.fixture(scope="session")
def board_root():
    """A directory every account can enter (the pytest tmp tree is private to its user)."""
    root = Path(tempfile.mkdtemp(prefix="edgeexport-board-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


# ---- the results of the early jobs: trained once, exported once, built once per run ----

@pytest.fixture(scope="session")
def trained(early):
    """family → (trained torch model, its weights.pt), trained once per test run."""
    from tests.trained import load_trained
    cache = {}

    def get(family):
        if family not in cache:
            weights = early.get(f"trained:{family}")
            cache[family] = (load_trained(family, weights), weights)
        return cache[family]
    return get


@pytest.fixture(scope="session")
def exported(early):
    """(family, name="plain") → (model, export directory, card) of `edgeexport export` on the
    trained net (other names: jobs.EXPORT_VARIANTS), started as soon as the family has
    trained: they run while the next networks train."""
    done = {}

    def get(family, name="plain"):
        if (family, name) not in done:
            model, out, job = early.get(f"exports:{family}")[name]
            done[family, name] = (model, out, json.loads(job.result().stdout))
        return done[family, name]
    return get


@pytest.fixture(scope="session")
def collapsing_v3(early):
    """name → (model, export directory, finished `edgeexport export`) of a V3-Large trained
    jobs.COLLAPSING_STEPS steps at a constant rate 2e-3: heavy-tailed activations that plain
    int8 cannot hold (cosine far below 0.98). Its exports: jobs.collapsing_exports."""
    from tests.trained import load_trained
    model = load_trained("mobilenet_v3_large", early.get("trained:collapsing"))
    started = early.get("collapsing_exports")
    return lambda name: (model, started[name][0], started[name][1].result(check=False))


@pytest.fixture(scope="session")
def built(early):
    """(dist directory, build summary) of `edgeexport build` on BUILD_GRID, once per run."""
    return early.get("built")


@pytest.fixture(scope="session")
def built_128(early):
    """The dist directory of a build of jobs.BUILD_128_GRID."""
    return early.get("built_128")[0]


@pytest.fixture(scope="session")
def tflite_runtime_python(early):
    """The python of a venv with tflite-runtime 2.14 (jobs.TFLITE_RUNTIME_PINS)."""
    return early.get("tflite_runtime_python")


# ---- "the board": a device venv without torch, served by a real sshd on loopback ----

@pytest.fixture(scope="session")
def device_venv(early):
    """A venv with only `edgeexport[device]` (non-editable, no torch), as on a Raspberry Pi."""
    return early.get("device_venv")


OLD_VERSION = "0.0.1"


@pytest.fixture(scope="session")
def old_device_venv(board_root, device_venv, tmp_path_factory):
    """A real install of edgeexport at another version, its dependencies taken from the
    device venv (a .pth file) rather than downloaded again."""
    root = board_root / "old-venv"
    source = source_copy(tmp_path_factory.mktemp("old-source") / "edgeexport", OLD_VERSION)
    subprocess.run([board_python(), "-m", "venv", root], check=True)
    py = root / "bin" / "python"
    purelib = lambda venv: subprocess.run(  # noqa: E731
        [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib(root), "device-venv.pth").write_text(purelib(device_venv) + "\n")
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", source], check=True)
    return root


# Where the suite prepares its emulated boards (tests/test_emulated.py), once per clone.
EMULATED_CACHE = ROOT / ".venv" / "emulated-cache"


@pytest.fixture(scope="session")
def board(board_root, device_venv, old_device_venv):
    """sshd on 127.0.0.1 serving the board account (see tests/board.py)."""
    from tests.board import Board
    if not Path("/usr/sbin/sshd").exists():
        pytest.fail("openssh-server is not installed: `make test` installs Debian's")
    b = Board(board_root / "sshd", device_venv, old_device_venv,
              EMULATED_CACHE / "rpi4" / "bin")
    b.start()
    yield b
    b.close()
