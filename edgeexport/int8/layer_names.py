"""Map tensors of the exported files back to the analysis' module paths.

ONNX: node names are module paths (``features.3.conv.1.0/Conv``; onnx_export keeps them).
TFLite: litert-torch names a tensor after the module locations that produced it, one path per
fused op, each segment ``<class>_<attribute>`` (``…Sequential_features/…InvertedResidual_1/
…Sequential_block/…ConvNormActivation_0/torch.nn.modules.activation.ReLU_2;;…``); the first
path is the outermost op (for a fused conv + ReLU, the ReLU). Attribute names may contain
``_`` (``Hardsigmoid_scale_activation``), so each segment is split where the prefix built so
far stays a known module path.
"""
from __future__ import annotations

WRAPPER_SUFFIX = "_wrapped"  # litert_torch.to_channel_last_io wraps the model in one module


def module_prefixes(layer_names: list[str]) -> set[str]:
    """Every module path that is a layer or contains one."""
    prefixes = set()
    for name in layer_names:
        parts = name.split(".")
        prefixes.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return prefixes


def onnx_layer(node_name: str) -> str:
    return node_name.split("/", 1)[0]


def tflite_layer(tensor_name: str, known: set[str]) -> str | None:
    """The module path of the op that wrote ``tensor_name`` (its first location path), or None
    when the name carries no path of a known module (constants, the graph input)."""
    for location in tensor_name.split(";"):
        if "/" in location:
            return _module_path(location.split("/"), known)
    return None


def _module_path(segments: list[str], known: set[str]) -> str | None:
    start = next((i + 1 for i, s in enumerate(segments) if s.endswith(WRAPPER_SUFFIX)), 0)
    path = ""
    for segment in segments[start:]:
        pieces = segment.split("_")
        for cut in range(1, len(pieces)):
            attribute = "_".join(pieces[cut:])
            candidate = f"{path}.{attribute}" if path else attribute
            if candidate in known:
                path = candidate
                break
        else:
            return path or None
    return path or None


def tflite_module_outputs(interpreter, layer_names) -> dict[str, str]:
    """Module path → the last tensor (in op order) an op of that module writes: its output."""
    known = set(layer_names)
    prefixes = module_prefixes(list(known))
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    out = {}
    for op in interpreter._get_ops_details():
        for index in op["outputs"]:
            layer = tflite_layer(names.get(index, ""), prefixes)
            if layer in known:
                out[layer] = names[index]
    return out
