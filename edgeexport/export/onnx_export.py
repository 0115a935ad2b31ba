"""Stage: PyTorch module (BatchNorms folded: prepare.fold_batchnorm) → fp32 ONNX (torch.onnx
dynamo exporter, onnxsim).

Node names become ``<module path>/<OpType>``, the static analysis' layer names, so the profile
stage can map kernel times back to layers. Exporter metadata is dropped: its stack traces hold
absolute paths and would make the same model export to different bytes from two checkouts.
"""
from __future__ import annotations

import ast
import logging
import warnings
from collections import Counter
from pathlib import Path

import onnx
import torch

from edgeexport.contracts.variant import Analysis
from edgeexport.core.fileio import write_bytes

OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_onnx(model: torch.nn.Module, analysis: Analysis, path: Path) -> Path:
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    res = analysis.variant.resolution
    sample = torch.zeros(1, 3, res, res)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model.eval(), (sample,), dynamo=True, optimize=True,
                                    opset_version=OPSET, input_names=[INPUT_NAME],
                                    output_names=[OUTPUT_NAME], verbose=False)
    proto = program.model_proto
    rename_nodes(proto, analysis)
    proto = simplify(proto)
    onnx.checker.check_model(proto, full_check=True)
    write_bytes(path, proto.SerializeToString())
    return path


def simplify(proto: onnx.ModelProto) -> onnx.ModelProto:
    import onnxsim
    simplified, ok = onnxsim.simplify(proto)
    if not ok:
        raise RuntimeError("onnxsim could not validate the simplified model")
    return simplified


def rename_nodes(proto: onnx.ModelProto, analysis: Analysis) -> None:
    """Name every node after the module it came from; strip exporter metadata."""
    layers = {r.name for r in analysis.layers}
    counts: Counter[str] = Counter()
    for node in proto.graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
        module = _innermost_layer(scopes[:-1], layers) or "graph"
        base = f"{module}/{node.op_type}"
        node.name = base if counts[base] == 0 else f"{base}_{counts[base]}"
        counts[base] += 1
        del node.metadata_props[:]
        node.doc_string = ""
    _rename_values(proto)
    del proto.metadata_props[:]
    proto.doc_string = ""
    proto.producer_name = "edgeexport"


def _rename_values(proto: onnx.ModelProto) -> None:
    """Name each intermediate tensor after the node producing it, so nodes the quantizer adds
    (``<tensor>_QuantizeLinear``) still start with their layer's name."""
    keep = {v.name for v in proto.graph.output} | {v.name for v in proto.graph.input}
    renamed = {}
    for node in proto.graph.node:
        for i, out in enumerate(node.output):
            if out and out not in keep:
                renamed[out] = f"{node.name}:{i}"
                node.output[i] = renamed[out]
    for node in proto.graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = renamed.get(name, name)
    for info in proto.graph.value_info:
        info.name = renamed.get(info.name, info.name)


def _innermost_layer(scopes: list[str], layers: set[str]) -> str | None:
    for scope in reversed(scopes):
        if scope in layers:
            return scope
    deepest = [s for s in scopes if s]
    return deepest[-1] if deepest else None

