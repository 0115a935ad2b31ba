"""A real headless Chromium driven over the DevTools protocol, for the report tests: real mouse
events (hover, click), the page's DOM read back, every request and script error recorded.

No new dependency: the websocket client is tornado's (pinned in constraints.txt; installed
with the farm's `distributed`). Chromium picks a free port (--remote-debugging-port=0) and
writes it to DevToolsActivePort in its profile directory. Nothing here needs a network: the
page is a file:// URL.
"""
from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--mute-audio", "--window-size=1280,900")


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("chromium is not installed: `make test` installs Debian's chromium")


class Browser:
    """One page in a headless Chromium. ``requests``: every URL the page asked for;
    ``errors``: uncaught exceptions and console errors."""

    def __init__(self, profile: Path, timeout: float = 60):
        from tornado.websocket import websocket_connect
        self.timeout = timeout
        self.log = profile.parent / f"{profile.name}.stderr"
        with open(self.log, "wb") as log:  # a file: a pipe nobody reads would fill and block
            self.proc = subprocess.Popen([chromium(), *FLAGS, "--remote-debugging-port=0",
                                          f"--user-data-dir={profile}", "about:blank"],
                                         stdout=subprocess.DEVNULL, stderr=log)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                pytest.fail(f"chromium did not open its DevTools port: "
                            f"{self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        self.loop = asyncio.new_event_loop()
        url = f"ws://127.0.0.1:{port}{path}"

        async def connect():  # tornado's futures belong to the loop running them
            return await websocket_connect(url, max_message_size=64 << 20)
        self.ws = self.loop.run_until_complete(connect())
        self.next_id, self.events = 0, []
        self.requests: list[str] = []
        self.errors: list[str] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable", session=True)

    # ---- the protocol ----
    def _read(self, timeout: float) -> dict:
        async def read():
            return await asyncio.wait_for(self.ws.read_message(), timeout)
        message = self.loop.run_until_complete(read())
        if message is None:
            pytest.fail("chromium closed the DevTools connection")
        data = json.loads(message)
        method = data.get("method")
        params = data.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Runtime.exceptionThrown":
            self.errors.append(json.dumps(params["exceptionDetails"])[:2000])
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(json.dumps(params.get("args"))[:2000])
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            self.errors.append(params["entry"].get("text", ""))
        return data

    def call(self, method: str, session: bool = False, **params):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self.ws.write_message(json.dumps(message))
        deadline = time.monotonic() + self.timeout
        while True:
            data = self._read(max(0.1, deadline - time.monotonic()))
            if data.get("id") == self.next_id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return data.get("result", {})
            self.events.append(data.get("method"))

    def js(self, expression: str):
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        result = self.call("Runtime.evaluate", session=True, expression=expression,
                           returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.05)
        pytest.fail(f"timed out waiting for {expression}; errors: {self.errors}")

    # ---- the page ----
    def open(self, url: str) -> None:
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("document.readyState === 'complete'")

    def center(self, selector: str) -> tuple[float, float]:
        """Scrolls the element into view; the viewport coordinates of its centre."""
        rect = self.js(f"""(() => {{
            const e = document.querySelector({json.dumps(selector)});
            if (!e) return null;
            e.scrollIntoView({{block: "center", inline: "center"}});
            const r = e.getBoundingClientRect();
            return [r.left + r.width / 2, r.top + r.height / 2];
        }})()""")
        assert rect is not None, f"no element {selector}"
        return rect[0], rect[1]

    def hover(self, selector: str) -> None:
        x, y = self.center(selector)
        self.call("Input.dispatchMouseEvent", session=True, type="mouseMoved", x=x, y=y)

    def click(self, selector: str) -> None:
        x, y = self.center(selector)
        self.call("Input.dispatchMouseEvent", session=True, type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", session=True, type=kind, x=x, y=y,
                      button="left", clickCount=1)

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
            if getattr(self, "loop", None) is not None:
                self.loop.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
