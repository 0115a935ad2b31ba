"""The named constructors, their default α/resolution grids and their preprocessing.

The table imports no torch: commands that only need a family's name, grid or colour (a no-op
build, `models`, the device install) stay light. ``create_model`` imports the definition.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Family:
    name: str
    constructor: str  # "module:callable" under edgeexport.models
    alphas: tuple[float, ...]
    resolutions: tuple[int, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    reference: str
    aliases: tuple[str, ...]  # names in published measurement tables (MLPerf: "v1")
    color: str  # in every plot


FAMILIES: dict[str, Family] = {f.name: f for f in (
    # TF reference preprocessing for V1 maps [0, 1] to [-1, 1].
    Family("mobilenet_v1", "mobilenet_v1:MobileNetV1", (1.0, 0.75, 0.5, 0.25),
           (224, 192, 160, 128), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "Howard et al. 2017, Table 1", ("v1",), "#1f77b4"),
    Family("mobilenet_v2", "mobilenet_v2:MobileNetV2", (1.0, 0.75, 0.5, 0.35),
           (224, 192, 160, 128, 96), IMAGENET_MEAN, IMAGENET_STD, "Sandler et al. 2018; torchvision mobilenet_v2", ("v2",),
           "#d62728"),
    Family("mobilenet_v3_large", "mobilenet_v3:mobilenet_v3_large", (1.0, 0.75), (224,),
           IMAGENET_MEAN, IMAGENET_STD, "Howard et al. 2019; torchvision mobilenet_v3_large",
           ("v3_large", "v3-large"), "#2ca02c"),
    Family("mobilenet_v3_small", "mobilenet_v3:mobilenet_v3_small", (1.0, 0.75), (224,),
           IMAGENET_MEAN, IMAGENET_STD, "Howard et al. 2019; torchvision mobilenet_v3_small",
           ("v3_small", "v3-small"), "#9467bd"),
)}


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r} "
                         f"(known: {', '.join(FAMILIES)})") from None


def family_of_alias(name: str) -> str:
    """The family a published table's name stands for (``v1`` → ``mobilenet_v1``); a family
    name maps to itself; anything else is returned unchanged for the caller to reject."""
    for f in FAMILIES.values():
        if name == f.name or name in f.aliases:
            return f.name
    return name


def create_model(name: str, alpha: float = 1.0, num_classes: int = 1000) -> "nn.Module":
    """A freshly initialised network in eval mode."""
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    module, _, attr = family(name).constructor.partition(":")
    constructor = getattr(importlib.import_module(f"edgeexport.models.{module}"), attr)
    return constructor(width_mult=alpha, num_classes=num_classes).eval()
