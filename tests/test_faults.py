"""Loose ends found under faults: a killed build's workers, a full disk, two exports into one
directory, a variant too big for the machine. None of these needs a trained network."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.board import _descendants
from tests.conftest import EDGEEXPORT, assert_one_line_error, run_cli


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper that never comes counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _workers(pid: int) -> list[int]:
    """The build's spawned export workers (multiprocessing's spawn_main)."""
    found = []
    for child in _descendants(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            found.append(child)
    return found


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_no_worker_survives_its_killed_build(tmp_path, sig):
    proc = subprocess.Popen([*EDGEEXPORT, "build", "--family", "mobilenet_v2", "--alpha",
                             "0.35", "--resolution", "96,112", "--target", "local", "-j", "2",
                             "--out", str(tmp_path / "dist"), "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(_workers(proc.pid)) < 2 and time.monotonic() < deadline:
            assert proc.poll() is None, "the build ended before its workers started"
            time.sleep(0.2)
        workers = _workers(proc.pid)
        assert len(workers) == 2
        everyone = _descendants(proc.pid)
        time.sleep(3)  # the workers are importing torch, exporting
        proc.send_signal(sig)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 20
        while any(map(_alive, everyone)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [p for p in everyone if _alive(p)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in [p for p in locals().get("everyone", []) if _alive(p)]:
            os.kill(pid, signal.SIGKILL)  # a failed test leaves no orphan behind


def _tiny_onnx(path: Path) -> Path:
    """A one-convolution ONNX model: enough to be measured, no export needed."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["logits"], name="conv", pads=[1, 1, 1, 1])],
        "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4, 16, 16])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_relative_ssh_config_in_a_target_file_is_ours(board, tmp_path):
    """`ssh_config = "ssh_config"` in a target's [device] table: read beside the target file,
    here; the board, reading the copy of the target file, does not look for it."""
    model = _tiny_onnx(tmp_path / "tiny.onnx")
    mine = tmp_path / "targets"
    mine.mkdir()
    (mine / "ssh_config").write_text(board.ssh_config.read_text())
    source = (Path(__file__).resolve().parents[1] / "targets" / "rpi4.toml").read_text()
    (mine / "mypi.toml").write_text(source.replace('name = "rpi4"', 'name = "mypi"') +
                                    '\n[device]\nhost = "board"\nssh_config = "ssh_config"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    import json
    report = json.loads(run_cli("profile", model, "--target", Path("..") / "targets" /
                                "mypi.toml", "--runtime", "onnxruntime", "--precision", "fp32",
                                "--runs", 3, "--json", cwd=elsewhere).stdout)
    assert report["where"]["device"] == "board"
    assert report["where"]["target_profile"] == "mypi"
    assert report["board"]["user"] == board.account
    # A relative ssh_config that is not beside the target file is named, on our side.
    (mine / "ssh_config").unlink()
    assert_one_line_error(run_cli("profile", model, "--target", mine / "mypi.toml",
                                  check=False), "ssh config", str(mine / "ssh_config"))


def test_alpha_100_is_refused_in_one_line_before_any_work(tmp_path):
    out = tmp_path / "out"
    started = time.monotonic()
    proc = run_cli("export", "mobilenet_v2", "--alpha", 100, "--out", out, check=False)
    assert_one_line_error(proc, "mobilenet_v2_100_224", "memory", "smaller --alpha")
    assert proc.returncode == 2 and not out.exists()
    assert time.monotonic() - started < 60  # counted on the meta device, not allocated
    proc = run_cli("build", "--family", "mobilenet_v1", "--alpha", "0.25,100", "--target",
                   "local", "--out", out, check=False)
    assert_one_line_error(proc, "mobilenet_v1_100_224", "memory")
    assert not out.exists()  # the small variant was not built either: refused before any work


def test_the_memory_need_is_a_lower_bound_that_passes_the_usual_variants():
    from edgeexport.analysis.memory import export_memory_need, require_memory
    from edgeexport.contracts.variant import Variant
    usual = Variant("mobilenet_v2", 1.4, 224, 1000)
    need, weights = export_memory_need(usual)
    assert weights == 4 * 6_108_776  # torchvision's MobileNetV2 α 1.4 parameters
    assert need < 2**30
    require_memory([usual], available=2 * 2**30)
    with pytest.raises(Exception, match="this machine has"):
        require_memory([usual], available=need - 1)


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs (root only: skipped where mounting is not allowed)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_names_the_device_and_the_file(small_disk):
    out = small_disk / "out"
    proc = run_cli("export", "mobilenet_v2", "--alpha", 0.35, "--resolution", 96, "--out", out,
                   check=False)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert "internal error" not in proc.stderr and "Errno" not in last
    assert f"no space left on tmpfs (mounted on {small_disk}) writing {out}/" in last, last
    assert list(out.iterdir()) == []  # the staging directory went with the failure


def test_a_full_disk_met_by_a_library_is_told_the_same_way(tmp_path, monkeypatch):
    import errno

    from edgeexport.core.fileio import DiskFull, reporting_full_disk, write_bytes
    with pytest.raises(DiskFull, match=f"no space left on .* writing {tmp_path}/x.onnx"):
        with reporting_full_disk(tmp_path):
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.onnx"))
    with pytest.raises(DiskFull, match=f"writing {tmp_path}$|writing {tmp_path};"):
        with reporting_full_disk(tmp_path):
            raise RuntimeError("onnx: write failed: No space left on device")
    with pytest.raises(OSError, match="Permission"):  # other errors pass unchanged
        with reporting_full_disk(tmp_path):
            raise PermissionError("Permission denied")

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(DiskFull, match=f"writing {tmp_path / 'card.json'}"):
        write_bytes(tmp_path / "card.json", b"{}")
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temp file left behind


def test_two_exports_into_one_out_do_not_interleave(tmp_path):
    """While an export writes into --out (here: a process holding the export's lock, as a
    running export does), a second one is refused at once; the lock leaves no file behind
    and goes with its process."""
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from edgeexport.core.fileio import exclusive\n"
         "with exclusive(Path(sys.argv[1]), 'export'):\n"
         "    print('held', flush=True); time.sleep(600)", str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        args = ["export", "mobilenet_v2", "--alpha", 0.35, "--resolution", 64, "--num-classes",
                4, "--formats", "onnx", "--out", out]
        second = run_cli(*args, check=False)
        assert_one_line_error(second, f"{out} is being written by another edgeexport export")
        assert second.returncode == 2 and list(out.iterdir()) == []
    finally:
        holder.kill()
        holder.wait()
    run_cli(*args)  # the lock went with its holder
    assert sorted(p.name for p in out.iterdir()) == ["analysis.json", "card.json",
                                                     "model.fp32.onnx", "model.int8.onnx"]
