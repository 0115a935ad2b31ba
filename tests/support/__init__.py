"""The test session's own machinery, kept out of ``conftest.py`` (which holds fixtures only).

- ``runner``: a small job runner (no pytest in it): jobs on threads, each waiting on the
  subprocesses it starts, a job's failure kept with its own traceback and stderr tail.
- ``jobs``: the one table of the session's early jobs (trainings, exports, builds, venvs):
  what each runs, at what niceness, what it needs, which fixture reads it.
- ``scheduler``: the pytest plugin reading that table: marks the tests needing no job
  "background", orders the others, starts the jobs when the session begins, and reports a
  failed job as soon as it fails.
- ``commands``: running ``edgeexport`` as a user does (``run_cli`` and friends).
"""
