"""The ARM check's record (``arm_check.json`` of a variant, and the ``arm`` section of its
card): per model file, the emulated ARM board's outputs against this machine's on the same
inputs, and for ONNX the graph onnxruntime optimised on each side.

Emulated figures are correctness and graph facts only: no time, no energy, never fitted.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

EMULATED_NOTE = "emulated: correctness and graph facts only"


@dataclass
class ArmFile:
    """One model file: emulated ARM outputs against x86 outputs on the same raw inputs."""
    file: str
    runtime: str                  # onnxruntime | litert
    inputs: int
    cosine_mean: float            # of the (dequantized) outputs, ARM vs x86, per input
    cosine_min: float
    top1_agreement: float         # share of inputs with the same arg-max on both
    max_abs_diff: float           # dequantized outputs
    bit_identical: float          # share of output values equal bit for bit
    inputs_identical: float       # share of inputs whose whole output is bit-identical
    tolerance: str                # what the file must hold, in words
    enforced: bool                # False: reported, not enforced (a random network's int8)
    passed: bool
    # ONNX: op kind → {"quantized": n, "float": n} in onnxruntime's optimised graph
    ops_arm: dict[str, dict[str, int]] | None = None
    ops_x86: dict[str, dict[str, int]] | None = None

    def compute_ops(self, side: str) -> dict[str, int] | None:
        """Totals over op kinds: {"quantized": n, "float": n} on ``side`` ("arm"/"x86")."""
        ops = self.ops_arm if side == "arm" else self.ops_x86
        if ops is None:
            return None
        return {k: sum(v[k] for v in ops.values()) for k in ("quantized", "float")}


@dataclass
class ArmCheck:
    """A variant's ARM check on one emulated board."""
    FILE: ClassVar[str] = "arm_check.json"
    SCHEMA_VERSION: ClassVar[int] = 1

    board: str                    # rpi4 | rpi5
    core: str                     # the QEMU core: cortex-a72 | cortex-a76
    note: str                     # EMULATED_NOTE
    images: str                   # which inputs, how many
    arm: dict[str, str]           # the emulated side: machine, cpu features, runtime versions
    x86: dict[str, str]           # this machine's side
    files: list[ArmFile] = field(default_factory=list)
    passed: bool = True
    failures: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": self.SCHEMA_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict) -> "ArmCheck":
        """Raises ValueError on another schema version or a malformed record."""
        if not isinstance(data, dict) or data.get("schema_version", cls.SCHEMA_VERSION) != \
                cls.SCHEMA_VERSION:
            raise ValueError(f"{cls.FILE}: schema version "
                             f"{data.get('schema_version') if isinstance(data, dict) else None!r}"
                             f", this edgeexport reads {cls.SCHEMA_VERSION}")
        fields = {k: v for k, v in data.items() if k != "schema_version"}
        try:
            fields["files"] = [ArmFile(**f) for f in fields.get("files", [])]
            return cls(**fields)
        except TypeError as e:
            raise ValueError(f"{cls.FILE}: malformed ({e})") from None
