"""Which side of each branch eager PyTorch took on an input.

Contract: inside `record_sides(static, taken)`, every `if`/`while` of `static.branches` (in any of the files
the analysis reached) records into `taken[(canonical path, line)]` the sides ("true"/"false") it took, from
line events; `torch.cond` records its predicate and `torch.while_loop` whether its condition first held.
Only frames of those files are traced."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

from tracesafe.analyzer.source import canonical


@contextlib.contextmanager
def record_sides(static, taken: dict):
    import torch

    wanted: dict[str, set] = {}
    for b in static.branches:
        wanted.setdefault(canonical(b.path), set()).add(b.line)
    arms = static.arms
    real: dict[str, str] = {}  # code filename -> canonical path, or "" when not one of the files
    last: dict[int, int] = {}  # frame id -> last line

    def file_of(filename: str) -> str:
        r = real.get(filename)
        if r is None:
            c = canonical(filename) if os.path.isabs(filename) or os.path.exists(filename) else ""
            r = real[filename] = c if c in wanted else ""
        return r

    def tracer(frame, event, arg):
        f = file_of(frame.f_code.co_filename)
        if not f:
            return None
        lines, file_arms = wanted[f], arms.get(f, {})
        if event == "line":
            prev = last.get(id(frame))
            if prev in lines and prev in file_arms:
                _kind, body, _orelse = file_arms[prev]
                ln = frame.f_lineno
                if prev != ln:  # the line after the test: inside the body or not
                    taken.setdefault((f, prev), set()).add("true" if body[0] <= ln <= body[1] else "false")
            last[id(frame)] = frame.f_lineno
        elif event == "return":
            prev = last.pop(id(frame), None)
            if prev in lines and prev in file_arms and file_arms[prev][0] == "while":
                taken.setdefault((f, prev), set()).add("false")
        return tracer

    def caller():
        fr = sys._getframe(2)
        while fr is not None:
            f = file_of(fr.f_code.co_filename)
            if f:
                return f, fr.f_lineno
            fr = fr.f_back
        return None

    orig_cond: Any = torch.cond
    orig_loop: Any = torch.while_loop

    def cond(pred, true_fn, false_fn, operands=(), *a, **k):
        at = caller()
        if at is not None:
            taken.setdefault(at, set()).add("true" if bool(pred) else "false")
        return orig_cond(pred, true_fn, false_fn, operands, *a, **k)

    def while_loop(cond_fn, body_fn, carried, *a, **k):
        at = caller()
        if at is not None:
            first = bool(cond_fn(*carried))
            taken.setdefault(at, set()).add("true" if first else "false")
            if first:
                taken[at].add("false")  # it ran, so it also stopped
        return orig_loop(cond_fn, body_fn, carried, *a, **k)

    torch.cond = cond  # as the model's code looks them up
    torch.while_loop = while_loop  # type: ignore[assignment]
    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        yield
    finally:
        sys.settrace(old)
        torch.cond, torch.while_loop = orig_cond, orig_loop
