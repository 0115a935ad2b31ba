import atexit
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EDGEEXPORT = [sys.executable, "-m", "edgeexport"]

# The suite runs trainings, exports and builds side by side on few cores: this process and
# every process it starts take edgeexport's own thread defaults (torch's OpenMP threads sleep
# rather than spin while another process holds the core they wait for; numpy's OpenBLAS on
# one thread), set before numpy or torch loads.
import edgeexport.cli.process_defaults  # noqa: E402,F401

# Static analyses are cached between commands (edgeexport.analysis.cache): the session keeps
# its own cache, shared by every command it runs, so that it reads nothing from the user's.
os.environ["EDGEEXPORT_CACHE_DIR"] = tempfile.mkdtemp(prefix="edgeexport-test-cache-")
atexit.register(shutil.rmtree, os.environ["EDGEEXPORT_CACHE_DIR"], ignore_errors=True)

# The session's shared work (trainings, exports, builds, venvs, the board), and the Dask farm,
# whose 5-second timeouts must not run starved. A test needing none of these is marked
# "background": `make test` runs those in a second pytest process at EARLY_NICE, beside the
# trainings, while the first process's tests run one by one.
FOREGROUND_FIXTURES = {"trained", "exported", "collapsing_v3", "built", "built_128",
                       "device_venv", "old_device_venv", "board", "tflite_runtime_python",
                       "farm"}


# The trained networks and their exports are the last shared work to finish: the tests reading
# them run after the others (builds, the board, the farm, pull), which then run while the
# networks train instead of one by one after them. Among them, those reading only weights
# first (a training ends a minute before its exports), then those of one family in the order
# the families were ready in measured runs (READY_ORDER, from their chains' priorities and
# lengths), and last those reading several or naming theirs inside (a few seconds each):
# what is left to run after the last export is that family's tests, not a quarter of all.
LAST_FIXTURES = {"trained", "exported", "collapsing_v3"}
READY_ORDER = ("mobilenet_v3_small", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v1")


def _run_order(item) -> tuple[int, int]:
    used = set(item.fixturenames)
    if not used & LAST_FIXTURES:
        return 0, 0
    if not used & {"exported", "collapsing_v3"}:
        return 1, 0
    family = getattr(item, "callspec", None) and item.callspec.params.get("family")
    return 2, READY_ORDER.index(family) if family in READY_ORDER else len(READY_ORDER)


@pytest.hookimpl(tryfirst=True)  # before -m selects on the mark
def pytest_collection_modifyitems(items):
    for item in items:
        if not FOREGROUND_FIXTURES & set(item.fixturenames):
            item.add_marker("background")
    items.sort(key=_run_order)  # stable


def _lowered(nice: int):
    """A preexec_fn lowering the child's priority by ``nice`` (None: left as it is)."""
    return (lambda: os.nice(nice)) if nice else None


def run_cli(*args, cwd=None, check=True, env=None, nice=0):
    """Run the real command in a subprocess: exit codes and stderr as a user sees them.
    ``nice``: lower its priority (work started early that nothing waits on yet)."""
    proc = subprocess.run([*EDGEEXPORT, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, preexec_fn=_lowered(nice))
    if check and proc.returncode != 0:
        raise AssertionError(f"edgeexport {' '.join(map(str, args))} exited "
                             f"{proc.returncode}:\n{proc.stderr}")
    return proc


def run_json(*args, **kw):
    return json.loads(run_cli(*args, "--json", **kw).stdout)


class Started:
    """An `edgeexport` command started in the background (output to files, so that no pipe
    fills while nobody reads it); ``result()`` waits for it like run_cli."""

    def __init__(self, args, logs: Path, nice: int = 0) -> None:
        self.args = [str(a) for a in args]
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / "stdout", "w") as stdout, open(logs / "stderr", "w") as stderr:
            self.proc = subprocess.Popen([*EDGEEXPORT, *self.args], stdout=stdout, stderr=stderr,
                                         preexec_fn=_lowered(nice))

    def result(self, check=True) -> subprocess.CompletedProcess:
        done = subprocess.CompletedProcess(self.args, self.proc.wait(),
                                           (self.logs / "stdout").read_text(),
                                           (self.logs / "stderr").read_text())
        if check and done.returncode != 0:
            raise AssertionError(f"edgeexport {' '.join(self.args)} exited "
                                 f"{done.returncode}:\n{done.stderr}")
        return done

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


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


# ---- work that needs nothing the tests make, started when the session begins ----

# The priority of the early work the first test files do not read (the trainings and their
# exports, the 128 px build): the shared build they read, and the commands the tests run
# themselves, go first, and the trainings fill whatever CPU those leave.
EARLY_NICE = 10
# Except the chains of V2, V3-Large and V3-Small, trainings and exports, which the last tests
# wait for: V1's ends last (READY_ORDER).
LONG_CHAIN_NICE = {"mobilenet_v2": 5, "mobilenet_v3_large": 5, "mobilenet_v3_small": 5}


class EarlyWork:
    """Fixture name → its result. What a collected test needs is started on a thread when the
    session begins (trainings, builds of random networks, venv installs: subprocesses the
    thread waits on), so that it all runs side by side; anything else starts when first
    asked for."""

    def __init__(self, makers: dict, needed: set[str]) -> None:
        import threading
        from concurrent.futures import ThreadPoolExecutor
        # More threads than there are jobs (at most 14): every job starts when the session
        # begins; the threads only wait on subprocesses.
        self.pool = ThreadPoolExecutor(max_workers=16)
        self.closing = threading.Event()  # set at the session's end: start nothing more
        self.makers = makers
        self.futures = {name: self.pool.submit(make) for name, make in makers.items()
                        if name in needed}

    def start(self, name: str, make) -> None:
        self.futures[name] = self.pool.submit(make)

    def get(self, name: str):
        if name not in self.futures:
            self.start(name, self.makers[name])
        return self.futures[name].result()

    def finished(self, prefix: str) -> list:
        """The results of the jobs named ``prefix…`` that have ended without an error."""
        return [f.result() for name, f in self.futures.items()
                if name.startswith(prefix) and f.done() and f.exception() is None]


@pytest.fixture(scope="session", autouse=True)
def early(request, tmp_path_factory, board_root):
    from tests.trained import FAMILIES, TRAIN_STEPS
    needed = {name for item in request.session.items for name in item.fixturenames}
    dist, dist128, source = (tmp_path_factory.mktemp(n) for n in ("dist", "dist128", "source"))
    makers = {}
    if needed & {"trained", "collapsing_v3", "exported"}:
        data = request.getfixturevalue("dataset")["train"].parent
        for family in FAMILIES:
            makers[f"trained:{family}"] = _trainer(
                family, TRAIN_STEPS[family], data, tmp_path_factory.mktemp(family),
                nice=LONG_CHAIN_NICE.get(family, EARLY_NICE))
        makers["trained:collapsing"] = _trainer(
            "mobilenet_v3_large", COLLAPSING_STEPS, data, tmp_path_factory.mktemp("immature"),
            *COLLAPSING_RECIPE, nice=EARLY_NICE)
        needed |= set(makers)
    makers.update({  # all start at once
        "device_venv": lambda: _device_venv(board_root / "device-venv", source / "edgeexport"),
        "tflite_runtime_python": _tflite_runtime_venv,
        # Both builds export in one worker process: a second worker's imports cost ~10 s of
        # CPU, and the trainings keep the other core busy anyway.
        "built": lambda: _build(dist, BUILD_GRID, jobs=1),
        "built_128": lambda: _build(dist128, BUILD_128_GRID, jobs=1, nice=EARLY_NICE),
    })
    work = EarlyWork(makers, needed)
    if "collapsing_v3" in needed:  # its exports start as soon as its training ends
        data = request.getfixturevalue("dataset")
        work.start("collapsing_exports", lambda: _start_collapsing_exports(
            work.get("trained:collapsing"), data, tmp_path_factory))
    if "exported" in needed:  # each family's exports start as soon as its training ends
        data, labels = request.getfixturevalue("dataset"), request.getfixturevalue("labels_file")
        for family in FAMILIES:
            work.start(f"exports:{family}", lambda family=family: _start_exports(
                family, work, data, labels, tmp_path_factory))
    yield work
    work.closing.set()
    work.pool.shutdown(cancel_futures=True)


# An under-trained V3-Large: 80 steps at a constant rate 2e-3 (tests of int8 drift). Measured
# (channels-last, one thread), plain int8 cosine / with 1 to 16 layers kept at 16 bits /
# heaviest tail: 80 steps 0.65 / 0.46-0.64 / 107×; 120 steps 0.51 / 0.37-0.51 / 121×; 250
# steps 0.69 / 0.58-0.69 / 115×: it collapses at each, 80 costs the least CPU.
COLLAPSING_STEPS = 80
COLLAPSING_RECIPE = ("lr=2e-3", "schedule=constant")


def _trainer(family: str, steps: int, data: Path, out: Path, *recipe: str, nice: int):
    """Train in a process of its own (on one thread: tests.trained), at ``nice``: the
    networks train side by side."""
    def train() -> Path:
        proc = subprocess.run([sys.executable, "-m", "tests.trained", family, str(steps),
                               str(data), str(out), *recipe], cwd=ROOT, capture_output=True,
                              text=True, preexec_fn=_lowered(nice))
        if proc.returncode != 0:
            raise AssertionError(f"training {family} failed:\n{proc.stderr}")
        return out / "weights.pt"
    return train


# ---- shared across test files: trained once, exported once per test run ----

@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    from tests.synthetic_data import write_dataset
    root = tmp_path_factory.mktemp("data")
    # 200 evaluation images: one flipped prediction moves top-1 by 0.5 points.
    return {"train": write_dataset(root / "train", 48, 80, seed=0),
            "eval": write_dataset(root / "eval", 50, 80, seed=1)}


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


def _start_collapsing_exports(weights: Path, dataset, tmp_path_factory) -> dict:
    """The collapsing V3's two exports, started together in the background at EARLY_NICE:
    "refused" (--no-repair) and "repaired" (the default: no range setting holds, the repair
    ladder ships a mixed-precision file). name → (export directory, Started)."""
    from tests.trained import ALPHA, RES
    common = ["export", "mobilenet_v3_large", "--alpha", ALPHA, "--resolution", RES,
              "--num-classes", 4, "--weights", weights, "--calib", dataset["train"],
              "--eval", dataset["eval"]]
    extra = {"refused": ["--no-repair"], "repaired": ["--target", "rpi4", "--json"]}
    started = {}
    for name, args in extra.items():
        out = tmp_path_factory.mktemp(f"collapsing-{name}")
        started[name] = (out, Started([*common, *args, "--out", out],
                                      tmp_path_factory.mktemp(f"collapsing-{name}-logs"),
                                      nice=EARLY_NICE))
    return started


@pytest.fixture(scope="session")
def collapsing_v3(early):
    """name → (model, export directory, finished `edgeexport export`) of a V3-Large trained
    COLLAPSING_STEPS steps at a constant rate 2e-3: heavy-tailed activations that plain int8
    cannot hold (cosine far below 0.98). Trained once per run; its exports:
    _start_collapsing_exports."""
    from tests.trained import load_trained
    model = load_trained("mobilenet_v3_large", early.get("trained:collapsing"))
    started = early.get("collapsing_exports")
    yield lambda name: (model, started[name][0], started[name][1].result(check=False))
    for _, job in started.values():
        job.stop()


@pytest.fixture(scope="session")
def labels_file(tmp_path_factory):
    from tests.synthetic_data import CLASSES
    path = tmp_path_factory.mktemp("labels") / "labels.txt"
    path.write_text("\n".join(CLASSES) + "\n")
    return path


# The .tflite I/O type of a family's plain export: the target's (int8) but for the families
# named here. V1's plain export also covers `--tflite-io uint8` (an export of its own cost
# ~30 s of CPU).
TFLITE_IO = {"mobilenet_v1": "uint8"}


def export_args(family, weights, dataset, labels, out):
    """`edgeexport export` of a trained fixture network, as the `exported` fixture runs it."""
    from tests.trained import ALPHA, RES
    io = ["--tflite-io", TFLITE_IO[family]] if family in TFLITE_IO else []
    return ["export", family, "--alpha", ALPHA, "--resolution", RES, "--num-classes", 4,
            "--weights", weights, "--calib", dataset["train"], "--eval", dataset["eval"],
            "--labels", labels, "--target", "rpi4", *io, "--out", out]


# Exports of a trained network besides the plain one, by name: their extra arguments
# ("outlier_channel" also exports edited weights: _edited_weights).
EXPORT_VARIANTS = {"mobilenet_v3_large": {"outlier_channel": ["--calib-method", "MinMax"]}}


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


def _start_exports(family: str, work: EarlyWork, dataset, labels: Path,
                   tmp_path_factory) -> dict:
    """Once the family has trained: its exports (the plain one and EXPORT_VARIANTS), started
    together in the background at the training's priority. name → (network, export
    directory, Started)."""
    from tests.trained import load_trained
    weights = work.get(f"trained:{family}")
    if work.closing.is_set():
        return {}
    model = load_trained(family, weights)
    started = {}
    for name, extra in {"plain": [], **EXPORT_VARIANTS.get(family, {})}.items():
        out = tmp_path_factory.mktemp(f"{family}-{name}-export")
        logs = tmp_path_factory.mktemp(f"{family}-{name}-logs")
        net, edited = _edited_weights(name, model, logs)
        started[name] = (net, out, Started(
            [*export_args(family, edited or weights, dataset, labels, out), *extra, "--json"],
            logs, nice=LONG_CHAIN_NICE.get(family, EARLY_NICE)))
    return started


@pytest.fixture(scope="session")
def exported(early):
    """(family, name="plain") → (model, export directory, card) of `edgeexport export` on the
    trained net (other names: EXPORT_VARIANTS), started by `early` as soon as the family has
    trained: they run while the next networks train."""
    done = {}

    def get(family, name="plain"):
        if (family, name) not in done:
            model, out, job = early.get(f"exports:{family}")[name]
            done[family, name] = (model, out, json.loads(job.result().stdout))
        return done[family, name]
    yield get
    early.closing.set()
    for started in early.finished("exports:"):
        for *_, job in started.values():
            job.stop()


# A small real build, shared by the build and pull tests: V1 and V3-Small α 0.25 at 64/96 px.
BUILD_GRID = ["--target", "rpi4", "--models", "mobilenet_v1,mobilenet_v3_small", "--alpha", "0.25",
              "--resolution", "64,96"]
BUILD_IDS = ["mobilenet_v1_0.25_64", "mobilenet_v1_0.25_96", "mobilenet_v3_small_0.25_64",
             "mobilenet_v3_small_0.25_96"]


# V1 α 0.25 and 0.5 at 128 px: variants the MLPerf reference table has a top-1 for (pull).
# ONNX only: the budget choice is under test there, the TFLite files are pulled from `built`.
BUILD_128_GRID = ["--target", "rpi4", "--models", "mobilenet_v1", "--alpha", "0.25,0.5",
                  "--resolution", "128", "--formats", "onnx"]


def _build(out: Path, grid: list[str], jobs: int, nice: int = 0) -> tuple[Path, dict]:
    proc = run_cli("build", *grid, "--out", out, "--json", "--jobs", jobs, nice=nice)
    return out, json.loads(proc.stdout)


@pytest.fixture(scope="session")
def built(early):
    """(dist directory, build summary) of `edgeexport build` on BUILD_GRID, once per run."""
    return early.get("built")


@pytest.fixture(scope="session")
def built_128(early):
    """The dist directory of a build of BUILD_128_GRID."""
    return early.get("built_128")[0]


# tflite-runtime 2.14, the last release Raspberry Pi OS users keep: its own venv (numpy < 2),
# created once and kept in .venv/ across runs (the marker names exactly what was installed).
TFLITE_RUNTIME_PINS = ("tflite-runtime==2.14.0", "numpy==1.26.4")


def _tflite_runtime_venv() -> Path:
    venv = ROOT / ".venv" / "tflite-runtime-2.14"
    marker = venv / ".installed"
    python = venv / "bin" / "python"
    if not marker.is_file() or marker.read_text() != " ".join(TFLITE_RUNTIME_PINS):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *TFLITE_RUNTIME_PINS],
                       check=True)
        marker.write_text(" ".join(TFLITE_RUNTIME_PINS))
    return python


@pytest.fixture(scope="session")
def tflite_runtime_python(early):
    return early.get("tflite_runtime_python")


# ---- "the board": a device venv without torch, served by a real sshd on loopback ----

def _usable_by_everyone(path: Path) -> bool:
    """The interpreter and every directory above it can be entered by any account (a pyenv
    under /root cannot: the board's account could not run a venv made from it)."""
    real = Path(os.path.realpath(path))
    return all(os.stat(p).st_mode & 0o001 for p in [real, *real.parents])


def _board_python() -> str:
    if os.geteuid() != 0:
        return sys.executable
    for candidate in (getattr(sys, "_base_executable", sys.executable), "/usr/bin/python3"):
        if Path(candidate).exists() and _usable_by_everyone(Path(candidate)):
            return candidate
    pytest.fail("no Python interpreter that an unprivileged account can run")


def _source_copy(dest: Path, version: str | None = None) -> Path:
    """The tracked source tree (setuptools writes build/ and *.egg-info into it)."""
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(
        ".venv", ".git", "dist", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    if version is not None:
        pyproject = dest / "pyproject.toml"
        text = pyproject.read_text()
        assert 'version = "' in text
        pyproject.write_text(re.sub(r'(?m)^version = ".*"$', f'version = "{version}"', text))
    return dest


@pytest.fixture(scope="session")
def board_root():
    """A directory every account can enter (the pytest tmp tree is private to its user)."""
    root = Path(tempfile.mkdtemp(prefix="edgeexport-board-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _device_venv(root: Path, source: Path) -> Path:
    _source_copy(source)
    subprocess.run([_board_python(), "-m", "venv", root], check=True)
    subprocess.run([root / "bin" / "python", "-m", "pip", "install", "-q",
                    "-c", ROOT / "constraints.txt", f"{source}[device]"], check=True)
    return root


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
    source = _source_copy(tmp_path_factory.mktemp("old-source") / "edgeexport", OLD_VERSION)
    subprocess.run([_board_python(), "-m", "venv", root], check=True)
    py = root / "bin" / "python"
    purelib = lambda venv: subprocess.run(  # noqa: E731
        [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib(root), "device-venv.pth").write_text(purelib(device_venv) + "\n")
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", source], check=True)
    return root


@pytest.fixture(scope="session")
def board(board_root, device_venv, old_device_venv):
    """sshd on 127.0.0.1 serving the board account (see tests/board.py)."""
    from tests.board import Board
    if not Path("/usr/sbin/sshd").exists():
        pytest.fail("openssh-server is not installed: `make test` installs Debian's")
    b = Board(board_root / "sshd", device_venv, old_device_venv)
    b.start()
    yield b
    b.close()
