"""MobileNet V3 Large and Small (Howard et al. 2019), torchvision's module names.

BatchNorm uses eps=0.001 and momentum=0.01 as torchvision does; squeeze-excitation squeezes to
``make_divisible(expanded // 4)`` channels with a hard-sigmoid gate.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from edgeexport.models.layers import ConvNormActivation, ResidualAdd, init_weights, make_divisible

BN = dict(bn_eps=0.001, bn_momentum=0.01)


@dataclass(frozen=True)
class BlockConfig:
    """One row of the paper's Tables 1/2: in, kernel, expanded, out, SE, activation, stride."""
    in_channels: int
    kernel: int
    expanded: int
    out_channels: int
    use_se: bool
    activation: str  # "RE" (ReLU) or "HS" (hard-swish)
    stride: int

    def scaled(self, width_mult: float) -> "BlockConfig":
        return BlockConfig(make_divisible(self.in_channels * width_mult), self.kernel,
                           make_divisible(self.expanded * width_mult),
                           make_divisible(self.out_channels * width_mult),
                           self.use_se, self.activation, self.stride)


LARGE: tuple[BlockConfig, ...] = tuple(BlockConfig(*row) for row in (
    (16, 3, 16, 16, False, "RE", 1), (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1), (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1), (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2), (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1), (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1), (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2), (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
))
LARGE_LAST_CHANNEL = 1280

SMALL: tuple[BlockConfig, ...] = tuple(BlockConfig(*row) for row in (
    (16, 3, 16, 16, True, "RE", 2), (16, 3, 72, 24, False, "RE", 2),
    (24, 3, 88, 24, False, "RE", 1), (24, 5, 96, 40, True, "HS", 2),
    (40, 5, 240, 40, True, "HS", 1), (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1), (48, 5, 144, 48, True, "HS", 1),
    (48, 5, 288, 96, True, "HS", 2), (96, 5, 576, 96, True, "HS", 1),
    (96, 5, 576, 96, True, "HS", 1),
))
SMALL_LAST_CHANNEL = 1024


class SqueezeExcitation(nn.Module):
    """Global pool → 1×1 conv (ReLU) → 1×1 conv (hard-sigmoid) → channel-wise scale."""

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


class InvertedResidual(nn.Module):
    def __init__(self, cfg: BlockConfig) -> None:
        super().__init__()
        self.use_res_connect = cfg.stride == 1 and cfg.in_channels == cfg.out_channels
        act = nn.Hardswish if cfg.activation == "HS" else nn.ReLU
        layers: list[nn.Module] = []
        if cfg.expanded != cfg.in_channels:
            layers.append(ConvNormActivation(cfg.in_channels, cfg.expanded, 1,
                                             activation=act, **BN))
        layers.append(ConvNormActivation(cfg.expanded, cfg.expanded, cfg.kernel, cfg.stride,
                                         groups=cfg.expanded, activation=act, **BN))
        if cfg.use_se:
            layers.append(SqueezeExcitation(cfg.expanded, make_divisible(cfg.expanded // 4)))
        layers.append(ConvNormActivation(cfg.expanded, cfg.out_channels, 1,
                                         activation=None, **BN))
        self.block = nn.Sequential(*layers)
        if self.use_res_connect:
            self.add = ResidualAdd()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return self.add(self.block(x), x)
        return self.block(x)


class MobileNetV3(nn.Module):
    def __init__(self, setting: tuple[BlockConfig, ...], last_channel: int,
                 width_mult: float = 1.0, num_classes: int = 1000,
                 dropout: float = 0.2) -> None:
        super().__init__()
        blocks = [cfg.scaled(width_mult) for cfg in setting]
        layers: list[nn.Module] = [ConvNormActivation(3, blocks[0].in_channels, 3, 2,
                                                      activation=nn.Hardswish, **BN)]
        layers += [InvertedResidual(cfg) for cfg in blocks]
        last_in = blocks[-1].out_channels
        last_out = 6 * last_in
        layers.append(ConvNormActivation(last_in, last_out, 1, activation=nn.Hardswish, **BN))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        head = make_divisible(last_channel * width_mult)
        self.classifier = nn.Sequential(
            nn.Linear(last_out, head), nn.Hardswish(inplace=True),
            nn.Dropout(dropout, inplace=True), nn.Linear(head, num_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


mobilenet_v3_large = partial(MobileNetV3, LARGE, LARGE_LAST_CHANNEL)
mobilenet_v3_small = partial(MobileNetV3, SMALL, SMALL_LAST_CHANNEL)
