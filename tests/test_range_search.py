"""The MSE range search (edgeexport.int8.range_search) against brute force: every candidate
range of its grid applied by actually quantizing and dequantizing the values (8-bit asymmetric,
the zero point rounded, as onnxruntime and ai-edge-quantizer do), the errors measured, not
modelled. The search works from a histogram and a rounding-noise model (Δ²/12); it must land
within a few percent of the best range brute force finds."""
import numpy as np
import pytest

from edgeexport.int8.range_search import FRACTIONS, histogram, mse_range


def fake_quant(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scale = (hi - lo) / 255
    zero = np.round(-lo / scale)
    q = np.clip(np.round(x / scale) + zero, 0, 255)
    return (q - zero) * scale


def relative_error(images, lo, hi) -> float:
    """Σ over images of the squared quantization error relative to the image's energy."""
    return sum(float(np.sum((fake_quant(v, lo, hi) - v) ** 2) / np.sum(v ** 2)) for v in images)


def brute_force(images, step: int = 1) -> tuple[float, tuple[float, float]]:
    low = min(min(float(v.min()) for v in images), 0.0)
    high = max(max(float(v.max()) for v in images), 0.0)
    los = low * FRACTIONS[::step] if low < 0 else [0.0]
    his = high * FRACTIONS[::step] if high > 0 else [0.0]
    return min((relative_error(images, lo, hi), (lo, hi)) for lo in los for hi in his)


def heavy_tailed_relu(rng, n):
    """A ReLU output with a Student-t (3 d.o.f.) tail: most values small, a few far out."""
    return np.maximum(rng.standard_t(3, n), 0).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_search_finds_the_range_brute_force_finds(seed):
    rng = np.random.default_rng(seed)
    images = [heavy_tailed_relu(rng, 4000) for _ in range(8)]
    best, _ = brute_force(images)
    lo, hi = mse_range(*histogram(images))
    found = relative_error(images, lo, hi)
    assert found <= 1.05 * best


def test_signed_tensors_search_both_ends():
    """A residual sum: both signs, a heavier tail on the positive side."""
    rng = np.random.default_rng(3)
    images = [np.concatenate([rng.standard_t(3, 3000) * 2, -np.abs(rng.standard_normal(1000))])
              .astype(np.float32) for _ in range(6)]
    best, _ = brute_force(images, step=3)
    lo, hi = mse_range(*histogram(images))
    assert lo < 0 < hi
    assert relative_error(images, lo, hi) <= 1.05 * best


def test_an_image_with_large_activations_does_not_set_the_range_for_all():
    """Seven images of ordinary size and one 8× larger: the error that matters is each
    image's own (the export validates a cosine per image). The range that minimises the
    absolute squared error (brute force) serves the large image and leaves the seven
    coarse steps; the search's range must do clearly better per image."""
    rng = np.random.default_rng(4)
    images = [heavy_tailed_relu(rng, 4000) for _ in range(7)]
    images.append(heavy_tailed_relu(rng, 4000) * 8)
    best, _ = brute_force(images)
    lo, hi = mse_range(*histogram(images))
    found = relative_error(images, lo, hi)
    assert found <= 1.05 * best
    high = max(float(v.max()) for v in images)
    _, absolute = min((sum(float(np.sum((fake_quant(v, 0.0, h) - v) ** 2)) for v in images), h)
                      for h in high * FRACTIONS)
    assert found < 0.8 * relative_error(images, 0.0, absolute)


def test_a_constant_tensor_keeps_a_range_holding_its_value():
    lo, hi = mse_range(*histogram([np.full(10, 2.0, np.float32)]))
    assert lo == 0.0 and hi == pytest.approx(2.0, rel=1e-6)
    assert mse_range(*histogram([np.zeros(10, np.float32)])) == (0.0, 0.0)
