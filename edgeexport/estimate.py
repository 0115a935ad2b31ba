"""Estimated per-layer latency and energy on a target that is not the machine running the
command, from the target's fitted cost model. Always labelled as an estimate."""
from __future__ import annotations

from dataclasses import asdict

from edgeexport.artifacts import Estimated, EstimatedEndToEnd, LayerLatency
from edgeexport.energy import energy_summary, layer_energy_uj
from edgeexport.errors import UserError
from edgeexport.latency_model import layer_ms
from edgeexport.records import Analysis
from edgeexport.targets import Target

MODEL_NAME = "edgeexport per-layer linear cost model (MACs by op kind, bytes, kernels)"


def estimate(analysis: Analysis, target: Target, precision: str) -> Estimated:
    model = target.latency_model
    if model is None:
        raise UserError(f"target {target.name} has no latency model: measure on it with "
                        "`edgeexport profile`, or fit one with `edgeexport calibrate`")
    coeffs = getattr(model, precision)
    layers = [LayerLatency(x.name, x.op, layer_ms(x, coeffs, precision), x.macs, x.params,
                           energy_uj=layer_energy_uj(x, precision)) for x in analysis.layers]
    latency = sum(x.latency_ms for x in layers) + coeffs.fixed_ms
    return Estimated(
        target=target.name, runtime=model.runtime,
        model={"name": MODEL_NAME, "coefficients": asdict(coeffs), "source": model.source,
               "known_error": model.known_error},
        precision=precision, variant=analysis.variant,
        end_to_end=EstimatedEndToEnd(latency_ms=latency, fixed_ms=coeffs.fixed_ms),
        layers=layers,
        energy=energy_summary(latency, sum(x.energy_uj for x in layers), target))
