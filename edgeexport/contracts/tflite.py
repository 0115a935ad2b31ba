"""The .tflite records card.json carries: the oldest runtime each file needs
(``app_tflite.runtime_requirements``) and how XNNPACK splits model.int8.tflite
(``tflite.xnnpack``). Written by edgeexport.tflite, read everywhere else. No torch import."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class RuntimeRequirement:
    """card.json → app_tflite.runtime_requirements[file]."""
    min_runtime: str | None  # None: some operator version is not in the table
    limiting: list[str]      # the operator versions that set it (or are unknown)
    op_versions: dict[str, int]
    declared_versions_raised: list[str]
    source: str = ("TFLite op_version.cc (version by input type) and runtime_version.cc "
                   "(op version → runtime), rows copied in edgeexport/tflite/runtime_version.py")


@dataclass(frozen=True)
class NotDelegated:
    index: int  # the op's index in the .tflite's operator list
    op: str
    why: str


@dataclass(frozen=True)
class XnnpackDelegation:
    """card.json → tflite.xnnpack (of model.int8.tflite)."""
    measured_with: str  # the LiteRT whose delegate was asked
    ops: int
    partitions: int
    not_delegated: list[NotDelegated] = field(default_factory=list)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "XnnpackDelegation":
        return cls(str(data["measured_with"]), int(data["ops"]), int(data["partitions"]),
                   [NotDelegated(int(n["index"]), str(n["op"]), str(n["why"]))
                    for n in data["not_delegated"]])

