"""The data that flows between pipeline stages, written down once.

No torch import here: the light device install reads these too.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from edgeexport.core.errors import UserError
from edgeexport.models import family

MIN_RESOLUTION = 32  # five stride-2 stages leave 1×1 before the global pool

# The op kinds of a static analysis row (assigned by ``edgeexport.analysis.count.op_kind``).
COMPUTE_OPS = ("conv", "depthwise", "pointwise", "linear", "se")  # rows that carry MACs
DENSE_OPS = ("conv", "pointwise", "linear", "se")  # compute rows that are not depthwise
ELEMENTWISE_OPS = ("add", "mul", "pool")  # residual add, squeeze-excitation scale, pooling
# hard-swish is a kind of its own: runtimes run it as a kernel (ReLU/ReLU6 "act" rows fuse into
# the conv before them), and the latency model costs it (issue 14).
OP_KINDS = COMPUTE_OPS + ("bn", "act", "hardswish") + ELEMENTWISE_OPS


@dataclass(frozen=True)
class Variant:
    """What is deployed: a family at a width multiplier α and an input resolution."""
    family: str
    alpha: float
    resolution: int
    num_classes: int = 1000

    @property
    def id(self) -> str:
        return f"{self.family}_{self.alpha:g}_{self.resolution}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_variant(variant: Variant) -> Variant:
    """Reject a variant the networks cannot be built at, naming the problem."""
    try:
        family(variant.family)
    except ValueError as e:
        raise UserError(str(e)) from None
    if not (isinstance(variant.alpha, (int, float)) and math.isfinite(variant.alpha)
            and variant.alpha > 0):
        raise UserError(f"alpha must be a number > 0, got {variant.alpha!r}")
    if variant.resolution < MIN_RESOLUTION:
        raise UserError(f"resolution must be an integer ≥ {MIN_RESOLUTION}, "
                        f"got {variant.resolution}")
    if variant.num_classes < 1:
        raise UserError(f"num_classes must be ≥ 1, got {variant.num_classes}")
    return variant


@dataclass
class LayerCost:
    """One row of the static analysis; ``name`` is the module path every stage keys on."""
    name: str
    op: str
    input_shape: list[int]
    output_shape: list[int]
    params: int
    macs: int
    weight_bytes_fp32: int
    weight_bytes_int8: int
    activation_bytes_fp32: int
    activation_bytes_int8: int


@dataclass
class SeparableBlock:
    """A depthwise + pointwise pair against the standard convolution it replaces."""
    depthwise: str
    pointwise: str
    kernel: int
    in_channels: int
    out_channels: int
    separable_macs: int
    standard_macs: int

    @property
    def ratio(self) -> float:
        return self.separable_macs / self.standard_macs

    @property
    def formula_ratio(self) -> float:
        """1/N + 1/K² (Howard et al. 2017, eq. 5)."""
        return 1 / self.out_channels + 1 / self.kernel ** 2


@dataclass
class Analysis:
    variant: Variant
    layers: list[LayerCost]
    separable: list[SeparableBlock] = field(default_factory=list)

    @property
    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def total_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    SCHEMA_VERSION = 1

    def to_json(self) -> dict[str, Any]:
        sep_macs = sum(b.separable_macs for b in self.separable)
        std_macs = sum(b.standard_macs for b in self.separable)
        return {
            "schema_version": self.SCHEMA_VERSION,
            "variant": self.variant.to_json(),
            "variant_id": self.variant.id,
            "total_params": self.total_params,
            "total_macs": self.total_macs,
            "total_weight_bytes_fp32": sum(x.weight_bytes_fp32 for x in self.layers),
            "total_weight_bytes_int8": sum(x.weight_bytes_int8 for x in self.layers),
            "layers": [asdict(x) for x in self.layers],
            "separable": {
                "blocks": [dict(asdict(b), ratio=b.ratio, formula_ratio=b.formula_ratio)
                           for b in self.separable],
                "separable_macs": sep_macs,
                "standard_macs": std_macs,
                "ratio": sep_macs / std_macs if std_macs else None,
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Analysis":
        """Inverse of ``to_json`` (totals and ratios are derived, not read). ValueError if the
        data is of another schema version or malformed."""
        if not isinstance(data, dict) or data.get("schema_version") != cls.SCHEMA_VERSION:
            raise ValueError(f"analysis schema version "
                             f"{data.get('schema_version') if isinstance(data, dict) else None!r}"
                             f", expected {cls.SCHEMA_VERSION}")
        try:
            blocks = [{k: v for k, v in b.items() if k not in ("ratio", "formula_ratio")}
                      for b in data["separable"]["blocks"]]
            return cls(Variant(**data["variant"]), [LayerCost(**x) for x in data["layers"]],
                       [SeparableBlock(**b) for b in blocks])
        except (KeyError, TypeError) as e:
            raise ValueError(f"malformed analysis ({e.__class__.__name__}: {e})") from None

    @property
    def separable_ratio(self) -> float | None:
        std = sum(b.standard_macs for b in self.separable)
        return sum(b.separable_macs for b in self.separable) / std if std else None
