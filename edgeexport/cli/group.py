"""The ``edgeexport`` click group: every error becomes one line on stderr and an exit code."""
from __future__ import annotations

import os
import sys

import click

from edgeexport.core.errors import UserError, ValidationError


class OneLineErrors(click.Group):
    """Usage and input errors print one line on stderr and exit non-zero; no traceback."""

    def main(self, *args, **kwargs):
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
            click.echo(f"edgeexport: internal error: {e.__class__.__name__}: {e} "
                       "(set EDGEEXPORT_DEBUG=1 for the traceback)", err=True)
            sys.exit(1)



@click.group(cls=OneLineErrors)
@click.version_option(package_name="edgeexport")
def main():
    """MobileNets from PyTorch to ONNX and int8 TFLite, measured per layer on the edge."""


def deprecated_alias(command: click.Command, old_name: str) -> None:
    """Keep a renamed command's old name for a release: hidden from --help, it runs the new
    command after a one-line notice on stderr."""
    def callback(**kwargs):
        click.echo(f"edgeexport: `{old_name}` is now `{command.name}`; the old name will be "
                   "removed in 0.2", err=True)
        return command.callback(**kwargs)
    main.add_command(click.Command(old_name, params=command.params, callback=callback,
                                   hidden=True, help=f"Deprecated: use `{command.name}`."))
