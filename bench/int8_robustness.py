"""How often int8 holds on networks nobody tuned: for each family, SEEDS × RECIPES trained on
the synthetic stripes task (tests.synthetic_data), exported in both formats with the
defaults; per network the full-int8 MinMax cosine, the shipped cosine and top-1 agreement with
PyTorch, the plan (full int8 with which ranges, or how many layers kept), and the shares that
ship full int8, mixed, refused. "input8": PyTorch's own top-1 agreement with itself when only
its input is rounded to 8 bits (over the input's min/max, as the int8 files' input is): no
file with an 8-bit input can do better.

    python bench/int8_robustness.py [--families mobilenet_v3_large] [--seeds 0 1 2] [--jobs 2]
                                    [--reuse DIR]

Recipes: "converged" (AdamW, warm-up + cosine decay, tests.trained's step counts) and
"short" (a quarter of the steps at a constant rate 2e-3: heavy-tailed activations).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.synthetic_data import write_dataset  # noqa: E402
from tests.trained import (  # noqa: E402
    ALPHA,
    FAMILIES,
    RES,
    TRAIN_STEPS,
    cosine,
    inputs_for,
    litert_outputs,
    load_trained,
    ort_outputs,
)

RECIPES = {"converged": lambda steps: (steps, []),
           "short": lambda steps: (steps // 4, ["lr=2e-3", "schedule=constant"])}


def train(family, recipe, seed, data, out) -> Path:
    if (out / "weights.pt").exists():  # --reuse: trained by an earlier run
        return out / "weights.pt"
    steps, extra = RECIPES[recipe](TRAIN_STEPS[family])
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "tests.trained", family, str(steps), str(data),
                    str(out), f"seed={seed}", *extra], cwd=ROOT, check=True,
                   capture_output=True)
    return out / "weights.pt"


def export(family, weights, data, out) -> dict | str:
    proc = subprocess.run(
        [sys.executable, "-m", "edgeexport", "export", family, "--alpha", str(ALPHA),
         "--resolution", str(RES), "--num-classes", "4", "--weights", str(weights),
         "--calib", str(data / "train"), "--eval", str(data / "eval"), "--target", "rpi4",
         "--out", str(out), "--json"], capture_output=True, text=True)
    return json.loads(proc.stdout) if proc.returncode == 0 else proc.stderr.strip()


def eight_bit_input(x: np.ndarray) -> np.ndarray:
    """``x`` through an 8-bit quantization over its own min/max, as an int8 file's input
    QuantizeLinear does: what PyTorch gives on it bounds the top-1 agreement of any file
    with an 8-bit input, however the rest is quantized."""
    low, high = float(x.min()), float(x.max())
    scale = (high - low) / 255
    zero = np.round(-low / scale)
    return ((np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale).astype(np.float32)


def network(family, recipe, seed, data, root, x) -> tuple[str, str, str]:
    """Train and export one network: (its name, its printed line, what it shipped)."""
    name = f"{family} {recipe} seed {seed}"
    weights = train(family, recipe, seed, data, root / name.replace(" ", "_"))
    out = root / (name.replace(" ", "_") + "_out")
    shutil.rmtree(out, ignore_errors=True)
    card = export(family, weights, data, out)
    if isinstance(card, str):
        return name, f"{name:40s} refused: {card[:120]}", "refused"
    model = load_trained(family, weights)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    outs = (ort_outputs(out / "model.int8.onnx", x), litert_outputs(out / "model.int8.tflite", x))
    agree = min(float(np.mean(ref.argmax(1) == o.argmax(1))) for o in outs)
    with torch.no_grad():
        rounded = model(torch.from_numpy(eight_bit_input(x))).numpy()
    floor = float(np.mean(ref.argmax(1) == rounded.argmax(1)))
    repair = card["int8_repair"]
    first = min((r["attempts"][0]["cosine_mean"] for r in repair["formats"]),
                default=card["validation"]["onnx_int8_vs_onnx_fp32"]["cosine_mean"])
    plan = "; ".join(f"{r['format']} {r['ranges']}"
                     + ("+GPTQ" if r.get("weight_rounding") == "GPTQ" else "")
                     + f" {len(r['kept'])} kept"
                     + (" (every layer)" if r["every_layer"] else "")
                     + (" (16-bit I/O)" if r["wide_io"] else "")
                     + (f", {len(r['float_layers'])} float" if r["float_layers"] else "")
                     for r in repair["formats"]) or "full int8, MinMax"
    line = (f"{name:40s} {first:7.4f} {cosine(ref, outs[0]):7.4f} "
            f"{cosine(ref, outs[1]):7.4f} {agree:6.3f} {floor:6.3f}  {plan}")
    return name, line, repair["precision"]


def main() -> None:
    from concurrent.futures import ThreadPoolExecutor
    parser = argparse.ArgumentParser()
    parser.add_argument("--families", nargs="+", default=FAMILIES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="networks trained side by side")
    parser.add_argument("--reuse", type=Path, help="the directory of an earlier run (its path "
                        "is printed first): its data and trained networks, exported anew")
    args = parser.parse_args()
    root = args.reuse or Path(tempfile.mkdtemp(prefix="int8-robustness-"))
    print(f"networks and exports in {root}")
    data = root / "data"
    if not args.reuse:
        write_dataset(data / "train", 48, 80, seed=0)
        write_dataset(data / "eval", 50, 80, seed=1)
    shipped = {"full int8": 0, "mixed": 0, "refused": 0}
    print(f"{'network':40s} {'MinMax':>7s} {'onnx':>7s} {'tflite':>7s} {'agree':>6s} "
          f"{'input8':>6s}  plan")
    todo = [(family, recipe, seed) for family in args.families for recipe in RECIPES
            for seed in args.seeds]
    evalsets = {family: inputs_for(family, data / "eval").inputs for family in args.families}
    with ThreadPoolExecutor(args.jobs) as pool:
        for _, line, precision in pool.map(
                lambda job: network(*job, data, root, evalsets[job[0]]), todo):
            shipped[precision] += 1
            print(line, flush=True)
    total = sum(shipped.values())
    print("shipped: " + ", ".join(f"{k} {v}/{total}" for k, v in shipped.items()))


if __name__ == "__main__":
    main()
