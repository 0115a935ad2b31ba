"""Give a fully int8 .tflite a uint8 input and output, as TensorFlow's
``modify_model_interface`` does: a QUANTIZE op (uint8 → int8, zero point + 128, same scale)
in front of the input and one (int8 → uint8) after the output. That tool cannot read the
offset-addressed buffers ai-edge-quantizer writes, so this edits the flatbuffer directly."""
from __future__ import annotations

import flatbuffers
import numpy as np


def uint8_interface(data: bytes, input_quantization: tuple[float, int] | None = None) -> bytes:
    """``input_quantization``: (scale, zero point) for the uint8 input instead of the int8
    input's own shifted by 128; the QUANTIZE op in front then requantizes."""
    from ai_edge_litert import schema_py_generated as schema
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    _inline_buffers(model, data)
    graph = model.subgraphs[0]
    graph.inputs, graph.outputs = [int(i) for i in graph.inputs], [int(i) for i in graph.outputs]
    quantize = _opcode(model, schema, schema.BuiltinOperator.QUANTIZE)
    renamed: dict[int, int] = {}
    for position, old in enumerate(graph.inputs):
        new = _uint8_twin(graph, old, model, schema, input_quantization)
        graph.operators.insert(0, _op(schema, quantize, new, old))
        graph.inputs[position] = new
        renamed[old] = new
    for position, old in enumerate(graph.outputs):
        new = _uint8_twin(graph, old, model, schema)
        graph.operators.append(_op(schema, quantize, old, new))
        graph.outputs[position] = new
        renamed[old] = new
    for signature in model.signatureDefs or []:
        for tensor_map in list(signature.inputs or []) + list(signature.outputs or []):
            tensor_map.tensorIndex = renamed.get(tensor_map.tensorIndex, tensor_map.tensorIndex)
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _inline_buffers(model, data: bytes) -> None:
    """Move offset-addressed buffer contents into the flatbuffer itself."""
    for buffer in model.buffers:
        if buffer.offset and buffer.size:
            buffer.data = np.frombuffer(data, np.uint8, buffer.size, buffer.offset).copy()
        buffer.offset, buffer.size = 0, 0


def _opcode(model, schema, builtin: int) -> int:
    for index, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return index
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _uint8_twin(graph, index: int, model, schema,
                quantization: tuple[float, int] | None = None) -> int:
    source = graph.tensors[index]
    if source.type != schema.TensorType.INT8:
        raise ValueError("uint8 interface needs an int8 model input/output")
    twin = schema.TensorT()
    twin.shape, twin.shapeSignature = source.shape, source.shapeSignature
    twin.type = schema.TensorType.UINT8
    twin.name = source.name + b"_uint8"
    empty = schema.BufferT()
    model.buffers.append(empty)
    twin.buffer = len(model.buffers) - 1
    q = schema.QuantizationParametersT()
    if quantization is None:
        q.scale = list(source.quantization.scale)
        q.zeroPoint = [int(z) + 128 for z in source.quantization.zeroPoint]
    else:
        q.scale, q.zeroPoint = [float(quantization[0])], [int(quantization[1])]
    twin.quantization = q
    graph.tensors.append(twin)
    return len(graph.tensors) - 1


def _op(schema, opcode: int, src: int, dst: int):
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = opcode, [src], [dst]
    op.builtinOptionsType = schema.BuiltinOptions.QuantizeOptions
    op.builtinOptions = schema.QuantizeOptionsT()
    return op
