"""The `rag` command: a thin face over `rag.service.RagService`. Errors become one line and an exit code."""

from __future__ import annotations

import sys

import typer

from rag.cli import index_cmds, query_cmds, train_cmds  # noqa: F401  (registers the commands)
from rag.cli.app import app
from rag.errors import RagError


def main() -> None:
    import click

    from rag.cli.output import err_console

    try:
        rc = app(standalone_mode=False)
    except RagError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)  # one line, never wrapped
        sys.exit(e.exit_code)
    except (click.exceptions.Exit, typer.Exit) as e:
        sys.exit(e.exit_code)
    except (click.exceptions.Abort, typer.Abort):
        sys.exit(130)
    except (click.ClickException, typer.TyperException) as e:  # usage errors: typer raises its own click's
        if hasattr(e, "show"):
            e.show()
        else:
            print(f"error: {e}", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 2))
    except KeyboardInterrupt:
        err_console().print("interrupted")
        sys.exit(130)
    except OSError as e:  # a folder or file the user named cannot be read or written (permissions, disk full)
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)  # without standalone mode, click returns typer.Exit's code


__all__ = ["app", "main"]
