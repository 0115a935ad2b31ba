"""Option and argument definitions shared by the command modules, validated before any work."""
from __future__ import annotations

import math
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


def _target(ctx, param, value):
    from edgeexport.targets import load_target
    return None if value is None else load_target(value)


target_option = click.option("--target", "-t", default="local", show_default=True,
                             callback=_target, help="built-in target name or a .toml file")


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
                             "[device]); host may be a ~/.ssh/config alias")(f)


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
