"""Errors the CLI turns into one line and a non-zero exit, never a traceback."""


class UserError(Exception):
    """Bad input from the user (a file, an option, a directory): exit code 2."""

    exit_code = 2


class ValidationError(Exception):
    """An exported model does not compute what the reference computes: exit code 1."""

    exit_code = 1


def did_you_mean(name: str, known) -> str:
    """" (did you mean 'mobilenet_v2'?)" for a name close to one of ``known``, else ""."""
    import difflib

    def squash(s: str) -> str:
        return s.lower().replace("_", "").replace("-", "").replace(" ", "")

    known = list(known)
    by_squashed = {squash(k): k for k in known}
    if squash(name) in by_squashed:
        return f" (did you mean {by_squashed[squash(name)]!r}?)"
    close = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
