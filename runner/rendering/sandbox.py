"""The template sandbox: Jinja's immutable sandbox (a template cannot change the row it reads) with
limits on what a hostile template can make it do — big exponents, string and list repetition,
ranges, formatting widths, output size, recursion and render time. Pure: no I/O.
"""

from __future__ import annotations

import functools
import math
import re
import signal
import threading
from collections.abc import Callable, Iterable
from typing import Any, Final

import jinja2
import jinja2.nodes
import jinja2.runtime
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

MAX_OUTPUT_CHARS: Final = 1_000_000  # one template's output for one row
MAX_RANGE: Final = 10_000  # items of one range()
MAX_POWER_BITS: Final = 4_096  # the size of a ** result
MAX_ARGUMENT: Final = 1_000_000  # an integer handed to a filter or method (widths, counts)
RENDER_SECONDS: Final = 1.0  # one row, every template of it
_WIDTHS: Final = re.compile(r"%[-+ #0]*(\d+)|\{[^{}]*?:[^{}]*?(\d+)[^{}]*\}")


class TemplateLimit(SecurityError):
    """A template went past one of the sandbox's limits; the message names the limit."""


def _sized(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple) else 0


def _said(number: int) -> str:
    return f"{number:,}" if abs(number) < 10**15 else f"a number of {len(str(abs(number)))} digits"


def _check_args(args: Iterable[Any], what: str, limit: int = MAX_ARGUMENT) -> None:
    """Numbers (or digit strings, which format() takes as widths) over the limit, and format
    strings whose widths add up past it, are refused before anything is built."""
    for arg in args:
        number = arg if isinstance(arg, int) and not isinstance(arg, bool) else (
            int(arg) if isinstance(arg, str) and arg.isdecimal() and len(arg) < 30 else None)
        if number is not None and abs(number) > limit:
            raise TemplateLimit(f"{what} was given {_said(number)}, over the sandbox's limit of "
                                f"{limit:,}")
        # isdecimal, not isdigit: '¹' is a digit that int() does not read (nor format() as a width)
        if isinstance(arg, str) and arg.isdecimal() and len(arg) >= 30:
            raise TemplateLimit(f"{what} was given a number of {len(arg)} digits")
        if isinstance(arg, str) and ("%" in arg or "{" in arg):
            widths = sum(int(a or b) for a, b in _WIDTHS.findall(arg[:100_000]))
            if widths > limit:
                raise TemplateLimit(f"{what} was given format widths adding up to {widths:,}, "
                                    f"over the sandbox's limit of {limit:,}")


def _bounded_range(*args: int) -> range:
    _check_args(args, "range()")
    items = range(*args)
    if len(items) > MAX_RANGE:
        raise TemplateLimit(f"range() of {len(items):,} items is over the sandbox's limit of "
                            f"{MAX_RANGE:,}")
    return items


_bounded_range.__name__ = "range"


def _estimate(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, tuple[Any, ...]]:
    """What a filter is about to make, measured before it makes it (and its arguments, with a
    generator turned into the list that was measured)."""
    value = args[0] if args else None
    rest = args[1:]
    if name == "join":
        items = list(value) if value is not None and not isinstance(value, str) else []
        sep = rest[0] if rest else kwargs.get("d", "")
        size = sum(len(x) if isinstance(x, str) else len(str(x)) if isinstance(
            x, int | float) else 16 for x in items) + len(str(sep)) * max(len(items) - 1, 0)
        return size, (items, *rest) if items or value is None else args
    if name == "replace" and isinstance(value, str) and len(rest) >= 2:
        old, new = str(rest[0]), str(rest[1])
        hits = value.count(old) if old else len(value) + 1
        return len(value) + hits * (len(new) - len(old)), args
    if name == "indent" and isinstance(value, str):
        width = rest[0] if rest else kwargs.get("width", 4)
        per = width if isinstance(width, int) else len(str(width))
        return len(value) + (value.count("\n") + 1) * per, args
    if name == "sum":
        start = rest[1] if len(rest) > 1 else kwargs.get("start", 0)
        if isinstance(start, list | str | tuple):
            raise TemplateLimit("sum() of lists or strings is refused by the sandbox (it grows "
                                "quadratically); use join or a loop")
    return 0, args


_ESTIMATED: Final = frozenset({"join", "replace", "indent", "sum"})


def _guard(name: str, func: Callable[..., Any], limit: int) -> Callable[..., Any]:
    takes_context = getattr(func, "jinja_pass_arg", None) is not None

    @functools.wraps(func)  # keeps jinja_pass_arg, so context-taking filters still get it
    def guarded(*args: Any, **kwargs: Any) -> Any:
        plain = args[1:] if takes_context else args
        _check_args([*plain, *kwargs.values()], f"the {name} filter", min(limit, MAX_ARGUMENT))
        if name in _ESTIMATED:
            size, measured = _estimate(name, plain, kwargs)
            if size > limit:
                raise TemplateLimit(f"the {name} filter would make {size:,} characters, over "
                                    f"the sandbox's limit of {limit:,}")
            if measured is not plain:
                args = (*args[:len(args) - len(plain)], *measured)
        result = func(*args, **kwargs)
        if _sized(result) > limit:
            raise TemplateLimit(f"the {name} filter made {_sized(result):,} characters, over the "
                                f"sandbox's limit of {limit:,}")
        return result

    return guarded


class _Namespace(Namespace):
    """namespace() whose values stay within the output limit: `{% set ns.s = ns.s ~ ns.s %}`
    doubling in a loop is refused before it eats the memory."""

    def __setitem__(self, name: str, value: Any) -> None:
        # A class attribute would be read through Namespace's own attribute lookup: a constant.
        if _sized(value) > MAX_OUTPUT_CHARS:
            raise TemplateLimit(f"namespace value {name} grew past the sandbox's limit of "
                                f"{MAX_OUTPUT_CHARS:,}")
        super().__setitem__(name, value)


def _finalize(value: Any) -> Any:
    """What {{ }} prints. A function printed by mistake ({{ text.lower }}) would print its memory
    address, a different request in every process: apply would send the row again each time."""
    if callable(value) and not isinstance(value, jinja2.Undefined):
        name = getattr(value, "__name__", "a function")
        raise TemplateLimit(f"the template prints the function {name} itself; call it: "
                            f"{name}()")
    return value


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """ImmutableSandboxedEnvironment with limits. `*`, `**` and `%` are intercepted, so Jinja also
    never folds them as constants while a template is only being checked."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, max_output: int = MAX_OUTPUT_CHARS) -> None:
        super().__init__(undefined=jinja2.StrictUndefined, autoescape=False)
        self.max_output = max_output
        # No `dict`: its unbound methods (dict.update(row.meta, ...)) would edit the row.
        self.globals = {"range": _bounded_range, "namespace": _Namespace}
        self.filters = {name: _guard(name, f, max_output) for name, f in self.filters.items()}
        self.finalize = _finalize

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
            _check_args([left, *(right if isinstance(right, tuple) else (right,))], "a % format")
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


class TimeUp(BaseException):
    """Raised by the alarm inside a render; BaseException, so templates cannot swallow it."""


def _alarm(signum: int, frame: Any) -> None:
    raise TimeUp


class Deadline:
    """A wall-clock limit on a render, as a context manager: the alarm is armed on entry and
    disarmed on exit, and a render that runs past it ends in TemplateLimit. Cheap enough for every
    row: the handler is installed on first use and stays (setting it costs more than a row's
    render). Main thread only (the CLI); elsewhere the other limits still hold but time does not."""

    def __init__(self, seconds: float = RENDER_SECONDS) -> None:
        self.seconds = seconds
        self.active = threading.current_thread() is threading.main_thread()
        self._installed = False

    def __enter__(self) -> Deadline:
        if self.active:
            if not self._installed:
                signal.signal(signal.SIGALRM, _alarm)
                self._installed = True
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: Any) -> None:
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if kind is not None and issubclass(kind, TimeUp):
            raise TemplateLimit(f"rendering one row took more than {self.seconds:g} s, the "
                                "sandbox's limit") from None


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
