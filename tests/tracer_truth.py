"""Ground truth from the tracer: which lines torch.jit.trace warns on, and which lines it executes."""

from __future__ import annotations

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


def trace_truth(model, inputs, files: set[str]):
    """(warned, executed): {file: {line}} for TracerWarnings raised from, and lines run in, files."""
    import torch

    warned: dict[str, set[int]] = {}
    executed: dict[str, set[int]] = {}

    def hook(message, category, filename, lineno, file=None, line=None):
        if not issubclass(category, torch.jit.TracerWarning):
            return
        for fr in inspect.stack()[1:]:
            fn = str(Path(fr.filename).resolve())
            if fn in files:
                warned.setdefault(fn, set()).add(fr.lineno)
                return

    def tracer(frame, event, arg):
        fn = str(Path(frame.f_code.co_filename).resolve())
        if fn not in files:
            return None
        if event == "line":
            executed.setdefault(fn, set()).add(frame.f_lineno)
        return tracer

    old_show = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = hook
        sys.settrace(tracer)
        try:
            torch.jit.trace(model, inputs, check_trace=False, strict=False)
        finally:
            sys.settrace(None)
            warnings.showwarning = old_show
    return warned, executed
