"""How LiteRT's XNNPACK delegate splits a .tflite: partitions and the ops it leaves to TFLite.

Read from LiteRT's own op listing (``Interpreter._get_ops_details()`` after the default
XNNPACK delegate is applied): every ``DELEGATE`` node is one XNNPACK partition; it lists the
partition's boundary tensors, so the original ops it swallowed are those found walking back
from its outputs to its inputs. Whatever op no partition swallowed runs on TFLite's kernels,
and every such op costs a hand-off between XNNPACK and TFLite. No torch import: usable on
the device install.
"""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

from edgeexport.contracts.tflite import NotDelegated, XnnpackDelegation
from edgeexport.core.runtimes import litert_interpreter

# Why the delegate refuses an op, from its source (tflite/delegates/xnnpack/xnnpack_delegate.cc).
KNOWN_REASONS = {
    "HARD_SWISH": "the XNNPACK delegate takes HARD_SWISH in float only (VisitUnaryNode: "
                  "CheckTensorFloatType); edgeexport rewrites int8 ones unless their scales "
                  "fall outside the delegate's MUL/ADD limits",
}


def xnnpack_delegation(path: Path) -> XnnpackDelegation:
    listing = litert_interpreter(path)._get_ops_details()
    delegates = [op for op in listing if op["op_name"] == "DELEGATE"]
    originals = [op for op in listing if op["op_name"] != "DELEGATE"]
    producer = {int(t): op["index"] for op in originals for t in op["outputs"]}
    by_index = {op["index"]: op for op in originals}
    swallowed: set[int] = set()
    for delegate in delegates:
        boundary = {int(t) for t in delegate["inputs"]}
        pending = [int(t) for t in delegate["outputs"]]
        while pending:
            tensor = pending.pop()
            index = producer.get(tensor)
            if tensor in boundary or index is None or index in swallowed:
                continue
            swallowed.add(index)
            pending.extend(int(t) for t in by_index[index]["inputs"] if t >= 0)
    left = [NotDelegated(op["index"], op["op_name"],
                         KNOWN_REASONS.get(op["op_name"], "refused by this LiteRT's XNNPACK "
                                                         "delegate"))
            for op in originals if op["index"] not in swallowed]
    return XnnpackDelegation(f"ai-edge-litert {metadata.version('ai-edge-litert')}",
                             len(originals), len(delegates), left)
