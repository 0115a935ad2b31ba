"""Calibration and evaluation images: a directory of JPEG/PNG files, or a synthetic set.

Preprocessing is the variant's: resize the short side to resolution / 0.875 (bilinear),
centre-crop to the resolution, scale to [0, 1], subtract mean, divide by std. Class labels come
from ImageNet-style subfolders (sorted names → indices); a flat directory is unlabelled.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgeexport.core.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
CROP_FRACTION = 0.875
SYNTHETIC_CALIBRATION_SEED = 1
SYNTHETIC_VALIDATION_SEED = 2


@dataclass(frozen=True)
class Preprocessing:
    resolution: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_short_side: int
    crop: int
    interpolation: str = "bilinear"
    input_range: str = "RGB uint8 / 255 → [0, 1], then (x - mean) / std"

    @classmethod
    def for_variant(cls, resolution: int, mean, std) -> "Preprocessing":
        return cls(resolution, tuple(mean), tuple(std),
                   round(resolution / CROP_FRACTION), resolution)

    def to_json(self) -> dict:
        return asdict(self)

    def apply(self, image) -> np.ndarray:
        """PIL RGB image → float32 CHW tensor."""
        from PIL import Image
        w, h = image.size
        scale = self.resize_short_side / min(w, h)
        size = (max(self.crop, round(w * scale)), max(self.crop, round(h * scale)))
        image = image.resize(size, Image.BILINEAR)
        left, top = (size[0] - self.crop) // 2, (size[1] - self.crop) // 2
        image = image.crop((left, top, left + self.crop, top + self.crop))
        x = np.asarray(image, dtype=np.float32) / 255.0
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))


@dataclass
class ImageSet:
    """Preprocessed NCHW float32 images, with labels when the directory had class folders."""
    inputs: np.ndarray
    labels: np.ndarray | None
    class_names: list[str] | None
    source: str
    synthetic: bool
    digest: str

    def summary(self) -> dict:
        return {"source": self.source, "synthetic": self.synthetic, "images": len(self.inputs),
                "labelled": self.labels is not None, "classes": self.class_names,
                "sha256": self.digest}

    def split(self, every: int = 5) -> tuple["ImageSet", "ImageSet"]:
        """Deterministic hold-out: every ``every``-th image for validation, the rest to calibrate."""
        held = np.arange(len(self.inputs)) % every == every - 1
        def take(mask, tag):
            return ImageSet(self.inputs[mask], None if self.labels is None else self.labels[mask],
                            self.class_names, f"{self.source} ({tag})", self.synthetic,
                            self.digest)
        return take(~held, "calibration split"), take(held, f"held-out 1 in {every}")


def list_images(directory: Path) -> tuple[list[Path], list[int] | None, list[str] | None]:
    if not directory.is_dir():
        raise UserError(f"image directory {directory} does not exist or is not a directory")
    subdirs = sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    def images_in(d: Path) -> list[Path]:
        return sorted(p for p in d.iterdir()
                      if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                      and not p.name.startswith("."))
    if subdirs:
        stray = images_in(directory)
        if stray:
            raise UserError(f"{directory}: {len(stray)} image(s) at the top level beside class "
                            f"folders (e.g. {stray[0].name}): move them into a class folder, "
                            "or out of the directory")
        files, labels = [], []
        names = [d.name for d in subdirs]
        for label, d in enumerate(subdirs):
            found = images_in(d)
            files += found
            labels += [label] * len(found)
        result = (files, labels, names)
    else:
        result = (images_in(directory), None, None)
    if not result[0]:
        raise UserError(f"no JPEG/PNG images in {directory} "
                        "(expected image files, flat or in class subfolders)")
    return result


def load_images(directory: Path, prep: Preprocessing, limit: int | None = None) -> ImageSet:
    files, labels, names = list_images(directory)
    if limit is not None and len(files) > limit:
        keep = np.linspace(0, len(files) - 1, limit).round().astype(int)
        files = [files[i] for i in keep]
        labels = None if labels is None else [labels[i] for i in keep]
    digest = hashlib.sha256()
    arrays = []
    for path in files:
        data = path.read_bytes()
        digest.update(str(path.relative_to(directory)).encode() + b"\0" + data)
        arrays.append(prep.apply(read_rgb(path)))
    return ImageSet(np.stack(arrays), None if labels is None else np.asarray(labels),
                    names, str(directory), False, digest.hexdigest())


def read_rgb(path: Path):
    """An image file as an upright 8-bit RGB PIL image: EXIF orientation applied, 16-bit
    greyscale scaled (not clipped) to 8 bits, oversized images (decompression bombs) refused."""
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im = ImageOps.exif_transpose(im)
                if im.mode in ("I", "I;16", "I;16L", "I;16B"):
                    grey = np.asarray(im, dtype=np.float64) / 257.0  # 0..65535 → 0..255
                    im = Image.fromarray(np.clip(np.round(grey), 0, 255).astype(np.uint8))
                return im.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(f"{path}: image too large to decode safely (over "
                        f"{Image.MAX_IMAGE_PIXELS:,} pixels)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise UserError(f"{path}: not a readable JPEG/PNG image ({e.__class__.__name__})") \
            from None


def synthetic_images(prep: Preprocessing, count: int, seed: int) -> ImageSet:
    """Deterministic smooth colour fields with edges: statistics closer to photos than noise."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    side = prep.resize_short_side
    arrays = []
    for _ in range(count):
        coarse = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.uint8)
        image = np.asarray(Image.fromarray(coarse).resize((side, side), Image.BICUBIC),
                           dtype=np.float32)
        yy, xx = np.mgrid[0:side, 0:side]
        freq, phase = rng.uniform(0.05, 0.4), rng.uniform(0, 2 * np.pi)
        stripes = 40 * np.sin(freq * (xx * np.cos(phase) + yy * np.sin(phase)))
        image = np.clip(image + stripes[..., None] + rng.normal(0, 8, image.shape), 0, 255)
        arrays.append(prep.apply(Image.fromarray(image.astype(np.uint8))))
    inputs = np.stack(arrays)
    return ImageSet(inputs, None, None, f"synthetic (seed {seed}, {count} images)", True,
                    hashlib.sha256(inputs.tobytes()).hexdigest())
