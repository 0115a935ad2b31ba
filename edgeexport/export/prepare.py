"""Stage: variant (+ weights) → a PyTorch model in eval mode, ready to export.

Without weights the network is freshly initialised (seed 0) and its BatchNorm running
statistics are re-estimated on the calibration images: with the initial statistics (mean 0,
var 1) activations shrink layer after layer (MobileNet V1's logits come out near 1e-23), and
neither quantization nor its validation would mean anything. The card records which it was.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgeexport.contracts.artifacts import WeightsInfo
from edgeexport.contracts.variant import Variant
from edgeexport.core.fileio import sha256
from edgeexport.inputs.weights import load_weights
from edgeexport.models import create_model

INIT_SEED = 0
BN_BATCH = 16


def prepare_model(variant: Variant, weights: Path | None,
                  calibration: np.ndarray) -> tuple[torch.nn.Module, WeightsInfo]:
    torch.manual_seed(INIT_SEED)
    model = create_model(variant.family, variant.alpha, variant.num_classes)
    if weights is not None:
        load_weights(model, weights, variant.family)
        return model.eval(), WeightsInfo(source=weights.name, sha256=sha256(weights))
    reestimate_batchnorm(model, calibration)
    return model, WeightsInfo(
        source=f"random initialisation (seed {INIT_SEED})",
        batchnorm="running statistics re-estimated on the calibration images",
        note="untrained: latency and size are real, predictions are not")


@torch.no_grad()
def reestimate_batchnorm(model: torch.nn.Module, images: np.ndarray) -> None:
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over all batches
    model.train()
    for start in range(0, len(images), BN_BATCH):
        model(torch.from_numpy(images[start:start + BN_BATCH]))
    model.eval()


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of the eval-mode ``model`` with each BatchNorm that follows a conv in a
    Sequential folded into that conv's weights and bias (the BatchNorm becomes Identity).

    Both exporters fold them anyway, after tracing, decomposing and lowering a third more
    ops: folded here first, the two fp32 exports of V3-Large α 0.5 at 64 px take 14.9 s of
    CPU instead of 21.4 s, for the same graphs (bench/export_folding.py)."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval
    folded = copy.deepcopy(model).eval()
    for sequence in [m for m in folded.modules() if isinstance(m, torch.nn.Sequential)]:
        for i in range(1, len(sequence)):
            conv, bn = sequence[i - 1], sequence[i]
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                sequence[i - 1] = fuse_conv_bn_eval(conv, bn)
                sequence[i] = torch.nn.Identity()
    return folded
