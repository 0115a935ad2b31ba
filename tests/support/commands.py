"""Running the real ``edgeexport`` command, as a user does (``tests.conftest`` re-exports these
for the test files)."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EDGEEXPORT = [sys.executable, "-m", "edgeexport"]


def lowered(nice: int):
    """A preexec_fn lowering the child's priority by ``nice`` (None: left as it is)."""
    return (lambda: os.nice(nice)) if nice else None


def run_cli(*args, cwd=None, check=True, env=None, nice=0):
    """Run the real command in a subprocess: exit codes and stderr as a user sees them.
    ``nice``: lower its priority."""
    proc = subprocess.run([*EDGEEXPORT, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, preexec_fn=lowered(nice))
    if check and proc.returncode != 0:
        raise AssertionError(f"edgeexport {' '.join(map(str, args))} exited "
                             f"{proc.returncode}:\n{proc.stderr}")
    return proc


def run_json(*args, **kw):
    return json.loads(run_cli(*args, "--json", **kw).stdout)


def assert_one_line_error(proc, *needles):
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]
