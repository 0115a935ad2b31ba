"""The oldest TFLite runtime that can run a .tflite file, derived from its operators' versions.

Two tables from TensorFlow's sources (tensorflow/lite/tools/versioning/), copied for the
operators MobileNets use:
- OP_VERSION_FOR_INPUT: the version `GetBuiltinOperatorVersion` (op_version.cc, commit
  02087409073e69754277a2d2cf20af23a44334de) gives an operator by its first input's type. It is
  needed because ai-edge-quantizer leaves the fp32 versions in the file (CONV_2D v1 for an int8
  convolution, which a 1.5 runtime could not run); the required version is the larger of the
  declared one and this one.
- RUNTIME_FOR_OP_VERSION: `FindMinimumRuntimeVersionForOp` (runtime_version.cc, commit
  00b1ec2ad4b0ecd5275167371cc5d5570fba8e4c). That table stopped growing at TF 2.11; an
  (operator, version) pair missing from it makes the answer "unknown", never a guess.
"""
from __future__ import annotations

from pathlib import Path

from edgeexport.contracts.tflite import RuntimeRequirement

# op_version.cc: version by the first input's tensor type (types not listed: version 1).
OP_VERSION_FOR_INPUT = {
    "CONV_2D": {"INT8": 3}, "DEPTHWISE_CONV_2D": {"INT8": 3}, "FULLY_CONNECTED": {"INT8": 4},
    "ADD": {"INT8": 2}, "SUB": {"INT8": 2}, "MUL": {"INT8": 2}, "MEAN": {"INT8": 2},
    "PAD": {"INT8": 2}, "PADV2": {"INT8": 2}, "AVERAGE_POOL_2D": {"INT8": 2},
    "MAX_POOL_2D": {"INT8": 2}, "LOGISTIC": {"INT8": 2}, "RELU": {"INT8": 2, "UINT8": 2},
    "RELU6": {"INT8": 2}, "SOFTMAX": {"INT8": 2}, "CONCATENATION": {"INT8": 2},
    "TRANSPOSE": {"INT8": 2}, "MAXIMUM": {"INT8": 2}, "MINIMUM": {"INT8": 2},
    "DEQUANTIZE": {"INT8": 2}, "STRIDED_SLICE": {"INT8": 2},
}
# MUL is version 3 when input1_scale × input2_scale / output_scale ≥ 1 (op_version.cc).
MUL_RESCALE_VERSION = 3

# runtime_version.cc rows for the operators above.
RUNTIME_FOR_OP_VERSION = {
    ("ADD", 1): "1.5.0", ("ADD", 2): "1.14.0",
    ("AVERAGE_POOL_2D", 1): "1.5.0", ("AVERAGE_POOL_2D", 2): "1.14.0",
    ("CONCATENATION", 1): "1.5.0", ("CONCATENATION", 2): "1.14.0",
    ("CONV_2D", 1): "1.5.0", ("CONV_2D", 2): "1.14.0", ("CONV_2D", 3): "1.14.0",
    ("DEPTHWISE_CONV_2D", 1): "1.5.0", ("DEPTHWISE_CONV_2D", 2): "1.12.0",
    ("DEPTHWISE_CONV_2D", 3): "1.14.0",
    ("DEQUANTIZE", 1): "1.13.1", ("DEQUANTIZE", 2): "1.14.0",
    ("FULLY_CONNECTED", 1): "1.5.0", ("FULLY_CONNECTED", 4): "1.14.0",
    ("FULLY_CONNECTED", 5): "2.0.0", ("FULLY_CONNECTED", 6): "2.1.0",
    ("HARD_SWISH", 1): "1.15.0",
    ("LOGISTIC", 1): "1.14.0", ("LOGISTIC", 2): "1.14.0",
    ("MAX_POOL_2D", 1): "1.5.0", ("MAX_POOL_2D", 2): "1.14.0",
    ("MAXIMUM", 1): "1.14.0", ("MAXIMUM", 2): "1.14.0",
    ("MINIMUM", 1): "1.14.0", ("MINIMUM", 2): "1.14.0",
    ("MEAN", 1): "1.6.0", ("MEAN", 2): "1.14.0",
    ("MUL", 1): "1.5.0", ("MUL", 2): "1.14.0", ("MUL", 3): "1.15.0",
    ("PAD", 1): "1.5.0", ("PAD", 2): "1.14.0",
    ("PADV2", 1): "1.9.0", ("PADV2", 2): "1.14.0",
    ("QUANTIZE", 1): "1.14.0",
    ("RELU", 1): "1.5.0", ("RELU", 2): "2.1.0",
    ("RELU6", 1): "1.5.0", ("RELU6", 2): "1.14.0",
    ("RESHAPE", 1): "1.5.0",
    ("SOFTMAX", 1): "1.5.0", ("SOFTMAX", 2): "1.14.0",
    ("STRIDED_SLICE", 1): "1.6.0", ("STRIDED_SLICE", 2): "1.14.0",
    ("SUB", 1): "1.6.0", ("SUB", 2): "1.14.0",
    ("TRANSPOSE", 1): "1.6.0", ("TRANSPOSE", 2): "1.14.0",
}


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def required_op_versions(path: Path) -> tuple[dict[str, int], list[str], list[str]]:
    """Operator → the version it needs (max over its uses), which declared versions were
    lower than their input types require, and the operators that read or write int16
    activations (a mixed-precision file: their 16x8 versions are not in the copied tables,
    and tflite-runtime 2.14 refuses the int8 → int16 QUANTIZE, measured)."""
    from ai_edge_litert import schema_py_generated as schema

    from edgeexport.core.runtimes import read_tflite_bytes
    model = schema.ModelT.InitFromPackedBuf(read_tflite_bytes(path), 0)
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    needed: dict[str, int] = {}
    raised, wide = set(), set()
    for graph in model.subgraphs:
        tensors = graph.tensors
        for op in graph.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            kind = op_names[max(code.builtinCode, code.deprecatedBuiltinCode)]
            first = tensors[op.inputs[0]]
            if "INT16" in {type_names[tensors[op.inputs[0]].type],
                           type_names[tensors[op.outputs[0]].type]}:
                wide.add(f"{kind} with int16 activations")
            version = OP_VERSION_FOR_INPUT.get(kind, {}).get(type_names[first.type], 1)
            if kind == "MUL" and version == 2 and _mul_rescale_at_least_one(op, tensors):
                version = MUL_RESCALE_VERSION
            if version > code.version:
                raised.add(f"{kind} v{code.version}→v{version}")
            needed[kind] = max(needed.get(kind, 0), version, code.version)
    return dict(sorted(needed.items())), sorted(raised), sorted(wide)


def _mul_rescale_at_least_one(op, tensors) -> bool:
    scales = []
    for index in (op.inputs[0], op.inputs[1], op.outputs[0]):
        q = tensors[index].quantization
        if q is None or q.scale is None or len(q.scale) != 1:
            return False
        scales.append(float(q.scale[0]))
    return scales[2] > 0 and scales[0] * scales[1] / scales[2] >= 1.0


def runtime_requirement(path: Path) -> RuntimeRequirement:
    versions, raised, wide = required_op_versions(path)
    unknown = [f"{k} v{v}" for k, v in versions.items()
               if (k, v) not in RUNTIME_FOR_OP_VERSION] + wide
    if unknown:
        return RuntimeRequirement(None, unknown, versions, raised)
    runtimes = {f"{k} v{v}": RUNTIME_FOR_OP_VERSION[(k, v)] for k, v in versions.items()}
    newest = max(runtimes.values(), key=_key)
    return RuntimeRequirement(newest, sorted(k for k, r in runtimes.items() if r == newest),
                              versions, raised)
