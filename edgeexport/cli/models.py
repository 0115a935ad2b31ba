"""`edgeexport models` and `edgeexport summary`: the zoo and a variant's static costs."""
from __future__ import annotations

from edgeexport.cli.group import main
from edgeexport.cli.options import json_option, variant_options
from edgeexport.core.console import print_json, print_table


@main.command(epilog="Example: edgeexport models --json")
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


@main.command(epilog="Example: edgeexport summary mobilenet_v2 --alpha 0.75 --resolution 160")
@variant_options
@json_option
def summary(family, alpha, resolution, num_classes, as_json):
    """Per-layer parameters, mult-adds, bytes and the separable-vs-standard comparison."""
    from edgeexport.analysis.cache import cached_analysis
    from edgeexport.contracts.variant import Variant
    analysis = cached_analysis(Variant(family, alpha, resolution, num_classes))
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
