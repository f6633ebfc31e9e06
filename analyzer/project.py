"""Files, modules and names: parse on demand, resolve imports and classes across the scanned tree."""

from __future__ import annotations

import ast
import gc
import os
import re
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
import typing
from typing import Any, Iterator, Optional, Sequence

import libcst as cst

from .kinds import Kind
from .source import (
    SourceError as SourceError,
    _ast,
    _syntax_message,
    canonical,
    content_hash,
    cpython_syntax_error,
    source_text,
)


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


def _parse_cst(text: str, first_line: int = 1) -> cst.Module:
    """libcst's parse, turning every failure into a one-line SourceError (lines counted from first_line)."""
    # the cyclic GC finds nothing to free in a fresh (acyclic) tree but rescans it while it is built:
    # measured, it doubles libcst's parse time on model files
    enabled = gc.isenabled()
    gc.disable()
    try:
        return cst.parse_module(text)
    except cst.ParserSyntaxError as e:
        # CPython's message names the real problem ("'(' was never closed"); libcst's lists tokens
        try:
            err = cpython_syntax_error(text)
        except (ValueError, RecursionError, MemoryError):
            err = None
        if err:
            raise SourceError(err) from None
        msg = str(e.message).strip().splitlines()[0] if e.message else "invalid syntax"
        raise SourceError(f"syntax error at {e.raw_line + first_line - 1}:{e.raw_column + 1}: {msg}") from None
    except (UnicodeDecodeError, LookupError, SyntaxError) as e:
        raise SourceError(f"cannot decode source: {e}".splitlines()[0]) from None
    except RecursionError:
        raise SourceError("source is nested too deeply to parse") from None
    finally:
        if enabled:
            gc.enable()


def parse_source(source: str | bytes) -> tuple[cst.Module, str]:
    """The whole module with libcst (what `fix` rewrites). Raises a one-line SourceError."""
    text = source_text(source)
    return _parse_cst(text), text


def _parse_ast(text: str) -> ast.Module:
    try:
        return _ast(text)
    except SyntaxError as e:
        raise SourceError(_syntax_message(e)) from None
    except (RecursionError, MemoryError):
        raise SourceError("source is nested too deeply to parse") from None
    except ValueError as e:
        raise SourceError(f"cannot parse source: {e}".splitlines()[0]) from None


# seconds spent per phase in this process (the benchmark's profile; a few perf_counter calls per file)
PHASES: dict[str, float] = {
    "modules indexed": 0,
    "functions parsed": 0,
    "index (ast)": 0.0,
    "parse (libcst)": 0.0,
    "reach+infer": 0.0,
    "rules+positions": 0.0,
    "fix planning": 0.0,
}

NEWLINE = re.compile(r"\r\n|\r|\n")  # CPython's line breaks (not str.splitlines(): no \f, \x1c, \u2028)


class Def:
    """A function or method, located by `ast` when its module is indexed and parsed with libcst only when
    the analysis enters it: most of a repository's functions are never reached from a `forward`, and
    libcst's parse is ten times `ast`'s."""

    __slots__ = ("module", "qualname", "start", "end", "_node", "tree")

    def __init__(self, module: "ModuleInfo", qualname: str, start: int, end: int):
        self.module = module
        self.qualname = qualname  # "f", or "C.m" for a method of a top-level class
        self.start, self.end = start, end  # first line (decorators included) and last line, 1-based
        self._node: Optional[cst.FunctionDef] = None
        self.tree: Optional[cst.Module] = None  # the module the node was parsed in (its codegen settings)

    @property
    def name(self) -> str:
        return self.qualname.rsplit(".", 1)[-1]

    @property
    def indent(self) -> str:
        line = self.module.line_text(self.start)
        return line[: len(line) - len(line.lstrip(" \t\f"))]

    @property
    def node(self) -> cst.FunctionDef:
        """The libcst node (parsed on first use). Raises SourceError when libcst cannot parse it."""
        if self._node is None:
            self._parse()
        assert self._node is not None  # _parse sets it or raises
        return self._node

    def _parse(self) -> None:
        text = self.module.segment(self.start, self.end)
        indent = self.indent
        header = ""
        if indent:
            # an indented definition parses as the body of a class, keeping its own lines byte for byte
            m = NEWLINE.search(text)
            header = "class _:" + (m.group() if m else "\n")
        source = header + text
        shared = self.module.parsed
        hit = shared.get(source) if shared is not None else None
        if hit is not None and self.module not in hit[2]:
            # the same text in another module (transformers copies a helper into every model file):
            # libcst's tree holds no position, so one tree serves both; never twice in one module,
            # whose `computed` positions are keyed by node
            hit[2].add(self.module)
            self._node, self.tree = hit[1], hit[0]
            return
        t0 = time.perf_counter()
        try:
            # CPython accepted the module (it was indexed): a failure here is libcst's grammar
            tree = _parse_cst(source, self.start - (1 if header else 0))
        except SourceError as e:
            raise SourceError(f"libcst cannot parse `{self.qualname}`: {e}") from None
        finally:
            PHASES["parse (libcst)"] += time.perf_counter() - t0
            PHASES["functions parsed"] += 1
        first: Any = tree.body[0]
        node = first.body.body[0] if header else first
        if not isinstance(node, cst.FunctionDef) or node.name.value != self.name:  # pragma: no cover
            raise SourceError(f"internal: `{self.qualname}` not found at line {self.start}")
        self._node, self.tree = node, tree
        if shared is not None and hit is None:
            shared[source] = (tree, node, weakref.WeakSet([self.module]))

    def __repr__(self) -> str:
        return f"Def({self.module.path}:{self.start} {self.qualname})"


@dataclass
class ClassInfo:
    name: str
    node: ast.ClassDef
    module: "ModuleInfo"
    bases: list[str]  # qualified names of the bases
    methods: dict[str, Def] = field(default_factory=dict)
    # `self` attributes the class assigns -> the kind of their values (computed once, engine._self_attrs)
    self_attrs: Optional[dict[str, Kind]] = None
    _locals: Optional[dict[str, list[ast.expr]]] = field(default=None, repr=False)  # local name -> values

    @property
    def qualname(self) -> str:
        return f"{self.module.modname}.{self.name}"


@dataclass(eq=False)
class ModuleInfo:
    path: str  # as the user gave it / as discovered
    text: str
    modname: str
    package: str
    imports: dict[str, str] = field(default_factory=dict)  # local name -> qualified name
    functions: dict[str, Def] = field(default_factory=dict)
    classes: dict[str, ClassInfo] = field(default_factory=dict)
    # module-level `NAME = <expr>` (the last one wins): registries of functions are looked up through them
    globals: dict[str, ast.expr] = field(default_factory=dict, repr=False)
    tree: Optional[cst.Module] = field(default=None, repr=False)  # the whole module, when parsed as a whole
    # node -> (line, column, end line, end column), for positioned defs
    computed: dict[cst.CSTNode, tuple[int, int, int, int]] = field(default_factory=dict, repr=False)
    # `import torch` / `import torch.nn` (no alias) at module level, under `if`/`try` too: `fix` adds no
    # import to such a module (its rewrites only change function bodies)
    imports_torch: bool = False
    # the project's definition text -> (tree, node, modules using it): one parse per distinct text
    parsed: Optional[dict[str, Any]] = field(default=None, repr=False)
    _starts: Optional[list[int]] = field(default=None, repr=False)  # offset of each line
    _lines: Optional[list[str]] = field(default=None, repr=False)

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            self._lines = NEWLINE.split(self.text)
        return self._lines

    def line_text(self, n: int) -> str:
        lines = self.lines
        return lines[n - 1] if 0 < n <= len(lines) else ""

    def segment(self, start: int, end: int) -> str:
        """Lines start..end (1-based, inclusive) with their line breaks."""
        if self._starts is None:
            self._starts = [0] + [m.end() for m in NEWLINE.finditer(self.text)]
        s = self._starts
        return self.text[s[start - 1] : s[end] if end < len(s) else len(self.text)]

    def qualify_dotted(self, d: str) -> str:
        head, _, rest = d.partition(".")
        if head in self.imports:
            base = self.imports[head]
        elif head in self.classes or head in self.functions:
            base = f"{self.modname}.{head}"
        else:
            base = head
        return f"{base}.{rest}" if rest else base

    def qualify(self, expr: cst.BaseExpression) -> Optional[str]:
        """Qualified name of a Name/Attribute chain through this module's imports."""
        d = dotted(expr)
        return None if d is None else self.qualify_dotted(d)


def ast_dotted(node: ast.expr) -> Optional[str]:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


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


def _def_start(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> int:
    return node.decorator_list[0].lineno if node.decorator_list else node.lineno


_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)


def index_module(info: ModuleInfo, tree: ast.Module) -> list[Def]:
    """Fill imports, functions and classes from the `ast`; the definitions in source order."""
    # (module-level helpers, not recursive closures: a closure cycle held the module until a full GC)
    order: list[Def] = []
    _index_imports(info, tree.body)
    _index_defs(info, tree.body, order)
    for s in tree.body:
        if isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], ast.Name):
            info.globals[s.targets[0].id] = s.value
        elif isinstance(s, ast.AnnAssign) and s.value is not None and isinstance(s.target, ast.Name):
            info.globals[s.target.id] = s.value
    for ci in info.classes.values():
        ci.bases = [info.qualify_dotted(d) for d in map(ast_dotted, ci.node.bases) if d]
    return order


def _index_imports(info: ModuleInfo, stmts: list[ast.stmt]) -> None:
    for s in stmts:
        if isinstance(s, ast.Import):
            for a in s.names:
                if a.name in ("torch", "torch.nn") and not a.asname:
                    info.imports_torch = True
                if a.asname:
                    info.imports[a.asname] = a.name
                else:
                    head = a.name.split(".")[0]
                    info.imports.setdefault(head, head)
        elif isinstance(s, ast.ImportFrom):
            mod = _resolve_relative(info.package, s.level, s.module) if s.level else s.module
            if mod:
                for a in s.names:
                    if a.name != "*":
                        info.imports[a.asname or a.name] = f"{mod}.{a.name}"
        elif isinstance(s, ast.If):
            # imports under `if TYPE_CHECKING:` / `try: ... except ImportError:`
            _index_imports(info, s.body)
            _index_imports(info, s.orelse)
        elif isinstance(s, ast.Try) or type(s).__name__ == "TryStar":  # ast.TryStar: Python >= 3.11
            s = typing.cast(ast.Try, s)  # TryStar has Try's fields
            _index_imports(info, s.body)
            for h in s.handlers:
                _index_imports(info, h.body)
            _index_imports(info, s.orelse)
            _index_imports(info, s.finalbody)


def _index_defs(info: ModuleInfo, stmts: list[ast.stmt], order: list[Def]) -> None:
    for s in stmts:
        if isinstance(s, _DEFS):
            d = Def(info, s.name, _def_start(s), s.end_lineno or s.lineno)
            info.functions[s.name] = d
            order.append(d)
        elif isinstance(s, ast.ClassDef):
            ci = ClassInfo(s.name, s, info, [])
            info.classes[s.name] = ci
            for m in s.body:
                if isinstance(m, _DEFS):
                    d = Def(info, f"{s.name}.{m.name}", _def_start(m), m.end_lineno or m.lineno)
                    ci.methods[m.name] = d
                    order.append(d)
        elif isinstance(s, ast.If):
            _index_defs(info, s.body, order)
            _index_defs(info, s.orelse, order)


def _cst_defs(module: cst.Module) -> list[cst.FunctionDef]:
    """The libcst FunctionDefs `index_module` records, in the same order (the same walk over libcst)."""
    out: list[cst.FunctionDef] = []

    def visit(stmts: Sequence[cst.CSTNode]) -> None:
        for s in stmts:
            if isinstance(s, cst.FunctionDef):
                out.append(s)
            elif isinstance(s, cst.ClassDef):
                if isinstance(s.body, cst.IndentedBlock):
                    out.extend(m for m in s.body.body if isinstance(m, cst.FunctionDef))
            elif isinstance(s, cst.If):
                visit(s.body.body)
                if isinstance(s.orelse, cst.If):
                    visit([s.orelse])
                elif isinstance(s.orelse, cst.Else):
                    visit(s.orelse.body.body)

    visit(module.body)
    return out


def _release(info: ModuleInfo) -> None:
    """A module the project drops: a module and its definitions refer to each other, and left to the
    cyclic GC, a dropped module (its whole `ast` index) outlived the next gc.freeze() of the run and was
    never freed (`fix` replaces every file it rewrites)."""
    info.functions, info.classes, info.globals = {}, {}, {}


_NOT_MODULES = {"Parameter", "UninitializedParameter", "UninitializedBuffer", "Buffer"}


class Project:
    """Parses files on demand and resolves qualified names to the scanned tree's definitions."""

    def __init__(self, whole: bool = False, overlay: Optional[dict[str, bytes]] = None):
        self._by_path: dict[str, Optional[ModuleInfo]] = {}
        self._by_mod: dict[str, Optional[ModuleInfo]] = {}
        self._roots: list[Path] = []
        # `fix` rewrites whole modules; `check` indexes modules with `ast` and parses reached functions only
        self.whole = whole
        self.loaded: dict[str, str] = {}  # path -> content hash of every file read on demand
        self.touched: set[str] = set()  # paths of on-demand modules used since the last reset
        # (function key, argument kinds) -> the converged state of a library function (engine.Analysis)
        self.summaries: dict[Any, Any] = {}  # StateKey -> FuncState (engine's types: it imports this module)
        self.parsed: dict[str, Any] = {}  # definition text -> its libcst tree (Def._parse)
        self.overlay = overlay or {}  # canonical path -> bytes standing in for the file on disk

    def add_module(
        self, path: str, source: str | bytes, modname: Optional[str] = None, whole: Optional[bool] = None
    ) -> ModuleInfo:
        t0 = time.perf_counter()
        try:
            text = source_text(source)
            module = _parse_cst(text) if (self.whole if whole is None else whole) else None
            tree = _parse_ast(text)
        finally:
            PHASES["index (ast)"] += time.perf_counter() - t0
            PHASES["modules indexed"] += 1
        package = ""
        if modname is None:
            p = Path(path)
            if p.suffix == ".py" and p.exists():
                root, modname, package = module_name_for(p)
                if root not in self._roots:
                    self._roots.append(root)
            else:
                modname = p.stem or "__main__"
        info = ModuleInfo(path, text, modname, package, parsed=self.parsed)
        order = index_module(info, tree)
        if module is not None:
            info.tree = module
            nodes = _cst_defs(module)
            if len(nodes) != len(order) or any(n.name.value != d.name for n, d in zip(nodes, order)):
                raise SourceError("internal: libcst and ast disagree on the definitions")  # pragma: no cover
            for n, d in zip(nodes, order):
                d._node, d.tree = n, module
        old = self._by_path.get(path)
        if old is not None:
            _release(old)  # the same file parsed again (as a whole, or with new text)
        self._by_path[path] = info
        if (
            path in self.loaded
            or modname not in self._by_mod
            or self._by_mod[modname] is None
            or getattr(self._by_mod[modname], "path", None) == path
        ):
            self._by_mod[modname] = info  # a file added again (rewritten by `fix`) replaces its old text
        return info

    def forget(self, *paths: str) -> None:
        """Files rewritten on disk (by `fix`): drop their modules, read again on next use, and every
        library summary that reached one of them (one pass over the summaries for all the files)."""
        targets = {canonical(p) for p in paths}
        hit: dict[str, bool] = {}  # thousands of summaries share a few hundred paths

        def target(p: str) -> bool:
            t = hit.get(p)
            if t is None:
                t = hit[p] = canonical(p) in targets
            return t

        for p in [p for p in self._by_path if target(p)]:
            info = self._by_path.pop(p)
            if info is not None:
                if self._by_mod.get(info.modname) is info:
                    del self._by_mod[info.modname]
                _release(info)
            self.loaded.pop(p, None)
        stale = {k for k in self.summaries if target(k[0][0])}
        grew = bool(stale)
        while grew:
            grew = False
            for k, st in self.summaries.items():
                if k not in stale and st.callees & stale:
                    stale.add(k)
                    grew = True
        for k in stale:
            del self.summaries[k]

    def deps(self, path: str) -> dict[str, Optional[str]]:
        """The files other than `path` the last analysis read (since `touched` was reset) -> the content
        hash of the text it read."""
        return {p: self.loaded.get(p) for p in sorted(self.touched) if p != path}

    def root_module(self, path: str, data: bytes | str, whole: bool = False) -> ModuleInfo:
        """The module for a file being checked: reused when an earlier root or helper of the process parsed
        the same text. Its hash is recorded like a helper's: a later root that reads this module depends
        on it (the cache's and fix's deps), whichever was analysed first."""
        digest = content_hash(data if isinstance(data, bytes) else data.encode("utf-8"))
        info = self._by_path.get(path)
        if info is not None and self.loaded.get(path) == digest and (info.tree is not None or not whole):
            return info
        if path in self.loaded and self.loaded[path] != digest:
            # new text for a file the process already read (`fix`'s rewritten text): what was learnt
            # from the old one must not reach a later root
            self.forget(path)
        info = self.add_module(path, data, whole=whole or None)
        self.loaded[path] = digest
        return info

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
                        key = canonical(str(cand))
                        data = self.overlay[key] if key in self.overlay else cand.read_bytes()
                        info = self.add_module(os.path.relpath(cand), data, None)
                    except (OSError, SourceError):
                        return None
                    self.loaded[info.path] = content_hash(data)
                    self.touched.add(info.path)
                    self._by_mod[modname] = info
                    return info
        return None

    def lookup(self, qualname: str) -> Optional[tuple[str, ModuleInfo, Any]]:
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
            ci: ClassInfo = hit[2]
            return ci
        return None

    def base_class(self, ci: ClassInfo, base: str) -> Optional[ClassInfo]:
        """The in-tree class a qualified base name refers to (same module first)."""
        if base.startswith(ci.module.modname + "."):
            local = ci.module.classes.get(base.rsplit(".", 1)[-1])
            if local is not None:
                return local
        return self.resolve_class(base)

    def is_module_class(self, ci: ClassInfo, _seen: Optional[set[str]] = None) -> bool:
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

    def mro(self, ci: ClassInfo) -> Iterator[ClassInfo]:
        """The class and its in-tree bases, breadth first (good enough for method lookup). Lazy: a base's
        module is indexed only when the walk gets there, and most lookups stop at the class itself."""
        queue, seen = deque([ci]), set()
        while queue:
            c = queue.popleft()
            if c.qualname in seen:
                continue
            seen.add(c.qualname)
            yield c
            for base in c.bases:
                if base.startswith("torch."):
                    continue
                target = self.base_class(c, base)
                if target is not None:
                    queue.append(target)
