"""Measuring on a board over SSH, against a real OpenSSH server on loopback (tests/board.py):
the board's own facts, models copied once, the faults a user meets, and a board lost mid-build."""
import getpass
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.board import ACCOUNT
from tests.conftest import (
    BUILD_GRID,
    BUILD_IDS,
    EDGEEXPORT,
    OLD_VERSION,
    assert_one_line_error,
    run_cli,
)

GRID, IDS = BUILD_GRID, BUILD_IDS
SFTP_SESSION = "Starting session: subsystem 'sftp'"  # sshd's own log line per SFTP session


def _measurements(directory: Path) -> dict:
    """profile.json's measurements, read as plain JSON (not through the code under test)."""
    return json.loads((directory / "profile.json").read_text())["measurements"]


def _ssh(board):
    return ["--ssh-config", board.ssh_config]


def _cpu_model_from_proc() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "model name":
            return value.strip()
    pytest.skip("no 'model name' in /proc/cpuinfo")


def _device_venv_version(device_venv, dist):
    return subprocess.run([device_venv / "bin" / "python", "-c",
                           f"from importlib.metadata import version; print(version('{dist}'))"],
                          capture_output=True, text=True, check=True).stdout.strip()


def _assert_from_the_board(facts: dict, board, device_venv):
    """Who measured: the board's account, a process of the device venv, not this one."""
    assert facts["user"] == board.account
    if board.as_root:
        assert facts["user"] == ACCOUNT != getpass.getuser()
    assert Path(facts["python"]).parent == device_venv / "bin"
    assert facts["pid"] != os.getpid()
    assert facts["edgeexport_version"] == _device_venv_version(device_venv, "edgeexport")
    assert facts["onnxruntime_version"] == _device_venv_version(device_venv, "onnxruntime")
    assert facts["litert_version"] == _device_venv_version(device_venv, "ai-edge-litert")


def test_device_check_prints_the_boards_own_facts(board, device_venv):
    out = json.loads(run_cli("device", "check", "board", *_ssh(board), "--json").stdout)
    assert out["device"] == "board"
    facts = out["facts"]
    _assert_from_the_board(facts, board, device_venv)
    # The board is this machine: its facts must agree with the kernel's, read here directly.
    assert facts["cpu_model"] == _cpu_model_from_proc()
    assert facts["cores"] == os.cpu_count()
    assert 0 < facts["mem_available_mib"] < os.sysconf("SC_PHYS_PAGES") * os.sysconf(
        "SC_PAGE_SIZE") / 2**20
    assert facts["throttled"] is None  # no vcgencmd on this machine
    text = run_cli("device", "check", "board", *_ssh(board)).stdout
    assert "edgeexport-board" in text or board.account in text


@pytest.mark.parametrize("alias,needles", [
    ("board-down", ["board board-down", "unreachable", "connection refused"]),
    ("board-wrongkey", ["board board-wrongkey", "refused our key", "permission denied"]),
    ("board-bare", ["board board-bare", "not found on the path", "pip install"]),
    ("board-old", ["board board-old", f"edgeexport {OLD_VERSION} there",
                   "pip install 'edgeexport[device]==0.1.0'"]),
])
def test_board_faults_are_one_line_naming_the_board(board, alias, needles, tmp_path):
    proc = run_cli("device", "check", alias, *_ssh(board), check=False)
    assert proc.returncode == 2
    assert_one_line_error(proc, *needles)
    # build checks the board before any work: nothing is exported for a board that cannot
    # measure.
    proc = run_cli("build", *GRID, "--out", tmp_path / "dist", "--device", alias, *_ssh(board),
                   check=False)
    assert proc.returncode == 2
    assert_one_line_error(proc, *needles)
    built = tmp_path / "dist" / "rpi4"
    assert not built.exists() or not [p for p in built.iterdir() if p.is_dir()]


def _sealed_on_the_board(out: Path) -> list[str]:
    """Variants whose build.json (read as plain JSON) records the board among its inputs."""
    return sorted(p.parent.name for p in (out / "rpi4").glob("*/build.json")
                  if "device" in json.loads(p.read_text()).get("inputs", {}))


@pytest.fixture(scope="module")
def board_build(built, board, tmp_path_factory):
    """The shared local build, measured again on the board (its exports reused: the files
    do not depend on where they are measured), with the board's sshd killed (listener,
    connections and the commands under them) as soon as the first variant is sealed; then
    sshd is back and the same build is run again."""
    out = tmp_path_factory.mktemp("board-dist")
    shutil.copytree(built[0], out, dirs_exist_ok=True)
    local = {p: p.stat().st_mtime_ns for p in (out / "rpi4").glob("*/model.*")}
    argv = [*EDGEEXPORT, "build", *GRID, "--out", str(out), "--device", "board",
            *map(str, _ssh(board)), "--json"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None and not _sealed_on_the_board(out):
        time.sleep(0.05)
    board.kill()
    stdout, stderr = proc.communicate(timeout=600)
    first = {"returncode": proc.returncode, "stderr": stderr,
             "summary": json.loads(stdout) if stdout.strip() else None,
             "sealed": _sealed_on_the_board(out), "local_exports": local}
    first["mtimes"] = {p: p.stat().st_mtime_ns for d in first["sealed"]
                       for p in (out / "rpi4" / d).iterdir()}
    first["exports"] = {p: p.stat().st_mtime_ns for p in (out / "rpi4").glob("*/model.*")
                        if p.parent.name not in first["sealed"]}
    board.start()
    second = json.loads(run_cli("build", *GRID, "--out", out, "--device", "board",
                                *_ssh(board), "--json").stdout)
    return out, first, second


def test_a_board_lost_mid_build_keeps_what_was_measured_and_a_rerun_resumes(board_build):
    out, first, second = board_build
    assert first["sealed"] == IDS[:1], first["stderr"]
    assert first["returncode"] == 1
    # LiteRT's C++ runtime logs one INFO line per interpreter in the export workers.
    lines = [line for line in first["stderr"].strip().splitlines()
             if not line.startswith("INFO: Created TensorFlow Lite")]
    assert len(lines) == 1 and "Traceback" not in first["stderr"], first["stderr"]
    assert "board board: unreachable" in lines[0] and "rerun to resume" in lines[0]
    summary = first["summary"]
    assert summary["built"] == IDS[:1] and sorted(summary["failed"]) == IDS[1:]
    assert all("board board" in why for why in summary["failed"].values())
    index = json.loads((out / "rpi4" / "index.json").read_text())
    # The rerun: the measured variant untouched, the others measured now.
    assert second["cached"] == IDS[:1] and second["built"] == IDS[1:]
    # Nothing was exported again, by either run: the local build's files were measured.
    assert len(first["exports"]) == 5 * len(IDS[1:])
    assert {p: p.stat().st_mtime_ns for p in first["exports"]} == first["exports"]
    assert {p: p.stat().st_mtime_ns for p in first["local_exports"]} == first["local_exports"]
    assert first["summary"]["reasons"] == {vid: "changed: device" for vid in IDS}
    assert second["failed"] == {} and second["device_error"] is None
    assert {p: p.stat().st_mtime_ns for p in first["mtimes"]} == first["mtimes"]
    assert index["failed"] == {}  # the index was rewritten by the rerun
    assert [v["id"] for v in index["variants"]] == IDS


def test_build_measurements_come_from_the_board(board_build, board, device_venv):
    out, _, _ = board_build
    pids = set()
    for vid in IDS:
        measured = _measurements(out / "rpi4" / vid)
        assert sorted(measured) == ["litert_fp32", "litert_int8", "onnxruntime_fp32",
                                    "onnxruntime_int8"]
        for key, report in measured.items():
            assert report["where"]["device"] == "board"
            _assert_from_the_board(report["board"], board, device_venv)
            pids.add(report["board"]["pid"])
            # The board read its copy of the model from its own cache.
            assert report["model"].startswith(str(board.cache / "edgeexport" / "models"))
            assert report["end_to_end"]["runs"] == 30 and report["end_to_end"]["threads"] == 1
        # Per-layer rows from the board's onnxruntime profiler, joined with the analysis.
        layers = measured["onnxruntime_int8"]["layers"]
        assert layers and all(r["macs"] is not None for r in layers)
        assert sum(r["latency_ms"] for r in layers) == pytest.approx(
            measured["onnxruntime_int8"]["layer_sum_ms"])
    assert len(pids) == 4 * len(IDS)  # one board process per measurement


def test_report_shows_the_board_beside_the_estimate_and_its_error(board_build):
    out, _, _ = board_build
    root = out / "rpi4"
    md = (root / "report.md").read_text()
    assert "MEASURED on board board by its own edgeexport over SSH" in md
    assert "int8 p50 on board board (ms)" in md and "(int8, measured on board board)" in md
    table = [line for line in md.splitlines() if line.startswith("| mobilenet_")]
    head = next(line for line in md.splitlines() if line.startswith("| variant"))
    cols = [c.strip() for c in head.strip("|").split("|")]
    index = json.loads((root / "index.json").read_text())
    for line, vid in zip(table, IDS):
        cells = [c.strip() for c in line.strip("|").split("|")]
        measured = _measurements(root / vid)["litert_int8"]
        estimated = json.loads((root / vid / "estimate.json").read_text())["estimates"]["int8"]
        m, e = measured["end_to_end"]["p50_ms"], estimated["end_to_end"]["latency_ms"]
        by_hand = 100 * (e - m) / m
        assert cells[cols.index("est. int8 rpi4 error vs board")] == f"{by_hand:+.1f}%"
        assert cells[cols.index("LiteRT int8 p90 on board (ms)")] == \
            f"{measured['end_to_end']['p90_ms']:.3f}"
        head_entry = next(v for v in index["variants"] if v["id"] == vid)["headline"]
        assert head_entry["estimated_int8_error_vs_board"] == pytest.approx(by_hand / 100)


def _board_cache_files(board) -> dict[str, int]:
    root = board.cache / "edgeexport" / "models"
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.glob("*/*")}


def test_models_are_copied_once_and_checked_by_sha256(board_build, board):
    out, _, _ = board_build
    variant = out / "rpi4" / IDS[0]
    shutil.rmtree(board.cache / "edgeexport", ignore_errors=True)  # a board that saw nothing
    sessions = board.log_count(SFTP_SESSION)
    args = ["profile", variant, "--device", "board", *_ssh(board), "--runs", 3, "--target",
            "rpi4", "--json"]
    first = json.loads(run_cli(*args).stdout)
    assert board.log_count(SFTP_SESSION) == sessions + 1
    cached = _board_cache_files(board)
    # Content-addressed by the sha256 of each file, computed here independently.
    target_text = (Path(__file__).resolve().parents[1] / "targets" / "rpi4.toml").read_bytes()
    expected = {f"{hashlib.sha256((variant / n).read_bytes()).hexdigest()}/{n}"
                for n in ("model.int8.onnx", "analysis.json")}
    expected.add(f"{hashlib.sha256(target_text).hexdigest()}/target.toml")
    # The model file is stored under its own digest, by its suffix ("model.onnx").
    model_digest = hashlib.sha256((variant / "model.int8.onnx").read_bytes()).hexdigest()
    expected = {e.replace(f"{model_digest}/model.int8.onnx", f"{model_digest}/model.onnx")
                for e in expected}
    assert set(cached) == expected
    assert first["board"]["user"] == board.account
    # Second run: nothing crosses the network, nothing on the board is rewritten.
    second = json.loads(run_cli(*args).stdout)
    assert board.log_count(SFTP_SESSION) == sessions + 1
    assert _board_cache_files(board) == cached
    assert second["board"]["pid"] != first["board"]["pid"]
    # A damaged copy on the board is found by its hash and replaced.
    damaged = board.cache / "edgeexport" / "models" / model_digest / "model.onnx"
    damaged.write_bytes(b"damaged")
    run_cli(*args)
    assert board.log_count(SFTP_SESSION) == sessions + 2
    assert hashlib.sha256(damaged.read_bytes()).hexdigest() == model_digest


def test_a_target_file_with_a_device_table_is_enough(board_build, board, tmp_path):
    out, _, _ = board_build
    source = (Path(__file__).resolve().parents[1] / "targets" / "rpi4.toml").read_text()
    mypi = tmp_path / "mypi.toml"
    mypi.write_text(source.replace('name = "rpi4"', 'name = "mypi"') +
                    f'\n[device]\nhost = "board"\nssh_config = "{board.ssh_config}"\n')
    report = json.loads(run_cli("profile", out / "rpi4" / IDS[0], "--target", mypi,
                                "--runtime", "litert", "--runs", 3, "--json").stdout)
    assert report["where"]["device"] == "board"
    assert report["where"]["target_profile"] == "mypi"  # the board read our target file
    assert report["board"]["user"] == board.account
    bad = tmp_path / "bad.toml"
    bad.write_text(source + '\n[device]\nhost = "board"\nport = 22\n')
    assert_one_line_error(run_cli("profile", out / "rpi4" / IDS[0], "--target", bad,
                                  check=False), "device.port")


def test_fit_latency_from_a_build_fits_the_boards_measurements(board_build, tmp_path):
    out, _, _ = board_build
    refit = tmp_path / "rpi4-refit.toml"
    data = json.loads(run_cli("fit-latency", "--target", "rpi4", "--from", out / "rpi4",
                              "--out", refit, "--json").stdout)
    (model,) = data["models"]
    assert model["runtime"] == "litert-xnnpack" and model["threads"] == 1
    rows = {(r["variant"], r["precision"]): r["measured_ms"]
            for fit in model["fits"] for r in fit["rows"]}
    assert len(rows) == 2 * len(IDS)
    for vid in IDS:
        measured = _measurements(out / "rpi4" / vid)
        for precision in ("int8", "fp32"):
            assert rows[(vid, precision)] == \
                measured[f"litert_{precision}"]["end_to_end"]["mean_ms"]
    # The refit file is a target whose new model says what it was fitted to.
    import tomllib
    written = tomllib.loads(refit.read_text())["latency_model"]["litert-xnnpack"]
    assert "on board board" in written["runtime"] and "ai-edge-litert" in written["runtime"]
    int8 = next(f for f in model["fits"] if f["precision"] == "int8")
    assert written["int8"]["fixed_ms"] == pytest.approx(int8["coefficients"]["fixed_ms"],
                                                        rel=1e-5)
