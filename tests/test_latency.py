"""Profiling here, estimating for boards not attached, calibration, target files."""
import csv
import json
import shutil
import subprocess
import venv
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import ROOT, assert_one_line_error, run_cli, run_json

CSV = ROOT / "edgeexport" / "data" / "rpi4_mlperf_v1.0_krai_calibration.csv"
FULL = [("mobilenet_v1", "fp32"), ("mobilenet_v2", "fp32"), ("mobilenet_v3_large", "fp32"),
        ("mobilenet_v3_small", "fp32"), ("mobilenet_v1", "int8"), ("mobilenet_v2", "int8")]


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


@pytest.mark.parametrize("family,precision", FULL)
def test_per_layer_profile_adds_up(family, precision, full_size_exports):
    """Structure, not speed (timing figures are in bench/profile_overhead.py): every kernel
    onnxruntime ran is attributed once, inside its run, to a layer of the static analysis."""
    out = full_size_exports(family)
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


def test_calibrate_leave_one_out_within_10_percent():
    data = run_json("calibrate", "--target", "rpi4", "--data", CSV)
    with open(CSV) as f:
        measured = {(r["model_family"], float(r["width_multiplier"]), int(r["resolution"]),
                     r["quantized"] == "true"): float(r["mean_latency_ms"])
                    for r in csv.DictReader(f)}
    rows = [r for fit in data["fits"] for r in fit["rows"]]
    assert len(rows) == len(measured) == 34
    for fit in data["fits"]:
        errors = [abs(r["loo_predicted_ms"] - r["measured_ms"]) / r["measured_ms"]
                  for r in fit["rows"]]
        assert np.median(errors) <= 0.10, fit["precision"]
        # A real leave-one-out: each row's prediction comes from a fit that did not see it.
        assert any(r["loo_predicted_ms"] != pytest.approx(r["fitted_ms"], rel=1e-9)
                   for r in fit["rows"])
    assert sorted(r["measured_ms"] for r in rows) == sorted(measured.values())


def test_calibrate_prints_each_row():
    text = run_cli("calibrate", "--target", "rpi4", "--data", CSV).stdout
    assert text.count("mobilenet_v1_") == 32 and text.count("mobilenet_v2_1_224") == 2
    assert "LOO error" in text


def test_shipped_rpi4_model_matches_a_fresh_fit():
    """The coefficients in targets/rpi4.toml are the fit of the shipped CSV, not hand-tuned."""
    import tomllib
    shipped = tomllib.loads((ROOT / "targets" / "rpi4.toml").read_text())["latency_model"]
    fits = {f["precision"]: f["coefficients"] for f in
            run_json("calibrate", "--target", "rpi4", "--data", CSV)["fits"]}
    for precision, coeffs in fits.items():
        for key, value in coeffs.items():
            assert shipped[precision][key] == pytest.approx(value, rel=1e-4, abs=1e-9)


def test_rpi4_board_power_is_the_measured_mean():
    with open(CSV) as f:
        watts = [float(r["avg_power_w"]) for r in csv.DictReader(f)]
    import tomllib
    power = tomllib.loads((ROOT / "targets" / "rpi4.toml").read_text())["power"]
    assert power["load_w"] == pytest.approx(np.mean(watts), abs=0.05)


def test_estimate_json_is_labelled_and_adds_up():
    report = run_json("estimate", "mobilenet_v2", "--alpha", 0.75, "--resolution", 160,
                      "--target", "rpi4", "--precision", "int8")
    assert report["source"] == "estimate"
    assert "TFLite 2.4.1" in report["runtime"]
    assert "leave-one-out" in report["model"]["known_error"]
    total = sum(r["latency_ms"] for r in report["layers"]) + report["end_to_end"]["fixed_ms"]
    assert report["end_to_end"]["latency_ms"] == pytest.approx(total)
    # Board energy = latency × the target's load power (W × ms = mJ), by hand.
    board = report["energy"]["board_mj"]
    assert board == pytest.approx(report["end_to_end"]["latency_ms"] * 7.0, rel=0.01)
    assert report["energy"]["compute_uj"] == pytest.approx(
        sum(r["energy_uj"] for r in report["layers"]))


def test_estimate_follows_the_measured_trend_on_unseen_families():
    """V3 never entered the fit; its estimates must still be finite and ordered by cost."""
    large = run_json("estimate", "mobilenet_v3_large", "--target", "rpi4")
    small = run_json("estimate", "mobilenet_v3_small", "--target", "rpi4")
    assert 0 < small["end_to_end"]["latency_ms"] < large["end_to_end"]["latency_ms"]


def test_energy_proxy_by_hand():
    report = run_json("estimate", "mobilenet_v1", "--target", "rpi4", "--precision", "fp32")
    fc = next(r for r in report["layers"] if r["name"] == "classifier.1")
    # 1024×1000 MACs × 4.6 pJ + (1024×1000 + 1000)×4 B × 160 pJ/B + (1024 + 1000)×4 B × 1.25 pJ/B
    expected = (1024 * 1000 * 4.6 + 1025000 * 4 * 160 + 2024 * 4 * 1.25) * 1e-6
    assert fc["energy_uj"] == pytest.approx(expected)


BASE_TARGET = (ROOT / "targets" / "rpi4.toml").read_text()


@pytest.mark.parametrize("edit,field", [
    (lambda t: t.replace("load_w = 7.0", 'load_w = "lots"'), "power.load_w"),
    (lambda t: t.replace("cores = 4\n", ""), "cpu.cores"),
    (lambda t: t.replace("ms_per_mb", "ms_per_megabyte"), "latency_model.fp32.ms_per_mb"),
    (lambda t: t.replace('activation_type = "uint8"', 'activation_type = "int4"'),
     "quantization.onnxruntime.activation_type"),
    (lambda t: t.replace("idle_w = 2.7", "idle_w = -1"), "power.idle_w"),
    (lambda t: t.replace("[memory]", "[memory"), "not valid toml"),
])
def test_malformed_target_is_rejected_naming_the_field(tmp_path, edit, field):
    path = tmp_path / "board.toml"
    path.write_text(edit(BASE_TARGET))
    proc = run_cli("estimate", "mobilenet_v2", "--target", path, check=False)
    assert proc.returncode == 2
    assert_one_line_error(proc, field)


def test_a_dropped_in_board_file_works(tmp_path):
    path = tmp_path / "myboard.toml"
    path.write_text(BASE_TARGET.replace('name = "rpi4"', 'name = "myboard"'))
    assert run_json("estimate", "mobilenet_v2", "--target", path)["target"] == "myboard"


def test_corrupt_tflite_is_a_clear_error(tmp_path, full_size_exports):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 40)
    assert_one_line_error(run_cli("profile", bad, check=False), "tflite")
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"hello world, not a model")
    assert_one_line_error(run_cli("profile", garbage, check=False), "TFL3")
    bad_onnx = tmp_path / "model.onnx"
    bad_onnx.write_bytes(b"\x08\x07junk")
    assert_one_line_error(run_cli("profile", bad_onnx, check=False), "onnx")


def test_truncated_tflite_from_an_export(tmp_path):
    out = tmp_path / "export"
    run_cli("export", "mobilenet_v1", "-a", "0.25", "-r", "64", "--out", out)
    data = (out / "model.int8.tflite").read_bytes()
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(data[: len(data) // 3])
    assert_one_line_error(run_cli("profile", truncated, check=False), "truncated.tflite")


@pytest.fixture(scope="session")
def device_venv(tmp_path_factory):
    """A venv with only `edgeexport[device]` (non-editable, no torch), as on a Raspberry Pi."""
    root = tmp_path_factory.mktemp("device-venv")
    # Install from a copy: setuptools writes build/ and *.egg-info into the source tree.
    source = tmp_path_factory.mktemp("source") / "edgeexport"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "dist", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    venv.create(root, with_pip=True)
    py = root / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", "-c", ROOT / "constraints.txt",
                    f"{source}[device]"], check=True)
    return root


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
    # Package data (targets) is included: rpi5's board power turns latency into energy.
    proc = subprocess.run([exe, "profile", export / "model.int8.onnx", "--runs", "3",
                           "--target", "rpi5", "--json"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "rpi5" in json.loads(proc.stdout)["energy"]["board_source"]
