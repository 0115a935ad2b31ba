"""An emulated Raspberry Pi: Debian 12's arm64 Python 3.11 run by QEMU user mode on this
machine, with the aarch64 wheels of the device install at the versions installed here.

``prepare(board)`` makes, once, under the user's cache directory
($EDGEEXPORT_EMULATED_DIR, else ~/.cache/edgeexport/emulated):

- ``sysroot-<key>/``: Debian's arm64 packages of python3.11 and the libraries it and the
  wheels load (``apt-get download`` + ``dpkg -x``), shared by the boards;
- ``site-<key>/``: the aarch64 wheels of edgeexport's own dependencies (numpy, onnxruntime,
  ai-edge-litert, click, rich) pinned to the versions installed here, shared by the boards;
- ``<board>/``: the board's root (the shared sysroot's folders as symlinks, and the board's
  own ``proc/cpuinfo``: QEMU's ``-L`` redirects the read; without an ARM cpuinfo importing
  onnxruntime and creating a LiteRT interpreter crash), ``bin/python`` and ``bin/edgeexport``
  (the launchers) and ``board.json``.

This edgeexport's own modules are copied beside the wheels before each run (``package/``,
by content hash), so the emulated board always runs the code that runs here.

Each part is made in a temporary directory and renamed into place, under a lock: nothing
half-prepared is ever used. The core is always named (``-cpu cortex-a72`` for a Pi 4,
``cortex-a76`` for a Pi 5): QEMU's default ``max`` core gives wrong LiteRT int8 results.
There is no binfmt_misc here, so nothing inside the emulated Python can start another aarch64
program: whatever the board computes, it computes in the one process ``run`` starts.

Emulation tells correctness and graph facts (the aarch64 kernels' outputs, onnxruntime's
fusions on ARM), never speed or energy: an emulated millisecond is no board's millisecond.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata, util
from pathlib import Path

from edgeexport.contracts.arm import EMULATED_NOTE
from edgeexport.core.board_facts import EMULATED_ENV
from edgeexport.core.errors import UserError
from edgeexport.core.fileio import exclusive, user_cache_dir

QEMU = "qemu-aarch64-static"
PYTHON = "usr/bin/python3.11"
PREFIX = "emulated:"

# Debian 12 arm64 packages: python3.11 and every library it, its standard library and the
# wheels (libstdc++ for onnxruntime and LiteRT) load. Architecture-independent ones last.
DEBS = ("python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6",
        "libstdc++6", "libgcc-s1", "gcc-12-base", "libssl3", "zlib1g", "libffi8", "libexpat1",
        "libbz2-1.0", "liblzma5", "libsqlite3-0", "libuuid1", "libncursesw6", "libtinfo6",
        "libreadline8", "libdb5.3", "libcrypt1", "libnsl2", "libtirpc3", "libgssapi-krb5-2",
        "libkrb5-3", "libk5crypto3", "libkrb5support0", "libkeyutils1", "libcom-err2",
        "libzstd1")
DEBS_ALL = ("media-types", "libtirpc-common", "readline-common")
WHEEL_PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux2014_aarch64")
STARTS = "import ssl, ctypes, json, sqlite3, lzma, bz2, decimal, uuid"


@dataclass(frozen=True)
class BoardModel:
    """What the emulated board is: its core for QEMU and the cpuinfo a real one shows."""
    name: str
    title: str
    core: str
    part: str
    variant: str
    revision: int
    features: str
    cores: int = 4

    def cpuinfo(self) -> str:
        block = (f"BogoMIPS\t: 108.00\nFeatures\t: {self.features}\nCPU implementer\t: 0x41\n"
                 f"CPU architecture: 8\nCPU variant\t: {self.variant}\nCPU part\t: {self.part}\n"
                 f"CPU revision\t: {self.revision}\n\n")
        return "".join(f"processor\t: {i}\n{block}" for i in range(self.cores))


BOARDS = {
    "rpi4": BoardModel("rpi4", "Raspberry Pi 4 (Cortex-A72)", "cortex-a72", "0xd08", "0x0", 3,
                       "fp asimd evtstrm crc32 cpuid"),
    "rpi5": BoardModel("rpi5", "Raspberry Pi 5 (Cortex-A76)", "cortex-a76", "0xd0b", "0x4", 1,
                       "fp asimd evtstrm crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc "
                       "dcpop asimddp"),
}


def board_model(name: str, core: str | None = None) -> BoardModel:
    """``rpi4``/``rpi5`` (or ``emulated:rpi4``); ``core`` must be the board's own."""
    name = name[len(PREFIX):] if name.startswith(PREFIX) else name
    if core == "max" or name == "max":
        raise UserError("QEMU's 'max' core gives wrong LiteRT int8 results (top-1 agreement "
                        "0-6% measured); name the board's core: cortex-a72 (rpi4) or "
                        "cortex-a76 (rpi5)")
    if name not in BOARDS:
        raise UserError(f"emulated board {name!r}: expected one of {', '.join(BOARDS)}")
    model = BOARDS[name]
    if core is not None and core != model.core:
        raise UserError(f"emulated {name} is a {model.core}, not a {core}: its cpuinfo and "
                        f"core go together (--cpu {model.core})")
    return model


def is_emulated(spec: str | None) -> bool:
    return bool(spec) and spec.startswith(PREFIX)


def cache_root() -> Path:
    env = os.environ.get("EDGEEXPORT_EMULATED_DIR")
    return Path(env).expanduser().absolute() if env else user_cache_dir() / "emulated"


@dataclass
class Prepared:
    """board.json: an emulated board ready to run."""
    board: str
    title: str
    core: str
    qemu: str
    qemu_version: str
    sysroot: str
    site: str
    root: str
    python: str        # the launcher: bin/python of the board directory
    edgeexport: str    # bin/edgeexport
    wheels: dict[str, str]
    note: str = EMULATED_NOTE

    def to_json(self) -> dict:
        return asdict(self)


# ---- preparing ----

def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _last_line(text: str, default: str) -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return lines[-1][:200] if lines else default


def _qemu() -> tuple[str, str]:
    qemu = shutil.which(QEMU)
    if qemu is None:
        raise UserError(f"{QEMU} not found on the PATH; install it: apt-get install "
                        "qemu-user-static")
    out = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout
    return qemu, (out.split("\n")[0].split("version")[-1].strip().split()[0]
                  if "version" in out else "?")


def _fresh(root: Path, name: str) -> Path:
    """A temporary directory beside its final place, readable by every account (mkdtemp
    makes it 0700): a board's SSH account runs the prepared launcher too."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    tmp.chmod(0o755)
    return tmp


def _into_place(tmp: Path, final: Path) -> Path:
    """Rename a finished temporary directory to its final name (replacing an older one)."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    return final


def _arm64_enabled() -> bool:
    proc = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True,
                          text=True)
    return proc.returncode == 0 and "arm64" in proc.stdout.split()


def _apt_download(dest: Path, log) -> None:
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise UserError("no apt-get/dpkg here (not Debian): pass --sysroot DIR, an arm64 root "
                        f"holding /{PYTHON}")
    if not _arm64_enabled():
        if os.geteuid() != 0:
            raise UserError("Debian's arm64 packages need root once (dpkg --add-architecture "
                            "arm64; apt-get update), or pass --sysroot DIR, an arm64 root "
                            f"holding /{PYTHON}")
        log("adding Debian's arm64 architecture (dpkg --add-architecture arm64; apt-get update)")
        subprocess.run(["dpkg", "--add-architecture", "arm64"], check=True)
        _apt_update()
    names = [f"{p}:arm64" for p in DEBS] + list(DEBS_ALL)
    for attempt in (1, 2):
        proc = subprocess.run(["apt-get", "download", "-q", *names], cwd=dest,
                              capture_output=True, text=True)
        if proc.returncode == 0:
            return
        if attempt == 1 and os.geteuid() == 0:
            _apt_update()  # lists older than the archive, or arm64 never fetched
            continue
        errors = [x for x in proc.stderr.splitlines() if x.startswith("E:")]
        raise UserError("arm64 packages unreachable: apt-get download failed ("
                        f"{(errors or [_last_line(proc.stderr, 'no message')])[0][:200]})")


def _apt_update() -> None:
    proc = subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError("arm64 packages unreachable: apt-get update failed "
                        f"({_last_line(proc.stderr, 'no message')})")


def _make_sysroot(root: Path, log) -> Path:
    final = root / f"sysroot-{_digest(DEBS, DEBS_ALL)}"
    if (final / PYTHON).exists():
        return final
    log(f"downloading {len(DEBS) + len(DEBS_ALL)} Debian arm64 packages (apt-get download)")
    tmp = _fresh(root, "sysroot")
    try:
        debs = tmp / ".debs"
        debs.mkdir()
        _apt_download(debs, log)
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg", "-x", str(deb), str(tmp)], check=True)
        shutil.rmtree(debs)
        return _into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _pins() -> tuple[list[str], list[str]]:
    """edgeexport's own requirements (the device install) and a constraint per distribution
    installed here: the board gets the versions this machine runs."""
    requires = [r for r in metadata.requires("edgeexport") or [] if "extra ==" not in r]
    installed = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() != "edgeexport":
            installed[name.lower()] = dist.version
    return requires, sorted(f"{n}=={v}" for n, v in installed.items())


def _make_site(root: Path, log) -> tuple[Path, dict[str, str]]:
    requires, constraints = _pins()
    final = root / f"site-{_digest(requires, constraints, WHEEL_PLATFORMS)}"
    if not (final / ".complete").exists():
        log(f"installing the aarch64 wheels of {', '.join(r.split(';')[0] for r in requires)} "
            "(pip, Python 3.11, manylinux aarch64)")
        tmp = _fresh(root, "site")
        try:
            (tmp / ".constraints.txt").write_text("\n".join(constraints) + "\n")
            argv = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "--no-compile", "--target", str(tmp / "lib"), "--only-binary=:all:",
                    "--python-version", "3.11", "--implementation", "cp",
                    *(x for p in WHEEL_PLATFORMS for x in ("--platform", p)),
                    "-c", str(tmp / ".constraints.txt"), *requires]
            proc = subprocess.run(argv, capture_output=True, text=True)
            if proc.returncode != 0:
                errors = [x for x in proc.stderr.splitlines() if x.startswith("ERROR")]
                raise UserError("aarch64 wheels unreachable: pip failed ("
                                f"{(errors or [_last_line(proc.stderr, 'no message')])[0][:200]})")
            (tmp / ".complete").write_text("\n".join(constraints) + "\n")
            _into_place(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    wheels = {}
    for info in sorted((final / "lib").glob("*.dist-info")):
        name, _, version = info.name[:-len(".dist-info")].partition("-")
        wheels[name.lower().replace("_", "-")] = version
    return final, wheels


def describe(title: str, qemu_version: str, core: str) -> str:
    """What an emulated board is, as its facts say it (``BoardFacts.emulated``)."""
    return f"{title} under QEMU {qemu_version} (-cpu {core})"


def _launcher(board: Path, model: BoardModel, qemu: str, qemu_version: str, site: Path,
              lib: Path) -> str:
    """bin/python: QEMU with the named core, the board's root for -L, and PYTHONPATH set
    for the emulated process alone (never for ours: an x86 Python must not load aarch64
    modules); EDGEEXPORT_EMULATED tells that process it is emulated, so the board itself says
    so to whoever reaches it (over SSH too). ``board``: the board directory's final place."""
    return ("#!/bin/sh\n"
            f"# emulated {model.title}: {EMULATED_NOTE}\n"
            "unset PYTHONHOME LD_LIBRARY_PATH LD_PRELOAD QEMU_CPU QEMU_LD_PREFIX VIRTUAL_ENV\n"
            f"{EMULATED_ENV}='{describe(model.title, qemu_version, model.core)}' "
            f"PYTHONPATH='{lib}:{site / 'lib'}' PYTHONNOUSERSITE=1 PYTHONSAFEPATH=1 \\\n"
            f"  exec '{qemu}' -cpu {model.core} -L '{board / 'root'}' "
            f"'{board / 'root' / PYTHON}' \"$@\"\n")


def _board_root(tmp: Path, sysroot: Path, model: BoardModel) -> Path:
    """The -L root: the shared sysroot's folders by symlink, and the board's own cpuinfo."""
    root = tmp / "root"
    root.mkdir()
    for entry in sorted(sysroot.iterdir()):
        if entry.name not in ("proc", ".debs"):
            (root / entry.name).symlink_to(entry.absolute())
    (root / "proc").mkdir()
    (root / "proc" / "cpuinfo").write_text(model.cpuinfo())
    return root


def _starts(qemu: str, core: str, sysroot: Path) -> None:
    """The sysroot's python3.11 starts and loads its C modules (checked before any wheel is
    fetched); else name the missing library."""
    proc = subprocess.run([qemu, "-cpu", core, "-L", str(sysroot), str(sysroot / PYTHON),
                           "-I", "-c", STARTS], capture_output=True, text=True, timeout=300,
                          env=_environment())
    if proc.returncode == 0:
        return
    missing = re.search(r"([\w.+-]+\.so[\w.]*): cannot open shared object file", proc.stderr)
    if missing:
        raise UserError(f"sysroot {sysroot} lacks {missing[1]}: python3.11 does not start "
                        "there (add the arm64 package holding it)")
    raise UserError(f"sysroot {sysroot}: python3.11 does not start "
                    f"({_last_line(proc.stderr, f'exit {proc.returncode}')})")


def prepare(name: str, core: str | None = None, sysroot: Path | None = None,
            log=lambda message: None) -> Prepared:
    """Make the emulated board ``name`` (rpi4, rpi5) ready under cache_root(); reuse what an
    earlier prepare made. Refuses, in one line, what it cannot do."""
    model = board_model(name, core)
    qemu, qemu_version = _qemu()
    if sysroot is not None and not (sysroot / PYTHON).exists():
        raise UserError(f"--sysroot {sysroot}: no /{PYTHON} there (an arm64 Debian 12 root)")
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with exclusive(root, "emulate prepare", lock_file=".lock"):
        sysroot = sysroot.absolute() if sysroot is not None else _make_sysroot(root, log)
        _starts(qemu, model.core, sysroot)
        site, wheels = _make_site(root, log)
        with _waiting_lock(root / ".package.lock"):
            _package(root)
        final = root / model.name
        tmp = _fresh(root, model.name)
        try:
            _board_root(tmp, sysroot, model)
            (tmp / "bin").mkdir()
            python, edgeexport = tmp / "bin" / "python", tmp / "bin" / "edgeexport"
            edgeexport.write_text(f"#!/bin/sh\nexec '{final / 'bin' / 'python'}' -m "
                                  "edgeexport \"$@\"\n")
            prepared = Prepared(model.name, model.title, model.core, qemu, qemu_version,
                                str(sysroot), str(site), str(final / "root"),
                                str(final / "bin" / "python"), str(final / "bin" / "edgeexport"),
                                wheels)
            python.write_text(_launcher(final, model, qemu, qemu_version, site,
                                        root / "package" / "current"))
            for script in (python, edgeexport):
                script.chmod(0o755)
            (tmp / "board.json").write_text(json.dumps(prepared.to_json(), indent=1) + "\n")
            _into_place(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:
            _check_runtimes(final / "bin" / "python", model)
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)  # never leave a board that cannot run
            raise
    return prepared


def _check_runtimes(python: Path, model: BoardModel) -> None:
    code = ("import platform, numpy, onnxruntime; from ai_edge_litert.interpreter import "
            "Interpreter; print(platform.machine())")
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                          timeout=600, env=_environment())
    if proc.returncode != 0 or proc.stdout.strip() != "aarch64":
        raise UserError(f"emulated {model.name}: the aarch64 runtimes do not load "
                        f"({_last_line(proc.stderr, f'exit {proc.returncode}')})")


# ---- this edgeexport, copied for the board ----

def _package_sources() -> dict[str, Path]:
    """Relative path in the copy → file here: edgeexport with its models/ and targets/
    folders where an install puts them."""
    files = {}
    for package, prefix in (("edgeexport", "edgeexport"), ("edgeexport.models",
                            "edgeexport/models"), ("edgeexport.targets", "edgeexport/targets")):
        spec = util.find_spec(package)
        for location in spec.submodule_search_locations or []:
            for path in sorted(Path(location).rglob("*")):
                rel = path.relative_to(location)
                if (path.is_file() and "__pycache__" not in rel.parts
                        and path.suffix in (".py", ".toml", ".csv", ".md")
                        and not (package == "edgeexport" and rel.parts[0] in
                                 ("models", "targets"))):
                    files[f"{prefix}/{rel.as_posix()}"] = path
    return files


def _package(root: Path) -> Path:
    """root/package/current → a copy of this edgeexport (by content hash) with its
    dist-info, made when the code here changed."""
    files = _package_sources()
    version = metadata.version("edgeexport")
    h = hashlib.sha256(version.encode())
    for rel, path in sorted(files.items()):
        h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    key = h.hexdigest()[:16]
    base = root / "package"
    base.mkdir(exist_ok=True)
    final = base / key
    if not final.exists():
        tmp = _fresh(base, key)
        for rel, path in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, tmp / rel)
        info = tmp / f"edgeexport-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: edgeexport\n"
                                       f"Version: {version}\n")
        (info / "top_level.txt").write_text("edgeexport\n")
        _into_place(tmp, final)
    current = base / "current"
    if not current.is_symlink() or os.readlink(current) != key:
        link = base / f".current.{os.getpid()}"
        link.unlink(missing_ok=True)
        link.symlink_to(key)
        os.replace(link, current)
    return final


# ---- running ----

@contextlib.contextmanager
def _waiting_lock(path: Path):
    """One refresher of the package copy at a time; the others wait (a few ms)."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load(name: str) -> Prepared:
    """The prepared board ``name``; a one-line refusal if it was never prepared."""
    model = board_model(name)
    path = cache_root() / model.name / "board.json"
    if not path.is_file():
        raise UserError(f"no emulated {model.name} under {cache_root()}; prepare it: "
                        f"edgeexport device emulate {model.name}")
    return Prepared(**json.loads(path.read_text()))


def prepared_for(target: str) -> str | None:
    """The emulated board of a target of that name (rpi4, rpi5) when it is prepared and its
    QEMU is still there: `build` checks on it by default. None otherwise (another target,
    never prepared, QEMU removed since)."""
    path = cache_root() / target / "board.json"
    if target not in BOARDS or not path.is_file():
        return None
    return target if Path(json.loads(path.read_text())["qemu"]).exists() else None


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH", "LD_PRELOAD")}
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "1")
    return env


def run(name: str, argv: list[str], timeout: float | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    """``python3.11 ARGV`` on the emulated board, in one process; its output. A failure is
    one line naming the board."""
    board = load(name)
    if shutil.which(Path(board.qemu).name) is None and not Path(board.qemu).exists():
        raise UserError(f"{QEMU} not found; install it: apt-get install qemu-user-static")
    with _waiting_lock(cache_root() / ".package.lock"):
        _package(cache_root())
    try:
        proc = subprocess.run([board.python, *map(str, argv)], capture_output=True, text=True,
                              timeout=timeout, env=_environment(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise UserError(f"emulated {board.board}: no answer within {timeout:.0f} s") from None
    if check and proc.returncode != 0:
        raise UserError(f"emulated {board.board}: `{' '.join(map(str, argv[:3]))}` failed: "
                        f"{_last_line(proc.stderr, f'exit {proc.returncode}')}")
    return proc


# ---- the board loop: profile and facts, emulated ----

EMULATED_RUNS, EMULATED_WARMUP = 2, 0  # enough to run every kernel; no time is kept


def _said_by_the_board(facts: dict, name: str) -> str:
    """The board's own word that it is emulated (its launcher's EDGEEXPORT_EMULATED)."""
    if not facts.get("emulated"):
        raise UserError(f"emulated {name}: its launcher does not say it is emulated (prepared "
                        f"by an older edgeexport); prepare it again: edgeexport device emulate "
                        f"{name}")
    return facts["emulated"]


def facts(name: str) -> dict:
    """The emulated board's own `edgeexport device facts --json`, labelled emulated."""
    board = load(name)
    out = json.loads(run(name, ["-m", "edgeexport", "device", "facts", "--json"],
                         timeout=600).stdout)
    return {"device": f"{PREFIX}{board.board}", "emulated": _said_by_the_board(out, name),
            "note": EMULATED_NOTE, "facts": out}


def time_free(measured, device: str) -> dict:
    """A ``Measured`` made on a board whose own facts say it is emulated, with every time and
    energy taken out: which runtime and version ran the file on which core, and its layers.
    Emulated time is no board's time. ``device``: how the board was reached."""
    facts = measured.board.to_json() if measured.board else {}
    e2e = measured.end_to_end
    return {"source": "emulated", "note": EMULATED_NOTE,
            "where": {"device": device, "emulated": _said_by_the_board(facts, device),
                      "machine": facts.get("isa", "?")},
            "model": measured.model, "precision": measured.precision,
            "runtime": e2e.runtime, "runtime_version": e2e.runtime_version,
            "runs": e2e.runs, "threads": e2e.threads,
            "variant": measured.variant and measured.variant.to_json(),
            "layers": [{"name": r.name, "op": r.op, "macs": r.macs, "params": r.params}
                       for r in measured.layers],
            "end_to_end": None, "energy": None, "board": facts or None}


def profile(name: str, path: Path, target: str, runtime: str | None, precision: str,
            analysis: Path | None = None) -> dict:
    """The board's own `edgeexport profile --json` run inside the emulated board, in one
    process; what it says, time-free (``time_free``)."""
    from edgeexport.contracts.artifacts import Measured, decode
    board = load(name)
    argv = ["-m", "edgeexport", "profile", Path(path).absolute(), "--precision", precision,
            "--threads", "1", "--runs", str(EMULATED_RUNS), "--warmup", str(EMULATED_WARMUP),
            "--target", str(Path(target).absolute()) if target.endswith(".toml") else target,
            "--here", "--json"]
    if runtime is not None:
        argv += ["--runtime", runtime]
    if analysis is not None:
        argv += ["--analysis", Path(analysis).absolute()]
    measured = decode(Measured, json.loads(run(name, argv, timeout=3600).stdout))
    return time_free(measured, f"{PREFIX}{board.board}")


def capped_runs(runs: int, warmup: int) -> tuple[int, int]:
    """Runs and warm-ups of a profile in this process: an emulated one (its launcher said so)
    keeps no time, so it runs each file only enough to run every kernel."""
    if os.environ.get(EMULATED_ENV):
        return min(runs, EMULATED_RUNS), min(warmup, EMULATED_WARMUP)
    return runs, warmup
