"""The board in a build's reports: where the measurements were taken, the board's state during
each variant's runs, and the target estimate's error against the board's own figures.

The estimate is compared with LiteRT int8 on the board (the cost model predicts a TFLite
runtime), p50 of the board's runs; the error is (estimated − measured) / measured.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeexport.contracts.artifacts import COMPARED

Row = Any  # report.Row (report reads this module: no import back)


@dataclass(frozen=True)
class Place:
    """Where a build measured: ``label`` for column heads ("here", "on board pi@rpi"),
    ``description`` for notes and captions."""
    label: str
    description: str
    device: str | None


def place(rows: list[Row], here: str) -> Place:
    for row in rows:
        for m in row.profile.measurements.values():
            device = m.where.get("device")
            if device and m.board is not None:
                return Place(f"on board {device}", f"board {device} ({m.board.summary()})",
                             device)
    return Place("here", here, None)


def board_state(row: Row) -> str:
    """The board's governor, clock, temperature and throttling when this variant's LiteRT
    int8 runs started."""
    m = row.profile.measurements.get(COMPARED)
    if m is None or m.board is None:
        return "–"
    f = m.board
    parts = [f"{f.clock_mhz:.0f} MHz" if f.clock_mhz else "clock n/a",
             f"{f.temperature_c:.0f} °C" if f.temperature_c is not None else "temp n/a",
             f"throttled {hex(f.throttled)}" if f.throttled is not None else "throttling n/a"]
    if f.governor:
        parts.insert(0, f.governor)
    return ", ".join(parts)


def columns(rows: list[Row], target_name: str) -> tuple[list[str], list[list[str]]]:
    """Extra table columns for a build measured on a board."""
    head = ["LiteRT int8 p90 on board (ms)", "board state (LiteRT int8 runs)",
            f"est. int8 {target_name} error vs board"]
    body = []
    for row in rows:
        lite = row.profile.measurements.get(COMPARED)
        error = row.head.estimated_int8_error_vs_board
        body.append([f"{lite.end_to_end.p90_ms:.3f}" if lite else "–", board_state(row),
                     "–" if error is None else f"{100 * error:+.1f}%"])
    return head, body


def note(rows: list[Row]) -> str:
    """How the board's figures were taken (threads, runs), from the records."""
    m = next(iter(rows[0].profile.measurements.values()))
    e2e = m.end_to_end
    return (f"MEASURED on board {m.where['device']} by its own edgeexport over SSH: "
            f"{e2e.threads} thread(s), p50/p90 of {e2e.runs} runs after {e2e.warmup} "
            "warm-up; board facts recorded with every measurement (profile.json → board). "
            "Estimate error: (estimate − LiteRT int8 p50 on the board) / measured.")
