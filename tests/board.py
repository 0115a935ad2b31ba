"""A real OpenSSH server on 127.0.0.1 standing in for a Raspberry Pi: "the board".

Debian's sshd runs with its own configuration (``sshd -D -f``), a throw-away host key and one
authorized client key, on ports the kernel picked. Run as root (as CI does), it logs into a
dedicated unprivileged account created for the session, so the measuring process differs
from the test's in user, process and Python; run as another user, sshd can only log that
user in. The account's PATH holds the device venv (``edgeexport[device]``, no torch).

Four ports, four set-ups of the same account (sshd ``Match LocalPort``):
- ``board``: the device venv on the PATH;
- ``board-bare``: no edgeexport on the PATH;
- ``board-old``: an edgeexport of another version on the PATH;
- ``board-arm``: the emulated Pi 4's launchers on the PATH (``edgeexport device emulate
  rpi4``'s ``bin/``): its ``edgeexport`` runs inside the emulated aarch64 Python.
``board-wrongkey`` offers an unauthorized key; ``board-down`` a port nothing listens on.
"""
from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"
ACCOUNT = "edgeexport-board"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def world_readable_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    return path


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name,
                    "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (sshd's per-connection children, the shells and commands
    they started), read from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class Board:
    """sshd on loopback; ``start()``/``kill()`` it, read its log, name its client config."""

    def __init__(self, root: Path, device_venv: Path, old_venv: Path, arm_bin: Path) -> None:
        self.root = world_readable_dir(root)
        self.as_root = os.geteuid() == 0
        self.account = ACCOUNT if self.as_root else getpass.getuser()
        self.home = world_readable_dir(root / "home")
        self.cache = root / "home" / "cache"  # the board's XDG_CACHE_HOME
        if self.as_root:
            self._create_account()
        self.cache.mkdir(exist_ok=True)
        if self.as_root:
            subprocess.run(["chown", "-R", self.account, str(self.home)], check=True)
        self.ports = {"board": free_port(), "board-bare": free_port(), "board-old": free_port(),
                      "board-arm": free_port()}
        self.log = root / "sshd.log"
        self.process: subprocess.Popen | None = None
        host_pub = _keygen(root / "host_ed25519")
        client_pub = _keygen(root / "client_ed25519")
        _keygen(root / "stranger_ed25519")
        keys = root / "authorized_keys"
        keys.write_text(client_pub + "\n")
        keys.chmod(0o644)
        (root / "known_hosts").write_text("".join(
            f"[127.0.0.1]:{port} {host_pub}\n" for port in self.ports.values()))
        self._write_sshd_config(keys, device_venv, old_venv, arm_bin)
        self.ssh_config = root / "ssh_config"
        self._write_client_config()

    def _create_account(self) -> None:
        exists = subprocess.run(["id", "-u", ACCOUNT], capture_output=True).returncode == 0
        if exists:
            subprocess.run(["usermod", "-d", str(self.home), ACCOUNT], check=True)
        else:
            subprocess.run(["useradd", "--system", "-M", "-d", str(self.home), "-s", "/bin/sh",
                            ACCOUNT], check=True)
        # No password, and not locked ("!"), which sshd refuses even for key logins.
        subprocess.run(["usermod", "-p", "*", ACCOUNT], check=True, capture_output=True)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir

    def _write_sshd_config(self, keys: Path, device_venv: Path, old_venv: Path,
                           arm_bin: Path) -> None:
        env = f"XDG_CACHE_HOME={self.cache}"
        path = "/usr/local/bin:/usr/bin:/bin"
        lines = [*(f"Port {p}" for p in self.ports.values()), "ListenAddress 127.0.0.1",
                 f"HostKey {self.root / 'host_ed25519'}", f"PidFile {self.root / 'sshd.pid'}",
                 f"AuthorizedKeysFile {keys}", "StrictModes no", "PubkeyAuthentication yes",
                 "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
                 f"AllowUsers {self.account}", "LogLevel VERBOSE",
                 "Subsystem sftp internal-sftp -l INFO",  # logs each file written
                 f"SetEnv PATH={device_venv / 'bin'}:{path} {env}",
                 f"Match LocalPort {self.ports['board-bare']}", f"  SetEnv PATH={path} {env}",
                 f"Match LocalPort {self.ports['board-old']}",
                 f"  SetEnv PATH={old_venv / 'bin'}:{path} {env}",
                 f"Match LocalPort {self.ports['board-arm']}",
                 f"  SetEnv PATH={arm_bin}:{path} {env}"]
        self.sshd_config = self.root / "sshd_config"
        self.sshd_config.write_text("\n".join(lines) + "\n")

    def _write_client_config(self) -> None:
        common = ["  HostName 127.0.0.1", f"  User {self.account}", "  IdentitiesOnly yes",
                  f"  UserKnownHostsFile {self.root / 'known_hosts'}",
                  "  GlobalKnownHostsFile /dev/null", "  StrictHostKeyChecking yes"]
        hosts = {**{alias: (port, "client_ed25519") for alias, port in self.ports.items()},
                 "board-wrongkey": (self.ports["board"], "stranger_ed25519"),
                 "board-down": (free_port(), "client_ed25519")}
        text = ""
        for alias, (port, key) in hosts.items():
            text += "\n".join([f"Host {alias}", f"  Port {port}",
                               f"  IdentityFile {self.root / key}", *common]) + "\n"
        self.ssh_config.write_text(text)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [SSHD, "-D", "-f", str(self.sshd_config), "-E", str(self.log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited {self.process.returncode}: "
                                   f"{self.log.read_text() if self.log.exists() else ''}")
            try:
                socket.create_connection(("127.0.0.1", self.ports["board"]), 0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not listen within 20 s")

    def kill(self) -> None:
        """The board disappears: the listener, every connection and the commands running
        under them, at once."""
        if self.process is None:
            return
        victims = [self.process.pid, *_descendants(self.process.pid)]
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()
        self.process = None

    def close(self) -> None:
        self.kill()
        if self.as_root:
            subprocess.run(["userdel", ACCOUNT], capture_output=True)

    def log_count(self, needle: str) -> int:
        return self.log.read_text().count(needle) if self.log.exists() else 0
