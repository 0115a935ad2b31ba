"""Fetching a build's files from a local directory or an http(s) server, verified by sha256.

A download goes to a partial file beside its destination whose name carries the expected hash
(``.<name>.<sha256[:16]>.part``), so it survives an interrupted run and the next run resumes it
with an HTTP Range request; a partial file is only ever renamed into place after its whole
content matches the expected hash. Standard library only (urllib), a timeout on every request.
"""
from __future__ import annotations

import http.client
import os
import shutil
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from edgeexport.core.errors import UserError
from edgeexport.core.fileio import safe_relative, sha256

CHUNK = 1 << 16
USER_AGENT = "edgeexport-pull"


@dataclass(frozen=True)
class Expected:
    """What the index promises for one file."""
    sha256: str
    bytes: int


@dataclass
class Fetched:
    """The outcome of one fetch: 'downloaded', 'resumed' (a Range request continued a partial
    file), 'copied' (local source) or 'unchanged' (already at the destination)."""
    status: str
    range_requests: int = 0


def partial_path(dest: Path, expected: Expected) -> Path:
    return dest.with_name(f".{dest.name}.{expected.sha256[:16]}.part")


class Source:
    """Where a build's dist/<target>/ lives; ``relative`` paths are validated by the caller."""

    def describe(self, relative: str) -> str:
        raise NotImplementedError

    def read_bytes(self, relative: str, limit: int) -> bytes:
        """A small file (the index, a JSON record) read whole; at most ``limit`` bytes."""
        raise NotImplementedError

    def fetch(self, relative: str, part: Path, expected: Expected, retries: int) -> Fetched:
        """Bring the file's bytes into ``part`` (appending to what is already there)."""
        raise NotImplementedError


class LocalSource(Source):
    def __init__(self, root: Path) -> None:
        self.root = root

    def describe(self, relative: str) -> str:
        return str(safe_relative(self.root, relative))

    def read_bytes(self, relative: str, limit: int) -> bytes:
        path = safe_relative(self.root, relative)
        try:
            with open(path, "rb") as f:
                data = f.read(limit + 1)
        except OSError as e:
            raise UserError(f"cannot read {path}: {e.strerror or e}") from None
        if len(data) > limit:
            raise UserError(f"{path} is larger than {limit} bytes: not a build's record")
        return data

    def fetch(self, relative: str, part: Path, expected: Expected, retries: int) -> Fetched:
        path = safe_relative(self.root, relative)
        try:
            with open(path, "rb") as src, open(part, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
        except OSError as e:
            raise UserError(f"cannot read {path}: {e.strerror or e}") from None
        return Fetched("copied")


class HttpSource(Source):
    """A directory URL (ending in '/'); every request has ``timeout`` seconds."""

    def __init__(self, base_url: str, timeout: float) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.timeout = timeout

    def describe(self, relative: str) -> str:
        return self.url(relative)

    def url(self, relative: str) -> str:
        safe_relative(Path("."), relative)  # refuse '..' and absolute paths before any request
        quoted = "/".join(urllib.parse.quote(p) for p in PurePosixPath(relative).parts)
        return urllib.parse.urljoin(self.base_url, quoted)

    def _open(self, url: str, start: int = 0):
        headers = {"User-Agent": USER_AGENT}
        if start:
            headers["Range"] = f"bytes={start}-"
        request = urllib.request.Request(url, headers=headers)
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            if e.code == 416 and start:
                return e  # the partial file is not a prefix the server knows: start again
            raise UserError(f"{url}: the server answered {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", None) or e
            raise UserError(f"cannot reach {url}: {reason}") from None

    def read_bytes(self, relative: str, limit: int) -> bytes:
        url = self.url(relative)
        with self._open(url) as response:
            try:
                data = response.read(limit + 1)
            except (OSError, http.client.HTTPException) as e:
                raise UserError(f"{url}: transfer interrupted ({_reason(e)})") from None
        if len(data) > limit:
            raise UserError(f"{url} is larger than {limit} bytes: not a build's record")
        return data

    def fetch(self, relative: str, part: Path, expected: Expected, retries: int) -> Fetched:
        url = self.url(relative)
        outcome, attempts = Fetched("downloaded"), 0
        while True:
            have = part.stat().st_size if part.exists() else 0
            if have:
                outcome.status, outcome.range_requests = "resumed", outcome.range_requests + 1
            try:
                self._append(url, part, have, expected.bytes)
                return outcome
            except _Interrupted as e:
                if attempts == retries:
                    got = part.stat().st_size if part.exists() else 0
                    raise UserError(f"{url}: transfer interrupted after {got} of "
                                    f"{expected.bytes} bytes ({e}); the partial file is kept, "
                                    "run the same command again to resume") from None
                attempts += 1

    def _append(self, url: str, part: Path, have: int, total: int) -> None:
        """Write bytes ``have``..``total`` of ``url`` to ``part``; never more than ``total``."""
        response = self._open(url, have)
        try:
            if have and response.status == 416:
                response.close()
                response, have = self._open(url), 0
            elif have and response.status != 206:
                have = 0  # the server ignored the Range: the whole file follows
            elif have:
                start = _range_start(response.headers.get("Content-Range", ""))
                if start != have:
                    raise UserError(f"{url}: the server resumed at byte {start}, "
                                    f"not {have} as asked")
            with open(part, "ab" if have else "wb") as f:
                remaining = total - have + 1  # one byte more reveals an oversized file
                try:
                    while remaining > 0:
                        chunk = response.read(min(CHUNK, remaining))
                        if not chunk:
                            break
                        f.write(chunk)
                        remaining -= len(chunk)
                except (OSError, http.client.HTTPException) as e:
                    raise _Interrupted(_reason(e)) from None
                finally:
                    f.flush()
                    os.fsync(f.fileno())
        finally:
            response.close()
        size = part.stat().st_size
        if size < total:
            raise _Interrupted(f"connection closed at byte {size}")


class _Interrupted(Exception):
    """The connection ended before the file did; what arrived is kept in the partial file."""


def _reason(e: Exception) -> str:
    if isinstance(e, http.client.IncompleteRead):
        return "connection closed early"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timed out"
    return f"{e.__class__.__name__}: {e}".rstrip(": ")


def _range_start(content_range: str) -> int | None:
    """'bytes 100-199/200' → 100."""
    unit, _, spec = content_range.partition(" ")
    try:
        return int(spec.split("-", 1)[0]) if unit == "bytes" else None
    except ValueError:
        return None


def open_source(location: str, timeout: float, subdirectory: str = "") -> tuple[Source, str]:
    """(source rooted at the build directory, the index's file name, "" for the default) for
    ``--from``: the index file itself, or a directory (joined with ``subdirectory``)."""
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme in ("http", "https"):
        if not parsed.netloc:
            raise UserError(f"--from {location}: no host in the URL")
        base = parsed._replace(query="", fragment="")
        if base.path.endswith(".json"):
            directory, _, name = base.path.rpartition("/")
            return HttpSource(base._replace(path=directory + "/").geturl(), timeout), name
        path = base.path.rstrip("/") + "/" + (subdirectory + "/" if subdirectory else "")
        return HttpSource(base._replace(path=path).geturl(), timeout), ""
    if parsed.scheme and len(parsed.scheme) > 1:  # (a one-letter scheme is a Windows drive)
        raise UserError(f"--from {location}: only local paths and http(s) URLs are supported")
    path = Path(location)
    if path.is_file():
        return LocalSource(path.parent), path.name
    if path.is_dir():
        return LocalSource(path / subdirectory if subdirectory else path), ""
    raise UserError(f"--from {location}: no such file or directory")


def verify(part: Path, expected: Expected, what: str) -> None:
    size = part.stat().st_size
    if size != expected.bytes:
        raise HashMismatch(f"hash mismatch: {what} has {size} bytes, the index lists "
                           f"{expected.bytes}")
    digest = sha256(part)
    if digest != expected.sha256:
        raise HashMismatch(f"hash mismatch: {what} has sha256 {digest[:16]}…, the index lists "
                           f"{expected.sha256[:16]}…")


class HashMismatch(UserError):
    """The bytes received are not the bytes the index lists."""
