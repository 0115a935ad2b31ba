"""The ``edgeexport`` command. Heavy imports (torch, onnx) happen inside the commands that
need them, so ``profile`` works on a device with only ``edgeexport[device]`` installed."""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import click

from edgeexport.console import print_json, print_table
from edgeexport.errors import UserError, ValidationError
from edgeexport.records import MIN_RESOLUTION
from edgeexport.validate import INT8_MIN_COSINE


class OneLineErrors(click.Group):
    """Usage and input errors print one line on stderr and exit non-zero; no traceback."""

    def main(self, *args, **kwargs):
        # The TFLite converter's C++ logging (spawned build workers inherit this too).
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("edgeexport: aborted", err=True)
            sys.exit(130)
        except click.UsageError as e:
            click.echo(f"edgeexport: error: {e.format_message()}", err=True)
            sys.exit(2)
        except (UserError, ValidationError) as e:
            click.echo(f"edgeexport: error: {e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("edgeexport: interrupted", err=True)
            sys.exit(130)
        except Exception as e:
            if os.environ.get("EDGEEXPORT_DEBUG"):
                raise
            click.echo(f"edgeexport: internal error: {e.__class__.__name__}: {e} "
                       "(set EDGEEXPORT_DEBUG=1 for the traceback)", err=True)
            sys.exit(1)


def _alpha(ctx, param, value):
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"must be > 0, got {value:g}", ctx, param)
    return value


def _resolution(ctx, param, value):
    if value is not None and value < MIN_RESOLUTION:
        raise click.BadParameter(f"must be ≥ {MIN_RESOLUTION} px, got {value}", ctx, param)
    return value


def _family(ctx, param, value):
    from edgeexport.models import FAMILIES
    if value not in FAMILIES:
        raise click.BadParameter(f"unknown model family {value!r} "
                                 f"(known: {', '.join(FAMILIES)})", ctx, param)
    return value


def variant_options(f):
    """FAMILY --alpha --resolution --num-classes, validated before any work starts."""
    f = click.option("--num-classes", type=click.IntRange(min=1), default=1000,
                     show_default=True)(f)
    f = click.option("--resolution", "-r", type=int, default=224, show_default=True,
                     callback=_resolution, help="input side in pixels")(f)
    f = click.option("--alpha", "-a", type=float, default=1.0, show_default=True,
                     callback=_alpha, help="width multiplier")(f)
    return click.argument("family", callback=_family)(f)


json_option = click.option("--json", "as_json", is_flag=True, help="print one JSON object")


@click.group(cls=OneLineErrors)
@click.version_option(package_name="edgeexport")
def main():
    """MobileNets from PyTorch to ONNX and int8 TFLite, measured per layer on the edge."""


@main.command()
@json_option
def models(as_json):
    """List the model families and their default α / resolution grids."""
    from edgeexport.models import FAMILIES
    rows = [{"family": f.name, "alphas": list(f.alphas), "resolutions": list(f.resolutions),
             "mean": list(f.mean), "std": list(f.std), "reference": f.reference}
            for f in FAMILIES.values()]
    if as_json:
        print_json({"families": rows})
        return
    print_table("Model families", ["family", "α", "resolution", "reference"],
                [[r["family"], ", ".join(f"{a:g}" for a in r["alphas"]),
                  ", ".join(map(str, r["resolutions"])), r["reference"]] for r in rows])


@main.command()
@variant_options
@json_option
def summary(family, alpha, resolution, num_classes, as_json):
    """Per-layer parameters, mult-adds, bytes and the separable-vs-standard comparison."""
    from edgeexport.analysis import analyze
    from edgeexport.records import Variant
    analysis = analyze(Variant(family, alpha, resolution, num_classes))
    data = analysis.to_json()
    if as_json:
        print_json(data)
        return
    sep = data["separable"]
    print_table(
        f"{analysis.variant.id}: static analysis (exact counts; MACs = conv/FC mult-adds)",
        ["layer", "op", "output", "params", "MACs", "weights int8 B", "act int8 B"],
        [[x.name, x.op, x.output_shape[1:], x.params, x.macs, x.weight_bytes_int8,
          x.activation_bytes_int8] for x in analysis.layers],
        footer=[f"total: {analysis.total_params:,} params, {analysis.total_macs / 1e6:.1f} M MACs",
                f"separable convolutions: {sep['separable_macs'] / 1e6:.1f} M MACs vs "
                f"{sep['standard_macs'] / 1e6:.1f} M as standard convolutions "
                f"(ratio {sep['ratio']:.3f}; per block 1/N + 1/K²)"])


def _target(ctx, param, value):
    from edgeexport.targets import load_target
    return None if value is None else load_target(value)


target_option = click.option("--target", "-t", default="local", show_default=True,
                             callback=_target, help="built-in target name or a .toml file")


@main.command()
@variant_options
@click.option("--weights", type=click.Path(path_type=Path, dir_okay=False),
              help="state_dict: .pt/.pth (loaded with weights_only=True) or .safetensors")
@click.option("--calib", type=click.Path(path_type=Path, file_okay=False),
              help="calibration images: JPEG/PNG, flat or in class subfolders")
@click.option("--eval", "eval_dir", type=click.Path(path_type=Path, file_okay=False),
              help="labelled images to validate on (default: held out from --calib)")
@click.option("--labels", type=click.Path(path_type=Path, dir_okay=False),
              help="class names, one per line, for card.json and app developers")
@click.option("--calib-method", type=click.Choice(["MinMax", "Entropy", "Percentile"]),
              default="MinMax", show_default=True)
@click.option("--calib-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="at most this many calibration images")
@target_option
@click.option("--formats", default="onnx,tflite", show_default=True,
              help="comma-separated: onnx, tflite")
@click.option("--tflite-io", type=click.Choice(["int8", "uint8"]), default=None,
              help="integer type of the .tflite input/output (default: the target's)")
@click.option("--min-cosine", type=click.FloatRange(-1, 1), default=INT8_MIN_COSINE,
              show_default=True, help="int8 tolerance: least mean cosine vs the fp32 model")
@click.option("--out", "-o", type=click.Path(path_type=Path, file_okay=False), required=True)
@json_option
def export(family, alpha, resolution, num_classes, weights, calib, eval_dir, labels,
           calib_method, calib_size, target, formats, tflite_io, min_cosine, out, as_json):
    """Export a variant to fp32 + int8 ONNX and TFLite, validated, with card.json."""
    from edgeexport.export import ExportOptions, run_export
    from edgeexport.records import Variant
    opts = ExportOptions(
        variant=Variant(family, alpha, resolution, num_classes), target=target, out=out,
        formats=tuple(f.strip() for f in formats.split(",") if f.strip()), weights=weights,
        calib=calib, eval=eval_dir, labels=labels, calib_method=calib_method,
        calib_size=calib_size, tflite_io_type=tflite_io, min_cosine=min_cosine)
    stage = (lambda s: click.echo(f"· {s}", err=True)) if sys.stderr.isatty() and not as_json \
        else (lambda s: None)
    result = run_export(opts, on_stage=stage)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        print_json(result.card)
        return
    card = result.card
    rows = [[name, v["cosine_mean"], v["top1_agreement"], v["max_abs_diff"]]
            for name, v in card["validation"].items()]
    print_table(f"{card['variant_id']} → {out}",
                ["validation", "cosine", "top-1 agreement", "max |Δ|"], rows,
                footer=[f"{name}: {f['bytes']:,} bytes, sha256 {f['sha256'][:16]}…"
                        for name, f in card["files"].items()])


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--runtime", type=click.Choice(["onnxruntime", "litert"]), default=None,
              help="default: from the file type; onnxruntime for an export directory")
@click.option("--precision", type=click.Choice(["int8", "fp32"]), default="int8",
              show_default=True, help="which model of an export directory")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--runs", type=click.IntRange(min=2), default=50, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--target", "-t", default="local", show_default=True, callback=_target,
              help="board whose power turns latency into energy")
@json_option
def profile(path, runtime, precision, threads, runs, warmup, target, as_json):
    """Measure a model here: end-to-end and per-layer latency, and energy."""
    from edgeexport.profile import profile as run_profile
    report = run_profile(path, target, runtime, precision, threads, runs, warmup)
    if as_json:
        print_json(report)
        return
    print_latency_report(report)


def print_latency_report(report: dict) -> None:
    e2e, energy = report["end_to_end"], report["energy"]
    measured = report["source"] == "measured"
    if measured:
        title = (f"MEASURED on {report['where']['cpu']}: {e2e['runtime']} "
                 f"{e2e['runtime_version']}, {e2e['threads']} thread(s), {e2e['runs']} runs "
                 f"after {e2e['warmup']} warm-up")
        headline = (f"end to end: p50 {e2e['p50_ms']:.3f} ms, p90 {e2e['p90_ms']:.3f} ms, "
                    f"mean {e2e['mean_ms']:.3f} ± {e2e['std_ms']:.3f} ms")
    else:
        title = (f"ESTIMATED for {report['target']} by {report['model']['name']} "
                 f"(models {report['runtime']}; known error {report['model']['known_error']})")
        headline = f"end to end: {e2e['latency_ms']:.3f} ms (estimate)"
    rows = [[r["name"], r["op"], r["latency_ms"], r.get("macs"), r.get("params"),
             r.get("energy_uj")] for r in report["layers"]
            if r["latency_ms"] > 0 or (r.get("macs") or 0) > 0]
    footer = [headline]
    if "layer_sum_ms" in report:
        footer.append(f"per-layer sum {report['layer_sum_ms']:.3f} ms (profiled runs took "
                      f"{report['profiled_run_ms']:.3f} ms on average, "
                      f"{report['profiler_overhead']:+.0%} against unprofiled runs)")
    if energy["board_mj"] is not None:
        footer.append(f"board energy {energy['board_mj']:.2f} mJ/inference "
                      f"({energy['board_source']})")
    if energy["compute_uj"] is not None:
        footer.append(f"compute/memory proxy {energy['compute_uj']:.1f} µJ/inference "
                      f"({energy['compute_source']})")
    if report.get("layer_note"):
        footer.append(report["layer_note"])
    print_table(title, ["layer", "op", "latency ms", "MACs", "params", "energy µJ (proxy)"],
                rows, footer)


@main.command()
@variant_options
@click.option("--target", "-t", default="rpi4", show_default=True, callback=_target,
              help="built-in target name or a .toml file")
@click.option("--precision", type=click.Choice(["int8", "fp32"]), default="int8",
              show_default=True)
@json_option
def estimate(family, alpha, resolution, num_classes, target, precision, as_json):
    """Estimate per-layer latency and energy on a target that is not attached."""
    from edgeexport.analysis import analyze
    from edgeexport.estimate import estimate as run_estimate
    from edgeexport.records import Variant
    analysis = analyze(Variant(family, alpha, resolution, num_classes)).to_json()
    report = run_estimate(analysis, target, precision)
    if as_json:
        print_json(report)
        return
    print_latency_report(report)


@main.command()
@click.option("--target", "-t", required=True, callback=_target,
              help="the target whose latency model to fit")
@click.option("--data", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="CSV: model_family, width_multiplier, resolution, quantized, mean_latency_ms")
@click.option("--runtime", default=None, help="what the measurements ran on (for the record)")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="write the target file with the new [latency_model] here")
@json_option
def calibrate(target, data, runtime, out, as_json):
    """Fit a target's latency model to measurements; print leave-one-out errors per row."""
    from edgeexport.analysis import analyze
    from edgeexport.fileio import write_bytes
    from edgeexport.latency_model import fit, network_features, read_measurements, toml_block
    from edgeexport.records import Variant
    measurements = read_measurements(data)
    features = []
    for m in measurements:
        layers = analyze(Variant(m.family, m.alpha, m.resolution)).to_json()["layers"]
        features.append(network_features(layers, m.precision))
    fits = fit(measurements, features)
    runtime = runtime or (target.latency_model.runtime if target.latency_model else "unknown")
    block = toml_block(fits, runtime, f"edgeexport calibrate on {data.name} "
                                      f"({len(measurements)} measurements)")
    if out is not None:
        head = target.source.split("[latency_model]")[0].rstrip() + "\n\n"
        write_bytes(out, (head + block).encode())
    if as_json:
        print_json({"target": target.name, "fits": [f.to_json() for f in fits],
                    "toml": block})
        return
    for f in fits:
        print_table(f"{target.name} {f.precision}: leave-one-out (each row predicted by a fit "
                    "without it)",
                    ["variant", "measured ms", "fitted ms", "LOO predicted ms", "LOO error"],
                    [[r["variant"], r["measured_ms"], r["fitted_ms"], r["loo_predicted_ms"],
                      f"{100 * r['loo_error']:+.1f}%"] for r in f.rows],
                    footer=[f"median |LOO error| {100 * f.loo_median_abs_error:.1f}%, "
                            f"max {100 * f.loo_max_abs_error:.1f}%"])
    click.echo(block)


def _number_list(cast, minimum, what):
    """A click callback for comma-separated numbers, each ≥ minimum (> 0 if minimum is 0)."""
    def parse(ctx, param, value):
        if not value:
            return None
        try:
            values = [cast(v) for v in value.split(",")]
        except ValueError:
            raise click.BadParameter(f"expected comma-separated {what}, got {value!r}") \
                from None
        if not all(math.isfinite(v) and v >= minimum and v > 0 for v in values):
            bound = f"≥ {minimum}" if minimum else "> 0"
            raise click.BadParameter(f"every value must be {bound}, got {value!r}")
        return values
    return parse


def _families(ctx, param, value):
    if not value:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    for name in names:
        _family(ctx, param, name)
    return names


@main.command()
@click.option("--target", "-t", default="rpi4", show_default=True, callback=_target)
@click.option("--models", callback=_families, help="comma-separated families (default: all)")
@click.option("--alpha", callback=_number_list(float, 0, "numbers"),
              help="comma-separated α (default: each family's)")
@click.option("--resolution", callback=_number_list(int, MIN_RESOLUTION, "integers"),
              help="comma-separated resolutions")
@click.option("--weights", type=click.Path(path_type=Path, file_okay=False),
              help="directory of <family>_<alpha>.safetensors|.pt (others: random init)")
@click.option("--calib", type=click.Path(path_type=Path, file_okay=False),
              help="calibration images (default: synthetic, flagged in every card)")
@click.option("--formats", default="onnx,tflite", show_default=True)
@click.option("--out", "-o", type=click.Path(path_type=Path, file_okay=False), default="dist",
              show_default=True)
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="variants exported in parallel (measurements always run one at a time)")
@json_option
def build(target, models, alpha, resolution, weights, calib, formats, out, jobs, as_json):
    """Export, measure and estimate every variant of the α/ρ grid into OUT/<target>/."""
    from edgeexport.build import BuildPlan, default_grid, run_build
    if weights is not None and not weights.is_dir():
        raise UserError(f"--weights {weights}: not a directory")
    if calib is not None:
        from edgeexport.calibration import list_images
        list_images(calib)
    plan = BuildPlan(target=target, variants=default_grid(target, models, alpha, resolution),
                     out=out, weights_dir=weights, calib=calib, jobs=jobs,
                     formats=tuple(f.strip() for f in formats.split(",") if f.strip()))
    with BuildProgress(plan, enabled=not as_json) as on_event:
        outcome = run_build(plan, on_event)
    root = out / target.name
    summary = {"target": target.name, "out": str(root), "variants": len(plan.variants),
               "built": outcome.built, "cached": outcome.cached, "failed": outcome.failed,
               "seconds": round(outcome.seconds, 2),
               "reports": [str(root / n) for n in ("report.html", "report.md", "report.json")]}
    if as_json:
        print_json(summary)
    else:
        click.echo(f"{len(outcome.built)} built, {len(outcome.cached)} unchanged, "
                   f"{len(outcome.failed)} failed in {outcome.seconds:.1f} s → {root}")
        for vid, why in outcome.failed.items():
            click.echo(f"FAILED {vid}: {why}", err=True)
    if outcome.failed:
        sys.exit(1)


class BuildProgress:
    """Per-variant stage lines with a progress bar and ETA on a terminal; plain lines else."""

    def __init__(self, plan, enabled: bool) -> None:
        self.plan, self.enabled = plan, enabled
        self.total = len(plan.variants)
        self.progress = None

    def __enter__(self):
        if self.enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (BarColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                     TextColumn("{task.completed}/{task.total}"),
                                     TimeElapsedColumn(), TimeRemainingColumn(),
                                     console=Console(stderr=True))
            self.progress.start()
            self.task = self.progress.add_task("build", total=self.total)
        return self.on_event

    def on_event(self, variant_id: str, stage: str, detail: str) -> None:
        if not self.enabled:
            return
        line = f"{variant_id}: {stage}" + (f" ({detail})" if detail else "")
        if self.progress is not None:
            if stage in ("cached", "done", "failed"):
                self.progress.advance(self.task)
            self.progress.update(self.task, description=line)
            if stage == "failed":
                self.progress.console.print(f"[red]{line}[/red]")
        else:
            click.echo(line, err=True)

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()
        return False
