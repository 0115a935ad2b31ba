"""Energy proxies. Two, never mixed, each saying what it is:

(a) compute/memory proxy per layer: MACs × energy per MAC at the dtype + bytes moved × energy
    per byte. Constants: Horowitz, "Computing's energy problem", ISSCC 2014 (45 nm): fp32 MAC
    = mult 3.7 pJ + add 0.9 pJ; int8 MAC = int8 mult 0.2 pJ + int32 accumulate 0.1 pJ; memory
    per 32-bit access: DRAM 640 pJ, SRAM 5 pJ (Han et al. 2015). Weights are counted as read
    once from DRAM, activations (input + output) as SRAM traffic. A 45 nm model: it ranks
    layers and variants; its absolute values are not a Cortex-A72's.
(b) board energy per inference: latency × the target's measured board power under load.
"""
from __future__ import annotations

from edgeexport.contracts.artifacts import Energy
from edgeexport.contracts.variant import LayerCost

MAC_PJ = {"fp32": 3.7 + 0.9, "int8": 0.2 + 0.1}
DRAM_PJ_PER_BYTE = 640 / 4
SRAM_PJ_PER_BYTE = 5 / 4
COMPUTE_MODEL = ("Horowitz ISSCC 2014, 45 nm: MAC fp32 4.6 pJ, int8 0.3 pJ (int32 accumulate); "
                 "weights from DRAM 160 pJ/B, activations via SRAM 1.25 pJ/B")


def layer_energy_uj(layer: LayerCost, precision: str) -> float:
    weights = getattr(layer, f"weight_bytes_{precision}")
    activations = getattr(layer, f"activation_bytes_{precision}")
    pj = (layer.macs * MAC_PJ[precision] + weights * DRAM_PJ_PER_BYTE
          + activations * SRAM_PJ_PER_BYTE)
    return pj * 1e-6


def board_energy_mj(latency_ms: float, load_w: float | None) -> float | None:
    """W × ms = mJ."""
    return None if load_w is None else latency_ms * load_w


def energy_summary(latency_ms: float, compute_uj: float | None, target) -> Energy:
    return Energy(
        board_mj=board_energy_mj(latency_ms, target.load_w),
        board_source=(f"latency × {target.load_w} W board power under load ({target.name}: "
                      f"{target.power_source})" if target.load_w is not None
                      else f"unknown: target {target.name} has no [power] table"),
        compute_uj=compute_uj,
        compute_source=COMPUTE_MODEL)
