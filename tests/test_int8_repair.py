"""int8 error map and automatic repair, on networks trained here: the V3 whose plain int8
collapses exports with a repaired int8 model (checked with independent runners), trained
V1/V2 need no repair, and the map's sensitivity ranking agrees with PyTorch."""
import json

import numpy as np
import pytest
import torch

from tests.conftest import run_cli
from tests.trained import ALPHA, RES, cosine, inputs_for, litert_outputs, ort_outputs

# Layers the repair keeps at 16-bit activations for the collapsing V3 (its first
# successful attempt; the attempts keep 1, 2, 4, 8, 16 layers).
EXPECTED_KEPT = 1


@pytest.fixture(scope="session")
def repaired_v3(dataset, collapsing_v3, tmp_path_factory):
    model, weights = collapsing_v3
    out = tmp_path_factory.mktemp("repaired")
    card = json.loads(run_cli(
        "export", "mobilenet_v3_large", "--alpha", ALPHA, "--resolution", RES,
        "--num-classes", 4, "--weights", weights, "--calib", dataset["train"],
        "--eval", dataset["eval"], "--target", "rpi4", "--out", out, "--json").stdout)
    return model, out, card


def test_collapsing_v3_ships_repaired_int8(repaired_v3, dataset):
    model, out, card = repaired_v3
    evalset = inputs_for("mobilenet_v3_large", dataset["eval"])
    with torch.no_grad():
        reference = model(torch.from_numpy(evalset.inputs)).numpy()
    fp32_onnx = ort_outputs(out / "model.fp32.onnx", evalset.inputs)
    for got, ref in ((ort_outputs(out / "model.int8.onnx", evalset.inputs), fp32_onnx),
                     (litert_outputs(out / "model.int8.tflite", evalset.inputs), reference)):
        assert cosine(got, ref) >= 0.98
        assert np.mean(got.argmax(1) == ref.argmax(1)) >= 0.95
    repair = card["int8_repair"]
    assert repair["enabled"] is True
    by_format = {r["format"]: r for r in repair["formats"]}
    assert set(by_format) == {"onnx", "tflite"}
    for r in by_format.values():
        assert r["cosine_before"] < 0.98 <= r["cosine_after"]
        assert r["latency_before_ms"] > 0 and r["latency_after_ms"] > 0
        assert len(r["kept"]) == r["attempts"][-1]["kept"]
    assert repair["kept_layers"] == EXPECTED_KEPT
    # The kept layers really run at 16 bits in the .tflite: LiteRT's own tensor listing.
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(out / "model.int8.tflite"))
    assert any(t["dtype"] == np.int16 for t in it.get_tensor_details())
    # ...and in the ONNX graph: 16-bit QuantizeLinear zero points.
    import onnx
    graph = onnx.load(str(out / "model.int8.onnx")).graph
    sixteen = {i.name for i in graph.initializer
               if i.data_type in (onnx.TensorProto.INT16, onnx.TensorProto.UINT16)}
    assert any(n.op_type == "QuantizeLinear" and n.input[2] in sixteen for n in graph.node)


@pytest.mark.parametrize("family", ["mobilenet_v1", "mobilenet_v2"])
def test_trained_v1_v2_need_no_repair(exported, family):
    _, out, card = exported(family)
    assert card["int8_repair"] == {"enabled": True, "kept_layers": 0,
                                   "hard_sigmoid_range_0_1": [], "formats": []}
    rows = card["int8_error_map"]["layers"]
    assert sum(r["onnx_db"] is not None for r in rows) >= 10
    assert sum(r["tflite_db"] is not None for r in rows) >= 10
    # quant-report shows the same map, as JSON and as plain text when piped.
    report = json.loads(run_cli("quant-report", out, "--json").stdout)
    assert report["int8_error_map"]["layers"] == rows
    text = run_cli("quant-report", out).stdout
    assert "repair: none needed" in text and card["int8_error_map"]["worst"][0] in text


def _pytorch_local_sqnr(model, images, measured):
    """Each layer's output fake-quantized to 8 bits over its calibration min/max (forward
    hooks, independent of onnxruntime): SQNR in dB, mean over the ``measured`` images.
    A conv's output is read after its BatchNorm (folded into the conv in ONNX)."""
    from edgeexport.analysis import analyze
    from edgeexport.records import Variant
    modules = dict(model.named_modules())
    source, last = {}, None
    for row in analyze(Variant("mobilenet_v3_large", ALPHA, RES, 4), model).layers:
        if row.op == "bn" and last is not None:
            source[last] = modules[row.name]
        else:
            source[row.name] = modules[row.name]
            last = row.name
    outputs: dict[str, list[torch.Tensor]] = {}
    hooks = [module.register_forward_hook(
        lambda m, i, o, key=key: outputs.setdefault(key, []).append(o.detach().clone()))
        for key, module in source.items()]
    with torch.no_grad():
        for x in images:
            model(torch.from_numpy(x[None]))
    for h in hooks:
        h.remove()
    sqnr = {}
    for key, outs in outputs.items():
        lo = min(0.0, min(float(o.min()) for o in outs))
        hi = max(0.0, max(float(o.max()) for o in outs))
        if hi <= lo:
            continue
        scale = (hi - lo) / 255
        zero = round(-lo / scale)
        db = []
        for o in (outs[i] for i in measured):
            q = (torch.clamp(torch.round(o / scale) + zero, 0, 255) - zero) * scale
            noise = float(torch.linalg.norm(o - q))
            db.append(20 * np.log10(max(float(torch.linalg.norm(o)), 1e-12) / max(noise, 1e-12)))
        sqnr[key] = float(np.mean(db))
    return sqnr


def test_error_map_ranks_layers_like_pytorch(repaired_v3, dataset):
    """The map's worst plain-int8 layer is PyTorch's worst (fake-quantized in forward hooks),
    and the layers the repair kept are among PyTorch's most sensitive."""
    model, _, card = repaired_v3
    emap = card["int8_error_map"]
    kept = set(card["int8_repair"]["formats"][0]["kept"])
    calib = inputs_for("mobilenet_v3_large", dataset["train"]).inputs
    measured = np.linspace(0, len(calib) - 1, emap["images"]).round().astype(int)
    torch_db = _pytorch_local_sqnr(model, calib, measured)
    ours = {r["layer"]: r["onnx_local_db"] for r in emap["layers"]
            if r["onnx_local_db"] is not None and r["layer"] in torch_db
            and r["layer"] not in kept}
    assert len(ours) >= 20
    worst_ours = min(ours, key=ours.get)
    worst_torch = min(ours, key=lambda k: torch_db[k])
    assert worst_ours == worst_torch, (worst_ours, ours[worst_ours], worst_torch,
                                       torch_db[worst_torch])
    assert ours[worst_ours] == pytest.approx(torch_db[worst_ours], abs=1.5)
    ranked = sorted(torch_db, key=torch_db.get)
    for layer in kept:
        assert layer in ranked[:2 * len(kept) + 3], (layer, ranked[:8])


# ---- the repair loop's control, with a stand-in quantizer (no network needed) ----

def _fake_run(threshold):
    """A model whose cosine reaches 0.99 once ``threshold`` layers are kept."""
    from edgeexport.validate import Comparison
    calls = []

    def quantize(plan):
        calls.append(plan.keep)
        return len(plan.keep)

    def evaluate(kept):
        c = 0.99 if kept >= threshold else 0.5
        return Comparison("ref", "cand", 10, 0.0, 1.0, c, c, 1.0)
    return quantize, evaluate, calls


def test_repair_keeps_the_smallest_prefix_that_holds():
    from edgeexport.precision_plan import PrecisionPlan
    from edgeexport.repair import quantize_validated
    order = [f"layer{i}" for i in range(30)]
    quantize, evaluate, calls = _fake_run(threshold=3)
    path, result, record = quantize_validated(
        "onnx", PrecisionPlan(), quantize, evaluate, 0.98, True, lambda: order,
        timer=lambda path: 1.0)
    # Attempts: plain, then 1, 2 and 4 layers (the first prefix ≥ 3).
    assert calls == [(), ("layer0",), ("layer0", "layer1"), tuple(order[:4])]
    assert record.kept == order[:4] and result.cosine_mean == 0.99
    assert [a["kept"] for a in record.attempts] == [1, 2, 4]
    assert (record.cosine_before, record.cosine_after) == (0.5, 0.99)


def test_repair_refuses_past_its_budget_and_not_when_disabled():
    from edgeexport.errors import ValidationError
    from edgeexport.precision_plan import PrecisionPlan
    from edgeexport.repair import quantize_validated
    order = [f"layer{i}" for i in range(30)]
    quantize, evaluate, calls = _fake_run(threshold=17)
    with pytest.raises(ValidationError, match="up to 16 sensitive layers"):
        quantize_validated("onnx", PrecisionPlan(), quantize, evaluate, 0.98, True,
                           lambda: order, timer=lambda path: 1.0)
    assert [len(k) for k in calls] == [0, 1, 2, 4, 8, 16]
    quantize, evaluate, calls = _fake_run(threshold=1)
    _, result, record = quantize_validated("onnx", PrecisionPlan(), quantize, evaluate, 0.98,
                                           False, lambda: order, timer=lambda path: 1.0)
    assert calls == [()] and record is None and result.cosine_mean == 0.5
