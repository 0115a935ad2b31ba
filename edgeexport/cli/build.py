"""`edgeexport build`: the α/ρ sweep for a target, with progress on a terminal."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from edgeexport.cli.group import main
from edgeexport.cli.options import (
    _families,
    _number_list,
    device_options,
    hidden_alias,
    json_option,
    resolve_device,
    target_option,
)
from edgeexport.contracts.variant import MIN_RESOLUTION
from edgeexport.core.console import print_json
from edgeexport.core.errors import UserError


@main.command(epilog="Example: edgeexport build --target rpi4 --family mobilenet_v1 --alpha 0.25 "
                      "--resolution 128 --out dist")
@target_option()
@click.option("--family", "models", callback=_families,
              help="comma-separated families (default: all)")
@hidden_alias("--models", "--family", "models", callback=_families)
@click.option("--alpha", callback=_number_list(float, 0, "numbers"),
              help="comma-separated α (default: each family's)")
@click.option("--resolution", callback=_number_list(int, MIN_RESOLUTION, "integers"),
              help="comma-separated resolutions")
@click.option("--weights", type=click.Path(path_type=Path, file_okay=False),
              help="directory of <family>_<alpha>.safetensors|.pt (others: random init)")
@click.option("--num-classes", type=click.IntRange(min=1), default=1000, show_default=True,
              help="classes of every network (match the --weights)")
@click.option("--calib", type=click.Path(path_type=Path, file_okay=False),
              help="calibration images (default: synthetic, flagged in every card)")
@click.option("--formats", default="onnx,tflite", show_default=True,
              help="comma-separated: onnx, tflite")
@click.option("--out", "-o", type=click.Path(path_type=Path, file_okay=False), default="dist",
              show_default=True, help="directory; the target's variants go to OUT/<target>/")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="variants exported in parallel here (measurements always run one at a time; "
                   "with --farm, the workers decide)")
@click.option("--farm", metavar="tcp://HOST:PORT",
              help="run exports and measurements on this Dask scheduler's workers "
                   "(measurements on workers advertising the target as a resource)")
@click.option("--farm-timeout", type=click.FloatRange(min=0, min_open=True),
              default=60.0, show_default=True,
              help="seconds to wait for the scheduler, or for a worker able to run a stage")
@click.option("--dry-run", is_flag=True,
              help="say which variants would be (re)built and why; build nothing")
@device_options
@click.option("--arm-check", "arm_board", type=click.Choice(["rpi4", "rpi5"]),
              help="check every variant's files on this emulated board (`device emulate`) "
                   "against this machine's outputs, into each card's `arm` section "
                   "(`--device emulated:BOARD` implies it; default: the target's own board "
                   "when it is prepared, rpi4 for --target rpi4, rpi5 for --target rpi5)")
@click.option("--no-arm-check", is_flag=True,
              help="no ARM check, even with the target's emulated board prepared")
@json_option
def build(target, models, alpha, resolution, weights, num_classes, calib, formats, out, jobs,
          farm, farm_timeout, dry_run, device_spec, ssh_config, arm_board, no_arm_check,
          as_json):
    """Export, measure and estimate every variant of the α/ρ grid into OUT/<target>/."""
    from edgeexport.build.sweep import BuildPlan, default_grid, plan_build, run_build
    if weights is not None and not weights.is_dir():
        raise UserError(f"--weights {weights}: not a directory")
    if calib is not None:
        from edgeexport.inputs.imagesets import list_images
        list_images(calib)
    variants = default_grid(target, models, alpha, resolution, num_classes)
    from edgeexport.measure import emulator
    if no_arm_check and (arm_board is not None or emulator.is_emulated(device_spec)):
        asked = f"--arm-check {arm_board}" if arm_board else f"--device {device_spec}"
        raise UserError(f"--no-arm-check and {asked}: an emulated board checks the files; "
                        "choose one")
    if emulator.is_emulated(device_spec):  # measured here; the emulated board checks the files
        emulated = emulator.board_model(device_spec).name
        if arm_board not in (None, emulated):
            raise UserError(f"--device {device_spec} and --arm-check {arm_board}: one board")
        arm_board, device_spec = emulated, None
    elif arm_board is None and not no_arm_check and not farm:
        arm_board = emulator.prepared_for(target.name)  # on by default where one is ready
    if arm_board is not None:
        if farm:
            raise UserError("--farm and an ARM check: the check runs on this machine's "
                            "emulated board, not yet on farm workers")
        emulator.load(arm_board)  # prepared, or a one-line refusal before any work
    plan = BuildPlan(target=target, variants=variants,
                     out=out, weights_dir=weights, calib=calib, jobs=jobs,
                     formats=tuple(f.strip() for f in formats.split(",") if f.strip()),
                     device=resolve_device(device_spec, ssh_config, target),
                     arm_board=arm_board)
    if farm and plan.device is not None:
        raise UserError(f"--farm and a device ({plan.device.name}): measure on one or the other")
    root = out / target.name
    if dry_run:
        _, reasons = plan_build(plan)
        todo = {vid: why for vid, why in reasons.items() if why is not None}
        if as_json:
            print_json({"target": target.name, "out": str(root), "variants": len(reasons),
                        "would_build": todo,
                        "cached": [vid for vid, why in reasons.items() if why is None]})
        else:
            for vid, why in todo.items():
                click.echo(f"{vid}: {why}")
            click.echo(f"{len(todo)} to build, {len(reasons) - len(todo)} unchanged → {root}")
        return
    from edgeexport.analysis.memory import require_memory
    require_memory(plan.variants)  # before any work: no variant the kernel would kill
    with BuildProgress(plan, enabled=not as_json) as on_event:
        outcome = run_build(plan, on_event, _farm_runner(farm, farm_timeout))
    summary = {"target": target.name, "out": str(root), "variants": len(plan.variants),
               "built": outcome.built, "cached": outcome.cached, "failed": outcome.failed,
               "reasons": outcome.reasons,
               "seconds": round(outcome.seconds, 2), "device": plan.device and plan.device.name,
               "arm_check": plan.arm_board, "device_emulated": outcome.device_emulated,
               "device_error": outcome.device_error,
               "reports": [str(root / n) for n in ("report.html", "report.md", "report.json")]}
    if as_json:
        print_json(summary)
    else:
        click.echo(f"{len(outcome.built)} built, {len(outcome.cached)} unchanged, "
                   f"{len(outcome.failed)} failed in {outcome.seconds:.1f} s → {root}")
        if plan.arm_board is not None:
            from edgeexport.build.arm_report import summary_lines
            for line in summary_lines(root, outcome.built + outcome.cached, plan.arm_board):
                click.echo(line)
        if outcome.device_emulated is not None:
            click.echo(f"board {plan.device.name} is EMULATED ({outcome.device_emulated}): it "
                       "ran the files (profile.json → emulated, no time); every time is this "
                       "machine's")
        for vid, why in outcome.failed.items():
            if outcome.device_error is None or outcome.device_error not in why:
                click.echo(f"FAILED {vid}: {why}", err=True)
    if outcome.device_error is not None:
        click.echo(f"edgeexport: error: {outcome.device_error}; {len(outcome.built)} variant(s) "
                   f"measured and kept, {len(outcome.failed)} not: rerun to resume", err=True)
    if outcome.failed:
        sys.exit(1)


def _farm_runner(address, timeout):
    if address is None:
        return None
    from edgeexport.build.farm import FarmRunner
    return FarmRunner(address, timeout)


class BuildProgress:
    """Progress per variant and per stage: each variant is two steps (exported, measured; a
    cached one both at once), with the elapsed time. On a terminal a rich bar whose line
    names the latest event; piped, one plain line per event."""

    STEPS = {"exported": 1, "done": 1, "cached": 2}

    def __init__(self, plan, enabled: bool) -> None:
        import time
        self.plan, self.enabled = plan, enabled
        self.total = 2 * len(plan.variants)
        self.done_steps, self.steps_of = 0, {}
        self.started = time.monotonic()
        self.progress = None

    def __enter__(self):
        if self.enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                     TextColumn("{task.completed}/{task.total} steps"),
                                     TimeElapsedColumn(), TimeRemainingColumn(),
                                     console=Console(stderr=True))
            self.progress.start()
            self.task = self.progress.add_task("build", total=self.total)
        return self.on_event

    def on_event(self, variant_id: str, stage: str, detail: str) -> None:
        import time
        if not self.enabled:
            return
        taken = self.steps_of.get(variant_id, 0)
        step = 2 - taken if stage == "failed" else self.STEPS.get(stage, 0)
        self.steps_of[variant_id] = taken + step
        self.done_steps += step
        line = f"{variant_id}: {stage}" + (f" ({detail})" if detail else "")
        if self.progress is not None:
            self.progress.update(self.task, advance=step, description=line)
            if stage == "failed":
                self.progress.console.print(f"[red]{line}[/red]")
        else:
            elapsed = time.monotonic() - self.started
            click.echo(f"[{elapsed:6.1f} s] {line} ({self.done_steps}/{self.total} steps)",
                       err=True)

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()
        return False
