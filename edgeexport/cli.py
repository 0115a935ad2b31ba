"""The ``edgeexport`` command. Heavy imports (torch, onnx) happen inside the commands that
need them, so ``profile`` works on a device with only ``edgeexport[device]`` installed."""
from __future__ import annotations

import math
import sys

import click

from edgeexport.console import print_json, print_table
from edgeexport.errors import UserError, ValidationError
from edgeexport.records import MIN_RESOLUTION


class OneLineErrors(click.Group):
    """Usage and input errors print one line on stderr and exit non-zero; no traceback."""

    def main(self, *args, **kwargs):
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
