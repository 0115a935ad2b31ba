"""`edgeexport build`: incremental, resumable, failure-tolerant, with reports that render."""
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from edgeexport.core.fileio import sha256
from tests.conftest import BUILD_GRID, BUILD_IDS, EDGEEXPORT, assert_one_line_error, run_cli

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
        # The headline repeats the variant's own files (read here without edgeexport's reader).
        head = entry["headline"]
        card = json.loads((root / entry["id"] / "card.json").read_text())
        profile = json.loads((root / entry["id"] / "profile.json").read_text())
        assert head["int8_cosine_onnx"] == card["validation"]["onnx_int8_vs_onnx_fp32"][
            "cosine_mean"]
        assert head["measured_p50_ms"]["onnxruntime_int8"] == profile["measurements"][
            "onnxruntime_int8"]["end_to_end"]["p50_ms"]
        assert head["estimated_ms"]["int8"] > 0
    for name in ("report.html", "report.md", "report.json"):
        assert (root / name).stat().st_size > 0


def test_second_build_rebuilds_nothing(built):
    out, _ = built
    root = out / "rpi4"
    before = {p: p.stat().st_mtime_ns for p in root.glob("*/model.*")}
    _, summary = _build(out)
    assert summary["built"] == [] and sorted(summary["cached"]) == IDS
    assert {p: p.stat().st_mtime_ns for p in root.glob("*/model.*")} == before


def _dry_run(out, *args):
    return json.loads(run_cli("build", *args, "--out", out, "--dry-run", "--json").stdout)


def test_a_damaged_variant_is_rebuilt_alone(built, tmp_path):
    """One byte changed, size unchanged: only the hash can tell. The export is redone in
    another process and writes the same bytes: every exported file and the card (only the
    measurements, profile.json and build.json, differ)."""
    out, _ = built
    copy = tmp_path / "dist"
    shutil.copytree(out, copy)
    model = copy / "rpi4" / IDS[1] / "model.int8.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    why = "model.int8.tflite: sha256 differs from build.json"
    assert _dry_run(copy, *GRID)["would_build"] == {IDS[1]: why}
    _, summary = _build(copy)
    assert summary["built"] == [IDS[1]] and summary["reasons"] == {IDS[1]: why}
    assert sorted(summary["cached"]) == sorted(set(IDS) - {IDS[1]})
    original, rebuilt = out / "rpi4" / IDS[1], copy / "rpi4" / IDS[1]
    exported = ["card.json", *json.loads((original / "card.json").read_text())["files"]]
    assert {"model.fp32.onnx", "model.int8.onnx", "model.fp32.tflite", "model.int8.tflite",
            "model.app.tflite"} <= set(exported)
    for name in exported:
        assert (rebuilt / name).read_bytes() == (original / name).read_bytes(), name


@pytest.mark.parametrize("damage,why", [
    ("hostile path", "outside the variant ('../../etc/passwd')"),
    ("other schema", "unreadable or of another edgeexport version"),
    ("not json", "unreadable or of another edgeexport version"),
    ("one byte", "card.json: sha256 differs"),
    ("no record", "not built yet")])
def test_any_damaged_record_means_rebuild_and_says_why(built, tmp_path, damage, why):
    """Before: a build.json listing '../x' raised out of is_complete and aborted the build."""
    from edgeexport.build.sweep import CacheKey, rebuild_reason
    out, _ = built
    directory = tmp_path / IDS[0]
    shutil.copytree(out / "rpi4" / IDS[0], directory)
    record = json.loads((directory / "build.json").read_text())
    key = CacheKey(record["inputs"])
    assert key.key == record["cache_key"]  # the key is the hash of the inputs it records
    assert rebuild_reason(directory, key) is None
    if damage == "hostile path":
        record["files"]["../../etc/passwd"] = record["files"].pop("card.json")
    elif damage == "other schema":
        record["schema_version"] = 0
    elif damage == "one byte":
        card = directory / "card.json"
        card.write_bytes(card.read_bytes().replace(b'"target"', b'"tarGet"'))
    if damage == "no record":
        (directory / "build.json").unlink()
    else:
        (directory / "build.json").write_text("{not json" if damage == "not json"
                                              else json.dumps(record))
    assert why in rebuild_reason(directory, key)


def test_a_second_build_into_the_same_directory_is_refused(built, tmp_path):
    """The lock: while one build holds dist/<target>, another fails at once and touches nothing."""
    import fcntl
    out, _ = built
    copy = tmp_path / "dist"
    shutil.copytree(out, copy)
    (copy / "rpi4" / IDS[0] / "build.json").unlink()  # would be rebuilt, were it allowed to run
    before = sorted(p.name for p in (copy / "rpi4" / IDS[0]).iterdir())
    with open(copy / "rpi4" / ".build.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("4242")
        lock.flush()
        proc = run_cli("build", *GRID, "--out", copy, check=False)
    assert_one_line_error(proc, "another edgeexport build", "4242")
    assert sorted(p.name for p in (copy / "rpi4" / IDS[0]).iterdir()) == before


def test_changed_calibration_set_rebuilds(built, tmp_path):
    """Said by --dry-run, which builds nothing (a rebuild itself: the damaged variant above)."""
    out, _ = built
    from tests.synthetic_data import write_dataset
    calib = write_dataset(tmp_path / "calib", 3, 80, seed=5)
    before = sorted(p.name for p in (out / "rpi4").rglob("*"))
    plan = _dry_run(out, *GRID, "--calib", calib)
    assert plan["would_build"] == {vid: "changed: calibration" for vid in IDS}
    assert plan["cached"] == []
    assert sorted(p.name for p in (out / "rpi4").rglob("*")) == before


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
    """Killed (SIGKILL, the whole process group) once the first variant is sealed, the rerun
    redoes only the unsealed ones and leaves the sealed ones untouched. ONNX-only variants:
    the build's bookkeeping is under test here, not the files."""
    ids = ["mobilenet_v1_0.25_64", "mobilenet_v1_0.25_80"]
    grid = ["--target", "rpi4", "--family", "mobilenet_v1", "--alpha", "0.25",
            "--resolution", "64,80", "--formats", "onnx"]
    out = tmp_path / "dist"
    proc = subprocess.Popen([*EDGEEXPORT, "build", *grid, "--out", str(out), "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and not list(out.glob("rpi4/*/build.json")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(p.parent.name for p in out.glob("rpi4/*/build.json"))
    assert 1 <= len(done) < len(ids), done
    sealed = {p: p.stat().st_mtime_ns for d in done for p in (out / "rpi4" / d).iterdir()}
    proc = run_cli("build", *grid, "--out", out, "--json")
    summary = json.loads(proc.stdout)
    assert sorted(summary["cached"]) == done
    assert sorted(summary["built"]) == sorted(set(ids) - set(done))
    assert {p: p.stat().st_mtime_ns for p in sealed} == sealed


def test_weights_directory_with_any_spelling_of_alpha(trained, dataset, tmp_path):
    """Before: `mobilenet_v2_0.50.pt` (any α spelt with a trailing 0) was silently ignored
    (the lookup formatted α with :g) and the variant was built from random weights. The built
    fp32 model must compute what the trained PyTorch network computes (V2's: the first
    network trained)."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from tests.trained import inputs_for
    model, weights = trained("mobilenet_v2")
    wdir = tmp_path / "weights"
    wdir.mkdir()
    shutil.copy(weights, wdir / "mobilenet_v2_0.50.pt")
    proc = run_cli("build", "--target", "rpi4", "--family", "mobilenet_v2", "--alpha", "0.5",
                   "--resolution", "64", "--num-classes", "4", "--weights", wdir,
                   "--calib", dataset["train"], "--formats", "onnx", "--out", tmp_path / "dist",
                   "--json")
    assert json.loads(proc.stdout)["built"] == ["mobilenet_v2_0.5_64"]
    directory = tmp_path / "dist" / "rpi4" / "mobilenet_v2_0.5_64"
    card = json.loads((directory / "card.json").read_text())
    assert card["weights"]["sha256"] == sha256(weights)
    assert card["calibration"]["synthetic"] is False  # the build passed --calib on
    x = inputs_for("mobilenet_v2", dataset["eval"]).inputs[:8]
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(directory / "model.fp32.onnx"))
    got = np.concatenate([session.run(None, {session.get_inputs()[0].name: xi[None]})[0]
                          for xi in x])
    assert np.abs(got - reference).max() <= 1e-4 * max(1, np.abs(reference).max())


def test_two_weights_files_for_one_variant_are_refused(tmp_path):
    wdir = tmp_path / "weights"
    wdir.mkdir()
    (wdir / "mobilenet_v1_0.25.pt").write_bytes(b"x")
    (wdir / "mobilenet_v1_0.250.safetensors").write_bytes(b"x")
    proc = run_cli("build", "--target", "rpi4", "--family", "mobilenet_v1", "--alpha", "0.25",
                   "--resolution", "64", "--weights", wdir, "--out", tmp_path / "dist",
                   check=False)
    assert_one_line_error(proc, "mobilenet_v1_0.25.pt", "mobilenet_v1_0.250.safetensors")


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
    from edgeexport.targets import load_target
    board = tmp_path / "rpi4.toml"
    board.write_text(load_target("rpi4").source.replace("load_w = 7.0", "load_w = 7.5"))
    grid = ["--target", board, *GRID[2:]]
    assert _dry_run(out, *grid)["would_build"] == {vid: "changed: target" for vid in IDS}
    board.write_text(load_target("rpi4").source)
    assert _dry_run(out, *grid)["would_build"] == {}  # the same text under another path


def test_the_build_key_reads_every_module_that_shapes_a_file():
    """A build is cached by the code that shapes its files: every stage module below build/
    (export, int8, tflite, app, ...) counts, the CLI and the reports do not. Listed from disk
    here, independently of the rule in build/sweep.py."""
    from edgeexport.build.sweep import shaping_sources
    root = Path(__file__).resolve().parents[1] / "edgeexport"
    names = {name for name, _ in shaping_sources()}
    for stage in ("export", "int8", "tflite", "app", "measure", "contracts"):
        for path in (root / stage).glob("*.py"):
            if path.name != "__init__.py":
                assert f"edgeexport/{stage}/{path.name}" in names
    assert not any(name.startswith(("edgeexport/cli/", "edgeexport/build/")) for name in names)
    assert "edgeexport.models/mobilenet_v3.py" in names and "edgeexport.targets" in names
