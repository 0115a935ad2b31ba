"""An fp32 .tflite with its convolution weights on ai-edge-quantizer's int8 grid (per output
channel, symmetric, 127 steps each side), rounded by GPTQ (edgeexport.int8.weight_rounding)
from each layer's inputs over the calibration images: what the int8 quantizer is given, so it
writes these levels instead of rounding each weight to its nearest."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edgeexport.int8.export_memo import once_per_export
from edgeexport.int8.weight_rounding import ConvLayer
from edgeexport.tflite.edit import pack, schema, unpack

LEVELS = 127  # ai-edge-quantizer's int8 weights: narrow range [-127, 127], scale max|w| / 127


def _geometry(op, model, kind: str) -> tuple | None:
    """(OIHW from the filter layout, kernel, stride, pads, groups) of a CONV_2D or
    DEPTHWISE_CONV_2D, or None for what the rounding does not cover (dilation, depth
    multiplier ≠ 1)."""
    options = op.builtinOptions
    if (options.dilationHFactor, options.dilationWFactor) != (1, 1):
        return None
    filt = model.subgraphs[0].tensors[op.inputs[1]]
    height, width = model.subgraphs[0].tensors[op.inputs[0]].shape[1:3]
    if kind == "conv":  # filter O, kh, kw, I
        to_oihw, kernel, groups = (0, 3, 1, 2), tuple(filt.shape[1:3]), 1
    else:  # filter 1, kh, kw, O
        if options.depthMultiplier != 1:
            return None
        to_oihw, kernel, groups = (3, 0, 1, 2), tuple(filt.shape[1:3]), int(filt.shape[3])
    stride = (options.strideH, options.strideW)
    pads = [0, 0, 0, 0]
    if options.padding == schema().Padding.SAME:
        for axis, (size, k, s) in enumerate(zip((height, width), kernel, stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads[axis], pads[axis + 2] = total // 2, total - total // 2
    return to_oihw, kernel, stride, tuple(pads), groups


def round_conv_weights(fp32_path: Path, calibration_nchw: np.ndarray,
                       keep_float: set[str]) -> bytes:
    """The file's bytes with every CONV_2D / DEPTHWISE_CONV_2D filter rounded, except those
    of ops whose output is in ``keep_float`` (float islands: they keep the user's weights)."""
    data = fp32_path.read_bytes()
    model = unpack(data)
    graph = model.subgraphs[0]
    ops = schema().BuiltinOperator
    kinds = {ops.CONV_2D: "conv", ops.DEPTHWISE_CONV_2D: "depthwise"}
    convs = {}
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        kind = kinds.get(max(code.builtinCode, code.deprecatedBuiltinCode))
        filt = graph.tensors[op.inputs[1]] if kind else None
        if kind and model.buffers[filt.buffer].data is not None:
            found = _geometry(op, model, kind)
            if found:
                convs[op.outputs[0]] = (op, found)

    def gather() -> tuple[dict[int, ConvLayer], dict]:
        from ai_edge_litert.interpreter import Interpreter
        interpreter = Interpreter(model_content=data, num_threads=1,
                                  experimental_preserve_all_tensors=True)
        interpreter.allocate_tensors()
        source = interpreter.get_input_details()[0]["index"]
        layers = {out: ConvLayer(graph.tensors[out].name.decode(), kernel, stride, pads, groups)
                  for out, (_, (_, kernel, stride, pads, groups)) in convs.items()}
        for x in calibration_nchw:
            interpreter.set_tensor(source, x.transpose(1, 2, 0)[None].astype(np.float32))
            interpreter.invoke()
            for out, layer in layers.items():
                layer.add(interpreter.get_tensor(convs[out][0].inputs[0]).transpose(0, 3, 1, 2))
        return layers, {}

    layers, done = once_per_export("tflite weight hessians", fp32_path, calibration_nchw,
                                   gather)
    for out, (op, (to_oihw, *_)) in convs.items():
        if layers[out].name in keep_float:
            continue
        filt = graph.tensors[op.inputs[1]]
        if out not in done:
            weights = np.frombuffer(model.buffers[filt.buffer].data.tobytes(), np.float32) \
                .reshape(filt.shape)
            oihw = layers[out].round(weights.transpose(to_oihw), LEVELS)
            done[out] = oihw.transpose(np.argsort(to_oihw)).astype(np.float32)
        model.buffers[filt.buffer].data = np.frombuffer(done[out].tobytes(), np.uint8).copy()
    return pack(model, len(data))
