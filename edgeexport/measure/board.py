"""Measure on a board over SSH, through the user's own OpenSSH client and set-up.

``ssh``/``sftp`` run as subprocesses with ``BatchMode=yes`` (no prompt ever blocks a build) and
a connect timeout, so keys, the agent and ``~/.ssh/config`` aliases work as in a terminal.
Models go to the board's content-addressed cache once (``edgeexport.measure.model_cache``), and the
board's own ``edgeexport profile --json`` measures them; its reports come back unchanged, with
the board's facts (``edgeexport.core.board_facts``) gathered by the measuring process itself.

Two kinds of failure: ``DeviceError`` when the board cannot be used at all (unreachable,
key refused, edgeexport missing or of another version): a build stops measuring; and
``RemoteCommandError`` when one command failed on a working board: that variant fails alone.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from edgeexport.contracts.artifacts import Measured, decode
from edgeexport.core.board_facts import BoardFacts
from edgeexport.core.device_address import Device
from edgeexport.core.errors import UserError
from edgeexport.core.fileio import sha256
from edgeexport.measure.model_cache import ADMITTED, CACHED, partial_name
from edgeexport.targets import Target

CONNECT_TIMEOUT_S = 10
ANALYSIS = "analysis.json"
MEASUREMENTS = [("onnxruntime", "int8", "onnx"), ("onnxruntime", "fp32", "onnx"),
                ("litert", "int8", "tflite"), ("litert", "fp32", "tflite")]


class DeviceError(UserError):
    """The board cannot be used at all: every later measurement on it would fail too."""


class RemoteCommandError(UserError):
    """A command ran on the board and failed (a bad model, say): the board itself is fine."""

    exit_code = 1


def _options(device: Device, port_flag: str) -> list[str]:
    opts = ["-F", str(device.ssh_config)] if device.ssh_config else []
    opts += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
             "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
    if device.port:
        opts += [port_flag, str(device.port)]
    if device.user:
        opts += ["-o", f"User={device.user}"]
    return opts


def _ssh_failure(device: Device, stderr: str) -> DeviceError:
    """ssh's own exit status 255: name the board and the reason in one line."""
    lines = [x.strip() for x in stderr.strip().splitlines() if x.strip()]
    last = lines[-1] if lines else "no message"
    if "Permission denied" in stderr:
        why = f"refused our key ({last}); check `ssh {device.name}` works without a prompt"
    elif "Host key verification failed" in stderr:
        why = f"host key not known or changed; run `ssh {device.name}` once to check it"
    else:
        why = f"unreachable ({last})"
    return DeviceError(f"board {device.name}: {why}")


def run(device: Device, argv: list[str], timeout: float | None = None) -> str:
    """Run ``argv`` on the board; its stdout. Quoted for the remote shell."""
    command = " ".join(shlex.quote(a) for a in argv)
    try:
        proc = subprocess.run(["ssh", *_options(device, "-p"), device.host, "--", command],
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise DeviceError(f"board {device.name}: no answer within {timeout:.0f} s") from None
    if proc.returncode == 255:
        raise _ssh_failure(device, proc.stderr)
    if proc.returncode == 127:
        raise DeviceError(f"board {device.name}: {argv[0]!r} not found on the PATH of the SSH "
                          f"account; install it there ({install_hint()}) or name the command "
                          "in the target file's [device] edgeexport = \"/path/to/edgeexport\"")
    if proc.returncode != 0:
        lines = [x for x in proc.stderr.strip().splitlines() if x.strip()]
        raise RemoteCommandError(f"board {device.name}: `{' '.join(argv[:2])}` failed: "
                                 f"{lines[-1] if lines else f'exit {proc.returncode}'}")
    return proc.stdout


def copy(device: Device, pairs: list[tuple[Path, str]]) -> None:
    """Local files to board paths over one SFTP session (``sftp -b``: stops at the first
    failure, no prompt)."""
    for local, remote in pairs:
        if '"' in str(local) + remote or "\n" in str(local) + remote:
            raise UserError(f"cannot copy {local}: a path with a quote or newline")
    batch = "".join(f'put "{local}" "{remote}"\n' for local, remote in pairs)
    proc = subprocess.run(["sftp", "-q", "-b", "-", *_options(device, "-P"), device.host],
                          input=batch, capture_output=True, text=True)
    if proc.returncode != 0:
        if proc.returncode == 255 or "Connection" in proc.stderr:
            raise _ssh_failure(device, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        raise DeviceError(f"board {device.name}: copying models failed "
                          f"({lines[-1] if lines else f'sftp exit {proc.returncode}'})")


def local_version() -> str:
    return metadata.version("edgeexport")


def install_hint() -> str:
    return f"pip install 'edgeexport[device]=={local_version()}'"


def check_version(device: Device) -> str:
    """The board's edgeexport version; DeviceError unless it is ours."""
    out = run(device, [device.edgeexport, "--version"], timeout=60).strip()
    remote = out.split()[-1] if out else "?"
    if remote != local_version():
        raise DeviceError(f"board {device.name}: edgeexport {remote} there, "
                          f"{local_version()} here; on the board: {install_hint()}")
    return remote


def board_facts(device: Device) -> BoardFacts:
    """The board's facts, gathered there, after checking its edgeexport is ours."""
    check_version(device)
    out = run(device, [device.edgeexport, "device", "facts", "--json"], timeout=60)
    return BoardFacts.from_json(_json(device, out))


def _json(device: Device, text: str) -> dict:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise DeviceError(f"board {device.name}: answered with something other than JSON: "
                          f"{text.strip()[:100]!r}") from None


@dataclass
class Transfers:
    """What ensure_cached did: files copied and files found already on the board."""
    copied: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)


def ensure_cached(device: Device, files: dict[str, Path],
                  transfers: Transfers | None = None) -> dict[str, str]:
    """Local files (name → path) into the board's cache; name → absolute path on the board.
    Each file is addressed by its sha256, copied only if the board has no verified copy, and
    admitted only after the board hashed the copy itself."""
    transfers = transfers if transfers is not None else Transfers()
    entries = {name: f"{sha256(path)}/{name}" for name, path in files.items()}
    answer = _json(device, run(device, [device.edgeexport, "device", "cache", "--json",
                                        *entries.values()], timeout=120))
    root = answer["root"]
    missing = [name for name, entry in entries.items() if answer["entries"][entry] != CACHED]
    if missing:
        copy(device, [(files[n], f"{root}/{entries[n].split('/')[0]}/{partial_name(n)}")
                      for n in missing])
        transfers.copied += missing
    transfers.cached += [n for n in entries if n not in missing]
    if missing:
        again = _json(device, run(device, [device.edgeexport, "device", "cache", "--json",
                                           *(entries[n] for n in missing)], timeout=120))
        bad = [n for n in missing if again["entries"][entries[n]] not in (ADMITTED, CACHED)]
        if bad:
            raise DeviceError(f"board {device.name}: {bad[0]} arrived with another sha256 "
                              "(copy damaged in transit)")
    return {name: f"{root}/{entry}" for name, entry in entries.items()}


def remote_profile(device: Device, model: str, analysis: str | None, target: str,
                   runtime: str, precision: str, threads: int, runs: int,
                   warmup: int) -> Measured:
    """The board's own ``edgeexport profile --json`` on files already in its cache."""
    argv = [device.edgeexport, "profile", model, "--runtime", runtime, "--precision",
            precision, "--threads", str(threads), "--runs", str(runs), "--warmup", str(warmup),
            "--target", target, "--here", "--json"]  # the target's [device] is this board
    if analysis is not None:
        argv += ["--analysis", analysis]
    report = decode(Measured, _json(device, run(device, argv)))
    report.where["device"] = device.name
    return report


def _target_file(target: Target, directory: Path) -> Path:
    """The target's TOML text as a file, so the board reads the same target (a user's
    mypi.toml is not among its built-in ones)."""
    path = directory / "target.toml"
    path.write_text(target.source)
    return path


def measure_on_device(directory: Path, device: Device, target: Target, runs: int, warmup: int,
                      threads: int = 1, transfers: Transfers | None = None
                      ) -> dict[str, Measured]:
    """One export directory measured on the board: {"onnxruntime_int8": profile report, …}
    for every model file present (onnxruntime per layer, LiteRT end to end), each report
    carrying the board's facts as the measuring process saw them. A plain function of
    (directory, device): a farm worker can call it too."""
    files = {name: directory / name for _, precision, suffix in MEASUREMENTS
             for name in [f"model.{precision}.{suffix}"] if (directory / name).is_file()}
    if (directory / ANALYSIS).is_file():
        files[ANALYSIS] = directory / ANALYSIS
    with tempfile.TemporaryDirectory(prefix="edgeexport-") as tmp:
        files["target.toml"] = _target_file(target, Path(tmp))
        remote = ensure_cached(device, files, transfers)
    measured = {}
    for runtime, precision, suffix in MEASUREMENTS:
        name = f"model.{precision}.{suffix}"
        if name in remote:
            measured[f"{runtime}_{precision}"] = remote_profile(
                device, remote[name], remote.get(ANALYSIS), remote["target.toml"], runtime,
                precision, threads, runs, warmup)
    return measured


def profile_on_device(path: Path, device: Device, target: Target, runtime: str | None,
                      precision: str, threads: int, runs: int, warmup: int,
                      analysis: Path | None = None) -> Measured:
    """`edgeexport profile PATH --device …`: the same report as a local profile, measured
    on the board."""
    from edgeexport.measure.profile import resolve_model
    model, runtime, _ = resolve_model(path, runtime, precision)
    if analysis is None and path.is_dir() and (path / ANALYSIS).is_file():
        analysis = path / ANALYSIS
    check_version(device)
    name = f"model{model.suffix}"  # the cache needs a plain file name; the suffix says which runtime
    with tempfile.TemporaryDirectory(prefix="edgeexport-") as tmp:
        files = {name: model, "target.toml": _target_file(target, Path(tmp))}
        if analysis is not None:
            files[ANALYSIS] = analysis
        remote = ensure_cached(device, files)
    return remote_profile(device, remote[name], remote.get(ANALYSIS),
                          remote["target.toml"], runtime, precision, threads, runs, warmup)

