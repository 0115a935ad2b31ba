"""Static analyses of registry networks (no weights), kept on disk between commands.

An analysis is a function of the variant and of the code that builds and counts the network
and nothing else, so it is kept under a digest of that code (the network definitions, the
counting, the record) and of the torch version. Made fresh, it costs the torch import (~2 s)
and a forward pass (0.1-0.4 s per network); read back, a few milliseconds. A build's report
estimates 19 reference networks, `fit-latency` fits on as many, `estimate` and `summary` read
one. Where: $EDGEEXPORT_CACHE_DIR, else $XDG_CACHE_HOME/edgeexport, else ~/.cache/edgeexport;
an unreadable entry is made again, an unwritable directory only costs the speed.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
from pathlib import Path

from edgeexport.contracts.variant import Analysis, Variant, check_variant
from edgeexport.core.fileio import user_cache_dir, write_json

# The modules an analysis depends on (their source is hashed into the cache's directory).
SHAPING = ("edgeexport.analysis.count", "edgeexport.contracts.variant", "edgeexport.models.registry",
           "edgeexport.models.layers", "edgeexport.models.mobilenet_v1",
           "edgeexport.models.mobilenet_v2", "edgeexport.models.mobilenet_v3")


def cache_root() -> Path:
    return Path(os.environ.get("EDGEEXPORT_CACHE_DIR") or user_cache_dir())


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:  # nothing can be made: analyze says why
        torch_version = "none"
    digest = hashlib.sha256(torch_version.encode())
    for name in SHAPING:
        digest.update(name.encode() + Path(importlib.util.find_spec(name).origin).read_bytes())
    return digest.hexdigest()[:16]


def cached_analysis(variant: Variant) -> Analysis:
    """``analysis.analyze(variant)`` of a freshly built network, from the cache when it holds
    it (UserError for a variant no network can be built at)."""
    check_variant(variant)  # the entry's file name is made of the variant's fields
    path = (cache_root() / "analyses" / code_digest()
            / f"{variant.id}_{variant.num_classes}.json")
    try:
        cached = Analysis.from_json(json.loads(path.read_text("utf-8")))
        if cached.variant == variant:
            return cached
    except (OSError, ValueError):  # absent, unreadable or of another schema: made again
        pass
    from edgeexport.analysis.count import analyze
    analysis = analyze(variant)
    try:
        write_json(path, analysis.to_json())  # a temp file renamed: readers see all or nothing
    except OSError:
        pass
    return analysis
