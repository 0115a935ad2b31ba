"""Versions of the tools that shape an artifact: recorded in cards, part of cache keys."""
from __future__ import annotations

from importlib import metadata

TOOLS = ("edgeexport", "torch", "onnx", "onnxscript", "onnxsim", "onnxruntime",
         "litert-torch", "ai-edge-quantizer", "ai-edge-litert", "numpy", "pillow")


def tool_versions() -> dict[str, str]:
    versions = {}
    for name in TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
