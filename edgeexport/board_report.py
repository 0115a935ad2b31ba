"""The board in a build's reports: where the measurements were taken, the board's state during
each variant's runs, and the target estimate's error against the board's own figures.

The estimate is compared with LiteRT int8 on the board (the cost model predicts a TFLite
runtime), p50 of the board's runs; the error is (estimated − measured) / measured.
"""
from __future__ import annotations

from dataclasses import dataclass

from edgeexport.board_facts import BoardFacts

COMPARED = "litert_int8"


@dataclass(frozen=True)
class Place:
    """Where a build measured: ``label`` for column heads ("here", "on board pi@rpi"),
    ``description`` for notes and captions."""
    label: str
    description: str
    device: str | None


def place(rows: list[dict], here: str) -> Place:
    for row in rows:
        for report in row["measured"].values():
            device = report.get("where", {}).get("device")
            if device:
                facts = BoardFacts.from_json(report["board"])
                return Place(f"on board {device}", f"board {device} ({facts.summary()})", device)
    return Place("here", here, None)


def board_state(row: dict) -> str:
    """The board's clock, temperature and throttling when this variant was measured."""
    report = row["measured"].get(COMPARED) or row["measured"].get("onnxruntime_int8")
    if not report or "board" not in report:
        return "–"
    f = BoardFacts.from_json(report["board"])
    parts = [f"{f.clock_mhz:.0f} MHz" if f.clock_mhz else "clock n/a",
             f"{f.temperature_c:.0f} °C" if f.temperature_c is not None else "temp n/a",
             f"throttled {hex(f.throttled)}" if f.throttled is not None else "throttling n/a"]
    if f.governor:
        parts.insert(0, f.governor)
    return ", ".join(parts)


def estimate_error(row: dict) -> float | None:
    """(ESTIMATED int8 − MEASURED LiteRT int8 p50 on the board) / measured."""
    measured = row["measured"].get(COMPARED)
    estimated = row["estimates"].get("int8")
    if not measured or not estimated or not measured.get("where", {}).get("device"):
        return None
    m = measured["end_to_end"]["p50_ms"]
    return (estimated["end_to_end"]["latency_ms"] - m) / m


def columns(rows: list[dict], target_name: str) -> tuple[list[str], list[list[str]]]:
    """Extra table columns for a build measured on a board."""
    head = ["LiteRT int8 p90 on board (ms)", "board state (LiteRT int8 runs)",
            f"est. int8 {target_name} error vs board"]
    body = []
    for row in rows:
        lite = row["measured"].get(COMPARED)
        error = estimate_error(row)
        body.append([f"{lite['end_to_end']['p90_ms']:.3f}" if lite else "–", board_state(row),
                     "–" if error is None else f"{100 * error:+.1f}%"])
    return head, body


def note(rows: list[dict]) -> str:
    """How each board figure was taken (threads, runs, runtimes), from the reports."""
    report = next(iter(rows[0]["measured"].values()))
    e2e = report["end_to_end"]
    return (f"MEASURED on board {report['where']['device']} by its own edgeexport over SSH: "
            f"{e2e['threads']} thread(s), p50/p90 of {e2e['runs']} runs after {e2e['warmup']} "
            f"warm-up; board facts recorded with every measurement (profile.json → board). "
            "Estimate error: (estimate − LiteRT int8 p50 on the board) / measured.")
