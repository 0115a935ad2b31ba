"""Embed TFLite Metadata (the schema MediaPipe Tasks, the TFLite Task Library and Android
Studio's ML Model Binding read) into an image classifier with uint8 pixel input.

Written with the schema's generated object API shipped by pip `mediapipe`
(`mediapipe/tasks/metadata/metadata_schema_py_generated.py`), not with its writer: every
mediapipe release that installs beside our pins (≥ 0.10.30: numpy 2, no protobuf pin) lacks the
compiled `_pywrap_metadata_version` the writer imports, and 0.10.21, the last that has it, needs
numpy < 2 and protobuf < 5. The layout follows the metadata format: a `ModelMetadata`
flatbuffer (identifier "M001") in a model buffer named by a `metadata` entry
"TFLITE_METADATA", and associated files (labels) as a zip archive appended to the model
bytes, which is how the metadata populator packs them.
"""
from __future__ import annotations

import importlib.util
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import flatbuffers
import numpy as np

METADATA_NAME = b"TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
LABELS_FILE = "labels.txt"
# Oldest metadata parser that reads every field written here: the version history in
# metadata_schema.fbs (mediapipe 1.2.3's copy, lines 52-71) adds nothing used here after 1.0.0
# (1.0.1 VOCABULARY files, 1.1.0 BertTokenizer, 1.2.0 tensor groups, 1.3.0 audio, 1.4.x file
# versions, 1.5.0 CustomMetadata).
MIN_PARSER_VERSION = "1.0.0"
# A fixed date for the zip entries: same inputs → same bytes out.
ZIP_DATE = (2020, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class ModelDescription:
    name: str
    description: str
    version: str
    author: str
    license: str
    labels: tuple[str, ...] | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def metadata_schema():
    """The generated metadata schema module, loaded from the mediapipe wheel by path: importing
    the `mediapipe` package itself pulls OpenCV and ~600 modules (7 s) we do not need."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("mediapipe is not installed: pip install 'edgeexport[full]'")
    source = Path(next(iter(spec.submodule_search_locations))) / "tasks" / "metadata" / \
        "metadata_schema_py_generated.py"
    module_spec = importlib.util.spec_from_file_location("_tflite_metadata_schema", source)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def model_metadata(d: ModelDescription, num_classes: int) -> bytes:
    fb = metadata_schema()
    image = fb.TensorMetadataT()
    image.name = "image"
    image.description = (
        f"RGB image, uint8 pixels 0-255, NHWC. Feed the pixels as they are: the model "
        f"normalises them itself, per channel, (pixel/255 - mean)/std with mean "
        f"{list(d.mean)} and std {list(d.std)}.")
    image.content = fb.ContentT()
    image.content.contentPropertiesType = fb.ContentProperties.ImageProperties
    image.content.contentProperties = fb.ImagePropertiesT()
    image.content.contentProperties.colorSpace = fb.ColorSpaceType.RGB
    # The tensor receives the pixels unchanged: identity normalisation, range 0..255.
    identity = fb.ProcessUnitT()
    identity.optionsType = fb.ProcessUnitOptions.NormalizationOptions
    identity.options = fb.NormalizationOptionsT()
    identity.options.mean, identity.options.std = [0.0], [1.0]
    image.processUnits = [identity]
    image.stats = fb.StatsT()
    image.stats.min, image.stats.max = [0.0], [255.0]

    scores = fb.TensorMetadataT()
    scores.name = "logits"
    scores.description = (f"Class scores for {num_classes} classes: LOGITS (unnormalised, no "
                          "softmax applied), uint8; dequantize with the tensor's scale and "
                          "zero point, apply softmax for probabilities. Higher is more likely.")
    scores.content = fb.ContentT()
    scores.content.contentPropertiesType = fb.ContentProperties.FeatureProperties
    scores.content.contentProperties = fb.FeaturePropertiesT()
    if d.labels is not None:
        labels = fb.AssociatedFileT()
        labels.name = LABELS_FILE
        labels.description = "Class names, one per line, in output order."
        labels.type = fb.AssociatedFileType.TENSOR_AXIS_LABELS
        scores.associatedFiles = [labels]

    graph = fb.SubGraphMetadataT()
    graph.inputTensorMetadata, graph.outputTensorMetadata = [image], [scores]
    model = fb.ModelMetadataT()
    model.name, model.description = d.name, d.description
    model.version, model.author, model.license = d.version, d.author, d.license
    model.subgraphMetadata = [graph]
    model.minParserVersion = MIN_PARSER_VERSION
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=METADATA_IDENTIFIER)
    return bytes(builder.Output())


def embed_metadata(model_bytes: bytes, d: ModelDescription) -> tuple[bytes, dict]:
    """Model flatbuffer → the same model with metadata (+ labels archive). Returns the bytes and
    a summary for card.json."""
    from ai_edge_litert import schema_py_generated as schema

    from edgeexport.tflite.edit import add_buffer, pack, unpack
    model = unpack(model_bytes)
    graph = model.subgraphs[0]
    num_classes = int(graph.tensors[graph.outputs[0]].shape[-1])
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = add_buffer(model, np.frombuffer(model_metadata(d, num_classes), np.uint8))
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME] + [entry]
    data = pack(model, len(model_bytes))
    if d.labels is not None:
        data = _append_files(data, {LABELS_FILE: "\n".join(d.labels) + "\n"})
    return data, {
        "format": "TFLite Metadata (metadata_schema.fbs), min parser version "
                  f"{MIN_PARSER_VERSION}",
        "name": d.name, "version": d.version, "author": d.author, "license": d.license,
        "input": "ImageProperties RGB; uint8 pixels 0-255, NormalizationOptions identity "
                 "(mean 0, std 1): the per-channel normalisation is inside the model",
        "output": "logits (no softmax)",
        "labels_file": LABELS_FILE if d.labels is not None else None,
    }


def _append_files(model_bytes: bytes, files: dict[str, str]) -> bytes:
    """Append a zip archive holding ``files`` to the model bytes (offsets counted from the start
    of the model, so the whole file is also a valid zip)."""
    stream = io.BytesIO(model_bytes)
    stream.seek(0, io.SEEK_END)
    with zipfile.ZipFile(stream, "a", compression=zipfile.ZIP_STORED) as archive:
        for name, text in sorted(files.items()):
            archive.writestr(zipfile.ZipInfo(name, ZIP_DATE), text.encode("utf-8"))
    return stream.getvalue()
