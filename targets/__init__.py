"""Where we deploy: device profiles, one TOML file per board, and their validating loader.

Every field is checked on load; a malformed file is rejected with the field named. The
``local`` profile describes the machine running the command, detected at load time.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from edgeexport.core.board_facts import detect_cpu
from edgeexport.core.device_address import device_from_table
from edgeexport.core.errors import UserError, did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

QUANT_TYPES = ("int8", "uint8")
# The per-layer cost model's coefficients, in the order of
# edgeexport.estimate.latency_model.FEATURES (each one multiplies one feature of a layer row).
COEFFICIENTS = ("ms_per_gmac_dense", "ms_per_gmac_depthwise", "ms_per_mb",
                "ms_per_mpixel_dense", "us_per_kernel", "ms_per_mb_hardswish",
                "ms_per_mb_se_scale", "fixed_ms")
RUNTIME_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # a bare TOML key: [latency_model.NAME]


@dataclass(frozen=True)
class LatencyCoefficients:
    """Layer time = Σ coefficient × feature of the layer row (see
    edgeexport.estimate.latency_model.FEATURES), plus fixed_ms once per inference. All ≥ 0 (a
    non-negative least-squares fit)."""
    ms_per_gmac_dense: float
    ms_per_gmac_depthwise: float
    ms_per_mb: float
    ms_per_mpixel_dense: float
    us_per_kernel: float
    ms_per_mb_hardswish: float
    ms_per_mb_se_scale: float
    fixed_ms: float


@dataclass(frozen=True)
class PrecisionFit:
    """One precision of a runtime's model: coefficients, the board power measured while it
    ran (if the data has it), and the fit's leave-one-out |relative error| (None: not a fit
    to measurements, e.g. a prior scaled from another board's)."""
    coefficients: LatencyCoefficients
    load_w: float | None
    loo_median_abs_error: float | None
    loo_max_abs_error: float | None
    loo_max_abs_error_by_family: dict[str, float] | None


@dataclass(frozen=True)
class LatencyModel:
    """A cost model for one runtime on the board, at the clock and thread count measured."""
    name: str            # the key: tflite-ruy, armnn, onnxruntime, litert-xnnpack, ...
    runtime: str         # what it models, in words (runtime, version, backend)
    clock_mhz: float
    threads: int
    source: str
    known_error: str
    power_source: str
    fp32: PrecisionFit | None
    int8: PrecisionFit | None


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    cpu: dict[str, Any]
    memory_gib: float
    idle_w: float | None
    load_w: float | None
    power_source: str
    onnx_activation_type: str
    onnx_weight_type: str
    onnx_quant_source: str
    tflite_io_type: str
    latency_models: dict[str, LatencyModel]  # by runtime name; the first is the default
    grid: dict[str, dict[str, list]] = field(default_factory=dict)
    path: str = ""
    source: str = ""  # the TOML text it was parsed from: cache keys and refits use it
    device: Any = None  # edgeexport.measure.board.Device from a [device] table: the board to measure on

    @property
    def latency_model(self) -> LatencyModel | None:
        """The default runtime's model (the first in the file), or None."""
        return next(iter(self.latency_models.values()), None)

    def latency_model_for(self, runtime: str | None) -> LatencyModel:
        """The model for ``runtime`` (None: the default); refused naming what there is."""
        if not self.latency_models:
            raise UserError(f"target {self.name} has no latency model: measure on it with "
                            "`edgeexport profile`, or fit one with `edgeexport fit-latency`")
        if runtime is None:
            return self.latency_model
        if runtime not in self.latency_models:
            raise UserError(f"target {self.name} has no latency model for runtime {runtime!r} "
                            f"(it has: {', '.join(self.latency_models)}); fit one with "
                            "`edgeexport fit-latency`")
        return self.latency_models[runtime]


class _Fields:
    """Typed access into the parsed TOML that names the dotted field on any problem."""

    def __init__(self, data: dict, where: str, prefix: str = "") -> None:
        self.data, self.where, self.prefix = data, where, prefix

    def _fail(self, key: str, problem: str):
        raise UserError(f"target file {self.where}: field '{self.prefix}{key}' {problem}")

    def get(self, key: str, kind, *, required: bool = True, default=None):
        if key not in self.data:
            if required:
                self._fail(key, "is missing")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
            self._fail(key, f"must be {'/'.join(k.__name__ for k in kinds)}, "
                            f"got {type(value).__name__}")
        return value

    def positive(self, key: str, *, allow_zero: bool = False) -> float:
        value = self.get(key, float)
        if value < 0 or (value == 0 and not allow_zero):
            self._fail(key, f"must be {'≥' if allow_zero else '>'} 0, got {value}")
        return value

    def choice(self, key: str, options: tuple[str, ...]) -> str:
        value = self.get(key, str)
        if value not in options:
            self._fail(key, f"must be one of {', '.join(options)}, got {value!r}")
        return value

    def table(self, key: str, *, required: bool = True) -> "_Fields | None":
        value = self.get(key, dict, required=required)
        return None if value is None else _Fields(value, self.where, f"{self.prefix}{key}.")


def parse_target(data: dict, where: str, source: str = "", device: bool = True) -> Target:
    """``device=False``: the ``[device]`` table is not read (a board reading the target file
    copied to it measures itself; a relative ``ssh_config`` there names a file on our side)."""
    root = _Fields(data, where)
    cpu = root.table("cpu")
    cpu_facts = {"model": cpu.get("model", str), "cores": int(cpu.positive("cores")),
                 "freq_ghz": cpu.positive("freq_ghz") if "freq_ghz" in cpu.data else None,
                 "isa": cpu.get("isa", str), "dotprod": cpu.get("dotprod", bool)}
    power = root.table("power", required=False)
    quant = root.table("quantization")
    ort = quant.table("onnxruntime")
    litert = quant.table("litert")
    models_table = root.table("latency_model", required=False)
    latency = {}
    if models_table is not None:
        if any(not isinstance(v, dict) for v in models_table.data.values()):
            root._fail("latency_model", "has the single-runtime layout of older versions: "
                       "refit it into [latency_model.RUNTIME] tables with `edgeexport fit-latency`")
        for name in models_table.data:
            latency[name] = _latency_model(models_table, name)
    grid = {}
    grid_table = root.table("grid", required=False)
    if grid_table is not None:
        for fam in grid_table.data:
            g = grid_table.table(fam)
            grid[fam] = {"alphas": [float(a) for a in g.get("alphas", list)],
                         "resolutions": [int(r) for r in g.get("resolutions", list)]}
    board = None
    device_table = root.table("device", required=False)
    if device_table is not None and device:
        board = device_from_table(device_table.data, where)
    return Target(
        name=root.get("name", str), description=root.get("description", str), cpu=cpu_facts,
        memory_gib=root.table("memory").positive("gib"),
        idle_w=power.positive("idle_w") if power else None,
        load_w=power.positive("load_w") if power else None,
        power_source=power.get("source", str) if power else "unknown: no [power] table",
        onnx_activation_type=ort.choice("activation_type", QUANT_TYPES),
        onnx_weight_type=ort.choice("weight_type", QUANT_TYPES),
        onnx_quant_source=ort.get("source", str),
        tflite_io_type=litert.choice("io_type", QUANT_TYPES),
        latency_models=latency, grid=grid, path=where, source=source, device=board)


def _latency_model(models: _Fields, name: str) -> LatencyModel:
    if not RUNTIME_NAME.match(name):
        models._fail(name, "must be a runtime name of letters, digits, '-' and '_'")
    t = models.table(name)
    clock = t.positive("clock_mhz")
    threads = t.positive("threads")
    if threads != int(threads):
        t._fail("threads", f"must be a whole number, got {threads}")
    fits = {}
    for precision in ("fp32", "int8"):
        p = t.table(precision, required=False)
        if p is None:
            fits[precision] = None
            continue
        def optional(key: str) -> float | None:
            return p.positive(key, allow_zero=True) if key in p.data else None

        by_family = p.table("loo_max_abs_error_by_family", required=False)
        fits[precision] = PrecisionFit(
            LatencyCoefficients(**{k: p.positive(k, allow_zero=True) for k in COEFFICIENTS}),
            p.positive("load_w") if "load_w" in p.data else None,
            optional("loo_median_abs_error"), optional("loo_max_abs_error"),
            None if by_family is None else
            {fam: by_family.positive(fam, allow_zero=True) for fam in by_family.data})
    if fits["fp32"] is None and fits["int8"] is None:
        t._fail("fp32", "is missing (a model needs an fp32 or an int8 table)")
    return LatencyModel(name, t.get("runtime", str), clock, int(threads), t.get("source", str),
                        t.get("known_error", str), t.get("power_source", str, required=False,
                                                         default="not measured"), **fits)


def builtin_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("edgeexport.targets").iterdir()
                  if p.name.endswith(".toml"))


def load_target(name_or_path: str, device: bool = True) -> Target:
    """A built-in target by name, or a TOML file by path (a relative ``ssh_config`` of its
    ``[device]`` table read from the file's directory). ``device=False``: without its
    ``[device]`` table (measuring here)."""
    path = Path(name_or_path)
    if name_or_path.endswith(".toml"):
        if not path.is_file():
            raise UserError(f"target file {path} does not exist")
        text, where = path.read_bytes(), str(path)
    elif name_or_path in builtin_names():
        res = resources.files("edgeexport.targets") / f"{name_or_path}.toml"
        text, where = res.read_bytes(), f"{name_or_path}.toml"
    else:
        raise UserError(f"unknown target {name_or_path!r}"
                        f"{did_you_mean(name_or_path, builtin_names())} (built-in: "
                        f"{', '.join(builtin_names())}; or a path to a .toml file)")
    try:
        source = text.decode("utf-8")
        data = tomllib.loads(source)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"target file {where}: not valid TOML ({e})") from None
    if name_or_path == "local":
        data = {**data, "cpu": {**data.get("cpu", {}), **detect_cpu()},
                "memory": {"gib": _memory_gib() or data.get("memory", {}).get("gib")}}
    return parse_target(data, where, source, device)


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def cpu_description() -> str:
    cpu = detect_cpu()
    return f"{cpu['model']} ({cpu['cores']} cores, {cpu['isa']})"
