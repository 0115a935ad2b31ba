"""The export pipeline: each stage a function from artifact to artifact, each export followed
by a validation against its reference. Files are staged in a hidden directory and renamed into
place only when their stage has validated; card.json is written last."""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgeexport.analysis.count import analyze
from edgeexport.contracts import artifacts
from edgeexport.contracts.app import AppCard
from edgeexport.contracts.artifacts import (
    ANALYSIS,
    ONNX_FP32_VS_PYTORCH,
    ONNX_INT8_VS_ONNX_FP32,
    Card,
    FileEntry,
    ImageSetInfo,
    ModelInput,
    ModelOutput,
    OnnxInt8Info,
    RepairCosts,
    TfliteInfo,
    Tolerances,
    write_record,
)
from edgeexport.contracts.variant import Variant
from edgeexport.core.errors import UserError, ValidationError
from edgeexport.core.fileio import exclusive, file_entry, reporting_full_disk, write_json
from edgeexport.core.validate import (
    FP32_ATOL_REL,
    INT8_MIN_COSINE,
    INT8_MIN_TOP1_AGREEMENT,
    compare,
    require_fp32_match,
    require_int8_match,
)
from edgeexport.core.versions import tool_versions
from edgeexport.inputs.imagesets import (
    SYNTHETIC_CALIBRATION_SEED,
    SYNTHETIC_VALIDATION_SEED,
    ImageSet,
    Preprocessing,
    load_images,
    synthetic_images,
)
from edgeexport.int8.weight_rounding import rounding_note
from edgeexport.models import family
from edgeexport.targets import Target

FORMATS = artifacts.FORMATS
SYNTHETIC_CALIBRATION_SIZE = 64
SYNTHETIC_VALIDATION_SIZE = 16
# The file each int8 step (contracts.int8.RepairRecord.format) ships.
SHIPPED = {"onnx": "model.int8.onnx", "tflite": "model.int8.tflite", "app": "model.app.tflite"}


@dataclass
class ExportOptions:
    variant: Variant
    target: Target
    out: Path
    formats: tuple[str, ...] = FORMATS
    weights: Path | None = None
    calib: Path | None = None
    eval: Path | None = None
    labels: Path | None = None
    calib_method: str | None = None  # None: chosen by measurement (repair.RANGE_METHODS)
    calib_size: int = 256
    min_cosine: float = INT8_MIN_COSINE
    tflite_io_type: str | None = None  # None: the target's
    int8: str = "repair"  # repair.MODES: repair (may ship mixed precision), strict, off


@dataclass
class ExportResult:
    card: Card
    warnings: list[str] = field(default_factory=list)


def image_sets(opts: ExportOptions, prep: Preprocessing) -> tuple[ImageSet, ImageSet]:
    """Calibration set and a validation set disjoint from it."""
    if opts.calib is None:
        calib = synthetic_images(prep, SYNTHETIC_CALIBRATION_SIZE, SYNTHETIC_CALIBRATION_SEED)
    else:
        calib = load_images(opts.calib, prep, opts.calib_size)
    if opts.eval is not None:
        return calib, load_images(opts.eval, prep, opts.calib_size)
    if opts.calib is None:
        return calib, synthetic_images(prep, SYNTHETIC_VALIDATION_SIZE, SYNTHETIC_VALIDATION_SEED)
    if len(calib.inputs) < 5:
        raise UserError(f"{opts.calib}: {len(calib.inputs)} images are too few to hold some "
                        "out for validation (need ≥ 5, or pass --eval DIR)")
    return calib.split()


def read_labels(path: Path | None, num_classes: int) -> list[str] | None:
    if path is None:
        return None
    try:
        labels = [line.strip() for line in path.read_text("utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"labels file {path}: cannot read it ({e.__class__.__name__})") from None
    if len(labels) != num_classes:
        raise UserError(f"labels file {path}: {len(labels)} labels for {num_classes} classes")
    return labels


def tflite_available() -> str | None:
    """None if the TFLite toolchain imports, else what to install."""
    import importlib.util
    for module in ("litert_torch", "ai_edge_quantizer", "ai_edge_litert", "mediapipe"):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return (f"--formats tflite needs the TFLite toolchain ({module} is not installed): "
                    "pip install 'edgeexport[full]'")
    return None


NO_CALIB_WARNING = ("no --calib: int8 calibrated on SYNTHETIC images; accuracy on real images "
                    "is not validated")
NO_WEIGHTS_WARNING = ("no --weights: random network; its int8 drift is reported but not "
                      "enforced (untrained networks amplify rounding noise, trained ones do not)")



def run_export(opts: ExportOptions,
               on_stage: Callable[[str], None] = lambda stage: None,
               on_warning: Callable[[str], None] = lambda warning: None) -> ExportResult:
    """One variant exported, validated and described into ``opts.out``; one export at a time
    per directory (a second fails at once, naming the first: their files would interleave).
    ``on_warning``: each warning as soon as it is known, before the work it explains (those
    the inputs decide once the inputs have been read without error); the card has them all."""
    with exclusive(opts.out, "export"):
        return _run_export(opts, on_stage, on_warning)


def _run_export(opts: ExportOptions, on_stage: Callable[[str], None],
                on_warning: Callable[[str], None]) -> ExportResult:
    import torch

    from edgeexport.core.runtimes import run_onnx
    from edgeexport.export.onnx_export import export_onnx
    from edgeexport.export.prepare import fold_batchnorm, prepare_model
    from edgeexport.int8.activation_tails import activation_tails, describe
    from edgeexport.int8.quantize_onnx import quantize_onnx, quantized_op_counts
    from edgeexport.int8.stage import Int8Stage

    unknown = set(opts.formats) - set(FORMATS)
    if unknown or not opts.formats:
        raise UserError(f"--formats: unknown {', '.join(sorted(unknown)) or '(empty)'} "
                        f"(known: {', '.join(FORMATS)})")
    v = opts.variant
    fam = family(v.family)
    labels = read_labels(opts.labels, v.num_classes)
    prep = Preprocessing.for_variant(v.resolution, fam.mean, fam.std)
    tflite_missing = tflite_available() if "tflite" in opts.formats else None
    warnings = []

    on_stage("calibration images")
    calib, held_out = image_sets(opts, prep)
    if calib.synthetic:
        warnings.append(NO_CALIB_WARNING)
    on_stage("model")
    model, weights_info = prepare_model(v, opts.weights, calib.inputs)
    analysis = analyze(v, model)
    with torch.no_grad():
        reference = model(torch.from_numpy(held_out.inputs)).numpy()
    exportable = fold_batchnorm(model)

    enforce_int8 = opts.weights is not None
    if not enforce_int8:
        warnings.append(NO_WEIGHTS_WARNING)

    opts.out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=opts.out))

    def with_tails(call):
        """``call()``; a drift refused on the way is told with the heaviest-tailed layers."""
        try:
            return call()
        except ValidationError as drift:
            tails = activation_tails(staging / "model.fp32.onnx", calib.inputs)
            raise ValidationError(f"{drift}; {describe(tails)}") from None

    def check_int8(comparison):
        if not enforce_int8:
            return comparison
        return with_tails(lambda: require_int8_match(comparison, opts.min_cosine))

    files: dict[str, Path] = {}
    validation: dict = {}
    try:
        with reporting_full_disk(opts.out):  # "no space left on DEVICE writing PATH"
            for warning in warnings:  # the inputs are read: before the work they explain
                on_warning(warning)
            on_stage("onnx fp32")
            fp32 = export_onnx(exportable, analysis, staging / "model.fp32.onnx")
            fp32_out = run_onnx(fp32, held_out.inputs)
            validation[ONNX_FP32_VS_PYTORCH] = require_fp32_match(compare(
                "pytorch fp32", reference, "model.fp32.onnx", fp32_out, held_out.labels))
            on_stage("onnx int8")
            int8_stage = Int8Stage(model, analysis, staging, calib.inputs, opts.min_cosine,
                                   opts.int8, enforce_int8, opts.calib_method)
            int8, onnx_int8, onnx_plan = with_tails(lambda: int8_stage.onnx(
                lambda plan: quantize_onnx(fp32, staging / "model.int8.onnx", calib.inputs,
                                           opts.target.onnx_activation_type,
                                           opts.target.onnx_weight_type, plan.ranges, plan),
                lambda path: compare("model.fp32.onnx", fp32_out, "model.int8.onnx",
                                     run_onnx(path, held_out.inputs), held_out.labels)))
            validation[ONNX_INT8_VS_ONNX_FP32] = check_int8(onnx_int8)
            files.update({"model.fp32.onnx": fp32, "model.int8.onnx": int8})
            # Per-layer static costs beside the models: `profile` joins them on the device.
            write_json(staging / ANALYSIS, analysis.to_json())
            files[ANALYSIS] = staging / ANALYSIS
            tflite_info = app_info = None
            if "tflite" in opts.formats and tflite_missing is None:
                from edgeexport.app.app_file import app_description
                from edgeexport.export.tflite_export import export_tflite
                on_stage("tflite")
                tflite_info = export_tflite(exportable, prep, calib, held_out, reference, staging,
                                            opts.tflite_io_type or opts.target.tflite_io_type,
                                            check_int8,
                                            app_description(v, labels),
                                            lambda *fns: with_tails(
                                                lambda: int8_stage.tflite(*fns)),
                                            lambda *fns: with_tails(
                                                lambda: int8_stage.app(*fns)))
                files.update(tflite_info.pop("files"))
                validation.update(tflite_info.pop("validation"))
                app_info = AppCard(app=tflite_info.pop("app"),
                                   runtime_requirements=tflite_info.pop("runtime_requirements"))
            on_stage("int8 error map")
            error_map = int8_stage.error_map(fp32, int8, tflite_info is not None)
            repair_summary = int8_stage.summary()
            for record in repair_summary.formats:
                if record.mixed:
                    warnings.append(
                        f"mixed precision: {SHIPPED[record.format]} keeps {len(record.kept)} "
                        f"layer(s) at 16-bit activations"
                        + (" and its input/output at 16 bits inside an 8-bit interface"
                           if record.wide_io else "")
                        + (f", {len(record.float_layers)} of them in float"
                           if record.float_layers else "") + " (full int8 reached cosine "
                        f"{max(a.cosine_mean for a in record.attempts if not a.kept):.4f} < "
                        f"{opts.min_cosine}); --int8 strict refuses instead")
                    on_warning(warnings[-1])
            on_stage("card")
            card = Card(
                variant=v, params=analysis.total_params, macs=analysis.total_macs,
                weights=weights_info,
                input=ModelInput(name="input", layout="NCHW", dtype="float32",
                                 shape=[1, 3, v.resolution, v.resolution],
                                 preprocessing=prep.to_json()),
                output=ModelOutput(name="logits", shape=[1, v.num_classes], dtype="float32",
                                   meaning="unnormalised class scores (apply softmax for "
                                           "probabilities)"),
                labels=labels,
                onnx_int8=OnnxInt8Info(
                    format="QDQ",
                    weights=f"per-channel symmetric {opts.target.onnx_weight_type}" + (
                        ", 7-bit range (reduce_range: no saturation in x86 U8S8 kernels)"
                        if opts.target.onnx_activation_type == "uint8" else "")
                    + f", {rounding_note(onnx_plan.weight_rounding)}",
                    activations=opts.target.onnx_activation_type,
                    activation_type_source=opts.target.onnx_quant_source,
                    input_quantization=_first_quantize_params(int8),
                    quantized_ops_here=quantized_op_counts(int8)),
                tflite=TfliteInfo(**tflite_info) if tflite_info else None,
                int8_error_map=error_map, int8_repair=repair_summary,
                calibration=ImageSetInfo(**calib.summary(), method=onnx_plan.ranges),
                validation_set=ImageSetInfo(**held_out.summary()), validation=validation,
                tolerances=Tolerances(fp32_max_abs_diff_relative=FP32_ATOL_REL,
                                      int8_min_mean_cosine=opts.min_cosine,
                                      int8_min_top1_agreement=INT8_MIN_TOP1_AGREEMENT,
                                      int8_enforced=enforce_int8),
                target=opts.target.name, tools=tool_versions(), warnings=warnings,
                app_tflite=app_info)
            for name, path in sorted(files.items()):
                path.replace(opts.out / name)
            card.files = {name: FileEntry(**file_entry(opts.out / name)) for name in sorted(files)}
            if int8_stage.costs:
                write_record(opts.out, RepairCosts(list(int8_stage.costs)))
            else:
                (opts.out / RepairCosts.FILE).unlink(missing_ok=True)
            write_record(opts.out, card)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if tflite_missing:
        raise UserError(f"{tflite_missing} (ONNX files were written to {opts.out})")
    return ExportResult(card, warnings)


def _first_quantize_params(int8_path: Path) -> dict | None:
    """Scale and zero point the int8 ONNX model applies to its float input."""
    import onnx
    from onnx import numpy_helper
    proto = onnx.load(str(int8_path))
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    input_name = proto.graph.input[0].name
    for node in proto.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] == input_name:
            return {"scale": float(np.asarray(inits[node.input[1]]).item()),
                    "zero_point": int(np.asarray(inits[node.input[2]]).item()),
                    "dtype": str(np.asarray(inits[node.input[2]]).dtype)}
    return None
