"""`edgeexport pull`: fetch a variant's files from a build's index (path or URL), verified."""
from __future__ import annotations

from pathlib import Path

import click

from edgeexport.cli.group import main
from edgeexport.cli.options import hidden_alias, json_option
from edgeexport.core.console import print_json


PULLED = ["app", "int8.tflite", "fp32.tflite", "int8.onnx", "fp32.onnx"]


def _names(ctx, param, value):
    """Comma-separated family names, checked against the index (no torch import: pull runs on
    the light install)."""
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@main.command(epilog="Example: edgeexport pull --from dist --target rpi4 --max-latency-ms 4 "
                      "--out assets/")
@click.argument("variant_id", required=False)
@click.option("--from", "location", required=True,
              help="index.json, or the directory holding it (dist/ or dist/<target>/): a "
                   "local path or an http(s) URL")
@click.option("--target", "-t", help="the build's target (required with --from dist/)")
@click.option("--max-latency-ms", type=click.FloatRange(min=0, min_open=True),
              help="instead of VARIANT_ID: the most accurate variant whose latency fits")
@click.option("--family", "families", callback=_names,
              help="with --max-latency-ms: only these comma-separated families")
@click.option("--formats", "fmt", default="app", show_default=True, type=click.Choice(PULLED),
              help="which model file, one of these (card.json always comes with it)")
@hidden_alias("--format", "--formats", "fmt", type=click.Choice(PULLED))
@click.option("--out", "-o", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="directory receiving the files (nothing is written outside it)")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=30.0,
              show_default=True, help="seconds per network request")
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="resumptions (HTTP Range) of an interrupted download within this run")
@json_option
def pull(variant_id, location, target, max_latency_ms, families, fmt, out, timeout, retries,
         as_json):
    """Fetch VARIANT_ID's files (or the best one within --max-latency-ms) into --out."""
    from edgeexport.distribute.pull import pull as run_pull
    result = run_pull(location, out, fmt, variant_id=variant_id, max_latency_ms=max_latency_ms,
                      target=target, families=families, timeout=timeout, retries=retries)
    if as_json:
        print_json(result.to_json())
        return
    click.echo(f"{result.variant} ({result.format}) from {result.source} → {result.out}")
    for f in result.files:
        click.echo(f"  {f.name}  {f.bytes:,} bytes  sha256 {f.sha256}  {f.status}")
    if result.choice["by"] == "budget":
        lat, acc = result.choice["latency"], result.choice["accuracy"]
        fitting = sum(c["fits"] for c in result.choice["candidates"])
        click.echo(f"chosen: the most accurate of {fitting} variant(s) within "
                   f"{result.choice['max_latency_ms']:g} ms on {result.target}")
        click.echo(f"  latency {lat['value']:.2f} ms, {lat['kind'].upper()}: {lat['label']}")
        value = (f"{acc['value']:.1f}% top-1" if acc["kind"] == "published_top1"
                 else f"{acc['value'] / 1e6:.1f} M MACs")
        click.echo(f"  accuracy {value}: {acc['label']}")
