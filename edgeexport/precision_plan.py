"""Which layers leave plain int8, handed to both quantizers as one parameter.

- ``keep``: module paths whose output tensors are quantized with 16-bit activations instead of
  8 (onnxruntime: a ``TensorQuantOverrides`` quant_type on the tensor; ai-edge-quantizer: an
  int16-activation config for the ops of that module). 16 bits give a heavy-tailed tensor
  256× finer steps over the same range.
- ``unit_range``: module paths whose outputs are hard-sigmoids, their range forced to [0, 1]
  instead of the calibrated min/max (MobileNetV3's squeeze-excitation gates; the fix that
  rescued V3 int8 in onnxruntime-qnn and NNCF). A default for every V3 export.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from edgeexport.layer_names import module_prefixes, onnx_layer, tflite_layer

UNIT_RANGE_OPS = ("Hardsigmoid",)


@dataclass(frozen=True)
class PrecisionPlan:
    keep: tuple[str, ...] = ()
    unit_range: tuple[str, ...] = ()

    @classmethod
    def defaults(cls, model) -> "PrecisionPlan":
        """Hard-sigmoid outputs at [0, 1] (V3); nothing kept."""
        names = tuple(name for name, m in model.named_modules()
                      if type(m).__name__ in UNIT_RANGE_OPS)
        return cls(unit_range=names)

    def with_keep(self, layers) -> "PrecisionPlan":
        return PrecisionPlan(tuple(layers), self.unit_range)

    # ---- onnxruntime (quantize_static extra_options) ----

    def onnx_tensor_overrides(self, graph, activation_16bit) -> dict:
        """TensorQuantOverrides for the fp32 graph: 16-bit kept outputs, [0, 1] gates."""
        import numpy as np
        overrides = {}
        for node in graph.node:
            layer = onnx_layer(node.name)
            if layer in self.keep:
                overrides[node.output[0]] = [{"quant_type": activation_16bit}]
            elif layer in self.unit_range:
                overrides[node.output[0]] = [{"rmin": np.float32(0), "rmax": np.float32(1)}]
        return overrides

    # ---- ai-edge-quantizer ----

    def tflite_keep_regex(self, interpreter, layer_names) -> str | None:
        """A regex matching the op scopes of the kept modules and of the ops reading their
        outputs (ai-edge-quantizer's scope: the op's output tensor names, each followed by
        ``;``). The readers are kept too: an int8 reader would requantize the 16-bit tensor
        to 8 bits over the same range, and the fine steps would be lost before they are
        used (onnxruntime's reader takes the 16-bit tensor as it is)."""
        names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
        known = module_prefixes(layer_names)
        ops = interpreter._get_ops_details()
        written = {names[o] for op in ops for o in op["outputs"]
                   if tflite_layer(names[o], known) in self.keep}
        readers = {names[o] for op in ops if any(names.get(i) in written for i in op["inputs"])
                   for o in op["outputs"]}
        kept = sorted(written | readers)
        if not kept:
            return None
        return "^(" + "|".join(re.escape(t) for t in kept) + ");$"

    def tflite_unit_range(self, qsvs: dict, module_outputs: dict[str, str]) -> dict:
        """Calibrated min/max with each hard-sigmoid module's output tensor set to [0, 1]
        (only the output: inside the module, litert-torch's relu6(x + 3) runs on [0, 6])."""
        import numpy as np
        out = dict(qsvs)
        for layer in self.unit_range:
            tensor = module_outputs.get(layer)
            if tensor in qsvs and "min" in qsvs[tensor]:
                qsv = qsvs[tensor]
                out[tensor] = {**qsv, "min": np.zeros_like(qsv["min"]),
                               "max": np.ones_like(qsv["max"])}
        return out

    def litert_recipe(self, interpreter, qsvs: dict, config) -> tuple[dict, list]:
        """The calibrated ranges and the static int8 recipe, adjusted by this plan."""
        from ai_edge_quantizer import qtyping, recipe_manager

        from edgeexport.layer_names import tflite_module_outputs
        layers = list(self.keep) + list(self.unit_range)
        qsvs = self.tflite_unit_range(qsvs, tflite_module_outputs(interpreter, layers))
        regex = self.tflite_keep_regex(interpreter, layers)
        if regex is None:
            return qsvs, config
        manager = recipe_manager.RecipeManager()
        manager.load_quantization_recipe(config)
        manager.add_static_config(regex=regex,
                                  operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                  activation_num_bits=16, weight_num_bits=8)
        return qsvs, manager.get_quantization_recipe()

    def to_json(self) -> dict:
        return {"kept_16bit_activations": list(self.keep),
                "hard_sigmoid_range_0_1": list(self.unit_range)}
