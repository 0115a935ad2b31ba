"""`edgeexport profile`: latency measured here or on a board, per layer, and the table it
prints (shared with `estimate`)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from edgeexport.cli.group import main
from edgeexport.cli.options import device_options, json_option, resolve_device, target_option
from edgeexport.contracts.artifacts import Estimated, Measured
from edgeexport.core.console import print_json, print_table


@main.command(epilog="Example: edgeexport profile out/mnv2 --runtime litert --threads 4")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--runtime", type=click.Choice(["onnxruntime", "litert"]), default=None,
              help="default: from the file type; onnxruntime for an export directory")
@click.option("--precision", type=click.Choice(["int8", "fp32"]), default="int8",
              show_default=True, help="which model of an export directory")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="threads the runtime may use")
@click.option("--runs", type=click.IntRange(min=2), default=50, show_default=True,
              help="timed runs")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True,
              help="untimed runs before them")
@target_option(help="the board the numbers are for (built-in name or .toml; default: "
                    "$EDGEEXPORT_TARGET, else rpi4): its power gives energy when measured on "
                    "it, its [device] table, if any, is where to measure", callback=None)
@click.option("--analysis", type=click.Path(path_type=Path, dir_okay=False),
              help="analysis.json for a bare model file (per-layer rows by layer name)")
@click.option("--out", "-o", type=click.Path(path_type=Path, file_okay=False),
              help="directory receiving profile.json (default: PATH when it is an export "
                   "directory; a bare model file's profile is saved only with --out)")
@device_options
@click.option("--here", is_flag=True,
              help="measure on this machine even if the target file names a [device]")
@json_option
def profile(path, runtime, precision, threads, runs, warmup, target, analysis, out, device_spec,
            ssh_config, here, as_json):
    """Measure a model here, or on a board over SSH: end-to-end and per-layer latency, and
    energy."""
    from edgeexport.measure import emulator
    if not here and emulator.is_emulated(device_spec):
        _print_emulated(emulator.profile(device_spec, path, target, runtime, precision,
                                         analysis), as_json)
        return
    from edgeexport.targets import load_target
    # --here (as the board runs it on the target file we copied): its [device] is not read; a
    # relative ssh_config there names a file on our side, not the board's.
    target = load_target(target, device=not here)
    device = None if here else resolve_device(device_spec, ssh_config, target)
    if device is not None:
        from edgeexport.measure.board import profile_on_device
        report = profile_on_device(path, device, target, runtime, precision, threads, runs,
                                   warmup, analysis)
        if report.board is not None and report.board.emulated:  # the board says so itself
            _print_emulated(emulator.time_free(report, device.name), as_json)
            return
    else:
        from edgeexport.measure.profile import profile as run_profile
        runs, warmup = emulator.capped_runs(runs, warmup)
        report = run_profile(path, target, runtime, precision, threads, runs, warmup, analysis)
    for warning in report.board_warnings:
        click.echo(f"edgeexport: warning: {report.where.get('device', 'this machine')}: "
                   f"{warning}", err=True)
    saved = _save(report, path, out)
    if as_json:
        print_json(dataclasses.asdict(report))
        return
    print_latency_report(report)
    if saved:
        click.echo(saved)


def _print_emulated(report: dict, as_json: bool) -> None:
    """A time-free report of an emulated board (edgeexport.measure.emulator.time_free)."""
    if as_json:
        print_json(report)
        return
    print_table(f"EMULATED on {report['where']['emulated']} (board {report['where']['device']}): "
                f"{report['runtime']} {report['runtime_version']} ran {report['model']} "
                f"({report['runs']} runs, no time kept)", ["layer", "op", "MACs", "params"],
                [[r["name"], r["op"], r["macs"], r["params"]] for r in report["layers"]],
                [f"{report['note']}: no latency, no energy (emulated time is no board's "
                 "time); `device arm-check` compares its outputs with this machine's"])


def _save(report: Measured, path: Path, out: Path | None) -> str | None:
    """profile.json into --out, or into PATH when it is an export directory; what was done."""
    from edgeexport.contracts.artifacts import PROFILE, BuildRecord
    from edgeexport.measure.profile import save_profile
    if out is None and not path.is_dir():
        return None  # a bare file (as a board's cache holds them): nothing beside it to update
    if out is None and (path / BuildRecord.FILE).is_file():
        return (f"{PROFILE} not saved: {path} is a sealed build directory (its {PROFILE} is "
                f"the build's; --out DIR saves this one elsewhere)")
    written = save_profile(out if out is not None else path, report)
    return f"saved: {written} ({report.end_to_end.runtime} {report.precision})"


def print_latency_report(report: Measured | Estimated) -> None:
    e2e, energy = report.end_to_end, report.energy
    if isinstance(report, Measured):
        place = f"board {report.where['device']}, " if report.where.get("device") else ""
        title = (f"MEASURED on {place}{report.where['cpu']}: {e2e.runtime} "
                 f"{e2e.runtime_version}, {e2e.threads} thread(s), {e2e.runs} runs after "
                 f"{e2e.warmup} warm-up")
        headline = (f"end to end: p50 {e2e.p50_ms:.3f} ms, p90 {e2e.p90_ms:.3f} ms, "
                    f"mean {e2e.mean_ms:.3f} ± {e2e.std_ms:.3f} ms")
    else:
        model = report.model
        title = (f"ESTIMATED for {report.target}, runtime {report.runtime} "
                 f"({model['runtime']}) at {model['clock_mhz']:g} MHz, {model['threads']} "
                 f"thread(s), by {model['name']}")
        headline = (f"end to end: {e2e.latency_ms:.3f} ms (estimate; known error: "
                    f"{model['known_error_family']})")
    rows = [[r.name, r.op, r.latency_ms, r.macs, r.params, r.energy_uj] for r in report.layers
            if r.latency_ms > 0 or (r.macs or 0) > 0]
    footer = [headline]
    if isinstance(report, Measured) and report.layer_sum_ms is not None:
        footer.append(f"per-layer sum {report.layer_sum_ms:.3f} ms (profiled runs took "
                      f"{report.profiled_run_ms:.3f} ms on average, "
                      f"{report.profiler_overhead:+.0%} against unprofiled runs)")
    if energy.board_mj is not None:
        footer.append(f"board energy {energy.board_mj:.2f} mJ/inference ({energy.board_source})")
    elif energy.board_source.startswith("not reported"):
        footer.append(f"board energy {energy.board_source}")
    if energy.compute_uj is not None:
        footer.append(f"compute/memory proxy {energy.compute_uj:.1f} µJ/inference "
                      f"({energy.compute_source})")
    if isinstance(report, Measured):
        footer.append(report.layer_note)
    elif report.model["clock_rule"]:
        footer.append(report.model["clock_rule"])
    print_table(title, ["layer", "op", "latency ms", "MACs", "params", "energy µJ (proxy)"],
                rows, footer)

