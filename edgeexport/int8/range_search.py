"""The ``MSE`` range method: per activation tensor, the clipping range that minimises the
8-bit quantization error of its values on the calibration images (NNCF's MSE range
estimator, AIMET's TF-enhanced encodings), each image's error relative to its own values.

A range [lo, hi] costs, per value x, its rounding error inside (a uniform step Δ = (hi − lo)/255
rounds with mean squared error Δ²/12) and its clipping error outside ((x − hi)² above, (x −
lo)² below). The true min/max never clips but rounds everything coarsely; a heavy-tailed
tensor (a few values far out) gets far finer steps for the bulk by clipping its tail. Searched
from a histogram of the tensor's values, on a grid of fractions of its true minimum and
maximum; the range always holds 0 (an asymmetric 8-bit range represents 0 exactly).

Both quantizers take the result as fixed ranges: onnxruntime's ``TensorQuantOverrides``
(``rmin``/``rmax``) and ai-edge-quantizer's calibrated min/max (edgeexport.int8.quantize_onnx,
edgeexport.export.tflite_export).
"""
from __future__ import annotations

import numpy as np

BINS = 2048
LEVELS = 255  # 8-bit activations
FRACTIONS = np.linspace(1.0, 0.05, 96)  # of the true minimum and maximum


class Histograms:
    """Per tensor, the histogram ``mse_range`` searches, fed one image at a time over the
    tensor's true min/max (``bounds``, known from a min/max calibration): memory is BINS
    values per tensor, whatever the number of images.

    Each image's values are weighed by the inverse of their energy (sum of squares): the
    error that matters is each image's error relative to its own output, as the export's
    validation measures it (a cosine per image). Unweighed, a few images with 7× larger
    activations than the rest set every range (measured on a trained V3-Large: MSE ranges
    near the true max, cosine 0.80, under MinMax's 0.83). Zeros are left out: an asymmetric
    8-bit range holds 0 exactly, and half a ReLU's outputs are 0."""

    def __init__(self, bounds: dict[str, tuple[float, float]]) -> None:
        self.edges = {name: np.linspace(*_span(low, high), BINS + 1)
                      for name, (low, high) in bounds.items()}
        self.counts = {name: np.zeros(BINS, np.float64) for name in bounds}

    def add(self, name: str, values: np.ndarray) -> None:
        energy = float(np.sum(np.square(values, dtype=np.float64)))
        if energy > 0:
            edges = self.edges[name]
            self.counts[name] += np.histogram(values[values != 0], BINS,
                                              range=(edges[0], edges[-1]))[0] / energy

    def ranges(self) -> dict[str, tuple[float, float]]:
        """tensor name → its (lo, hi)."""
        return {name: mse_range(self.counts[name], self.edges[name]) for name in self.counts}


def histogram(per_image: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(weights, bin edges) of one tensor's values on each image (Histograms, in one go)."""
    bounds = (min(float(np.min(v)) for v in per_image), max(float(np.max(v)) for v in per_image))
    histograms = Histograms({"x": bounds})
    for values in per_image:
        histograms.add("x", values)
    return histograms.counts["x"], histograms.edges["x"]


def _span(low: float, high: float) -> tuple[float, float]:
    """[low, high], widened where it is too narrow to hold BINS bins."""
    if high - low < 1e-6 * max(abs(low), 1.0):
        high = low + 1e-3 * max(abs(low), 1.0)
    return low, high


def mse_range(counts: np.ndarray, edges: np.ndarray, levels: int = LEVELS) -> tuple[float, float]:
    """The [lo, hi] of least expected squared error for ``counts`` over ``edges``, both ends on
    the grid FRACTIONS × the ends of the filled bins (an end at or beyond 0 stays at 0)."""
    centres = (edges[:-1] + edges[1:]) / 2
    filled = np.flatnonzero(counts)  # the histogram may span more than the values
    if not filled.size:
        return 0.0, 0.0
    low = min(float(edges[filled[0]]), 0.0)
    high = max(float(edges[filled[-1] + 1]), 0.0)
    los = low * FRACTIONS if low < 0 else np.zeros(1)
    his = high * FRACTIONS if high > 0 else np.zeros(1)
    below = np.maximum(los[:, None] - centres[None, :], 0.0)  # (lo candidates, bins)
    above = np.maximum(centres[None, :] - his[:, None], 0.0)  # (hi candidates, bins)
    clip_lo = (below ** 2) @ counts
    clip_hi = (above ** 2) @ counts
    n_lo, n_hi = (below > 0) @ counts, (above > 0) @ counts
    inside = counts.sum() - n_lo[:, None] - n_hi[None, :]
    step = (his[None, :] - los[:, None]) / levels
    error = clip_lo[:, None] + clip_hi[None, :] + np.maximum(inside, 0) * step ** 2 / 12
    j, k = np.unravel_index(int(np.argmin(error)), error.shape)
    return float(los[j]), float(his[k])
