"""Tensor inference over one function body, and the rules that fire on what it finds.

The walker is flow-sensitive over assignments (branches join, loops run to a fixpoint of two
passes) and asks its Analysis for the kinds of calls into other reached functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Optional, Sequence

import libcst as cst

from . import torchapi as api
from .kinds import (
    EMPTY,
    KB0,
    KB1,
    KD,
    KLT,
    KN,
    KP,
    KS,
    KST,
    KT,
    KU,
    LT,
    N,
    P,
    S,
    ST,
    T,
    U,
    D,
    Arg,
    Atom,
    Env,
    Kind,
    atoms_of,
    dct,
    dictof,
    element,
    iterable,
    is_size,
    keyed,
    keyed_ways,
    is_tensor,
    join,
    known_bool,
    mod as mod_kind,
    mods as mods_kind,
    partial_of,
    surely_tensor,
    traced,
    tup,
    nth_present,
    present_tuples,
    unbind,
    unpack,
)
from .project import dotted

if TYPE_CHECKING:
    from .engine import Analysis, FuncRef, Names
    from .project import ModuleInfo


_BUILTIN_CONVERT = {
    "int": "a Python int",
    "float": "a Python float",
    "complex": "a Python complex",
    "str": "a string",
    "repr": "a string",
    "format": "a string",
    "print": "printed text",
    "hash": "a hash",
    "hex": "a string",
    "oct": "a string",
    "chr": "a string",
}
_BUILTIN_ITERATE = {
    "list",
    "tuple",
    "set",
    "frozenset",
    "enumerate",
    "zip",
    "iter",
    "sum",
    "any",
    "all",
    "map",
    "filter",
    "reversed",
    "dict",
}
_BUILTIN_COMPARE = {"min", "max", "sorted"}
_BUILTIN_PYTHON = {
    "isinstance",
    "issubclass",
    "hasattr",
    "getattr",
    "callable",
    "type",
    "id",
    "len",
    "range",
    "setattr",
    "vars",
    "dir",
    "super",
    "object",
    "slice",
    "open",
    "globals",
    "locals",
    "NotImplementedError",
    "ValueError",
    "TypeError",
    "RuntimeError",
}
_LITERAL_NAMES = {"True", "False", "None"}
_PY_TYPES = frozenset("int float bool str bytes complex list tuple dict set frozenset".split())


def is_literal(e: cst.BaseExpression) -> bool:
    """A constant the user wrote down: numbers, strings, and lists/tuples of them."""
    if isinstance(e, (cst.Integer, cst.Float, cst.Imaginary, cst.SimpleString, cst.ConcatenatedString)):
        return True
    if isinstance(e, cst.Name):
        return e.value in _LITERAL_NAMES
    if isinstance(e, cst.UnaryOperation):
        return is_literal(e.expression)
    if isinstance(e, (cst.List, cst.Tuple)):
        return all(isinstance(el, cst.Element) and is_literal(el.value) for el in e.elements)
    if isinstance(e, cst.Call) and dotted(e.func) in ("float", "int") and len(e.args) == 1:
        return is_literal(e.args[0].value)
    return False


_TENSOR_TYPES = frozenset(
    {
        "torch.Tensor",
        "torch.FloatTensor",
        "torch.DoubleTensor",
        "torch.HalfTensor",
        "torch.BFloat16Tensor",
        "torch.LongTensor",
        "torch.IntTensor",
        "torch.ShortTensor",
        "torch.ByteTensor",
        "torch.CharTensor",
        "torch.BoolTensor",
        "torch.nn.Parameter",
        "torch.nn.parameter.Parameter",
        "torch.nn.Buffer",
        "torch.nn.parameter.Buffer",
    }
)
_SIZE_TYPES = frozenset({"torch.Size"})
_TYPING = ("typing.", "typing_extensions.", "collections.abc.")
_SEQUENCES = frozenset({"List", "list", "Tuple", "tuple", "Sequence", "Iterable", "MutableSequence"})


def _typing_name(q: str) -> Optional[str]:
    """`Optional`, `List`... when q is typing's (imported from typing, or a builtin generic): its name."""
    if q.startswith(_TYPING):
        return q.rsplit(".", 1)[-1]
    return q if "." not in q else None


def annotation_kind(ann: Optional[cst.Annotation], names: Optional[Names] = None) -> Optional[Kind]:
    """The kind an annotation declares, or None when unknown. `names` (Analysis.names: the annotation's
    module and the scanned tree's classes) resolves names as calls are resolved: `Tensor` is torch's only
    when the module imports it from torch (`tf.Tensor` or a local `class Parameter` is not), a string
    annotation is parsed and resolved the same way, a module-level alias (`Mask = torch.Tensor`) is
    followed, and a class of the scanned tree (a `Cache`, a config) is a Python object."""
    if ann is None:
        return None
    mod = names.module if names is not None else None
    return _ann(ann.annotation, mod, names, 0)


def _ann(e: cst.BaseExpression, mod: Optional[ModuleInfo], names: Optional[Names], depth: int) -> Optional[Kind]:
    if depth > 4:
        return None
    if isinstance(e, cst.BinaryOperation) and isinstance(e.operator, cst.BitOr):  # PEP 604: `int | None`
        parts = [
            KN if isinstance(p, cst.Name) and p.value == "None" else _ann(p, mod, names, depth + 1)
            for p in (e.left, e.right)
        ]
        return None if any(p is None for p in parts) else join(*parts)  # type: ignore[arg-type]  # libcst's unions / an invariant mypy cannot see
    if isinstance(e, (cst.SimpleString, cst.ConcatenatedString)):
        s = e.evaluated_value
        if not isinstance(s, str):
            return None
        try:
            parsed = cst.parse_expression(s.strip())
        except Exception:  # noqa: BLE001 - not an expression: says nothing
            return None
        return _ann(parsed, mod, names, depth + 1)
    if isinstance(e, cst.Name) and e.value == "None":
        return KN
    head = e.value if isinstance(e, cst.Subscript) else e
    text = dotted(head)
    if text is None:
        return None
    q = mod.qualify_dotted(text) if mod is not None else text
    if isinstance(e, cst.Subscript):
        generic = _typing_name(q)
        inner = [_ann(s.slice.value, mod, names, depth + 1) for s in e.slice if isinstance(s.slice, cst.Index)]
        known = [k for k in inner if k is not None]
        if generic == "Optional":
            return join(KN, *known) if known else None
        if generic == "Union":
            return join(*known) if known and len(known) == len(inner) else None
        if generic in _SEQUENCES:
            return KLT if any(is_tensor(k) for k in known) else KP
        if generic == "Annotated":
            return inner[0] if inner else None
        return KP if generic is not None or q.startswith(_TYPING) else None
    if q in _TENSOR_TYPES:
        return KT
    if q in _SIZE_TYPES:
        return KST
    if _typing_name(q) in api.NON_TENSOR_ANNOTATIONS:  # typing's, or a builtin no import shadows
        return KP
    if mod is not None and "." not in text and text in mod.globals and text not in mod.classes:
        alias = _alias(mod.globals[text])
        if alias is not None:
            return _ann(alias, mod, names, depth + 1)
    if names is not None and names.is_tree_class(head):
        return KP
    return None


def _alias(value: object) -> Optional[cst.BaseExpression]:
    """A module-level type alias (`Mask = torch.Tensor`, `Mask = Optional[torch.Tensor]`) as an expression."""
    import ast

    if not isinstance(value, (ast.Name, ast.Attribute, ast.Subscript, ast.BinOp, ast.Constant)):
        return None
    try:
        return cst.parse_expression(ast.unparse(value))
    except Exception:  # noqa: BLE001
        return None


_WARNERS = frozenset({"warn", "warning", "warning_once", "warning_advice", "info", "debug"})


def checks_only(node: cst.If) -> bool:
    """The `if` arm only raises or only warns: straight-line code (message building) ending in `raise`, or
    calls of `warnings.warn` / a logger's `warning` and nothing else."""
    body = node.body
    if not isinstance(body, cst.IndentedBlock) or not body.body:
        return False
    if not all(isinstance(s, cst.SimpleStatementLine) for s in body.body):
        return False
    smalls = [sm for s in body.body for sm in s.body]  # type: ignore[attr-defined]  # libcst's unions / an invariant mypy cannot see
    if any(isinstance(sm, (cst.Return, cst.Break, cst.Continue)) for sm in smalls):
        return False
    if isinstance(smalls[-1], cst.Raise):
        return True
    return all(
        isinstance(sm, cst.Expr)
        and isinstance(sm.value, cst.Call)
        and isinstance(sm.value.func, cst.Attribute)
        and sm.value.func.attr.value in _WARNERS
        for sm in smalls
        if not (isinstance(sm, cst.Expr) and isinstance(sm.value, cst.SimpleString))
    )


def short(module: cst.Module, node: cst.CSTNode, limit: int = 48) -> str:
    try:
        text = " ".join(module.code_for_node(node).split())
    except Exception:  # pragma: no cover - codegen of a parsed node does not fail
        return "expression"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def terminates(stmts: Iterable[cst.CSTNode]) -> bool:
    """Does this block always end in return/raise (so control never falls through)?"""
    for stmt in stmts:
        if isinstance(stmt, cst.SimpleStatementLine):
            if any(isinstance(s, (cst.Return, cst.Raise)) for s in stmt.body):
                return True
        elif isinstance(stmt, cst.If):
            if stmt.orelse is None:
                continue
            other = [stmt.orelse] if isinstance(stmt.orelse, cst.If) else stmt.orelse.body.body
            if terminates(stmt.body.body) and terminates(other):
                return True
        elif isinstance(stmt, (cst.With,)):
            if terminates(stmt.body.body):
                return True
        elif isinstance(stmt, cst.Try):
            if terminates(stmt.body.body) and all(terminates(h.body.body) for h in stmt.handlers):
                return True
        elif isinstance(stmt, cst.While):
            t = stmt.test
            if isinstance(t, cst.Name) and t.value == "True" and not _has_break(stmt.body):
                return True
    return False


def _has_break(node: cst.CSTNode) -> bool:
    v = _Break()
    node.visit(v)
    return v.found


class _Break(cst.CSTVisitor):
    """A `break` of this loop (not of a nested loop or function)."""

    found = False

    def visit_Break(self, n: cst.Break) -> None:
        self.found = True

    def visit_For(self, n: cst.For) -> bool:
        return False

    def visit_While(self, n: cst.While) -> bool:
        return False

    def visit_FunctionDef(self, n: cst.FunctionDef) -> bool:
        return False


_SEQUENTIAL = "torch.nn.Sequential"
_GROWERS = frozenset({"append", "insert", "extend"})
_HINTS = frozenset(q.rsplit(".", 1)[-1] for q in api.TORCH_HINTS)
# tensor methods and torch functions whose positional arguments are sizes
_SIZE_TAKING = frozenset("view reshape expand repeat new_zeros new_ones new_empty new_full".split())
_SIZE_TAKING_TORCH = frozenset(f"torch.{f}" for f in "zeros ones empty full rand randn arange".split()) | {
    "torch.nn.functional.interpolate",
    "torch.nn.functional.pad",
}
_SIZE_POSITIONS = {"full": {0}, "new_full": {0}, "interpolate": {1}, "pad": {1}}  # others: every positional


class Walker:
    def __init__(self, analysis: "Analysis", ref: "FuncRef", params: Env, target: str):
        self.an = analysis
        self.ref = ref
        ref.parse()  # before the walk: its module gives codegen settings for messages
        self.module = ref.defn.tree
        self.target = target
        self.found: dict[tuple[int, str], tuple[cst.CSTNode, str, str, cst.CSTNode]] = {}
        self.returns: list[tuple[cst.Return, Kind]] = []
        self.handler_returns: set[int] = set()  # returns inside `except` handlers
        # for flagged if/while statements: the env before them and after each arm (the cond form needs
        # to know which names hold tensors)
        self.envs: dict[int, tuple[Env, list[Optional[Env]]]] = {}
        # kinds of `and`/`or` operands in tests (the cond form keeps Python tests short-circuiting)
        self.operand_kinds: dict[int, Kind] = {}
        # the full kind of every tested expression and ternary arm (the rewriters prove a condition is a
        # tensor, and an arm never None, before they rewrite)
        self.test_kinds: dict[int, Kind] = {}
        self._quiet = 0
        self._nesting = 0
        self._tested: Optional[cst.BaseExpression] = None  # the test expression test_kind evaluates now
        self.nested: dict[int, tuple[cst.FunctionDef, Env]] = {}  # id(nested def) -> (node, env where defined)
        self.params = params
        self.guard_index = {"trace": 0, "dynamo": 1}.get(target)

    # ---------------------------------------------------------------- reporting
    def report(self, node: cst.CSTNode, code: str, message: str, end: Optional[cst.CSTNode] = None) -> None:
        """Record a finding spanning from node's start to end's end (default: the node itself)."""
        if self._quiet:
            return
        self.found.setdefault((id(node), code), (node, code, message, end or node))

    def quietly(self, e: cst.BaseExpression, env: Env) -> Kind:
        """Evaluate an exception or an assert message: it is built only on the error path (whose test is
        reported), so formatting a traced size into it freezes nothing the graph computes."""
        self._quiet += 1
        try:
            return self.ev(e, env)
        finally:
            self._quiet -= 1

    def src(self, node: cst.CSTNode) -> str:
        return short(self.module, node)  # type: ignore[arg-type]  # libcst's unions / an invariant mypy cannot see

    def report_test(self, stmt_node: cst.CSTNode, test: cst.BaseExpression, kind: Kind, what: str) -> None:
        """An if/while/assert/ternary test: TS1xx on a tensor value, TS108 on a traced size; a check (an
        `if` whose arm only raises or warns, an `assert` on a size) is TS109."""
        if what in ("check", "size-assert"):
            if traced(kind) or D in kind:
                label = "`if`" if what == "check" else "`assert`"
                data = is_tensor(kind) or not is_size(kind)
                value = (
                    "a tensor value"
                    if is_tensor(kind)
                    else "a traced size"
                    if is_size(kind)
                    else "a number read from a tensor"
                )
                export = "torch.export cannot export it" if data else "torch.export guards on the size"
                self.report(
                    stmt_node,
                    "TS109",
                    f"{label} tests {value} `{self.src(test)}` only to "
                    f"{'raise or warn' if what == 'check' else 'assert'}: tracing drops the check, "
                    f"{export}",
                    end=test,
                )
            return
        code_tensor = {
            "if": "TS101",
            "while": "TS102",
            "ternary": "TS103",
            "assert": "TS105",
            "comprehension-if": "TS104",
        }[what]
        label = {
            "if": "`if`",
            "while": "`while`",
            "ternary": "conditional expression",
            "assert": "`assert`",
            "comprehension-if": "comprehension filter",
        }[what]
        if is_tensor(kind):
            self.report(
                stmt_node,
                code_tensor,
                f"{label} tests a tensor value `{self.src(test)}`: tracing freezes the outcome for the example input",
                end=test,
            )
        elif is_size(kind):
            self.report(
                stmt_node,
                "TS108",
                f"{label} tests a traced size `{self.src(test)}`: the branch is frozen for dynamic axes",
                end=test,
            )
        elif D in kind:
            self.report(
                stmt_node,
                code_tensor,
                f"{label} tests `{self.src(test)}`, a number read from a tensor (`.item()`): torch.export "
                f"cannot branch on it (data-dependent)",
                end=test,
            )

    # ---------------------------------------------------------------- entry
    def run(self) -> Kind:
        fn = self.ref.node
        if self.target == "script":
            self.script_checks_signature(fn)
        env: Env = dict(self.params)
        out = self.block(fn.body.body if isinstance(fn.body, cst.IndentedBlock) else [fn.body], env)
        kinds = [k for r, k in self.returns if id(r) not in self.handler_returns]
        if not kinds or known_bool(join(*kinds)) is None:
            # `try: return torch.jit.is_tracing() except Exception: return False`: the handler is the
            # error path, which an export does not take; it only counts when the normal path is not a
            # value known while exporting
            kinds = [k for _, k in self.returns]
        if out is not None and not terminates(fn.body.body if isinstance(fn.body, cst.IndentedBlock) else []):
            kinds.append(KN)
        return join(*kinds) if kinds else KN

    # ---------------------------------------------------------------- statements
    def block(self, stmts: Iterable[cst.CSTNode], env: Env) -> Optional[Env]:
        for stmt in stmts:
            after = self.stmt(stmt, env)
            if after is None:
                return None
            env = after
        return env

    def stmt(self, s: cst.CSTNode, env: Env) -> Optional[Env]:
        if isinstance(s, cst.SimpleStatementLine):
            for small in s.body:
                env = self.small(small, env)  # type: ignore[assignment]  # libcst's unions / an invariant mypy cannot see
                if env is None:
                    return None
            return env
        if isinstance(s, cst.If):
            return self.if_stmt(s, env)
        if isinstance(s, cst.For):
            return self.for_stmt(s, env)
        if isinstance(s, cst.While):
            return self.while_stmt(s, env)
        if isinstance(s, cst.With):
            for item in s.items:
                k = self.ev(item.item, env)
                if item.asname is not None:
                    self.bind(item.asname.name, k, env)
            return self.block(s.body.body, env)
        if isinstance(s, cst.Try):
            if self.target == "script":
                self.report(s, "TS301", "`try` is not supported by torch.jit.script")
            body_env = self.block(s.body.body, dict(env))
            outs = []
            start = join_env(env, body_env) if body_env is not None else env
            for h in s.handlers:
                if h.type is not None:
                    self.ev(h.type, env)
                henv = dict(start)
                if h.name is not None:
                    self.bind(h.name.name, KP, henv)
                n = len(self.returns)
                outs.append(self.block(h.body.body, henv))
                self.handler_returns.update(id(r) for r, _ in self.returns[n:])
            if s.orelse is not None and body_env is not None:
                body_env = self.block(s.orelse.body.body, body_env)
            outs.append(body_env)
            live = [o for o in outs if o is not None]
            res = join_env(*live) if live else None
            if s.finalbody is not None:
                res = self.block(s.finalbody.body.body, res if res is not None else dict(start))
            return res
        if isinstance(s, cst.FunctionDef):
            if self.target == "script":
                self.report(s, "TS301", f"nested function `{s.name.value}` is not supported by torch.jit.script")
            self.nested_function(s, env)
            # calling it runs its body with the caller's kinds (see call_nested)
            self.nested[id(s)] = (s, dict(env))
            env[s.name.value] = frozenset({("nested", id(s))})
            return env
        if isinstance(s, cst.ClassDef):
            env[s.name.value] = KP
            return env
        if isinstance(s, cst.Match):
            self.ev(s.subject, env)
            outs = [self.block(c.body.body, dict(env)) for c in s.cases]
            live = [o for o in outs if o is not None] + [env]
            return join_env(*live)
        return env

    def nested_function(self, fn: cst.FunctionDef, env: Env) -> None:
        inner = dict(env)
        for p in all_params(fn.params):
            ann = annotation_kind(p.annotation, self.an.names(self.ref))
            inner[p.name.value] = (
                ann if ann is not None else (KP if p.default is not None and is_literal(p.default) else KT)
            )
        saved = self.returns
        self.returns = []
        if isinstance(fn.body, cst.IndentedBlock):
            self.block(fn.body.body, inner)
        self.returns = saved

    def _nested_defs(self, k: Kind) -> list[int]:
        """The functions defined in this body that a value of kind k may be (keys of self.nested)."""
        return [a[1] for a in k if isinstance(a, tuple) and a[0] == "nested" and a[1] in self.nested]

    def call_nested(self, key: int, args: list[Arg]) -> Kind:
        """A call to a function defined in this body: its return kind for these arguments, from a quiet
        walk of its body (its findings were reported where it is defined)."""
        fn, env = self.nested[key]
        if self._nesting > 3 or not isinstance(fn.body, cst.IndentedBlock):
            return KU
        names = self.an.names(self.ref)
        inner = {**env, **self.an.bind_nested(fn, args, names)}
        saved, self.returns = self.returns, []
        self._quiet += 1
        self._nesting += 1
        try:
            out = self.block(fn.body.body, inner)
            kinds = [k for _, k in self.returns] + ([KN] if out is not None and not terminates(fn.body.body) else [])
        finally:
            self.returns = saved
            self._quiet -= 1
            self._nesting -= 1
        return join(*kinds) if kinds else KN

    def small(self, s: cst.BaseSmallStatement, env: Env) -> Optional[Env]:
        if isinstance(s, cst.Assign):
            k = self.ev(s.value, env)
            self.test_kinds[id(s.value)] = k  # the where form proves an assigned arm is a tensor
            for t in s.targets:
                self.bind(t.target, k, env, value=s.value)
            return env
        if isinstance(s, cst.AnnAssign):
            k = self.ev(s.value, env) if s.value is not None else EMPTY
            ann = annotation_kind(s.annotation, self.an.names(self.ref))
            self.bind(s.target, k if s.value is not None else (ann or KP), env)
            return env
        if isinstance(s, cst.AugAssign):
            tk, vk = self.ev(s.target, env), self.ev(s.value, env)
            if isinstance(s.operator, (cst.BitOrAssign, cst.BitAndAssign)):
                k = self.binop(cst.BitOr() if isinstance(s.operator, cst.BitOrAssign) else cst.BitAnd(), tk, vk)
            else:
                k = join(tk, vk)
            self.bind(s.target, k, env)
            return env
        if isinstance(s, cst.Expr):
            self.ev(s.value, env)
            return env
        if isinstance(s, cst.Return):
            k = self.ev(s.value, env) if s.value is not None else KN
            if s.value is not None:
                self.test_kinds[id(s.value)] = k
            self.returns.append((s, k))
            return None
        if isinstance(s, cst.Raise):
            if s.exc is not None:
                self.quietly(s.exc, env)
            return None
        if isinstance(s, cst.Assert):
            k = self.test_kind(s.test, env)
            self.report_test(s, s.test, k, "assert" if is_tensor(k) else "size-assert")
            if s.msg is not None:
                self.quietly(s.msg, env)
            return env
        if isinstance(s, cst.Del):
            return env
        if isinstance(s, (cst.Global, cst.Nonlocal)):
            if self.target == "script":
                self.report(s, "TS301", "`global`/`nonlocal` is not supported by torch.jit.script")
            return env
        return env

    def if_stmt(self, s: cst.If, env: Env) -> Optional[Env]:
        k = self.test_kind(s.test, env)
        g = known_bool(k)
        self.report_test(s, s.test, k, "check" if checks_only(s) else "if")
        outs = []
        before = dict(env)
        env_t, env_f = self.narrow(s.test, env)
        if g is not False:
            outs.append(self.block(s.body.body, env_t))
        if g is not True:
            if s.orelse is None:
                outs.append(env_f)
            elif isinstance(s.orelse, cst.If):
                outs.append(self.if_stmt(s.orelse, env_f))
            else:
                outs.append(self.block(s.orelse.body.body, env_f))
        if (id(s), "TS101") in self.found or (id(s), "TS108") in self.found:
            self.envs[id(s)] = (before, outs)
        live = [o for o in outs if o is not None]
        return join_env(*live) if live else None

    def narrow(self, test: cst.BaseExpression, env: Env) -> tuple[Env, Env]:
        """Copies of env for the true and the false arm, narrowed by `isinstance(name, types)` (or its
        `not`): a Python type makes the name a Python value in the true arm, torch.Tensor a tensor; the
        false arm drops that possibility. Through `and`: both operands hold in the true arm, and when one
        operand is a bool known True while exporting, the other's falsity gives the false arm."""
        if isinstance(test, cst.BooleanOperation) and isinstance(test.operator, cst.And):
            lt, lf = self.narrow(test.left, env)
            rt, rf = self.narrow(test.right, lt)
            if self.operand_kinds.get(id(test.left)) == KB1:
                return rt, self.narrow(test.right, env)[1]
            if self.operand_kinds.get(id(test.right)) == KB1:
                return rt, lf
            return rt, dict(env)
        env_t, env_f = dict(env), dict(env)
        negate = isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not)
        call = test.expression if negate else test  # type: ignore[attr-defined]  # libcst's unions / an invariant mypy cannot see
        if not (
            isinstance(call, cst.Call)
            and dotted(call.func) == "isinstance"
            and len(call.args) == 2
            and isinstance(call.args[0].value, cst.Name)
            and call.args[0].value.value in env
        ):
            return env_t, env_f
        name, types = call.args[0].value.value, call.args[1].value
        parts = [e.value for e in types.elements] if isinstance(types, cst.Tuple) else [types]
        quals = [self.ref.module.qualify(t) or "" for t in parts]
        k = env[name]
        if all(q in _PY_TYPES for q in quals):
            # a traced size is an int too: only the tensor possibility goes
            yes, no = k - {T} or KP, k - {P, S} or k
        elif all(q.rsplit(".", 1)[-1] in ("Tensor", "Parameter") and q.startswith("torch.") for q in quals):
            # empty: the arm never runs for a value that is surely a tensor. Under the tracer a size is a
            # 0-dim tensor too (`isinstance(x.shape[0], torch.Tensor)` holds while tracing)
            tensors = frozenset({T, S}) if self.target == "trace" else frozenset({T})
            yes, no = KT, k - tensors
        else:
            return env_t, env_f
        env_t[name], env_f[name] = (no, yes) if negate else (yes, no)
        return env_t, env_f

    def for_stmt(self, s: cst.For, env: Env) -> Optional[Env]:
        it = self.iterate(s.iter, env)
        elem = element(it)
        start = env
        for _ in range(2):
            body_env = dict(start)
            self.bind(s.target, elem, body_env)
            out = self.block(s.body.body, body_env)
            start = join_env(start, out) if out is not None else start
        if s.orelse is not None:
            self.block(s.orelse.body.body, dict(start))
        return start

    def while_stmt(self, s: cst.While, env: Env) -> Optional[Env]:
        start = env
        for _ in range(2):
            k = self.test_kind(s.test, start)
            self.report_test(s, s.test, k, "while")
            if known_bool(k) is False:
                break
            out = self.block(s.body.body, dict(start))
            if (id(s), "TS102") in self.found:
                self.envs[id(s)] = (dict(start), [out])
            start = join_env(start, out) if out is not None else start
        if s.orelse is not None:
            self.block(s.orelse.body.body, dict(start))
        return start

    # ---------------------------------------------------------------- binding
    def bind(self, target: cst.BaseExpression, k: Kind, env: Env, value: Optional[cst.BaseExpression] = None) -> None:
        if isinstance(target, cst.Name):
            env[target.value] = k
        elif isinstance(target, (cst.Tuple, cst.List)):
            elems = [e for e in target.elements]
            if surely_tensor(k):
                self.report(
                    value if value is not None else target,
                    "TS107",
                    "unpacking a tensor iterates over it: the number of items is frozen by tracing",
                )
            parts = unpack(k, len(elems))
            for el, pk in zip(elems, parts):
                if isinstance(el, cst.StarredElement):
                    self.bind(el.value, KLT if is_tensor(pk) else KP, env)
                else:
                    self.bind(el.value, pk, env)
        elif isinstance(target, cst.Attribute):
            self.ev(target.value, env)
            d = dotted(target)
            if d is not None:
                env[d] = k
        elif isinstance(target, cst.Subscript):
            self.ev(target, env)
            d = dotted(target.value)
            if d is not None and d in env and any(isinstance(a, tuple) and a[0] in ("dict", "dictof") for a in env[d]):
                env[d] = join(env[d], dictof(k))  # `d[key] = value`: the dict now holds such values
        elif isinstance(target, cst.StarredElement):
            self.bind(target.value, k, env)

    # ---------------------------------------------------------------- expressions
    def test_kind(self, e: cst.BaseExpression, env: Env) -> Kind:
        """Kind of an expression used as a condition: its tensor/size atoms, or a bool known while
        exporting (KB1/KB0). and/or/not coerce here, not separately, and short-circuit on known bools:
        the operand after `False and` never runs."""
        if isinstance(e, cst.BooleanOperation):
            is_and = isinstance(e.operator, cst.And)
            lk = self.test_kind(e.left, env)
            self.operand_kinds[id(e.left)] = lk
            lb = known_bool(lk)
            if lb is (not is_and):
                self.operand_kinds[id(e.right)] = EMPTY
                return lk  # short-circuited: the right operand is never evaluated
            rk = self.test_kind(e.right, env)
            self.operand_kinds[id(e.right)] = rk
            if lb is not None:
                return rk
            rb = known_bool(rk)
            if rb is (not is_and):
                return frozenset(a for a in lk if a in _TESTED) or rk
            return frozenset(a for a in join(lk, rk) if a in _TESTED)
        if isinstance(e, cst.UnaryOperation) and isinstance(e.operator, cst.Not):
            k = self.test_kind(e.expression, env)
            self.test_kinds[id(e)] = self.test_kinds.get(id(e.expression), k)
            b = known_bool(k)
            return k if b is None else (KB0 if b else KB1)
        self._tested = e
        k = self.ev(e, env)
        self.test_kinds[id(e)] = k
        if known_bool(k) is not None:
            return k
        return frozenset(a for a in k if a in _TESTED)

    def coerce(self, node: cst.CSTNode, k: Kind, what: str) -> None:
        """A tensor or traced size turned into a Python bool here."""
        if is_tensor(k):
            self.report(node, "TS104", f"{what} converts a tensor to a Python bool: tracing freezes it")
        elif is_size(k):
            self.report(node, "TS108", f"{what} compares a traced size: the result is frozen for dynamic axes")
        elif D in k:
            self.report(node, "TS104", f"{what} is a number read from a tensor: torch.export cannot branch on it")

    def ev(self, e: cst.BaseExpression, env: Env) -> Kind:
        m = getattr(self, "ev_" + type(e).__name__, None)
        if m is None:
            # recurse into children so nested calls and conversions are still seen
            for child in e.children:
                if isinstance(child, cst.BaseExpression):
                    self.ev(child, env)
            return KP
        k: Kind = m(e, env)
        return k

    def iterate(self, node: cst.BaseExpression, env: Env) -> Kind:
        """Evaluate something a `for` iterates over; iterating a tensor is TS107."""
        k = self.ev(node, env)
        if surely_tensor(k):
            self.report(
                node, "TS107", f"iterating over tensor `{self.src(node)}`: the number of steps is frozen by tracing"
            )
        return k

    def ev_Name(self, e: cst.Name, env: Env) -> Kind:
        if e.value == "None":
            return KN
        if e.value in ("True", "False") and e.value not in env:
            return KB1 if e.value == "True" else KB0
        k = env.get(e.value)
        if k is not None:
            return k
        # a function of the tree held as a value, or a registry of them
        return self.an.name_kind(self.ref.module, e.value) or KP

    def ev_Integer(self, e: cst.BaseExpression, env: Env) -> Kind:
        return KP

    ev_Float = ev_Imaginary = ev_SimpleString = ev_Ellipsis = ev_Integer

    def ev_ConcatenatedString(self, e: cst.ConcatenatedString, env: Env) -> Kind:
        self.ev(e.left, env)
        self.ev(e.right, env)
        return KP

    def ev_FormattedString(self, e: cst.FormattedString, env: Env) -> Kind:
        for part in e.parts:
            if isinstance(part, cst.FormattedStringExpression):
                k = self.ev(part.expression, env)
                if traced(k):
                    self.report(
                        part,
                        "TS106",
                        f"formatting `{self.src(part.expression)}` converts a "
                        f"{'tensor' if is_tensor(k) else 'traced size'} to text: frozen by tracing",
                    )
        return KP

    def ev_Attribute(self, e: cst.Attribute, env: Env) -> Kind:
        d = dotted(e)
        if d is not None and d in env:
            return env[d]
        if isinstance(e.value, cst.Name) and e.value.value == "self":
            if e.attr.value == "training" and self.guard_index is not None:
                return KB0  # exporters run the model in eval mode
            return self.an.self_attr_kind(self.ref, e.attr.value)
        base = self.ev(e.value, env)
        name = e.attr.value
        out = []
        classes = atoms_of(base, "mod")
        if classes:
            held = self.an.module_attr_kind(self.ref, classes, name)
            # another object's state set lazily (`self.cache = None` in `__init__`, a tensor once its `update`
            # ran): which of the two a reader gets is that object's protocol, not a path of this function
            out.append(held - {N} if N in held and len(held) > 1 else held)
        if U in base:
            # an opaque value read as only a tensor can be read is a tensor
            if name == "shape":
                out.append(KST)
            elif name in api.NON_TENSOR_ATTRS:
                out.append(KP)
            elif name in api.TENSOR_ATTRS:
                out.append(KT)
            else:
                out.append(KU)
        if T in base:
            if name == "shape":
                out.append(KST)
            elif name in api.NON_TENSOR_ATTRS:
                out.append(KP)
            else:
                out.append(KT)
        if LT in base and name in ("values", "indices"):
            out.append(KT)
        for a in base:
            if isinstance(a, tuple) and a[0] == "obj":
                # a field not given: None, or set later (`out.loss = ...`) or by a decorator of the function
                # that built it (transformers' `@capture_outputs`)
                out.append(dict(a[1]).get(name, _UNSET_FIELD))
        for a in base:
            if isinstance(a, tuple) and a[0] == "tup" and name in ("values", "indices"):
                out.append(KT)
        return join(*out) if out else KP

    def ev_Subscript(self, e: cst.Subscript, env: Env) -> Kind:
        base = self.ev(e.value, env)
        idx_kinds = []
        const_index = None
        is_slice = False
        bounds = _const_bounds(e.slice)  # `seq[1:]`, `seq[:-1]`: which elements of a tuple are kept
        for el in e.slice:
            if isinstance(el.slice, cst.Index):
                ik = self.ev(el.slice.value, env)
                idx_kinds.append(ik)
                const_index = _const_int(el.slice.value)
            else:
                is_slice = True
                for part in (el.slice.lower, el.slice.upper, el.slice.step):  # type: ignore[attr-defined]  # libcst's unions / an invariant mypy cannot see
                    if part is not None:
                        idx_kinds.append(self.ev(part, env))
        # a tensor index into a Python sequence calls Tensor.__index__ (a tensor indexes a tensor in the graph);
        # the tracer freezes it without a warning, ModuleList/Sequential/ParameterList alike
        if (
            any(is_tensor(k) for k in idx_kinds)
            and not is_tensor(base)
            and U not in base
            and any(
                a in (LT, ST)
                or isinstance(a, tuple)
                and (a[0] in ("tup", "iter", "mods") or a[0] == "mod" and _SEQUENTIAL in a[1])
                for a in base
            )
        ):
            self.report(
                e,
                "TS106",
                f"indexing `{self.src(e.value)}` with a tensor converts it to a Python index: frozen by tracing",
            )
        out = []
        key = e.slice[0].slice.value if len(e.slice) == 1 and isinstance(e.slice[0].slice, cst.Index) else None
        if isinstance(key, cst.SimpleString) and isinstance(key.evaluated_value, str):
            per_key = [
                dict(a[1]).get(key.evaluated_value) for a in base if isinstance(a, tuple) and a[0] in ("dkv", "obj")
            ]
            if (
                per_key
                and all(k is not None for k in per_key)
                and not any(isinstance(a, tuple) and a[0] == "dictof" and a not in _literal_dictofs(base) for a in base)
            ):
                return join(*per_key)  # type: ignore[arg-type]  # libcst's unions / an invariant mypy cannot see
        for a in base:
            if a == T:
                out.append(KT)
            elif a == ST:
                out.append(KST if is_slice else KS)
            elif a == LT:
                out.append(KLT if is_slice else KT)
            elif isinstance(a, tuple) and a[0] == "tup":
                elems = a[1]
                if is_slice and bounds is not None:
                    out.append(tup(elems[bounds[0] : bounds[1]]))
                elif is_slice:
                    out.append(KLT if any(is_tensor(x) for x in elems) else KP)
                elif const_index is not None and -len(elems) <= const_index < len(elems):
                    out.append(elems[const_index])
                else:
                    out.append(join(*elems))
            elif isinstance(a, tuple) and a[0] == "dictof":
                out.append(a[1])
            elif isinstance(a, tuple) and a[0] == "iter":
                out.append(frozenset({a}) if is_slice else a[1])  # type: ignore[arg-type]  # libcst's unions / an invariant mypy cannot see
            elif isinstance(a, tuple) and a[0] == "dict":
                if not any(isinstance(b, tuple) and b[0] == "dictof" for b in base):
                    out.append(KP)
            elif isinstance(a, tuple) and a[0] == "mods":
                out.append(mods_kind(a[1]) if is_slice else mod_kind(a[1]))
            elif isinstance(a, tuple) and a[0] == "obj":
                # a ModelOutput indexed like its `to_tuple()`: the fields passed, None ones skipped
                values = [k for _, k in a[1]]
                if is_slice:
                    out.append(iterable(join(*(k - {N} for k in values))))
                elif const_index is not None:
                    out.append(nth_present(values, const_index) or KP)
                else:
                    out.append(join(*(k - {N} for k in values)))
            elif a == U or isinstance(a, tuple) and a[0] == "mod":
                out.append(KU)
        return join(*out) if out else KP

    def ev_BinaryOperation(self, e: cst.BinaryOperation, env: Env) -> Kind:
        lk, rk = self.ev(e.left, env), self.ev(e.right, env)
        if self.target == "dynamo" and isinstance(e.operator, cst.Multiply):
            for seq, n in ((e.left, rk), (e.right, lk)):
                if isinstance(seq, (cst.List, cst.Tuple)) and is_size(n) and not is_tensor(n):
                    self.report(
                        e,
                        "TS108",
                        f"`{self.src(e)}` repeats a list a traced number of times: "
                        f"torch.export builds it for the example's length and pins that axis",
                    )
        return self.binop(e.operator, lk, rk)

    def binop(self, op: cst.BaseBinaryOp, lk: Kind, rk: Kind) -> Kind:
        both = join(lk, rk)
        if not traced(both) and isinstance(op, (cst.BitOr, cst.BitAnd)):
            # bools known while exporting: `is_tracing |= ...`
            absorbing = KB1 if isinstance(op, cst.BitOr) else KB0
            if lk == absorbing or rk == absorbing:
                return absorbing
            if known_bool(lk) is not None and known_bool(rk) is not None:
                return (
                    KB1
                    if (
                        known_bool(lk) or known_bool(rk)
                        if isinstance(op, cst.BitOr)
                        else known_bool(lk) and known_bool(rk)
                    )
                    else KB0
                )
        if is_tensor(both):
            return KT
        if D in both:
            return KD
        if is_size(both):
            return KS
        if ST in both and isinstance(op, (cst.Add, cst.Multiply)):
            return KST
        if isinstance(op, cst.Add) and both and all(isinstance(a, tuple) and a[0] == "tup" for a in both):
            # `(x,) + rest[1:]`: element i of the sum is known, as for a display
            return join(*(tup(la[1] + ra[1]) for la in lk for ra in rk))
        if LT in both and isinstance(op, cst.Add):
            return KLT
        if U in both:
            return KU
        return KP

    def ev_UnaryOperation(self, e: cst.UnaryOperation, env: Env) -> Kind:
        k = self.ev(e.expression, env)
        if isinstance(e.operator, cst.Not):
            b = known_bool(k)
            if b is not None:
                return KB0 if b else KB1
            self.coerce(e, k, f"`not {self.src(e.expression)}`")
            return KP
        return frozenset(a for a in k if a in _TESTED) or KP

    def ev_BooleanOperation(self, e: cst.BooleanOperation, env: Env) -> Kind:
        lk = self.ev(e.left, env)
        is_and = isinstance(e.operator, cst.And)
        lb = known_bool(lk)
        if lb is (not is_and):
            return lk  # `False and ...`, `True or ...`: the right operand never runs
        rk = self.ev(e.right, env)
        if lb is not None:
            return rk
        self.coerce(e, lk, f"`{'and' if is_and else 'or'}` on `{self.src(e.left)}`")
        return join(lk, rk)

    def ev_Comparison(self, e: cst.Comparison, env: Env) -> Kind:
        tested, self._tested = self._tested is e, None
        left = self.ev(e.left, env)
        kinds = [left]
        result: list[Kind] = []
        chained = len(e.comparisons) > 1
        prev = left
        for target in e.comparisons:
            rk = self.ev(target.comparator, env)
            kinds.append(rk)
            op = target.operator
            if isinstance(op, (cst.Is, cst.IsNot)):
                result.append(KP)
            elif isinstance(op, (cst.In, cst.NotIn)):
                if traced(prev) or traced(rk) or ST in rk or LT in rk and traced(prev):
                    k = join(prev, rk, KS if ST in rk else frozenset())
                    self.coerce(e, frozenset(a for a in k if a in (T, S)), f"`in` test `{self.src(e)}`")
                result.append(KP)
            elif (
                ST in prev
                and ST in rk
                or (ST in prev or ST in rk)
                and isinstance(op, (cst.Equal, cst.NotEqual))
                and not traced(join(prev, rk))
            ):
                # torch.Size comparisons compare traced sizes element by element inside __eq__: frozen here.
                # Tested straight away, the test reports it (a check that only raises is TS109)
                if tested:
                    result.append(KS)
                else:
                    self.coerce(e, KS, f"comparing shapes `{self.src(e)}`")
                    result.append(KP)
            else:
                both = join(prev, rk)
                result.append(KT if is_tensor(both) else KD if D in both else KS if is_size(both) else KP)
            prev = rk
        res = join(*result)
        if chained and traced(res):
            self.coerce(e, res, f"chained comparison `{self.src(e)}`")
            return KP
        return frozenset(a for a in res if a in _TESTED) or KP

    def ev_IfExp(self, e: cst.IfExp, env: Env) -> Kind:
        k = self.test_kind(e.test, env)
        g = known_bool(k)
        if g is True:
            return self.ev(e.body, env)
        if g is False:
            return self.ev(e.orelse, env)
        self.report_test(e, e.test, k, "ternary")
        env_t, env_f = self.narrow(e.test, env)
        a, b = self.ev(e.body, env_t), self.ev(e.orelse, env_f)
        self.test_kinds[id(e.body)], self.test_kinds[id(e.orelse)] = a, b
        return join(a, b)

    def ev_Tuple(self, e: cst.Tuple, env: Env) -> Kind:
        kinds = []
        for el in e.elements:
            k = self.ev(el.value, env)
            if isinstance(el, cst.StarredElement):
                return KLT if is_tensor(element(k)) else KP
            kinds.append(k)
        return tup(kinds)

    def ev_List(self, e: cst.List | cst.Tuple, env: Env) -> Kind:
        kinds = [self.ev(el.value, env) for el in e.elements]
        starred = any(isinstance(el, cst.StarredElement) for el in e.elements)
        if starred:
            kinds = [element(k) if isinstance(el, cst.StarredElement) else k for el, k in zip(e.elements, kinds)]
        if any(is_tensor(k) for k in kinds) and (starred or all(surely_tensor(k) for k in kinds)):
            return KLT
        if any(is_tensor(k) for k in kinds):
            # `[hidden_states, all_hidden_states, attentions]`: a tensor beside tuples of them; each keeps its kind
            return tup(kinds)
        if kinds and all(is_size(k) or k == KP for k in kinds) and any(is_size(k) for k in kinds):
            return KST
        return tup(kinds) if kinds and not starred else KP

    def ev_Set(self, e: cst.Set, env: Env) -> Kind:
        if self.target == "script":
            self.report(e, "TS301", "set literals are not supported by torch.jit.script")
        for el in e.elements:
            self.ev(el.value, env)
        return KP

    def ev_Dict(self, e: cst.Dict, env: Env) -> Kind:
        keys, values, literal = [], [], True
        for el in e.elements:
            if isinstance(el, cst.DictElement):
                self.ev(el.key, env)
                values.append(self.ev(el.value, env))
                if isinstance(el.key, cst.SimpleString):
                    keys.append(el.key.evaluated_value)
                else:
                    literal = False
            else:
                values.append(element(self.ev(el.value, env)))
                literal = False
        if literal and keys:
            # per-key kinds, for `d["key"]` (a flag and a tensor in one dict stay apart)
            return keyed(zip(keys, values))
        out = dct(keys) if literal else KP
        return join(out, dictof(join(*values))) if values else out

    def ev_Lambda(self, e: cst.Lambda, env: Env) -> Kind:
        if self.target == "script":
            self.report(e, "TS301", "`lambda` is not supported by torch.jit.script")
        return KP

    def ev_NamedExpr(self, e: cst.NamedExpr, env: Env) -> Kind:
        k = self.ev(e.value, env)
        self.bind(e.target, k, env)
        return k

    def ev_Await(self, e: cst.Await, env: Env) -> Kind:
        self.ev(e.expression, env)
        return KP

    def ev_Yield(self, e: cst.Yield, env: Env) -> Kind:
        if self.target == "script":
            self.report(e, "TS301", "generators are not supported by torch.jit.script")
        return KP

    def _comprehension(self, e: cst.BaseComp, env: Env, elts: list[cst.BaseExpression]) -> list[Kind]:
        inner = dict(env)
        f: Optional[cst.CompFor] = e.for_in
        while f is not None:
            it = self.iterate(f.iter, inner)
            self.bind(f.target, element(it), inner)
            for cond in f.ifs:
                ck = self.test_kind(cond.test, inner)
                self.report_test(cond, cond.test, ck, "comprehension-if")
            f = f.inner_for_in
        return [self.ev(x, inner) for x in elts]

    def ev_ListComp(self, e: cst.ListComp | cst.GeneratorExp, env: Env) -> Kind:
        (k,) = self._comprehension(e, env, [e.elt])
        kept = self._present(e, env)
        if kept is not None:
            return kept
        if surely_tensor(k):
            return KLT
        # elements that may be tensors, tuples of them (`[self.decoder(h) for h in hs]`), objects
        if is_size(k) and not is_tensor(k):
            return KST
        return iterable(k) if k - {P, N} else KP

    def _present(self, e: cst.ListComp | cst.GeneratorExp, env: Env) -> Optional[Kind]:
        """`[v for v in (a, b, c) if v is not None]` over a tuple of known values: the tuples it may build
        (a model's `return_dict=False` output), so `outputs[0]` is still the first value."""
        f = e.for_in
        if not (
            f.inner_for_in is None
            and isinstance(f.target, cst.Name)
            and isinstance(e.elt, cst.Name)
            and e.elt.value == f.target.value
            and f.ifs
            and all(
                isinstance(c.test, cst.Comparison)
                and isinstance(c.test.left, cst.Name)
                and c.test.left.value == f.target.value
                and len(c.test.comparisons) == 1
                and isinstance(c.test.comparisons[0].operator, cst.IsNot)
                and isinstance(c.test.comparisons[0].comparator, cst.Name)
                and c.test.comparisons[0].comparator.value == "None"
                for c in f.ifs
            )
        ):
            return None
        seq = self.quietly(f.iter, env)
        if len(seq) != 1 or not all(isinstance(a, tuple) and a[0] == "tup" for a in seq):
            return None
        return present_tuples(list(next(iter(seq))[1]))

    def ev_GeneratorExp(self, e: cst.GeneratorExp, env: Env) -> Kind:
        if self.target == "script":
            self.report(e, "TS301", "generator expressions are not supported by torch.jit.script")
        return self.ev_ListComp(e, env)

    def ev_SetComp(self, e: cst.SetComp, env: Env) -> Kind:
        if self.target == "script":
            self.report(e, "TS301", "set comprehensions are not supported by torch.jit.script")
        self._comprehension(e, env, [e.elt])
        return KP

    def ev_DictComp(self, e: cst.DictComp, env: Env) -> Kind:
        self._comprehension(e, env, [e.key, e.value])
        return KP

    # ---------------------------------------------------------------- calls
    def ev_Call(self, e: cst.Call, env: Env) -> Kind:
        if (
            isinstance(e.func, cst.Attribute)
            and e.func.attr.value in _HINTS
            and self.ref.module.qualify(e.func) in api.TORCH_HINTS
        ):
            # `torch._check(t.item())`: a value handed straight to a check is a hint for torch.export (a runtime
            # assertion), which computes nothing the graph returns
            for a in e.args:
                self.quietly(a.value, env)
            return KP
        args: list[Arg] = [(a.keyword.value if a.keyword else None, a.star, self.ev(a.value, env)) for a in e.args]
        pos = [k for kw, star, k in args if kw is None and not star]
        func = e.func
        if (
            isinstance(func, cst.Attribute)
            and func.attr.value in api.MODULE_CASTS
            and isinstance(func.value, cst.Name)
            and func.value.value == "self"
            and self.ref.cls is not None
            and self.an.are_modules(self.ref, {self.ref.cls.qualname})
        ):
            self.module_cast(e)  # `self.float()`: the model's own parameters
        if (
            isinstance(func, cst.Attribute)
            and func.attr.value in _GROWERS
            and isinstance(func.value, cst.Name)
            and func.value.value in env
            and pos
        ):
            # `frames = []` ... `frames.append(frame)`: the local list now holds tensors
            added = element(pos[-1]) if func.attr.value == "extend" else pos[-1]
            if is_tensor(added):
                env[func.value.value] = join(env[func.value.value], KLT)
            elif added - {P, N}:
                # `shapes.append((h, w))`: a list of sizes, not a value an annotation may call a tensor
                env[func.value.value] = join(env[func.value.value], iterable(added))
        fname = dotted(func)
        # builtins first
        if (
            isinstance(func, cst.Name)
            and func.value not in env
            and self.ref.module.imports.get(func.value) is None
            and func.value not in self.ref.module.functions
            and func.value not in self.ref.module.classes
        ):
            res = self.builtin(e, func.value, args, pos)
            if res is not None:
                return res
        # method calls on values we know
        if isinstance(func, cst.Attribute) and not (isinstance(func.value, cst.Name) and func.value.value == "self"):
            q = self.ref.module.qualify(func)
            if q is None or not q.startswith(("torch.", "math.", "numpy.")) and not self.an.is_tree_name(self.ref, q):
                recv = self.ev(func.value, env)
                classes = atoms_of(recv, "mod")
                if func.attr.value in api.MODULE_CASTS and classes and self.an.are_modules(self.ref, classes):
                    self.module_cast(e)
                if classes:
                    # a method of a submodule: reached like `self.method(...)`
                    return self.an.call_module(self.ref, classes, args, func.attr.value)
                if traced(recv) or U in recv or ST in recv or LT in recv or any(isinstance(a, tuple) for a in recv):
                    res = self.method(e, func.attr.value, recv, args, pos)
                    if res is not None:
                        return res
        q = self.ref.module.qualify(func) if fname else None
        if q == "functools.partial" and args and args[0][0] is None and not args[0][1]:
            held = partial_of(args[0][2], args[1:])
            if held is not None:
                return held
        if q is not None and q.startswith("torch.") and not self.an.is_tree_name(self.ref, q):
            return self.torch_call(e, q, args, pos)
        if q is not None and q.startswith("math.") and any(traced(k) for k in pos):
            self.report(e, "TS106", f"`{q}()` converts a traced value to a Python float: frozen by tracing")
            return KP
        if (
            q is not None
            and q.startswith("numpy.")
            and fname.split(".")[0] in self.ref.module.imports  # type: ignore[union-attr]  # libcst's unions / an invariant mypy cannot see
            and any(traced(k) for k in pos)
        ):
            self.report(e, "TS106", f"`{fname}()` converts a tensor to a NumPy value: frozen by tracing")
            return KP
        # calls into reached code: self.method(...), helpers, imported functions
        callee = self.an.resolve_call(self.ref, func)
        if callee is not None:
            if isinstance(callee, str):  # "class": a constructor
                fields = [(kw, k) for kw, star, k in args if kw is not None and not star]
                declared = self.an.dataclass_fields(self.ref, func) if fields else None
                if declared is not None:
                    # a dataclass of the tree (a ModelOutput): its fields read back as what was passed
                    # (`outputs.last_hidden_state`, `outputs["logits"]`, `outputs[0]`), in declaration order
                    rank = {name: i for i, name in enumerate(declared)}
                    fields.sort(key=lambda f: (rank.get(f[0], len(rank)), f[0]))
                    return frozenset({("obj", tuple(fields))})
                q = self.ref.module.qualify(func)
                # an instance of a class of the tree (a cache): its methods and attributes resolve like a
                # submodule's
                return mod_kind({q}) if q is not None else KP
            return self.an.call(self.ref, callee, args)
        # a value called: a submodule (its class's forward), functions held in a registry (each of them)
        fk = self.ev(func, env)
        nested = self._nested_defs(fk)
        if nested:
            return join(*(self.call_nested(n, args) for n in nested))
        classes, defs = atoms_of(fk, "mod"), atoms_of(fk, "fns")
        if "torch.nn.MaxPool1d" in classes or (
            isinstance(func, cst.Call) and self.ref.module.qualify(func.func) == "torch.nn.MaxPool1d"
        ):
            built = func.args if isinstance(func, cst.Call) else ()
            indices = any(
                a.keyword is not None and a.keyword.value == "return_indices" and dotted(a.value) != "False"
                for a in built
            )
            self.pins_length(e, "nn.MaxPool1d", args, indices)
        if classes or defs:
            out = [self.an.call_module(self.ref, classes, args)] if classes else []
            out.extend(self.an.call(self.ref, *unbind(d, args)) for d in defs)
            # (None is not called: a call of `self.pool` sits under `if self.pool is not None`)
            if any(not (isinstance(a, tuple) and a[0] in ("mod", "fns")) and a != N for a in fk):
                out.append(KU)
            return join(*out)
        # an unknown callable given tensors: its result is opaque (a tensor, a tuple, an output object)
        if (
            isinstance(func, cst.Attribute)
            and isinstance(func.value, cst.Name)
            and func.value.value == "self"
            or any(is_tensor(k) or LT in k or U in k for _, _, k in args)
            or isinstance(func, (cst.Subscript, cst.Call))
            and args
            or U in fk
        ):
            return KU
        return KP

    def builtin(self, e: cst.Call, name: str, args: list[Arg], pos: list[Kind]) -> Optional[Kind]:
        anyk = join(*(k for _, _, k in args)) if args else EMPTY
        if name == "bool":
            if pos:
                self.coerce(e, pos[0], f"`bool({self.src(e.args[0].value)})`")
            return KP
        if name in _BUILTIN_CONVERT:
            if name in ("int", "float", "complex") and not pos:
                return KP
            if traced(anyk):
                self.report(
                    e,
                    "TS106",
                    f"`{name}()` converts a "
                    f"{'tensor' if is_tensor(anyk) else 'traced size'} to {_BUILTIN_CONVERT[name]}: "
                    f"frozen by tracing",
                )
            return KD if D in anyk and name in ("int", "float") else KP
        if name == "len":
            if pos and surely_tensor(pos[0]):
                self.report(
                    e,
                    "TS108",
                    f"`len({self.src(e.args[0].value)})` reads a tensor's first dimension as "
                    f"a Python int: frozen for dynamic axes (use `.shape[0]`)",
                )
            return KP
        if name == "range":
            if any(is_tensor(k) for k in pos):
                self.report(e, "TS106", "`range()` over a tensor value converts it to a Python int: frozen by tracing")
            elif self.target == "dynamo" and any(is_size(k) for k in pos):
                # the tracer unrolls it without a word; torch.export turns the length into a constant
                self.report(
                    e,
                    "TS108",
                    f"`{self.src(e)}` counts to a traced size: torch.export unrolls the loop "
                    f"(or builds the list) for the example's length and pins that axis",
                )
            return KP
        if name in _BUILTIN_COMPARE:
            if len(pos) == 1:
                k = pos[0]
                if surely_tensor(k):
                    self.report(e, "TS107", f"`{name}()` iterates over a tensor: frozen by tracing")
                elif LT in k or is_tensor(element(k)):
                    self.coerce(e, KT, f"`{name}()` over tensors")
                elif ST in k or is_size(element(k)):
                    self.coerce(e, KS, f"`{name}()` over traced sizes")
                    # the largest size is one of the traced sizes: it stays traced
                    return KS if name != "sorted" else KP
            elif len(pos) > 1:
                k = frozenset(a for a in anyk if a in (T, S))
                self.coerce(e, k, f"`{name}()` of `{self.src(e)}`")
                # `max(0, pad - x.shape[-1])` may be the traced value itself: comparing it again freezes again
                if name != "sorted" and is_size(k) and not is_tensor(k):
                    return KS
            return KP
        if name in _BUILTIN_ITERATE:
            for (kw, _star, k), a in zip(args, e.args):
                if kw is None and surely_tensor(k):
                    self.report(
                        e,
                        "TS107",
                        f"`{name}()` iterates over tensor `{self.src(a.value)}`: the number of "
                        f"items is frozen by tracing",
                    )
                    break
            if name == "enumerate" and pos:
                return iterable(tup([KP, element(pos[0])]))
            if name == "zip" and pos:
                return iterable(tup([element(k) for k in pos]))
            if name in ("list", "tuple", "reversed", "iter") and pos:
                k = pos[0]
                if ST in k:
                    return KST
                if is_tensor(k) or LT in k:
                    return KLT
                return k if any(isinstance(a, tuple) for a in k) else KP
            if name == "sum" and pos and (LT in pos[0] or is_tensor(element(pos[0]))):
                return KT
            if name in ("all", "any") and pos and (ST in pos[0] or LT in pos[0]):
                # the truth of each element: sizes of a shape, tensors of a list
                self.coerce(e, KS if ST in pos[0] else KT, f"`{name}()`")
            return KP
        if name == "next" and pos:
            return element(pos[0])
        if name == "abs" or name == "round":
            return frozenset(a for a in anyk if a in (T, S)) or KP
        if name in _BUILTIN_PYTHON:
            return KP
        return None

    def method(self, e: cst.Call, name: str, recv: Kind, args: list[Arg], pos: list[Kind]) -> Optional[Kind]:
        """A method call on a tensor (or a shape, or a sequence of tensors, or an opaque value)."""
        if U in recv and name in api.TENSOR_MEMBERS:
            recv = recv | KT  # only a tensor has this method
        if is_tensor(recv):
            if name in api.CONVERTING_METHODS:
                self.report(
                    e,
                    "TS106",
                    f"`.{name}()` converts a tensor to {api.CONVERTING_METHODS[name]}: the value is frozen by tracing",
                )
                # torch.export reads it as an unbacked symbol: the export fails where it is branched on, perhaps
                # in another function (longformer's `is_global_attn`), not here
                return KD if name == "item" and self.target == "dynamo" else KP
            if name in _SIZE_TAKING:
                self.tensor_as_size(e, name, args)
            if name == "size":
                return KS if args else KST
            if name in api.SIZE_RETURNING:
                return KS
            if name in api.PYTHON:
                return KP
            if name in api.MULTI or name in api.MULTI_WITH_DIM and (pos or any(kw == "dim" for kw, _, _ in args)):
                return KLT
            if name in ("__len__",):
                self.report(e, "TS108", "`__len__()` of a tensor is frozen for dynamic axes")
                return KP
            # a method tensors do not have: the value was not (only) a tensor
            return KT if name in api.TENSOR_MEMBERS or name in api.TENSOR_ATTRS else KU
        if U in recv:
            return KU
        if ST in recv:
            if name == "numel":
                return KS
            return KP
        if LT in recv or any(isinstance(a, tuple) for a in recv):
            if name in ("append", "extend", "insert") and isinstance(e.func, cst.Attribute):
                return KP
            if name in ("values", "indices") and (
                LT in recv or any(isinstance(a, tuple) and a[0] == "tup" for a in recv)
            ):
                return KT
            vals = [a[1] for a in recv if isinstance(a, tuple) and a[0] == "dictof"]
            key = e.args[0].value if e.args and isinstance(e.func, cst.Attribute) else None
            if (
                name in ("get", "pop")
                and isinstance(key, cst.SimpleString)
                and vals
                and all(("dictof", v) in _literal_dictofs(recv) for v in vals)
            ):
                # `kwargs.get("output_attentions", False)` on keywords known by name: the value passed under
                # that key, else the default (and anything an unknown part of the dict may hold)
                known = [way.get(key.evaluated_value) for way in keyed_ways(recv)]
                default = args[1][2] if len(args) > 1 else KN
                rest = recv & {P, U}
                return join(
                    *(k for k in known if k is not None), default if None in known or not known else EMPTY, rest
                )
            if vals:
                v = join(*vals)
                if name not in ("get", "pop", "values", "items", "setdefault") and atoms_of(v, "fns"):
                    # a registry object's own lookup method (`get_interface(name, default)`): any of its
                    # functions, or the one handed in
                    return join(v, *(k for _, _, k in args if atoms_of(k, "fns")))
                return {
                    "get": join(v, KN),
                    "pop": v,
                    "values": iterable(v),
                    "items": iterable(tup([KP, v])),
                    "setdefault": v,
                }.get(name, KP)
            return None
        return None

    def tensor_as_size(self, e: cst.Call, name: str, args: list[Arg]) -> None:
        """A tensor handed where a size goes (`x.view(b, torch.div(n, 2, rounding_mode="trunc"))`, `torch.zeros(t)`,
        `F.interpolate(size=t)`): torch.export reads it back as an integer it cannot know (data-dependent).
        The tracer records it (sizes are traced), so only for the dynamo target."""
        if self.target != "dynamo":
            return
        sizes = _SIZE_POSITIONS.get(name)
        i = 0
        for (kw, star, k), a in zip(args, e.args):
            at = None if kw is not None or star else i
            i += kw is None and not star
            is_size_arg = kw in ("size", "pad", "shape") if at is None else (sizes is None or at in sizes)
            if not star and is_size_arg and surely_tensor(k):
                self.report(
                    a.value,
                    "TS106",
                    f"`{self.src(a.value)}`, a tensor, is a size of `{name}()`: "
                    f"torch.export reads it back as a data-dependent integer",
                )

    def module_cast(self, e: cst.Call) -> None:
        if self.target == "dynamo":
            self.report(
                e,
                "TS110",
                f"`{self.src(e.func)}()` converts a module's parameters in `forward`: torch.export cannot swap "
                f"them (`_apply(): Couldn't swap`); build the module in that dtype or device instead",
            )

    def pins_length(self, e: cst.Call, what: str, args: list[Arg], indices: bool = False) -> None:
        """`F.max_pool1d(x, k)` / `nn.MaxPool1d(k)(x)`: torch.export (torch 2.13 and 2.14) specialises the
        input's length axis there (the aten op without indices has no symbolic-shape path; with
        `return_indices=True`, or `max_pool2d`, the length stays dynamic). The tracer records it, so only for
        the dynamo target."""
        if self.target != "dynamo" or indices or any(kw == "return_indices" for kw, _, _ in args):
            return
        if args and args[0][0] in (None, "input") and not args[0][1] and is_tensor(args[0][2]):
            self.report(
                e,
                "TS108",
                f"`{what}` pins the length axis under torch.export: the program takes only the example's "
                f"length (`F.max_pool2d(x.unsqueeze(-1), (k, 1), (s, 1)).squeeze(-1)` keeps it dynamic)",
            )

    def torch_call(self, e: cst.Call, q: str, args: list[Arg], pos: list[Kind]) -> Kind:
        last = q.rsplit(".", 1)[-1]
        if q in ("torch.nn.functional.max_pool1d", "torch.max_pool1d"):
            self.pins_length(e, last, args)
        if q in _SIZE_TAKING_TORCH:
            self.tensor_as_size(e, last, args)
        if q == "torch.div":
            self.test_kinds[id(e)] = join(*(k for _, _, k in args)) if args else EMPTY  # for the cond form
        if (
            q
            in (
                "torch.tensor",
                "torch.as_tensor",
                "torch.Tensor",
                "torch.LongTensor",
                "torch.FloatTensor",
                "torch.BoolTensor",
                "torch.IntTensor",
            )
            and e.args
        ):
            a0 = e.args[0].value
            if not is_literal(a0) and e.args[0].keyword is None:
                self.report(
                    e,
                    "TS106",
                    f"`{q}({self.src(a0)})` records a computed Python value as a constant: frozen by tracing",
                )
            return KT
        if q in api.GUARDS and self.guard_index is not None:
            return KB1 if api.GUARDS[q][self.guard_index] else KB0
        if q.startswith(api.PYTHON_NAMESPACES):
            if q in ("torch.jit.annotate",) and len(pos) == 2:
                return pos[1]
            if q.startswith("torch.utils.checkpoint"):
                return KT
            return KP
        if q == "torch.is_nonzero" and pos:
            self.coerce(e, pos[0], "`torch.is_nonzero()`")
            return KP
        if last in api.PYTHON or last[:1].isupper() and q.count(".") == 1:
            # torch.Size(...), torch.device(...), torch.Generator(...)
            return KST if last == "Size" else KP
        if last in api.SIZE_RETURNING:
            return KS
        if last in ("broadcast_shapes",):
            return KST
        if q.startswith("torch.nn.") and not q.startswith("torch.nn.functional.") and last[:1].isupper():
            return KP  # constructing a module
        if q.startswith("torch.nn.init."):
            return KT
        if last in api.MULTI or last in api.MULTI_WITH_DIM and (len(pos) > 1 or any(kw == "dim" for kw, _, _ in args)):
            return KLT
        if last == "where" and len(e.args) == 1 or last == "nonzero" and any(kw == "as_tuple" for kw, _, _ in args):
            return KLT
        if last == "cond" and len(pos) >= 3:
            # torch.cond(pred, true_fn, false_fn, operands): what the branches return for those operands
            # (branches defined in this body; a `fix --form cond` rewrite is re-checked through this)
            ops = pos[3] if len(pos) > 3 else next((k for kw, _, k in args if kw == "operands"), EMPTY)
            elems = [a[1] for a in ops if isinstance(a, tuple) and a[0] == "tup"]
            branches = [self._nested_defs(fk) for fk in pos[1:3]]
            if len(elems) == 1 and all(len(b) == 1 and len(fk) == 1 for b, fk in zip(branches, pos[1:3])):
                out = join(*(self.call_nested(b[0], [(None, "", k) for k in elems[0]]) for b in branches))
                if out and all(a in (T, LT) or isinstance(a, tuple) and a[0] == "tup" for a in out):
                    return out
            return join(KT, KLT)
        if last == "cond" or last == "while_loop":
            return KLT if last == "while_loop" else join(KT, KLT)
        return KT

    # ---------------------------------------------------------------- script-only checks
    def script_checks_signature(self, fn: cst.FunctionDef) -> None:
        p = fn.params
        if isinstance(p.star_arg, cst.Param):
            self.report(p.star_arg, "TS301", f"`*{p.star_arg.name.value}` is not supported by torch.jit.script")
        if p.star_kwarg is not None:
            self.report(p.star_kwarg, "TS301", f"`**{p.star_kwarg.name.value}` is not supported by torch.jit.script")
        for param in all_params(p):
            if (
                param.default is not None
                and isinstance(param.default, cst.Name)
                and param.default.value == "None"
                and (
                    param.annotation is None
                    or N not in (annotation_kind(param.annotation, self.an.names(self.ref)) or KP)
                )
            ):
                self.report(
                    param,
                    "TS301",
                    f"`{param.name.value}=None` needs an `Optional[...]` annotation for torch.jit.script",
                )


_USES: dict[int, tuple[cst.FunctionDef, set[str]]] = {}
_TESTED = (T, S, D)  # the atoms a condition's outcome depends on under export
_OBJECT_USES: dict[int, tuple[cst.FunctionDef, set[str]]] = {}
_UNSET_FIELD = KN | KU  # a field the constructor was not given: its default, or what this analysis cannot see set
_READS_ONLY = frozenset({"getattr", "hasattr", "isinstance", "type", "id", "len", "str", "repr", "print"})


def _literal_dictofs(k: Kind) -> set[Atom]:
    """The dictof atoms that only repeat the literals' values (no `d[k] = v` added to them)."""
    lit = [kv for a in k if isinstance(a, tuple) and a[0] == "dkv" for _, kv in a[1]]
    return {("dictof", join(*lit))} if lit else set()


def object_uses(fn: cst.FunctionDef) -> set[str]:
    """Names the body calls (`f(...)`), calls a method of (`attn.prepare_mask(...)`) or hands to a call:
    a module instance passed there may matter by its class. (Only read for attributes, `module.scaling`,
    it is a plain value.)"""
    hit = _OBJECT_USES.get(id(fn))
    if hit is not None and hit[0] is fn:
        return hit[1]
    out: set[str] = set()
    _OBJECT_USES[id(fn)] = (fn, out)
    stack: list[cst.CSTNode] = [fn.body]
    while stack:
        n = stack.pop()
        if isinstance(n, cst.Call):
            f = n.func.value if isinstance(n.func, cst.Attribute) else n.func
            if isinstance(f, cst.Name):
                out.add(f.value)
            if not (isinstance(n.func, cst.Name) and n.func.value in _READS_ONLY):
                out.update(a.value.value for a in n.args if isinstance(a.value, cst.Name))
        stack.extend(n.children)
    return out


def tensor_uses(fn: cst.FunctionDef) -> set[str]:
    """Names the body uses as only a tensor can be used: `x.shape`, `x.view(...)`, `x * 2`, `x[:, 0]`."""
    hit = _USES.get(id(fn))
    if hit is not None and hit[0] is fn:
        return hit[1]
    out: set[str] = set()
    _USES[id(fn)] = (fn, out)
    # a plain walk over children: libcst's visitor machinery costs ten times more on long bodies
    stack = [fn.body]
    while stack:
        n = stack.pop()
        if isinstance(n, cst.Attribute):
            if isinstance(n.value, cst.Name) and (n.attr.value in api.TENSOR_MEMBERS or n.attr.value == "shape"):
                out.add(n.value.value)
        elif isinstance(n, cst.BinaryOperation):
            for side in (n.left, n.right):
                if isinstance(side, cst.Name):
                    out.add(side.value)
        elif isinstance(n, cst.Subscript):
            # multi-dimensional or None indexing (`mask[:, None]`), which Python sequences do not take
            if isinstance(n.value, cst.Name) and (
                len(n.slice) > 1
                or any(
                    isinstance(el.slice, cst.Index)
                    and isinstance(el.slice.value, cst.Name)
                    and el.slice.value.value == "None"
                    for el in n.slice
                )
            ):
                out.add(n.value.value)
        stack.extend(n.children)  # type: ignore[arg-type]  # libcst's unions / an invariant mypy cannot see
    return out


def all_params(p: cst.Parameters) -> list[cst.Param]:
    return list(p.posonly_params) + list(p.params) + list(p.kwonly_params)


def join_env(*envs: Env) -> Env:
    out: Env = {}
    for env in envs:
        for k, v in env.items():
            out[k] = join(out[k], v) if k in out else v
    return out


def _const_int(e: Optional[cst.BaseExpression]) -> Optional[int]:
    """`3`, `-1`: an integer literal's value."""
    if isinstance(e, cst.UnaryOperation) and isinstance(e.operator, cst.Minus):
        inner = _const_int(e.expression)
        return -inner if inner is not None else None
    return int(e.value, 0) if isinstance(e, cst.Integer) else None


def _const_bounds(slices: Sequence[cst.SubscriptElement]) -> Optional[tuple[Optional[int], Optional[int]]]:
    """(lower, upper) of a one-dimensional slice whose bounds are integer literals or absent, without a step."""
    if len(slices) != 1 or not isinstance(slices[0].slice, cst.Slice):
        return None
    s = slices[0].slice
    if s.step is not None:
        return None
    lo, hi = _const_int(s.lower), _const_int(s.upper)
    if (s.lower is not None and lo is None) or (s.upper is not None and hi is None):
        return None
    return lo, hi
