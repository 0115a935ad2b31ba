"""`edgeexport build`: incremental, resumable, failure-tolerant, with reports that render."""
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from edgeexport.fileio import sha256
from tests.conftest import BUILD_GRID, BUILD_IDS, EDGEEXPORT, run_cli

GRID, IDS = BUILD_GRID, BUILD_IDS


def _build(out, *extra, check=True):
    proc = run_cli("build", *GRID, "--out", out, "--json", *extra, check=check)
    return proc, (json.loads(proc.stdout) if proc.stdout.strip() else None)


def test_build_writes_every_variant_and_an_honest_index(built):
    out, summary = built
    assert sorted(summary["built"]) == IDS and summary["failed"] == {}
    root = out / "rpi4"
    index = json.loads((root / "index.json").read_text())
    assert [v["id"] for v in index["variants"]] == IDS
    for entry in index["variants"]:
        for rel, meta in entry["files"].items():
            assert not rel.startswith("/") and ".." not in Path(rel).parts
            path = root / rel
            assert meta == {"sha256": sha256(path), "bytes": path.stat().st_size}, rel
        names = {Path(rel).name for rel in entry["files"]}
        assert {"model.fp32.onnx", "model.int8.onnx", "model.fp32.tflite", "model.int8.tflite",
                "card.json", "analysis.json", "profile.json", "estimate.json"} <= names
        head = entry["headline"]
        assert head["estimated_int8_ms"] > 0 and head["measured_onnxruntime_int8_p50_ms"] > 0
    for name in ("report.html", "report.md", "report.json"):
        assert (root / name).stat().st_size > 0


def test_second_build_rebuilds_nothing(built):
    out, _ = built
    root = out / "rpi4"
    before = {p: p.stat().st_mtime_ns for p in root.glob("*/model.*")}
    _, summary = _build(out)
    assert summary["built"] == [] and sorted(summary["cached"]) == IDS
    assert {p: p.stat().st_mtime_ns for p in root.glob("*/model.*")} == before


def test_a_damaged_variant_is_rebuilt_alone(built, tmp_path):
    out, _ = built
    copy = tmp_path / "dist"
    shutil.copytree(out, copy)
    (copy / "rpi4" / IDS[1] / "model.int8.tflite").write_bytes(b"truncated")
    _, summary = _build(copy)
    assert summary["built"] == [IDS[1]]
    assert sorted(summary["cached"]) == sorted(set(IDS) - {IDS[1]})


def test_changed_calibration_set_rebuilds(built, tmp_path):
    out, _ = built
    copy = tmp_path / "dist"
    shutil.copytree(out, copy)
    from tests.synthetic_data import write_dataset
    calib = write_dataset(tmp_path / "calib", 3, 80, seed=5)
    _, summary = _build(copy, "--models", "mobilenet_v1", "--calib", calib)
    assert sorted(summary["built"]) == IDS[:2] and summary["cached"] == []
    card = json.loads((copy / "rpi4" / IDS[0] / "card.json").read_text())
    assert card["calibration"]["synthetic"] is False


def test_a_failing_variant_does_not_stop_the_others(built, tmp_path):
    out, _ = built
    copy = tmp_path / "dist"
    shutil.copytree(out, copy)
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "mobilenet_v3_small_0.25.safetensors").write_bytes(b"not safetensors")
    proc, summary = _build(copy, "--weights", weights, check=False)
    assert proc.returncode == 1
    assert sorted(summary["failed"]) == IDS[2:]
    assert all("safetensors" in why for why in summary["failed"].values())
    assert sorted(summary["cached"]) == IDS[:2]
    index = json.loads((copy / "rpi4" / "index.json").read_text())
    assert sorted(index["failed"]) == IDS[2:]
    assert [v["id"] for v in index["variants"]] == IDS[:2]


def test_interrupted_build_resumes_where_it_stopped(tmp_path):
    out = tmp_path / "dist"
    proc = subprocess.Popen([*EDGEEXPORT, "build", *GRID, "--out", str(out), "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and not list((out / "rpi4").glob("*/build.json")):
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(p.parent.name for p in (out / "rpi4").glob("*/build.json"))
    assert 1 <= len(done) < len(IDS)
    sealed = {p: p.stat().st_mtime_ns for d in done for p in (out / "rpi4" / d).iterdir()}
    _, summary = _build(out, "--jobs", "2")
    assert sorted(summary["cached"]) == done
    assert sorted(summary["built"]) == sorted(set(IDS) - set(done))
    assert {p: p.stat().st_mtime_ns for p in sealed} == sealed


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("chromium is not installed: `make test` installs Debian's chromium")


def test_report_html_renders_its_plots_in_a_real_browser(built, tmp_path):
    out, _ = built
    page = out / "rpi4" / "report.html"
    proc = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
         "--v=0", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    dom = proc.stdout
    assert 'data-plots="' in dom, proc.stderr[-2000:]
    plots = int(dom.split('data-plots="')[1].split('"')[0])
    rendered = int(dom.split('data-plots-rendered="')[1].split('"')[0])
    assert plots >= 6 and rendered == plots
    console_errors = [line for line in proc.stderr.splitlines()
                      if "CONSOLE" in line and ("ERROR" in line or "Uncaught" in line)]
    assert console_errors == []
    # The report is self-contained: no external resources.
    html = page.read_text()
    assert "http://" not in html and "https://" not in html


def test_changed_target_file_rebuilds(built, tmp_path):
    out, _ = built
    copy = tmp_path / "dist"
    shutil.copytree(out, copy)
    from edgeexport.targets import load_target
    board = tmp_path / "rpi4.toml"
    board.write_text(load_target("rpi4").source.replace("load_w = 7.0", "load_w = 7.5"))
    proc = run_cli("build", "--target", board, "--models", "mobilenet_v1", "--alpha", "0.25",
                   "--resolution", "64", "--out", copy, "--json")
    summary = json.loads(proc.stdout)
    assert summary["built"] == [IDS[0]] and summary["cached"] == []
