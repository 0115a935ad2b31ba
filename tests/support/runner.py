"""A small job runner for the session's early work (no pytest in it; tests/test_scheduler.py).

Every job runs on a thread of its own (the threads only wait on the subprocesses the jobs
start), after the jobs it needs. A job that raises, or whose subprocess exits non-zero, is
kept as a failure with its own traceback and the end of the subprocess's stderr: whoever
reads it gets that (``JobFailed``), a job needing it fails naming it, and ``new_failures``
hands each failure once to whoever reports them (the scheduler plugin, at once)."""
from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STDERR_TAIL_LINES = 40


@dataclass(frozen=True)
class Job:
    """One row of the table of early jobs (tests.support.jobs.JOBS)."""
    name: str
    start: Callable[[Context], Any]  # runs on its thread; returns what the fixture reads
    needs: tuple[str, ...] = ()  # jobs started with it and waited for first (ctx.result)
    nice: int = 0  # added to the niceness of every subprocess it starts
    fixture: str | None = None  # the fixture reading it: used by a collected test, it starts
    inputs: tuple[str, ...] = ()  # session fixtures it reads (ctx.inputs), set up beforehand
    family: str | None = None  # a test parametrized by `family` reads only its family's row
    order: int = 0  # tests run in the order of the latest job they read (measured runs)


class CommandFailed(AssertionError):
    """A subprocess exited non-zero: the command, its exit code, the end of its stderr."""

    def __init__(self, args, returncode: int, stderr: str) -> None:
        self.command, self.returncode, self.stderr = list(map(str, args)), returncode, stderr
        super().__init__(f"`{shown(self.command)}` exited {returncode}; its stderr ends:\n"
                         f"{tail(stderr)}")


class JobFailed(Exception):
    """What reading a failed job raises: its message is the job's own report."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(message)


class Cancelled(Exception):
    """The session is ending: the job starts nothing more."""


def tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    kept = text.rstrip().splitlines()
    cut = [f"[… {len(kept) - lines} lines above]"] if len(kept) > lines else []
    return "\n".join(cut + kept[-lines:])


def shown(args: list[str]) -> str:
    """A command as a reader would type it (``python`` for this interpreter)."""
    return shlex.join(["python" if a == sys.executable else a for a in map(str, args)])


def _own_group(nice: int):
    """A preexec_fn: the child leads a process group of its own (stopping it stops the
    workers it started too), ``nice`` lower than this process."""
    def preexec() -> None:
        os.setpgid(0, 0)
        if nice:
            os.nice(nice)
    return preexec


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


class Started:
    """A command started in the background, its output to files (no pipe fills while nobody
    reads it); ``result()`` waits for it."""

    def __init__(self, args, logs: Path, nice: int = 0) -> None:
        self.args = [str(a) for a in args]
        self.logs = logs
        self.stopped = False
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / "stdout", "w") as stdout, open(logs / "stderr", "w") as stderr:
            self.proc = subprocess.Popen(self.args, stdout=stdout, stderr=stderr,
                                         preexec_fn=_own_group(nice))

    def result(self, check=True) -> subprocess.CompletedProcess:
        done = subprocess.CompletedProcess(self.args, self.proc.wait(),
                                           (self.logs / "stdout").read_text(),
                                           (self.logs / "stderr").read_text())
        if check and done.returncode != 0:
            raise CommandFailed(self.args, done.returncode, done.stderr)
        return done

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.stopped = True
            _kill_group(self.proc)
            self.proc.wait()


class Context:
    """What a job's ``start`` is given: its row, its inputs, its needs' results, and ways to
    run subprocesses at its niceness that the runner can report on and stop."""

    def __init__(self, runner: Runner, job: Job, inputs: dict) -> None:
        self.runner, self.job, self.inputs = runner, job, inputs
        self.results: dict[str, Any] = {}

    def result(self, name: str):
        """The result of a job this one needs."""
        return self.results[name]

    def tmp(self, name: str) -> Path:
        return self.runner.tmp(name)

    def run(self, args, cwd=None) -> subprocess.CompletedProcess:
        """Run to its end at the job's niceness, output captured; exits non-zero:
        CommandFailed."""
        with self.runner.lock:
            if self.runner.closing.is_set():
                raise Cancelled(self.job.name)
            proc = subprocess.Popen([str(a) for a in args], cwd=cwd, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True,
                                    preexec_fn=_own_group(self.job.nice))
            self.runner.running.add(proc)
        try:
            stdout, stderr = proc.communicate()
        finally:
            with self.runner.lock:
                self.runner.running.discard(proc)
        if proc.returncode != 0:
            if self.runner.closing.is_set():
                raise Cancelled(self.job.name)
            raise CommandFailed(args, proc.returncode, stderr)
        return subprocess.CompletedProcess(proc.args, 0, stdout, stderr)

    def launch(self, args, logs: Path, label: str, watch: bool = True) -> Started:
        """Start in the background at the job's niceness (the job ends, the command runs
        on). ``watch``: it is meant to succeed, and its non-zero exit is reported at once."""
        with self.runner.lock:
            if self.runner.closing.is_set():
                raise Cancelled(self.job.name)
            started = Started(args, logs, nice=self.job.nice)
            self.runner.launched.append((f"{self.job.name} ({label})", started, watch))
        return started


@dataclass
class _Failure:
    name: str
    headline: str  # one line, for a summary
    report: str  # the job's own traceback and stderr tail
    root: bool  # failed itself (False: a job it needs did)
    reported: bool = False


class Runner:
    """Job name → its result. ``start`` starts jobs (and the jobs they need), ``get`` waits
    for one; ``close`` stops everything still running."""

    def __init__(self, jobs: Iterable[Job], *, resolve: Callable[[str], Any] = None,
                 tmp: Callable[[str], Path] = None, on_wait: Callable[[], None] = None,
                 poll: float = 1.0) -> None:
        self.jobs: dict[str, Job] = {}
        for job in jobs:  # started in this order: a job after those it needs
            later = [n for n in job.needs if n not in self.jobs]
            assert not later, f"job {job.name!r} needs {later}: not listed before it"
            self.jobs[job.name] = job
        self.resolve = resolve or (lambda name: None)
        self.tmp = tmp
        self.on_wait = on_wait  # called on the waiting thread while `get` waits
        self.poll = poll
        # A thread per job: every job starts at once, and a job waiting for the ones it
        # needs never holds up another.
        self.pool = ThreadPoolExecutor(max_workers=max(1, len(self.jobs)),
                                       thread_name_prefix="early-job")
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self.futures: dict = {}
        self.failures: dict[str, _Failure] = {}
        self.running: set[subprocess.Popen] = set()
        self.launched: list[tuple[str, Started, bool]] = []

    def closure(self, names: Iterable[str]) -> list[str]:
        """The jobs named and those they need, in the table's order."""
        wanted, todo = set(), list(names)
        while todo:
            name = todo.pop()
            if name not in wanted:
                wanted.add(name)
                todo.extend(self.jobs[name].needs)
        return [name for name in self.jobs if name in wanted]

    def start(self, names: Iterable[str]) -> None:
        """Start these jobs and those they need (each once). Call it from the thread that
        may set up their inputs (pytest's)."""
        for name in self.closure(names):
            if name not in self.futures:
                job = self.jobs[name]
                ctx = Context(self, job, {i: self.resolve(i) for i in job.inputs})
                self.futures[name] = self.pool.submit(self._run, ctx)

    def get(self, name: str):
        """The job's result, waiting for it (started now if it was not); failed: JobFailed
        with the job's own report."""
        __tracebackhide__ = True
        self.start([name])
        future = self.futures[name]
        while not wait([future], timeout=self.poll).done:
            if self.on_wait:
                self.on_wait()
        if self.on_wait:
            self.on_wait()
        failure = self.failures.get(name)
        if failure is not None:
            raise JobFailed(name, failure.report) from None
        return future.result()

    def _run(self, ctx: Context):
        job, began = ctx.job, time.monotonic()
        try:
            for need in job.needs:
                wait([self.futures[need]])
                if self.closing.is_set():
                    raise Cancelled(job.name)
                if need in self.failures:
                    cause = self.failures[need]
                    return self._failed(_Failure(
                        job.name, f"early job {job.name!r} did not run: it needs {need!r}, "
                        "which failed", f"early job {job.name!r} did not run: it needs "
                        f"{need!r}, which failed:\n{cause.report}", root=False))
                ctx.results[need] = self.futures[need].result()
            if self.closing.is_set():
                raise Cancelled(job.name)
            return job.start(ctx)
        except Cancelled:
            return self._failed(_Failure(job.name, "cancelled: the session ended",
                                         "cancelled: the session ended", root=False,
                                         reported=True))
        except BaseException as exc:  # pytest.fail raises a BaseException
            lines = traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next)
            text = "".join(lines).rstrip()
            return self._failed(_Failure(
                job.name, text.splitlines()[-1].strip(),  # the error, or its stderr's end
                f"early job {job.name!r} failed after {time.monotonic() - began:.0f} s "
                f"(nice {job.nice}):\n{text}", root=True))

    def _failed(self, failure: _Failure) -> None:
        with self.lock:
            self.failures[failure.name] = failure

    def new_failures(self) -> list[tuple[str, str, str]]:
        """(name, headline, report) of each failure not handed out yet: failed jobs (a job
        that failed because one it needs did: its headline only), and watched background
        commands that exited non-zero."""
        out = []
        with self.lock:
            for failure in self.failures.values():
                if not failure.reported:
                    failure.reported = True
                    out.append((failure.name, failure.headline,
                                failure.report if failure.root else failure.headline))
            for i, (name, started, watch) in enumerate(self.launched):
                code = started.proc.poll()
                if watch and code not in (None, 0) and not started.stopped:
                    self.launched[i] = (name, started, False)  # reported once
                    error = CommandFailed(started.args, code,
                                          (started.logs / "stderr").read_text())
                    out.append((name, f"exited {code}", f"early job {name}: {error}"))
        return out

    def close(self) -> None:
        """Start nothing more, stop what still runs (subprocesses and background commands),
        and wait for the threads."""
        with self.lock:
            self.closing.set()
            running, launched = list(self.running), list(self.launched)
        for proc in running:
            _kill_group(proc)
        for _, started, _ in launched:
            started.stop()
        self.pool.shutdown(wait=True, cancel_futures=True)
