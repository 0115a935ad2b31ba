"""The terminal as a user meets it: every --help describes every option and ends with an
example; old spellings still work, with a notice; unknown names and mis-shaped weights get a
hint; third-party log lines stay off the terminal unless --verbose; a check is marked where it
is printed; `profile` keeps its measurement and reports board energy only from that board."""
import json
import re
import subprocess
import sys

import click
import pytest

from tests.conftest import EDGEEXPORT, ROOT, assert_one_line_error, run_cli, run_json

# The third-party lines an export, a profile or a build used to print (issue 25).
THIRD_PARTY = [re.compile(p) for p in (
    r"absl::InitializeLog", r"oneDNN custom operations", r"XNNPACK delegate",
    r"^[IWEF]\d{4} ", r"onnxruntime.*\[W:onnxruntime", r"TF_ENABLE_ONEDNN_OPTS",
    r"^WARNING: All log messages",
)]


def third_party_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(p.search(line) for p in THIRD_PARTY)]


def test_every_help_describes_every_option_and_ends_with_an_example():
    from edgeexport.cli import main
    from edgeexport.cli.group import commands
    walked = 0
    for path, command in [((), main), *commands(main)]:
        if command.hidden:
            continue
        walked += 1
        name = " ".join(("edgeexport", *path))
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, f"{name} {param.opts[0]}: no help text"
        with click.Context(command, info_name=name) as ctx:
            text = command.get_help(ctx)
        tail = text.rstrip().splitlines()[-2:]
        assert tail[0].strip().startswith("Example"), f"{name} --help ends with {tail}"
        assert tail[1].strip().startswith("edgeexport "), f"{name}: {tail}"
    assert walked >= 14  # the group, 10 commands, device and its 3 subcommands


def test_bare_edgeexport_prints_help_and_exits_0():
    proc = run_cli()
    assert proc.returncode == 0 and proc.stdout.startswith("Usage: edgeexport")
    assert "Example:" in proc.stdout and proc.stderr == ""


def test_old_spellings_still_work_with_a_notice(tmp_path):
    new = run_cli("summary", "mobilenet_v2", "--alpha", 0.5, "--resolution", 128, "--json")
    old = run_cli("summary", "mobilenet_v2", "-a", 0.5, "-r", 128, "--json")
    assert json.loads(old.stdout) == json.loads(new.stdout) and new.stderr == ""
    assert old.stderr.splitlines() == [
        "edgeexport: -a is now --alpha; the old spelling will be removed in 0.2",
        "edgeexport: -r is now --resolution; the old spelling will be removed in 0.2"]
    grid = ["--alpha", "0.25", "--resolution", "64", "--out", tmp_path, "--dry-run", "--json"]
    new = run_cli("build", "--family", "mobilenet_v1", *grid)
    old = run_cli("build", "--models", "mobilenet_v1", *grid)
    assert json.loads(old.stdout) == json.loads(new.stdout) and new.stderr == ""
    assert json.loads(new.stdout)["would_build"] == {"mobilenet_v1_0.25_64": "not built yet"}
    assert old.stderr.strip() == ("edgeexport: --models is now --family; the old spelling will "
                                  "be removed in 0.2")
    # The hidden spellings are not in --help; the new ones are.
    text = run_cli("build", "--help").stdout
    assert "--family" in text and "--models" not in text
    text = run_cli("summary", "--help").stdout
    assert "--alpha" in text and not re.search(r"(^|\s)-a[, ]", text)
    assert "--formats" in run_cli("pull", "--help").stdout
    assert "--format " not in run_cli("pull", "--help").stdout
    # A bad value under the old spelling: the notice, then the one-line error.
    proc = run_cli("summary", "mobilenet_v2", "-a", 0, check=False)
    assert proc.returncode == 2 and proc.stderr.splitlines()[1].startswith("edgeexport: error:")


def test_fit_latency_out_file_and_its_old_spelling(tmp_path):
    data = ROOT / "edgeexport" / "data" / "rpi4_mlperf_v2.0_krai_calibration.csv"
    new, old = tmp_path / "new.toml", tmp_path / "old.toml"
    fit = ["fit-latency", "--target", "rpi4", "--data", data, "--threads", 4, "--json"]
    run_cli(*fit, "--out-file", new)
    proc = run_cli(*fit, "--out", old)
    assert new.read_text() == old.read_text()
    assert "--out is now --out-file" in proc.stderr


@pytest.mark.parametrize("args, hint", [
    (["summary", "mobilenetv2"], "did you mean 'mobilenet_v2'?"),
    (["summary", "mobilnet_v3_small"], "did you mean 'mobilenet_v3_small'?"),
    (["estimate", "mobilenet_v2", "--target", "rpi44"], "did you mean 'rpi4'?"),
    (["build", "--family", "MobileNet_V1", "--dry-run"], "did you mean 'mobilenet_v1'?"),
])
def test_unknown_names_get_did_you_mean(args, hint):
    assert_one_line_error(run_cli(*args, check=False), hint)


def test_far_off_names_get_no_guess():
    proc = run_cli("summary", "resnet50", check=False)
    assert_one_line_error(proc, "unknown model family 'resnet50'")
    assert "did you mean" not in proc.stderr


def test_weights_of_another_class_count_suggest_num_classes(tmp_path):
    import torch

    from edgeexport.models import create_model
    weights = tmp_path / "ten.pt"
    torch.save(create_model("mobilenet_v2", 0.35, 10).state_dict(), weights)
    proc = run_cli("export", "mobilenet_v2", "--alpha", 0.35, "--resolution", 64, "--formats",
                   "onnx", "--weights", weights, "--out", tmp_path / "out", check=False)
    assert_one_line_error(proc, "classifier.1.weight (10, 1280)≠(1000, 1280)",
                          "these weights have 10 classes: --num-classes 10")


@pytest.mark.parametrize("alpha, classes, hint", [
    (0.5, 1000, "these look like α 0.5 (--alpha 0.5)"),
    (0.75, 10, "these look like α 0.75 (--alpha 0.75 --num-classes 10)"),
    (1.0, 1000, None),  # the model's own shapes: nothing to hint
])
def test_weights_of_another_alpha_say_which(alpha, classes, hint):
    from edgeexport.inputs.weights import shape_hint
    from edgeexport.models import create_model
    state = create_model("mobilenet_v1", alpha, classes).state_dict()
    expected = create_model("mobilenet_v1", 1.0, 1000).state_dict()
    assert shape_hint(state, expected, "mobilenet_v1") == hint


# ---- one random export, its profile, and a build: the terminal they print ----

@pytest.fixture(scope="module")
def random_export(tmp_path_factory):
    """mobilenet_v2 α 0.35 at 96 px, random weights, ONNX and TFLite: stdout and stderr in
    the order they were printed."""
    out = tmp_path_factory.mktemp("export") / "mnv2"
    proc = subprocess.run([*EDGEEXPORT, "export", "mobilenet_v2", "--alpha", "0.35",
                           "--resolution", "96", "--formats", "onnx,tflite", "--out", str(out)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.returncode == 0, proc.stdout
    return out, proc.stdout


def test_export_prints_no_third_party_lines(random_export):
    _, printed = random_export
    assert third_party_lines(printed) == []
    lines = printed.splitlines()
    # The warnings that explain the result come before it.
    title = next(i for i, line in enumerate(lines) if line.startswith("mobilenet_v2_0.35_96 →"))
    warned = [i for i, line in enumerate(lines) if line.startswith("warning: no --weights")]
    assert warned and warned[0] < title


def test_validation_rows_are_marked(random_export):
    _, printed = random_export
    rows = {line.split()[0]: line for line in printed.splitlines()
            if re.match(r"^(onnx|tflite)_\w+_vs_\w+ ", line)}
    assert set(rows) == {"onnx_fp32_vs_pytorch", "onnx_int8_vs_onnx_fp32",
                         "tflite_fp32_vs_pytorch", "tflite_int8_vs_pytorch",
                         "tflite_app_vs_pytorch"}
    for name, line in rows.items():
        if "fp32_vs" in name:
            assert line.rstrip().endswith(" ok"), line
        else:  # a random network's int8 cosines miss 0.98: reported, marked, not enforced
            cosine = float(line.split()[1])
            assert cosine < 0.98 and line.rstrip().endswith("not enforced (random weights)")
    assert "(not enforced: random weights, no --weights)" in printed


def _litert_baseline_stderr(model) -> str:
    """What LiteRT itself prints on fd 2 loading a model, with no edgeexport in between."""
    code = ("import sys; from ai_edge_litert.interpreter import Interpreter; "
            "i = Interpreter(model_path=sys.argv[1]); i.allocate_tensors(); i.invoke()")
    return subprocess.run([sys.executable, "-c", code, str(model)], capture_output=True,
                          text=True).stderr


def test_verbose_lets_the_libraries_speak(random_export):
    out, _ = random_export
    args = ["profile", out, "--runtime", "litert", "--runs", 2, "--warmup", 0, "--out",
            out.parent / "verbose-profile"]
    quiet = run_cli(*args)
    assert third_party_lines(quiet.stdout + quiet.stderr) == []
    loud = run_cli(*args, "--verbose")
    expected = third_party_lines(_litert_baseline_stderr(out / "model.int8.tflite"))
    # Whatever LiteRT prints on its own, --verbose shows (nothing asserted if it is silent).
    for line in expected:
        if "XNNPACK" in line:
            assert line in loud.stderr


def test_profile_saves_profile_json_for_quant_report(random_export):
    out, _ = random_export
    from edgeexport.contracts.artifacts import Profile, read_record
    assert not (out / "profile.json").exists()
    assert run_json("quant-report", out)["int8_error_map"]["latency_source"] is None
    proc = run_cli("profile", out, "--runs", 3, "--warmup", 1)
    assert f"saved: {out / 'profile.json'} (onnxruntime int8)" in proc.stdout
    run_cli("profile", out, "--runtime", "litert", "--runs", 3, "--warmup", 1, "--json")
    saved = read_record(out, Profile)
    assert set(saved.measurements) == {"onnxruntime_int8", "litert_int8"}
    assert saved.measurements["onnxruntime_int8"].layers
    report = run_json("quant-report", out)
    latencies = [x["latency_ms"] for x in report["int8_error_map"]["layers"]]
    assert sum(v is not None for v in latencies) > 0
    assert "profile.json" in report["int8_error_map"]["latency_source"]
    # A bare model file keeps nothing beside it unless --out says where.
    elsewhere = out.parent / "bare-profile"
    run_cli("profile", out / "model.fp32.onnx", "--runs", 3, "--out", elsewhere)
    assert set(read_record(elsewhere, Profile).measurements) == {"onnxruntime_fp32"}


def test_no_board_energy_from_another_machines_latency(random_export):
    out, _ = random_export
    from edgeexport.core.board_facts import runs_on_cpu
    if runs_on_cpu("Cortex-A72"):
        pytest.skip("this machine is a Cortex-A72: its latency × a Pi 4's power is honest")
    report = run_json("profile", out, "--target", "rpi4", "--runs", 3, "--out",
                      out.parent / "rpi4-profile")
    energy = report["energy"]
    assert energy["board_mj"] is None
    assert energy["board_source"].startswith("not reported: measured on ")
    assert "edgeexport estimate --target rpi4" in energy["board_source"]
    assert energy["compute_uj"] > 0  # the proxy stays: it is no board's
    # The estimate, which is the board's, still gives board energy.
    assert run_json("estimate", "mobilenet_v2", "--alpha", 0.35, "--resolution", 96,
                    "--target", "rpi4")["energy"]["board_mj"] > 0


def test_build_prints_no_third_party_lines(tmp_path):
    """`make build` runs `edgeexport build`: its export workers inherit the silencing."""
    proc = subprocess.run([*EDGEEXPORT, "build", "--target", "rpi4", "--family", "mobilenet_v1",
                           "--alpha", "0.25", "--resolution", "64", "--out", str(tmp_path),
                           "--jobs", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    assert proc.returncode == 0, proc.stdout
    assert third_party_lines(proc.stdout) == [], proc.stdout
    assert "1 built, 0 unchanged, 0 failed" in proc.stdout
