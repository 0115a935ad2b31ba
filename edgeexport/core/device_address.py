"""A board's address: ``[user@]host[:port]`` from ``--device`` or a target file's ``[device]``
table, parsed and checked before anything connects (edgeexport.measure.board connects). Imports no
stage: target files (edgeexport.targets) read it."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from edgeexport.core.errors import UserError

SPEC = re.compile(r"^(?:(?P<user>[^@:/\s]+)@)?(?P<host>[A-Za-z0-9._-]+)(?::(?P<port>\d{1,5}))?$")


@dataclass(frozen=True)
class Device:
    """``[user@]host[:port]``; host may be an alias of the OpenSSH client configuration."""
    host: str
    user: str | None = None
    port: int | None = None
    ssh_config: Path | None = None      # default: the user's ~/.ssh/config
    edgeexport: str = "edgeexport"      # the command on the board (a venv's bin/edgeexport)

    @property
    def name(self) -> str:
        return (f"{self.user}@" if self.user else "") + self.host + \
            (f":{self.port}" if self.port else "")

    def to_json(self) -> dict:
        return {"device": self.name, "edgeexport": self.edgeexport}


def parse_device(spec: str, ssh_config: Path | None = None,
                 edgeexport: str = "edgeexport") -> Device:
    match = SPEC.match(spec.strip())
    if not match or (match["port"] and not 0 < int(match["port"]) < 65536):
        raise UserError(f"--device {spec!r}: expected [user@]host[:port]")
    if ssh_config is not None and not ssh_config.is_file():
        raise UserError(f"ssh config {ssh_config}: no such file")
    return Device(match["host"], match["user"], int(match["port"]) if match["port"] else None,
                  ssh_config, edgeexport)


def device_from_table(table: dict, where: str) -> Device:
    """The ``[device]`` table of a target file: host (``[user@]host[:port]`` or an alias),
    optional ssh_config and edgeexport (the command on the board)."""
    host = table.get("host")
    if not isinstance(host, str):
        raise UserError(f"target file {where}: field 'device.host' must be a string")
    extra = {k: table[k] for k in ("ssh_config", "edgeexport") if k in table}
    for key, value in extra.items():
        if not isinstance(value, str):
            raise UserError(f"target file {where}: field 'device.{key}' must be a string")
    unknown = set(table) - {"host", "ssh_config", "edgeexport"}
    if unknown:
        raise UserError(f"target file {where}: unknown field 'device.{sorted(unknown)[0]}'")
    config = Path(extra["ssh_config"]).expanduser() if "ssh_config" in extra else None
    if config is not None and not config.is_absolute():
        config = Path(where).parent / config
    return parse_device(host, config, extra.get("edgeexport", "edgeexport"))
