"""What a latency measurement depends on, read on the machine that measures.

Runs on the board itself (device install: no torch): CPU model and cores, cpufreq governor
and current clock, SoC temperature and the firmware's throttling flags (``vcgencmd
get_throttled`` on a Raspberry Pi), runtime versions, free memory, and who measured (host,
user, process id, Python executable), so a report can show where a figure came from.

An emulated board (edgeexport.measure.emulator) says so itself: its launcher, the board's own
``python``, exports ``EDGEEXPORT_EMULATED`` (which board, core and QEMU) into the one process
it starts, and the facts carry it. A client reaching that board over SSH learns it from the
board, never from how it addressed it, and keeps no time from it.
"""
from __future__ import annotations

import getpass
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, fields
from importlib import metadata
from pathlib import Path
from typing import Any

CPUFREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq")
THERMAL = Path("/sys/class/thermal")
# vcgencmd get_throttled bits (Raspberry Pi firmware documentation).
THROTTLE_BITS = {0: "under-voltage now", 1: "ARM frequency capped now", 2: "throttled now",
                 3: "soft temperature limit now", 16: "under-voltage occurred",
                 17: "ARM frequency capping occurred", 18: "throttling occurred",
                 19: "soft temperature limit occurred"}
NOW_MASK = 0xF
EMULATED_ENV = "EDGEEXPORT_EMULATED"


@dataclass
class BoardFacts:
    host: str
    user: str
    pid: int
    python: str
    edgeexport_version: str
    cpu_model: str
    cores: int
    isa: str
    governor: str | None          # None: no cpufreq on this machine
    clock_mhz: float | None       # current clock of cpu0
    max_clock_mhz: float | None
    temperature_c: float | None
    throttled: int | None         # vcgencmd get_throttled bit field; None: no vcgencmd
    throttled_flags: list[str]
    onnxruntime_version: str
    litert_version: str
    mem_available_mib: float | None
    emulated: str | None = None   # e.g. "Raspberry Pi 4 (Cortex-A72) under QEMU 7.2.22 (-cpu
    #                               cortex-a72)": this process runs emulated; None: natively

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "BoardFacts":
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})

    def warnings(self) -> list[str]:
        """Conditions under which a latency figure is not the board's steady best."""
        out = []
        if self.throttled is not None and self.throttled & NOW_MASK:
            out.append("throttled now: " + ", ".join(
                f for bit, f in THROTTLE_BITS.items() if bit < 4 and self.throttled >> bit & 1))
        elif self.throttled:
            out.append("was throttled since boot: " + ", ".join(self.throttled_flags))
        if self.governor is not None and self.governor != "performance":
            out.append(f"cpufreq governor is {self.governor!r}, not 'performance' (clock "
                       "varies with load: `sudo cpufreq-set -g performance` or write "
                       f"performance to {CPUFREQ}/scaling_governor)")
        return out

    def summary(self) -> str:
        """One line for report notes."""
        parts = [f"{self.cpu_model} ({self.cores} cores, {self.isa})"]
        if self.emulated is not None:
            parts.insert(0, f"EMULATED: {self.emulated}")
        if self.governor is not None:
            parts.append(f"governor {self.governor}")
        if self.clock_mhz is not None:
            parts.append(f"{self.clock_mhz:.0f} MHz")
        if self.temperature_c is not None:
            parts.append(f"{self.temperature_c:.1f} °C")
        parts.append("throttled: " + ("n/a (no vcgencmd)" if self.throttled is None
                                      else hex(self.throttled)))
        return ", ".join(parts)


# Arm's core names by /proc/cpuinfo "CPU part" (implementer 0x41): a Raspberry Pi's cpuinfo
# names no model, only these parts.
ARM_CORES = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55",
             "0xd07": "Cortex-A57", "0xd08": "Cortex-A72", "0xd09": "Cortex-A73",
             "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76", "0xd0d": "Cortex-A77",
             "0xd41": "Cortex-A78"}


def detect_cpu() -> dict[str, Any]:
    """This machine's CPU model, core count and whether it has the Arm dot-product extension.
    An Arm cpuinfo naming no model (a Cortex-A72's lists only its "CPU part") gives the
    core's name."""
    model, flags, core = "", "", None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "cpu model", "hardware") and value.strip():
                model = value.strip()
            if key in ("flags", "features") and not flags:
                flags = value
            if key == "cpu part" and core is None:
                core = ARM_CORES.get(value.strip().lower())
    except OSError:
        pass
    model = model or core or platform.processor() or platform.machine()
    facts = {"model": model, "cores": os.cpu_count() or 1, "isa": platform.machine(),
             "dotprod": "asimddp" in flags.split()}
    try:
        khz = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()
        facts["freq_ghz"] = int(khz) / 1e6
    except (OSError, ValueError):
        pass
    return facts


def cpu_names() -> set[str]:
    """What this machine's CPU is called: its model string and any Arm core names."""
    names = {detect_cpu()["model"].lower()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() == "cpu part" and value.strip().lower() in ARM_CORES:
                names.add(ARM_CORES[value.strip().lower()].lower())
    except OSError:
        pass
    return names


def runs_on_cpu(model: str) -> bool:
    """Whether this machine's CPU is ``model`` (a target's [cpu] model, e.g. "Cortex-A72";
    "detected": the target file describes this machine)."""
    wanted = model.strip().lower()
    return wanted == "detected" or any(wanted in name for name in cpu_names())


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _khz_to_mhz(text: str | None) -> float | None:
    try:
        return int(text) / 1e3 if text is not None else None
    except ValueError:
        return None


def _temperature() -> float | None:
    """The SoC/CPU thermal zone, else the first one that reads."""
    zones = sorted(THERMAL.glob("thermal_zone*"))
    preferred = [z for z in zones if (_read(z / "type") or "").lower() in
                 ("cpu-thermal", "soc_thermal", "x86_pkg_temp", "cpu_thermal")]
    for zone in preferred + zones:
        value = _read(zone / "temp")
        try:
            return int(value) / 1e3 if value is not None else None
        except ValueError:
            continue
    return None


def _throttled() -> int | None:
    exe = shutil.which("vcgencmd")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "get_throttled"], capture_output=True, text=True,
                             timeout=5).stdout
        return int(out.strip().split("=", 1)[1], 16)  # "throttled=0x50000"
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return None


def _mem_available_mib() -> float | None:
    for line in (_read(Path("/proc/meminfo")) or "").splitlines():
        if line.startswith("MemAvailable:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def gather() -> BoardFacts:
    """The facts of the machine this process runs on."""
    cpu = detect_cpu()
    throttled = _throttled()
    return BoardFacts(
        host=platform.node(), user=getpass.getuser(), pid=os.getpid(), python=sys.executable,
        edgeexport_version=_version("edgeexport"), cpu_model=cpu["model"],
        cores=cpu["cores"], isa=cpu["isa"], governor=_read(CPUFREQ / "scaling_governor"),
        clock_mhz=_khz_to_mhz(_read(CPUFREQ / "scaling_cur_freq")),
        max_clock_mhz=_khz_to_mhz(_read(CPUFREQ / "cpuinfo_max_freq")),
        temperature_c=_temperature(), throttled=throttled,
        throttled_flags=[] if throttled is None else
        [f for bit, f in THROTTLE_BITS.items() if throttled >> bit & 1],
        onnxruntime_version=_version("onnxruntime"), litert_version=_version("ai-edge-litert"),
        mem_available_mib=_mem_available_mib(), emulated=os.environ.get(EMULATED_ENV) or None)
