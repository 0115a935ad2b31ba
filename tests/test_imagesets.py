"""Calibration images as people have them: 16-bit PNGs, phone JPEGs with EXIF rotation."""
import numpy as np
from PIL import Image

from edgeexport.inputs.imagesets import Preprocessing, load_images

PREP = Preprocessing.for_variant(64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def test_16_bit_png_is_scaled_not_saturated(tmp_path):
    """Before: every 16-bit value above 255 became 255 (a white image)."""
    ramp16 = np.linspace(0, 65535, 96 * 96).reshape(96, 96).astype(np.uint16)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.fromarray(ramp16).save(tmp_path / "a" / "x.png")
    # The reference: the same picture at 8 bits, converted by hand.
    Image.fromarray(np.round(ramp16 / 257).astype(np.uint8)).save(tmp_path / "b" / "x.png")
    got = load_images(tmp_path / "a", PREP).inputs
    want = load_images(tmp_path / "b", PREP).inputs
    assert np.abs(got - want).max() <= 1e-6
    assert got.std() > 0.3  # a ramp, not a flat image


def test_exif_orientation_is_applied(tmp_path):
    """A phone JPEG stores pixels sideways with an EXIF orientation tag; the model must see it
    upright, as any photo viewer shows it."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (6, 4, 3)).astype(np.uint8)
    upright = np.kron(blocks, np.ones((16, 16, 1), np.uint8))  # 96×64, coarse: JPEG-safe
    stored = np.rot90(upright, k=1).copy()  # what the camera wrote (rotated 90° CCW)
    for name in ("tagged", "reference"):
        (tmp_path / name).mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(stored).save(tmp_path / "tagged" / "x.jpg", quality=100, exif=exif)
    Image.fromarray(upright).save(tmp_path / "reference" / "x.jpg", quality=100)
    got = load_images(tmp_path / "tagged", PREP).inputs
    want = load_images(tmp_path / "reference", PREP).inputs
    assert np.abs(got - want).mean() < 0.05
    untagged = tmp_path / "untagged"
    untagged.mkdir()
    Image.fromarray(stored).save(untagged / "x.jpg", quality=100)
    assert np.abs(load_images(untagged, PREP).inputs - want).mean() > 0.2
