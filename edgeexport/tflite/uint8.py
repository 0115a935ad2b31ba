"""Give a fully int8 .tflite a uint8 input and output, as TensorFlow's
``modify_model_interface`` does: a QUANTIZE op (uint8 → int8, zero point + 128, same scale)
in front of the input and one (int8 → uint8) after the output. That tool cannot read the
offset-addressed buffers ai-edge-quantizer writes, so this edits the flatbuffer directly."""
from __future__ import annotations

from edgeexport.tflite.edit import (
    add_buffer,
    opcode,
    pack,
    rename_signature_tensors,
    schema,
    unpack,
)


def uint8_interface(data: bytes, input_quantization: tuple[float, int] | None = None) -> bytes:
    """``input_quantization``: (scale, zero point) for the uint8 input instead of the int8
    input's own shifted by 128; the QUANTIZE op in front then requantizes."""
    s = schema()
    model = unpack(data)
    graph = model.subgraphs[0]
    graph.inputs, graph.outputs = [int(i) for i in graph.inputs], [int(i) for i in graph.outputs]
    quantize = opcode(model, s.BuiltinOperator.QUANTIZE)
    renamed: dict[int, int] = {}
    for position, old in enumerate(graph.inputs):
        new = _uint8_twin(graph, old, model, s, input_quantization)
        graph.operators.insert(0, _op(s, quantize, new, old))
        graph.inputs[position] = new
        renamed[old] = new
    for position, old in enumerate(graph.outputs):
        new = _uint8_twin(graph, old, model, s)
        graph.operators.append(_op(s, quantize, old, new))
        graph.outputs[position] = new
        renamed[old] = new
    rename_signature_tensors(model, renamed)
    return pack(model, len(data))


def _uint8_twin(graph, index: int, model, schema,
                quantization: tuple[float, int] | None = None) -> int:
    source = graph.tensors[index]
    if source.type != schema.TensorType.INT8:
        raise ValueError("uint8 interface needs an int8 model input/output")
    twin = schema.TensorT()
    twin.shape, twin.shapeSignature = source.shape, source.shapeSignature
    twin.type = schema.TensorType.UINT8
    twin.name = source.name + b"_uint8"
    twin.buffer = add_buffer(model)
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
