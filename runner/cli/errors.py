"""Edge: how the CLI ends — errors to one clear message and an exit code, `--debug` tracebacks with
credentials masked, a closed pipe ended quietly. Holds no logic of its own.

Exit codes: 0 success (no changes), 1 error, 2 usage error (click), 3 changes present (plan
--detailed-exitcode only), 4 over budget (the estimate is over a max_cost; nothing was sent),
5 apply --wait finished with rows failed for good or a manifest blocked.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeVar

import click

from runner.errors import BatchrunError, BudgetError, Diagnostic
from runner.lazy import lazy_module

if TYPE_CHECKING:
    from rich.console import Console

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_CHANGES: Final = 3
EXIT_BUDGET: Final = 4
EXIT_INCOMPLETE: Final = 5

F = TypeVar("F", bound=Callable[..., Any])


def _redact() -> Any:
    """runner.redact, loaded when an error is said (its patterns cost start-up otherwise)."""
    return lazy_module("runner.redact")


def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def print_diagnostics(diags: tuple[Diagnostic, ...] | list[Diagnostic]) -> None:
    if diags:
        from runner.views import text as display  # only when there is something to say: start-up stays cheap

        click.echo(display.diagnostics_text(diags), err=True, nl=False)


def _traceback(exc: BaseException) -> None:
    """--debug: the traceback, with credentials masked like everything else we print."""
    click.echo(_redact().redact("".join(traceback.format_exception(exc))), err=True)


def handle_errors(fn: F) -> F:
    """BatchrunError -> its diagnostics and exit 1; anything else -> one line, unless --debug."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        debug = bool(ctx.obj and ctx.obj.get("debug"))
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except BrokenPipeError:
            # `batchrun results NAME | head`: the reader left; end quietly, and keep Python from
            # complaining when it flushes stdout on the way out.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(EXIT_OK)
        except BatchrunError as exc:
            if debug:
                _traceback(exc)
            print_diagnostics(exc.diagnostics)
            ctx.exit(EXIT_BUDGET if isinstance(exc, BudgetError) else EXIT_ERROR)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] != "google":
                _unexpected(exc, debug)
            from runner import backends  # a Google library the vertex backend loads late

            print_diagnostics(backends.libraries_error("vertex", backends.REGISTRY["vertex"],
                                                       [exc.name or "google"]).diagnostics)
            ctx.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo("interrupted; run the same command again to continue", err=True)
            ctx.exit(130)
        except Exception as exc:
            _unexpected(exc, debug)

    return wrapper  # type: ignore[return-value]


def _unexpected(exc: Exception, debug: bool) -> NoReturn:
    ctx = click.get_current_context()
    if debug:
        _traceback(exc)
        ctx.exit(EXIT_ERROR)
    click.echo(f"Error: unexpected {type(exc).__name__}: {_redact().redact(str(exc))}\n"
               "  Re-run with --debug for the traceback.", err=True)
    ctx.exit(EXIT_ERROR)
