"""Reports for a build: report.json (everything), report.md (tables for GitHub) and a
self-contained report.html (plots inline as PNG data URIs, no network).

Every figure says what it is: MEASURED here (CPU, runtime, threads, runs) or ESTIMATED for
the target (cost model, known error)."""
from __future__ import annotations

import base64
import csv
import dataclasses
import functools
import html
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from edgeexport.contracts.artifacts import (
    Card,
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
    """One variant as the report sees it: the index entry plus the per-layer detail."""
    entry: IndexEntry
    analysis: Analysis
    profile: Profile

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
    return [Row(entry, read_analysis(root / entry.id), read_record(root / entry.id, Profile))
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


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    import matplotlib.pyplot as plt
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _per_variant_axes(plt, rows):
    """A figure wide enough for one bar group per variant, labelled by variant id."""
    fig, ax = plt.subplots(figsize=(max(6.4, 0.22 * len(rows)), 4))
    xs = list(range(len(rows)))
    ax.set_xticks(xs, [r.id for r in rows], rotation=90, fontsize=6)
    return fig, ax, xs


def _plots(rows, target, chosen, reference, where, label="here") -> list[tuple[str, str, str]]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgeexport.models import FAMILIES
    plots = []
    key = INT8_HERE

    for xkey, xlabel in (("macs", "MACs (M)"), ("params", "parameters (M)")):
        fig, ax = plt.subplots(figsize=(6.4, 4))
        for fam in FAMILIES.values():
            pts = [(getattr(r.head, xkey) / 1e6, r.measured(key)) for r in rows
                   if r.variant.family == fam.name]
            if pts:
                ax.scatter(*zip(*pts), label=fam.name, color=fam.color, s=22)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("int8 latency p50 (ms)")
        ax.set_title(f"MEASURED {label}: onnxruntime int8 latency vs {xlabel.split()[0]}")
        ax.legend(fontsize=7)
        plots.append((f"Latency vs {xlabel.split()[0]}", _png(fig),
                      f"Measured on {where}, onnxruntime, 1 thread, median of the runs."))

    # Pareto front: target latency (estimated) vs ImageNet top-1 where a real figure exists.
    acc = {(m["family"], m["alpha"], m["resolution"]): m["top1"] for m in reference
           if m["precision"] == "int8"}
    pts = [(r.estimated("int8"), acc[(r.variant.family, r.variant.alpha, r.variant.resolution)],
            r.id) for r in rows
           if (r.variant.family, r.variant.alpha, r.variant.resolution) in acc
           and r.estimated("int8") is not None]
    if pts:
        fig, ax = plt.subplots(figsize=(6.4, 4))
        pts.sort()
        front, best = [], -1.0
        for lat, top1, vid in pts:
            if top1 > best:
                front.append((lat, top1, vid))
                best = top1
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], color="#999", s=18, label="variants")
        ax.plot([p[0] for p in front], [p[1] for p in front], "o-", color="#d62728",
                label="Pareto front")
        ax.set_xlabel(f"ESTIMATED int8 latency on {target.name} (ms)")
        ax.set_ylabel("ImageNet top-1 (%) of the published int8 model")
        ax.legend(fontsize=7)
        plots.append(("Pareto front", _png(fig),
                      "Latency: estimated by the target's cost model. Top-1: measured by MLPerf "
                      "v2.0 (Krai) on Google's published 8-bit checkpoints."))

    fig, ax, xs = _per_variant_axes(plt, rows)
    here = [(r.measured(measurement_key("onnxruntime", "fp32")) or 0) / (r.measured(key) or 1)
            for r in rows]
    est = [(r.estimated("fp32") or 0) / (r.estimated("int8") or 1) for r in rows]
    ax.bar([x - 0.2 for x in xs], here, 0.4, label=f"MEASURED {label} ({where})")
    if any(est):
        ax.bar([x + 0.2 for x in xs], est, 0.4, label=f"ESTIMATED on {target.name}")
    ax.axhline(1, color="k", lw=0.5)
    ax.set_ylabel("fp32 latency / int8 latency")
    ax.legend(fontsize=7)
    plots.append(("int8 vs fp32 speed-up", _png(fig),
                  f"Above 1: int8 is faster. Measured: onnxruntime p50 {label}; estimated: the "
                  "target's cost model."))

    layers = [x for x in chosen.profile.measurements[key].layers if x.latency_ms > 0]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(max(6.4, 0.12 * len(layers)), 6), sharex=True)
    a1.bar(range(len(layers)), [x.latency_ms for x in layers], color="#1f77b4")
    a1.set_ylabel(f"ms (MEASURED {label})")
    a2.bar(range(len(layers)), [x.energy_uj or 0 for x in layers], color="#ff7f0e")
    a2.set_ylabel("µJ (compute/memory proxy)")
    a2.set_xticks(range(len(layers)), [x.name for x in layers], rotation=90, fontsize=5)
    a1.set_title(f"{chosen.id}: per-layer latency and energy (int8)")
    plots.append((f"Per-layer latency and energy: {chosen.id}", _png(fig),
                  f"Latency: onnxruntime profiler kernel times {label}. Energy: Horowitz 2014 "
                  "45 nm proxy (MACs and bytes), not a measurement."))

    if reference and target.latency_model is not None:
        from edgeexport.analysis.cache import cached_analysis
        from edgeexport.estimate.estimates import estimate
        fig, ax = plt.subplots(figsize=(5, 5))
        networks = {(m["family"], m["alpha"], m["resolution"]) for m in reference}
        analyses = {n: cached_analysis(Variant(*n)) for n in sorted(networks)}  # fp32 and int8 rows
        for precision, color in (("fp32", "#1f77b4"), ("int8", "#d62728")):
            pairs = [(m["latency_ms"], estimate(
                analyses[m["family"], m["alpha"], m["resolution"]], target,
                precision).end_to_end.latency_ms)
                for m in reference if m["precision"] == precision]
            ax.scatter(*zip(*pairs), color=color, label=precision, s=18)
        top = max(ax.get_xlim()[1], ax.get_ylim()[1])
        ax.plot([0, top], [0, top], "k--", lw=0.7)
        ax.set_xlabel(f"MEASURED on a real {target.name} (ms)")
        ax.set_ylabel("ESTIMATED (ms)")
        ax.legend(fontsize=7)
        plots.append(("Estimate vs measurement", _png(fig),
                      f"Real {target.name} measurements: {target.latency_model.runtime}. "
                      f"Known error: {target.latency_model.known_error}."))

    fig, ax, xs = _per_variant_axes(plt, rows)
    ax.bar(xs, [sum(b.standard_macs for b in r.analysis.separable) / 1e6 for r in rows],
           label="as standard conv", color="#bbb")
    ax.bar(xs, [sum(b.separable_macs for b in r.analysis.separable) / 1e6 for r in rows],
           label="depthwise separable", color="#2ca02c")
    ax.set_yscale("log")
    ax.set_ylabel("MACs of the separable blocks (M)")
    ax.legend(fontsize=7)
    plots.append(("Separable vs standard convolution", _png(fig),
                  "Exact counts: each depthwise + pointwise pair against the K×K standard "
                  "convolution it replaces (ratio 1/N + 1/K²)."))
    return plots


def _table(rows: list[Row], target: Target,
           label: str = "here") -> tuple[list[str], list[list[str]]]:
    head = ["variant", "params (M)", "MACs (M)", f"int8 p50 {label} (ms)",
            f"fp32 p50 {label} (ms)", f"LiteRT int8 {label} (ms)", f"est. int8 {target.name} (ms)",
            f"est. board mJ {target.name}", "sep/std MACs", "int8 cosine", ".tflite int8 (KB)"]

    def fmt(value, spec="{:.2f}"):
        return "–" if value is None else spec.format(value)
    body = []
    for r in rows:
        tflite = r.file_bytes(model_file("int8", "tflite"))
        body.append([
            r.id, fmt(r.head.params / 1e6), fmt(r.head.macs / 1e6, "{:.1f}"),
            fmt(r.measured(INT8_HERE), "{:.3f}"),
            fmt(r.measured(measurement_key("onnxruntime", "fp32")), "{:.3f}"),
            fmt(r.measured(measurement_key("litert", "int8")), "{:.3f}"),
            fmt(r.estimated("int8")), fmt(r.head.estimated_board_mj.get("int8")),
            fmt(r.analysis.separable_ratio, "{:.3f}"),
            fmt(r.head.int8_cosine_onnx, "{:.4f}") + ("" if r.head.int8_enforced else "*"),
            fmt(tflite / 1024 if tflite else None, "{:.0f}")])
    return head, body


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
        "Board energy = estimated latency × the target's board power under load "
        f"({target.power_source}). Compute/memory energy: Horowitz 2014 proxy.",
    ]
    head, body = _table(rows, target, label)
    if measured_at.device:  # the board's own figures, its state, and the estimate's error
        notes[0] = board_report.note(rows)
        extra_head, extra_body = board_report.columns(rows, target.name)
        head, body = head + extra_head, [a + b for a, b in zip(body, extra_body)]
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
    from edgeexport.build.quant_report import error_map_html
    from edgeexport.contracts.artifacts import RepairCosts
    error_map = error_map_html(chosen.id, read_record(root / chosen.id, Card),
                               chosen.profile, RepairCosts.in_directory(root / chosen.id))
    write_bytes(root / "report.html", _html(target, notes, head, body,
                                            _plots(rows, target, chosen, reference, where,
                                                   label),
                                            error_map))


def _html(target, notes, head, body, plots, error_map: str = "") -> bytes:
    esc = html.escape
    table = "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>" + "".join(
        "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in body) + "</table>"
    figures = "".join(f'<figure><h2>{esc(title)}</h2><img class="plot" alt="{esc(title)}" '
                      f'src="{src}"><figcaption>{esc(caption)}</figcaption></figure>'
                      for title, src, caption in plots)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgeexport: {esc(target.name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}
table{{border-collapse:collapse;font-size:12px}}td,th{{border:1px solid #ccc;padding:2px 6px}}
td{{text-align:right}}td:first-child{{text-align:left}}img{{max-width:100%}}
figcaption{{font-size:12px;color:#555}}
tr.worst td{{background:#fdd;font-weight:bold}}</style></head>
<body><h1>edgeexport build: {esc(target.name)} ({esc(target.description)})</h1>
<ul>{''.join(f'<li>{esc(n)}</li>' for n in notes)}</ul>{table}{figures}{error_map}
<script>
window.addEventListener("load", function () {{
  var imgs = document.querySelectorAll("img.plot"), ok = 0;
  imgs.forEach(function (img) {{ if (img.complete && img.naturalWidth > 0) ok++; }});
  document.body.setAttribute("data-plots", imgs.length);
  document.body.setAttribute("data-plots-rendered", ok);
}});
</script></body></html>
"""
    return page.encode()
