"""The ``edgeexport`` click group: every error becomes one line on stderr and an exit code."""
from __future__ import annotations

import os
import sys

import click

from edgeexport.core import quiet
from edgeexport.core.errors import UserError, ValidationError


class OneLineErrors(click.Group):
    """Usage and input errors print one line on stderr and exit non-zero; no traceback.
    Third-party log lines are held back unless --verbose (``core.quiet``)."""

    def main(self, *args, **kwargs):
        argv = list(args[0] if args else kwargs.get("args") or sys.argv[1:])
        if not argv:  # bare `edgeexport`: the help, not an error
            with click.Context(self, info_name="edgeexport") as ctx:
                click.echo(self.get_help(ctx))
            sys.exit(0)
        if not quiet.wants_verbose(argv):
            quiet.silence()
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("edgeexport: aborted", err=True)
            sys.exit(130)
        except click.UsageError as e:
            click.echo(f"edgeexport: error: {e.format_message()}", err=True)
            sys.exit(2)
        except (UserError, ValidationError) as e:
            click.echo(f"edgeexport: error: {e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("edgeexport: interrupted", err=True)
            sys.exit(130)
        except Exception as e:
            if os.environ.get("EDGEEXPORT_DEBUG"):
                raise
            from edgeexport.core.fileio import disk_full, is_disk_full
            if is_disk_full(e):  # met outside the writers that name their file
                click.echo(f"edgeexport: error: {disk_full(getattr(e, 'filename', None) or '?')}",
                           err=True)
                sys.exit(1)
            tail = quiet.captured_tail()
            if tail:
                click.echo("edgeexport: third-party log lines before the error (last "
                           f"{len(tail)}):\n" + "\n".join(f"  {line}" for line in tail),
                           err=True)
            click.echo(f"edgeexport: internal error: {e.__class__.__name__}: {e} "
                       "(set EDGEEXPORT_DEBUG=1 for the traceback)", err=True)
            sys.exit(1)



def verbose_option() -> click.Option:
    """``--verbose``: read from the command line before parsing (``OneLineErrors.main``), so
    accepted by every command and by the group, and given to no callback."""
    return click.Option([quiet.VERBOSE_FLAG], is_flag=True, expose_value=False,
                        help=quiet.VERBOSE_HELP)


@click.group(cls=OneLineErrors, epilog="Example: edgeexport export mobilenet_v2 --alpha 0.35 "
             "--resolution 96 --out out/mnv2")
@click.version_option(package_name="edgeexport")
def main():
    """MobileNets from PyTorch to ONNX and int8 TFLite, measured per layer on the edge."""


main.params.append(verbose_option())


def commands(group: click.Group, prefix: tuple[str, ...] = ()):
    """Every (path, command) below ``group``, depth first, hidden aliases included."""
    for name, command in group.commands.items():
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from commands(command, (*prefix, name))


def add_verbose_everywhere() -> None:
    """``--verbose`` on every command (after they are all registered), and each "Example:"
    epilog kept on its own lines (click rewraps paragraphs)."""
    for _, command in [((), main), *commands(main)]:
        if not any(p.name == "verbose" for p in command.params):
            command.params.append(verbose_option())
        if command.epilog and command.epilog.startswith("Example"):
            head, _, example = command.epilog.partition(": ")
            command.epilog = f"\b\n{head}:\n  {example}"


def deprecated_alias(command: click.Command, old_name: str) -> None:
    """Keep a renamed command's old name for a release: hidden from --help, it runs the new
    command after a one-line notice on stderr."""
    def callback(**kwargs):
        click.echo(f"edgeexport: `{old_name}` is now `{command.name}`; the old name will be "
                   "removed in 0.2", err=True)
        return command.callback(**kwargs)
    main.add_command(click.Command(old_name, params=command.params, callback=callback,
                                   hidden=True, help=f"Deprecated: use `{command.name}`."))
