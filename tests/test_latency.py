"""Profiling here: per-layer latency through onnxruntime and LiteRT (estimates for boards not
attached, calibration and target files: tests/test_estimate.py)."""
import json
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import BUILD_IDS, assert_one_line_error, run_cli, run_json
from tests.trained import FAMILIES


def _kernel_events_per_run(model: Path, runs: int = 3) -> int:
    """An independent count of onnxruntime kernel events in one run."""
    so = ort.SessionOptions()
    so.enable_profiling = True
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    x = np.zeros([d if isinstance(d, int) else 1 for d in s.get_inputs()[0].shape], np.float32)
    for _ in range(runs):
        s.run(None, {s.get_inputs()[0].name: x})
    trace = Path(s.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    return len(kernels) // runs


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("family", FAMILIES)
def test_per_layer_profile_adds_up(family, precision, exported):
    """Structure, not speed (timing figures are in bench/profile_overhead.py): every kernel
    onnxruntime ran is attributed once, inside its run, to a layer of the static analysis.
    On the trained exports (α 0.5, 64 px): their smallest conv took 6 µs or more."""
    _, out, _ = exported(family)
    report = run_json("profile", out, "--precision", precision, "--runs", 20, "--warmup", 5)
    layer_sum = sum(r["latency_ms"] for r in report["layers"])
    assert layer_sum == pytest.approx(report["layer_sum_ms"])
    # Kernels run inside their run: the rows cannot exceed the profiled runs (a row counted
    # twice, or warm-up runs counted, would).
    assert layer_sum <= report["profiled_run_ms"], (layer_sum, report["profiled_run_ms"])
    # Nothing silently dropped: every kernel onnxruntime ran is attributed to some row.
    attributed = sum(len(r["kernels"]) for r in report["layers"])
    assert attributed == _kernel_events_per_run(out / f"model.{precision}.onnx")
    # Every kernel lands in a layer of the static analysis, joined with its costs.
    assert all(r["macs"] is not None for r in report["layers"])
    convs = [r for r in report["layers"] if r["op"] in ("conv", "depthwise", "pointwise")]
    assert all(r["latency_ms"] > 0 for r in convs)


def test_corrupt_tflite_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 40)
    assert_one_line_error(run_cli("profile", bad, check=False), "tflite")
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"hello world, not a model")
    assert_one_line_error(run_cli("profile", garbage, check=False), "TFL3")
    bad_onnx = tmp_path / "model.onnx"
    bad_onnx.write_bytes(b"\x08\x07junk")
    assert_one_line_error(run_cli("profile", bad_onnx, check=False), "onnx")


def test_truncated_tflite_from_an_export(built, tmp_path):
    dist, _ = built
    data = (dist / "rpi4" / BUILD_IDS[0] / "model.int8.tflite").read_bytes()
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(data[: len(data) // 3])
    assert_one_line_error(run_cli("profile", truncated, check=False), "truncated.tflite")


def test_profile_runs_with_only_the_device_install(device_venv, exported, tmp_path):
    """On a board: no torch, a non-editable install run from another directory; both runtimes
    measure the export's int8 files."""
    py = device_venv / "bin" / "python"
    assert subprocess.run([py, "-c", "import torch"], capture_output=True).returncode != 0
    exe = device_venv / "bin" / "edgeexport"
    _, export, _ = exported("mobilenet_v2")
    for runtime, model in (("onnxruntime", "model.int8.onnx"), ("litert", "model.int8.tflite")):
        proc = subprocess.run([exe, "profile", export, "--runtime", runtime, "--runs", "5",
                               "--json", "--target", "rpi4"], capture_output=True, text=True,
                              cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report["model"] == str(export / model)
        assert len(report["layers"]) > 0 if runtime == "onnxruntime" else report["layers"] == []
    # Package data (targets) is included: rpi5's power table is read (board energy only on
    # an rpi5's CPU; elsewhere the source says why there is none).
    proc = subprocess.run([exe, "profile", export / "model.int8.onnx", "--runs", "3",
                           "--target", "rpi5", "--json"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "rpi5" in json.loads(proc.stdout)["energy"]["board_source"]
