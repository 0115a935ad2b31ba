"""An emulated Raspberry Pi (edgeexport.measure.emulator): Debian's arm64 Python 3.11 under
qemu-user with a named core, the aarch64 onnxruntime and LiteRT. Prepared once per clone into
.venv/emulated-cache (cold: ~30 s and ~210 MB of downloads; then reused).

Held against references the code under test does not compute: the core's features as the
kernel interface QEMU emulates reports them (AT_HWCAP in /proc/self/auxv), onnxruntime's own
optimised graphs read with onnx here, and the x86 runtimes run by the test itself."""
import json
import platform
import re
import shutil
import subprocess
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import EMULATED_CACHE as CACHE
from tests.conftest import assert_one_line_error
from tests.conftest import run_cli as run_anywhere
A72_FEATURES = "fp asimd evtstrm crc32 cpuid"
HWCAP_ASIMDDP = 1 << 20  # Linux arch/arm64 uapi hwcap.h
HWCAP_ATOMICS = 1 << 8
QUANTIZED = {"QLinearConv": "Conv", "QLinearAdd": "Add", "QLinearMul": "Mul", "QGemm": "Gemm",
             "QLinearGlobalAveragePool": "GlobalAveragePool"}

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64",
                                reason="emulates an ARM board on an x86-64 host")


def run_cli(*args, env=None, **kw):
    """The command with this module's boards (the rest of the suite sees none prepared)."""
    return run_anywhere(*args, env={"EDGEEXPORT_EMULATED_DIR": str(CACHE), **(env or {})},
                        **kw)


def run_json(*args, **kw):
    return json.loads(run_cli(*args, "--json", **kw).stdout)


@pytest.fixture(scope="session")
def emulated():
    """Both boards prepared (QEMU installed first if missing); name → board.json."""
    if shutil.which("qemu-aarch64-static") is None:
        pytest.fail("qemu-user-static is not installed: `make test` installs Debian's")
    return {b: run_json("device", "emulate", b) for b in ("rpi4", "rpi5")}


@pytest.fixture(scope="session")
def exports(emulated, tmp_path_factory):
    """A random-weight V2 α 0.35 at 96 px (every format), and a build of V3-Small α 0.25 at
    64 px (ONNX) checked on the emulated Pi 4 (`build --device emulated:rpi4`), side by side."""
    root = tmp_path_factory.mktemp("emulated")
    v2 = root / "v2"
    jobs = {"v2": ["export", "mobilenet_v2", "--alpha", "0.35", "--resolution", "96", "--num-classes", "10",
                   "--target", "rpi4", "--out", v2, "--json"],
            "build": ["build", "--target", "rpi4", "--family", "mobilenet_v3_small", "--alpha",
                      "0.25", "--resolution", "64", "--formats", "onnx", "--num-classes", "10",
                      "--device", "emulated:rpi4", "--out", root / "dist", "--json"]}
    done = {}
    threads = [threading.Thread(target=lambda k=k, a=a: done.__setitem__(k, run_cli(*a)))
               for k, a in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(done) == set(jobs), "an export or the build failed (see the output above)"
    return {"v2": v2, "build": json.loads(done["build"].stdout),
            "v3s": root / "dist" / "rpi4" / "mobilenet_v3_small_0.25_64"}


def _emulated_python(board: dict, code: str) -> str:
    proc = subprocess.run([board["python"], "-c", code], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


AUXV = """
import struct
data = open('/proc/self/auxv', 'rb').read()
pairs = dict(struct.iter_unpack('<QQ', data))
import platform
print(platform.machine(), pairs.get(16, 0))
print(open('/proc/cpuinfo').read().split('Features')[1].split(chr(10))[0].strip(': \\t'))
"""


def test_the_emulated_python_is_aarch64_on_the_named_core(emulated):
    """The kernel interface QEMU emulates says which core runs (AT_HWCAP): dot product on the
    A76 (Pi 5), not on the A72 (Pi 4); the cpuinfo the runtimes read says the same."""
    found = {}
    for name, board in emulated.items():
        assert board["core"] == {"rpi4": "cortex-a72", "rpi5": "cortex-a76"}[name]
        machine_hwcap, features = _emulated_python(board, AUXV).strip().splitlines()
        machine, hwcap = machine_hwcap.split()
        assert machine == "aarch64"
        found[name] = (int(hwcap), features.split())
    a72_hwcap, a72_features = found["rpi4"]
    a76_hwcap, a76_features = found["rpi5"]
    assert not a72_hwcap & HWCAP_ASIMDDP and a76_hwcap & HWCAP_ASIMDDP
    assert not a72_hwcap & HWCAP_ATOMICS and a76_hwcap & HWCAP_ATOMICS
    assert a72_features == A72_FEATURES.split()
    assert "asimddp" in a76_features and "asimddp" not in a72_features
    # the runtimes there are the versions installed here
    from importlib.metadata import version
    for board in emulated.values():
        assert board["wheels"]["onnxruntime"] == version("onnxruntime")
        assert board["wheels"]["ai-edge-litert"] == version("ai-edge-litert")
        assert board["wheels"]["numpy"] == version("numpy")


def test_profile_on_the_emulated_board_is_labelled_and_has_no_time(exports, emulated):
    for runtime in ("onnxruntime", "litert"):
        report = run_json("profile", exports["v2"], "--runtime", runtime, "--device",
                          "emulated:rpi4")
        assert report["source"] == "emulated"
        assert report["note"] == "emulated: correctness and graph facts only"
        assert report["end_to_end"] is None and report["energy"] is None
        text = json.dumps(report)
        assert "_ms" not in text and "latency" not in text and "energy_" not in text
        assert report["board"]["isa"] == "aarch64"  # said by the process that ran the file
        assert report["where"]["device"] == "emulated:rpi4"
        assert "cortex-a72" in report["where"]["emulated"]
        from importlib.metadata import version
        expected = version("onnxruntime") if runtime == "onnxruntime" else \
            version("ai-edge-litert")
        assert expected in report["runtime_version"]
    human = run_cli("profile", exports["v2"], "--device", "emulated:rpi5").stdout
    assert "EMULATED" in human and "no latency, no energy" in human and " ms" not in human
    facts = run_json("device", "check", "emulated:rpi5")
    assert facts["facts"]["isa"] == "aarch64" and "cortex-a76" in facts["emulated"]


def _x86_and_arm_graph_ops(model: Path, board: dict, tmp: Path) -> dict[str, Counter]:
    """onnxruntime's optimised graph of ``model`` saved here and in the emulated board by
    this test's own code, op types counted with onnx."""
    import onnx
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(tmp / "x86.onnx")
    ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    _emulated_python(board, "import onnxruntime as ort; so = ort.SessionOptions(); "
                     "so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL; "
                     f"so.optimized_model_filepath = {str(tmp / 'arm.onnx')!r}; "
                     f"ort.InferenceSession({str(model)!r}, so, "
                     "providers=['CPUExecutionProvider'])")
    return {side: Counter(n.op_type for n in onnx.load(str(tmp / f"{side}.onnx")).graph.node)
            for side in ("x86", "arm")}


def _assert_ops_match_the_graphs(entry: dict, ops: dict[str, Counter]) -> None:
    for side in ("x86", "arm"):
        counted = ops[side]
        recorded = entry[f"ops_{side}"]
        for kernel, base in QUANTIZED.items():
            if counted[kernel]:
                assert recorded[base]["quantized"] == counted[kernel], (side, kernel)
        for base in ("Conv", "Add", "Gemm"):
            floats = counted[base] + counted[f"Fused{base}"]
            assert recorded.get(base, {"float": 0})["float"] == floats, (side, base)


def test_arm_check_of_v2_agrees_with_x86(exports, emulated, tmp_path):
    """Every V2 file on the emulated Cortex-A72 against x86 on the same inputs. Tolerances:
    fp32 files to float rounding (max |Δ| ≤ 1e-4 × max |x86|; ARM and x86 sum in other
    orders), int8 files (ONNX, TFLite, the app file) top-1 agreement 1.0 and ≥ 90% of output
    values bit-identical (measured: 100%)."""
    directory = tmp_path / "v2"
    shutil.copytree(exports["v2"], directory)
    check = run_json("device", "arm-check", directory, "--board", "rpi4")
    assert check["board"] == "rpi4" and check["core"] == "cortex-a72"
    assert check["note"] == "emulated: correctness and graph facts only"
    assert check["arm"]["machine"] == "aarch64" and check["x86"]["machine"] == "x86_64"
    files = {f["file"]: f for f in check["files"]}
    assert set(files) == {"model.fp32.onnx", "model.int8.onnx", "model.fp32.tflite",
                          "model.int8.tflite", "model.app.tflite"}
    for name, f in files.items():
        assert f["inputs"] == 8 and f["top1_agreement"] == 1.0, name
        if ".fp32." in name:
            assert f["cosine_mean"] > 0.99999 and f["max_abs_diff"] < 1e-4, name
        else:
            assert f["bit_identical"] >= 0.9, name
    assert check["passed"] and not check["failures"]
    card = json.loads((directory / "card.json").read_text())
    assert card["arm"]["rpi4"]["files"] == check["files"]
    assert json.loads((directory / "arm_check.json").read_text())["files"] == check["files"]
    ops = _x86_and_arm_graph_ops(directory / "model.int8.onnx", emulated["rpi4"], tmp_path)
    _assert_ops_match_the_graphs(files["model.int8.onnx"], ops)


def test_the_fp32_outputs_on_arm_match_this_tests_own_x86_run(exports, emulated, tmp_path):
    """The emulated board's fp32 ONNX outputs, fetched by this test's own script, against
    onnxruntime here: the check's figures rest on outputs that really differ by rounding only."""
    import onnxruntime as ort
    model = exports["v2"] / "model.fp32.onnx"
    x = np.random.default_rng(0).standard_normal((2, 3, 96, 96)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    _emulated_python(emulated["rpi4"], "import numpy as np, onnxruntime as ort; "
                     f"s = ort.InferenceSession({str(model)!r}, "
                     "providers=['CPUExecutionProvider']); "
                     f"x = np.load({str(tmp_path / 'x.npy')!r}); "
                     f"np.save({str(tmp_path / 'y.npy')!r}, "
                     "np.concatenate([s.run(None, {s.get_inputs()[0].name: r[None]})[0] "
                     "for r in x]))")
    here = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    ours = np.concatenate([here.run(None, {here.get_inputs()[0].name: r[None]})[0] for r in x])
    arm = np.load(tmp_path / "y.npy")
    assert arm.shape == ours.shape
    assert np.max(np.abs(arm - ours)) <= 1e-4 * max(1.0, np.max(np.abs(ours)))


def test_build_with_the_emulated_board_checks_every_variant(exports, emulated, tmp_path):
    """`build --device emulated:rpi4`: measured here (x86 timings), each card carries the ARM
    check; V3-Small's int8 ONNX agrees with x86 (top-1 1.0) and its graph counts are
    onnxruntime's own."""
    build = exports["build"]
    assert build["built"] == ["mobilenet_v3_small_0.25_64"] and build["arm_check"] == "rpi4"
    assert build["device"] is None
    directory = exports["v3s"]
    profile = json.loads((directory / "profile.json").read_text())["measurements"]
    assert profile["onnxruntime_int8"]["board"]["isa"] == platform.machine()  # measured here
    card = json.loads((directory / "card.json").read_text())
    arm = card["arm"]["rpi4"]
    assert arm["passed"] and arm["note"] == "emulated: correctness and graph facts only"
    files = {f["file"]: f for f in arm["files"]}
    assert set(files) == {"model.fp32.onnx", "model.int8.onnx"}
    assert files["model.int8.onnx"]["top1_agreement"] == 1.0
    ops = _x86_and_arm_graph_ops(directory / "model.int8.onnx", emulated["rpi4"], tmp_path)
    _assert_ops_match_the_graphs(files["model.int8.onnx"], ops)
    build_record = json.loads((directory / "build.json").read_text())
    assert "arm_check.json" in build_record["files"]


def _page_data(page: str) -> dict:
    """The JSON block report.html draws from, read as plain JSON."""
    block = re.search(r'<script type="application/json" id="report-data">(.*?)</script>',
                      page, re.S)[1]
    return json.loads(block.replace("<\\/", "</"))


def _ops_in_words(ops: dict | None) -> str | None:
    if ops is None:
        return None
    return (f"{sum(v['quantized'] for v in ops.values())} quantized / "
            f"{sum(v['float'] for v in ops.values())} float")


def test_the_report_and_the_build_summary_show_the_arm_check(exports):
    """report.html's variant view and the terminal summary of `build` carry the card's ARM
    section (held to card.json read here), labelled emulated with the board and its core."""
    directory = exports["v3s"]
    page = (directory.parent / "report.html").read_text()
    assert 'id="layers-arm"' in page and "drawArm(L.arm)" in page
    arm = json.loads((directory / "card.json").read_text())["arm"]["rpi4"]
    (shown,) = _page_data(page)["layers"][directory.name]["arm"]
    assert "EMULATED rpi4 (cortex-a72" in shown["title"] and arm["note"] in shown["title"]
    assert [r["file"] for r in shown["files"]] == [f["file"] for f in arm["files"]]
    for row, f in zip(shown["files"], arm["files"]):
        for key in ("cosine_mean", "top1_agreement", "bit_identical", "max_abs_diff"):
            assert row[key] == f[key], (f["file"], key)
        assert row["ops_arm"] == _ops_in_words(f["ops_arm"])
        assert row["ops_x86"] == _ops_in_words(f["ops_x86"])
    # The same build again without `--device emulated:rpi4`: the check is on by default with
    # the rpi4 board prepared, so every variant is cached; its terminal summary.
    grid = ["--target", "rpi4", "--family", "mobilenet_v3_small", "--alpha", "0.25",
            "--resolution", "64", "--formats", "onnx", "--num-classes", "10",
            "--out", directory.parent.parent]
    text = run_cli("build", *grid).stdout
    assert "0 built, 1 unchanged" in text
    (line,) = [x for x in text.splitlines() if "ARM check" in x]
    int8 = next(f for f in arm["files"] if f["file"] == "model.int8.onnx")
    assert line.startswith(f"{directory.name}: ARM check EMULATED on rpi4 (cortex-a72)")
    assert f"top-1 agreement ≥ {min(f['top1_agreement'] for f in arm['files']):g}" in line
    assert f"int8 ONNX ops on ARM {_ops_in_words(int8['ops_arm'])}" in line
    # Off with --no-arm-check, and silently off where no board is prepared: the variant would
    # be measured again, without the check.
    unchecked = {directory.name: "changed: arm_check"}
    assert run_json("build", *grid, "--dry-run", "--no-arm-check")["would_build"] == unchecked
    assert run_json("build", *grid, "--dry-run", env={"EDGEEXPORT_EMULATED_DIR": str(
        directory.parent / "no-boards")})["would_build"] == unchecked


# ---- the emulated board behind the real sshd (tests/board.py's `board-arm`) ----

def _assert_said_by_the_emulated_a72(facts: dict, board, prepared: dict) -> None:
    """The facts of a process of the emulated Pi 4, logged in over SSH as the board account."""
    assert facts["isa"] == "aarch64"
    assert facts["cpu_model"] == "Cortex-A72"  # Arm's name for CPU part 0xd08
    assert "cortex-a72" in facts["emulated"] and "QEMU" in facts["emulated"]
    assert facts["user"] == board.account
    assert facts["python"].startswith(prepared["root"])  # the sysroot's python3.11


def _assert_time_free(run: dict) -> None:
    assert run["source"] == "emulated"
    assert run["note"] == "emulated: correctness and graph facts only"
    assert run["end_to_end"] is None and run["energy"] is None
    text = json.dumps(run)
    assert "_ms" not in text and "latency" not in text and "energy_" not in text


def test_the_emulated_board_behind_sshd_says_it_is_emulated(exports, emulated, board):
    """`board-arm`'s PATH holds the emulated Pi 4's launchers: `device check` and `profile
    --device` reach its own edgeexport over SSH, and it says itself that it is an emulated
    Cortex-A72 (the client addressed it as a plain host); its profile keeps no time."""
    ssh = ["--ssh-config", board.ssh_config]
    check = run_json("device", "check", "board-arm", *ssh)
    _assert_said_by_the_emulated_a72(check["facts"], board, emulated["rpi4"])
    report = run_json("profile", exports["v3s"], "--device", "board-arm", *ssh)  # 50 runs asked
    _assert_time_free(report)
    assert report["runs"] == 2  # the emulated board ran each kernel, kept no time
    assert report["where"]["device"] == "board-arm"
    assert report["where"]["emulated"] == report["board"]["emulated"]
    _assert_said_by_the_emulated_a72(report["board"], board, emulated["rpi4"])
    assert report["model"].startswith(str(board.cache / "edgeexport" / "models"))
    assert report["layers"] and report["runtime"] == "onnxruntime"
    from importlib.metadata import version
    assert version("onnxruntime") in report["runtime_version"]


def test_build_on_the_emulated_board_behind_sshd_keeps_its_runs_time_free(
        exports, emulated, board, tmp_path):
    """`build --device board-arm` on the exports of the emulated build (not exported again):
    the board says it is emulated, so every time is measured here and the board's runs of
    the files are kept apart, time-free."""
    out = tmp_path / "dist"
    shutil.copytree(exports["v3s"].parent.parent, out)
    models = {p: p.stat().st_mtime_ns for p in out.glob("rpi4/*/model.*")}
    summary = run_json("build", "--target", "rpi4", "--family", "mobilenet_v3_small",
                       "--alpha", "0.25", "--resolution", "64", "--formats", "onnx",
                       "--num-classes", "10", "--device", "board-arm", "--ssh-config",
                       board.ssh_config, "--no-arm-check", "--out", out)
    vid = exports["v3s"].name
    assert summary["built"] == [vid]
    assert models and {p: p.stat().st_mtime_ns for p in models} == models  # not re-exported
    assert summary["device"] == "board-arm" and "cortex-a72" in summary["device_emulated"]
    profile = json.loads((out / "rpi4" / vid / "profile.json").read_text())
    assert sorted(profile["measurements"]) == ["onnxruntime_fp32", "onnxruntime_int8"]
    for m in profile["measurements"].values():  # the times: this machine's
        assert m["board"]["isa"] == platform.machine() and "device" not in m["where"]
        assert m["board"]["emulated"] is None
    assert sorted(profile["emulated"]) == sorted(profile["measurements"])
    for run in profile["emulated"].values():
        _assert_time_free(run)
        assert run["where"]["device"] == "board-arm"
        _assert_said_by_the_emulated_a72(run["board"], board, emulated["rpi4"])


# ---- refusals: one line, nothing half-prepared ----

def test_the_max_core_is_refused(tmp_path):
    env = {"EDGEEXPORT_EMULATED_DIR": str(tmp_path / "cache")}
    assert_one_line_error(run_cli("device", "emulate", "rpi4", "--cpu", "max", check=False,
                                  env=env), "max", "cortex-a72")
    assert_one_line_error(run_cli("device", "emulate", "max", check=False, env=env), "max")
    assert not (tmp_path / "cache").exists()


def test_no_arm_check_with_a_board_to_check_on_is_refused(tmp_path):
    for asked in (["--arm-check", "rpi4"], ["--device", "emulated:rpi4"]):
        proc = run_cli("build", "--family", "mobilenet_v1", "--alpha", "0.25", "--resolution",
                       "64", "--no-arm-check", *asked, "--out", tmp_path, check=False)
        assert_one_line_error(proc, "--no-arm-check", asked[1])
    assert not list(tmp_path.iterdir())


def test_no_qemu_is_refused(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    proc = run_cli("device", "emulate", "rpi4", check=False,
                   env={"PATH": str(bindir), "EDGEEXPORT_EMULATED_DIR": str(tmp_path / "c")})
    assert_one_line_error(proc, "qemu-aarch64-static", "apt-get install qemu-user-static")
    assert not (tmp_path / "c").exists()


def test_a_sysroot_missing_a_library_is_refused(emulated, tmp_path):
    sysroot = Path(emulated["rpi4"]["sysroot"])
    copy = tmp_path / "sysroot"
    subprocess.run(["cp", "-al", str(sysroot), str(copy)], check=True)  # hard links: no bytes
    for lib in (copy / "lib" / "aarch64-linux-gnu").glob("libz.so.1*"):
        lib.unlink()
    cache = tmp_path / "cache"
    proc = run_cli("device", "emulate", "rpi4", "--sysroot", copy, check=False,
                   env={"EDGEEXPORT_EMULATED_DIR": str(cache)})
    assert_one_line_error(proc, "libz.so.1", str(copy))
    assert not (cache / "rpi4").exists()
    assert not [p for p in cache.iterdir() if p.name.startswith((".rpi4", "site", ".site"))]


def test_no_arm64_packages_reachable_is_refused(emulated, tmp_path):
    """apt's own configuration (APT_CONFIG) pointing at a mirror nothing serves, with lists
    of its own: `apt-get update` fetches nothing and `apt-get download` finds no arm64
    package. Nothing of the sysroot is left in the cache."""
    apt = tmp_path / "apt"
    for d in ("lists/partial", "parts", "archives/partial"):
        (apt / d).mkdir(parents=True)
    (apt / "sources.list").write_text("deb http://127.0.0.1:9/debian bookworm main\n")
    (apt / "apt.conf").write_text("".join(f'{k} "{v}";\n' for k, v in {
        "Dir::Etc::sourcelist": apt / "sources.list", "Dir::Etc::sourceparts": apt / "parts",
        "Dir::State::lists": apt / "lists", "Dir::Cache::archives": apt / "archives",
        "Dir::Cache::pkgcache": "", "Dir::Cache::srcpkgcache": ""}.items()))
    cache = tmp_path / "cache"
    proc = run_cli("device", "emulate", "rpi4", "--json", check=False,  # no progress lines
                   env={"APT_CONFIG": str(apt / "apt.conf"),
                        "EDGEEXPORT_EMULATED_DIR": str(cache)})
    assert_one_line_error(proc, "arm64 packages unreachable", "python3.11-minimal")
    assert [p.name for p in cache.iterdir()] == [".lock"]


def test_an_unprepared_board_is_refused(tmp_path, exports):
    proc = run_cli("profile", exports["v2"], "--device", "emulated:rpi5", check=False,
                   env={"EDGEEXPORT_EMULATED_DIR": str(tmp_path / "empty")})
    assert_one_line_error(proc, "device emulate rpi5")
    proc = run_cli("profile", exports["v2"], "--device", "emulated:rpi9", check=False)
    assert_one_line_error(proc, "rpi9")
