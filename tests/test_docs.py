"""The documentation site: it builds with `mkdocs build --strict` offline (no web fonts, no
CDN), and the app developers' Python snippet runs, as docs/app-developers.md shows it, on a
model.app.tflite exported here. The snippet is read from the page itself, so the page cannot
drift from what is run."""
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
APP_PAGE = DOCS / "app-developers.md"
SNIPPET_MARKER = "<!-- tested by tests/test_docs.py"
README_MARKER = "tests/test_pull.py::test_the_readme_python_snippet_runs_on_a_pulled_file"


def python_block_after(text: str, marker: str) -> str:
    """The first ```python fenced block after ``marker``."""
    assert marker in text, f"no {marker!r}"
    after = text.split(marker, 1)[1]
    match = re.search(r"^```python\n(.*?)^```", after, re.S | re.M)
    assert match, f"no ```python block after {marker!r}"
    return match.group(1)


def test_the_site_builds_strict_and_offline(tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Every page of docs/ is in the site (strict mode already refuses pages left out of the nav).
    for page in DOCS.rglob("*.md"):
        rel = page.relative_to(DOCS).with_suffix("")
        html = site / ("index.html" if rel.name == "index" else rel / "index.html")
        assert html.is_file(), f"{page} was not built"
    # Offline: no stylesheet, script or font fetched from elsewhere.
    remote = re.compile(r"<(?:link|script)[^>]+(?:href|src)=\"(?:https?:)?//", re.I)
    for html in site.rglob("*.html"):
        text = html.read_text()
        assert not remote.search(text), f"{html.relative_to(site)} loads a remote resource"
        assert "fonts.googleapis.com" not in text and "fonts.gstatic.com" not in text


def test_the_readme_shows_the_same_snippet_as_the_docs():
    """tests/test_pull.py runs the README's copy on a pulled file; this test runs the page's:
    both must be the same code."""
    readme = (ROOT / "README.md").read_text()
    assert python_block_after(readme, README_MARKER) == \
        python_block_after(APP_PAGE.read_text(), SNIPPET_MARKER)


def test_the_readme_points_at_the_cli_and_the_two_set_up_commands():
    readme = (ROOT / "README.md").read_text()
    for needle in (".venv/bin/edgeexport", "make build TARGET=rpi4", "make test", "docs/"):
        assert needle in readme, needle
    assert len(readme.splitlines()) <= 220  # a guide; the details live in docs/


def test_the_app_developers_snippet_runs_on_an_exported_app_file(tmp_path):
    """A tiny variant (V1 α 0.25 at 64 px, 3 classes with labels, about 35 s), exported into
    models/ as the snippet expects, and a photo.jpg beside it."""
    import numpy as np
    from PIL import Image

    labels = ["cat", "dog", "bird"]
    (tmp_path / "labels.txt").write_text("\n".join(labels) + "\n")
    run_cli("export", "mobilenet_v1", "--alpha", "0.25", "--resolution", "64", "--num-classes", "3",
            "--labels", tmp_path / "labels.txt", "--calib-size", "16",
            "--out", tmp_path / "models")
    assert (tmp_path / "models" / "model.app.tflite").is_file()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)).save(
        tmp_path / "photo.jpg", quality=95)

    snippet = python_block_after(APP_PAGE.read_text(), SNIPPET_MARKER)
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    label, score = proc.stdout.split()
    assert label in labels  # the card's labels, as the export was given them
    assert math.isfinite(float(score))

    # The same answer as the file gives on the same pixels fed directly: the snippet's
    # preprocessing is what the card says (resize the short side, centre crop, raw uint8).
    import json
    from ai_edge_litert.interpreter import Interpreter
    prep = json.loads((tmp_path / "models" / "card.json").read_text())["input"]["preprocessing"]
    image = Image.open(tmp_path / "photo.jpg").convert("RGB")
    side, crop = prep["resize_short_side"], prep["crop"]
    w, h = image.size
    size = (side, round(h * side / w)) if w <= h else (round(w * side / h), side)
    image = image.resize(size, Image.BILINEAR)
    left, top = (image.width - crop) // 2, (image.height - crop) // 2
    pixels = np.asarray(image.crop((left, top, left + crop, top + crop)), dtype=np.uint8)
    interpreter = Interpreter(model_path=str(tmp_path / "models" / "model.app.tflite"))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == np.uint8 and tuple(inp["shape"]) == (1, crop, crop, 3)
    interpreter.set_tensor(inp["index"], pixels[None])
    interpreter.invoke()
    q = interpreter.get_tensor(out["index"])[0]
    out_scale, out_zero = out["quantization"]
    assert label == labels[int(q.argmax())]
    assert float(score) == pytest.approx((float(q.max()) - out_zero) * out_scale, rel=1e-6)
