"""card.json → app_tflite: how an app calls model.app.tflite, the oldest TFLite runtime each
.tflite needs, and the other runtimes it was measured in. No torch import (artifacts reads it
on the device install)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from edgeexport.contracts.tflite import RuntimeRequirement


@dataclass
class RuntimeCheck:
    """card.json → app_tflite.runtime_checks[i]: one measured comparison."""
    runtime: str
    reference: str
    images: str
    files: dict[str, dict]

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class AppTflite:
    """How an app calls model.app.tflite."""
    file: str
    input: dict
    output: dict
    xnnpack: dict
    metadata: dict
    operators: dict[str, int]
    how_to_call: str


@dataclass
class AppCard:
    app: AppTflite
    runtime_requirements: dict[str, RuntimeRequirement]  # .tflite file → oldest runtime
    runtime_checks: list[RuntimeCheck] = field(default_factory=list)  # only what was run
