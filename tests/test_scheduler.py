"""The early-job runner (tests/support/runner.py) and the table the scheduler plugin reads:
fast, no training."""
import sys
import threading
import time

import pytest

from tests.support.jobs import JOBS
from tests.support.runner import CommandFailed, Job, JobFailed, Runner


@pytest.fixture
def runner(tmp_path_factory):
    made = []

    def make(jobs, **kw):
        made.append(Runner(jobs, tmp=tmp_path_factory.mktemp, poll=0.05, **kw))
        return made[-1]
    yield make
    for r in made:
        r.close()


def refuses_to_train(ctx):
    raise ValueError("the weights went NaN at step 3")


def test_a_job_that_raises_fails_with_its_own_traceback(runner):
    r = runner([Job("trained:x", refuses_to_train, nice=5)])
    r.start(["trained:x"])
    with pytest.raises(JobFailed) as failed:
        r.get("trained:x")
    report = str(failed.value)
    assert report.startswith("early job 'trained:x' failed after 0 s (nice 5):")
    assert "Traceback (most recent call last)" in report
    assert "in refuses_to_train" in report  # the job's own frame, not the runner's
    assert "_run" not in report
    assert report.rstrip().endswith("ValueError: the weights went NaN at step 3")
    # handed to the reporter once, with a one-line headline
    (name, headline, text), = r.new_failures()
    assert (name, headline, text) == ("trained:x", "ValueError: the weights went NaN at step 3",
                                      report)
    assert r.new_failures() == []


def test_a_subprocess_exiting_non_zero_fails_the_job_with_its_stderr_tail(runner):
    script = "import sys\nfor i in range(100): print('line', i, file=sys.stderr)\nsys.exit(3)"
    r = runner([Job("built", lambda ctx: ctx.run([sys.executable, "-c", script]))])
    with pytest.raises(JobFailed) as failed:
        r.get("built")  # not started yet: started now
    report = str(failed.value)
    assert "exited 3; its stderr ends:" in report and "CommandFailed" in report
    assert "line 99" in report and "line 60" in report and "line 59\n" not in report
    assert "[… 60 lines above]" in report


def test_a_job_needing_a_failed_job_fails_naming_it_and_does_not_start(runner):
    started = []
    r = runner([Job("trained:x", refuses_to_train),
                Job("exports:x", lambda ctx: started.append(1), needs=("trained:x",))])
    r.start(["exports:x"])  # starts what it needs too
    with pytest.raises(JobFailed) as failed:
        r.get("exports:x")
    report = str(failed.value)
    assert report.startswith("early job 'exports:x' did not run: it needs 'trained:x', "
                             "which failed:\nearly job 'trained:x' failed")
    assert "ValueError: the weights went NaN at step 3" in report
    assert started == []
    # reported once each: the cause in full, the job needing it in one line
    reported = {name: text for name, _, text in r.new_failures()}
    assert "Traceback" in reported["trained:x"]
    assert reported["exports:x"] == ("early job 'exports:x' did not run: it needs 'trained:x',"
                                     " which failed")


def test_results_come_back_each_to_its_name_needs_first(runner):
    def slow(value, delay):
        def start(ctx):
            time.sleep(delay)
            return value
        return start
    r = runner([Job("a", slow("A", 0.3)), Job("b", slow("B", 0.0)),
                Job("c", lambda ctx: ctx.result("a") + ctx.result("b"), needs=("a", "b"))])
    r.start(["c"])
    assert [r.get(name) for name in ("c", "a", "b")] == ["AB", "A", "B"]
    assert r.new_failures() == []


def test_get_keeps_reporting_while_it_waits(runner):
    release, calls = threading.Event(), []
    r = runner([Job("slow", lambda ctx: release.wait(5) and "done"),
                Job("boom", refuses_to_train)], on_wait=lambda: calls.append(1))
    r.start(["slow", "boom"])
    threading.Timer(0.3, release.set).start()
    assert r.get("slow") == "done"
    assert len(calls) >= 2  # the reporter ran while the fixture waited


def test_a_watched_background_command_that_fails_is_reported(runner, tmp_path):
    fail = [sys.executable, "-c", "import sys; sys.exit('no calibration images')"]

    def launch(ctx):
        return {"plain": ctx.launch(fail, tmp_path / "plain", label="plain"),
                "refused": ctx.launch(fail, tmp_path / "refused", label="refused",
                                      watch=False)}
    r = runner([Job("exports:x", launch, nice=5)])
    started = r.get("exports:x")
    started["plain"].proc.wait(), started["refused"].proc.wait()
    (name, headline, text), = r.new_failures()
    assert (name, headline) == ("exports:x (plain)", "exited 1")
    assert text.endswith("exited 1; its stderr ends:\nno calibration images")
    with pytest.raises(CommandFailed, match="no calibration images"):
        started["plain"].result()
    assert started["refused"].result(check=False).returncode == 1


def test_close_stops_what_still_runs_and_starts_nothing_more(runner):
    # a command whose worker holds its stderr open (as a build's worker processes do)
    sleeps = ("import subprocess, sys, time\n"
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              "time.sleep(60)")
    r = runner([Job("sleeps", lambda ctx: ctx.run([sys.executable, "-c", sleeps])),
                Job("after", lambda ctx: "ran", needs=("sleeps",))])
    r.start(["after"])
    time.sleep(0.3)
    begun = time.monotonic()
    r.close()
    assert time.monotonic() - begun < 10
    assert r.new_failures() == []  # cancelled, not failed


def test_the_table_lists_each_job_after_what_it_needs_and_every_family():
    from tests.trained import FAMILIES
    Runner(JOBS).close()  # refuses a job listed before what it needs
    for fixture in ("trained", "exported"):
        assert sorted(j.family for j in JOBS if j.fixture == fixture) == sorted(FAMILIES)
    with pytest.raises(AssertionError, match="not listed before it"):
        Runner([Job("b", print, needs=("a",)), Job("a", print)])
