"""Estimating latency for boards not attached: the per-runtime cost models, their fit
(`calibrate`), and the target files that carry them. No export, no training: cheap."""
import csv
import tomllib

import pytest

from tests.conftest import ROOT, assert_one_line_error, run_cli, run_json

V1_CSV = ROOT / "edgeexport" / "data" / "rpi4_mlperf_v1.0_krai_calibration.csv"
SMALL_ROWS = [  # real rows of the v1.0 file (TFLite 2.4.1 ruy, 1.5 GHz)
    ("v1", 0.25, 128, "false", 5.154507), ("v1", 0.25, 160, "false", 7.58405),
    ("v1", 0.5, 128, "false", 10.189164), ("v1", 0.5, 160, "false", 14.960283)]


def _write_csv(path, rows, *, bom=False, extra=None):
    head = "model_family,width_multiplier,resolution,quantized,mean_latency_ms"
    lines = [head + (f",{extra[0]}" if extra else "")]
    for i, r in enumerate(rows):
        lines.append(",".join(map(str, r)) + (f",{extra[1][i]}" if extra else ""))
    path.write_bytes(("\ufeff" if bom else "").encode() + ("\n".join(lines) + "\n").encode())
    return path


# --- issue 10 loose ends of `calibrate` ------------------------------------------------------

def test_calibrate_refuses_an_infinite_latency(tmp_path):
    rows = SMALL_ROWS[:3] + [("v1", 0.5, 160, "false", "inf")]
    proc = run_cli("calibrate", "--target", "rpi4", "--data", _write_csv(tmp_path / "m.csv", rows),
                   "--runtime", "tflite-ruy-2_4_1", "--clock-mhz", 1500, "--threads", 4,
                   check=False)
    assert_one_line_error(proc, "row 5", "mean_latency_ms")


def test_calibrate_reads_a_csv_with_a_utf8_bom(tmp_path):
    """Spreadsheet programs save CSV with a byte-order mark before the first column name."""
    data = _write_csv(tmp_path / "bom.csv", SMALL_ROWS, bom=True)
    fit = run_json("calibrate", "--target", "rpi4", "--data", data, "--runtime", "mine",
                   "--clock-mhz", 1500, "--threads", 4)
    assert [r["measured_ms"] for r in fit["fits"][0]["rows"]] == [r[4] for r in SMALL_ROWS]


def test_calibrate_out_keeps_every_other_table_of_the_target(tmp_path):
    base = (ROOT / "targets" / "rpi4.toml").read_text()
    board = tmp_path / "board.toml"
    board.write_text(base + "\n# my sweep\n[grid.mobilenet_v1]\nalphas = [0.25]\n"
                     "resolutions = [128]\n")
    out = tmp_path / "refit.toml"
    run_cli("calibrate", "--target", board, "--data", _write_csv(tmp_path / "m.csv", SMALL_ROWS),
            "--runtime", "mine", "--clock-mhz", 1500, "--threads", 4, "--out", out)
    before, after = tomllib.loads(board.read_text()), tomllib.loads(out.read_text())
    assert after["grid"] == {"mobilenet_v1": {"alphas": [0.25], "resolutions": [128]}}
    assert "# my sweep" in out.read_text()
    assert {k: v for k, v in after.items() if k != "latency_model"} == \
        {k: v for k, v in before.items() if k != "latency_model"}
