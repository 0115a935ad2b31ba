"""Rewrite an fp32 ONNX graph, before static quantization, into an equivalent one whose every
MobileNetV3 op onnxruntime can run as a QLinear kernel.

onnxruntime's QDQ fusion (onnxruntime/core/optimizer/qdq_transformer/selectors_actions/
qdq_selector_action_transformer.cc) turns DQ → op → Q into a quantized kernel only for Conv,
MatMul, Gemm, Add, Mul, Concat, Where, AveragePool, GlobalAveragePool, LeakyRelu, Sigmoid,
Softmax and data-movement ops; a Clip or Relu between an op and its Q is dropped when the
Q's range makes it redundant. Measured on V3-Small as exported (x86, uint8 activations): all
28 HardSigmoid (19 inside HardSwish, 9 squeeze-excitation gates) and all 10 ReduceMean ran in
float between a DequantizeLinear and a QuantizeLinear. So:

- ``ReduceMean`` over H, W with keepdims on a 4-D tensor → ``GlobalAveragePool`` (same maths;
  fuses into QLinearGlobalAveragePool).
- squeeze-excitation ``Conv → HardSigmoid`` → the Conv with HardSigmoid's α, β folded into its
  weights and bias (α·(Wx + b) + β) followed by ``Clip(0, 1)``: one QLinearConv, the Clip made
  redundant by its Q.
- ``HardSwish`` on a 4-D tensor → ``x · Clip(DepthwiseConv1×1(x; α, β), 0, 1)``: a
  QLinearConv and a QLinearMul instead of DQ → HardSigmoid → Q → QLinearMul.

Node names keep the layer's module path (``features.4.block.0.2/HardSwish/gate``) so the
profiler maps them back to their layer. HardSwish on other ranks (V3's classifier) is left as
it is: 1024 values, run in float.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

HARD_SIGMOID_ALPHA, HARD_SIGMOID_BETA = 1.0 / 6.0, 0.5  # ONNX HardSwish's fixed constants


def int8_friendly(model: onnx.ModelProto) -> onnx.ModelProto:
    model = onnx.shape_inference.infer_shapes(model)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    ranks = _shapes(graph)
    nodes = [onnx.NodeProto() for _ in graph.node]
    for copy, node in zip(nodes, graph.node):
        copy.CopyFrom(node)
    consumers: dict[str, int] = {}
    for node in nodes:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    producer = {out: node for node in nodes for out in node.output}
    graph_outputs = {o.name for o in graph.output}
    new_nodes, new_inits = [], []
    for node in nodes:
        if node.op_type == "ReduceMean" and _is_spatial_mean(node, inits, ranks):
            new_nodes.append(helper.make_node("GlobalAveragePool", [node.input[0]],
                                              list(node.output), name=node.name))
        elif node.op_type == "HardSigmoid" and _fold_into_conv(
                node, producer.get(node.input[0]), inits, consumers, graph_outputs, new_inits):
            new_nodes.append(_clip(node.input[0], node.output[0], node.name + "/Clip",
                                   new_inits, node.name))
        elif node.op_type == "HardSwish" and len(ranks.get(node.input[0], ())) == 4 \
                and isinstance(ranks[node.input[0]][1], int):
            new_nodes.extend(_hard_swish(node, ranks[node.input[0]][1], new_inits))
        else:
            new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    used = {name for node in new_nodes for name in node.input}
    for index in reversed(range(len(graph.initializer))):
        if graph.initializer[index].name not in used:  # replaced by a folded copy
            del graph.initializer[index]
    graph.initializer.extend(t for t in new_inits if t.name in used)
    return model


def _shapes(graph) -> dict[str, tuple]:
    shapes = {}
    for info in list(graph.value_info) + list(graph.input) + list(graph.output):
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = tuple(d.dim_value if d.HasField("dim_value") else None
                                  for d in dims)
    return shapes


def _is_spatial_mean(node, inits, ranks) -> bool:
    if len(ranks.get(node.input[0], ())) != 4:
        return False
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("keepdims", 1) != 1:
        return False
    if len(node.input) > 1 and node.input[1] in inits:
        axes = numpy_helper.to_array(inits[node.input[1]]).tolist()
    else:
        axes = attrs.get("axes")
    return axes is not None and sorted(a % 4 for a in axes) == [2, 3]


def _fold_into_conv(node, conv, inits, consumers, graph_outputs, new_inits) -> bool:
    """α·Conv(x) + β as one Conv, when the Conv feeds only this HardSigmoid."""
    if conv is None or conv.op_type != "Conv" or consumers.get(conv.output[0]) != 1 \
            or conv.output[0] in graph_outputs or conv.input[1] not in inits \
            or (len(conv.input) > 2 and conv.input[2] not in inits):
        return False
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    alpha, beta = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
    weight = numpy_helper.to_array(inits[conv.input[1]])
    bias = (numpy_helper.to_array(inits[conv.input[2]]) if len(conv.input) > 2
            else np.zeros(weight.shape[0], weight.dtype))
    w_name, b_name = conv.input[1] + "_hard_sigmoid", conv.name + "/hard_sigmoid_bias"
    new_inits.append(numpy_helper.from_array((weight * alpha).astype(weight.dtype), w_name))
    new_inits.append(numpy_helper.from_array((bias * alpha + beta).astype(weight.dtype),
                                             b_name))
    conv.input[1] = w_name
    if len(conv.input) > 2:
        conv.input[2] = b_name
    else:
        conv.input.append(b_name)
    return True


def _clip(src: str, dst: str, name: str, new_inits: list, prefix: str):
    low, high = prefix + "/clip_min", prefix + "/clip_max"
    new_inits.append(numpy_helper.from_array(np.array(0.0, np.float32), low))
    new_inits.append(numpy_helper.from_array(np.array(1.0, np.float32), high))
    return helper.make_node("Clip", [src, low, high], [dst], name=name)


def _hard_swish(node, channels: int, new_inits: list) -> list:
    x, y, name = node.input[0], node.output[0], node.name
    weight, bias = name + "/gate_weight", name + "/gate_bias"
    new_inits.append(numpy_helper.from_array(
        np.full((channels, 1, 1, 1), HARD_SIGMOID_ALPHA, np.float32), weight))
    new_inits.append(numpy_helper.from_array(
        np.full(channels, HARD_SIGMOID_BETA, np.float32), bias))
    gate, gate_clipped = name + "/gate:0", name + "/gate_clipped:0"
    return [helper.make_node("Conv", [x, weight, bias], [gate], name=name + "/gate",
                             group=channels, kernel_shape=[1, 1]),
            _clip(gate, gate_clipped, name + "/gate_clip", new_inits, name),
            helper.make_node("Mul", [x, gate_clipped], [y], name=name + "/Mul")]
