"""Read an export directory's int8 error map and repair record (card.json), with the per-layer
latency of its profile.json when the directory was profiled."""
from __future__ import annotations

import json
from pathlib import Path

from edgeexport.errors import UserError
from edgeexport.quant_error import ErrorMap, profile_latency
from edgeexport.repair import RepairSummary

CARD = "card.json"


def load_quant_report(directory: Path) -> dict:
    card_path = directory / CARD
    if not card_path.is_file():
        raise UserError(f"{directory}: no {CARD} (is it an export directory?)")
    try:
        card = json.loads(card_path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{card_path}: not a readable card ({e.__class__.__name__})") from None
    if "int8_error_map" not in card:
        raise UserError(f"{card_path}: no int8 error map (exported by an older edgeexport; "
                        "export again)")
    emap = ErrorMap.from_json(card["int8_error_map"])
    profiled = profile_latency(directory)
    if profiled is not None:
        emap.with_latency(*profiled)
    repair = RepairSummary.from_json(card["int8_repair"])
    return {"directory": str(directory), "variant_id": card.get("variant_id"),
            "int8_error_map": emap.to_json(), "int8_repair": repair.to_json()}
