"""Read a .tflite flatbuffer with the runtime's own schema (ai_edge_litert): operators,
tensor types, per-channel quantization, what consumes the input. Corrupt or truncated files
raise UserError. No torch import: usable on the device install."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from edgeexport.core.errors import UserError

FLOAT_TYPES = ("FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16")


@dataclass
class TfliteOp:
    index: int
    kind: str
    input_types: list[str]
    output_types: list[str]
    weight_channels_quantized: int | None = None  # per-channel scales on input 1, if conv


@dataclass
class TfliteSummary:
    ops: list[TfliteOp]
    input_types: list[str]
    output_types: list[str]
    first_ops_on_input: list[str]
    float_tensors_in_ops: list[str] = field(default_factory=list)

    @property
    def op_histogram(self) -> dict[str, int]:
        return dict(sorted(Counter(op.kind for op in self.ops).items()))

    def full_integer_problems(self, io_type: str, mixed: bool = False,
                              float_islands: bool = False,
                              float_output: bool = False) -> list[str]:
        """Why this is not a fully integer model with ``io_type`` I/O (empty list: it is).
        ``mixed``: a mixed-precision plan (repair), whose 16-bit islands may run ops that
        have no int16 kernel (HARD_SWISH) in float between DEQUANTIZE and QUANTIZE;
        ``float_islands``: its float rungs, whose convolutions keep float weights;
        ``float_output``: the repair's widened output (PrecisionPlan.float_output), float32,
        out of a DEQUANTIZE."""
        problems = []
        want = io_type.upper()
        outputs = "FLOAT32" if float_output else want
        if any(t != want for t in self.input_types) or \
                any(t != outputs for t in self.output_types):
            problems.append(f"I/O types {self.input_types}→{self.output_types}, not {want}"
                            + (f"→{outputs}" if float_output else ""))
        if "TRANSPOSE" in self.first_ops_on_input:
            problems.append("a TRANSPOSE reads the input (input is not NHWC)")
        if "DEQUANTIZE" in self.op_histogram and not (mixed or float_output):
            problems.append(f"{self.op_histogram['DEQUANTIZE']} DEQUANTIZE op(s)")
        if self.float_tensors_in_ops and not (mixed or float_output):
            problems.append(f"float tensors in ops: {', '.join(self.float_tensors_in_ops[:5])}")
        for op in self.ops:
            if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D") and not op.weight_channels_quantized \
                    and not float_islands:
                problems.append(f"op {op.index} {op.kind} weights are not per-channel")
                break
        return problems


def read_tflite(path: Path) -> TfliteSummary:
    from ai_edge_litert import schema_py_generated as schema

    from edgeexport.core.runtimes import read_tflite_bytes
    data = read_tflite_bytes(path)
    try:
        model = schema.ModelT.InitFromPackedBuf(data, 0)
        return _summarise(model, schema)
    except Exception as e:  # the generated reader raises struct/index errors on bad bytes
        raise UserError(f"{path}: corrupt or truncated TFLite file "
                        f"({e.__class__.__name__})") from None


def _summarise(model, schema) -> TfliteSummary:
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    graph = model.subgraphs[0]
    tensors = graph.tensors

    def ttype(i: int) -> str:
        return type_names[tensors[i].type]

    ops, float_tensors = [], []
    for index, op in enumerate(graph.operators or []):
        code = model.operatorCodes[op.opcodeIndex]
        kind = op_names[max(code.builtinCode, code.deprecatedBuiltinCode)]
        ins = [i for i in (op.inputs if op.inputs is not None else []) if i >= 0]
        outs = list(op.outputs if op.outputs is not None else [])
        per_channel = None
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(ins) > 1:
            q = tensors[ins[1]].quantization
            per_channel = len(q.scale) if q is not None and q.scale is not None \
                and len(q.scale) > 1 else 0
        for i in ins + outs:
            if ttype(i) in FLOAT_TYPES:
                float_tensors.append(f"{kind}:{tensors[i].name.decode(errors='replace')}")
        ops.append(TfliteOp(index, kind, [ttype(i) for i in ins], [ttype(i) for i in outs],
                            per_channel))
    inputs = list(graph.inputs)
    first = [o.kind for o, raw in zip(ops, graph.operators or [])
             if any(i in inputs for i in raw.inputs)]
    return TfliteSummary(ops, [ttype(i) for i in inputs], [ttype(i) for i in graph.outputs],
                         first, float_tensors)
