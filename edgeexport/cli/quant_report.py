"""`edgeexport quant-report DIR`: the per-layer int8 error map of an export directory."""
from __future__ import annotations

from pathlib import Path

import click

from edgeexport.cli.group import main
from edgeexport.cli.options import json_option
from edgeexport.core.console import print_json, print_table

WORST_SHOWN = 5


@main.command("quant-report", epilog="Example: edgeexport quant-report out/mnv2")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@json_option
def quant_report(directory, as_json):
    """Per-layer int8 SQNR (ONNX and TFLite side by side), latency, and any repair."""
    from edgeexport.build.quant_report import (
        NO_LATENCY,
        cost_text,
        load_quant_report,
        rounding_words,
    )
    from edgeexport.contracts.artifacts import RepairCosts
    report = load_quant_report(directory)
    costs = RepairCosts.in_directory(directory)
    if as_json:
        print_json(report)
        return
    emap, repair = report["int8_error_map"], report["int8_repair"]
    worst = set(emap["worst"])
    kept = {layer for r in repair["formats"] for layer in r["kept"]}
    rows = [[("▶ " if x["layer"] in worst else "  ") + x["layer"], x["op"],
             _db(x["onnx_local_db"]), _db(x["onnx_db"]), _db(x["tflite_db"]),
             "—" if x["latency_ms"] is None else f"{x['latency_ms']:.3f}",
             "16-bit" if x["layer"] in kept else ""] for x in emap["layers"]]
    footer = [f"▶ the {WORST_SHOWN} layers with the lowest local SQNR (their own int8 noise)",
              f"metric: {emap['metric']}; {emap['images']} images",
              f"latency: {emap['latency_source'] or NO_LATENCY}"]
    footer.append(f"int8 precision: {repair['precision'].upper()}" if repair["precision"]
                  != "full int8" else "int8 precision: full int8")
    for r in repair["formats"]:
        footer.append(f"{r['format']}: {r['ranges']} ranges, weights "
                      f"{rounding_words(r.get('weight_rounding', 'nearest'))}, "
                      f"kept {len(r['kept'])} layer(s) "
                      f"at 16-bit activations{' (every activation)' if r['every_layer'] else ''}"
                      f", cosine {r['cosine_before']:.4f} → {r['cosine_after']:.4f}"
                      + cost_text(costs.get(r["format"])))
    if not repair["formats"]:
        footer.append("repair: none needed (every layer plain int8)" if repair["enabled"] else
                      "repair: off (--no-repair, or no --weights: int8 drift not enforced)")
    print_table(f"{directory}: int8 error map", ["layer", "op", "local dB", "ONNX dB",
                                                 "TFLite dB", "latency ms", "kept"],
                rows, footer)


def _db(value) -> str:
    return "—" if value is None else f"{value:.1f}"
