"""`edgeexport pull`: one variant's files from a build's index.json, by id or by budget.

By budget: among the variants whose latency on the target fits, the most accurate one.
- Latency, per variant: measured on the target board if the build measured it there, else the
  build's estimate for the target (its cost model, with that model's runtime and known error).
  Measurements the build takes on its own machine describe that machine, not the board: they
  count only for the ``local`` target, or when the profile was taken on the board itself
  (``build --device``: ``where.device`` names the board).
- Accuracy: the ImageNet top-1 of Google's published checkpoint of the architecture (family,
  α, resolution; the quantized checkpoint for int8 files, the float one for fp32; TFLite
  rows), from the MLPerf reference data shipped in edgeexport/data (report.REFERENCE_CSV),
  when every fitting variant has one; otherwise MACs as a proxy
  (within the MobileNet families more mult-adds buys accuracy; it is not an accuracy figure).
  One criterion for all candidates: a published top-1 is never ranked against a proxy.
Every file is verified against the index's sha256 before anything is renamed into ``-o``.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from edgeexport.build.report import REFERENCE_CSV, reference_table
from edgeexport.contracts.artifacts import (
    CARD,
    INDEX,
    ArtifactError,
    Estimates,
    Index,
    IndexEntry,
    Profile,
    Record,
    measurement_key,
)
from edgeexport.contracts.variant import Variant
from edgeexport.core.errors import UserError
from edgeexport.core.fileio import safe_relative, sha256
from edgeexport.distribute.transfer import (
    Expected,
    HashMismatch,
    Source,
    open_source,
    partial_path,
    verify,
)

# --format → (file name in the variant directory, precision, runtime measured for it)
FORMATS = {
    "app": ("model.app.tflite", "int8", "litert"),
    "int8.tflite": ("model.int8.tflite", "int8", "litert"),
    "fp32.tflite": ("model.fp32.tflite", "fp32", "litert"),
    "int8.onnx": ("model.int8.onnx", "int8", "onnxruntime"),
    "fp32.onnx": ("model.fp32.onnx", "fp32", "onnxruntime"),
}
RECORD_LIMIT = 64 << 20  # an index or a JSON record larger than this is not one of ours
REFERENCE_LABEL = ("ImageNet top-1 (50,000 images) of Google's published {kind} checkpoint "
                   "for this architecture, run in TFLite by Krai for MLPerf Inference "
                   "(edgeexport/data/{csv}); not measured on the pulled weights")
PROXY_LABEL = ("proxy: MACs (no published top-1 for {missing}; within one family more "
               "mult-adds buys accuracy; across families only roughly: V3-Small 1.0-224 "
               "reaches 67.4% with 56 M MACs, V1 0.5-224 63.3% with 150 M; --family narrows "
               "the choice); not an accuracy figure")
SHA256 = re.compile(r"[0-9a-f]{64}")
R = TypeVar("R", bound=Record)


# ---- the index, checked field by field -------------------------------------------------

def parse_index(data: object, where: str) -> Index:
    """The index record, refusing any unsafe path and any file without a well-formed hash."""
    try:
        index = Index.from_json(data)
    except ArtifactError as e:
        raise UserError(f"malformed index {where}: {e}") from None
    for entry in index.variants:
        for rel, meta in entry.files.items():
            try:
                safe_relative(Path("."), rel)
            except ValueError as e:
                raise UserError(f"refusing index {where}: variant {entry.id}: {e}") from None
            if not (isinstance(meta.sha256, str) and SHA256.fullmatch(meta.sha256)
                    and type(meta.bytes) is int and meta.bytes >= 0):
                raise UserError(f"malformed index {where}: variant {entry.id}: file {rel!r} "
                                "lacks a sha256 or a byte count")
    return index


def find_file(entry: IndexEntry, name: str) -> tuple[str, Expected] | None:
    """(path relative to the index, what the index promises) of a variant's file ``name``."""
    for rel, meta in entry.files.items():
        if PurePosixPath(rel).name == name:
            return rel, Expected(meta.sha256, meta.bytes)
    return None


def find_entry(index: Index, variant_id: str) -> IndexEntry:
    for entry in index.variants:
        if entry.id == variant_id:
            return entry
    known = ", ".join(e.id for e in index.variants) or "none"
    raise UserError(f"variant {variant_id!r} is not in the index (variants: {known})")


# ---- the figures a choice rests on -----------------------------------------------------

@dataclass(frozen=True)
class Figure:
    value: float
    kind: str   # latency: measured | estimated; accuracy: published_top1 | proxy_macs
    label: str  # what it is: where measured / by which model / from which table


@dataclass
class Candidate:
    id: str
    latency: Figure | None
    accuracy: Figure | None = None
    fits: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "fits": self.fits,
                "latency": asdict(self.latency) if self.latency else None,
                "accuracy": asdict(self.accuracy) if self.accuracy else None}


def measured_on_target(where: dict, target: str) -> bool:
    """Whether a profile was taken on the target itself (see the module docstring)."""
    return where.get("target_profile") == target and (target == "local"
                                                      or bool(where.get("device")))


def latency_figure(profile: Profile, estimates: Estimates, target: str, fmt: str
                   ) -> Figure | None:
    """Measured on the board if it was, else the build's estimate for the target."""
    _, precision, runtime = FORMATS[fmt]
    measured = profile.measurements.get(measurement_key(runtime, precision))
    if measured is not None and measured_on_target(measured.where, target):
        e2e, where = measured.end_to_end, measured.where
        return Figure(e2e.p50_ms, "measured",
                      f"measured p50 on {where.get('cpu')} ({where.get('machine')}), "
                      f"{e2e.runtime_version}, {e2e.threads} thread(s), "
                      f"{e2e.runs} runs after {e2e.warmup} warm-ups")
    estimate = estimates.estimates.get(precision)
    if estimate is not None:
        return Figure(estimate.end_to_end.latency_ms, "estimated",
                      f"estimated for {estimate.target} by the {estimate.model.get('name')}, "
                      f"modelling {estimate.runtime}; known error: "
                      f"{estimate.model.get('known_error')}")
    return None


def published_top1(variant: Variant, precision: str) -> float | None:
    """ImageNet top-1 (%) of the architecture from the shipped MLPerf reference table."""
    if variant.num_classes != 1000:
        return None  # not an ImageNet classifier: the published figure says nothing of it
    for row in reference_table():
        if (row["family"], row["alpha"], row["resolution"], row["precision"]) == (
                variant.family, variant.alpha, variant.resolution, precision):
            return row["top1"]
    return None


def rank_by_accuracy(candidates: list[Candidate], variants: dict[str, Variant],
                     macs: dict[str, int], precision: str) -> None:
    """Give every candidate an accuracy figure of one kind (see the module docstring)."""
    top1 = {c.id: published_top1(variants[c.id], precision) for c in candidates}
    missing = [i for i, t in top1.items() if t is None]
    kind = "quantized (uint8)" if precision == "int8" else "float"
    for c in candidates:
        if not missing:
            c.accuracy = Figure(top1[c.id], "published_top1",
                                REFERENCE_LABEL.format(kind=kind, csv=REFERENCE_CSV))
        else:
            c.accuracy = Figure(float(macs[c.id]), "proxy_macs",
                                PROXY_LABEL.format(missing=", ".join(missing)))


# ---- the command's work ----------------------------------------------------------------

@dataclass
class PulledFile:
    name: str
    path: str
    source: str
    sha256: str
    bytes: int
    status: str
    range_requests: int = 0


@dataclass
class PullResult:
    source: str
    target: str
    variant: str
    format: str
    out: str
    files: list[PulledFile] = field(default_factory=list)
    choice: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"from": self.source, "target": self.target, "variant": self.variant,
                "format": self.format, "out": self.out,
                "files": [asdict(f) for f in self.files], "choice": self.choice}


def load_index(location: str, target: str | None, timeout: float
               ) -> tuple[Source, Index, str]:
    """The index at --from: index.json itself, dist/<target>/, or dist/ with --target."""
    subdirectory = ""
    if target is not None and location.rstrip("/").rsplit("/", 1)[-1] != target:
        subdirectory = target  # --from names dist/: the build is in dist/<target>/
    source, name = open_source(location, timeout, subdirectory)
    where = source.describe(name or INDEX)
    raw = source.read_bytes(name or INDEX, RECORD_LIMIT)
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"malformed index {where}: not JSON ({e})") from None
    index = parse_index(data, where)
    if target is not None and index.target != target:
        raise UserError(f"index {where} is for target {index.target!r}, not {target!r}")
    return source, index, where


def fetch_record(source: Source, entry: IndexEntry, cls: type[R]) -> R:
    """A variant's small record (profile, estimate), verified by the index's hash."""
    found = find_file(entry, cls.FILE)
    if found is None:
        raise UserError(f"variant {entry.id}: the index lists no {cls.FILE}")
    rel, expected = found
    data = source.read_bytes(rel, RECORD_LIMIT)
    if len(data) != expected.bytes or hashlib.sha256(data).hexdigest() != expected.sha256:
        raise HashMismatch(f"hash mismatch: {source.describe(rel)} does not match the "
                           "index's sha256")
    try:
        return cls.from_json(json.loads(data))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{source.describe(rel)}: not JSON") from None
    except ArtifactError as e:
        raise UserError(f"{source.describe(rel)}: {e}") from None


def choose(source: Source, index: Index, fmt: str, max_latency_ms: float,
           families: list[str] | None = None) -> tuple[IndexEntry, dict[str, Any]]:
    """The most accurate variant with the format whose latency on the target fits."""
    file_name, precision, _ = FORMATS[fmt]
    candidates, entries = [], {}
    for entry in index.variants:
        if find_file(entry, file_name) is None or (families and
                                                   entry.variant.family not in families):
            continue
        figure = latency_figure(fetch_record(source, entry, Profile),
                                fetch_record(source, entry, Estimates), index.target, fmt)
        candidates.append(Candidate(entry.id, figure,
                                    fits=figure is not None and figure.value <= max_latency_ms))
        entries[entry.id] = entry
    if not candidates:
        among = f" of family {', '.join(families)}" if families else ""
        raise UserError(f"no variant{among} in the index has {file_name} (an older build may "
                        "lack this format)")
    fitting = [c for c in candidates if c.fits]
    if not fitting:
        known = [c for c in candidates if c.latency is not None]
        if not known:
            raise UserError(f"no variant has a latency figure for {index.target} (neither "
                            "measured on it nor estimated): cannot choose by budget")
        fastest = min(known, key=lambda c: c.latency.value)
        raise UserError(f"nothing fits {max_latency_ms:g} ms on {index.target}: the fastest "
                        f"{fmt} variant, {fastest.id}, takes {fastest.latency.value:.2f} ms "
                        f"({fastest.latency.kind})")
    macs = {c.id: entries[c.id].headline.macs for c in fitting}
    rank_by_accuracy(fitting, {c.id: entries[c.id].variant for c in fitting}, macs, precision)
    # Most accurate; then the faster; then the id, so the same index always gives one answer.
    best = max(fitting, key=lambda c: (c.accuracy.value, -c.latency.value, c.id))
    choice = {"by": "budget", "max_latency_ms": max_latency_ms,
              "latency": asdict(best.latency), "accuracy": asdict(best.accuracy),
              "candidates": [c.to_json() for c in candidates]}
    return entries[best.id], choice


def pull(location: str, out: Path, fmt: str, variant_id: str | None = None,
         max_latency_ms: float | None = None, target: str | None = None,
         families: list[str] | None = None, timeout: float = 30.0, retries: int = 2
         ) -> PullResult:
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    if (variant_id is None) == (max_latency_ms is None):
        raise UserError("give either a variant id or --max-latency-ms")
    source, index, where = load_index(location, target, timeout)
    if variant_id is not None:
        entry, choice = find_entry(index, variant_id), {"by": "id"}
    else:
        entry, choice = choose(source, index, fmt, max_latency_ms, families)
    file_name = FORMATS[fmt][0]
    wanted = []
    for name in (file_name, CARD):
        found = find_file(entry, name)
        if found is None:
            raise UserError(f"variant {entry.id} has no {name} in the index"
                            + (" (built before app-ready files existed? rebuild it)"
                               if fmt == "app" and name == file_name else ""))
        wanted.append((name, *found))
    result = PullResult(where, index.target, entry.id, fmt, str(out), choice=choice)
    staged = []
    for name, rel, expected in wanted:
        dest = safe_relative(out, name)
        fetched_status, ranges = _fetch_verified(source, rel, dest, expected, retries, staged)
        result.files.append(PulledFile(name, str(dest), source.describe(rel), expected.sha256,
                                       expected.bytes, fetched_status, ranges))
    # Every file verified: only now does anything appear under its real name.
    for part, dest in staged:
        part.replace(dest)
    return result


def _fetch_verified(source: Source, rel: str, dest: Path, expected: Expected, retries: int,
                    staged: list[tuple[Path, Path]]) -> tuple[str, int]:
    """Bring one file into its partial file and verify it; (status, Range requests made)."""
    if dest.is_file() and dest.stat().st_size == expected.bytes and sha256(dest) == expected.sha256:
        return "unchanged", 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = partial_path(dest, expected)
    what = source.describe(rel)
    if part.exists() and part.stat().st_size >= expected.bytes:
        try:
            verify(part, expected, what)  # complete from an interrupted earlier run
            staged.append((part, dest))
            return "resumed", 0
        except HashMismatch:
            part.unlink()
    resumed = part.exists() and part.stat().st_size > 0
    fetched = source.fetch(rel, part, expected, retries)
    try:
        verify(part, expected, what)
    except HashMismatch:
        part.unlink(missing_ok=True)
        if not resumed:
            _discard(staged)
            raise
        # The partial file kept from an earlier run may have been stale: one clean download.
        fetched = source.fetch(rel, part, expected, retries)
        try:
            verify(part, expected, what)
        except HashMismatch:
            part.unlink(missing_ok=True)
            _discard(staged)
            raise
    staged.append((part, dest))
    return fetched.status, fetched.range_requests


def _discard(staged: list[tuple[Path, Path]]) -> None:
    """A mismatch aborts the pull: drop what was staged for it, so nothing is left behind."""
    for part, _ in staged:
        part.unlink(missing_ok=True)
