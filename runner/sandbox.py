"""The template sandbox: Jinja's immutable sandbox (a template cannot change the row it reads) with
limits on what a hostile template can make it do — big exponents, string and list repetition,
ranges, formatting widths, output size, recursion and render time. Pure: no I/O.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_OUTPUT_CHARS: Final = 1_000_000  # one template's output for one row
MAX_RANGE: Final = 10_000  # items of one range()
MAX_POWER_BITS: Final = 4_096  # the size of a ** result
MAX_ARGUMENT: Final = 1_000_000  # an integer handed to a filter or method (widths, counts)
RENDER_SECONDS: Final = 1.0  # one row, every template of it
_BIG_WIDTH: Final = re.compile(r"\d{7,}")  # a format width of a million or more


class TemplateLimit(SecurityError):
    """A template went past one of the sandbox's limits; the message names the limit."""


def _sized(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple) else 0


def _check_args(args: Iterable[Any], what: str) -> None:
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_ARGUMENT:
            raise TemplateLimit(f"{what} was given {arg:,}, over the sandbox's limit of "
                                f"{MAX_ARGUMENT:,}")
        if isinstance(arg, str) and ("%" in arg or "{" in arg) and _BIG_WIDTH.search(arg):
            raise TemplateLimit(f"{what} was given a format width over the sandbox's limit")


def _bounded_range(*args: int) -> range:
    _check_args(args, "range()")
    items = range(*args)
    if len(items) > MAX_RANGE:
        raise TemplateLimit(f"range() of {len(items):,} items is over the sandbox's limit of "
                            f"{MAX_RANGE:,}")
    return items


_bounded_range.__name__ = "range"


def _guard(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)  # keeps jinja_pass_arg, so context-taking filters still get it
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _check_args([*args, *kwargs.values()], f"the {name} filter")
        result = func(*args, **kwargs)
        if _sized(result) > MAX_OUTPUT_CHARS:
            raise TemplateLimit(f"the {name} filter made {_sized(result):,} characters, over the "
                                f"sandbox's limit of {MAX_OUTPUT_CHARS:,}")
        return result

    return guarded


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """ImmutableSandboxedEnvironment with limits. `*`, `**` and `%` are intercepted, so Jinja also
    never folds them as constants while a template is only being checked."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, max_output: int = MAX_OUTPUT_CHARS) -> None:
        super().__init__(undefined=jinja2.StrictUndefined, autoescape=False)
        self.max_output = max_output
        self.globals = {"range": _bounded_range, "dict": dict,
                        "namespace": self.globals["namespace"]}
        self.filters = {name: _guard(name, f) for name, f in self.filters.items()}

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            bits = right * math.log2(abs(left)) if abs(left) > 1 else 0
            if bits > MAX_POWER_BITS:
                raise TemplateLimit(f"{left} ** {right} is over the sandbox's limit of "
                                    f"{MAX_POWER_BITS:,} bits")
        if operator == "*":
            count = right if _sized(left) else left if _sized(right) else None
            size = _sized(left) or _sized(right)
            if isinstance(count, int) and count * size > self.max_output:
                raise TemplateLimit(f"'*' would make {count * size:,} characters or items, over "
                                    f"the sandbox's limit of {self.max_output:,}")
        if operator == "%" and isinstance(left, str):
            _check_args([left], "a % format")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        name = getattr(__obj, "__name__", "a function")
        _check_args([*args, *kwargs.values()], f"{name}()")
        # str.format reaches us wrapped by Jinja's safe formatter: its text is on the wrapped method.
        text = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
        if name in ("format", "format_map") and isinstance(text, str):
            _check_args([text], f"{name}()")
        result = super().call(__context, __obj, *args, **kwargs)
        if _sized(result) > __self.max_output:
            raise TemplateLimit(f"{name}() made {_sized(result):,} items, over the sandbox's "
                                f"limit of {__self.max_output:,}")
        return result

    def concat(self, pieces: Iterable[str]) -> str:
        """Join a template's output, refusing it as soon as it grows past the limit."""
        out: list[str] = []
        total = 0
        for piece in pieces:
            total += len(piece)
            if total > self.max_output:
                raise TemplateLimit(f"the template's output for one row passed "
                                    f"{self.max_output:,} characters, the sandbox's limit")
            out.append(piece)
        return "".join(out)


class _TimeUp(BaseException):
    """Raised by the alarm inside a render; BaseException, so templates cannot swallow it."""


@contextlib.contextmanager
def time_limit(seconds: float = RENDER_SECONDS) -> Iterator[None]:
    """Stop the code inside after `seconds` of wall-clock time, with TemplateLimit. Works in the
    main thread (the CLI); elsewhere the other limits still hold but time does not."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum: int, frame: Any) -> None:
        raise _TimeUp

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _TimeUp:
        raise TemplateLimit(f"rendering one row took more than {seconds:g} s, the sandbox's "
                            "limit") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


REFUSALS: Final = (SecurityError, RecursionError, OverflowError, MemoryError)


def refusal_text(exc: BaseException) -> str:
    """What the sandbox refused, in one line."""
    if isinstance(exc, RecursionError):
        return "the template recursed too deeply (a macro calling itself?)"
    if isinstance(exc, OverflowError):
        return f"a number in the template grew too large ({exc})"
    if isinstance(exc, MemoryError):
        return "the template ran out of memory"
    return str(exc)
