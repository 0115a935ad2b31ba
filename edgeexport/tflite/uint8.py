"""Give a quantized .tflite an 8-bit input and output, as TensorFlow's
``modify_model_interface`` does: a QUANTIZE op (uint8 → int8, zero point + 128, same scale)
in front of the input and one (int8 → uint8) after the output. That tool cannot read the
offset-addressed buffers ai-edge-quantizer writes, so this edits the flatbuffer directly.

An int16 input or output (a file quantized with every activation at 16 bits, I/O included:
the repair's last rung) gets the same treatment: its 8-bit twin covers the int16 tensor's
range (symmetric, scale × 32767/127) and the QUANTIZE op requantizes, so apps keep the 8-bit
interface they were promised."""
from __future__ import annotations

from edgeexport.tflite.edit import (
    add_buffer,
    opcode,
    pack,
    rename_signature_tensors,
    schema,
    unpack,
)


def uint8_interface(data: bytes, input_quantization: tuple[float, int] | None = None,
                    float_output: bool = False) -> bytes:
    """uint8 input and output. ``input_quantization``: (scale, zero point) for the uint8 input
    instead of the int8 input's own shifted by 128; the QUANTIZE op in front then
    requantizes. ``float_output``: the output dequantized to float32 instead."""
    if float_output:
        data = _float_outputs(data)
    return eight_bit_interface(data, "uint8", input_quantization)


def _float_outputs(data: bytes) -> bytes:
    """Each quantized output read through a DEQUANTIZE op into a float32 twin."""
    s = schema()
    model = unpack(data)
    graph = model.subgraphs[0]
    graph.outputs = [int(i) for i in graph.outputs]
    dequantize = opcode(model, s.BuiltinOperator.DEQUANTIZE)
    renamed: dict[int, int] = {}
    for position, old in enumerate(graph.outputs):
        source = graph.tensors[old]
        if source.type == s.TensorType.FLOAT32:
            continue
        twin = s.TensorT()
        twin.shape, twin.shapeSignature = source.shape, source.shapeSignature
        twin.type, twin.name = s.TensorType.FLOAT32, source.name + b"_float"
        twin.buffer = add_buffer(model)
        graph.tensors.append(twin)
        new = len(graph.tensors) - 1
        op = s.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = dequantize, [old], [new]
        op.builtinOptionsType = s.BuiltinOptions.DequantizeOptions
        op.builtinOptions = s.DequantizeOptionsT()
        graph.operators.append(op)
        graph.outputs[position] = new
        renamed[old] = new
    rename_signature_tensors(model, renamed)
    return pack(model, len(data))


def eight_bit_interface(data: bytes, io_type: str,
                        input_quantization: tuple[float, int] | None = None,
                        output_ranges: dict[str, tuple[float, float]] | None = None) -> bytes:
    """``io_type`` ("int8", "uint8") input and output; an int8 tensor already int8 is left
    as it is. ``output_ranges``: output name → (min, max), for a float32 output to be
    quantized over that range (one left in float is otherwise left as it is)."""
    s = schema()
    model = unpack(data)
    graph = model.subgraphs[0]
    graph.inputs, graph.outputs = [int(i) for i in graph.inputs], [int(i) for i in graph.outputs]
    quantize = opcode(model, s.BuiltinOperator.QUANTIZE)
    renamed: dict[int, int] = {}
    want = s.TensorType.UINT8 if io_type == "uint8" else s.TensorType.INT8
    for position, old in enumerate(graph.inputs):
        if graph.tensors[old].type == want and input_quantization is None:
            continue
        new = _twin(graph, old, model, s, want, input_quantization)
        graph.operators.insert(0, _op(s, quantize, new, old))
        graph.inputs[position] = new
        renamed[old] = new
    for position, old in enumerate(graph.outputs):
        source = graph.tensors[old]
        name = source.name.decode() if isinstance(source.name, bytes) else source.name
        if source.type == s.TensorType.FLOAT32 and name in (output_ranges or {}):
            new = _twin(graph, old, model, s, want, _affine(output_ranges[name], want, s))
        elif source.type in (want, s.TensorType.FLOAT32):
            continue
        else:
            new = _twin(graph, old, model, s, want)
        graph.operators.append(_op(s, quantize, old, new))
        graph.outputs[position] = new
        renamed[old] = new
    rename_signature_tensors(model, renamed)
    return pack(model, len(data))


def _affine(bounds: tuple[float, float], want: int, schema) -> tuple[float, int]:
    """(scale, zero point) putting [min, max] (widened to hold 0) on the 8-bit type."""
    qmin, qmax = (0, 255) if want == schema.TensorType.UINT8 else (-128, 127)
    low, high = min(bounds[0], 0.0), max(bounds[1], 0.0)
    scale = (high - low) / (qmax - qmin) or 1.0
    return scale, int(round(qmin - low / scale))


def _twin(graph, index: int, model, schema, want: int,
          quantization: tuple[float, int] | None = None) -> int:
    source = graph.tensors[index]
    if source.type not in (schema.TensorType.INT8, schema.TensorType.INT16) and \
            quantization is None:
        raise ValueError("an 8-bit interface needs an int8 or int16 model input/output")
    uint8 = want == schema.TensorType.UINT8
    twin = schema.TensorT()
    twin.shape, twin.shapeSignature = source.shape, source.shapeSignature
    twin.type = want
    twin.name = source.name + (b"_uint8" if uint8 else b"_int8")
    twin.buffer = add_buffer(model)
    q = schema.QuantizationParametersT()
    if quantization is None and source.type == schema.TensorType.INT16:
        q.scale = [float(x) * 32767 / 127 for x in source.quantization.scale]
        q.zeroPoint = [128 if uint8 else 0 for _ in source.quantization.zeroPoint]
    elif quantization is None:
        q.scale = list(source.quantization.scale)
        q.zeroPoint = [int(z) + (128 if uint8 else 0) for z in source.quantization.zeroPoint]
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
