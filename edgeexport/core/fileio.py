"""Atomic writes and hashes: nothing half-written, every artifact verifiable; and where
edgeexport keeps its caches."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from edgeexport.core.errors import UserError


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it over ``path`` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with reporting_full_disk(path):
            yield tmp_path
            os.chmod(tmp_path, 0o666 & ~_umask())
            os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


class DiskFull(UserError):
    """No space left on the filesystem being written: which one, and which file."""

    exit_code = 1


def is_disk_full(e: BaseException) -> bool:
    """ENOSPC (or EDQUOT), as an OSError or as a library's message (C++ writers raise
    RuntimeError carrying strerror's text)."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "No space left on device" in str(e) or "Disk quota exceeded" in str(e)


def mount_of(path: Path) -> str:
    """``DEVICE (mounted on MOUNT)`` for the filesystem holding ``path`` (/proc/mounts)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    mount = path
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) > 2 and fields[1].replace("\\040", " ") == str(mount):
                device = fields[0]
        return f"{device} (mounted on {mount})"
    except (OSError, UnboundLocalError):
        return str(mount)


def disk_full(path: Path | str) -> DiskFull:
    return DiskFull(f"no space left on {mount_of(Path(path))} writing {path}; free some "
                    "space or write elsewhere (--out)")


@contextlib.contextmanager
def reporting_full_disk(path: Path) -> Iterator[None]:
    """A full disk met in the block is told as "no space left on DEVICE writing PATH": the
    file the error names, else ``path`` (the file or directory being written)."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as e:
        if not is_disk_full(e):
            raise
        raise disk_full(getattr(e, "filename", None) or path) from None


@contextlib.contextmanager
def exclusive(root: Path, what: str, lock_file: str | None = None) -> Iterator[None]:
    """One writer at a time per directory (``what``: "build", "export"): a second one fails at
    once with a UserError. The lock is the kernel's (flock): it goes with its process, however
    that process ends. ``lock_file``: a file in ``root`` holding the pid of the holder, named
    in the error; None: the directory itself is locked and nothing is written in it."""
    root.mkdir(parents=True, exist_ok=True)
    if lock_file is None:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(f"{root} is being written by another edgeexport {what}; wait "
                                "for it to finish or use another --out") from None
            yield
        finally:
            os.close(fd)
        return
    with open(root / lock_file, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise UserError(f"{root} is being written by another edgeexport {what} (pid "
                            f"{holder}); wait for it to finish or use another --out") from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            yield
        finally:
            lock.truncate(0)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: Path, obj: Any) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": sha256(path), "bytes": path.stat().st_size}


def safe_relative(root: Path, relative: str) -> Path:
    """Resolve a path read from a file or index, refusing absolute paths and ``..``."""
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise ValueError(f"unsafe path {relative!r} (absolute or containing '..')")
    return root / rel


def user_cache_dir() -> Path:
    """edgeexport's directory in the user's cache: $XDG_CACHE_HOME/edgeexport, else
    ~/.cache/edgeexport (the board's model cache and the host's analysis cache live in it)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgeexport"
