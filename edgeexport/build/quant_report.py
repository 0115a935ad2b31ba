"""An export directory's int8 error map and repair record (card.json), with the per-layer
latency of its profile.json when the directory was profiled (a build variant)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from edgeexport.contracts.artifacts import PROFILE, Card, Profile, RepairCosts, read_record
from edgeexport.contracts.int8 import RepairCost
from edgeexport.core.errors import UserError
from edgeexport.int8.error_map import profile_latency

NO_LATENCY = "not measured: the directory has no profile.json"
WORST_ROW = ' class="worst"'


def load_quant_report(directory: Path) -> dict:
    card = read_record(directory, Card)
    if card.int8_error_map is None or card.int8_repair is None:
        raise UserError(f"{directory}/card.json: no int8 error map (exported by an older "
                        "edgeexport; export again)")
    emap = card.int8_error_map
    if (directory / PROFILE).is_file():
        profiled = profile_latency(read_record(directory, Profile))
        if profiled is not None:
            emap.with_latency(*profiled)
    return {"directory": str(directory), "variant_id": card.variant_id,
            "int8_error_map": dataclasses.asdict(emap),
            "int8_repair": dataclasses.asdict(card.int8_repair),
            "int8_repair_cost": [dataclasses.asdict(c) for c in
                                 RepairCosts.in_directory(directory).values()]}


def error_map_html(variant_id: str, card: Card, profile: Profile | None,
                   costs: dict[str, RepairCost] | None = None) -> str:
    """The error map as an HTML section, the worst layers highlighted (report.html);
    ``costs``: the mixed files' measured latency (RepairCosts.in_directory)."""
    import html
    if card.int8_error_map is None or card.int8_repair is None:
        return ""
    emap = card.int8_error_map
    profiled = profile_latency(profile)
    if profiled is not None:
        emap.with_latency(*profiled)
    source = emap.latency_source
    worst = set(emap.worst)
    repair = card.int8_repair
    kept = {layer for r in repair.formats for layer in r.kept}
    esc = html.escape
    cell = lambda v, f: "–" if v is None else f.format(v)  # noqa: E731
    rows = "".join(
        f"<tr{WORST_ROW if x.layer in worst else ''}><td>{esc(x.layer)}</td>"
        f"<td>{esc(x.op)}</td><td>{cell(x.onnx_local_db, '{:.1f}')}</td>"
        f"<td>{cell(x.onnx_db, '{:.1f}')}</td><td>{cell(x.tflite_db, '{:.1f}')}</td>"
        f"<td>{cell(x.latency_ms, '{:.3f}')}</td><td>{'16-bit' if x.layer in kept else ''}</td>"
        "</tr>" for x in emap.layers)
    repairs = (f"<li><strong>int8 precision: {esc(repair.precision)}</strong>"
               + (" (16-bit activation islands: an integer-only NPU cannot run this file)"
                  if repair.precision != "full int8" else "") + "</li>") + "".join(
        f"<li>{esc(r.format)}: {esc(r.ranges)} ranges, {len(r.kept)} layer(s) kept at 16-bit "
        f"activations "
        f"({esc(', '.join(r.kept))}), cosine {r.cosine_before:.4f} → {r.cosine_after:.4f}"
        + _cost_html((costs or {}).get(r.format)) + "</li>" for r in repair.formats) or \
        ("<li>repair: none needed (every layer plain int8)</li>" if repair.enabled else
         "<li>repair: off (--no-repair, or no --weights: int8 drift not enforced)</li>")
    return (f'<section id="int8-error-map"><h2>int8 error map, {esc(variant_id)}</h2>'
            f"<ul><li>{esc(emap.metric)}; {emap.images} images. Highlighted: the "
            f"{len(worst)} layers with the lowest local SQNR.</li>"
            f"<li>latency: {esc(source or NO_LATENCY)}</li>{repairs}</ul>"
            "<table><tr><th>layer</th><th>op</th><th>local dB</th><th>ONNX dB</th>"
            f"<th>TFLite dB</th><th>latency ms</th><th>kept</th></tr>{rows}</table></section>")


def cost_text(cost: RepairCost | None) -> str:
    return "" if cost is None else (f", p50 {cost.before_ms:.3f} → {cost.after_ms:.3f} ms "
                                    f"({cost.note})")


def _cost_html(cost: RepairCost | None) -> str:
    import html
    return html.escape(cost_text(cost))
