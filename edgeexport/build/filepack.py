"""Files that travel between machines as bytes with their sha256, checked on arrival.

A Dask worker may run on another host: it returns an export's files, and receives the models
it measures, as a FilePack, never as paths into a file system the other side cannot see.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from edgeexport.core.fileio import safe_relative, write_bytes


class TransferError(Exception):
    """A file arrived with another hash than the one sent with it, or under an unsafe name."""


@dataclass(frozen=True)
class FilePack:
    """Relative name (POSIX) → (sha256, bytes)."""
    files: dict[str, tuple[str, bytes]]

    @classmethod
    def of(cls, root: Path, names: Iterable[str]) -> "FilePack":
        files = {}
        for name in names:
            data = safe_relative(root, name).read_bytes()
            files[name] = (hashlib.sha256(data).hexdigest(), data)
        return cls(files)

    @classmethod
    def of_directory(cls, root: Path) -> "FilePack":
        """Every regular file under root, hidden ones (staging leftovers) excepted."""
        names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                       if p.is_file() and not any(part.startswith(".")
                                                  for part in p.relative_to(root).parts))
        return cls.of(root, names)

    def check(self) -> None:
        """Every name safe (no absolute path, no '..'), every hash matching its bytes."""
        for name, (digest, data) in self.files.items():
            try:
                safe_relative(Path("."), name)
            except ValueError as e:
                raise TransferError(str(e)) from None
            if hashlib.sha256(data).hexdigest() != digest:
                raise TransferError(f"{name}: sha256 of the received bytes does not match "
                                    "the one sent with them")

    def write(self, root: Path) -> None:
        """Check everything first, then write each file atomically under root."""
        self.check()
        for name, (_, data) in self.files.items():
            write_bytes(safe_relative(root, name), data)
