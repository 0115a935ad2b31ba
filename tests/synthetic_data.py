"""A tiny image classification task the tests make themselves (nothing is downloaded).

Four classes: stripes at 0°, 45°, 90° and 135°, with random colours, frequency, phase and
noise. A MobileNet learns it to high accuracy in seconds on a CPU.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from edgeexport.export.prepare import reestimate_batchnorm

CLASSES = ("deg000", "deg045", "deg090", "deg135")


def stripe_image(rng: np.random.Generator, label: int, side: int) -> np.ndarray:
    angle = np.deg2rad(45 * label + rng.uniform(-10, 10))
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    freq = rng.uniform(0.25, 0.6)
    wave = np.sin(freq * (xx * np.cos(angle) + yy * np.sin(angle)) + rng.uniform(0, 6.28))
    c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    img = c1 + (c2 - c1) * (wave[..., None] * 0.5 + 0.5)
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_dataset(root: Path, per_class: int, side: int, seed: int) -> Path:
    """ImageNet-style class folders of PNG files."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(stripe_image(rng, label, side)).save(root / name / f"{i:04d}.png")
    return root


def train(model: torch.nn.Module, inputs: np.ndarray, labels: np.ndarray, steps: int,
          seed: int = 0, batch: int = 32, lr: float = 5e-3,
          schedule: str = "cosine") -> torch.nn.Module:
    """AdamW with a 10% warm-up then cosine decay to zero (``schedule="constant"`` keeps
    ``lr`` throughout: the under-trained network the drift test needs)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    warmup = max(1, steps // 10)

    def factor(i: int) -> float:
        if schedule == "constant":
            return 1.0
        return min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * i / steps))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    # Channels-last (NHWC) tensors: a step of these small networks on one thread takes 0.66×
    # (V2) to 0.91× (V3-Small) the CPU it takes in NCHW (bench/training_layout.py).
    model.to(memory_format=torch.channels_last).train()
    x_all = torch.from_numpy(inputs).contiguous(memory_format=torch.channels_last)
    y_all = torch.from_numpy(labels).long()
    for _ in range(steps):
        idx = torch.from_numpy(rng.choice(len(inputs), batch, replace=False))
        loss = torch.nn.functional.cross_entropy(model(x_all[idx]), y_all[idx], label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    # Precise BatchNorm: recompute running statistics with the final weights (V3's momentum
    # of 0.01 leaves them far behind after a few hundred steps).
    reestimate_batchnorm(model, inputs)
    return model.to(memory_format=torch.contiguous_format).eval()
