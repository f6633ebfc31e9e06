"""The export stage: export a module, validate the ONNX graph, and prove it matches eager PyTorch on inputs
that take every branch. The only part of tracesafe that imports torch (it needs the `export` extra)."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import io
import json
import logging
import os
import re
import signal
import sys
import tempfile
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import libcst as cst

from tracesafe.analyzer import Config, Finding, check_source
from tracesafe.analyzer.engine import positions
from tracesafe.analyzer.project import dotted

EXPORTERS = ("script", "dynamo", "trace")
DEFAULT_OPSET = {"script": 17, "trace": 17, "dynamo": 18}
DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int8", "uint8", "bool")
CONTROL_FLOW_OPS = ("If", "Loop", "Scan", "Where")


class UsageError(Exception):
    """Bad input to the export stage: exit 2 with this one line."""


@dataclass
class InputSpec:
    shape: tuple[int, ...]
    dtype: str = "float32"

    def __str__(self) -> str:
        return "x".join(map(str, self.shape)) + ":" + self.dtype


def parse_input(text: str) -> InputSpec:
    """`2x3`, `2,3`, `2x3:int64`, `:float32` (a 0-d tensor)."""
    shape_s, _, dtype = text.strip().partition(":")
    dtype = dtype.strip() or "float32"
    if dtype not in DTYPES:
        raise UsageError(f"--input {text!r}: unknown dtype {dtype!r} (one of {', '.join(DTYPES)})")
    shape_s = shape_s.strip().strip("[]()")
    if not shape_s:
        return InputSpec((), dtype)
    parts = re.split(r"\s*[x,×]\s*", shape_s)
    if not all(re.fullmatch(r"\d+", p) for p in parts):
        raise UsageError(f"--input {text!r}: a shape is sizes joined by `x`, e.g. 2x3 or 2x3:int64")
    shape = tuple(int(p) for p in parts)
    if any(s == 0 for s in shape):
        raise UsageError(f"--input {text!r}: sizes must be at least 1")
    return InputSpec(shape, dtype)


@dataclass
class Case:
    name: str
    eager: str = ""  # summary of the eager output
    match: Optional[bool] = None
    detail: str = ""
    branches: dict = field(default_factory=dict)  # "line" -> True/False side taken
    output_shapes: list = field(default_factory=list)  # eager: each output's shape (None: not a tensor)


@dataclass
class Branch:
    line: int
    code: str
    text: str
    owner: str = ""  # the class (or function) whose code holds it
    sides: dict = field(default_factory=dict)  # "true"/"false" -> [case names]
    parity: dict = field(default_factory=dict)  # "true"/"false" -> all matched there?


@dataclass
class ExportReport:
    target: str
    exporter: str
    opset: int
    output: Optional[str] = None
    exported: bool = False
    checker: Optional[str] = None  # None = passed; else the checker's message
    error: Optional[str] = None
    error_location: Optional[str] = None  # path:line in the user's code
    notes: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    control_flow: dict = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    cases: list[Case] = field(default_factory=list)
    branches: list[Branch] = field(default_factory=list)
    # how the eager outputs' shapes differ between inputs of one shape (None: they do not)
    signature: Optional[str] = None

    @property
    def parity_ok(self) -> bool:
        ran = [c for c in self.cases if c.match is not None]
        return bool(ran) and all(c.match for c in ran)

    @property
    def ok(self) -> bool:
        return self.exported and self.checker is None and self.error is None and self.parity_ok and \
            self.signature is None

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target, "exporter": self.exporter, "opset": self.opset, "output": self.output,
            "ok": self.ok, "exported": self.exported,
            # a check that never ran did not pass
            "checker": "not run" if not self.exported else "passed" if self.checker is None else self.checker,
            "error": self.error, "error_location": self.error_location, "notes": self.notes,
            "findings": [f.to_json() for f in self.findings], "control_flow": self.control_flow,
            "inputs": self.inputs, "outputs": self.outputs,
            "signature": "fixed" if self.signature is None else self.signature,
            "cases": [vars(c) for c in self.cases],
            "branches": [{"line": b.line, "code": b.code, "text": b.text, "sides": b.sides, "parity": b.parity}
                         for b in self.branches],
        }

    def text(self) -> str:
        return "".join([self.header(), self.body(), *map(self.case_line, self.cases), self.tail()])

    def header(self) -> str:
        return f"{self.target}: export with `{self.exporter}` (opset {self.opset})\n"

    @staticmethod
    def case_line(c: Case) -> str:
        verdict = {True: "match", False: "MISMATCH", None: "skipped"}[c.match]
        return f"  input {c.name:<14} eager {c.eager:<28} onnx {verdict}{': ' + c.detail if c.detail else ''}\n"

    def body(self) -> str:
        """What the export and the checker said, and the findings that explain it."""
        out = []
        if self.error:
            where = f" at {self.error_location}" if self.error_location else ""
            out.append(f"  export FAILED{where}: {self.error}")
        else:
            out.append(f"  exported: {self.output or '(not kept; use -o FILE)'}")
            out.append("  checker (full_check): " + ("passed" if self.checker is None else f"FAILED: {self.checker}"))
            ops = ", ".join(f"{k} x{v}" for k, v in self.control_flow.items()) or "none"
            out.append(f"  control flow kept: {ops}")
            out.append(f"  inputs: {', '.join(self.inputs)}")
            out.append(f"  outputs: {', '.join(self.outputs)}")
        for f in self.findings:
            out.append(f"  {f.path}:{f.line}:{f.column}: {f.code} {f.message}")
        return "".join(line + "\n" for line in out)

    def tail(self) -> str:
        out = []
        if self.signature:
            out.append(f"  output signature differs between inputs of one shape: {self.signature}")
        for b in self.branches:
            sides = []
            for side in ("true", "false"):
                took = b.sides.get(side)
                if not took:
                    sides.append(f"{side}: not taken")
                else:
                    sides.append(f"{side}: {'match' if b.parity.get(side) else 'MISMATCH'} ({', '.join(took)})")
            out.append(f"  branch line {b.line} `{b.text}`: " + "; ".join(sides))
        for n in self.notes:
            out.append(f"  note: {n}")
        out.append("  result: " + ("PASS" if self.ok else "FAIL"))
        return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------- loading
def load_module(path: str | Path):
    """Import a Python file as part of its package (so relative imports work)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    path = path.resolve()
    pkg_root = path.parent
    if (pkg_root / "__init__.py").exists():
        while (pkg_root.parent / "__init__.py").exists():
            pkg_root = pkg_root.parent
        base = pkg_root.parent
        modname = ".".join(path.relative_to(base).with_suffix("").parts)
    else:
        base, modname = path.parent, path.stem
    sys.path.insert(0, str(base))
    try:
        if modname in sys.modules and getattr(sys.modules[modname], "__file__", None) != str(path):
            del sys.modules[modname]
        if not all(p.isidentifier() for p in modname.split(".")) or "." in modname and base == path.parent:
            # a file name that is not a module name (seed.flag.py): load it under a safe one
            modname = "tracesafe_user_" + re.sub(r"\W", "_", path.stem)
            spec = importlib.util.spec_from_file_location(modname, path)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[modname] = mod  # dynamo looks the module up while compiling torch.cond
            spec.loader.exec_module(mod)
            return mod
        return importlib.import_module(modname)
    except SyntaxError as e:
        raise UsageError(f"{path}:{e.lineno}: syntax error: {e.msg}") from None
    except Exception as e:  # noqa: BLE001 - the user's module failed to import: say so in one line
        raise UsageError(f"{path}: import failed: {type(e).__name__}: {_first_line(e)}") from None
    finally:
        sys.path.remove(str(base))


def build_module(mod, class_name: str, init: Optional[dict]):
    import torch

    cls = getattr(mod, class_name, None)
    if cls is None:
        classes = sorted(n for n, v in vars(mod).items() if inspect.isclass(v) and issubclass(v, torch.nn.Module)
                         and v.__module__ == mod.__name__)
        raise UsageError(f"no class {class_name!r} in {mod.__file__} (modules there: {', '.join(classes) or 'none'})")
    if not (inspect.isclass(cls) and issubclass(cls, torch.nn.Module)):
        raise UsageError(f"{class_name} is not a torch.nn.Module subclass")
    try:
        model = cls(**(init or {}))
    except TypeError as e:
        raise UsageError(f"cannot construct {class_name}: {_first_line(e)} (pass its arguments with --init JSON)") \
            from None
    except Exception as e:  # noqa: BLE001
        raise UsageError(f"{class_name}(...) raised {type(e).__name__}: {_first_line(e)}") from None
    return model.eval()


def _root_cause(e: BaseException) -> BaseException:
    seen = set()
    while (e.__cause__ or e.__context__) is not None and id(e) not in seen:
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return e


_INNER_ERROR = re.compile(r"^\s*(?:builtins\.)?([A-Za-z_][\w.]*(?:Error|Exception)): (.+)$")


def _error_text(e: BaseException) -> str:
    """`Type: message` of the error; for TorchScript's "The following operation failed in the TorchScript
    interpreter" wrapper, the error it reports inside (`RuntimeError: mat1 and mat2 shapes cannot...`)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    if "failed in the TorchScript interpreter" in text:
        inner = [m for m in map(_INNER_ERROR.match, text.splitlines()) if m]
        if inner:
            return f"{inner[-1].group(1).rsplit('.', 1)[-1]}: {inner[-1].group(2).strip()}"
    return f"{type(e).__name__}: {_first_line(e)}"


def _first_line(e: BaseException) -> str:
    s = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
    return s.splitlines()[0] if s else type(e).__name__


# ---------------------------------------------------------------------------------------------- inputs
def _candidates(specs: list[InputSpec], dynamic_batch: bool):
    """(name, tensors) that tend to drive branches one way or the other; with a dynamic batch axis also
    batch 1 (where the dynamo exporter was measured to specialize silently) and batch + 1."""
    import torch

    def make(fill, spec, shape=None):
        shape = spec.shape if shape is None else shape
        dt = getattr(torch, spec.dtype)
        if dt == torch.bool:
            return {"zeros": torch.zeros(shape, dtype=dt), "ones": torch.ones(shape, dtype=dt)}.get(
                fill, torch.rand(shape) > 0.5)
        if not dt.is_floating_point:
            table = {"zeros": 0, "ones": 1, "negatives": -1, "large": 100}
            if fill in table:
                return torch.full(shape, table[fill], dtype=dt)
            return torch.randint(0, 10, shape, dtype=dt)
        table = {"zeros": 0.0, "ones": 1.0, "negatives": -1.0, "large": 1000.0}
        if fill in table:
            return torch.full(shape, table[fill], dtype=dt)
        return (torch.randn(shape) if fill.startswith("randn") else torch.rand(shape)).to(dt)

    out = []
    for fill in ("zeros", "ones", "negatives", "large", "randn-0", "randn-1", "rand-2"):
        if "-" in fill:
            torch.manual_seed(int(fill.rsplit("-", 1)[1]))
        out.append((fill, [make(fill, s) for s in specs]))
    if dynamic_batch:
        b = specs[0].shape[0]
        for size in sorted({1, b + 1} - {b}):
            torch.manual_seed(size)
            out.append((f"batch{size}-randn", [make("randn", s, (size, *s.shape[1:])) for s in specs]))
            out.append((f"batch{size}-zeros", [make("zeros", s, (size, *s.shape[1:])) for s in specs]))
    return out


def _flatten(value) -> list:
    if value is None:
        return [None]
    if isinstance(value, (list, tuple)):
        return [v for x in value for v in _flatten(x)]
    if isinstance(value, dict):
        return [v for x in value.values() for v in _flatten(x)]
    return [value]


def _summary(value) -> str:
    parts = []
    for v in _flatten(value):
        if v is None:
            parts.append("None")
        elif hasattr(v, "shape"):
            parts.append(f"{tuple(v.shape)}")
        else:
            parts.append(type(v).__name__)
    return ", ".join(parts)


def _compare(eager, got) -> tuple[bool, str]:
    import numpy as np
    import torch

    want = _flatten(eager)
    if len(want) != len(got):
        return False, f"{len(got)} outputs, eager has {len(want)}"
    for i, (w, g) in enumerate(zip(want, got)):
        if w is None or g is None:
            if (w is None) != (g is None):
                return False, f"output {i}: eager {'None' if w is None else 'a tensor'}, onnx " \
                              f"{'None' if g is None else 'a tensor'}"
            continue
        if isinstance(g, list):
            g = np.stack(g) if g else np.zeros((0,))
        w = w.detach().numpy() if isinstance(w, torch.Tensor) else np.asarray(w)
        g = np.asarray(g)
        if w.shape != g.shape:
            return False, f"output {i}: shape {g.shape}, eager {w.shape}"
        if w.dtype == np.bool_ or g.dtype == np.bool_:
            if not (w.astype(bool) == g.astype(bool)).all():
                return False, f"output {i}: values differ"
        elif not np.allclose(g.astype(np.float64), w.astype(np.float64), rtol=1e-4, atol=1e-5, equal_nan=True):
            diff = float(np.nanmax(np.abs(g.astype(np.float64) - w.astype(np.float64)))) if w.size else 0.0
            return False, f"output {i}: values differ (max abs diff {diff:.3g})"
    return True, ""


# ---------------------------------------------------------------------------------------------- branches
def _branch_points(source: str, path: str) -> tuple[list[Branch], dict]:
    """Tensor- or size-dependent branches found statically (as for plain tracing), plus torch.cond and
    torch.while_loop call sites; with the line ranges of each `if`'s arms."""
    branches: dict[int, Branch] = {}
    arms: dict[int, tuple] = {}
    try:
        found = check_source(source, path, Config(target="trace", select=["TS101", "TS102", "TS103", "TS108"]))
    except Exception:  # noqa: BLE001 - coverage is best effort; the export verdict does not depend on it
        return [], {}
    lines = source.splitlines()
    for f in found:
        branches.setdefault(f.line, Branch(f.line, f.code, lines[f.line - 1].strip()[:60]))
    tree = cst.parse_module(source)
    pos = positions(tree)
    owners: list[tuple[int, int, str]] = []

    class V(cst.CSTVisitor):
        def visit_ClassDef(self, n):
            p = pos[n]
            owners.append((p.start.line, p.end.line, n.name.value))

        def visit_FunctionDef(self, n):
            p = pos[n]
            owners.append((p.start.line, p.end.line, n.name.value))

        def visit_If(self, n):
            p = pos.get(n)
            if p is None:
                return
            body = pos[n.body]
            orelse = pos[n.orelse] if n.orelse is not None else None
            arms[p.start.line] = ("if", (body.start.line, body.end.line),
                                  (orelse.start.line, orelse.end.line) if orelse else None)

        def visit_While(self, n):
            p = pos.get(n)
            if p is not None:
                arms[p.start.line] = ("while", (pos[n.body].start.line, pos[n.body].end.line), None)

        def visit_Call(self, n):
            name = dotted(n.func) or ""
            if name.endswith(("torch.cond", "torch.while_loop")) or name in ("cond", "while_loop"):
                line = pos[n].start.line
                branches.setdefault(line, Branch(line, name.rsplit(".", 1)[-1], lines[line - 1].strip()[:60]))

    tree.visit(V())
    for b in branches.values():
        outer = [name for start, end, name in owners if start <= b.line <= end]
        b.owner = outer[0] if outer else ""
    return sorted(branches.values(), key=lambda b: b.line), arms


@contextlib.contextmanager
def _record_sides(file: str, branches: list[Branch], arms: dict, taken: dict):
    """Record, per branch line, which sides eager execution took: line events for if/while, a wrapper for
    torch.cond's predicate and torch.while_loop's condition."""
    import torch

    wanted = {b.line for b in branches}
    file = os.path.realpath(file)
    last: dict[int, int] = {}  # frame id -> last line

    def tracer(frame, event, arg):
        if os.path.realpath(frame.f_code.co_filename) != file:
            return None
        if event == "line":
            prev = last.get(id(frame))
            if prev in wanted and prev in arms:
                _kind, body, _orelse = arms[prev]
                ln = frame.f_lineno
                if prev != ln:  # the line after the test: inside the body or not
                    taken.setdefault(prev, set()).add("true" if body[0] <= ln <= body[1] else "false")
            last[id(frame)] = frame.f_lineno
        elif event == "return":
            prev = last.pop(id(frame), None)
            if prev in wanted and prev in arms and arms[prev][0] == "while":
                taken.setdefault(prev, set()).add("false")
        return tracer

    def caller_line():
        for fr in inspect.stack()[2:]:
            if os.path.realpath(fr.filename) == file:
                return fr.lineno
        return None

    orig_cond, orig_loop = torch.cond, torch.while_loop

    def cond(pred, true_fn, false_fn, operands=(), *a, **k):
        line = caller_line()
        if line is not None:
            taken.setdefault(line, set()).add("true" if bool(pred) else "false")
        return orig_cond(pred, true_fn, false_fn, operands, *a, **k)

    def while_loop(cond_fn, body_fn, carried, *a, **k):
        line = caller_line()
        if line is not None:
            first = bool(cond_fn(*carried))
            taken.setdefault(line, set()).add("true" if first else "false")
            if first:
                taken[line].add("false")  # it ran, so it also stopped
        return orig_loop(cond_fn, body_fn, carried, *a, **k)

    torch.cond, torch.while_loop = cond, while_loop
    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        yield
    finally:
        sys.settrace(old)
        torch.cond, torch.while_loop = orig_cond, orig_loop


# ---------------------------------------------------------------------------------------------- export
def _user_location(exc: BaseException, file: str) -> Optional[int]:
    """The deepest line of the user's file in the exception chain's tracebacks or messages."""
    file = os.path.realpath(file)
    best = None
    seen = set()
    e: Optional[BaseException] = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        for fs in traceback.extract_tb(e.__traceback__):
            if os.path.realpath(fs.filename) == file:
                best = fs.lineno
        for m in re.finditer(r'File "([^"]+)", line (\d+)', str(e)):
            if os.path.realpath(m.group(1)) == file:
                best = int(m.group(2))
        e = e.__cause__ or e.__context__
    return best


def _findings_at(line: int, static: list[Finding], path: str, message: str, code: str) -> list[Finding]:
    here = [f for f in static if f.line == line]
    return here or [Finding(path, line, 1, line, 1, code, message, "")]


def _graph_summary(model) -> tuple[dict, list[str], list[str]]:
    counts: dict[str, int] = {}

    def walk(graph):
        for n in graph.node:
            if n.op_type in CONTROL_FLOW_OPS:
                counts[n.op_type] = counts.get(n.op_type, 0) + 1
            for a in n.attribute:
                if a.g is not None and a.g.node:
                    walk(a.g)
                for g in a.graphs:
                    walk(g)

    walk(model.graph)

    def describe(v) -> str:
        t = v.type
        if t.HasField("optional_type"):
            return f"{v.name}: optional<{_tensor_type(t.optional_type.elem_type)}>"
        if t.HasField("sequence_type"):
            return f"{v.name}: sequence<{_tensor_type(t.sequence_type.elem_type)}>"
        return f"{v.name}: {_tensor_type(t)}"

    return counts, [describe(v) for v in model.graph.input], [describe(v) for v in model.graph.output]


def _tensor_type(t) -> str:
    import onnx

    if not t.HasField("tensor_type"):
        return "?"
    tt = t.tensor_type
    dims = [d.dim_param or str(d.dim_value) if (d.dim_param or d.HasField("dim_value")) else "?" for d in tt.shape.dim]
    return f"{onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name}[{','.join(dims)}]"


def _returns_optional(scripted) -> bool:
    try:
        return any("Optional" in repr(r.type) or "?" in str(r.type) for r in scripted.forward.schema.returns)
    except Exception:  # noqa: BLE001
        return False


DEFAULT_TIMEOUT = 60.0


class TimedOut(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: Optional[float], what: str):
    """Raise TimedOut in the running Python code once `seconds` have passed (a model that never ends on
    some input); torch's operators are short, so the interpreter gets back to the signal soon. Without
    SIGALRM (Windows) or off the main thread, no limit."""
    import threading

    if not seconds or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise TimedOut(f"{what} did not finish within {seconds:g} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def export(path: str, class_name: str, inputs: list[InputSpec], *, init: Optional[dict] = None,
           exporter: str = "script", opset: Optional[int] = None, output: Optional[str] = None,
           timeout: Optional[float] = DEFAULT_TIMEOUT, stream: Optional[Callable[[str], None]] = None) -> ExportReport:
    """Export `class_name` from the file at `path`, validate it and check parity on branch-driving inputs.
    Each step (the export, each input's eager and onnxruntime run) gets `timeout` seconds. `stream`, when
    given, receives the text report piece by piece as it happens (ExportReport.text() is the same text).
    Raises UsageError for bad input (missing file, unknown class, bad constructor arguments or opset)."""
    if timeout is not None and timeout <= 0:
        raise UsageError(f"--timeout {timeout:g}: give a number of seconds above 0")
    if output is not None:
        parent = os.path.dirname(os.path.abspath(output))
        if not os.path.isdir(parent):
            raise UsageError(f"-o {output}: directory {os.path.dirname(output) or '.'} does not exist")
        return _export(path, class_name, inputs, init, exporter, opset, output, output, timeout, stream)
    with tempfile.TemporaryDirectory(prefix="tracesafe-") as tmp:
        return _export(path, class_name, inputs, init, exporter, opset, None, os.path.join(tmp, "model.onnx"),
                       timeout, stream)


def _export(path, class_name, inputs, init, exporter, opset, output, out_path, timeout=None,
            stream=None) -> ExportReport:
    say = stream or (lambda _text: None)
    report = _run_export(path, class_name, inputs, init, exporter, opset, output, out_path, timeout, say)
    say(report.tail())
    return report


def _run_export(path, class_name, inputs, init, exporter, opset, output, out_path, timeout, say) -> ExportReport:
    if exporter not in EXPORTERS:
        raise UsageError(f"unknown exporter {exporter!r} (one of {', '.join(EXPORTERS)})")
    if not inputs:
        raise UsageError("give at least one --input SHAPE[:DTYPE]")
    opset = opset or DEFAULT_OPSET[exporter]
    if exporter == "dynamo" and opset < 18:
        raise UsageError(f"the dynamo exporter needs --opset 18 or higher (measured: it writes opset 18 anyway "
                         f"when asked for {opset})")
    if not 7 <= opset <= 23:
        raise UsageError(f"--opset {opset} is outside 7..23")
    mod = load_module(path)
    model = build_module(mod, class_name, init)

    import onnx
    import onnxruntime as ort
    import torch

    for name in ("torch", "onnxscript"):  # their logs go to the real stderr, around our report
        logging.getLogger(name).setLevel(logging.CRITICAL)
    file = mod.__file__
    rel = os.path.relpath(file) if not os.path.relpath(file).startswith("..") else file
    report = ExportReport(f"{rel}:{class_name}", exporter, opset, output)
    say(report.header())
    source = Path(file).read_text(encoding="utf-8", errors="replace")
    try:
        static = check_source(source, rel, Config(target=exporter))
    except Exception:  # noqa: BLE001
        static = []

    example = [c for n, c in _candidates(inputs, False) if n == "randn-0"][0]
    same_batch = all(len(s.shape) >= 1 for s in inputs) and len({s.shape[0] for s in inputs}) == 1
    dynamic_batch = same_batch and (exporter != "dynamo" or inputs[0].shape[0] >= 2)
    params = [p for p in inspect.signature(model.forward).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in params if p.default is p.empty]
    if not len(required) <= len(inputs) <= len(params):
        raise UsageError(f"{class_name}.forward takes {len(required)}"
                         f"{'' if len(required) == len(params) else f'-{len(params)}'} tensor input(s) "
                         f"({', '.join(p.name for p in params)}), got {len(inputs)} --input")
    names = [p.name for p in params][:len(inputs)]
    report.output = output
    sink = io.StringIO()
    caught: list[tuple[type, str, Optional[int]]] = []  # (category, message, line in the user's file)

    def on_warning(message, category, filename, lineno, file_=None, line=None):
        # torch warns from its own frames: the user's line is further up the stack
        at = next((fr.lineno for fr in inspect.stack()[1:] if os.path.realpath(fr.filename) == real), None)
        caught.append((category, str(message), at))

    real = os.path.realpath(file)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), \
                time_limit(timeout, "the export"):
            warnings.simplefilter("always")
            warnings.showwarning = on_warning
            if exporter == "script":
                scripted = torch.jit.script(model)
                if _returns_optional(scripted) and opset < 16:
                    raise UsageError(f"forward returns Optional[...]: the TorchScript exporter writes an invalid "
                                     f"model below opset 16 (asked for {opset}); use --opset 16 or higher")
                torch.onnx.export(scripted, tuple(example), out_path, dynamo=False, opset_version=opset,
                                  input_names=names,
                                  dynamic_axes={n: {0: "batch"} for n in names} if dynamic_batch else None)
            elif exporter == "trace":
                torch.onnx.export(model, tuple(example), out_path, dynamo=False, opset_version=opset,
                                  input_names=names,
                                  dynamic_axes={n: {0: "batch"} for n in names} if dynamic_batch else None)
            else:
                dyn = None
                if dynamic_batch:
                    batch = torch.export.Dim("batch", min=1)
                    dyn = tuple({0: batch} for _ in inputs)
                try:
                    torch.onnx.export(model, tuple(example), out_path, dynamo=True, opset_version=opset,
                                      dynamic_shapes=dyn, verbose=False)
                except Exception as e:  # noqa: BLE001
                    if dyn is None or "GuardOnDataDependent" in str(e) or "data-dependent" in str(e):
                        raise
                    report.notes.append(f"a dynamic batch axis did not export ({_first_line(e)[:80]}); "
                                        f"exported with static shapes")
                    dynamic_batch = False
                    torch.onnx.export(model, tuple(example), out_path, dynamo=True, opset_version=opset,
                                      verbose=False)
        report.exported = True
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001 - an export failure is the report's verdict, not a crash
        root = _root_cause(e)
        report.error = str(root) if isinstance(root, TimedOut) else _error_text(root)[:400]
        line = _user_location(e, file)
        if line is not None:
            report.error_location = f"{rel}:{line}"
            # the failure is a rule's hazard only when the analyzer flagged that line; otherwise it stays
            # the exporter's own error (a shape mismatch is not a tensor-to-bool conversion)
            report.findings = [f for f in static if f.line == line]
        say(report.body())
        return report
    for category, message, line in caught:
        if issubclass(category, torch.jit.TracerWarning) and line is not None:
            for f in _findings_at(line, static, rel, f"tracer: {message.splitlines()[0][:160]}",
                                  _code_for_warning(message)):
                if f not in report.findings:
                    report.findings.append(f)
    report.findings.sort(key=Finding.sort_key)

    model_proto = onnx.load(out_path)
    try:
        onnx.checker.check_model(model_proto, full_check=True)
    except Exception as e:  # noqa: BLE001
        report.checker = _first_line(e)[:300]
    report.control_flow, report.inputs, report.outputs = _graph_summary(model_proto)
    if report.checker is None:
        try:
            sess = ort.InferenceSession(out_path, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001
            report.checker = f"onnxruntime cannot load the model: {_first_line(e)[:300]}"
    say(report.body())
    if report.checker is not None:
        return report

    branches, arms = _branch_points(source, rel)
    shapes_in: dict[str, tuple] = {}
    for name, tensors in _candidates(inputs, dynamic_batch):
        case = Case(name)
        taken: dict[int, set] = {}
        try:
            with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(sink), \
                    time_limit(timeout, "eager PyTorch"):
                warnings.simplefilter("ignore")
                with _record_sides(file, branches, arms, taken):
                    want = model(*[t.clone() for t in tensors])
        except TimedOut as e:
            # a model that does not end on this input proves nothing there: a failure, named
            case.match, case.detail = False, str(e)
            report.cases.append(case)
            say(report.case_line(case))
            continue
        except Exception as e:  # noqa: BLE001 - an input the model itself rejects says nothing about ONNX
            case.detail = f"eager raised {type(e).__name__}: {_first_line(e)[:80]}"
            report.cases.append(case)
            say(report.case_line(case))
            continue
        case.eager = _summary(want)
        case.output_shapes = [list(v.shape) if hasattr(v, "shape") else None for v in _flatten(want)]
        shapes_in[case.name] = tuple(tuple(t.shape) for t in tensors)
        case.branches = {str(k): sorted(v) for k, v in taken.items()}
        try:
            feeds = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), tensors)}
            got = _run_onnx(sess, feeds, timeout)
            case.match, case.detail = _compare(want, got)
        except TimedOut as e:
            case.match, case.detail = False, str(e)
        except Exception as e:  # noqa: BLE001
            case.match, case.detail = False, f"onnxruntime raised {type(e).__name__}: {_first_line(e)[:120]}"
        report.cases.append(case)
        say(report.case_line(case))
        for line, sides in taken.items():
            for b in branches:
                if b.line == line:
                    for side in sides:
                        b.sides.setdefault(side, []).append(name)
                        b.parity[side] = b.parity.get(side, True) and bool(case.match)
    report.signature = _signature_change(report.cases, shapes_in)
    # this class's own branches, and those elsewhere in the file that its inputs reached
    branches = [b for b in branches if b.owner == class_name or b.sides]
    report.branches = branches
    uncovered = [f"line {b.line} {side}" for b in branches for side in ("true", "false") if side not in b.sides]
    if uncovered:
        report.notes.append("no generated input took: " + ", ".join(uncovered) + " (not proven)")
    return report


def _signature_change(cases: list[Case], shapes_in: dict) -> Optional[str]:
    """Where inputs of one shape give an output of different shapes (a placeholder shaped like the input
    on one branch, the real value on the other), the exported graph cannot give that output one fixed
    shape: the ONNX output gets a dynamic dimension the model does not have. None when every output keeps
    its shape (an output that is None on some inputs is an Optional, not a change)."""
    groups: dict[tuple, list[Case]] = {}
    for c in cases:
        if c.name in shapes_in:
            groups.setdefault(shapes_in[c.name], []).append(c)
    for group in groups.values():
        width = max(len(c.output_shapes) for c in group)
        for i in range(width):
            seen: dict[tuple, Case] = {}
            for c in group:
                shape = c.output_shapes[i] if i < len(c.output_shapes) else None
                if shape is not None:
                    seen.setdefault(tuple(shape), c)
            # a shape that follows the data (torch.nonzero) is the model's own; one that follows a branch is
            # a signature the graph cannot keep
            if len(seen) > 1 and len({repr(sorted(c.branches.items())) for c in seen.values()}) > 1:
                return f"output {i} is " + ", ".join(f"{s} on {c.name}" for s, c in seen.items()) + \
                    " (they took different branches)"
    return None


def _run_onnx(sess, feeds: dict, timeout: Optional[float]):
    """sess.run under the time limit: onnxruntime's C++ loop does not see Python signals, so a timer
    thread asks it to stop through RunOptions.terminate."""
    import threading

    import onnxruntime as ort

    if not timeout:
        return sess.run(None, feeds)
    opts = ort.RunOptions()
    timer = threading.Timer(timeout, lambda: setattr(opts, "terminate", True))
    timer.start()
    try:
        return sess.run(None, feeds, opts)
    except Exception as e:  # noqa: BLE001
        if opts.terminate:
            raise TimedOut(f"onnxruntime did not finish within {timeout:g} s") from None
        raise
    finally:
        timer.cancel()


def _code_for_warning(message: str) -> str:
    m = message.lower()
    if "iterating over a tensor" in m:
        return "TS107"
    if "python boolean" in m:
        return "TS104"
    return "TS106"


def report_json(report: ExportReport) -> str:
    return json.dumps(report.to_json(), indent=2) + "\n"
