"""The ``edgeexport`` command: one module per command family, shared options in ``options``.
Heavy imports (torch, onnx) happen inside the commands that need them, so ``profile`` works on
a device with only ``edgeexport[device]`` installed."""
from edgeexport.cli import export, latency, pull, sweep, zoo  # noqa: F401  (register the commands)
from edgeexport.cli.group import main

__all__ = ["main"]
