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


def _records(root: Path, vid: str) -> dict:
    """A variant's own files, read here as plain JSON (not through edgeexport's readers)."""
    return {name.split(".")[0]: json.loads((root / vid / name).read_text())
            for name in ("card.json", "profile.json", "estimate.json", "analysis.json")}


def _num(x: float) -> str:
    """The page's number format (report.js: num), with JavaScript's toFixed: the exact binary
    value, a tie rounded away from zero (35.25 → "35.3", where Python's format gives 35.2)."""
    from decimal import ROUND_HALF_UP, Decimal
    a = abs(x)
    digits = 0 if a >= 100 else 1 if a >= 10 else 2 if a >= 1 else 3
    return str(Decimal(x).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def test_report_html_is_self_contained_and_reproducible(built, tmp_path):
    """Offline by construction: no URL, no external script, style or font; a sensible size;
    the same build renders the same bytes (here, in another process than the build's)."""
    from edgeexport.build.report import write_reports
    from edgeexport.contracts.artifacts import Index, read_record
    from edgeexport.targets import load_target
    out, _ = built
    page = (out / "rpi4" / "report.html").read_bytes()
    text = page.decode()
    for banned in ("http://", "https://", "//cdn", "<link", "@import", "url(", "<img",
                   "<iframe", "fonts.g"):
        assert banned not in text, banned
    assert " src=" not in text  # every script inline
    assert len(page) < 3_000_000 / 10  # 4 variants; the default 40-variant sweep: docs/guide
    copy = tmp_path / "rpi4"
    shutil.copytree(out / "rpi4", copy)
    (copy / "report.html").unlink()
    write_reports(copy, load_target("rpi4"), read_record(copy, Index))
    assert (copy / "report.html").read_bytes() == page


def test_report_html_explored_in_a_real_browser(built, tmp_path):
    """Sorting, filtering, a tooltip on hover and a click into a variant's layers, with real
    mouse events in headless Chromium; every figure checked against the build's own files."""
    from tests.browser import Browser
    out, _ = built
    root = out / "rpi4"
    rec = {vid: _records(root, vid) for vid in IDS}
    p50 = {v: r["profile"]["measurements"]["onnxruntime_int8"]["end_to_end"]["p50_ms"]
           for v, r in rec.items()}
    est = {v: r["estimate"]["estimates"]["int8"]["end_to_end"]["latency_ms"]
           for v, r in rec.items()}
    browser = Browser(tmp_path / "chromium")
    try:
        browser.open((root / "report.html").as_uri())
        browser.wait_for("document.body.dataset.ready === '1'")
        shown = ("[...document.querySelectorAll('#variant-table tbody tr')]"
                 ".filter(r => !r.hidden).map(r => r.dataset.id)")
        assert browser.js(shown) == IDS  # the index's order

        # A header click sorts by that column (again: reversed), by the files' figures.
        heads = browser.js("[...document.querySelectorAll('#variant-table th')]"
                           ".map(th => th.textContent)")
        for head, figure in (("int8 p50 here (ms)", p50), ("est. int8 rpi4 (ms)", est)):
            th = f"#variant-table thead th:nth-child({heads.index(head) + 1})"
            browser.click(th)
            assert browser.js(shown) == sorted(IDS, key=figure.get), head
            assert browser.js(f"document.querySelector('{th}').getAttribute('aria-sort')") \
                == "ascending"
            browser.click(th)
            assert browser.js(shown) == sorted(IDS, key=figure.get, reverse=True), head

        # The filter narrows the table and the plots alike.
        browser.click("#filter")
        browser.call("Input.insertText", session=True, text="v3_small")
        small = [v for v in sorted(IDS, key=est.get, reverse=True) if "v3_small" in v]
        assert browser.js(shown) == small
        points = "[...document.querySelectorAll('#scatter circle.pt')].map(c => c.dataset.id)"
        assert sorted(browser.js(points)) == sorted(small)
        browser.js("(f => { f.value = ''; f.dispatchEvent(new Event('input')); })"
                   "(document.getElementById('filter'))")
        assert sorted(browser.js(points)) == sorted(IDS)

        # Hover: the highest point of latency-vs-MACs is the slowest variant by profile.json;
        # its tooltip names it and says how its latency was measured.
        slowest = max(IDS, key=p50.get)
        highest = browser.js("[...document.querySelectorAll('#scatter circle.pt')].sort((a, b)"
                             " => a.getBoundingClientRect().top - b.getBoundingClientRect().top)"
                             "[0].dataset.i")
        assert browser.js("document.getElementById('tip').hidden") is True
        browser.hover(f'#scatter circle.pt[data-i="{highest}"]')
        browser.wait_for("!document.getElementById('tip').hidden")
        tip = browser.js("[...document.querySelectorAll('#tip div')].map(d => d.textContent)")
        card, profile = rec[slowest]["card"], rec[slowest]["profile"]
        run = profile["measurements"]["onnxruntime_int8"]["end_to_end"]
        variant = card["variant"]
        assert tip[0] == slowest
        assert f"α {variant['alpha']:g} · {variant['resolution']} px" in tip[1]
        latency = next(line for line in tip if line.startswith("latency "))
        assert latency.endswith(" ms: onnxruntime int8 p50, measured here")
        assert float(latency.split()[1]) == pytest.approx(run["p50_ms"], rel=0.01, abs=1e-3)
        how = tip[tip.index(latency) + 1]
        assert how.startswith("MEASURED here") and f"{run['threads']} thread(s)" in how
        assert f"p50 of {run['runs']} runs after {run['warmup']} warm-up" in how
        estimate = est[slowest]
        assert f"{_num(estimate)} ms: int8, estimated for rpi4" in tip
        assert f"{_num(card['macs'] / 1e6)} M MACs" in " ".join(tip)
        random = card["weights"]["sha256"] is None
        accuracy = next(line for line in tip if line.startswith("accuracy: "))
        assert card["weights"]["source"] in accuracy
        assert ("random weights" in accuracy) == random
        browser.call("Input.dispatchMouseEvent", session=True, type="mouseMoved", x=2, y=2)
        browser.wait_for("document.getElementById('tip').hidden")

        # Pareto: points only for variants with a published top-1 (the shipped MLPerf table).
        from edgeexport.build.report import reference_table
        published = {(r["family"], r["alpha"], r["resolution"]) for r in reference_table()
                     if r["precision"] == "int8"}
        expected = sorted(v for v, r in rec.items() if (r["card"]["variant"]["family"],
                          r["card"]["variant"]["alpha"], r["card"]["variant"]["resolution"])
                          in published)
        assert sorted(browser.js(points.replace("#scatter", "#pareto"))) == expected

        # A click on a point opens that variant's layers: names as its files list them.
        for vid, target in ((max(IDS, key=lambda v: ("v3_small" in v, v)),
                             "#scatter circle.pt[data-id=\"{}\"]"),
                            (min(IDS), "#variant-table tr[data-id=\"{}\"] td:nth-child(3)")):
            assert browser.js("document.getElementById('layers').dataset.variant") != vid
            browser.click(target.format(vid))
            browser.wait_for(f"document.getElementById('layers').dataset.variant === '{vid}'")
            assert browser.js("location.hash") == f"#v={vid}"
            assert browser.js("document.getElementById('layers-title').textContent") == \
                f"Layers: {vid}"
            layers = browser.js("[...document.querySelectorAll('#layer-table tbody tr')].map("
                                "r => [r.dataset.layer, r.className, [...r.cells].map("
                                "c => c.textContent)])")
            names = [name for name, _, _ in layers]
            card, profile, analysis = (rec[vid][k] for k in ("card", "profile", "analysis"))
            order = [x["name"] for x in analysis["layers"]]
            emap = {x["layer"]: x for x in card["int8_error_map"]["layers"]}
            timed = {x["name"]: x["latency_ms"]
                     for x in profile["measurements"]["onnxruntime_int8"]["layers"]
                     if x["latency_ms"] > 0}
            assert set(emap) | set(timed) <= set(names) <= set(order)
            assert names == sorted(names, key=order.index)  # in network order
            for name, cls, cells in layers:
                if name in timed:  # the bars' figures: measured int8, from profile.json
                    assert float(cells[3]) == pytest.approx(timed[name], rel=0.01, abs=1e-3)
                local = emap.get(name, {}).get("onnx_local_db")
                assert cells[4] == ("–" if local is None else _num(local)), name
                assert ("worst" in cls.split()) == (name in card["int8_error_map"]["worst"])
        # Offline: the page asked for nothing but itself, and ran without an error.
        assert set(browser.requests) == {(root / "report.html").as_uri()}
        assert browser.errors == []
    finally:
        browser.close()


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


def test_the_report_names_the_variants_whose_int8_ran_slower_than_fp32(built):
    """Read from each variant's own profile.json: the report's note lists exactly the variants
    whose onnxruntime int8 p50 exceeded fp32's (and there is no note when none did)."""
    out, _ = built
    root = out / "rpi4"
    slower = []
    for variant in sorted(p for p in root.iterdir() if (p / "profile.json").is_file()):
        measured = json.loads((variant / "profile.json").read_text())["measurements"]
        fp32, int8 = (measured[f"onnxruntime_{p}"]["end_to_end"]["p50_ms"]
                      for p in ("fp32", "int8"))
        if int8 > fp32:
            slower.append(variant.name)
    notes = [line for line in (root / "report.md").read_text().splitlines() if "SLOWER" in line]
    if not slower:
        assert notes == []
        return
    assert len(notes) == 1
    named = [v for v in (p.name for p in root.iterdir() if p.is_dir()) if f"{v} (" in notes[0]]
    assert sorted(named) == slower
