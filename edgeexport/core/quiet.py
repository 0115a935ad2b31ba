"""Third-party log lines kept off the terminal unless ``--verbose``.

TensorFlow/LiteRT (``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``), absl
(``WARNING: All log messages before absl::InitializeLog()…``), oneDNN (``I0000 … oneDNN custom
operations are on…``) and onnxruntime write from C++ straight to file descriptor 2, where no
Python setting reaches them. So the process's fd 2 is pointed at a buffer (an unlinked
temporary file) and ``sys.stderr`` at a duplicate of the real stderr: edgeexport's own lines
(click, rich) reach the terminal, the libraries' lines the buffer. Processes started from here
(a build's export workers) inherit fd 2, so they write into the same buffer. Python warnings
and log records of the libraries go to the buffer too. The buffer is replayed when the command
fails with an internal error; with ``--verbose`` nothing is redirected.
"""
from __future__ import annotations

import io
import logging
import os
import sys
import tempfile
import warnings

VERBOSE_FLAG = "--verbose"
VERBOSE_HELP = ("show third-party libraries' log lines (TensorFlow/LiteRT, absl, oneDNN, "
                "onnxruntime, torch); hidden by default")
REPLAYED_LINES = 40

_buffer = None  # the unlinked file fd 2 points at while silenced


def wants_verbose(argv: list[str]) -> bool:
    """``--verbose`` anywhere among the options (before a ``--``), or EDGEEXPORT_VERBOSE set."""
    if os.environ.get("EDGEEXPORT_VERBOSE", "") not in ("", "0"):
        return True
    args = argv[:argv.index("--")] if "--" in argv else argv
    return VERBOSE_FLAG in args


def silence() -> None:
    """Point fd 2 at the buffer and ``sys.stderr`` at the real stderr (once per process)."""
    global _buffer
    if _buffer is not None:
        return
    try:
        sys.stderr.flush()
        real = os.dup(2)
        buffer = tempfile.TemporaryFile(prefix="edgeexport-log-")
        os.dup2(buffer.fileno(), 2)
    except (OSError, AttributeError, ValueError):
        return  # no fd 2 to redirect (an embedding host): leave it as it is
    _buffer = buffer
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    sys.stderr = io.TextIOWrapper(io.FileIO(real, "w", closefd=True), encoding=encoding,
                                  errors="backslashreplace", line_buffering=True,
                                  write_through=True)
    captured = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                errors="backslashreplace", line_buffering=True)

    def to_buffer(message, category, filename, lineno, file=None, line=None):
        captured.write(warnings.formatwarning(message, category, filename, lineno, line))

    warnings.showwarning = to_buffer
    logging.lastResort = logging.StreamHandler(captured)
    logging.lastResort.setLevel(logging.WARNING)


def captured_tail(lines: int = REPLAYED_LINES) -> list[str]:
    """The last ``lines`` lines the libraries wrote while silenced (none if not silenced)."""
    if _buffer is None:
        return []
    try:
        _buffer.seek(0)
        text = _buffer.read().decode("utf-8", "backslashreplace")
    except (OSError, ValueError):
        return []
    return text.splitlines()[-lines:]
