"""A real HTTP server on 127.0.0.1 for the pull tests: static files with single-range support
(``Range: bytes=N-``), a request log, and an optional cut: the first GET of a chosen path sends
only its first N bytes and then drops the connection, as a flaky network would."""
from __future__ import annotations

import contextlib
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlparse


class StaticServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root.resolve()
        self.log: list[tuple[str, str | None]] = []  # (path, Range header)
        self.cuts: dict[str, int] = {}  # path → bytes to send before dropping, once

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class _Handler(BaseHTTPRequestHandler):
    server: StaticServer

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        path = unquote(urlparse(self.path).path)
        range_header = self.headers.get("Range")
        self.server.log.append((path, range_header))
        target = (self.server.root / path.lstrip("/")).resolve()
        if self.server.root not in target.parents or not target.is_file():
            self.send_error(404)
            return
        data = target.read_bytes()
        start = 0
        if range_header:
            m = re.fullmatch(r"bytes=(\d+)-", range_header)
            if not m or int(m.group(1)) >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = int(m.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        cut = self.server.cuts.pop(path, None)
        if cut is not None:
            self.wfile.write(data[start:start + cut])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(data[start:])


@contextlib.contextmanager
def serve(root: Path) -> Iterator[StaticServer]:
    server = StaticServer(root)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def unused_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
