"""`edgeexport device`: a board over SSH (`check`), and the commands the host runs on the
board (`facts`, `cache`; they need only the device install)."""
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
@click.argument("host", metavar="[USER@]HOST[:PORT]")
@click.option("--ssh-config", type=click.Path(path_type=Path, dir_okay=False),
              help="OpenSSH client configuration (default: ~/.ssh/config)")
@click.option("--edgeexport", "command", default="edgeexport", show_default=True,
              help="the edgeexport command on the board (e.g. a venv's bin/edgeexport)")
@json_option
def check(host, ssh_config, command, as_json):
    """Connect, check the board's edgeexport is ours, print the board's facts."""
    from edgeexport.core.device_address import parse_device
    from edgeexport.measure.board import board_facts
    board = parse_device(host, ssh_config, command)
    facts = board_facts(board)
    if as_json:
        print_json({"device": board.name, "facts": facts.to_json(),
                    "warnings": facts.warnings()})
        return
    rows = [[k, "–" if v is None else str(v)] for k, v in facts.to_json().items()]
    print_table(f"board {board.name}", ["fact", "value"], rows,
                [f"warning: {w}" for w in facts.warnings()] or ["ready to measure"])


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
