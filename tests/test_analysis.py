"""Per-layer analysis against hand calculations."""
import json
import os
import subprocess
import sys

import pytest

from edgeexport.analysis.count import analyze
from edgeexport.contracts.variant import Variant
from tests.conftest import assert_one_line_error, run_cli, run_json


def test_v1_first_blocks_by_hand():
    a = analyze(Variant("mobilenet_v1", 1.0, 224))
    rows = {r.name: r for r in a.layers}
    stem = rows["features.0.0"]
    # 3×3×3×32 weights, 112×112 outputs.
    assert stem.op == "conv" and stem.params == 864 and stem.macs == 864 * 112 * 112
    dw = rows["features.1.dw.0"]
    assert dw.op == "depthwise" and dw.params == 9 * 32 and dw.macs == 9 * 32 * 112 * 112
    pw = rows["features.1.pw.0"]
    assert pw.op == "pointwise" and pw.macs == 32 * 64 * 112 * 112
    assert pw.weight_bytes_fp32 == 4 * 32 * 64 and pw.weight_bytes_int8 == 32 * 64
    assert pw.activation_bytes_int8 == 32 * 112 * 112 + 64 * 112 * 112
    fc = rows["classifier.1"]
    assert fc.op == "linear" and fc.params == 1024 * 1000 + 1000 and fc.macs == 1024 * 1000
    assert fc.weight_bytes_int8 == 1024 * 1000 + 4 * 1000  # int8 weights, int32 bias


def test_separable_ratio_is_paper_formula():
    a = analyze(Variant("mobilenet_v1", 1.0, 224))
    assert len(a.separable) == 13
    first = a.separable[0]
    # D_K² M D_F² + M N D_F²  vs  D_K² M N D_F² (Howard et al. eq. 4-5), by hand.
    assert first.separable_macs == 9 * 32 * 112 * 112 + 32 * 64 * 112 * 112
    assert first.standard_macs == 9 * 32 * 64 * 112 * 112
    for b in a.separable:
        assert b.ratio == pytest.approx(1 / b.out_channels + 1 / b.kernel ** 2)


def test_v2_and_v3_layers_have_residual_adds_and_se():
    v2 = analyze(Variant("mobilenet_v2", 1.0, 224))
    assert sum(r.op == "add" for r in v2.layers) == 10  # torchvision's use_res_connect blocks
    v3 = analyze(Variant("mobilenet_v3_large", 1.0, 224))
    assert sum(r.op == "mul" for r in v3.layers) == 8   # SE in 8 of 15 bnecks (paper Table 1)
    assert any(r.op == "depthwise" and r.input_shape[1] == 672 for r in v3.layers)


@pytest.mark.parametrize("family,alpha,res,published_m", [
    ("mobilenet_v1", 0.5, 160, 77), ("mobilenet_v2", 0.75, 160, 107),
    ("mobilenet_v2", 1.0, 224, 300), ("mobilenet_v3_large", 1.0, 224, 217),
    ("mobilenet_v3_small", 1.0, 224, 56),
])
def test_summary_json(family, alpha, res, published_m):
    data = run_json("summary", family, "--alpha", alpha, "--resolution", res)
    assert abs(data["total_macs"] / 1e6 - published_m) <= 0.03 * published_m
    assert data["total_params"] == sum(layer["params"] for layer in data["layers"])
    for layer in data["layers"]:
        assert {"name", "op", "params", "macs", "output_shape"} <= set(layer)


def test_a_cached_analysis_is_the_fresh_one_and_needs_no_torch(tmp_path):
    """`summary`, `estimate`, `fit-latency` and the report read analyses through a cache: what it
    gives back is what a fresh analysis gives, without importing torch, and a damaged entry
    is made again."""
    env = {"EDGEEXPORT_CACHE_DIR": str(tmp_path)}
    args = ("summary", "mobilenet_v3_small", "--alpha", 0.75, "--resolution", 96)
    fresh = analyze(Variant("mobilenet_v3_small", 0.75, 96)).to_json()
    assert run_json(*args, env=env) == fresh  # cold: made, then kept
    (entry,) = tmp_path.rglob("*.json")
    assert json.loads(entry.read_text()) == fresh
    assert run_json(*args, env=env) == fresh  # warm
    probe = ("import sys; from edgeexport.analysis.cache import cached_analysis; "
             "from edgeexport.contracts.variant import Variant; "
             "cached_analysis(Variant('mobilenet_v3_small', 0.75, 96)); "
             "print('torch' in sys.modules)")
    warm = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, env={**os.environ, **env})
    assert warm.stdout.strip() == "False"
    entry.write_text('{"schema_version": 1, "layers": [')
    assert run_json(*args, env=env) == fresh
    assert json.loads(entry.read_text()) == fresh


def test_models_lists_families_and_grids():
    data = run_json("models")
    names = {f["family"]: f for f in data["families"]}
    assert set(names) == {"mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large",
                          "mobilenet_v3_small"}
    assert names["mobilenet_v2"]["alphas"] == [1.0, 0.75, 0.5, 0.35]


@pytest.mark.parametrize("args,needle", [
    (["summary", "resnet50"], "unknown model family"),
    (["summary", "mobilenet_v2", "--alpha", "0"], "alpha"),
    (["summary", "mobilenet_v2", "--alpha", "-1"], "alpha"),
    (["summary", "mobilenet_v2", "--alpha", "abc"], "alpha"),
    (["summary", "mobilenet_v2", "--alpha", "inf"], "alpha"),
    (["summary", "mobilenet_v2", "--resolution", "16"], "resolution"),
    (["summary", "mobilenet_v2", "--resolution", "96.5"], "resolution"),
    (["estimate", "mobilenet_v2", "--target", "nosuchboard"], "target"),
])
def test_bad_input_is_one_line_exit_2(args, needle):
    proc = run_cli(*args, check=False)
    assert proc.returncode == 2
    assert_one_line_error(proc, needle)
