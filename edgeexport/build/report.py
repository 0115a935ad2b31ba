"""Reports for a build: report.json (everything), report.md (tables for GitHub) and a
self-contained, explorable report.html (build/report_page.py: a sortable, filterable table,
SVG plots with tooltips, every variant's layers; no network).

Every figure says what it is: MEASURED here (CPU, runtime, threads, runs) or ESTIMATED for
the target (cost model, known error)."""
from __future__ import annotations

import csv
import dataclasses
import functools
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from edgeexport.build.report_page import Column, page_data, render, sig
from edgeexport.contracts.artifacts import (
    Card,
    Estimates,
    Headline,
    Index,
    IndexEntry,
    Profile,
    measurement_key,
    model_file,
    read_record,
)
from edgeexport.contracts.variant import Analysis, Variant
from edgeexport.core.fileio import write_bytes, write_json
from edgeexport.targets import Target

# issue 14: the data of rpi4's default latency model (tflite-ruy: TFLite 2.7.1, 1.8 GHz).
REFERENCE_CSV = "rpi4_mlperf_v2.0_krai_calibration.csv"
REFERENCE_RUNTIME = "tflite"
INT8_HERE = measurement_key("onnxruntime", "int8")


@dataclass
class Row:
    """One variant as the report sees it: the index entry plus its records (the per-layer
    detail, the card's error map and weights, the estimates)."""
    entry: IndexEntry
    analysis: Analysis
    profile: Profile
    card: Card
    estimates: Estimates
    directory: Path

    @property
    def id(self) -> str:
        return self.entry.id

    @property
    def variant(self) -> Variant:
        return self.entry.variant

    @property
    def head(self) -> Headline:
        return self.entry.headline

    def measured(self, key: str) -> float | None:
        return self.head.measured_p50_ms.get(key)

    def estimated(self, precision: str) -> float | None:
        return self.head.estimated_ms.get(precision)

    def file_bytes(self, name: str) -> int | None:
        entry = self.entry.files.get(f"{self.id}/{name}")
        return entry.bytes if entry else None


def _rows(root: Path, index: Index) -> list[Row]:
    from edgeexport.measure.profile import read_analysis
    return [Row(entry, read_analysis(root / entry.id), read_record(root / entry.id, Profile),
                read_record(root / entry.id, Card), read_record(root / entry.id, Estimates),
                root / entry.id)
            for entry in index.variants]


def _measured_on(rows: list[Row]) -> str:
    """The CPUs the measurements ran on, from their own records: with --farm, the boards',
    not this machine's."""
    return " and ".join(sorted({m.where["cpu"] for r in rows
                                for m in r.profile.measurements.values()}))


@functools.lru_cache(maxsize=1)
def reference_table() -> tuple[dict, ...]:
    """The shipped real Raspberry Pi 4 measurements (MLPerf v2.0, the rows of rpi4's default
    latency model's runtime), parsed once: latency and published ImageNet top-1 per network."""
    from edgeexport.models import family_of_alias
    text = (resources.files("edgeexport.data") / REFERENCE_CSV).read_text()
    return tuple({"family": family_of_alias(r["model_family"]),
                  "alpha": float(r["width_multiplier"]), "resolution": int(r["resolution"]),
                  "precision": "int8" if r["quantized"] == "true" else "fp32",
                  "latency_ms": float(r["mean_latency_ms"]), "top1": float(r["top1_percent"])}
                 for r in csv.DictReader(io.StringIO(text)) if r["runtime"] == REFERENCE_RUNTIME)


def reference_measurements(target: Target) -> list[dict]:
    """Real measurements of the target shipped with edgeexport (rpi4 only)."""
    return list(reference_table()) if target.name == "rpi4" else []


def _reference_points(target: Target, reference: list[dict]) -> list[dict]:
    """The shipped real measurements of the target beside this edgeexport's estimate of each
    network (the plot "Estimate vs measurement")."""
    if not reference or target.latency_model is None:
        return []
    from edgeexport.analysis.cache import cached_analysis
    from edgeexport.estimate.estimates import estimate
    networks = sorted({(m["family"], m["alpha"], m["resolution"]) for m in reference})
    analyses = {n: cached_analysis(Variant(*n)) for n in networks}
    points = []
    for m in reference:
        network = (m["family"], m["alpha"], m["resolution"])
        if getattr(target.latency_model, m["precision"]) is None:
            continue
        est = estimate(analyses[network], target, m["precision"]).end_to_end.latency_ms
        points.append({"id": Variant(*network).id, "precision": m["precision"],
                       "measured": sig(m["latency_ms"]), "estimated": sig(est)})
    return points


def _columns(rows: list[Row], target: Target, label: str = "here",
             where: str = "") -> list[Column]:
    """The variant table, for report.md and report.html (``in_markdown=False``: the page's
    own columns). Each column's title says what its figures are."""
    def fmt(value, spec="{:.2f}"):
        return "–" if value is None else spec.format(value)

    def col(head, values, spec="{:.2f}", title="", in_markdown=True):
        return Column(head, [fmt(v, spec) for v in values], [sig(v, 6) for v in values],
                      title, in_markdown)

    here = f"MEASURED {label}" + (f" ({where})" if where else "")
    model = target.latency_model
    est = (f"ESTIMATED for {target.name} by the cost model of {model.runtime}; known error: "
           f"{model.known_error}") if model else f"{target.name} has no latency model"
    tflite = [r.file_bytes(model_file("int8", "tflite")) for r in rows]
    ratio = lambda a, b: None if a is None or not b else a / b  # noqa: E731
    fp32_here = [r.measured(measurement_key("onnxruntime", "fp32")) for r in rows]
    int8_here = [r.measured(INT8_HERE) for r in rows]
    return [
        Column("variant", [r.id for r in rows], [r.id for r in rows], "family_α_resolution"),
        col("α", [r.variant.alpha for r in rows], "{:g}", "width multiplier", False),
        col("resolution", [r.variant.resolution for r in rows], "{:d}", "input pixels",
            False),
        col("params (M)", [r.head.params / 1e6 for r in rows], title="parameters, exact count"),
        col("MACs (M)", [r.head.macs / 1e6 for r in rows], "{:.1f}",
            "multiply-accumulates per image, exact count"),
        col(f"int8 p50 {label} (ms)", int8_here, "{:.3f}", f"{here}: onnxruntime int8"),
        col(f"fp32 p50 {label} (ms)", fp32_here, "{:.3f}", f"{here}: onnxruntime fp32"),
        col(f"LiteRT int8 {label} (ms)",
            [r.measured(measurement_key("litert", "int8")) for r in rows], "{:.3f}",
            f"{here}: LiteRT (XNNPACK) int8"),
        col(f"est. int8 {target.name} (ms)", [r.estimated("int8") for r in rows], title=est),
        col(f"est. board mJ {target.name}", [r.head.estimated_board_mj.get("int8")
                                               for r in rows],
            title="ESTIMATED: estimated int8 latency × the board power under load"),
        col(f"fp32/int8 {label}", [ratio(f, i) for f, i in zip(fp32_here, int8_here)],
            title=f"{here}: onnxruntime fp32 p50 / int8 p50; above 1: int8 is faster",
            in_markdown=False),
        col(f"est. fp32/int8 {target.name}",
            [ratio(r.estimated("fp32"), r.estimated("int8")) for r in rows],
            title=f"{est}: fp32 / int8", in_markdown=False),
        col("sep/std MACs", [r.analysis.separable_ratio for r in rows], "{:.3f}",
            "exact: MACs of the depthwise separable blocks / of the standard convolutions "
            "they replace (1/N + 1/K² per block)"),
        Column("int8 cosine", [fmt(r.head.int8_cosine_onnx, "{:.4f}")
                               + ("" if r.head.int8_enforced else "*") for r in rows],
               [sig(r.head.int8_cosine_onnx, 6) for r in rows],
               "onnxruntime int8 vs fp32 on held-out images; * = random weights, reported "
               "but not enforced"),
        col(".tflite int8 (KB)", [t / 1024 if t else None for t in tflite], "{:.0f}",
            "size of model.int8.tflite"),
    ]


def _repair_lines(row: Row) -> list[str]:
    from edgeexport.build.quant_report import repair_lines
    from edgeexport.contracts.artifacts import RepairCosts
    if row.card.int8_repair is None:
        return []
    return repair_lines(row.card.int8_repair, RepairCosts.in_directory(row.directory))


def _int8_slower_note(rows: list[Row], label: str) -> list[str]:
    """Variants whose int8 file ran slower than their fp32 one where measured (onnxruntime):
    on an x86 host with AVX-512 VNNI a V3-Small's was (bench/int8_speed.py)."""
    slower = []
    for r in rows:
        fp32, int8 = r.measured(measurement_key("onnxruntime", "fp32")), r.measured(INT8_HERE)
        if fp32 and int8 and int8 > fp32:
            slower.append(f"{r.id} ({fp32 / int8:.2f}×)")
    if not slower:
        return []
    return [f"MEASURED {label}: int8 ran SLOWER than fp32 in onnxruntime for "
            f"{', '.join(slower)} (fp32 p50 / int8 p50)."]


def _energy_note(rows: list[Row], target: Target) -> str:
    """How the board energy figures were made, from the estimates' own records (the power
    of the runtime's fit where it was measured, not the target's generic load power)."""
    sources = sorted({e.energy.board_source for r in rows
                      for e in r.estimates.estimates.values() if e.energy.board_mj is not None})
    how = "; ".join(sources) if sources else (
        f"estimated latency × the target's board power under load ({target.power_source})")
    return f"Board energy (ESTIMATED) = {how}. Compute/memory energy: Horowitz 2014 proxy."


def write_reports(root: Path, target: Target, index: Index, chosen_id: str | None = None) -> None:
    from edgeexport.build import board_report
    rows = _rows(root, index)
    measured_at = board_report.place(rows, _measured_on(rows))
    where, label = measured_at.description, measured_at.label
    chosen = next((r for r in rows if r.id == chosen_id), None) or next(
        (r for r in rows if r.id == "mobilenet_v2_1_224"), rows[0])
    reference = reference_measurements(target)
    model = target.latency_model
    notes = [
        f"MEASURED: on {where}, onnxruntime and LiteRT (XNNPACK), 1 thread, p50 of 30 runs "
        "after 5 warm-up runs, measured one variant at a time.",
        (f"ESTIMATED for {target.name}: runtime {model.name} ({model.runtime}) at "
         f"{model.clock_mhz:g} MHz, {model.threads} thread(s); cost model fitted by `edgeexport "
         f"fit-latency` ({model.source}); known error: {model.known_error}.") if model else
        f"No estimate: target {target.name} has no latency model.",
        "int8 cosine: onnxruntime int8 vs fp32 on held-out images; * = random weights, "
        "reported but not enforced (untrained networks amplify rounding noise).",
        _energy_note(rows, target),
    ]
    notes += _int8_slower_note(rows, label)
    columns = _columns(rows, target, label, where)
    if measured_at.device:  # the board's own figures, its state, and the estimate's error
        notes[0] = board_report.note(rows)
        extra_head, extra_body = board_report.columns(rows, target.name)
        columns += [Column(h, [b[j] for b in extra_body], [None] * len(rows))
                    for j, h in enumerate(extra_head)]
    md_columns = [c for c in columns if c.in_markdown]
    head = [c.head for c in md_columns]
    body = [[c.cells[i] for c in md_columns] for i in range(len(rows))]
    md = [f"# edgeexport build: {target.name}", ""] + [f"- {n}" for n in notes] + [""]
    md += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(row) + " |" for row in body]
    md += ["", f"## Per-layer, {chosen.id} (int8, measured {label})", "",
           "| layer | op | ms | MACs | energy µJ (proxy) |", "|---|---|---|---|---|"]
    md += [f"| {x.name} | {x.op} | {x.latency_ms:.4f} | {x.macs or 0:,} | "
           f"{(x.energy_uj or 0):.2f} |"
           for x in chosen.profile.measurements[INT8_HERE].layers if x.latency_ms > 0]
    write_bytes(root / "report.md", ("\n".join(md) + "\n").encode())
    write_json(root / "report.json", {
        "target": target.name, "notes": notes, "where_measured": where,
        "variants": [dict(dataclasses.asdict(r.entry), separable_ratio=r.analysis.separable_ratio)
                     for r in rows]})
    data = page_data(rows, target, reference, _reference_points(target, reference), label,
                     _repair_lines)
    write_bytes(root / "report.html", render(target, notes, columns, data, chosen.id))
