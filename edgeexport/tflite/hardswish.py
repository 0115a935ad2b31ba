"""Rewrite every int8 HARD_SWISH of a .tflite into ops the XNNPACK delegate runs in int8.

LiteRT's XNNPACK delegate takes HARD_SWISH in float only (``VisitUnaryNode`` checks
``CheckTensorFloatType`` for it; true of LiteRT main as of 2026-08), so each int8 HARD_SWISH
of a quantized MobileNetV3 splits the graph: 19 of them cut V3-Small into 20 partitions and
every boundary falls back to TFLite's reference int8 kernel. The converter folds any
PyTorch spelling of ``x * relu6(x + 3) / 6`` back into HARD_SWISH, so the fix is made on the
quantized flatbuffer:

    hard_swish(x) = x · h,   h = clamp(x / 6 + 1/2, 0, 1)

- ``h`` on NHWC tensors: a 1×1 DEPTHWISE_CONV_2D (weight 1/6, bias 1/2 per channel) whose
  int8 output is quantized to exactly [0, 1] (scale 1/255, zero point −128), so int8
  saturation *is* the clamp; on other ranks: MUL by 1/6 (a rescale, exact) then ADD 1/2 into
  the same [0, 1] tensor.
- ``y = MUL(x, h)`` keeps the HARD_SWISH output tensor and its calibrated quantization.

Every rewrite respects the delegate's int8 scale limits (MUL: s₁·s₂/s_out in [2⁻¹⁶, 256);
ADD: s_in/s_out in [2⁻¹⁰, 256)); a HARD_SWISH whose scales fall outside is left as it is
(and then shows as not delegated in the card).
"""
from __future__ import annotations

import numpy as np

from edgeexport.tflite.edit import opcode, pack, unpack

H_SCALE, H_ZERO = 1.0 / 255.0, -128  # int8 [-128, 127] ↔ exactly [0, 1]
MUL_PRODUCT_SCALE = (1.0 / 65536.0, 256.0)
ADD_SCALE = (1.0 / 1024.0, 256.0)


def delegable_hard_swish(data: bytes) -> tuple[bytes, int]:
    """The model with its int8 HARD_SWISH ops rewritten, and how many were rewritten."""
    from ai_edge_litert import schema_py_generated as schema
    model = unpack(data)
    rewritten = 0
    for graph in model.subgraphs:
        ops = []
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) == \
                    schema.BuiltinOperator.HARD_SWISH:
                replacement = _Rewriter(model, graph, schema).rewrite(op)
                if replacement:
                    ops.extend(replacement)
                    rewritten += 1
                    continue
            ops.append(op)
        graph.operators = ops
    if not rewritten:
        return data, 0
    return pack(model, len(data)), rewritten


class _Rewriter:
    def __init__(self, model, graph, schema) -> None:
        self.model, self.graph, self.s = model, graph, schema

    def rewrite(self, op) -> list | None:
        x, y = self.graph.tensors[op.inputs[0]], self.graph.tensors[op.outputs[0]]
        if not (_per_tensor_int8(x, self.s) and _per_tensor_int8(y, self.s)):
            return None
        sx, sy = float(x.quantization.scale[0]), float(y.quantization.scale[0])
        if not _within(sx * H_SCALE / sy, MUL_PRODUCT_SCALE):
            return None
        shape = list(x.shape)
        name = x.name.decode() if isinstance(x.name, bytes) else str(x.name)
        h = self._tensor(f"{name}/hard_sigmoid", shape, self.s.TensorType.INT8,
                         [H_SCALE], [H_ZERO])
        if len(shape) == 4:
            gate = [self._depthwise_gate(op.inputs[0], sx, shape[-1], h, name)]
        else:
            gate = self._elementwise_gate(op.inputs[0], x, sx, shape, h, name)
            if gate is None:
                return None
        return gate + [self._op(self.s.BuiltinOperator.MUL, 2, [op.inputs[0], h],
                                list(op.outputs), self._mul_options())]

    def _depthwise_gate(self, x_index: int, sx: float, channels: int, h: int, name: str):
        s = self.s
        w_scale = (1.0 / 6.0) / 127.0
        weights = self._const(f"{name}/hard_sigmoid/weight", [1, 1, 1, channels],
                              s.TensorType.INT8, np.full(channels, 127, np.int8),
                              [w_scale] * channels, [0] * channels, quantized_dimension=3)
        bias_scale = sx * w_scale
        bias = self._const(f"{name}/hard_sigmoid/bias", [channels], s.TensorType.INT32,
                           np.full(channels, round(0.5 / bias_scale), np.int32),
                           [bias_scale] * channels, [0] * channels)
        options = s.DepthwiseConv2DOptionsT()
        options.padding, options.strideH, options.strideW = s.Padding.VALID, 1, 1
        options.depthMultiplier, options.dilationHFactor, options.dilationWFactor = 1, 1, 1
        options.fusedActivationFunction = s.ActivationFunctionType.NONE
        return self._op(s.BuiltinOperator.DEPTHWISE_CONV_2D, 3, [x_index, weights, bias], [h],
                        options, s.BuiltinOptions.DepthwiseConv2DOptions)

    def _elementwise_gate(self, x_index: int, x, sx: float, shape: list, h: int, name: str):
        s = self.s
        sixth_scale, half_scale = (1.0 / 6.0) / 127.0, 0.5 / 127.0
        # x/6 as int8 is x's own integers at a sixth of the scale: the MUL only rescales.
        scaled_scale = sx / 6.0
        if not (_within(sx * sixth_scale / scaled_scale, MUL_PRODUCT_SCALE)
                and _within(scaled_scale / H_SCALE, ADD_SCALE)
                and _within(half_scale / H_SCALE, ADD_SCALE)):
            return None
        sixth = self._const(f"{name}/one_sixth", [], s.TensorType.INT8,
                            np.array([127], np.int8), [sixth_scale], [0])
        half = self._const(f"{name}/one_half", [], s.TensorType.INT8,
                           np.array([127], np.int8), [half_scale], [0])
        scaled = self._tensor(f"{name}/sixth", shape, s.TensorType.INT8, [scaled_scale],
                              [int(x.quantization.zeroPoint[0])])
        add_options = s.AddOptionsT()
        add_options.fusedActivationFunction = s.ActivationFunctionType.NONE
        return [self._op(s.BuiltinOperator.MUL, 2, [x_index, sixth], [scaled],
                         self._mul_options()),
                self._op(s.BuiltinOperator.ADD, 2, [scaled, half], [h], add_options,
                         s.BuiltinOptions.AddOptions)]

    def _mul_options(self):
        options = self.s.MulOptionsT()
        options.fusedActivationFunction = self.s.ActivationFunctionType.NONE
        return options

    def _tensor(self, name: str, shape: list, dtype: int, scale: list, zero: list,
                quantized_dimension: int = 0, data: np.ndarray | None = None) -> int:
        buffer = self.s.BufferT()
        if data is not None:
            buffer.data = np.frombuffer(data.astype(data.dtype.newbyteorder("<")).tobytes(),
                                        np.uint8).copy()
        self.model.buffers.append(buffer)
        tensor = self.s.TensorT()
        tensor.name, tensor.shape, tensor.type = name.encode(), list(shape), dtype
        tensor.buffer = len(self.model.buffers) - 1
        q = self.s.QuantizationParametersT()
        q.scale, q.zeroPoint = [float(v) for v in scale], [int(v) for v in zero]
        q.quantizedDimension = quantized_dimension
        tensor.quantization = q
        self.graph.tensors.append(tensor)
        return len(self.graph.tensors) - 1

    def _const(self, name, shape, dtype, values, scale, zero, quantized_dimension=0) -> int:
        return self._tensor(name, shape, dtype, scale, zero, quantized_dimension, values)

    def _op(self, builtin: int, version: int, inputs: list, outputs: list, options,
            options_type: int | None = None):
        op = self.s.OperatorT()
        op.opcodeIndex = opcode(self.model, builtin, version)
        op.inputs, op.outputs = [int(i) for i in inputs], [int(i) for i in outputs]
        op.builtinOptions = options
        op.builtinOptionsType = (options_type if options_type is not None
                                 else self.s.BuiltinOptions.MulOptions)
        return op

def _per_tensor_int8(tensor, schema) -> bool:
    q = tensor.quantization
    return (tensor.type == schema.TensorType.INT8 and q is not None and q.scale is not None
            and len(q.scale) == 1 and q.zeroPoint is not None and len(q.zeroPoint) == 1)


def _within(value: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] <= value < bounds[1]
