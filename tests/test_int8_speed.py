"""int8 files that run on the runtimes' fast paths: one XNNPACK partition per .tflite (read from
LiteRT's own op listing), and an int8 ONNX that onnxruntime runs entirely as QLinear kernels
(counted against a count of the PyTorch network's own modules, taken with forward hooks).
Speed itself is measured in bench/int8_speed.py, not here."""
from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from tests.conftest import TFLITE_IO
from tests.trained import FAMILIES, cosine, inputs_for, is_mixed


def litert_listing(path: Path):
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    return interpreter._get_ops_details()


def module_census(model: nn.Module, x: torch.Tensor) -> Counter:
    """What the network computes, from PyTorch: modules by kind, hard-swish calls by rank."""
    census = Counter()
    hooks = [m.register_forward_hook(
        lambda mod, inp, out: census.update([f"Hardswish/{inp[0].dim()}d"]))
        for m in model.modules() if isinstance(m, nn.Hardswish)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    census.update(type(m).__name__ for m in model.modules())
    return census


@pytest.mark.parametrize("family", FAMILIES)
def test_int8_tflite_is_one_xnnpack_partition(family, exported):
    """Full int8: one XNNPACK partition. A mixed-precision file (16-bit islands, which
    XNNPACK does not run): the card states its real partition count."""
    _, out, card = exported(family)
    ops = litert_listing(out / "model.int8.tflite")
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    xnnpack = card["tflite"]["xnnpack"]
    if is_mixed(card, "tflite"):
        assert xnnpack["partitions"] == len(delegates) > 1
        assert xnnpack["ops"] == sum(op["op_name"] != "DELEGATE" for op in ops)
        return
    assert len(delegates) == 1
    assert not any(op["op_name"] == "HARD_SWISH" for op in ops)
    # Run outside the delegate: the ops feeding it or fed by it. None with int8 I/O; with
    # uint8 I/O (V1's plain export) the two QUANTIZE ops converting uint8↔int8, which
    # XNNPACK does not take.
    fed, produced = set(delegates[0]["inputs"]), set(delegates[0]["outputs"])
    outside = [op["op_name"] for op in ops if op["op_name"] != "DELEGATE" and (
        set(op["outputs"]) & fed or set(op["inputs"]) & produced)]
    assert outside == (["QUANTIZE", "QUANTIZE"] if TFLITE_IO.get(family) == "uint8" else [])
    assert xnnpack["partitions"] == 1
    assert [n["op"] for n in xnnpack["not_delegated"]] == outside
    assert xnnpack["ops"] == sum(op["op_name"] != "DELEGATE" for op in ops)


def test_hard_swish_rewrite_delegates_and_keeps_outputs(exported, dataset):
    """Quantize the exported fp32 V3 .tflite with ai-edge-quantizer alone (no rewrite): its
    HARD_SWISH ops, as many as PyTorch's Hardswish calls, are exactly what the card's reader
    finds outside XNNPACK. The rewrite makes it one partition with the same outputs."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import calibrator, quantizer, recipe, recipe_manager

    from edgeexport.core.runtimes import run_litert
    from edgeexport.tflite.hardswish import delegable_hard_swish
    from edgeexport.tflite.xnnpack import xnnpack_delegation
    model, out, _ = exported("mobilenet_v3_small")
    evalset = inputs_for("mobilenet_v3_small", dataset["eval"])
    census = module_census(model, torch.from_numpy(evalset.inputs[:1]))
    hard_swish_calls = sum(n for k, n in census.items() if k.startswith("Hardswish/"))
    fp32 = str(out / "model.fp32.tflite")
    q = quantizer.Quantizer(fp32, recipe.static_wi8_ai8())
    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(recipe.static_wi8_ai8())
    cal = calibrator.Calibrator(fp32)
    signature, spec = next(iter(Interpreter(model_path=fp32).get_signature_list().items()))
    name = spec["inputs"][0]
    cal.calibrate({signature: [{name: x.transpose(1, 2, 0)[None]}
                               for x in inputs_for("mobilenet_v3_small",
                                                   dataset["train"]).inputs[:32]]}, manager)
    plain = bytes(q.quantize(cal.get_model_qsvs(), enable_progress_report=False).quantized_model)
    with tempfile.TemporaryDirectory() as tmp:
        before, after = Path(tmp) / "plain.tflite", Path(tmp) / "rewritten.tflite"
        before.write_bytes(plain)
        rewritten, count = delegable_hard_swish(plain)
        after.write_bytes(rewritten)
        listing = litert_listing(before)
        hard_swish = [op["index"] for op in listing if op["op_name"] == "HARD_SWISH"]
        assert len(hard_swish) == hard_swish_calls == count
        report = xnnpack_delegation(before)
        assert sorted(n.index for n in report.not_delegated) == hard_swish
        assert report.partitions == sum(op["op_name"] == "DELEGATE" for op in listing) > 1
        assert sum(op["op_name"] == "DELEGATE" for op in litert_listing(after)) == 1
        assert xnnpack_delegation(after).not_delegated == []
        with torch.no_grad():
            reference = model(torch.from_numpy(evalset.inputs)).numpy()
        plain_out = run_litert(before, evalset.inputs)
        new_out = run_litert(after, evalset.inputs)
    assert cosine(new_out, plain_out) >= 0.99
    assert cosine(new_out, reference) >= cosine(plain_out, reference) - 0.005


@pytest.mark.parametrize("family", FAMILIES)
def test_onnx_int8_runs_quantized_after_optimisation(family, exported, dataset):
    """Every conv, gate, pool, residual add and linear layer of the PyTorch network runs as a
    QLinear kernel after onnxruntime's optimisation here (read from onnxruntime's optimised
    graph), and the card reports the same counts."""
    import onnxruntime as ort
    model, out, card = exported(family)
    census = module_census(model, torch.from_numpy(
        inputs_for(family, dataset["eval"]).inputs[:1]))
    # Every hard-swish ends in a Mul x·gate; on 4-D tensors its gate is a depthwise Conv.
    gates_4d, hard_swish = census["Hardswish/4d"], census["Hardswish/4d"] + census["Hardswish/2d"]
    expected_quantized = {"QLinearConv": census["Conv2d"] + gates_4d,
                          "QLinearMul": census["Hardsigmoid"] + hard_swish,
                          "QLinearAdd": census["ResidualAdd"], "QGemm": census["Linear"],
                          "QLinearGlobalAveragePool": census["AdaptiveAvgPool2d"]}
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        so.intra_op_num_threads = 1
        ort.InferenceSession(str(out / "model.int8.onnx"), so,
                             providers=["CPUExecutionProvider"])
        ops = Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)
    counts = card["onnx_int8"]["quantized_ops_here"]
    if is_mixed(card, "onnx"):  # 16-bit islands run in float: the card says how many
        assert counts["Conv"] == {"quantized": ops["QLinearConv"],
                                  "float": ops["Conv"] + ops["FusedConv"]}
        assert ops["QLinearConv"] < expected_quantized["QLinearConv"]
        return
    assert {k: ops[k] for k in expected_quantized} == expected_quantized, (ops, census)
    floats = {k: ops[k] for k in ("Conv", "FusedConv", "Mul", "Add", "Gemm", "ReduceMean",
                                  "GlobalAveragePool") if ops[k]}
    assert floats == {}
    # The hard-swish on V3's 1-D classifier features stays in float: one HardSigmoid each.
    assert ops["HardSigmoid"] == census["Hardswish/2d"]
    assert counts["Conv"] == {"quantized": expected_quantized["QLinearConv"], "float": 0}
    assert counts["GlobalAveragePool"]["quantized"] == census["AdaptiveAvgPool2d"]
    if census["Hardsigmoid"]:
        assert counts["Mul"] == {"quantized": expected_quantized["QLinearMul"], "float": 0}
