"""The pytest plugin running the session's early jobs (tests.support.jobs.JOBS).

- A test reading no job (and no FOREGROUND_ONLY fixture) is marked "background": `make test`
  runs those in a second pytest process at nice 10, beside the trainings, while the first
  process's tests run one by one.
- The tests run in the order of the latest job they read (``Job.order``).
- The `early` fixture (autouse, session) starts every job a collected test reads when the
  session begins, and is what the fixtures read the results from (``early.get(name)``).
- A job that fails is reported at once, between tests or while a fixture waits on another
  job: its own traceback and the end of its subprocess's stderr. A test reading it fails
  with that report; a job needing it fails naming it; the summary lists them again.
"""
from __future__ import annotations

import contextlib

import pytest

from tests.support.jobs import FOREGROUND_ONLY, JOBS
from tests.support.runner import Runner

JOB_FIXTURES = frozenset(job.fixture for job in JOBS)
FOREGROUND_FIXTURES = JOB_FIXTURES | set(FOREGROUND_ONLY)
LAST = max(job.order for job in JOBS)
RUNNER = pytest.StashKey[Runner]()


def run_order(item) -> int:
    """A test reads the jobs of the fixtures it uses (a test parametrized by `family`: only
    that family's). It runs at the latest ``order`` among them, or last when they are ready
    at different times and it does not say which it waits on (it names its family inside)."""
    family = getattr(item, "callspec", None) and item.callspec.params.get("family")
    rank = 0
    for fixture in JOB_FIXTURES & set(item.fixturenames):
        orders = {job.order for job in JOBS if job.fixture == fixture
                  and (family is None or job.family in (None, family))}
        rank = max(rank, orders.pop() if len(orders) == 1 else LAST)
    return rank


@pytest.hookimpl(tryfirst=True)  # before -m selects on the mark
def pytest_collection_modifyitems(items):
    for item in items:
        if not FOREGROUND_FIXTURES & set(item.fixturenames):
            item.add_marker("background")
    items.sort(key=run_order)  # stable


class FailureReport:
    """Writes each failed job's report to the terminal as soon as the main thread sees it,
    and lists them again in the summary."""

    def __init__(self, config) -> None:
        self.config = config
        self.shown: list[tuple[str, str]] = []

    def report(self) -> None:
        runner = self.config.stash.get(RUNNER, None)
        failures = runner.new_failures() if runner else []
        if not failures:
            return
        plugins = self.config.pluginmanager
        terminal = plugins.get_plugin("terminalreporter")
        capture = plugins.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            for name, headline, text in failures:
                self.shown.append((name, headline))
                if terminal is not None:
                    terminal.ensure_newline()
                    terminal.write_sep("-", f"early job {name} failed", red=True)
                    terminal.write_line(text)
                    terminal.write_sep("-", red=True)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logfinish(self) -> None:
        self.report()

    def pytest_terminal_summary(self, terminalreporter) -> None:
        self.report()
        if self.shown:
            terminalreporter.write_sep("=", "early jobs that failed (reports above)", red=True)
            for name, headline in self.shown:
                terminalreporter.write_line(f"{name}: {headline}")


def pytest_configure(config) -> None:
    config.pluginmanager.register(FailureReport(config), "early-job-failures")


@pytest.fixture(scope="session", autouse=True)
def early(request, tmp_path_factory):
    """The jobs' runner: every job a collected test reads, started now."""
    needed = {name for item in request.session.items for name in item.fixturenames}
    reporter = request.config.pluginmanager.get_plugin("early-job-failures")
    runner = Runner(JOBS, resolve=request.getfixturevalue, tmp=tmp_path_factory.mktemp,
                    on_wait=reporter.report)
    request.config.stash[RUNNER] = runner
    runner.start(job.name for job in JOBS if job.fixture in needed)
    yield runner
    runner.close()
    reporter.report()

