"""Read an export directory's int8 error map and repair record (card.json), with the per-layer
latency of its profile.json when the directory was profiled."""
from __future__ import annotations

import json
from pathlib import Path

from edgeexport.errors import UserError
from edgeexport.quant_error import ErrorMap, profile_latency
from edgeexport.repair import RepairSummary

CARD = "card.json"
NO_LATENCY = "not measured: the directory has no profile.json"
WORST_ROW = ' class="worst"'


def load_quant_report(directory: Path) -> dict:
    card_path = directory / CARD
    if not card_path.is_file():
        raise UserError(f"{directory}: no {CARD} (is it an export directory?)")
    try:
        card = json.loads(card_path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{card_path}: not a readable card ({e.__class__.__name__})") from None
    if "int8_error_map" not in card:
        raise UserError(f"{card_path}: no int8 error map (exported by an older edgeexport; "
                        "export again)")
    emap = ErrorMap.from_json(card["int8_error_map"])
    profiled = profile_latency(directory)
    if profiled is not None:
        emap.with_latency(*profiled)
    repair = RepairSummary.from_json(card["int8_repair"])
    return {"directory": str(directory), "variant_id": card.get("variant_id"),
            "int8_error_map": emap.to_json(), "int8_repair": repair.to_json()}


def error_map_html(variant_id: str, card: dict, profiled_layers: list[dict] | None) -> str:
    """The error map as an HTML section, the worst layers highlighted (report.html)."""
    import html
    if "int8_error_map" not in card:
        return ""
    emap = ErrorMap.from_json(card["int8_error_map"])
    source = emap.latency_source
    if profiled_layers:
        emap.with_latency({r["name"]: r["latency_ms"] for r in profiled_layers},
                          "profile.json (onnxruntime int8, measured here)")
        source = emap.latency_source
    worst = {x.layer for x in emap.worst()}
    repair = RepairSummary.from_json(card["int8_repair"])
    kept = {layer for r in repair.formats for layer in r.kept}
    esc = html.escape
    cell = lambda v, f: "–" if v is None else f.format(v)  # noqa: E731
    rows = "".join(
        f"<tr{WORST_ROW if x.layer in worst else ''}><td>{esc(x.layer)}</td>"
        f"<td>{esc(x.op)}</td><td>{cell(x.onnx_local_db, '{:.1f}')}</td>"
        f"<td>{cell(x.onnx_db, '{:.1f}')}</td><td>{cell(x.tflite_db, '{:.1f}')}</td>"
        f"<td>{cell(x.latency_ms, '{:.3f}')}</td><td>{'16-bit' if x.layer in kept else ''}</td>"
        "</tr>" for x in emap.layers)
    repairs = "".join(
        f"<li>repair ({esc(r.format)}): {len(r.kept)} layer(s) kept at 16-bit activations "
        f"({esc(', '.join(r.kept))}), cosine {r.cosine_before:.4f} → {r.cosine_after:.4f}, "
        f"p50 {cell(r.latency_before_ms, '{:.3f}')} → {cell(r.latency_after_ms, '{:.3f}')} ms "
        f"({esc(r.latency_note)})</li>" for r in repair.formats) or \
        "<li>repair: none needed (every layer plain int8)</li>"
    return (f'<section id="int8-error-map"><h2>int8 error map, {esc(variant_id)}</h2>'
            f"<ul><li>{esc(emap.metric)}; {emap.images} images. Highlighted: the "
            f"{len(worst)} layers with the lowest local SQNR.</li>"
            f"<li>latency: {esc(source or NO_LATENCY)}</li>{repairs}</ul>"
            "<table><tr><th>layer</th><th>op</th><th>local dB</th><th>ONNX dB</th>"
            f"<th>TFLite dB</th><th>latency ms</th><th>kept</th></tr>{rows}</table></section>")
