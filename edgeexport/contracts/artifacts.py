"""Every file a stage writes, written down once: its name, its typed record, its schema version.

Writers build a record and call ``write_record``; readers call ``read_record`` and get the
record back, never a raw dict. A file written with another ``schema_version`` (or unreadable)
raises ``ArtifactError``: a build treats that variant as stale and rebuilds it instead of
misreading it. No torch import: the light device install reads these too.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from edgeexport.contracts.app import AppCard
from edgeexport.contracts.arm import ArmCheck
from edgeexport.contracts.int8 import ErrorMap, RepairCost, RepairSummary
from edgeexport.contracts.placement import Placement
from edgeexport.contracts.tflite import XnnpackDelegation
from edgeexport.contracts.variant import Variant
from edgeexport.core.board_facts import BoardFacts
from edgeexport.core.errors import UserError
from edgeexport.core.fileio import write_json
from edgeexport.core.validate import Comparison

# ---- file names -------------------------------------------------------------------------
ANALYSIS = "analysis.json"
CARD = "card.json"
PROFILE = "profile.json"
ESTIMATE = "estimate.json"
BUILD = "build.json"
REPAIR_COSTS = "int8_repair_cost.json"
INDEX = "index.json"
REPORTS = ("report.html", "report.md", "report.json")
PRECISIONS = ("int8", "fp32")
FORMATS = ("onnx", "tflite")


def model_file(precision: str, fmt: str) -> str:
    """``model.int8.tflite`` and its siblings."""
    return f"model.{precision}.{fmt}"


# Keys of card.validation: which file was checked against which reference.
ONNX_FP32_VS_PYTORCH = "onnx_fp32_vs_pytorch"
ONNX_INT8_VS_ONNX_FP32 = "onnx_int8_vs_onnx_fp32"
TFLITE_FP32_VS_PYTORCH = "tflite_fp32_vs_pytorch"
TFLITE_INT8_VS_PYTORCH = "tflite_int8_vs_pytorch"
TFLITE_APP_VS_PYTORCH = "tflite_app_vs_pytorch"


def measurement_key(runtime: str, precision: str) -> str:
    """Key of one measurement in profile.json: ``onnxruntime_int8``, ``litert_fp32``."""
    return f"{runtime}_{precision}"


class ArtifactError(UserError):
    """A stage's file is missing, corrupt or of another schema version."""


# ---- (de)serialisation of nested dataclasses ----------------------------------------------
T = TypeVar("T")


def _decode(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        return _decode(options[0], value) if len(options) == 1 else value
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value)
    if origin is list:
        (item,) = typing.get_args(tp)
        return [_decode(item, v) for v in value]
    if origin is dict:
        _, item = typing.get_args(tp)
        return {k: _decode(item, v) for k, v in value.items()}
    if tp is float and isinstance(value, int):
        return float(value)
    return value


def _from_dict(cls: type[T], data: dict) -> T:
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = set(data) - known - {"schema_version"}
    if unknown:
        raise TypeError(f"{cls.__name__}: unknown field(s) {', '.join(sorted(unknown))}")
    return cls(**{k: _decode(hints[k], v) for k, v in data.items() if k in known})


def decode(cls: type[T], data: Any) -> T:
    """A record part (not a whole file) from its JSON, e.g. a ``Measured`` printed by
    ``edgeexport profile --json`` on a board. ArtifactError if malformed."""
    try:
        return _from_dict(cls, data)
    except (TypeError, ValueError, AttributeError, KeyError) as e:
        raise ArtifactError(f"malformed {cls.__name__} ({e})") from None


class Record:
    """A dataclass written as one JSON file, with ``FILE`` and ``SCHEMA_VERSION``."""
    FILE: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int] = 1

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": self.SCHEMA_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls: type[T], data: dict) -> T:
        version = data.get("schema_version") if isinstance(data, dict) else None
        if version != cls.SCHEMA_VERSION:
            raise ArtifactError(f"{cls.FILE}: schema version {version!r}, this edgeexport "
                                f"reads {cls.SCHEMA_VERSION} (rebuild it)")
        try:
            return _from_dict(cls, data)
        except (TypeError, ValueError, AttributeError, KeyError) as e:
            raise ArtifactError(f"{cls.FILE}: malformed ({e})") from None


R = TypeVar("R", bound=Record)


def write_record(directory: Path, record: Record) -> Path:
    path = directory / record.FILE
    write_json(path, record.to_json())
    return path


def read_record(directory: Path, cls: type[R]) -> R:
    """The record in ``directory/cls.FILE``; ArtifactError if missing, corrupt or stale."""
    path = directory / cls.FILE
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path}: unreadable ({e.__class__.__name__})") from None
    try:
        return cls.from_json(data)
    except ArtifactError as e:
        raise ArtifactError(f"{directory}/{e}") from None


# ---- shared parts ------------------------------------------------------------------------
@dataclass
class FileEntry:
    sha256: str
    bytes: int


@dataclass
class Tolerances:
    fp32_max_abs_diff_relative: float
    int8_min_mean_cosine: float
    int8_enforced: bool
    int8_min_top1_agreement: float = 0.95


@dataclass
class Energy:
    board_mj: float | None
    board_source: str
    compute_uj: float | None
    compute_source: str


@dataclass
class LayerLatency:
    """One row of a per-layer latency table, measured or estimated, joined on the layer name."""
    name: str
    op: str
    latency_ms: float
    macs: int | None
    params: int | None
    energy_uj: float | None = None
    kernels: list[str] | None = None  # measured: the onnxruntime kernels attributed to it


# ---- card.json ---------------------------------------------------------------------------
@dataclass
class WeightsInfo:
    source: str  # the weights file's name, or "random initialisation (seed N)"
    sha256: str | None = None
    batchnorm: str | None = None  # random weights: how the BatchNorm statistics were set
    note: str | None = None


@dataclass
class ModelInput:
    name: str
    layout: str
    dtype: str
    shape: list[int]
    preprocessing: dict[str, Any]  # edgeexport.inputs.imagesets.Preprocessing.to_json()


@dataclass
class ModelOutput:
    name: str
    shape: list[int]
    dtype: str
    meaning: str


@dataclass
class ImageSetInfo:
    """A calibration or validation image set, by content hash."""
    source: str
    synthetic: bool
    images: int
    labelled: bool
    classes: list[str] | None
    sha256: str
    method: str | None = None  # calibration only: MinMax / Entropy / Percentile


@dataclass
class OnnxInt8Info:
    format: str
    weights: str
    activations: str
    activation_type_source: str
    input_quantization: dict[str, Any] | None  # scale, zero_point, dtype of the input Q node
    quantized_ops_here: dict[str, dict[str, int]]  # op → {quantized, float} after ORT's fusion


@dataclass
class TfliteInfo:
    """How an app calls each .tflite file (input/output specs), and what is inside the int8
    one (operators, quantization)."""
    runtime: str
    metadata: str
    fp32: dict[str, Any]
    int8: dict[str, Any]
    xnnpack: XnnpackDelegation | None = None  # int8 file: partitions, ops left to TFLite


@dataclass
class Card(Record):
    """What an export wrote and how each file was validated; how to call the models.
    Version 2: int8_repair records range methods, ladder rungs and the precision shipped.
    Version 3: the repair's measured latency moved out, to RepairCosts."""
    FILE: ClassVar[str] = CARD
    SCHEMA_VERSION: ClassVar[int] = 3

    variant: Variant
    params: int
    macs: int
    weights: WeightsInfo
    input: ModelInput
    output: ModelOutput
    labels: list[str] | None
    onnx_int8: OnnxInt8Info
    tflite: TfliteInfo | None
    calibration: ImageSetInfo
    validation_set: ImageSetInfo
    validation: dict[str, Comparison]
    tolerances: Tolerances
    target: str
    tools: dict[str, str]
    warnings: list[str]
    files: dict[str, FileEntry] = field(default_factory=dict)
    app_tflite: AppCard | None = None  # model.app.tflite, runtime needs and checks (issue 12)
    int8_error_map: ErrorMap | None = None  # edgeexport.int8.error_map
    int8_repair: RepairSummary | None = None  # repair
    # board → the emulated ARM check of the files (edgeexport.app.arm_check); emulated:
    # correctness and graph facts only
    arm: dict[str, ArmCheck] = field(default_factory=dict)

    @property
    def variant_id(self) -> str:
        return self.variant.id

    @property
    def int8_cosine_onnx(self) -> float:
        return self.validation[ONNX_INT8_VS_ONNX_FP32].cosine_mean


# ---- profile.json / estimate.json -------------------------------------------------------
@dataclass
class EndToEnd:
    p50_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    runs: int
    warmup: int
    threads: int
    runtime: str
    runtime_version: str


@dataclass
class Measured:
    """A measurement where the command ran: end-to-end statistics, per-layer rows (onnxruntime)."""
    where: dict[str, str]
    model: str
    precision: str
    end_to_end: EndToEnd
    variant: Variant | None
    layers: list[LayerLatency]
    energy: Energy
    layer_note: str
    layer_sum_ms: float | None = None
    profiled_run_ms: float | None = None
    profiler_overhead: float | None = None
    source: str = "measured"
    board: BoardFacts | None = None  # the measuring machine's state (edgeexport.core.board_facts)
    board_warnings: list[str] = field(default_factory=list)


@dataclass
class Profile(Record):
    """profile.json of a build variant: every measurement, keyed by ``measurement_key``."""
    FILE: ClassVar[str] = PROFILE
    measurements: dict[str, Measured]
    # The same files run by a board whose own facts say it is emulated (`build --device` on
    # it), keyed alike; time-free (edgeexport.measure.emulator.time_free): the measurements
    # above are then this machine's.
    emulated: dict[str, dict[str, Any]] = field(default_factory=dict)

    def p50_ms(self, runtime: str, precision: str) -> float | None:
        m = self.measurements.get(measurement_key(runtime, precision))
        return m.end_to_end.p50_ms if m else None


@dataclass
class EstimatedEndToEnd:
    latency_ms: float
    fixed_ms: float


@dataclass
class Estimated:
    """An estimate for a target not attached, by its fitted cost model."""
    target: str
    runtime: str
    model: dict[str, Any]  # name, coefficients, source, known_error
    precision: str
    variant: Variant
    end_to_end: EstimatedEndToEnd
    layers: list[LayerLatency]
    energy: Energy
    source: str = "estimate"


@dataclass
class Estimates(Record):
    """estimate.json of a build variant, keyed by precision (empty: the target has no model)."""
    FILE: ClassVar[str] = ESTIMATE
    estimates: dict[str, Estimated]

    def latency_ms(self, precision: str) -> float | None:
        e = self.estimates.get(precision)
        return e.end_to_end.latency_ms if e else None

    def board_mj(self, precision: str) -> float | None:
        e = self.estimates.get(precision)
        return e.energy.board_mj if e else None


# ---- build.json / index.json ------------------------------------------------------------
@dataclass
class BuildRecord(Record):
    """Seals a variant directory: written last; complete when the key matches and every file
    listed is there with its hash."""
    FILE: ClassVar[str] = BUILD
    cache_key: str
    variant: Variant
    files: dict[str, FileEntry]
    farm: Placement | None = None  # which farm workers exported and measured it (--farm)
    inputs: dict[str, str] = field(default_factory=dict)  # the key's parts, each a digest


# The measurement a board's estimate is compared with (board_report, Headline).
COMPARED = "litert_int8"


def estimate_error(measured: Measured | None, estimated_ms: float | None) -> float | None:
    """(ESTIMATED int8 − MEASURED LiteRT int8 p50 on the board) / measured; None unless the
    measurement was taken on a board."""
    if measured is None or estimated_ms is None or not measured.where.get("device"):
        return None
    m = measured.end_to_end.p50_ms
    return (estimated_ms - m) / m


@dataclass
class Headline:
    """The figures the index, the report table and `pull` all read for a variant."""
    params: int
    macs: int
    int8_cosine_onnx: float
    int8_enforced: bool
    measured_p50_ms: dict[str, float]  # measurement_key → p50 here
    estimated_ms: dict[str, float]     # precision → estimated latency on the target
    estimated_board_mj: dict[str, float]
    # Measured on the target's board: (estimate − board's LiteRT int8 p50) / measured.
    estimated_int8_error_vs_board: float | None = None

    @classmethod
    def of(cls, card: Card, profile: Profile, estimates: Estimates) -> "Headline":
        return cls(
            estimated_int8_error_vs_board=estimate_error(profile.measurements.get(COMPARED),
                                                         estimates.latency_ms("int8")),
            params=card.params, macs=card.macs, int8_cosine_onnx=card.int8_cosine_onnx,
            int8_enforced=card.tolerances.int8_enforced,
            measured_p50_ms={k: m.end_to_end.p50_ms for k, m in profile.measurements.items()},
            estimated_ms={p: e.end_to_end.latency_ms for p, e in estimates.estimates.items()},
            estimated_board_mj={p: e.energy.board_mj for p, e in estimates.estimates.items()
                                if e.energy.board_mj is not None})


@dataclass
class IndexEntry:
    id: str
    variant: Variant
    files: dict[str, FileEntry]  # path relative to the index → entry
    headline: Headline


@dataclass
class Index(Record):
    FILE: ClassVar[str] = INDEX
    target: str
    variants: list[IndexEntry]
    failed: dict[str, str]


@dataclass
class RepairCosts(Record):
    """int8_repair_cost.json beside card.json, when a format shipped a mixed-precision file:
    what each mixed file costs, measured (contracts.int8.RepairCost)."""
    FILE: ClassVar[str] = REPAIR_COSTS

    costs: list[RepairCost]

    @classmethod
    def in_directory(cls, directory: Path) -> dict[str, RepairCost]:
        """format → its cost; empty when no file there was mixed."""
        if not (directory / cls.FILE).is_file():
            return {}
        return {c.format: c for c in read_record(directory, cls).costs}
