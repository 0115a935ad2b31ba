"""Per-layer latency cost model for boards not attached, one per runtime, and its fit.

A layer's time is linear in per-op-kind features of its static-analysis row (FEATURES): dense
and depthwise MACs, bytes its kernel moves, output pixels of dense convolutions (a per-pixel
cost that does not shrink with the channel count: why α 0.25 at 224 px runs slower than α 0.5
at 128 px with fewer MACs), one launch per kernel, and the extra cost per byte of the two
element-wise ops MobileNetV3 adds and runtimes do not fuse into the convolution: hard-swish
and the squeeze-excitation scale. Residual adds and pooling cost one kernel launch each: also
charging their bytes made the leave-one-out predictions of V3 worse on the shipped data (the
only family with adds among V1/V2 is one network per file).

The coefficients are fitted per runtime and precision by non-negative least squares on
relative error to whole-network measurements; a model additive over layers lets a fit on
totals predict each layer, and the per-layer estimates sum to the total. A model is fitted at
one clock and thread count; CLOCK_RULE moves it to another clock.
"""
from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgeexport.contracts.variant import COMPUTE_OPS, DENSE_OPS, ELEMENTWISE_OPS, LayerCost
from edgeexport.core.errors import UserError
from edgeexport.models import FAMILIES, family_of_alias
from edgeexport.targets import COEFFICIENTS, RUNTIME_NAME, LatencyCoefficients

KERNEL_OPS = COMPUTE_OPS + ELEMENTWISE_OPS + ("hardswish",)
# What each coefficient multiplies (same order as COEFFICIENTS, before fixed_ms).
FEATURES = (
    ("ms_per_gmac_dense", "GMACs of conv, pointwise, linear and SE-conv rows"),
    ("ms_per_gmac_depthwise", "GMACs of depthwise rows"),
    ("ms_per_mb", "MB read and written: weights + input + output of compute rows, input + "
                  "output of hard-swish rows"),
    ("ms_per_mpixel_dense", "output pixels (H×W, any channel count) of dense conv rows, "
                            "millions"),
    ("us_per_kernel", "kernels launched (thousands): compute rows and the element-wise rows "
                      "that run as kernels of their own"),
    ("ms_per_mb_hardswish", "MB in + out of hard-swish rows (its arithmetic, beyond the "
                            "bytes)"),
    ("ms_per_mb_se_scale", "MB in + out of squeeze-excitation scale rows (a broadcast "
                           "multiply, beyond the bytes)"),
)
assert tuple(name for name, _ in FEATURES) + ("fixed_ms",) == COEFFICIENTS
# The Pi 4's SDRAM clock does not follow the Arm cores' clock: memory time stays put.
CLOCK_INDEPENDENT = ("ms_per_mb",)
CLOCK_RULE = ("every coefficient but ms_per_mb (memory) × fit clock / clock: compute, "
              "per-kernel and fixed costs are CPU cycles, memory time follows the SDRAM clock")
REQUIRED_COLUMNS = ("model_family", "width_multiplier", "resolution", "quantized",
                    "mean_latency_ms")


def layer_features(layer: LayerCost, precision: str) -> np.ndarray:
    """This row's values of FEATURES."""
    op = layer.op
    weights = getattr(layer, f"weight_bytes_{precision}")
    activations = getattr(layer, f"activation_bytes_{precision}")
    compute = op in COMPUTE_OPS
    moved = weights + activations if compute else activations if op == "hardswish" else 0
    shape = layer.output_shape
    pixels = shape[2] * shape[3] if op in DENSE_OPS and len(shape) == 4 else 0
    return np.array([layer.macs / 1e9 if op in DENSE_OPS else 0.0,
                     layer.macs / 1e9 if op == "depthwise" else 0.0,
                     moved / 1e6, pixels / 1e6, 1e-3 if op in KERNEL_OPS else 0.0,
                     activations / 1e6 if op == "hardswish" else 0.0,
                     activations / 1e6 if op == "mul" else 0.0])


def _vector(c: LatencyCoefficients) -> np.ndarray:
    return np.array([getattr(c, name) for name, _ in FEATURES])


def layer_ms(layer: LayerCost, c: LatencyCoefficients, precision: str) -> float:
    return float(layer_features(layer, precision) @ _vector(c))


def network_features(layers: list[LayerCost], precision: str) -> np.ndarray:
    return np.sum([layer_features(x, precision) for x in layers], axis=0)


def predict(features: np.ndarray, c: LatencyCoefficients) -> float:
    return float(features @ _vector(c) + c.fixed_ms)


def at_clock(c: LatencyCoefficients, fit_mhz: float, mhz: float) -> LatencyCoefficients:
    """The coefficients of a model fitted at ``fit_mhz`` moved to ``mhz`` by CLOCK_RULE."""
    if not (math.isfinite(mhz) and mhz > 0):
        raise UserError(f"clock must be a number of MHz > 0, got {mhz:g}")
    ratio = fit_mhz / mhz
    return LatencyCoefficients(**{k: v if k in CLOCK_INDEPENDENT else v * ratio
                                  for k, v in asdict(c).items()})


@dataclass
class Measurement:
    """One whole-network latency measured on a board: what `fit-latency` fits."""
    family: str
    alpha: float
    resolution: int
    precision: str       # fp32 | int8
    latency_ms: float
    runtime: str         # the model's name: tflite-ruy, armnn, onnxruntime, ...
    clock_mhz: float
    threads: int
    power_w: float | None = None   # whole-board power while it ran, if measured
    label: str = ""                # where it came from (file and row), for messages

    @property
    def variant_id(self) -> str:
        return f"{self.family}_{self.alpha:g}_{self.resolution}"

    def check(self) -> "Measurement":
        """Refuse values no fit can use, naming the field."""
        if self.family not in FAMILIES:
            raise UserError(f"{self.label}: unknown model family {self.family!r} (known: "
                            f"{', '.join(FAMILIES)})")
        if self.precision not in ("fp32", "int8"):
            raise UserError(f"{self.label}: precision must be fp32 or int8, got "
                            f"{self.precision!r}")
        for name in ("alpha", "latency_ms", "clock_mhz"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise UserError(f"{self.label}: {name} must be a finite number > 0, got {value}")
        if self.power_w is not None and not (math.isfinite(self.power_w) and self.power_w > 0):
            raise UserError(f"{self.label}: power must be a finite number > 0 W, got "
                            f"{self.power_w}")
        if self.threads < 1:
            raise UserError(f"{self.label}: threads must be ≥ 1, got {self.threads}")
        if not RUNTIME_NAME.match(self.runtime):
            raise UserError(f"{self.label}: runtime {self.runtime!r} must be letters, digits, "
                            "'-' and '_'")
        return self


def _number(text: str, column: str) -> float:
    """A CSV number; a unit after it (``1800 MHz``) is allowed, ``inf``/``nan`` are not."""
    match = re.fullmatch(r"\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*[A-Za-z]*\s*", text)
    if match is None:
        raise ValueError(f"{column} must be a finite number, got {text!r}")
    return float(match.group(1))


def read_measurements(path: Path, runtime: str | None = None, clock_mhz: float | None = None,
                      threads: int | None = None, name: str | None = None) -> list[Measurement]:
    """Rows of a measurement CSV (REQUIRED_COLUMNS; optional runtime, cpu_freq_mhz, threads,
    avg_power_w). ``runtime``, ``clock_mhz`` and ``threads`` fill in a missing column; with
    a runtime column, ``runtime`` keeps only its rows. ``name`` renames the one runtime read
    (the model's name in the target file)."""
    try:
        # utf-8-sig: spreadsheet programs write a byte-order mark before the first column.
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{path}: cannot read it as CSV ({e.__class__.__name__})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    for column, given, option in (("runtime", runtime, "--runtime"),
                                  ("cpu_freq_mhz", clock_mhz, "--clock-mhz"),
                                  ("threads", threads, "--threads")):
        if column not in columns and given is None:
            raise UserError(f"{path}: no {column} column: say what the measurements ran at "
                            f"with {option}")
    out, read_runtimes = [], set()
    for i, r in enumerate(rows, start=2):
        if "runtime" in columns and runtime is not None and r["runtime"].strip() != runtime:
            continue
        try:
            quantized = r["quantized"].strip().lower()
            if quantized not in ("true", "false"):
                raise ValueError("quantized must be true or false")
            m = Measurement(
                family=family_of_alias(r["model_family"].strip()),
                alpha=_number(r["width_multiplier"], "width_multiplier"),
                resolution=int(r["resolution"]),
                precision="int8" if quantized == "true" else "fp32",
                latency_ms=_number(r["mean_latency_ms"], "mean_latency_ms"),
                runtime=name or (r["runtime"].strip() if "runtime" in columns else runtime),
                clock_mhz=(_number(r["cpu_freq_mhz"], "cpu_freq_mhz")
                           if "cpu_freq_mhz" in columns else clock_mhz),
                threads=int(r["threads"]) if "threads" in columns else threads,
                power_w=(_number(r["avg_power_w"], "avg_power_w")
                         if r.get("avg_power_w", "").strip() else None),
                label=f"{path}: row {i}")
        except (ValueError, TypeError, AttributeError) as e:
            raise UserError(f"{path}: row {i}: {e}") from None
        read_runtimes.add(r["runtime"].strip() if "runtime" in columns else runtime)
        out.append(m.check())
    if not out:
        has = sorted({r["runtime"].strip() for r in rows}) if "runtime" in columns else []
        raise UserError(f"{path}: no measurement rows"
                        + (f" for runtime {runtime!r} (it has: {', '.join(has)})" if has else ""))
    if name is not None and len(read_runtimes) > 1:
        raise UserError(f"{path}: holds runtimes {', '.join(sorted(read_runtimes))}; pick the "
                        f"one to store as {name!r} with --runtime")
    if "runtime" not in columns:
        seen: dict[tuple, str] = {}
        for m in out:
            key = (m.variant_id, m.precision)
            if key in seen:
                raise UserError(f"{m.label} measures {m.variant_id} {m.precision} again "
                                f"({seen[key]}): a CSV mixing runtimes needs a runtime column")
            seen[key] = m.label.rsplit(": ", 1)[-1]
    return out


def _nnls_relative(features: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Non-negative least squares on relative error: min ‖(Xw − y) / y‖, w ≥ 0 (columns
    scaled to unit norm first: the features span six orders of magnitude)."""
    from scipy.optimize import nnls
    X = np.hstack([features, np.ones((len(features), 1))]) / measured[:, None]
    scale = np.linalg.norm(X, axis=0)
    scale[scale == 0] = 1.0
    try:
        w, _ = nnls(X / scale, np.ones(len(measured)))
    except RuntimeError as e:
        raise UserError(f"the latency fit did not converge ({e})") from None
    return w / scale


def to_coefficients(w: np.ndarray) -> LatencyCoefficients:
    return LatencyCoefficients(*map(float, w))


@dataclass
class PrecisionResult:
    """One precision of a runtime's fit, with each row's leave-one-out prediction."""
    precision: str
    coefficients: LatencyCoefficients
    load_w: float | None        # mean board power of the rows, where measured
    rows: list[dict]

    def _errors(self, family: str | None = None) -> list[float]:
        return [abs(r["loo_error"]) for r in self.rows if family in (None, r["family"])]

    @property
    def loo_median_abs_error(self) -> float:
        return float(np.median(self._errors()))

    @property
    def loo_max_abs_error(self) -> float:
        return float(np.max(self._errors()))

    @property
    def by_family(self) -> dict[str, dict]:
        families = sorted({r["family"] for r in self.rows})
        return {f: {"networks": len(self._errors(f)),
                    "loo_median_abs_error": float(np.median(self._errors(f))),
                    "loo_max_abs_error": float(np.max(self._errors(f)))} for f in families}

    def to_json(self) -> dict:
        return {"precision": self.precision, "coefficients": asdict(self.coefficients),
                "load_w": self.load_w, "loo_median_abs_error": self.loo_median_abs_error,
                "loo_max_abs_error": self.loo_max_abs_error, "by_family": self.by_family,
                "rows": self.rows}


@dataclass
class RuntimeFit:
    """A runtime's model: measured at one clock and thread count, one fit per precision."""
    runtime: str
    clock_mhz: float
    threads: int
    precisions: list[PrecisionResult] = field(default_factory=list)

    @property
    def known_error(self) -> str:
        parts = []
        for p in self.precisions:
            families = ", ".join(f"{f.removeprefix('mobilenet_')} "
                                 f"{100 * e['loo_max_abs_error']:.1f}%"
                                 for f, e in p.by_family.items())
            parts.append(f"{p.precision}: leave-one-out median |error| "
                         f"{100 * p.loo_median_abs_error:.1f}%, max "
                         f"{100 * p.loo_max_abs_error:.1f}% over {len(p.rows)} networks "
                         f"(max by family: {families})")
        return "; ".join(parts)

    def to_json(self) -> dict:
        return {"runtime": self.runtime, "clock_mhz": self.clock_mhz, "threads": self.threads,
                "known_error": self.known_error,
                "fits": [p.to_json() for p in self.precisions]}


def _fit_precision(ms: list[Measurement], X: np.ndarray, precision: str) -> PrecisionResult:
    y = np.array([m.latency_ms for m in ms])
    coeffs = to_coefficients(_nnls_relative(X, y))
    rows = []
    for k, m in enumerate(ms):
        keep = [j for j in range(len(ms)) if j != k]
        loo = to_coefficients(_nnls_relative(X[keep], y[keep]))
        held_out = predict(X[k], loo)
        rows.append({"label": m.label, "variant": m.variant_id, "family": m.family,
                     "precision": precision, "measured_ms": m.latency_ms,
                     "fitted_ms": predict(X[k], coeffs), "loo_predicted_ms": held_out,
                     "loo_error": (held_out - m.latency_ms) / m.latency_ms})
    watts = [m.power_w for m in ms if m.power_w is not None]
    return PrecisionResult(precision, coeffs, float(np.mean(watts)) if watts else None, rows)


def fit_runtime(measurements: list[Measurement],
                features: Callable[[Measurement], np.ndarray]) -> RuntimeFit:
    """Fit one runtime's model; ``features(m)`` gives network_features of m's variant."""
    settings = {(m.runtime, m.clock_mhz, m.threads) for m in measurements}
    if len(settings) != 1:
        raise UserError("one model is fitted to one runtime at one clock and thread count; "
                        f"these measurements mix {sorted(settings)}")
    (runtime, clock, threads), = settings
    result = RuntimeFit(runtime, clock, threads)
    for precision in ("fp32", "int8"):
        ms = [m for m in measurements if m.precision == precision]
        if not ms:
            continue
        if len(ms) < 3:
            raise UserError(f"{runtime} {precision}: {len(ms)} measurement(s); need ≥ 3 to fit "
                            "and cross-validate")
        result.precisions.append(_fit_precision(ms, np.array([features(m) for m in ms]),
                                                precision))
    return result


def analysed_features(m: Measurement) -> np.ndarray:
    """network_features of a measurement's variant, from its static analysis."""
    from edgeexport.analysis.cache import cached_analysis
    from edgeexport.contracts.variant import Variant
    return network_features(cached_analysis(Variant(m.family, m.alpha, m.resolution)).layers,
                            m.precision)


def fit_measurements(measurements: list[Measurement]) -> list[RuntimeFit]:
    """One model per runtime in ``measurements`` (the entry point for measurements taken on
    a board, e.g. from a build directory)."""
    cache: dict[tuple, np.ndarray] = {}

    def features(m: Measurement) -> np.ndarray:
        key = (m.family, m.alpha, m.resolution, m.precision)
        if key not in cache:
            cache[key] = analysed_features(m)
        return cache[key]

    by_runtime: dict[str, list[Measurement]] = defaultdict(list)
    for m in measurements:
        by_runtime[m.check().runtime].append(m)
    return [fit_runtime(ms, features) for ms in by_runtime.values()]


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def toml_block(fit: RuntimeFit, description: str, source: str, power_source: str) -> str:
    """The [latency_model.RUNTIME] tables of a target file."""
    name = fit.runtime
    lines = [f"[latency_model.{name}]", f"runtime = {_toml_string(description)}",
             f"clock_mhz = {fit.clock_mhz:g}", f"threads = {fit.threads}",
             f"source = {_toml_string(source)}", f"known_error = {_toml_string(fit.known_error)}",
             f"power_source = {_toml_string(power_source)}"]
    for p in fit.precisions:
        lines += ["", f"[latency_model.{name}.{p.precision}]"]
        lines += [f"{k} = {v:.6g}" for k, v in asdict(p.coefficients).items()]
        if p.load_w is not None:
            lines.append(f"load_w = {p.load_w:.4g}")
        lines += [f"loo_median_abs_error = {p.loo_median_abs_error:.4f}",
                  f"loo_max_abs_error = {p.loo_max_abs_error:.4f}",
                  "loo_max_abs_error_by_family = { " + ", ".join(
                      f"{f} = {e['loo_max_abs_error']:.4f}" for f, e in p.by_family.items())
                  + " }"]
    return "\n".join(lines) + "\n"


_HEADER = re.compile(r"^\s*\[\s*([^\]\s]+)\s*\]")


def with_model(target_text: str, runtime: str, block: str) -> str:
    """``target_text`` with the [latency_model.RUNTIME] tables replaced by ``block`` (added
    at the end if there were none); every other table and every comment kept as it was."""
    out, inserted, skipping = [], False, False
    for line in target_text.splitlines(keepends=True):
        header = _HEADER.match(line)
        if header:
            name = header.group(1)
            skipping = name == f"latency_model.{runtime}" or name.startswith(
                f"latency_model.{runtime}.")
            if skipping and not inserted:
                out.append(block + "\n")
                inserted = True
        if not skipping or not line.strip() or line.lstrip().startswith("#"):
            out.append(line)
    text = "".join(out).rstrip("\n") + "\n"
    return text if inserted else text + "\n" + block

