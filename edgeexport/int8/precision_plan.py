"""How a model is quantized, handed to both quantizers as one parameter.

- ``ranges``: how activation ranges are set from the calibration images: ``MinMax`` (the
  true min/max), ``MSE`` (per tensor, the range of least squared error relative to each
  image's values: edgeexport.int8.range_search), ``MovingAverage`` (the mean of per-image
  min/max), ``Percentile`` and ``Entropy`` (onnxruntime's calibrators; ai-edge-quantizer
  takes a moving average for them): all but MinMax clip some of a heavy tail.

- ``keep``: module paths whose output tensors are quantized with 16-bit activations instead of
  8 (onnxruntime: a ``TensorQuantOverrides`` quant_type on the tensor; ai-edge-quantizer: an
  int16-activation config for the ops of that module). 16 bits give a heavy-tailed tensor
  256× finer steps over the same range. Kept tensors always take the true min/max
  (``true_ranges``): a range that clips (MovingAverage, Percentile) clips at 16 bits too,
  while the int8 tensors around them keep ``ranges``. So does the model's input, whatever
  ``ranges``: its extremes are pixels, not outliers (measured on a collapsing V3-Large with
  MovingAverage ranges: full int8 0.954 → 0.966, every layer 16-bit 0.976 → 0.995).
- ``unit_range``: module paths whose outputs are hard-sigmoids, their range forced to [0, 1]
  instead of the calibrated min/max (MobileNetV3's squeeze-excitation gates; the fix that
  rescued V3 int8 in onnxruntime-qnn and NNCF). A default for every V3 export.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from edgeexport.int8.layer_names import module_prefixes, onnx_layer, tflite_layer

UNIT_RANGE_OPS = ("Hardsigmoid",)
# Range methods: onnxruntime's calibrators; MovingAverage is its MinMax calibrator averaging
# the per-image minima and maxima (CalibMovingAverage), as ai-edge-quantizer's default does.
RANGE_METHODS = ("MinMax", "MovingAverage", "Entropy", "Percentile", "MSE")


@dataclass(frozen=True)
class PrecisionPlan:
    keep: tuple[str, ...] = ()
    unit_range: tuple[str, ...] = ()
    ranges: str = "MinMax"
    # How the conv weights reach the quantizer's grid: each to its nearest level, or "GPTQ"
    # (edgeexport.int8.weight_rounding: each layer's output error on the calibration images).
    weight_rounding: str = "nearest"
    every_layer: bool = False  # the repair ladder's last rungs: every activation at 16 bits
    # TFLite's very last rung: the model's input and output at 16 bits too (int16 I/O). An
    # int8 interface can cap a heavy-tailed network however the inside is quantized: measured
    # on a trained V3-Large (seed 1), every activation 16-bit with int8 I/O 0.825 top-1
    # agreement with the fp32 file, with int16 I/O 0.999 cosine, 0.99 agreement.
    wide_io: bool = False
    # The ladder's float rungs, past every activation at 16 bits: modules left out of
    # quantization altogether, weights and all (onnxruntime: nodes_to_exclude; ai-edge-
    # quantizer: NO_QUANTIZE). Every module in float computes what the fp32 file computes, so
    # the ladder ends at a plan that holds by construction (but for TFLite's 8-bit interface).
    float_layers: tuple[str, ...] = ()
    # The app file's last widening: its output dequantized to float32 (its input stays uint8
    # pixels). An 8-bit output caps a network whose logits span a wide range: measured on a
    # V1 trained 50 steps at a constant rate, every module in float with uint8 output 0.942.
    float_output: bool = False

    @classmethod
    def defaults(cls, model) -> "PrecisionPlan":
        """Hard-sigmoid outputs at [0, 1] (V3); nothing kept."""
        names = tuple(name for name, m in model.named_modules()
                      if type(m).__name__ in UNIT_RANGE_OPS)
        return cls(unit_range=names)

    def with_keep(self, layers) -> "PrecisionPlan":
        return replace(self, keep=tuple(layers))

    def with_float(self, layers) -> "PrecisionPlan":
        return replace(self, float_layers=tuple(layers))

    def float_scopes(self) -> set[str]:
        """The modules a float layer takes with it: its parent and everything under it. A
        layer of the error map is where a quantized tensor appears (a Conv's activation, a
        residual add), and what produces it (the Conv before the activation) must be left
        out with it."""
        return {f.rsplit(".", 1)[0] for f in self.float_layers}

    def in_float(self, module: str | None) -> bool:
        scopes = self.float_scopes()
        return module is not None and (module in self.float_layers or module in scopes or any(
            module.startswith(scope + ".") for scope in scopes))

    def onnx_float_nodes(self, graph) -> list[str]:
        """Names of the nodes of the float modules (quantize_static's nodes_to_exclude)."""
        return [node.name for node in graph.node if self.in_float(onnx_layer(node.name))]

    def with_ranges(self, method: str) -> "PrecisionPlan":
        return replace(self, ranges=method)

    def with_rounding(self, rounding: str) -> "PrecisionPlan":
        return replace(self, weight_rounding=rounding)

    # ---- onnxruntime (quantize_static extra_options) ----

    def true_ranges(self) -> bool:
        """Whether the model's input and the kept tensors need min/max ranges other than
        ``ranges`` gives."""
        return self.ranges != "MinMax"

    def onnx_true_range_tensors(self, graph) -> list[str]:
        """The model's input (its width unchanged) and the output tensors quantized at 16
        bits (the hard-sigmoid gates keep [0, 1])."""
        inputs = [i.name for i in graph.input]
        return inputs + [node.output[0] for node in graph.node
                         if onnx_layer(node.name) not in self.unit_range
                         and (self.every_layer or onnx_layer(node.name) in self.keep)]

    def onnx_tensor_overrides(self, graph, activation_16bit,
                              true_ranges: dict[str, tuple[float, float]] | None = None) -> dict:
        """TensorQuantOverrides for the fp32 graph: 16-bit kept outputs (at ``true_ranges``,
        tensor → (min, max), where given), [0, 1] gates."""
        import numpy as np
        overrides = {}
        for name in [i.name for i in graph.input]:
            if true_ranges and name in true_ranges:
                low, high = true_ranges[name]
                overrides[name] = [{"rmin": np.float32(low), "rmax": np.float32(high)}]
        for node in graph.node:
            layer = onnx_layer(node.name)
            wide = {"quant_type": activation_16bit}
            if layer in self.unit_range:
                overrides[node.output[0]] = [
                    {"rmin": np.float32(0), "rmax": np.float32(1),
                     **(wide if self.every_layer or layer in self.keep else {})}]
            elif layer in self.keep or self.every_layer:
                if true_ranges and node.output[0] in true_ranges:
                    low, high = true_ranges[node.output[0]]
                    wide = {**wide, "rmin": np.float32(low), "rmax": np.float32(high)}
                overrides[node.output[0]] = [wide]
        return overrides

    # ---- ai-edge-quantizer ----

    def tflite_keep_regex(self, interpreter, layer_names) -> str | None:
        """A regex matching the op scopes of the kept tensors (ai-edge-quantizer's scope: the
        op's output tensor names, each followed by ``;``)."""
        kept = self.tflite_kept_tensors(interpreter, layer_names)
        if not kept:
            return None
        return _scope_regex(kept)

    def tflite_kept_tensors(self, interpreter, layer_names) -> list[str]:
        """The output tensors of the kept modules and of the ops reading them. The readers
        are kept too: an int8 reader would requantize the 16-bit tensor to 8 bits over the
        same range, and the fine steps would be lost before they are used (onnxruntime's
        reader takes the 16-bit tensor as it is)."""
        written = set(self.tflite_written_tensors(interpreter, layer_names, self.keep))
        names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
        ops = interpreter._get_ops_details()
        readers = {names[o] for op in ops if any(names.get(i) in written for i in op["inputs"])
                   for o in op["outputs"]}
        return sorted(written | readers)

    @staticmethod
    def tflite_written_tensors(interpreter, layer_names, modules) -> list[str]:
        """The output tensors of the ops of ``modules`` (ai-edge-quantizer's op scopes)."""
        names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
        known = module_prefixes(layer_names)
        return sorted({names[o] for op in interpreter._get_ops_details() for o in op["outputs"]
                       if tflite_layer(names[o], known) in modules})

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

    def tflite_float_outputs(self, interpreter) -> set[str]:
        """The output tensors of the ops of the float modules."""
        if not self.float_layers:
            return set()
        names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
        known = module_prefixes(sorted(set(self.float_layers) | self.float_scopes()))
        return {names[o] for op in interpreter._get_ops_details() for o in op["outputs"]
                if self.in_float(tflite_layer(names[o], known))}

    def litert_recipe(self, interpreter, qsvs: dict, config,
                      true_qsvs: dict | None = None) -> tuple[dict, list]:
        """The calibrated ranges and the static int8 recipe, adjusted by this plan.
        ``true_qsvs``: min/max ranges over the calibration set, taken by the kept tensors."""
        from ai_edge_quantizer import qtyping, recipe_manager
        from ai_edge_quantizer.algorithm_manager import AlgorithmName

        from edgeexport.int8.layer_names import tflite_module_outputs
        layers = list(self.keep) + list(self.unit_range)
        if true_qsvs is not None:  # the model's input and the kept tensors
            kept = (list(true_qsvs) if self.every_layer else
                    [d["name"] for d in interpreter.get_input_details()]
                    + self.tflite_kept_tensors(interpreter, layers))
            qsvs = {**qsvs, **{t: true_qsvs[t] for t in kept if t in true_qsvs}}
        qsvs = self.tflite_unit_range(qsvs, tflite_module_outputs(interpreter, layers))
        regex = ".*" if self.every_layer else self.tflite_keep_regex(interpreter, layers)
        if regex is None:
            return qsvs, config
        manager = recipe_manager.RecipeManager()
        manager.load_quantization_recipe(config)
        every = qtyping.TFLOperationName.ALL_SUPPORTED
        # ".*" replaces the int8 recipe's own ".*" entry: an op with no int16 kernel
        # (HARD_SWISH) then stays float instead of falling back to int8 over the true
        # min/max (measured on a collapsing V3-Large: 0.997 against 0.820).
        manager.add_static_config(regex=regex, operation_name=every,
                                  activation_num_bits=16, weight_num_bits=8)
        prologue, interface = _io_ops(interpreter)
        if self.float_layers:
            floats = prologue | (self.tflite_float_outputs(interpreter) - interface)
            manager.add_quantization_config(
                regex=_scope_regex(floats),
                operation_name=every, algorithm_key=AlgorithmName.NO_QUANTIZE)
        boundary = set() if self.float_layers else set(prologue)
        if not self.wide_io:
            # int8 I/O (apps and the uint8 interface need it), whatever else the plan keeps.
            boundary |= interface
        if boundary:
            manager.add_static_config(
                regex=_scope_regex(boundary),
                operation_name=every, activation_num_bits=8, weight_num_bits=8)
        return qsvs, manager.get_quantization_recipe()

    def to_json(self) -> dict:
        return {"activation_ranges": self.ranges,
                "weight_rounding": self.weight_rounding,
                "kept_16bit_activations": list(self.keep),
                "float_layers": list(self.float_layers),
                "hard_sigmoid_range_0_1": list(self.unit_range)}


def _io_ops(interpreter) -> tuple[set[str], set[str]]:
    """(prologue, interface): op scopes (output tensor names) at the model's input and output.
    The prologue: from the input, the ops of no module (the app file's pixel normalisation,
    MUL and ADD). 16-bit, their ADD failed to prepare (add.cc: input1_shift <= 0), so they stay
    int8, and in float on the float rungs: at 8 bits the normalised pixels move by up to half a
    pixel step, and a network trained 50 steps at a constant rate held no better than 0.942
    with every module in float. The interface: the ops reading the input (past the prologue)
    and writing the output, which keep the interface's width (8 bits, or 16 with wide_io)."""
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    inputs = {d["index"] for d in interpreter.get_input_details()}
    readers = {o for op in ops if inputs & set(op["inputs"]) for o in op["outputs"]}
    prologue, grown = set(), {o for o in readers if "/" not in names[o]}
    while grown - prologue:
        prologue |= grown
        grown = {o for op in ops if prologue & set(op["inputs"]) for o in op["outputs"]
                 if "/" not in names[o]}
    prologue_names = {names[o] for o in prologue}
    interface = ({d["name"] for d in interpreter.get_output_details()
                  + interpreter.get_input_details()} | {names[o] for o in readers})
    return prologue_names, interface - prologue_names


def _scope_regex(tensors) -> str:
    """ai-edge-quantizer's regex for the ops writing ``tensors`` (an op's scope: its output
    tensor names, each followed by ``;``)."""
    return "^(" + "|".join(re.escape(t) for t in sorted(tensors)) + ");$"
