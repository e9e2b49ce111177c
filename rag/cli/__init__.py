"""The `rag` command: a thin face over `rag.service.RagService`. Errors become one line and an exit code."""

from __future__ import annotations

import sys

from rag.cli import index_cmds, query_cmds  # noqa: F401  (registers the commands)
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
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except KeyboardInterrupt:
        err_console().print("interrupted")
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)  # without standalone mode, click returns typer.Exit's code


__all__ = ["app", "main"]
