"""Files, modules and names: parse on demand, resolve imports and classes across the scanned tree."""

from __future__ import annotations

import ast
import gc
import hashlib
import io
import os
import time
import tokenize
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import libcst as cst


class SourceError(Exception):
    """A file that cannot be read or parsed; the message is one line and names no path."""


def dotted(node: cst.BaseExpression) -> Optional[str]:
    """``a.b.c`` for a Name/Attribute chain, else None."""
    parts = []
    while isinstance(node, cst.Attribute):
        parts.append(node.attr.value)
        node = node.value
    if isinstance(node, cst.Name):
        parts.append(node.value)
        return ".".join(reversed(parts))
    return None


def decode(data: bytes) -> str:
    """Decode Python source bytes honouring a BOM and a PEP 263 coding cookie."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        text = data.decode(encoding)
    except (SyntaxError, UnicodeDecodeError, LookupError) as e:
        raise SourceError(f"cannot decode source: {str(e).splitlines()[0]}") from None
    return text[1:] if text.startswith("\ufeff") else text


def cpython_syntax_error(text: str) -> Optional[str]:
    """CPython's one-line syntax error for text, or None when `ast` accepts it (ValueError, RecursionError
    and MemoryError propagate)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(text)
    except SyntaxError as e:
        return f"syntax error at {e.lineno}:{e.offset}: {e.msg}"
    return None


def parse_source(source: str | bytes) -> tuple[cst.Module, str]:
    """Parse with libcst, turning every failure into a one-line SourceError."""
    text = decode(source) if isinstance(source, bytes) else source
    if "\x00" in text:
        raise SourceError("source contains a NUL byte")
    # the cyclic GC finds nothing to free in a fresh (acyclic) tree but rescans it while it is built:
    # measured, it doubles libcst's parse time on model files
    enabled = gc.isenabled()
    gc.disable()
    try:
        return cst.parse_module(text), text
    except cst.ParserSyntaxError as e:
        # CPython's message names the real problem ("'(' was never closed"); libcst's lists tokens
        try:
            err = cpython_syntax_error(text)
        except (ValueError, RecursionError, MemoryError):
            err = None
        if err:
            raise SourceError(err) from None
        msg = str(e.message).strip().splitlines()[0] if e.message else "invalid syntax"
        raise SourceError(f"syntax error at {e.raw_line}:{e.raw_column + 1}: {msg}") from None
    except (UnicodeDecodeError, LookupError, SyntaxError) as e:
        raise SourceError(f"cannot decode source: {e}".splitlines()[0]) from None
    except RecursionError:
        raise SourceError("source is nested too deeply to parse") from None
    finally:
        if enabled:
            gc.enable()


# seconds spent per phase in this process (the benchmark's profile; a few perf_counter calls per file)
PHASES: dict[str, float] = {"modules parsed": 0, "parse": 0.0, "reach+infer": 0.0, "rules+positions": 0.0, "fix planning": 0.0}

@dataclass
class ClassInfo:
    name: str
    node: cst.ClassDef
    module: "ModuleInfo"
    bases: list[str]  # qualified names of the bases
    methods: dict[str, cst.FunctionDef] = field(default_factory=dict)
    tensor_attrs: Optional[set] = None  # computed once per parse, shared by every analysis that reaches it

    @property
    def qualname(self) -> str:
        return f"{self.module.modname}.{self.name}"


@dataclass
class ModuleInfo:
    path: str  # as the user gave it / as discovered
    text: str
    modname: str
    package: str
    tree: cst.Module
    imports: dict[str, str]  # local name -> qualified name
    functions: dict[str, cst.FunctionDef]
    classes: dict[str, ClassInfo]
    positions: object = field(default=None, repr=False, compare=False)  # computed once, when reported on
    positions_partial: Optional[set] = field(default=None, repr=False, compare=False)  # functions covered, if partial
    lines: Optional[list] = field(default=None, repr=False, compare=False)  # split once, for noqa comments

    def qualify(self, expr: cst.BaseExpression) -> Optional[str]:
        """Qualified name of a Name/Attribute chain through this module's imports."""
        d = dotted(expr)
        if d is None:
            return None
        head, _, rest = d.partition(".")
        if head in self.imports:
            base = self.imports[head]
        elif head in self.classes or head in self.functions:
            base = f"{self.modname}.{head}"
        else:
            base = head
        return f"{base}.{rest}" if rest else base


def module_name_for(path: Path) -> tuple[Path, str, str]:
    """(sys.path root, module name, package) for a file, walking up through ``__init__.py`` dirs."""
    path = path.resolve()
    parts = [] if path.stem == "__init__" else [path.stem]
    d = path.parent
    while (d / "__init__.py").is_file() and d.parent != d:
        parts.insert(0, d.name)
        d = d.parent
    modname = ".".join(parts) or path.parent.name
    if path.stem == "__init__":
        package = modname
    else:
        package = ".".join(parts[:-1])
    return d, modname, package


def _resolve_relative(package: str, level: int, module: Optional[str]) -> str:
    base = package.split(".") if package else []
    if level > 1:
        base = base[: len(base) - (level - 1)] if level - 1 <= len(base) else []
    if module:
        base = base + module.split(".")
    return ".".join(base)


def import_map(tree: cst.Module, package: str) -> dict[str, str]:
    out: dict[str, str] = {}

    def visit(stmts):
        for stmt in stmts:
            if isinstance(stmt, cst.SimpleStatementLine):
                for small in stmt.body:
                    if isinstance(small, cst.Import):
                        for alias in small.names:
                            name = dotted(alias.name)
                            if name is None:
                                continue
                            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                                out[alias.asname.name.value] = name
                            else:
                                head = name.split(".")[0]
                                out.setdefault(head, head)
                    elif isinstance(small, cst.ImportFrom):
                        if isinstance(small.names, cst.ImportStar):
                            continue
                        mod = dotted(small.module) if small.module is not None else None
                        if small.relative:
                            mod = _resolve_relative(package, len(small.relative), mod)
                        if not mod:
                            continue
                        for alias in small.names:
                            name = dotted(alias.name)
                            if name is None:
                                continue
                            local = name
                            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                                local = alias.asname.name.value
                            out[local] = f"{mod}.{name}"
            elif isinstance(stmt, (cst.If, cst.Try)):
                # imports under `if TYPE_CHECKING:` / `try: ... except ImportError:`
                visit(stmt.body.body)
                if isinstance(stmt, cst.Try):
                    for h in stmt.handlers:
                        visit(h.body.body)
                elif stmt.orelse is not None and isinstance(stmt.orelse, cst.Else):
                    visit(stmt.orelse.body.body)

    visit(tree.body)
    return out


def build_module(path: str, text: str, tree: cst.Module, modname: str, package: str) -> ModuleInfo:
    imports = import_map(tree, package)
    functions: dict[str, cst.FunctionDef] = {}
    classes: dict[str, ClassInfo] = {}
    info = ModuleInfo(path, text, modname, package, tree, imports, functions, classes)

    def visit(stmts):
        for stmt in stmts:
            if isinstance(stmt, cst.FunctionDef):
                functions[stmt.name.value] = stmt
            elif isinstance(stmt, cst.ClassDef):
                classes[stmt.name.value] = ClassInfo(stmt.name.value, stmt, info, [])
            elif isinstance(stmt, cst.If):
                visit(stmt.body.body)
                if isinstance(stmt.orelse, cst.Else):
                    visit(stmt.orelse.body.body)

    visit(tree.body)
    for ci in classes.values():
        ci.bases = [q for q in (info.qualify(a.value) for a in ci.node.bases if a.keyword is None) if q]
        for stmt in ci.node.body.body if isinstance(ci.node.body, cst.IndentedBlock) else ():
            if isinstance(stmt, cst.FunctionDef):
                ci.methods[stmt.name.value] = stmt
    return info


_NOT_MODULES = {"Parameter", "UninitializedParameter", "UninitializedBuffer", "Buffer"}


class Project:
    """Parses files on demand and resolves qualified names to the scanned tree's definitions."""

    def __init__(self, sources: Optional[dict[str, str | bytes]] = None):
        self._by_path: dict[str, Optional[ModuleInfo]] = {}
        self._by_mod: dict[str, Optional[ModuleInfo]] = {}
        self._roots: list[Path] = []
        self._sources = sources  # in-memory overrides (check_source, tests)
        self.loaded: dict[str, str] = {}  # path -> content hash of every file read on demand
        self.touched: set[str] = set()  # paths of on-demand modules used since the last reset

    def add_module(self, path: str, source: str | bytes, modname: Optional[str] = None) -> ModuleInfo:
        t0 = time.perf_counter()
        try:
            tree, text = parse_source(source)
        finally:
            PHASES["parse"] += time.perf_counter() - t0
            PHASES["modules parsed"] += 1
        package = ""
        if modname is None:
            p = Path(path)
            if p.suffix == ".py" and p.exists():
                root, modname, package = module_name_for(p)
                if root not in self._roots:
                    self._roots.append(root)
            else:
                modname = p.stem or "__main__"
        info = build_module(path, text, tree, modname, package)
        self._by_path[path] = info
        self._by_mod.setdefault(modname, info)
        return info

    def root_module(self, path: str, data: bytes | str) -> ModuleInfo:
        """The module for a file being checked: reused when another root already parsed it as a helper."""
        info = self._by_path.get(path)
        if info is not None and isinstance(data, bytes) and path in self.loaded and \
                self.loaded[path] == hashlib.blake2b(data, digest_size=16).hexdigest():
            return info
        return self.add_module(path, data)

    def module(self, modname: str) -> Optional[ModuleInfo]:
        """The tree's module of that name, parsed on first use (None when not in the tree)."""
        if modname in self._by_mod:
            info = self._by_mod[modname]
            if info is not None and info.path in self.loaded:
                self.touched.add(info.path)
            return info
        self._by_mod[modname] = None
        rel = Path(*modname.split("."))
        for root in list(self._roots):
            for cand in (root / rel.with_suffix(".py"), root / rel / "__init__.py"):
                if cand.is_file():
                    try:
                        data = cand.read_bytes()
                        info = self.add_module(os.path.relpath(cand), data, None)
                    except (OSError, SourceError):
                        return None
                    self.loaded[info.path] = hashlib.blake2b(data, digest_size=16).hexdigest()
                    self.touched.add(info.path)
                    self._by_mod[modname] = info
                    return info
        return None

    def lookup(self, qualname: str):
        """Resolve ``pkg.mod.name`` to ('function'|'class'|'module', ModuleInfo, object)."""
        parts = qualname.split(".")
        for i in range(len(parts) - 1, 0, -1):
            if parts[0] == "torch":
                return None
            mod = self.module(".".join(parts[:i]))
            if mod is None:
                continue
            rest = parts[i:]
            if len(rest) == 1:
                name = rest[0]
                if name in mod.functions:
                    return ("function", mod, mod.functions[name])
                if name in mod.classes:
                    return ("class", mod, mod.classes[name])
                if name in mod.imports and mod.imports[name] != qualname:
                    return self.lookup(mod.imports[name])
                sub = self.module(qualname)
                if sub is not None:
                    return ("module", sub, sub)
            return None
        return None

    def resolve_class(self, qualname: str) -> Optional[ClassInfo]:
        hit = self.lookup(qualname)
        if hit and hit[0] == "class":
            return hit[2]
        return None

    def base_class(self, ci: ClassInfo, base: str) -> Optional[ClassInfo]:
        """The in-tree class a qualified base name refers to (same module first)."""
        if base.startswith(ci.module.modname + "."):
            local = ci.module.classes.get(base.rsplit(".", 1)[-1])
            if local is not None:
                return local
        return self.resolve_class(base)

    def is_module_class(self, ci: ClassInfo, _seen: Optional[set] = None) -> bool:
        seen = _seen if _seen is not None else set()
        if ci.qualname in seen:
            return False
        seen.add(ci.qualname)
        for base in ci.bases:
            if base.startswith("torch.nn."):
                last = base.rsplit(".", 1)[-1]
                if last[:1].isupper() and last not in _NOT_MODULES:
                    return True
                continue
            target = self.base_class(ci, base)
            if target is not None and self.is_module_class(target, seen):
                return True
        return False

    def mro(self, ci: ClassInfo) -> list[ClassInfo]:
        """The class and its in-tree bases, depth first (good enough for method lookup)."""
        out, stack, seen = [], [ci], set()
        while stack:
            c = stack.pop(0)
            if c.qualname in seen:
                continue
            seen.add(c.qualname)
            out.append(c)
            for base in c.bases:
                if base.startswith("torch."):
                    continue
                target = self.base_class(c, base)
                if target is not None:
                    stack.append(target)
        return out
