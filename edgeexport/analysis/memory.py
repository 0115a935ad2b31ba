"""Will a variant's export fit in this machine's memory? Asked before any work starts, so that
``--alpha 100`` is one line at once, not the kernel's OOM killer twenty minutes later.

The need is a lower bound: the parameters counted on the meta device (no memory taken), held
as fp32 at least ``WEIGHT_COPIES`` times over an export (the PyTorch model, its BatchNorm-folded
copy, the ONNX graph, the converter's copy), plus the interpreter and libraries. A variant
refused by it cannot be exported here; one that passes may still be large.
"""
from __future__ import annotations

from pathlib import Path

from edgeexport.contracts.variant import Variant
from edgeexport.core.errors import UserError

WEIGHT_COPIES = 4
BASE_BYTES = 512 * 2**20  # python, torch, onnxruntime, the TFLite converter loaded


def export_memory_need(variant: Variant) -> tuple[int, int]:
    """(bytes an export of ``variant`` needs at least, bytes of its fp32 weights)."""
    from edgeexport.analysis.count import analyze
    analysis = analyze(variant)  # on the meta device
    weights = 4 * analysis.total_params
    return BASE_BYTES + WEIGHT_COPIES * weights, weights


def machine_memory() -> int | None:
    """Bytes of memory this process may use: the machine's, or its cgroup's limit if lower."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            found.append(int(text))
    return min(found) if found else None


def _gb(n: int) -> str:
    return f"{n / 1e9:,.1f} GB" if n < 1e12 else f"{n / 1e12:,.1f} TB"


def require_memory(variants: list[Variant], available: int | None = None) -> None:
    """UserError naming the first variant whose export cannot fit in this machine's memory."""
    available = machine_memory() if available is None else available
    if available is None:
        return
    for variant in variants:
        need, weights = export_memory_need(variant)
        if need > available:
            raise UserError(
                f"{variant.id}: exporting needs at least {_gb(need)} of memory ({_gb(weights)} "
                f"of fp32 weights, held {WEIGHT_COPIES} times), this machine has "
                f"{_gb(available)}; choose a smaller --alpha")
