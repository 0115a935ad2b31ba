"""`edgeexport check-runtime`: measure an export's int8 and app .tflite files in another TFLite
runtime (e.g. tflite-runtime 2.14 in its own venv) against LiteRT; the card records it."""
from __future__ import annotations

from pathlib import Path

import click

from edgeexport.cli.group import main
from edgeexport.cli.options import json_option
from edgeexport.core.console import print_json, print_table


@main.command("check-runtime", epilog="Example: edgeexport check-runtime out/mnv2 --python "
                                       "tfl214/bin/python --images eval_images/")
@click.argument("export_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--python", "python", type=click.Path(path_type=Path, dir_okay=False,
                                                    exists=True), required=True,
              help="a Python with tflite_runtime and numpy installed (e.g. a venv's python)")
@click.option("--images", type=click.Path(path_type=Path, file_okay=False, exists=True),
              required=True, help="JPEG/PNG images to compare on (flat or class folders)")
@json_option
def check_runtime(export_dir, python, images, as_json):
    """Top-1 agreement of another TFLite runtime with LiteRT, written to card.json."""
    from edgeexport.app.runtime_check import check_runtime as run_check
    from edgeexport.app.runtime_check import record_check
    check = run_check(export_dir, python, images)
    record_check(export_dir, check)
    if as_json:
        print_json(check.to_json())
        return
    print_table(f"{check.runtime} vs {check.reference} on {check.images}",
                ["file", "top-1 agreement", "identical outputs", "max |Δ| (steps)"],
                [[name, r["top1_agreement"], r["outputs_identical"],
                  r["max_abs_diff_quantized_steps"]] for name, r in check.files.items()])
