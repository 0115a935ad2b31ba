"""The board's content-addressed model cache: ``~/.cache/edgeexport/models/<sha256>/<name>``.

Runs on the board (``edgeexport device cache``). The host copies a file to
``<sha256>/.<name>.partial`` and asks the board to admit it: the board hashes it itself and
renames it into place only if the hash is the address, so a file in the cache is always the
file it is named after, and each file crosses the network once.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from edgeexport.core.errors import UserError
from edgeexport.core.fileio import sha256, user_cache_dir

SHA256 = re.compile(r"^[0-9a-f]{64}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
CACHED, ADMITTED, MISSING = "cached", "admitted", "missing"


def cache_root() -> Path:
    return user_cache_dir() / "models"


def parse_entry(entry: str) -> tuple[str, str]:
    """``<sha256>/<file name>`` → (digest, name); anything else (``..``, slashes) refused."""
    digest, _, name = entry.partition("/")
    if not SHA256.match(digest) or not NAME.match(name) or name.startswith(".."):
        raise UserError(f"not a cache entry (<sha256>/<file name>): {entry!r}")
    return digest, name


def partial_name(name: str) -> str:
    return f".{name}.partial"


def _verified(path: Path, digest: str) -> bool:
    return path.is_file() and sha256(path) == digest


def settle(entries: list[str], root: Path | None = None) -> dict[str, str]:
    """Per entry: ``cached`` (present, hash checked), ``admitted`` (a copied ``.partial`` whose
    hash matches, now renamed into place) or ``missing`` (its directory made ready for a copy;
    a file or partial that does not hash to its address is deleted)."""
    root = root or cache_root()
    status = {}
    for entry in entries:
        digest, name = parse_entry(entry)
        directory = root / digest
        final, partial = directory / name, directory / partial_name(name)
        if _verified(final, digest):
            status[entry] = CACHED
        elif _verified(partial, digest):
            os.replace(partial, final)
            status[entry] = ADMITTED
        else:
            final.unlink(missing_ok=True)
            partial.unlink(missing_ok=True)
            directory.mkdir(parents=True, exist_ok=True)
            status[entry] = MISSING
    return status
