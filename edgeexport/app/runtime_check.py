"""Measure an export's .tflite files in another TFLite runtime (e.g. tflite-runtime 2.14, what
Raspberry Pi OS users keep) against LiteRT, on labelled or unlabelled images, and record the
measured top-1 agreement in card.json (`app_tflite.runtime_checks`). Nothing is claimed for a
runtime that was not run: the card only lists what this measured."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edgeexport.contracts.app import RuntimeCheck
from edgeexport.core.errors import UserError

PROBE = Path(__file__).with_name("runtime_probe.py")
CHECKED_FILES = ("model.int8.tflite", "model.app.tflite")


def model_inputs(export_dir: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """Normalised NCHW images → what each checked file takes (int8 quantized NHWC for the
    int8 file, uint8 pixels for the app file)."""
    from edgeexport.app.app_file import to_pixels
    from edgeexport.contracts.artifacts import Card, read_record
    from edgeexport.core.runtimes import litert_interpreter, quantize
    from edgeexport.inputs.imagesets import Preprocessing
    p = read_record(export_dir, Card).input.preprocessing
    prep = Preprocessing.for_variant(p["resolution"], p["mean"], p["std"])
    inputs = {}
    for name in CHECKED_FILES:
        if not (export_dir / name).exists():
            continue
        if name == "model.app.tflite":
            inputs[name] = to_pixels(images, prep)
        else:
            detail = litert_interpreter(export_dir / name).get_input_details()[0]
            inputs[name] = quantize(images.transpose(0, 2, 3, 1), detail)
    return inputs


def run_litert_raw(path: Path, inputs: np.ndarray) -> np.ndarray:
    from edgeexport.core.runtimes import litert_interpreter
    interpreter = litert_interpreter(path)
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    results = []
    for x in inputs:
        interpreter.set_tensor(inp, x[None])
        interpreter.invoke()
        results.append(interpreter.get_tensor(out).copy())
    return np.concatenate(results)


def run_other_runtime(python: Path, export_dir: Path,
                      inputs: dict[str, np.ndarray]) -> tuple[str, dict[str, np.ndarray]]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "inputs.npz", **inputs)
        proc = subprocess.run([str(python), str(PROBE), str(tmp / "inputs.npz"), str(tmp),
                               *(str(export_dir / name) for name in inputs)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"{python}: the TFLite runtime failed ({last[:200]})")
        version = (tmp / "version.txt").read_text().strip()
        return version, {name: np.load(tmp / f"{name}.npy") for name in inputs}


def check_runtime(export_dir: Path, python: Path, images_dir: Path) -> RuntimeCheck:
    from edgeexport.contracts.artifacts import Card, read_record
    from edgeexport.inputs.imagesets import Preprocessing, load_images
    p = read_record(export_dir, Card).input.preprocessing
    images = load_images(images_dir, Preprocessing.for_variant(p["resolution"], p["mean"],
                                                               p["std"]))
    inputs = model_inputs(export_dir, images.inputs)
    version, theirs = run_other_runtime(python, export_dir, inputs)
    files = {}
    for name, x in inputs.items():
        ours = run_litert_raw(export_dir / name, x)
        diff = np.abs(ours.astype(np.int32) - theirs[name].astype(np.int32))
        files[name] = {"top1_agreement": float(np.mean(ours.argmax(1) ==
                                                       theirs[name].argmax(1))),
                       "max_abs_diff_quantized_steps": int(diff.max()),
                       "outputs_identical": float(np.mean(diff == 0))}
    from importlib.metadata import version as installed
    return RuntimeCheck(runtime=f"tflite-runtime {version} (1 thread, default delegates)",
                        reference=f"ai-edge-litert {installed('ai-edge-litert')} (1 thread)",
                        images=f"{images.source}: {len(images.inputs)} images", files=files)


def record_check(export_dir: Path, check: RuntimeCheck) -> None:
    """Add (or replace, for the same runtime) the check in card.json, atomically."""
    from edgeexport.contracts.artifacts import Card, read_record, write_record
    card = read_record(export_dir, Card)
    if card.app_tflite is None:
        raise UserError(f"{export_dir}: card.json lists no app-ready .tflite (export with "
                        "--formats tflite)")
    others = [c for c in card.app_tflite.runtime_checks if c.runtime != check.runtime]
    card.app_tflite.runtime_checks = others + [check]
    write_record(export_dir, card)
