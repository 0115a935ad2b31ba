"""Estimated per-layer latency and energy on a target that is not the machine running the
command, from the target's fitted cost model for one runtime. Always labelled as an estimate:
which runtime's model, at which clock and thread count, with its known error."""
from __future__ import annotations

from dataclasses import asdict, replace

from edgeexport.contracts.artifacts import Estimated, EstimatedEndToEnd, LayerLatency
from edgeexport.contracts.variant import Analysis
from edgeexport.core.errors import UserError
from edgeexport.estimate.energy import energy_summary, layer_energy_uj
from edgeexport.estimate.latency_model import CLOCK_RULE, at_clock, layer_ms
from edgeexport.targets import LatencyModel, Target

MODEL_NAME = ("edgeexport per-layer linear cost model (MACs by op kind, bytes, dense-conv "
              "pixels, kernels, hard-swish and SE-scale bytes)")


def target_clock_mhz(target: Target, model: LatencyModel) -> float:
    """The clock an estimate is for by default: the target's, else the fit's."""
    ghz = target.cpu.get("freq_ghz")
    return model.clock_mhz if ghz is None else ghz * 1000


def estimate(analysis: Analysis, target: Target, precision: str, runtime: str | None = None,
             clock_mhz: float | None = None, threads: int | None = None) -> Estimated:
    """Estimate ``analysis`` on ``target`` with the model of ``runtime`` (None: the target's
    first) at ``clock_mhz`` (None: the target's clock). ``threads``, if given, must be the
    model's: no rule moves a model to another thread count."""
    model = target.latency_model_for(runtime)
    if threads is not None and threads != model.threads:
        raise UserError(f"target {target.name}: the {model.name} latency model was measured at "
                        f"{model.threads} thread(s), not {threads}; fit one at {threads} with "
                        "`edgeexport fit-latency --threads` under another runtime name")
    fit = getattr(model, precision)
    if fit is None:
        raise UserError(f"target {target.name}: the {model.name} latency model has no "
                        f"{precision} fit")
    clock = target_clock_mhz(target, model) if clock_mhz is None else clock_mhz
    coeffs = at_clock(fit.coefficients, model.clock_mhz, clock)
    layers = [LayerLatency(x.name, x.op, layer_ms(x, coeffs, precision), x.macs, x.params,
                           energy_uj=layer_energy_uj(x, precision)) for x in analysis.layers]
    latency = sum(x.latency_ms for x in layers) + coeffs.fixed_ms
    energy = energy_summary(latency, sum(x.energy_uj for x in layers), target)
    if fit.load_w is not None:  # the board power measured while this runtime ran
        energy = replace(energy, board_mj=latency * fit.load_w, board_source=(
            f"latency × {fit.load_w:.2f} W, the board power measured while {model.runtime} "
            f"ran {precision} networks at {model.clock_mhz:g} MHz ({model.power_source})"))
    family = analysis.variant.family
    return Estimated(
        target=target.name, runtime=model.name,
        model={"name": MODEL_NAME, "runtime": model.runtime, "clock_mhz": clock,
               "fit_clock_mhz": model.clock_mhz, "threads": model.threads,
               "clock_rule": None if clock == model.clock_mhz else
               f"scaled from the fit's {model.clock_mhz:g} MHz to {clock:g} MHz: {CLOCK_RULE}",
               "coefficients": asdict(coeffs), "source": model.source,
               "known_error": model.known_error,
               "known_error_family": _family_error(fit.loo_max_abs_error_by_family, family,
                                                   precision) or model.known_error},
        precision=precision, variant=analysis.variant,
        end_to_end=EstimatedEndToEnd(latency_ms=latency, fixed_ms=coeffs.fixed_ms),
        layers=layers, energy=energy)


def _family_error(by_family: dict[str, float] | None, family: str, precision: str) -> str | None:
    """The fit's leave-one-out error on this family, or why there is none (None: the model
    was not fitted to measurements, its known_error says what it is)."""
    if by_family is None:
        return None
    if family not in by_family:
        return (f"{family} was not among the networks this model was fitted to: its error is "
                "not known")
    return f"{family}, {precision}: leave-one-out max |error| {100 * by_family[family]:.1f}%"
