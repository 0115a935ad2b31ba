"""MobileNet V1 (Howard et al. 2017), Table 1 of the paper.

Activation: ReLU6, as in the TensorFlow reference (tf-slim, Keras); the paper writes ReLU.
The last depthwise layer has stride 1 (the paper's table prints s2, every reference
implementation and the published 7×7 final feature map use s1). Classifier: dropout then a
fully connected layer with bias, as Keras' ``MobileNet`` (its 1×1 conv head is the same op).
"""
from __future__ import annotations

import torch
from torch import nn

from edgeexport.models.layers import ConvNormActivation, init_weights, make_divisible

# (output channels, stride) of each depthwise separable block, after the 3×3 stem of 32.
SEPARABLE_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
)


class DepthwiseSeparable(nn.Module):
    """3×3 depthwise conv then 1×1 pointwise conv, each with BatchNorm and ReLU6."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.dw = ConvNormActivation(in_channels, in_channels, 3, stride, groups=in_channels)
        self.pw = ConvNormActivation(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class MobileNetV1(nn.Module):
    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000,
                 dropout: float = 0.001) -> None:
        super().__init__()
        channels = make_divisible(32 * width_mult)
        layers: list[nn.Module] = [ConvNormActivation(3, channels, 3, 2)]
        for out, stride in SEPARABLE_BLOCKS:
            out_channels = make_divisible(out * width_mult)
            layers.append(DepthwiseSeparable(channels, out_channels, stride))
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, num_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))
