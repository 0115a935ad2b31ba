"""Why an int8 model drifts: activation tensors whose range is set by a few images.

Post-training int8 gives every activation tensor one range for all inputs. When one
calibration image drives a tensor far beyond the others, min/max spends the 256 levels on it
and the other images keep a handful. Measured on a MobileNetV3 trained for 250 steps here:
late layers reached 25–100× the median image's maximum and int8 cosine fell to 0.35; the same
network trained to convergence stayed under 20× and kept cosine ≥ 0.99. The drift error names
these layers, so the user knows where and why.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from edgeexport.core.runtimes import session_options


@dataclass(frozen=True)
class ActivationTail:
    layer: str    # module path: the ONNX node names are module paths (onnx_export)
    ratio: float  # the largest image's max |x| over the median image's max |x|


def activation_tails(fp32_path: Path, inputs: np.ndarray, top: int = 3) -> list[ActivationTail]:
    """The ``top`` layers with the heaviest-tailed outputs over ``inputs``, worst first."""
    import onnxruntime as ort
    proto = onnx.load(str(fp32_path))
    layer_of = {out: node.name.split("/")[0] for node in proto.graph.node for out in node.output}
    del proto.graph.output[:]
    proto.graph.output.extend(onnx.ValueInfoProto(name=name) for name in layer_of)
    session = ort.InferenceSession(proto.SerializeToString(), session_options(),
                                   providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    peaks = np.array([[float(np.abs(t).max()) for t in session.run(None, {input_name: x[None]})]
                      for x in inputs])  # images × tensors
    median = np.median(peaks, axis=0)
    worst: dict[str, float] = {}
    for name, high, mid in zip(layer_of, peaks.max(axis=0), median):
        if mid > 0:
            worst[layer_of[name]] = max(worst.get(layer_of[name], 0.0), float(high / mid))
    ranked = sorted(worst.items(), key=lambda item: (-item[1], item[0]))[:top]
    return [ActivationTail(layer, ratio) for layer, ratio in ranked]


def describe(tails: list[ActivationTail]) -> str:
    listed = ", ".join(f"{t.layer} {t.ratio:.0f}×" for t in tails)
    return (f"heaviest-tailed activations (largest calibration image / median image): "
            f"{listed}; int8 keeps one range per tensor, so train the network further "
            f"or drop --no-repair / --int8 strict to keep the most sensitive layers at 16 "
            f"bits")
