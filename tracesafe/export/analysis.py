"""What `check` says about the model's code, and where in it the exporter failed.

Contract: `Static.of(built, exporter)` analyses the model's class file as `check` would, following its reach
into every other file (helpers of the user's package, a library's model files): `findings` are what
`check --target <exporter>` reports on any of those files, `branches` the tensor- and size-dependent
branches (as plain tracing sees them) plus `torch.cond`/`torch.while_loop` call sites in them, with their
arms. `user_location(exc)` is the innermost frame of the user's code in an exception (tracebacks and
TorchScript's `File "...", line N` alike); `rule_at(file, line)` the findings `check` gives that line."""

from __future__ import annotations

import ast
import os
import re
import sys
import traceback
from types import FrameType
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from tracesafe.analyzer import Config, Finding
from tracesafe.analyzer.api import analyze_root
from tracesafe.analyzer.project import Project, ast_dotted
from tracesafe.analyzer.source import canonical

from .errors import chain

_BRANCH_CODES = ("TS101", "TS102", "TS103", "TS108")
_LIBS = ("torch", "onnx", "onnxscript", "onnxruntime", "onnx_ir")
_LIB_DIRS: list[str] = []


def _lib_dirs() -> list[str]:
    """Where torch and the ONNX packages live: never the user's code, even in a venv inside their project."""
    if not _LIB_DIRS:
        import importlib.util

        for name in _LIBS:
            spec = importlib.util.find_spec(name)
            if spec is not None and spec.origin:
                _LIB_DIRS.append(os.path.dirname(os.path.realpath(spec.origin)))
    return _LIB_DIRS


@dataclass
class Branch:
    path: str  # as the report spells it
    line: int
    code: str
    text: str
    owner: str = ""  # the class (or function) whose code holds it
    sides: dict = field(default_factory=dict)  # "true"/"false" -> [case names]
    parity: dict = field(default_factory=dict)  # "true"/"false" -> all matched there?

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "line": self.line,
            "code": self.code,
            "text": self.text,
            "sides": self.sides,
            "parity": self.parity,
        }


def spell(path: str) -> str:
    """A path as reports spell it: relative to the cwd when below it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


@dataclass
class Static:
    findings: list[Finding]  # for the exporter's target, on every file reached, paths as spelled
    branches: list[Branch]
    arms: dict  # canonical path -> {line: (kind, body lines, orelse lines or None)}
    roots: list[str]  # directories of the user's code

    @classmethod
    def of(cls, class_file: Optional[str], target_file: str, exporter_target: str, roots: list[str]) -> "Static":
        file = class_file or target_file
        try:
            data = Path(file).read_bytes()
            project = Project()
            found = analyze_root(file, data, Config(target=exporter_target), project).findings
            deps = set(project.deps(file))
            branchy = analyze_root(file, data, Config(target="trace", select=list(_BRANCH_CODES)), project).findings
        except Exception:  # noqa: BLE001 - coverage and rules are best effort; the verdict does not depend on them
            return cls([], [], {}, roots)
        findings = sorted({_respell(f) for f in found}, key=Finding.sort_key)
        files = {canonical(file), *(canonical(d) for d in deps)}
        if target_file != file:
            files.add(canonical(target_file))
        branches: dict[tuple, Branch] = {}
        arms: dict[str, dict] = {}
        by_file: dict[str, list[Finding]] = {}
        for f in branchy:
            by_file.setdefault(canonical(f.path), []).append(f)
        for real in sorted(files):
            try:
                text = Path(real).read_text(encoding="utf-8", errors="replace")
                tree = ast.parse(text)
            except (OSError, SyntaxError, ValueError):
                continue
            lines = text.splitlines()
            file_arms, calls, owners = _scan(tree)
            here: dict[int, Branch] = {}
            for f in by_file.get(real, ()):
                here.setdefault(f.line, Branch(spell(real), f.line, f.code, lines[f.line - 1].strip()[:60]))
            for line, name in calls:
                here.setdefault(line, Branch(spell(real), line, name, lines[line - 1].strip()[:60]))
            if not here:
                continue
            arms[real] = file_arms
            for b in here.values():
                outer = [name for start, end, name in owners if start <= b.line <= end]
                b.owner = outer[0] if outer else ""
                branches[(real, b.line)] = b
        return cls(findings, [branches[k] for k in sorted(branches)], arms, roots)

    # ----------------------------------------------------------------------------------------- user code
    def is_user(self, filename: str) -> bool:
        if not os.path.isabs(filename) and not os.path.exists(filename):
            return False  # "<string>", "<frozen ...>": code with no file
        real = os.path.realpath(filename)
        return any(real.startswith(r + os.sep) for r in self.roots) and not any(
            real.startswith(d + os.sep) for d in _lib_dirs()
        )

    def user_location(self, exc: BaseException) -> Optional[tuple[str, int]]:
        """The deepest frame of the user's code in the exception chain's tracebacks or messages."""
        best: Optional[tuple[str, int]] = None
        for e in chain(exc):
            for fs in traceback.extract_tb(e.__traceback__):
                if self.is_user(fs.filename) and fs.lineno is not None:
                    best = (fs.filename, fs.lineno)
            for m in re.finditer(r'File "([^"]+)", line (\d+)', str(e)):
                if self.is_user(m.group(1)):
                    best = (m.group(1), int(m.group(2)))
        return best

    def user_frame(self) -> Optional[tuple[str, int]]:
        """The innermost frame of the user's code on the current stack (a warning raised inside torch)."""
        fr: Optional[FrameType] = sys._getframe(1)
        while fr is not None:
            if self.is_user(fr.f_code.co_filename):
                return fr.f_code.co_filename, fr.f_lineno
            fr = fr.f_back
        return None

    def rule_at(self, filename: str, line: int) -> list[Finding]:
        real = canonical(filename)
        return [f for f in self.findings if canonical(f.path) == real and f.line <= line <= f.end_line]


def _respell(f: Finding) -> Finding:
    return Finding(
        spell(canonical(f.path)), f.line, f.column, f.end_line, f.end_column, f.code, f.message, f.function, f.fix
    )


def _scan(tree: ast.Module):
    """A file's `if`/`while` arms (line ranges), torch.cond/while_loop call lines, and class/function spans."""
    arms: dict[int, tuple] = {}
    calls: list[tuple[int, str]] = []
    owners: list[tuple[int, int, str]] = []
    for n in ast.walk(tree):
        if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            owners.append((n.lineno, n.end_lineno or n.lineno, n.name))
        elif isinstance(n, ast.If):
            body = (n.body[0].lineno, n.body[-1].end_lineno or n.body[-1].lineno)
            orelse = (n.orelse[0].lineno, n.orelse[-1].end_lineno or n.orelse[-1].lineno) if n.orelse else None
            arms[n.lineno] = ("if", body, orelse)
        elif isinstance(n, ast.While):
            arms[n.lineno] = ("while", (n.body[0].lineno, n.body[-1].end_lineno or n.body[-1].lineno), None)
        elif isinstance(n, ast.Call):
            name = ast_dotted(n.func) or ""
            if name.endswith(("torch.cond", "torch.while_loop")) or name in ("cond", "while_loop"):
                calls.append((n.lineno, name.rsplit(".", 1)[-1]))
    # outermost first: a branch belongs to its class (or module-level function)
    owners.sort(key=lambda o: o[0] - o[1])
    return arms, calls, owners
