"""Errors of the export stage and how their messages are shown.

Contract: `UsageError` is bad input (exit 2, its message is the one line shown); `TimedOut` is a step that
ran out of its time; `first_line`/`error_text` give an exception's whole first line, never cut, without
terminal colours."""

from __future__ import annotations

import re
from typing import Optional

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class UsageError(Exception):
    """Bad input to the export stage: exit 2 with this one line."""


class TimedOut(Exception):
    """A step did not finish within its time limit."""


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def first_line(e: BaseException) -> str:
    s = strip_ansi(str(e)).strip()
    return s.splitlines()[0].strip() if s else type(e).__name__


_INNER_ERROR = re.compile(r"^\s*(?:builtins\.)?([A-Za-z_][\w.]*(?:Error|Exception)): (.+)$")


def error_text(e: BaseException) -> str:
    """`Type: first line` of the error; for TorchScript's "The following operation failed in the TorchScript
    interpreter" wrapper, the error it reports inside (`RuntimeError: mat1 and mat2 shapes cannot...`)."""
    text = strip_ansi(str(e))
    if "failed in the TorchScript interpreter" in text:
        inner = [m for m in map(_INNER_ERROR.match, text.splitlines()) if m]
        if inner:
            return f"{inner[-1].group(1).rsplit('.', 1)[-1]}: {inner[-1].group(2).strip()}"
    return f"{type(e).__name__}: {first_line(e)}"


def root_cause(e: BaseException) -> BaseException:
    seen = set()
    nxt = e.__cause__ or e.__context__
    while nxt is not None and id(e) not in seen:
        seen.add(id(e))
        e = nxt
        nxt = e.__cause__ or e.__context__
    return e


def chain(e: BaseException):
    """The exception and its causes and contexts, outermost first."""
    seen = set()
    cur: Optional[BaseException] = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__
