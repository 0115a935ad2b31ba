"""The app-ready .tflite in the clients apps use: MediaPipe Tasks' ImageClassifier (the task API
Android/iOS apps call) and tflite-runtime 2.14 (Raspberry Pi OS), on trained networks."""
import json

import numpy as np
import pytest
import torch

from edgeexport.core.validate import INT8_MIN_TOP1_AGREEMENT
from edgeexport.inputs.imagesets import list_images
from edgeexport.models import family as get_family
from tests.conftest import run_cli
from tests.synthetic_data import CLASSES
from tests.trained import FAMILIES, RES, cosine, inputs_for, is_mixed, litert_outputs

# Two runtimes running one int8 file are two int8 readings of the same fp32 function: their
# predictions are held to each other as the export holds an int8 file's to its fp32 network.
# Their outputs differ by the kernels' rounding, accumulated through the network: measured
# (tflite-runtime 2.14 vs LiteRT, 200 images), a seed-1 V2's int8 file 33% of the outputs
# identical, up to 55 steps apart, cosine 0.996, top-1 agreement 0.99; a seed-2 V3-Large's
# cosine 0.978 (0.971 and 0.982 against fp32), agreement 0.99; seed 1 gave agreement 0.97 on
# another network. RUNTIMES_MIN_COSINE tells that noise from a broken op's (QEMU's `max` core,
# which misruns LiteRT's int8 kernels, gave top-1 agreement of 0–6%).
MIN_AGREEMENT = INT8_MIN_TOP1_AGREEMENT
RUNTIMES_MIN_COSINE = 0.95
# The export holds its files to top-1 agreement ≥ 0.95 with PyTorch on its validation images;
# MediaPipe is fed other crops of them (the full frame, resized by MediaPipe).
MIN_AGREEMENT_FULL_FRAME = 0.93


def pytorch_top1_full_frame(model, family, files) -> np.ndarray:
    """PyTorch on the whole image resized to the input (bilinear), as MediaPipe's
    ImageClassifier does (it does not centre-crop; on the V2 net, PyTorch on the card's
    centre crop agreed with MediaPipe on 95.5% of these images: the framing differs, not
    the model), then the family's mean/std."""
    from PIL import Image
    f = get_family(family)
    mean, std = np.asarray(f.mean, np.float32), np.asarray(f.std, np.float32)
    batch = []
    for path in files:
        with Image.open(path) as im:
            x = np.asarray(im.convert("RGB").resize((RES, RES), Image.BILINEAR), np.float32)
        batch.append(((x / 255 - mean) / std).transpose(2, 0, 1))
    with torch.no_grad():
        return model(torch.from_numpy(np.stack(batch))).numpy().argmax(1)


@pytest.fixture(scope="module")
def image_classifier():
    """MediaPipe's ImageClassifier on a file, closed after use."""
    from mediapipe.tasks.python import BaseOptions, vision
    opened = []

    def make(path):
        options = vision.ImageClassifierOptions(
            base_options=BaseOptions(model_asset_path=str(path)), max_results=1)
        opened.append(vision.ImageClassifier.create_from_options(options))
        return opened[-1]
    yield make
    for classifier in opened:
        classifier.close()


@pytest.fixture(scope="module")
def app_sized_images(dataset, tmp_path_factory):
    """The held-out PNGs at the model's input size: MediaPipe and PyTorch then see the same
    pixels. (Resizing is the client's own business and differs between libraries: with the
    80-px originals, MediaPipe's resize and PIL's antialiased one flipped 3.5% of the tiny V1's
    borderline predictions.)"""
    from PIL import Image
    out = tmp_path_factory.mktemp("app-sized")
    files, _, _ = list_images(dataset["eval"])
    resized = []
    for i, path in enumerate(files):
        with Image.open(path) as im:
            im.convert("RGB").resize((RES, RES), Image.BILINEAR).save(out / f"{i:04d}.png")
        resized.append(out / f"{i:04d}.png")
    return resized


@pytest.mark.parametrize("family", FAMILIES)
def test_mediapipe_classifies_the_app_file_with_its_embedded_labels(
        family, exported, app_sized_images, image_classifier):
    import mediapipe as mp
    from PIL import Image
    model, out, card = exported(family)
    classifier = image_classifier(out / "model.app.tflite")
    files = app_sized_images
    # The caller writes no preprocessing: the PNG's RGB bytes go in as decoded.
    names = np.array([classifier.classify(mp.Image.create_from_file(str(path)))
                      .classifications[0].categories[0].category_name for path in files])
    assert set(names) <= set(CLASSES), names[:5]  # the names come from the embedded labels
    # The same file and pixels in the plain LiteRT interpreter: MediaPipe must add nothing
    # (no normalisation of its own, labels in the file's order).
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32) for p in files])
    litert = np.array(CLASSES)[litert_outputs(out / "model.app.tflite",
                                              pixels.transpose(0, 3, 1, 2)).argmax(1)]
    same_file = np.mean(names == litert)
    assert same_file >= MIN_AGREEMENT, f"{family}: MediaPipe agrees with LiteRT on {same_file}"
    # Against the fp32 network (int8 flips a few borderline predictions of these tiny nets).
    reference = np.array(CLASSES)[pytorch_top1_full_frame(model, family, files)]
    agreement = np.mean(names == reference)
    assert agreement >= MIN_AGREEMENT_FULL_FRAME, \
        f"{family}: MediaPipe agrees with PyTorch on {agreement}"


@pytest.mark.parametrize("family", ["mobilenet_v2", "mobilenet_v3_small"])
def test_app_file_takes_uint8_pixels_and_adds_no_xnnpack_partition(family, exported):
    from ai_edge_litert.interpreter import Interpreter

    def delegate_nodes(path):
        interpreter = Interpreter(model_path=str(path))
        interpreter.allocate_tensors()
        return interpreter, [op["op_name"] for op in interpreter._get_ops_details()
                             ].count("DELEGATE")
    _, out, card = exported(family)
    app, app_partitions = delegate_nodes(out / "model.app.tflite")
    inp = app.get_input_details()[0]
    assert inp["dtype"] == np.uint8 and list(inp["shape"]) == [1, 64, 64, 3]
    assert inp["quantization"] == (1.0, 0)  # the tensor holds the pixels themselves
    _, int8_partitions = delegate_nodes(out / "model.int8.tflite")
    if not is_mixed(card, "app"):  # same plan: the normalisation splits nothing
        assert app_partitions == int8_partitions
    if family == "mobilenet_v2" and not is_mixed(card, "tflite") and not is_mixed(card, "app"):
        assert app_partitions == 1
    assert card["app_tflite"]["app"]["xnnpack"]["partitions"] == app_partitions


def test_card_lists_the_app_file_and_the_runtime_each_file_needs(exported):
    _, out, card = exported("mobilenet_v2")
    assert "model.app.tflite" in card["files"]
    assert card["validation"]["tflite_app_vs_pytorch"]["cosine_mean"] >= 0.98
    needs = card["app_tflite"]["runtime_requirements"]
    # By hand from TFLite's tables: an int8 CONV_2D is version 3 (op_version.cc) → 1.14.0, the
    # FULLY_CONNECTED litert-torch writes is version 5 (keep_num_dims) → 2.0.0
    # (runtime_version.cc); nothing in a MobileNetV2 needs more.
    assert needs["model.int8.tflite"]["op_versions"]["CONV_2D"] == 3
    if is_mixed(card, "tflite") or is_mixed(card, "app"):
        # 16x8 operator versions are not in the copied tables
        for name in ("model.int8.tflite", "model.app.tflite")[
                0 if is_mixed(card, "tflite") else 1:]:
            assert needs[name]["min_runtime"] is None
            assert any("int16" in k for k in needs[name]["limiting"])
        return
    assert needs["model.int8.tflite"]["min_runtime"] == "2.0.0"
    assert needs["model.app.tflite"]["min_runtime"] == "2.0.0"


@pytest.mark.parametrize("family", FAMILIES)
def test_tflite_runtime_2_14_agrees_with_litert(family, exported, dataset,
                                                tflite_runtime_python):
    from edgeexport.app.runtime_check import (
        CHECKED_FILES,
        model_inputs,
        run_litert_raw,
        run_other_runtime,
    )
    from edgeexport.core.errors import UserError
    from edgeexport.core.runtimes import litert_interpreter
    _, out, card = exported(family)
    images = inputs_for(family, dataset["eval"]).inputs
    inputs = model_inputs(out, images)
    assert set(inputs) == set(CHECKED_FILES)
    # A mixed file (the app file shares the TFLite file's plan, or has a repair of its own).
    mixed = ({"model.int8.tflite", "model.app.tflite"} if is_mixed(card, "tflite") else
             {"model.app.tflite"} if is_mixed(card, "app") else set())
    if mixed:
        # Measured: 2.14 has no int8 → int16 QUANTIZE; the card claims no runtime version.
        with pytest.raises(UserError, match="QUANTIZE"):
            run_other_runtime(tflite_runtime_python, out, inputs)
        needs = card["app_tflite"]["runtime_requirements"]
        assert all(needs[name]["min_runtime"] is None for name in mixed)
        return
    version, theirs = run_other_runtime(tflite_runtime_python, out, inputs)
    assert version == "2.14.0"
    for name, x in inputs.items():
        ours = run_litert_raw(out / name, x)
        assert theirs[name].dtype == ours.dtype and theirs[name].shape == ours.shape
        _, zero_point = litert_interpreter(out / name).get_output_details()[0]["quantization"]
        similarity = cosine(ours.astype(np.float32) - zero_point,
                            theirs[name].astype(np.float32) - zero_point)
        agreement = np.mean(ours.argmax(1) == theirs[name].argmax(1))
        assert similarity >= RUNTIMES_MIN_COSINE, f"{family} {name}: cosine {similarity}"
        assert agreement >= MIN_AGREEMENT, f"{family} {name}: {agreement}"


def test_check_runtime_records_what_it_measured(exported, dataset, tflite_runtime_python,
                                                tmp_path):
    import shutil
    _, out, _ = exported("mobilenet_v1")
    copy = tmp_path / "export"
    shutil.copytree(out, copy)
    run_cli("check-runtime", copy, "--python", tflite_runtime_python,
            "--images", dataset["eval"])
    checks = json.loads((copy / "card.json").read_text())["app_tflite"]["runtime_checks"]
    assert [c["runtime"].split(" (")[0] for c in checks] == ["tflite-runtime 2.14.0"]
    assert set(checks[0]["files"]) == {"model.int8.tflite", "model.app.tflite"}
    assert all(r["top1_agreement"] >= MIN_AGREEMENT for r in checks[0]["files"].values())


def test_app_file_with_the_repairs_float_output_passes_its_checks_and_says_so(
        exported, dataset, tmp_path):
    """The app file's last widening (PrecisionPlan.float_output, what the repair reaches when
    8-bit outputs cannot hold): forced here on a trained V2, the file goes through the same
    make_app_file checks (uint8 pixels in, float32 logits out is not "not fully integer"),
    its record says float32 with no dequantization, and its logits follow PyTorch's."""
    from dataclasses import replace

    from edgeexport.app.app_file import make_app_file, run_app, to_pixels
    from edgeexport.export.tflite_export import quantize_int8
    from edgeexport.inputs.imagesets import Preprocessing
    from edgeexport.int8.precision_plan import PrecisionPlan
    model, out, _ = exported("mobilenet_v2")
    images = inputs_for("mobilenet_v2", dataset["eval"])
    f = get_family("mobilenet_v2")
    prep = Preprocessing.for_variant(RES, f.mean, f.std)
    with torch.no_grad():
        reference = model(torch.from_numpy(images.inputs)).numpy()
    wide = replace(PrecisionPlan(), float_output=True)
    path, comparison, record = make_app_file(
        out / "model.fp32.tflite", prep, images, images, reference, tmp_path,
        check_int8=lambda c: c,
        describe=dict(name="v2", description="test", version="1", author="tests",
                      license="MIT", labels=tuple(CLASSES)),
        int8_file=out / "model.int8.tflite", plan=PrecisionPlan(), quantize_int8=quantize_int8,
        validated=lambda quantize, evaluate, plan: (quantize(wide), None, wide))
    assert record.output["dtype"] == "float32" and "scale" not in record.output
    logits = run_app(path, to_pixels(images, prep))
    assert logits.dtype == np.float32
    assert cosine(reference, logits) >= 0.98 and comparison.cosine_mean >= 0.98
