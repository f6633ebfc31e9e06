"""Running one step of the export stage: a time limit, and everything it prints kept off the terminal.

Contract: `run_step(steps, name, timeout)` runs a block as a named `Step` appended to `steps`. Whatever torch,
onnx and onnxruntime print while it runs — Python writes, logging handlers that hold the real stderr, and
native writes to file descriptors 1 and 2 (TorchScript's "Torch IR graph at exception", onnxruntime's
coloured warnings) — goes into the step's `output` as a short excerpt, so stdout carries the report only.
A step that outlives `timeout` seconds raises `TimedOut` and is marked "timed out", never "failed", even
when the library it interrupted wrapped the interruption in an error of its own."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Optional

from .errors import TimedOut, chain, strip_ansi

DEFAULT_TIMEOUT = 60.0
_EXCERPT_HEAD, _EXCERPT_TAIL = 6, 4


@dataclass
class Step:
    name: str
    status: str = "ok"  # ok | failed | timed out
    seconds: float = 0.0
    output: str = ""  # an excerpt of what was printed while it ran

    def to_json(self) -> dict:
        return {"step": self.name, "status": self.status, "seconds": round(self.seconds, 3), "output": self.output}


def excerpt(text: str) -> str:
    lines = [ln.rstrip() for ln in strip_ansi(text).splitlines() if ln.strip()]
    if len(lines) <= _EXCERPT_HEAD + _EXCERPT_TAIL + 1:
        return "\n".join(lines)
    cut = len(lines) - _EXCERPT_HEAD - _EXCERPT_TAIL
    return "\n".join([*lines[:_EXCERPT_HEAD], f"... ({cut} more lines) ...", *lines[-_EXCERPT_TAIL:]])


def _flush_all() -> None:
    for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if s is not None:
                s.flush()
        except (OSError, ValueError):
            pass
    try:  # C stdio buffers (std::cout is synced with them)
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


class _Captured:
    text = ""


@contextlib.contextmanager
def captured():
    """Everything written to fd 1 and 2, and to sys.stdout/sys.stderr, while the block runs."""
    out = _Captured()
    _flush_all()
    saved = []
    buf = tempfile.TemporaryFile()
    try:
        for fd in (1, 2):
            try:
                saved.append((fd, os.dup(fd)))
                os.dup2(buf.fileno(), fd)
            except OSError:  # no such descriptor (a daemon): Python-level capture only
                pass
        py = io.StringIO()
        try:
            with contextlib.redirect_stdout(py), contextlib.redirect_stderr(py):
                yield out
        finally:
            _flush_all()
            for fd, dup in saved:
                os.dup2(dup, fd)
                os.close(dup)
            buf.seek(0)
            out.text = buf.read().decode("utf-8", "replace") + py.getvalue()
    finally:
        buf.close()


class _Limit:
    expired = False


@contextlib.contextmanager
def time_limit(seconds: Optional[float], what: str):
    """Raise TimedOut in the running Python code once `seconds` have passed (a model that never ends on
    some input); torch's operators are short, so the interpreter gets back to the signal soon. Without
    SIGALRM (Windows) or off the main thread, no limit. The yielded object's `expired` says whether the
    limit fired, whatever exception the interrupted code turned it into."""
    state = _Limit()
    if not seconds or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield state
        return

    def expire(signum, frame):
        state.expired = True
        raise TimedOut(f"{what} did not finish within {seconds:g} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield state
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def run_step(steps: list, name: str, timeout: Optional[float], what: Optional[str] = None):
    """Run the block as step `name` (see the module's contract). Re-raises what the block raised; a block
    stopped by its time limit raises TimedOut."""
    step = Step(name)
    steps.append(step)
    t0 = time.perf_counter()
    cap = None
    try:
        with captured() as cap, time_limit(timeout, what or name) as limit:
            try:
                yield step
            except BaseException as e:
                if limit.expired or any(isinstance(x, TimedOut) for x in chain(e)):
                    raise TimedOut(f"{what or name} did not finish within {timeout:g} s") from None
                raise
    except TimedOut:
        step.status = "timed out"
        raise
    except BaseException:
        step.status = "failed"
        raise
    finally:
        step.seconds = time.perf_counter() - t0
        step.output = excerpt(cap.text) if cap is not None else ""


def run_onnx(sess, feeds: dict, timeout: Optional[float]):
    """sess.run under the time limit: onnxruntime's C++ loop does not see Python signals, so a timer
    thread asks it to stop through RunOptions.terminate."""
    import onnxruntime as ort

    if not timeout:
        return sess.run(None, feeds)
    opts = ort.RunOptions()
    timer = threading.Timer(timeout, lambda: setattr(opts, "terminate", True))
    timer.start()
    try:
        return sess.run(None, feeds, opts)
    except Exception:  # noqa: BLE001
        if opts.terminate:
            raise TimedOut(f"onnxruntime did not finish within {timeout:g} s") from None
        raise
    finally:
        timer.cancel()
