"""`edgeexport build --farm` on a real Dask scheduler and two real worker processes on 127.0.0.1.

The references are the fixture's own processes: each worker's pid (from Popen; --no-nanny,
so the worker is that process) and the resources it was started with. The build.json records
under test are written from what each worker said about itself inside the task it ran.

The tests run in order on one output directory (the farm's work is costly: each export is a
real one), ONNX only, 64 px, α 0.25, calibrated on the session's synthetic images (sent to the
workers as bytes):
1. build A: exported by either worker, measured by the rpi4 one, the card naming the
   calibration set by its path here;
2. build A+B, the rpi4 worker killed while it holds B's measurement: B fails in one line
   after the timeout, A stays sealed, exit code 1, no hang;
3. the rpi4 worker restarted, rerun: A unchanged, B built and measured by the new worker;
4. rerun: nothing rebuilt.
"""
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import EDGEEXPORT, assert_one_line_error, run_cli

A, B = "mobilenet_v1_0.25_64", "mobilenet_v3_small_0.25_64"
FAMILY = {A: "mobilenet_v1", B: "mobilenet_v3_small"}
TIMEOUT = "5"  # --farm-timeout: how long a build waits for a missing kind of worker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Farm:
    """A scheduler and its workers as separate processes; workers can be killed and added."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.address = f"tcp://127.0.0.1:{_free_port()}"
        self.procs: list[subprocess.Popen] = []
        self.scheduler = self._spawn("scheduler", ["scheduler", "--host", "127.0.0.1",
                                                   "--port", self.address.rsplit(":", 1)[1],
                                                   "--no-dashboard"])
        from distributed import Client
        self.client = Client(self.address, timeout=60, set_as_default=False)

    def _spawn(self, name, args):
        log = open(self.root / f"{name}-{len(self.procs)}.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=log,
                                stderr=subprocess.STDOUT, cwd=self.root)
        self.procs.append(proc)
        return proc

    def start_worker(self, *resources: str) -> tuple[subprocess.Popen, str]:
        """A worker process (no nanny: the worker is the process we hold); its address once
        the scheduler has registered it."""
        args = ["worker", self.address, "--no-nanny", "--nthreads", "1", "--memory-limit", "0",
                "--no-dashboard", "--host", "127.0.0.1"]
        if resources:
            args += ["--resources", ",".join(resources)]
        before = set(self.workers())
        proc = self._spawn("worker", args)
        deadline = time.time() + 120
        while time.time() < deadline:
            new = set(self.workers()) - before
            if new:
                return proc, new.pop()
            assert proc.poll() is None, f"dask worker exited {proc.returncode}"
            time.sleep(0.2)
        raise AssertionError("dask worker did not register within 120 s")

    def workers(self) -> dict:
        return self.client.scheduler_info(n_workers=-1)["workers"]

    def close(self):
        self.client.close()
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture(scope="module")
def farm(tmp_path_factory, dataset):
    farm = Farm(tmp_path_factory.mktemp("farm"))
    farm.calib = dataset["train"]  # the builds' calibration images travel to the workers
    try:
        farm.plain = farm.start_worker()
        farm.board = farm.start_worker("rpi4=1")
        yield farm
    finally:
        farm.close()


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("dist")


def _args(out, farm, *variants):
    models = ",".join(FAMILY[v] for v in variants)
    return ["build", "--target", "rpi4", "--family", models, "--alpha", "0.25",
            "--resolution", "64", "--formats", "onnx", "--calib", str(farm.calib),
            "--out", str(out), "--farm", farm.address, "--farm-timeout", TIMEOUT, "--json"]


def _placement(out, variant):
    return json.loads((out / "rpi4" / variant / "build.json").read_text())["farm"]


def _files(out, *variants):
    """Every file of these variants with its mtime: unchanged mtimes = nothing rewritten."""
    return {p: p.stat().st_mtime_ns for v in variants for p in (out / "rpi4" / v).iterdir()}


def test_exports_run_on_any_worker_and_measurements_only_on_the_board(farm, out):
    proc = subprocess.Popen([*EDGEEXPORT, *_args(out, farm, A)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr
    assert json.loads(stdout)["built"] == [A]
    placement = _placement(out, A)
    worker_pids = {farm.plain[0].pid, farm.board[0].pid}
    assert placement["exported_by"]["pid"] in worker_pids - {proc.pid}
    assert placement["measured_by"]["pid"] == farm.board[0].pid
    assert placement["measured_by"]["address"] == farm.board[1]
    assert placement["measured_by"]["resources"] == {"rpi4": 1.0}
    assert placement["measured_by"]["hostname"] == socket.gethostname()
    # The calibration images went to the worker as bytes; the card names them as a local
    # build does, by their path here, and counts all of them.
    card = json.loads((out / "rpi4" / A / "card.json").read_text())
    assert card["calibration"]["source"] == f"{farm.calib} (calibration split)"
    assert "edgeexport-export-" not in json.dumps(card)
    images = [p for p in farm.calib.rglob("*") if p.is_file()]
    assert card["calibration"]["images"] + card["validation_set"]["images"] == len(images)
    profile = json.loads((out / "rpi4" / A / "profile.json").read_text())["measurements"]
    assert set(profile) == {"onnxruntime_int8", "onnxruntime_fp32"}
    # The report names the file as it is here, not in the worker's scratch directory.
    assert {Path(r["model"]).parent for r in profile.values()} == {out / "rpi4" / A}


def test_killing_the_board_mid_measurement_fails_cleanly_and_keeps_the_rest(farm, out):
    kept = _files(out, A)
    proc = subprocess.Popen([*EDGEEXPORT, *_args(out, farm, A, B)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    board, address = farm.board
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None:
        held = farm.client.processing(workers=[address]).get(address, [])
        if any(f"-measure-{B}-" in str(key) for key in held):
            board.send_signal(signal.SIGKILL)
            board.wait()
            break
        time.sleep(0.02)
    else:
        proc.kill()
        pytest.fail(f"never saw the rpi4 worker holding {B}'s measurement: {proc.communicate()}")
    # Dask alone would wait for a board forever; a hang raises here (the guard is generous:
    # after the 5 s timeout the build still writes its index and reports, slow on 2 cores).
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 1, stderr
    summary = json.loads(stdout)
    assert summary["cached"] == [A] and summary["built"] == []
    assert list(summary["failed"]) == [B]
    assert "rpi4" in summary["failed"][B] and "\n" not in summary["failed"][B]
    assert "Traceback" not in stderr
    assert not (out / "rpi4" / B / "build.json").exists()
    assert _files(out, A) == kept  # A's files untouched
    index = json.loads((out / "rpi4" / "index.json").read_text())
    assert [v["id"] for v in index["variants"]] == [A] and list(index["failed"]) == [B]


def test_rerun_after_restarting_the_board_resumes(farm, out):
    kept = _files(out, A)
    farm.board = farm.start_worker("rpi4=1")
    proc = run_cli(*_args(out, farm, A, B))
    summary = json.loads(proc.stdout)
    assert summary["cached"] == [A] and summary["built"] == [B] and summary["failed"] == {}
    assert _files(out, A) == kept
    placement = _placement(out, B)
    assert placement["measured_by"]["pid"] == farm.board[0].pid
    assert placement["exported_by"]["pid"] in {p.pid for p in farm.procs[1:]}


def test_second_build_rebuilds_nothing(farm, out):
    before = _files(out, A, B)
    summary = json.loads(run_cli(*_args(out, farm, A, B)).stdout)
    assert summary["built"] == [] and sorted(summary["cached"]) == [A, B]
    assert _files(out, A, B) == before


def test_no_worker_with_the_target_resource_is_a_one_line_error(farm, tmp_path):
    start = time.monotonic()
    proc = run_cli("build", "--target", "rpi5", "--family", "mobilenet_v1", "--alpha", "0.25",
                   "--resolution", "64", "--out", tmp_path, "--farm", farm.address,
                   "--farm-timeout", "2", check=False)
    assert_one_line_error(proc, "rpi5", farm.address, "--resources")
    assert time.monotonic() - start < 60


def test_unreachable_scheduler_is_a_one_line_error(tmp_path):
    address = f"tcp://127.0.0.1:{_free_port()}"
    proc = run_cli("build", "--target", "rpi4", "--family", "mobilenet_v1", "--alpha", "0.25",
                   "--resolution", "64", "--out", tmp_path, "--farm", address,
                   "--farm-timeout", "2", check=False)
    assert_one_line_error(proc, "scheduler", address)
    assert not (tmp_path / "rpi4" / "index.json").exists()


def test_files_from_a_worker_are_checked_before_anything_is_written(tmp_path):
    """FilePack: the hash sent with the bytes is checked against hashlib's, names against
    '..' and absolute paths, and nothing is written unless every file passes."""
    import hashlib

    from edgeexport.build.filepack import FilePack, TransferError
    good = b"model bytes"
    digest = hashlib.sha256(good).hexdigest()
    FilePack({"a/model.onnx": (digest, good)}).write(tmp_path / "ok")
    assert (tmp_path / "ok" / "a" / "model.onnx").read_bytes() == good
    for files in ({"model.onnx": (digest, good), "card.json": (digest, b"tampered")},
                  {"model.onnx": (digest, good), "../escape.json": (digest, good)},
                  {"model.onnx": (digest, good), "/etc/escape": (digest, good)}):
        with pytest.raises(TransferError):
            FilePack(files).write(tmp_path / "bad")
        assert not (tmp_path / "bad").exists() and not (tmp_path / "escape.json").exists()
