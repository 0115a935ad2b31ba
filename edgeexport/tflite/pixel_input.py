"""Give an fp32 .tflite a pixel input: MUL and ADD by per-channel constants in front of its
normalised NHWC input, so it takes RGB values 0–255 and computes (x / 255 − mean) / std
itself.

The app file is made from ``model.fp32.tflite`` this way instead of converting the PyTorch
module a second time (a litert-torch conversion is most of an export's time). After static
int8 quantization the two ops are integer elementwise ops XNNPACK runs with the rest of the
graph. Folding the normalisation into the first convolution instead would be wrong at the
image border (zero padding in normalised space is not zero in pixel space).
"""
from __future__ import annotations

import numpy as np

from edgeexport.tflite.edit import (
    add_buffer,
    opcode,
    pack,
    rename_signature_tensors,
    schema,
    unpack,
)


def normalisation_constants(mean, std) -> tuple[np.ndarray, np.ndarray]:
    """(multiply, add) with pixel × multiply + add = (pixel / 255 − mean) / std."""
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    return (1 / (255 * std)).astype(np.float32), (-mean / std).astype(np.float32)


def pixel_input(data: bytes, mean, std) -> bytes:
    s = schema()
    model = unpack(data)
    graph = model.subgraphs[0]
    if len(graph.inputs) != 1:
        raise ValueError(f"pixel input needs a model with one input, not {len(graph.inputs)}")
    normalised = int(graph.inputs[0])
    source = graph.tensors[normalised]
    multiply, add = normalisation_constants(mean, std)
    if source.type != s.TensorType.FLOAT32 or int(source.shape[-1]) != len(multiply):
        raise ValueError("pixel input needs a float32 NHWC input with one channel per mean")

    def tensor(name: bytes, like=None, values: np.ndarray | None = None) -> int:
        t = s.TensorT()
        t.type, t.name = s.TensorType.FLOAT32, name
        if like is not None:
            t.shape, t.shapeSignature = like.shape, like.shapeSignature
        else:
            t.shape = list(values.shape)
        t.buffer = add_buffer(model, values)
        graph.tensors.append(t)
        return len(graph.tensors) - 1

    def op(builtin: int, inputs: list[int], output: int, options, options_type: int):
        o = s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = opcode(model, builtin), inputs, [output]
        o.builtinOptions, o.builtinOptionsType = options, options_type
        return o

    pixels = tensor(b"pixels", like=source)
    scaled = tensor(b"pixels_scaled", like=source)
    mul_options, add_options = s.MulOptionsT(), s.AddOptionsT()
    mul_options.fusedActivationFunction = s.ActivationFunctionType.NONE
    add_options.fusedActivationFunction = s.ActivationFunctionType.NONE
    graph.operators[0:0] = [
        op(s.BuiltinOperator.MUL, [pixels, tensor(b"normalise_multiply", values=multiply)],
           scaled, mul_options, s.BuiltinOptions.MulOptions),
        op(s.BuiltinOperator.ADD, [scaled, tensor(b"normalise_add", values=add)],
           normalised, add_options, s.BuiltinOptions.AddOptions)]
    graph.inputs = [pixels]
    rename_signature_tensors(model, {normalised: pixels})
    return pack(model, len(data))
