"""Static per-layer cost of a variant: shapes, parameters, mult-adds and bytes.

Conventions (those of the published MobileNet tables): a mult-add (MAC) is counted for every
multiply-accumulate of a convolution or fully connected layer; BatchNorm, activations, pooling,
residual adds and the squeeze-excitation scale count no MACs (BatchNorm folds into the
convolution at export). int8 bytes count weights as 1 byte and biases as int32 (4 bytes);
a BatchNorm layer counts as the int32 bias it folds into. Activation bytes are input + output.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
from torch import nn

from edgeexport.contracts.variant import Analysis, LayerCost, SeparableBlock, Variant, check_variant
from edgeexport.models import create_model
from edgeexport.models.layers import ResidualAdd
from edgeexport.models.mobilenet_v3 import SqueezeExcitation

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid)
SKIPPED = (nn.Dropout, nn.Identity)


def op_kind(module: nn.Module, parent: nn.Module | None) -> str | None:
    if isinstance(module, nn.Conv2d):
        if isinstance(parent, SqueezeExcitation):
            return "se"
        if module.groups > 1 and module.groups == module.in_channels:
            return "depthwise"
        if module.kernel_size == (1, 1) and module.groups == 1:
            return "pointwise"
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.BatchNorm2d):
        return "bn"
    if isinstance(module, nn.Hardswish):
        return "hardswish"  # its own kernel in TFLite/ArmNN; ReLU/ReLU6 fuse into the conv
    if isinstance(module, ACTIVATIONS):
        return "act"
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AvgPool2d)):
        return "pool"
    if isinstance(module, ResidualAdd):
        return "add"
    if isinstance(module, SqueezeExcitation):
        return "mul"  # the channel-wise scale; its convs are rows of their own
    return None


def _macs(module: nn.Module, out: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        per_output = kh * kw * module.in_channels // module.groups
        return per_output * out.numel()
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    return 0


def _weight_bytes(module: nn.Module) -> tuple[int, int]:
    fp32 = sum(p.numel() for p in module.parameters(recurse=False)) * 4
    if isinstance(module, nn.BatchNorm2d):
        return fp32, module.num_features * 4
    int8 = 0
    for pname, p in module.named_parameters(recurse=False):
        int8 += p.numel() * (4 if pname == "bias" else 1)
    return fp32, int8


@contextlib.contextmanager
def _no_init() -> Iterator[None]:
    """torch.nn.init's in-place initialisers as no-ops: on the meta device they fill nothing,
    yet the first call imports torch's reference kernels (5 s)."""
    saved = {name: fn for name, fn in vars(nn.init).items()
             if name.endswith("_") and not name.startswith("_") and callable(fn)}
    try:
        for name in saved:
            setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, fn in saved.items():
            setattr(nn.init, name, fn)


def analyze(variant: Variant, model: nn.Module | None = None) -> Analysis:
    """Costs of ``variant``; pass the network if it is already built (only shapes are used)."""
    check_variant(variant)
    if model is None:  # on the meta device: shapes without memory (α 100 counts in a second)
        with torch.device("meta"), _no_init():
            model = create_model(variant.family, variant.alpha, variant.num_classes)
        return analyze(variant, model)
    parents = {f"{name}.{child_name}".lstrip("."): module
               for name, module in model.named_modules()
               for child_name, _ in module.named_children()}
    rows: list[LayerCost] = []
    hooks = []

    def record(name: str, op: str):
        def hook(module, inputs, output):
            in_shape = list(inputs[0].shape)
            in_elems = sum(t.numel() for t in inputs if isinstance(t, torch.Tensor))
            fp32_w, int8_w = _weight_bytes(module)
            rows.append(LayerCost(
                name=name, op=op, input_shape=in_shape, output_shape=list(output.shape),
                params=sum(p.numel() for p in module.parameters(recurse=False)),
                macs=_macs(module, output),
                weight_bytes_fp32=fp32_w, weight_bytes_int8=int8_w,
                activation_bytes_fp32=4 * (in_elems + output.numel()),
                activation_bytes_int8=in_elems + output.numel()))
        return hook

    for name, module in model.named_modules():
        if isinstance(module, SKIPPED):
            continue
        op = op_kind(module, parents.get(name))
        if op is not None:
            hooks.append(module.register_forward_hook(record(name, op)))
    device = next(model.parameters()).device
    with torch.no_grad():
        model(torch.zeros(1, 3, variant.resolution, variant.resolution, device=device))
    for h in hooks:
        h.remove()
    return Analysis(variant, rows, separable_blocks(rows))


def separable_blocks(rows: list[LayerCost]) -> list[SeparableBlock]:
    """Pair each depthwise conv with the next pointwise conv (skipping bn/act/SE rows)."""
    blocks = []
    for i, dw in enumerate(rows):
        if dw.op != "depthwise":
            continue
        pw = next((r for r in rows[i + 1:] if r.op in ("pointwise", "depthwise", "conv")), None)
        if pw is None or pw.op != "pointwise":
            continue
        k = round(math.sqrt(dw.weight_bytes_fp32 // 4 // dw.output_shape[1]))
        m, n = dw.output_shape[1], pw.output_shape[1]
        h, w = dw.output_shape[2], dw.output_shape[3]
        blocks.append(SeparableBlock(
            depthwise=dw.name, pointwise=pw.name, kernel=k, in_channels=m, out_channels=n,
            separable_macs=dw.macs + pw.macs, standard_macs=k * k * m * n * h * w))
    return blocks
