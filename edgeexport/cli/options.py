"""Option and argument definitions shared by the command modules, validated before any work."""
from __future__ import annotations

import math
import os
from pathlib import Path

import click

from edgeexport.contracts.variant import MIN_RESOLUTION


def _alpha(ctx, param, value):
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"must be > 0, got {value:g}", ctx, param)
    return value


def _resolution(ctx, param, value):
    if value is not None and value < MIN_RESOLUTION:
        raise click.BadParameter(f"must be ≥ {MIN_RESOLUTION} px, got {value}", ctx, param)
    return value


def _family(ctx, param, value):
    from edgeexport.core.errors import did_you_mean
    from edgeexport.models import FAMILIES
    if value not in FAMILIES:
        raise click.BadParameter(f"unknown model family {value!r}"
                                 f"{did_you_mean(value, FAMILIES) or ''} "
                                 f"(known: {', '.join(FAMILIES)})", ctx, param)
    return value


def _spelled(flag: str) -> bool:
    """Whether ``flag`` itself is on the command line (both spellings fill one variable, so
    click's parameter source cannot tell them apart)."""
    import sys
    args = sys.argv[1:]
    args = args[:args.index("--")] if "--" in args else args
    if flag.startswith("--"):
        return any(a == flag or a.startswith(flag + "=") for a in args)
    return any(a.startswith(flag) and not a.startswith("--") for a in args)


def hidden_alias(old: str, new: str, name: str, callback=None, **kwargs):
    """The old spelling ``old`` of option ``new``, kept for a release: hidden from --help, it
    fills the same variable ``name`` (click gives the value given on the command line
    precedence over the other's default) after a one-line notice on stderr."""
    def notice(ctx, param, value):
        told = f"edgeexport.alias{old}"
        if value is not None and not ctx.meta.get(told) and _spelled(old):
            ctx.meta[told] = True
            click.echo(f"edgeexport: {old} is now {new}; the old spelling will be removed in "
                       "0.2", err=True)
        return value if callback is None or value is None else callback(ctx, param, value)
    return click.option(old, name, hidden=True, callback=notice,
                        help=f"deprecated spelling of {new}", **kwargs)


def variant_options(f):
    """FAMILY --alpha --resolution --num-classes, validated before any work starts."""
    f = click.option("--num-classes", type=click.IntRange(min=1), default=1000,
                     show_default=True, help="classes of the network's classifier (match the "
                                             "--weights)")(f)
    f = hidden_alias("-r", "--resolution", "resolution", type=int, callback=_resolution)(f)
    f = click.option("--resolution", type=int, default=224, show_default=True,
                     callback=_resolution, help="input side in pixels")(f)
    f = hidden_alias("-a", "--alpha", "alpha", type=float, callback=_alpha)(f)
    f = click.option("--alpha", type=float, default=1.0, show_default=True,
                     callback=_alpha, help="width multiplier α")(f)
    return click.argument("family", callback=_family)(f)


json_option = click.option("--json", "as_json", is_flag=True, help="print one JSON object")


def _target(ctx, param, value):
    from edgeexport.targets import load_target
    return None if value is None else load_target(value)


# One rule for every --target: the board the numbers are for, a built-in name (rpi4, rpi5,
# rpi3b; local: this machine) or a .toml file; default EDGEEXPORT_TARGET, else rpi4.
DEFAULT_TARGET = os.environ.get("EDGEEXPORT_TARGET") or "rpi4"
TARGET_HELP = ("the board the numbers are for: a built-in name (rpi4, rpi5, rpi3b; local: this "
               "machine) or a .toml file (default: $EDGEEXPORT_TARGET, else rpi4)")


def target_option(help: str = TARGET_HELP, callback=_target):
    """--target/-t with the one default rule (``DEFAULT_TARGET``)."""
    return click.option("--target", "-t", default=DEFAULT_TARGET, callback=callback,
                        help=help)


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


def device_options(f):
    """--device [user@]host[:port] and --ssh-config FILE: measure on a board over SSH."""
    f = click.option("--ssh-config", type=click.Path(path_type=Path, dir_okay=False),
                     help="OpenSSH client configuration (default: ~/.ssh/config)")(f)
    return click.option("--device", "device_spec", metavar="[USER@]HOST[:PORT]",
                        help="measure on this board over SSH (default: the target file's "
                             "[device]); host may be a ~/.ssh/config alias; emulated:rpi4 or "
                             "emulated:rpi5: an emulated board (`device emulate`), for "
                             "correctness only, never time")(f)


def resolve_device(spec: str | None, ssh_config: Path | None, target):
    """--device, else the target file's [device] table, else None (measure here)."""
    from edgeexport.core.device_address import parse_device
    if spec is not None:
        edgeexport = target.device.edgeexport if target is not None and target.device else \
            "edgeexport"
        return parse_device(spec, ssh_config, edgeexport)
    if target is not None and target.device is not None:
        if ssh_config is not None:
            from dataclasses import replace
            return replace(target.device, ssh_config=ssh_config)
        return target.device
    return None
