"""The ``edgeexport`` command: one module per command family, shared options in ``options``.
Heavy imports (torch, onnx) happen inside the commands that need them, so ``profile`` works on
a device with only ``edgeexport[device]`` installed."""
from edgeexport.cli import process_defaults  # noqa: F401 (first: before numpy or torch loads)
from edgeexport.cli import (build, check_runtime, device, estimate,  # noqa: F401 (register)
                            export, models, profile, pull, quant_report)
from edgeexport.cli.group import add_verbose_everywhere, main

add_verbose_everywhere()

__all__ = ["main"]
