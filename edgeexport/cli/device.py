"""`edgeexport device`: a board over SSH (`check`), an emulated board (`emulate`,
`arm-check`, and `emulated:rpi4` wherever a board's address goes), and the commands the host
runs on the board (`facts`, `cache`; they need only the device install)."""
from __future__ import annotations

from pathlib import Path

import click

from edgeexport.cli.group import main
from edgeexport.cli.options import json_option
from edgeexport.core.console import print_json, print_table


@main.group(epilog="Example: edgeexport device check pi@raspberrypi.local")
def device():
    """A board over SSH: what its measurements depend on."""


@device.command(epilog="Example: edgeexport device check pi@raspberrypi.local:22")
@click.argument("host", metavar="[USER@]HOST[:PORT] | emulated:rpi4|rpi5")
@click.option("--ssh-config", type=click.Path(path_type=Path, dir_okay=False),
              help="OpenSSH client configuration (default: ~/.ssh/config)")
@click.option("--edgeexport", "command", default="edgeexport", show_default=True,
              help="the edgeexport command on the board (e.g. a venv's bin/edgeexport)")
@json_option
def check(host, ssh_config, command, as_json):
    """Connect, check the board's edgeexport is ours, print the board's facts."""
    from edgeexport.measure import emulator
    if emulator.is_emulated(host):
        answer = emulator.facts(host)
        if as_json:
            print_json({**answer, "warnings": []})
            return
        rows = [[k, "–" if v is None else str(v)] for k, v in answer["facts"].items()]
        print_table(f"board {answer['device']}: {answer['emulated']}", ["fact", "value"], rows,
                    [f"{answer['note']}: ready to check files, never to time them"])
        return
    from edgeexport.core.device_address import parse_device
    from edgeexport.measure.board import board_facts
    board = parse_device(host, ssh_config, command)
    facts = board_facts(board)
    if as_json:
        print_json({"device": board.name, "facts": facts.to_json(),
                    "warnings": facts.warnings()})
        return
    rows = [[k, "–" if v is None else str(v)] for k, v in facts.to_json().items()]
    ready = ([f"EMULATED ({facts.emulated}): ready to check files, never to time them"]
             if facts.emulated else ["ready to measure"])
    print_table(f"board {board.name}", ["fact", "value"], rows,
                [f"warning: {w}" for w in facts.warnings()] or ready)


@device.command(epilog="Example (on the board): edgeexport device facts --json")
@json_option
def facts(as_json):
    """(On the board) this machine's facts that latency measurements depend on."""
    from edgeexport.core.board_facts import gather
    here = gather()
    if as_json:
        print_json(here.to_json())
        return
    print_table("this machine", ["fact", "value"],
                [[k, "–" if v is None else str(v)] for k, v in here.to_json().items()],
                [f"warning: {w}" for w in here.warnings()])


@device.command(epilog="Example (on the board): edgeexport device cache "
                        "<sha256>/model.onnx")
@click.argument("entries", nargs=-1, required=True)
@json_option
def cache(entries, as_json):
    """(On the board) check or admit <sha256>/<name> entries of the model cache."""
    from edgeexport.measure.model_cache import cache_root, settle
    status = settle(list(entries))
    if as_json:
        print_json({"root": str(cache_root()), "entries": status})
        return
    for entry, state in status.items():
        click.echo(f"{state}\t{entry}")


@device.command(epilog="Example: edgeexport device emulate rpi4")
@click.argument("board", type=click.Choice(["rpi4", "rpi5", "max"]), metavar="rpi4|rpi5")
@click.option("--cpu", "core", metavar="CORE",
              help="QEMU core (default: the board's: cortex-a72 for rpi4, cortex-a76 for rpi5)")
@click.option("--sysroot", type=click.Path(path_type=Path, file_okay=False),
              help="an arm64 Debian 12 root holding /usr/bin/python3.11, instead of "
                   "downloading Debian's arm64 packages (which needs root once)")
@json_option
def emulate(board, core, sysroot, as_json):
    """Prepare an emulated Raspberry Pi (QEMU user mode, Debian's arm64 Python 3.11, the
    aarch64 runtimes at the versions installed here), once, in the user's cache; then use
    `--device emulated:BOARD`. Emulated: correctness and graph facts only, never time."""
    from edgeexport.measure import emulator
    say = (lambda m: None) if as_json else (lambda m: click.echo(m, err=True))
    prepared = emulator.prepare(board, core, sysroot, log=say)
    if as_json:
        print_json(prepared.to_json())
        return
    click.echo(f"emulated {prepared.board}: {prepared.title} under QEMU {prepared.qemu_version} "
               f"(-cpu {prepared.core}) → {Path(prepared.python).parent.parent}")
    click.echo(f"  sysroot  {prepared.sysroot}")
    click.echo(f"  wheels   {prepared.site} (" + ", ".join(
        f"{n} {prepared.wheels[n]}" for n in ("numpy", "onnxruntime", "ai-edge-litert")
        if n in prepared.wheels) + ")")
    click.echo(f"  python   {prepared.python}")
    click.echo(f"use it: --device emulated:{prepared.board} ({prepared.note})")


@device.command("arm-check", epilog="Example: edgeexport device arm-check out/mnv2 --board rpi4")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--board", type=click.Choice(["rpi4", "rpi5"]), default="rpi4", show_default=True,
              help="the emulated board (prepared with `device emulate`)")
@click.option("--images", "count", type=click.IntRange(min=1), default=8, show_default=True,
              help="how many validation images")
@click.option("--eval", "images_dir", type=click.Path(path_type=Path, file_okay=False),
              help="images to check on (default: the export's synthetic validation images)")
@json_option
def arm_check(directory, board, count, images_dir, as_json):
    """Run an export's model files on the emulated ARM board and here; per file, agreement
    of the outputs and (ONNX) the optimised graph's op counts on each side; into
    arm_check.json and the card's `arm` section. Exit 1 if a file misses its tolerance."""
    from edgeexport.app.arm_check import arm_check as run_check
    from edgeexport.app.arm_check import record_arm_check
    from edgeexport.core.errors import ValidationError
    check = run_check(directory, board, count, images_dir)
    record_arm_check(directory, check)
    if as_json:
        print_json(check.to_json())
    else:
        print_arm_check(check)
    if not check.passed:
        raise ValidationError(check.failures[0])


def print_arm_check(check) -> None:
    def ops(f, side):
        total = f.compute_ops(side)
        return "–" if total is None else f"{total['quantized']} q / {total['float']} f"
    rows = [[f.file, f.runtime, f.cosine_mean, f.top1_agreement, f"{f.bit_identical:.1%}",
             f"{f.max_abs_diff:.3g}", ops(f, "arm"), ops(f, "x86"),
             ("pass" if f.passed else "FAIL") + ("" if f.enforced else " (not enforced)")]
            for f in check.files]
    print_table(f"ARM check on emulated {check.board} ({check.core}, onnxruntime "
                f"{check.arm['onnxruntime']}, LiteRT {check.arm['litert']}) against x86, "
                f"{check.images}",
                ["file", "runtime", "cosine", "top-1 agreement", "bit-identical", "max |Δ|",
                 "ops ARM", "ops x86", "result"], rows,
                [f"{check.note}; ops: onnxruntime's optimised graph, quantized (q) / float (f) "
                 "compute ops", *check.failures])
