"""`edgeexport export`: one variant to validated fp32/int8 ONNX and TFLite with card.json."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from edgeexport.cli.group import main
from edgeexport.cli.options import json_option, target_option, variant_options
from edgeexport.core.console import print_json, print_table
from edgeexport.core.validate import INT8_MIN_COSINE, int8_holds
from edgeexport.int8.precision_plan import RANGE_METHODS


@main.command(epilog="Example: edgeexport export mobilenet_v2 --alpha 0.35 --resolution 96 "
                       "--formats onnx,tflite --out out/mnv2")
@variant_options
@click.option("--weights", type=click.Path(path_type=Path, dir_okay=False),
              help="state_dict: .pt/.pth (loaded with weights_only=True) or .safetensors")
@click.option("--calib", type=click.Path(path_type=Path, file_okay=False),
              help="calibration images: JPEG/PNG, flat or in class subfolders")
@click.option("--eval", "eval_dir", type=click.Path(path_type=Path, file_okay=False),
              help="labelled images to validate on (default: held out from --calib)")
@click.option("--labels", type=click.Path(path_type=Path, dir_okay=False),
              help="class names, one per line, for card.json and app developers")
@click.option("--calib-method", type=click.Choice(RANGE_METHODS), default=None,
              help="how int8 activation ranges are set (default: MinMax, then MSE, then "
                   "MovingAverage, then Percentile, each with the weights rounded to nearest "
                   "then by GPTQ, until one holds --min-cosine; TFLite takes MovingAverage "
                   "for Percentile and Entropy)")
@click.option("--calib-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="at most this many calibration images")
@target_option()
@click.option("--formats", default="onnx,tflite", show_default=True,
              help="comma-separated: onnx, tflite")
@click.option("--tflite-io", type=click.Choice(["int8", "uint8"]), default=None,
              help="integer type of the .tflite input/output (default: the target's)")
@click.option("--min-cosine", type=click.FloatRange(-1, 1), default=INT8_MIN_COSINE,
              show_default=True, help="int8 tolerance: least mean cosine vs the fp32 model")
@click.option("--int8", "int8_mode", type=click.Choice(["repair", "strict"]),
              default="repair", show_default=True,
              help="repair: when no range setting holds --min-cosine, keep the most sensitive "
                   "layers at 16-bit activations (mixed precision, flagged in card.json); "
                   "strict: full int8 or a refusal")
@click.option("--no-repair", is_flag=True,
              help="one range setting (--calib-method, default MinMax; weights rounded to "
                   "nearest, then by GPTQ), full int8 or a refusal")
@click.option("--out", "-o", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="directory receiving the model files, analysis.json and card.json")
@json_option
def export(family, alpha, resolution, num_classes, weights, calib, eval_dir, labels,
           calib_method, calib_size, target, formats, tflite_io, min_cosine, int8_mode,
           no_repair, out, as_json):
    """Export a variant to fp32 + int8 ONNX and TFLite, validated, with card.json."""
    from edgeexport.analysis.memory import require_memory
    from edgeexport.contracts.variant import Variant
    from edgeexport.export.pipeline import ExportOptions, run_export
    require_memory([Variant(family, alpha, resolution, num_classes)])  # before any work
    opts = ExportOptions(
        variant=Variant(family, alpha, resolution, num_classes), target=target, out=out,
        formats=tuple(f.strip() for f in formats.split(",") if f.strip()), weights=weights,
        calib=calib, eval=eval_dir, labels=labels,
        calib_size=calib_size, tflite_io_type=tflite_io, min_cosine=min_cosine,
        int8="off" if no_repair else int8_mode,
        calib_method=calib_method or ("MinMax" if no_repair else None))
    stage = (lambda s: click.echo(f"· {s}", err=True)) if sys.stderr.isatty() and not as_json \
        else (lambda s: None)
    result = run_export(opts, on_stage=stage,  # warnings before the work they explain
                        on_warning=lambda w: click.echo(f"warning: {w}", err=True))
    card = result.card
    if as_json:
        print_json(card.to_json())
        return
    tol = card.tolerances
    rows = [[name, v.cosine_mean, v.top1_agreement, v.max_abs_diff, check_mark(name, v, tol)]
            for name, v in card.validation.items()]
    print_table(f"{card.variant_id} → {out}",
                ["validation", "cosine", "top-1 agreement", "max |Δ|", "check"], rows,
                footer=[f"check: fp32 files max |Δ| ≤ {tol.fp32_max_abs_diff_relative:g} × "
                        f"max |reference|; int8 files cosine ≥ {tol.int8_min_mean_cosine:g} "
                        f"and top-1 agreement ≥ {tol.int8_min_top1_agreement:g}"
                        + ("" if tol.int8_enforced else
                           " (not enforced: random weights, no --weights)")]
                + [f"{name}: {f.bytes:,} bytes, sha256 {f.sha256[:16]}…"
                   for name, f in card.files.items()])


def check_mark(name: str, comparison, tolerances) -> str:
    """"ok", "FAIL", or "not enforced (random weights)" for one validation row, against the
    tolerances the card states."""
    if "_fp32_vs_" in name:
        limit = tolerances.fp32_max_abs_diff_relative * max(1.0, comparison.max_abs_reference)
        return "ok" if comparison.max_abs_diff <= limit else "FAIL"
    if int8_holds(comparison, tolerances.int8_min_mean_cosine) and \
            comparison.top1_agreement >= tolerances.int8_min_top1_agreement:
        return "ok"
    return "FAIL" if tolerances.int8_enforced else "not enforced (random weights)"
