"""`edgeexport estimate` and `fit-latency`: latency and energy estimated for a target that is
not attached, and the fit of its latency model to measurements."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from edgeexport.cli.group import deprecated_alias, main
from edgeexport.cli.options import (
    _target,
    hidden_alias,
    json_option,
    target_option,
    variant_options,
)
from edgeexport.cli.profile import print_latency_report
from edgeexport.core.console import print_json, print_table


@main.command(epilog="Example: edgeexport estimate mobilenet_v3_small --alpha 1.0 --resolution "
                      "224 --target rpi4 --precision int8")
@variant_options
@target_option()
@click.option("--precision", type=click.Choice(["int8", "fp32"]), default="int8",
              show_default=True, help="which model to estimate")
@click.option("--runtime", default=None,
              help="which of the target's latency models (default: the target's first)")
@click.option("--clock-mhz", type=float, default=None,
              help="CPU clock to estimate for (default: the target's)")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="thread count (default and only choice: the model's)")
@json_option
def estimate(family, alpha, resolution, num_classes, target, precision, runtime, clock_mhz,
             threads, as_json):
    """Estimate per-layer latency and energy on a target that is not attached."""
    from edgeexport.analysis.cache import cached_analysis
    from edgeexport.contracts.variant import Variant
    from edgeexport.estimate.estimates import estimate as run_estimate
    analysis = cached_analysis(Variant(family, alpha, resolution, num_classes))
    report = run_estimate(analysis, target, precision, runtime, clock_mhz, threads)
    if as_json:
        print_json(dataclasses.asdict(report))
        return
    print_latency_report(report)


@main.command("fit-latency", epilog="Example: edgeexport fit-latency --target rpi4 --from "
                                     "dist/rpi4 --out-file myrpi4.toml")
@click.option("--target", "-t", required=True, callback=_target,
              help="the target whose latency model to fit")
@click.option("--data", type=click.Path(path_type=Path, dir_okay=False),
              help="CSV: model_family, width_multiplier, resolution, quantized, "
                   "mean_latency_ms; optional runtime, cpu_freq_mhz, threads, avg_power_w")
@click.option("--runtime", default=None,
              help="the runtime measured (a CSV without a runtime column), or which runtime "
                   "of the runtime column to fit")
@click.option("--name", default=None,
              help="store the model under this runtime name (default: the runtime's)")
@click.option("--description", default=None,
              help="what the model measures, in words (runtime, version, backend)")
@click.option("--clock-mhz", type=float, default=None,
              help="CPU clock of the measurements (a CSV without a cpu_freq_mhz column)")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="threads of the measurements (a CSV without a threads column)")
@click.option("--from", "build_dir", type=click.Path(path_type=Path, file_okay=False),
              help="instead of --data: a build's output directory (dist/<target>), fitted to "
                   "its own measurements (on the board when it had one)")
@click.option("--from-runtime", type=click.Choice(["litert", "onnxruntime"]), default="litert",
              show_default=True, help="with --from: which runtime's measurements to fit")
@click.option("--out-file", "out", type=click.Path(path_type=Path, dir_okay=False),
              help="write the target file with the new [latency_model.RUNTIME] tables here")
@hidden_alias("--out", "--out-file", "out", type=click.Path(path_type=Path, dir_okay=False))
@json_option
def fit_latency(target, data, build_dir, from_runtime, runtime, name, description, clock_mhz,
              threads, out, as_json):
    """Fit a target's latency model per runtime to measurements; print leave-one-out errors
    per row and per family."""
    from edgeexport.core.errors import UserError
    from edgeexport.core.fileio import write_bytes
    from edgeexport.estimate.latency_model import (
        fit_measurements,
        read_measurements,
        toml_block,
        with_model,
    )
    if (data is None) == (build_dir is None):
        raise UserError("fit-latency: give one of --data FILE.csv or --from dist/<target>")
    if build_dir is not None:
        from edgeexport.estimate.fit_data import measurements_of_build
        measurements, measured_on = measurements_of_build(build_dir, from_runtime, target, name,
                                                       clock_mhz)
        description = description or measured_on
        data = build_dir / "index.json"  # named in the model's source
    else:
        measurements = read_measurements(data, runtime, clock_mhz, threads, name)
    fits = fit_measurements(measurements)
    text, blocks = target.source, []
    for fit in fits:
        existing = target.latency_models.get(fit.runtime)
        what = description or (existing.runtime if existing else fit.runtime)
        powered = sum(p.load_w is not None for p in fit.precisions)
        block = toml_block(
            fit, what, f"edgeexport fit-latency on {data.name} "
                       f"({sum(len(p.rows) for p in fit.precisions)} measurements)",
            f"mean avg_power_w of the {data.name} rows per precision" if powered
            else "not measured")
        blocks.append(block)
        text = with_model(text, fit.runtime, block)
    if out is not None:
        import tomllib

        from edgeexport.targets import parse_target
        parse_target(tomllib.loads(text), str(out), text)  # what is written loads as a target
        write_bytes(out, text.encode())
    if as_json:
        print_json({"target": target.name,
                    "models": [dict(f.to_json(), toml=b) for f, b in zip(fits, blocks)]})
        return
    for fit, block in zip(fits, blocks):
        for p in fit.precisions:
            print_table(f"{target.name} {fit.runtime} {p.precision} at {fit.clock_mhz:g} MHz, "
                        f"{fit.threads} thread(s): leave-one-out (each row predicted by a fit "
                        "without it)",
                        ["variant", "measured ms", "fitted ms", "LOO predicted ms", "LOO error"],
                        [[r["variant"], r["measured_ms"], r["fitted_ms"], r["loo_predicted_ms"],
                          f"{100 * r['loo_error']:+.1f}%"] for r in p.rows],
                        footer=[f"median |LOO error| {100 * p.loo_median_abs_error:.1f}%, "
                                f"max {100 * p.loo_max_abs_error:.1f}%"])
            print_table(f"{fit.runtime} {p.precision}: leave-one-out |error| by family",
                        ["family", "networks", "median", "max"],
                        [[f, e["networks"], f"{100 * e['loo_median_abs_error']:.1f}%",
                          f"{100 * e['loo_max_abs_error']:.1f}%"]
                         for f, e in p.by_family.items()])
        click.echo(block)


deprecated_alias(fit_latency, "calibrate")
