"""Tiny networks trained here on the synthetic stripes task, and the runners the tests use to
check exported files independently of edgeexport's own code. The session fixtures in
``conftest.py`` train and export each family once per test run; every test file shares them."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch

from edgeexport.inputs.imagesets import Preprocessing, load_images
from edgeexport.models import create_model
from edgeexport.models import family as get_family
from tests.synthetic_data import CLASSES, train

FAMILIES = ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"]
ALPHA, RES = 0.5, 64
# Steps to converge on the stripes task (warm-up + cosine decay, synthetic_data.train);
# MobileNetV3 needs more than V1 and V2, V3-Small converges better in steps of 16 images (32
# for the others). Every network trains on one thread, channels-last, which leaves the other
# core to the exports and builds running beside it. The recipes are chosen for convergence and
# CPU time, not for int8: the training seed is the run's (EDGEEXPORT_TEST_SEED), and whatever
# int8 a seed gives, the export must ship it full int8, repair it or refuse it, which the tests
# check against PyTorch. The hard cases have fixtures of their own: the collapsing V3
# (jobs.COLLAPSING_RECIPE) and the outlier channel (with_outlier_channel).
TRAIN_STEPS = {"mobilenet_v1": 200, "mobilenet_v2": 300, "mobilenet_v3_large": 400,
               "mobilenet_v3_small": 500}
TRAIN_BATCH = {"mobilenet_v3_small": 16}


def inputs_for(family, directory, resolution=RES):
    f = get_family(family)
    return load_images(directory, Preprocessing.for_variant(resolution, f.mean, f.std))


# The run chooses the training seed (initial weights and batch order): the suite must pass
# for any, so no test rests on one seed's luck.
SEED = int(os.environ.get("EDGEEXPORT_TEST_SEED", "0"))


def train_and_save(family, dataset, directory, steps, seed=SEED, **recipe):
    data = inputs_for(family, dataset["train"])
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    recipe.setdefault("batch", TRAIN_BATCH.get(family, 32))
    recipe["seed"] = seed
    model = train(create_model(family, ALPHA, len(CLASSES)), data.inputs, data.labels, steps,
                  **recipe)
    path = directory / "weights.pt"
    torch.save(model.state_dict(), path)
    return model, path


def load_trained(family, weights):
    model = create_model(family, ALPHA, len(CLASSES))
    model.load_state_dict(torch.load(weights, weights_only=True))
    return model.eval()


# One channel of V3-Large's features.3 expand output made 100× larger without changing what the
# network computes: the channel-range imbalance that breaks per-tensor int8 activations
# (Nagel et al. 2019, "Data-Free Quantization"; it is what cross-layer equalization undoes).
OUTLIER_LAYER, OUTLIER_CHANNEL, OUTLIER_FACTOR = "features.3.block.0.2", 5, 100.0


def with_outlier_channel(model):
    """Scale channel c of the ReLU block's BatchNorm by k (ReLU(k·x) = k·ReLU(x) for k > 0)
    and let the depthwise BatchNorm after it absorb k in its running statistics: the same
    function in fp32, one channel k× the others at OUTLIER_LAYER."""
    block = OUTLIER_LAYER.rsplit(".", 2)[0]  # features.3.block
    modules = dict(model.named_modules())
    first, after = modules[f"{block}.0.1"], modules[f"{block}.1.1"]
    c, k = OUTLIER_CHANNEL, OUTLIER_FACTOR
    with torch.no_grad():
        first.weight[c] *= k
        first.bias[c] *= k
        after.running_mean[c] *= k
        after.running_var[c] = k * k * after.running_var[c] + (k * k - 1) * after.eps
    return model


def main(argv: list[str]) -> None:
    """python -m tests.trained FAMILY STEPS DATASET OUT [lr=… schedule=… seed=…]: train on
    DATASET/train, write OUT/weights.pt (the session fixtures train in such processes)."""
    family, steps, data, out, *recipe = argv
    options = dict(item.split("=", 1) for item in recipe)
    if "lr" in options:
        options["lr"] = float(options["lr"])
    if "seed" in options:
        options["seed"] = int(options["seed"])
    train_and_save(family, {"train": Path(data) / "train"}, Path(out), int(steps), **options)


def ort_outputs(path, inputs):
    import onnxruntime as ort
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {s.get_inputs()[0].name: x[None]})[0] for x in inputs])


def litert_outputs(path, inputs_nchw):
    """Feed the .tflite as an app would: NHWC, quantized with the model's own parameters."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    outs = []
    for x in inputs_nchw:
        x = x.transpose(1, 2, 0)[None]
        if i["dtype"] != np.float32:
            s, z = i["quantization"]
            x = np.clip(np.round(x / s) + z, np.iinfo(i["dtype"]).min,
                        np.iinfo(i["dtype"]).max).astype(i["dtype"])
        it.set_tensor(i["index"], x)
        it.invoke()
        y = it.get_tensor(o["index"])
        if o["dtype"] != np.float32:
            s, z = o["quantization"]
            y = (y.astype(np.float32) - z) * s
        outs.append(y)
    return np.concatenate(outs)


def cosine(a, b):
    """Mean cosine of the rows; a row of zeros (logits int8 collapsed to one level) counts 0."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(np.sum(a * b, 1) / np.maximum(norms, 1e-30)))


def is_mixed(card, fmt):
    """The export's int8 file of ``fmt`` keeps layers at 16 bits (card.json → int8_repair)."""
    return any(r["format"] == fmt and (r["kept"] or r["every_layer"])
               for r in card["int8_repair"]["formats"])


if __name__ == "__main__":
    main(sys.argv[1:])
