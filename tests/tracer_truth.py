"""Ground truth from the tracer: which lines torch.jit.trace warns on, and which lines it executes."""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import sys
import warnings
from pathlib import Path


def load_fixture(path: Path, root: Path):
    """Import a fixture as part of its package (relative imports work)."""
    rel = path.relative_to(root).with_suffix("")
    name = "tsfix_" + "_".join(rel.parts)
    parts = list(rel.parts)
    if len(parts) > 1 and (path.parent / "__init__.py").exists():
        pkg_root = path.parent
        while (pkg_root.parent / "__init__.py").exists():
            pkg_root = pkg_root.parent
        sys.path.insert(0, str(pkg_root.parent))
        try:
            modname = ".".join(path.relative_to(pkg_root.parent).with_suffix("").parts)
            return importlib.import_module(modname)
        finally:
            sys.path.pop(0)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def trace_truth(
    model,
    inputs,
    files: set[str],
    direct_only: bool = False,
    external: dict | None = None,
    ran_at: dict | None = None,
    watch=None,
):
    """(warned, executed): {file: {line}} for TracerWarnings raised from, and lines run in, files.

    A warning is attributed to the innermost frame in files; with direct_only, only when the warning is
    raised at that line itself, not inside torch on its behalf (`F.embedding`'s padding_idx check, a
    tensor formatted by `Tensor.__format__`), which then go to `external` (innermost frame in files).

    With `watch` (file -> the lines to watch), `ran_at` receives, per file, the source spans (line, col,
    end_line, end_col) of the bytecode instructions run on those lines: which operands of an `and`/`or`
    or arms of a ternary ran, which line events cannot tell."""
    import torch

    warned: dict[str, set[int]] = {}
    ran_code: dict[str, set] = {}
    external = {} if external is None else external
    executed: dict[str, set[int]] = {}
    resolved: dict[str, str] = {}

    def real(filename: str) -> str:
        fn = resolved.get(filename)
        if fn is None:
            fn = resolved[filename] = str(Path(filename).resolve())
        return fn

    def hook(message, category, filename, lineno, file=None, line=None):
        if not issubclass(category, torch.jit.TracerWarning):
            return
        if direct_only:
            fn = real(filename)
            if fn in files:
                warned.setdefault(fn, set()).add(lineno)
                return
        for fr in inspect.stack()[1:]:
            fn = real(fr.filename)
            if fn in files:
                (external if direct_only else warned).setdefault(fn, set()).add(fr.lineno)
                return

    def tracer(frame, event, arg):
        fn = real(frame.f_code.co_filename)
        if fn not in files:
            return None
        if event == "line":
            executed.setdefault(fn, set()).add(frame.f_lineno)
            if watch is not None:
                # opcode events cost a callback per instruction: only on the lines asked for
                frame.f_trace_opcodes = frame.f_lineno in watch(fn)
        elif event == "opcode":
            ran_code.setdefault(fn, set()).add((frame.f_code, frame.f_lasti))
        return tracer

    with observing(hook, tracer):
        torch.jit.trace(model, inputs, check_trace=False, strict=False)
    if ran_at is not None:
        for fn, spans in source_spans(ran_code).items():
            ran_at.setdefault(fn, set()).update(spans)
    return warned, executed


def source_spans(ran_code: dict) -> dict:
    """{file: {(code, instruction offset)}} from opcode events -> {file: {(line, end_line, col, end_col)}}, the
    source spans of those instructions (`co_positions`)."""
    out: dict = {}
    for fn, pairs in ran_code.items():
        spans = out.setdefault(fn, set())
        table: dict = {}
        for code, lasti in pairs:
            if code not in table:
                table[code] = list(code.co_positions())  # one entry per 2-byte code unit
            p = table[code][lasti // 2]
            if None not in p:
                spans.add(p)
    return out


@contextlib.contextmanager
def observing(on_warning, line_tracer):
    """Every warning goes to on_warning (warnings.showwarning's signature) and every frame to line_tracer
    (sys.settrace's) while the block runs; both are restored after, even when it raises."""
    old_show = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = on_warning
        sys.settrace(line_tracer)
        try:
            yield
        finally:
            sys.settrace(None)
            warnings.showwarning = old_show
