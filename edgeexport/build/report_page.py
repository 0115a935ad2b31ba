"""report.html: one self-contained page to explore a build, offline.

The page is a variant table (sortable, filterable, each row a link to the variant's layer
view), scatter and Pareto plots drawn as inline SVG by the page's own script, and a layer
view per variant (per-layer latency as horizontal bars, the int8 error map, the emulated ARM
check of its files when the build ran one). Everything it shows comes from one JSON block
embedded in the page, made here from the build's records; the script and style sheet are
shipped in the package (report_assets/) and inlined: no network, no CDN, no web font.

Every number carries what it is: latencies are MEASURED (where, runtime, threads, runs) or
ESTIMATED (the target's cost model and its known error), accuracies name their source (the
published checkpoint's top-1, not the build's weights). The same build gives the same bytes:
no timestamps, no random ids, the records' own order.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from edgeexport.build.arm_report import view as arm_view
from edgeexport.contracts.artifacts import (
    TFLITE_INT8_VS_PYTORCH,
    Estimated,
    Measured,
    measurement_key,
    model_file,
)

if TYPE_CHECKING:
    from edgeexport.targets import Target

ASSETS = "report_assets"
INT8_HERE = measurement_key("onnxruntime", "int8")
FP32_HERE = measurement_key("onnxruntime", "fp32")
PUBLISHED_TOP1 = ("ImageNet top-1 of Google's published int8 checkpoint, measured by MLPerf "
                  "Inference v2.0 (Krai) on a Raspberry Pi 4")


@dataclass
class Column:
    """One column of the variant table: its head, what the figure is (the head's tooltip),
    each row's text and the value it sorts by (None: no figure, sorted last)."""
    head: str
    cells: list[str]
    values: list[float | str | None]
    title: str = ""
    in_markdown: bool = True


def sig(value: float | None, digits: int = 4) -> float | None:
    """``digits`` significant digits: the page's JSON stays small and stable."""
    return None if value is None else float(f"{value:.{digits}g}")


def measured_how(m: Measured) -> str:
    """Where and how a measurement was taken, from its own record."""
    run = m.end_to_end
    place = f"on board {m.where['device']}" if m.where.get("device") else "here"
    return (f"MEASURED {place} ({m.where.get('cpu', '?')}): {run.runtime} ({run.runtime_version}), "
            f"{run.threads} thread(s), p50 of {run.runs} runs after {run.warmup} warm-up")


def estimated_how(e: Estimated, target: Target) -> str:
    """Which cost model made an estimate, and its known error on this family."""
    model = target.latency_models.get(e.runtime)
    if model is None:
        return f"ESTIMATED for {e.target} by its {e.runtime} cost model"
    fit = getattr(model, e.precision, None)
    by_family = fit.loo_max_abs_error_by_family if fit is not None else None
    family = e.variant.family
    if by_family is None:
        error = model.known_error
    elif family in by_family:
        error = f"leave-one-out max |error| {100 * by_family[family]:.1f}% on {family}"
    else:
        error = f"{family} was not among the networks it was fitted to: error not known"
    return (f"ESTIMATED for {e.target} by the cost model of {model.runtime} at "
            f"{model.clock_mhz:g} MHz, {model.threads} thread(s); known error: {error}")


def _series_name(m: Measured, place_label: str) -> str:
    return f"{m.end_to_end.runtime} {m.precision} p50, measured {place_label}"


class _Labels:
    """Long label strings, stored once in the page and referred to by position."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._at: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        if text not in self._at:
            self._at[text] = len(self.items)
            self.items.append(text)
        return self._at[text]


def _weights(row) -> dict[str, Any]:
    w = row.card.weights
    kind = "random weights" if w.sha256 is None else "your weights"
    out = {"kind": kind, "source": w.source}
    check = row.card.validation.get(TFLITE_INT8_VS_PYTORCH)
    if check is not None and check.top1_candidate is not None:
        out["top1_int8"] = sig(100 * check.top1_candidate)
        out["top1_images"] = check.inputs
    return out


def _layer_view(row, labels: _Labels, target: Target, repair_lines) -> dict[str, Any]:
    """The variant's per-layer rows in network order: measured latency here (onnxruntime
    int8, fp32), the target estimate (int8), and the int8 error map, joined on layer names.
    Layers with no time anywhere and no error-map row (folded BatchNorms) are left out."""
    measured = {k: row.profile.measurements.get(k) for k in (INT8_HERE, FP32_HERE)}
    estimated = row.estimates.estimates.get("int8")
    times = {k: {x.name: x.latency_ms for x in m.layers} if m else {}
             for k, m in (*measured.items(), ("est_int8", estimated))}
    emap = row.card.int8_error_map
    errors = {x.layer: x for x in emap.layers} if emap else {}
    static = {x.name: x for x in row.analysis.layers} if row.analysis else {}
    order = list(static)
    for name in [*times[INT8_HERE], *errors]:
        if name not in static and name not in order:
            order.append(name)
    ops = {**{x.name: x.op for m in measured.values() if m for x in m.layers},
           **{n: x.op for n, x in static.items()}}
    names = [n for n in order if n in errors or any((t.get(n) or 0) > 0 for t in times.values())]
    repair = row.card.int8_repair
    kept = sorted({n for r in (repair.formats if repair else []) for n in r.kept})
    floated = sorted({n for r in (repair.formats if repair else []) for n in r.float_layers})
    view: dict[str, Any] = {
        "names": names, "ops": [ops.get(n, errors[n].op if n in errors else "?") for n in names],
        "macs": [static[n].macs if n in static else None for n in names],
        "series": {}, "how": {},
    }
    for key, t in times.items():
        if t:
            view["series"][key] = [sig(t.get(n)) for n in names]
    for key, m in measured.items():
        if m and m.layers:
            view["how"][key] = labels(f"{measured_how(m)}; {m.layer_note}")
    if estimated is not None:
        view["how"]["est_int8"] = labels(estimated_how(estimated, target)
                                         + "; per layer: the cost model's terms for the layer")
    if emap is not None:
        view["sqnr"] = {field: [getattr(errors[n], field) if n in errors else None
                                for n in names]
                        for field in ("onnx_local_db", "onnx_db", "tflite_db")}
        view["worst"] = [n for n in emap.worst if n in errors]
        view["metric"] = labels(f"{emap.metric}; {emap.images} images")
    view["kept"] = kept
    view["float"] = floated
    view["repair"] = repair_lines(row)
    view["arm"] = [arm_view(check) for _, check in sorted(row.card.arm.items())]
    return view


def page_data(rows, target: Target, reference: list[dict], reference_points: list[dict],
              place_label: str, repair_lines) -> dict[str, Any]:
    """Everything the page shows, from the build's records (report.Row)."""
    from edgeexport.models import FAMILIES
    labels = _Labels()
    top1 = {(m["family"], m["alpha"], m["resolution"]): m["top1"] for m in reference
            if m["precision"] == "int8"}
    series: dict[str, dict[str, str]] = {}
    variants, layers = [], {}
    for r in rows:
        v = r.variant
        lat, how = {}, {}
        for key, m in r.profile.measurements.items():
            series.setdefault(key, {"name": _series_name(m, place_label),
                                    "kind": "measured"})
            lat[key], how[key] = sig(m.end_to_end.p50_ms), labels(measured_how(m))
        for precision, e in r.estimates.estimates.items():
            key = f"est_{precision}"
            series.setdefault(key, {"name": f"{precision}, estimated for {e.target}",
                                    "kind": "estimated"})
            lat[key], how[key] = sig(e.end_to_end.latency_ms), labels(estimated_how(e, target))
        tflite = r.file_bytes(model_file("int8", "tflite"))
        published = top1.get((v.family, v.alpha, v.resolution))
        variants.append({
            "id": r.id, "family": v.family, "alpha": v.alpha, "resolution": v.resolution,
            "params": r.head.params, "macs": r.head.macs,
            "tflite_kb": sig(tflite / 1024) if tflite else None,
            "cosine": sig(r.head.int8_cosine_onnx), "enforced": r.head.int8_enforced,
            "lat": lat, "how": how, "weights": _weights(r),
            "top1": None if published is None else {"value": published,
                                                    "source": labels(PUBLISHED_TOP1)},
        })
        layers[r.id] = _layer_view(r, labels, target, repair_lines)
    families = sorted({v["family"] for v in variants})
    order = [k for k in (INT8_HERE, measurement_key("litert", "int8"), "est_int8", FP32_HERE,
                         measurement_key("litert", "fp32"), "est_fp32") if k in series]
    order += sorted(k for k in series if k not in order)
    return {
        "target": target.name,
        "families": {f: FAMILIES[f].color if f in FAMILIES else "#555" for f in families},
        "series": [{"key": k, **series[k]} for k in order],
        "variants": variants, "layers": layers, "labels": labels.items,
        "reference": reference_points,
        "published_top1": PUBLISHED_TOP1,
    }


def _asset(name: str) -> str:
    return (resources.files("edgeexport.build") / ASSETS / name).read_text("utf-8")


def _json_block(data: dict) -> str:
    """JSON safe inside <script>: no "</", no HTML comment openers."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def render(target: Target, notes: list[str], columns: list[Column], data: dict,
           chosen_id: str) -> bytes:
    esc = html.escape
    head = "".join(
        f'<th scope="col" tabindex="0" title="{esc(c.title or c.head)}">{esc(c.head)}</th>'
        for c in columns)
    body = []
    for i, variant in enumerate(data["variants"]):
        vid = variant["id"]
        cells = []
        for j, c in enumerate(columns):
            value = c.values[i]
            sort = "" if value is None else f' data-v="{esc(str(value))}"'
            text = esc(c.cells[i])
            if j == 0:
                text = f'<a href="#v={esc(vid)}">{text}</a>'
            cells.append(f"<td{sort}>{text}</td>")
        body.append(f'<tr data-id="{esc(vid)}" data-family="{esc(variant["family"])}">'
                    + "".join(cells) + "</tr>")
    families = "".join(f'<option value="{esc(f)}">{esc(f)}</option>' for f in data["families"])
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgeexport: {esc(target.name)}</title>
<style>{_asset("report.css")}</style></head>
<body data-chosen="{esc(chosen_id)}">
<h1>edgeexport build: {esc(target.name)} ({esc(target.description)})</h1>
<ul class="notes">{''.join(f'<li>{esc(n)}</li>' for n in notes)}</ul>
<section id="variants"><h2>Variants</h2>
<div class="controls"><label>filter <input id="filter" type="search"
 placeholder="e.g. v2_0.5 or _224"></label>
<label>family <select id="family"><option value="">all</option>{families}</select></label>
<span id="shown"></span>
<span class="hint">Click a column head to sort (again: reverse), a variant for its layers.</span>
</div>
<div class="scroll"><table id="variant-table"><thead><tr>{head}</tr></thead>
<tbody>{''.join(body)}</tbody></table></div></section>
<section id="plots"><h2>Plots</h2>
<p class="hint">Hover a point for its variant and figures; click it for its layers.
Points follow the filter above.</p>
<div class="plots">
<figure id="plot-scatter"><div class="controls"><label>y <select id="scatter-y"></select></label>
<label>x <select id="scatter-x"><option value="macs">MACs (M)</option>
<option value="params">parameters (M)</option>
<option value="tflite_kb">model.int8.tflite (KB)</option></select></label>
<label><input type="checkbox" id="scatter-log"> log axes</label></div>
<svg id="scatter" role="img" aria-label="latency against size"></svg>
<figcaption id="scatter-caption"></figcaption></figure>
<figure id="plot-pareto"><div class="controls"><label>x <select id="pareto-x"></select></label>
</div><svg id="pareto" role="img" aria-label="Pareto front: latency against top-1"></svg>
<figcaption id="pareto-caption"></figcaption></figure>
<figure id="plot-reference"><svg id="reference" role="img"
 aria-label="estimate against real measurements"></svg>
<figcaption id="reference-caption"></figcaption></figure>
</div></section>
<section id="layers" hidden><h2 id="layers-title">Layers</h2>
<div id="layers-summary"></div>
<div class="controls"><label>bars <select id="layers-series"></select></label>
<label><input type="checkbox" id="layers-compute"> only layers with time</label></div>
<div class="scroll"><table id="layer-table"></table></div>
<div id="layers-arm"></div></section>
<div id="tip" role="tooltip" hidden></div>
<script type="application/json" id="report-data">{_json_block(data)}</script>
<script>{_asset("report.js")}</script>
</body></html>
"""
    return page.encode()
