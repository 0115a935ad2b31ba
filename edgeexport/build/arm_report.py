"""A variant's ARM check (card.json → ``arm``, edgeexport.app.arm_check) as the report's
variant view and the build's terminal summary show it: per emulated board, per file, its
agreement with this machine's outputs and, for ONNX, the optimised graph's op counts on ARM
and here. Always labelled with what it is: emulated (board, core), no time."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeexport.contracts.arm import ArmCheck, ArmFile


def _ops(f: ArmFile, side: str) -> str | None:
    total = f.compute_ops(side)
    return None if total is None else f"{total['quantized']} quantized / {total['float']} float"


def title(check: ArmCheck) -> str:
    """What the check is and where it ran, in one line."""
    return (f"ARM check, EMULATED {check.board} ({check.core}; onnxruntime "
            f"{check.arm.get('onnxruntime', '?')}, LiteRT {check.arm.get('litert', '?')}) "
            f"against this machine ({check.x86.get('machine', '?')}), {check.images}: "
            f"{check.note}")


def view(check: ArmCheck) -> dict[str, Any]:
    """The check as the page's variant view shows it (a table row per file)."""
    return {"title": title(check), "passed": check.passed, "failures": check.failures,
            "files": [{"file": f.file, "runtime": f.runtime, "cosine_mean": f.cosine_mean,
                       "top1_agreement": f.top1_agreement, "bit_identical": f.bit_identical,
                       "max_abs_diff": f.max_abs_diff, "ops_arm": _ops(f, "arm"),
                       "ops_x86": _ops(f, "x86"),
                       "result": ("pass" if f.passed else "FAIL")
                       + ("" if f.enforced else " (not enforced)")}
                      for f in check.files]}


def summary_line(variant_id: str, check: ArmCheck) -> str:
    """One terminal line: the weakest file's agreement and the int8 ONNX graph on ARM."""
    files = check.files
    worst_top1 = min(f.top1_agreement for f in files)
    worst_bits = min(f.bit_identical for f in files)
    int8 = next((f for f in files if f.file == "model.int8.onnx"), None)
    ops = "" if int8 is None or int8.ops_arm is None else \
        f"; int8 ONNX ops on ARM {_ops(int8, 'arm')} (here {_ops(int8, 'x86')})"
    return (f"{variant_id}: ARM check EMULATED on {check.board} ({check.core}), "
            f"{len(files)} file(s): top-1 agreement ≥ {worst_top1:g}, bit-identical ≥ "
            f"{worst_bits:.1%}{ops}; " + ("passed" if check.passed else "FAILED"))


def summary_lines(root: Path, variant_ids: list[str], board: str) -> list[str]:
    """The terminal summary's line per variant whose card carries ``board``'s check."""
    from edgeexport.contracts.artifacts import Card, read_record
    lines = []
    for vid in variant_ids:
        check = read_record(root / vid, Card).arm.get(board)
        if check is not None and check.files:
            lines.append(summary_line(vid, check))
    return lines
