"""Shared pieces of the rewrite forms: plans, purity, conditions, imports."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import AbstractSet, Any, Callable, Optional, Sequence

import libcst as cst

from tracesafe.analyzer.project import dotted

# the qualified name an expression refers to in its module (ModuleInfo.qualify), None when it names nothing
Qualify = Callable[[cst.BaseExpression], Optional[str]]
Import = tuple[str, Optional[str]]  # ("torch", None): `import torch`; ("typing", "Tuple"): `from typing import Tuple`


@dataclass
class Plan:
    """What one form does to one flagged node: replace `old` by `new`, or refuse with a reason."""

    form: str
    codes: set[str]
    nodes: list[cst.CSTNode]  # the flagged nodes this plan fixes
    # a node, or (for a plan that replaces statements) the list of the statements it consumes and of those it writes
    old: Any = None
    new: Any = None
    applicability: str = "safe"
    reason: Optional[str] = None  # set when the form refuses
    imports: set[Import] = field(default_factory=set)
    changed_signature: Optional[str] = None  # "Class.forward" when callers must adapt
    position: Optional[tuple[int, int]] = None  # (line, column) of the first node, 1-based; set for reports
    defn: Any = None  # the analysed definition (analyzer.project.Def) holding the nodes (set by the engine)

    @property
    def ok(self) -> bool:
        return self.reason is None


_PURE_METHODS = frozenset(
    """
abs neg exp log log1p expm1 sqrt rsqrt sigmoid tanh relu gelu silu softmax log_softmax clamp clamp_min
clamp_max clone detach float double half int long bool to mean sum amax amin max min pow mul add sub div
square sign floor ceil round t transpose permute reshape view flatten unsqueeze squeeze contiguous
nan_to_num isnan isinf isfinite any all logical_not logical_and logical_or zeros_like ones_like full_like
masked_fill where norm std var cumsum type_as expand_as expand
""".split()
)
_PURE_TORCH = (
    frozenset("torch." + m for m in _PURE_METHODS)
    | frozenset(
        f"torch.nn.functional.{m}"
        for m in "relu gelu silu softmax log_softmax normalize layer_norm sigmoid tanh".split()
    )
    | frozenset(
        {"torch.zeros_like", "torch.ones_like", "torch.full_like", "torch.where", "torch.maximum", "torch.minimum"}
    )
)


_FIELDS: dict[type, tuple[str, ...]] = {}


def child_nodes(node: cst.CSTNode) -> list[cst.CSTNode]:
    """A node's children, in no particular order: read from its fields (libcst's `children`, like a
    visitor, rebuilds the node to find them)."""
    t = type(node)
    names = _FIELDS.get(t)
    if names is None:
        names = _FIELDS[t] = tuple(f.name for f in dataclasses.fields(t))
    out = []
    for name in names:
        v = getattr(node, name)
        if isinstance(v, cst.CSTNode):
            out.append(v)
        elif isinstance(v, (list, tuple)):
            out.extend(x for x in v if isinstance(x, cst.CSTNode))
    return out


def is_pure(e: cst.BaseExpression, qualify: Qualify) -> bool:
    """Side-effect free and always valid to evaluate (no indexing, no unknown calls)."""
    if isinstance(e, (cst.Name, cst.Integer, cst.Float, cst.SimpleString)):
        return True
    if isinstance(e, cst.Attribute):
        return is_pure(e.value, qualify)
    if isinstance(e, cst.UnaryOperation):
        return is_pure(e.expression, qualify)
    if isinstance(e, cst.BinaryOperation):
        return is_pure(e.left, qualify) and is_pure(e.right, qualify)
    if isinstance(e, cst.Comparison):
        return is_pure(e.left, qualify) and all(is_pure(c.comparator, qualify) for c in e.comparisons)
    if isinstance(e, cst.Call):
        if any(not is_pure(a.value, qualify) or a.star for a in e.args):
            return False
        q = qualify(e.func) or ""
        if q in _PURE_TORCH or q.startswith("torch.nn.functional.") and q.rsplit(".", 1)[-1] in _PURE_METHODS:
            return True
        if isinstance(e.func, cst.Attribute) and e.func.attr.value in _PURE_METHODS:
            return is_pure(e.func.value, qualify)
        return dotted(e.func) in ("float", "int") and bool(e.args) and isinstance(e.args[0].value, cst.SimpleString)
    return False


_BOOL_METHODS = frozenset(
    "any all isnan isinf isfinite logical_not logical_and logical_or eq ne lt le gt ge isclose equal bool".split()
)


def as_bool_tensor(test: cst.BaseExpression) -> cst.BaseExpression:
    """A 0-d bool tensor with Python truthiness of `test`: comparisons stay, anything else gets `!= 0`."""
    inner = test
    while isinstance(inner, cst.UnaryOperation) and isinstance(inner.operator, cst.BitInvert):
        inner = inner.expression
    if isinstance(inner, cst.Comparison) and not any(
        isinstance(c.operator, (cst.Is, cst.IsNot, cst.In, cst.NotIn)) for c in inner.comparisons
    ):
        return test.with_changes(lpar=[], rpar=[]) if test is inner else test
    if isinstance(inner, cst.Call):
        f = inner.func
        last = f.attr.value if isinstance(f, cst.Attribute) else f.value if isinstance(f, cst.Name) else ""
        if last in _BOOL_METHODS:
            return test
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        return cst.Comparison(_paren(test.expression), [cst.ComparisonTarget(cst.Equal(), cst.Integer("0"))])
    return cst.Comparison(_paren(test), [cst.ComparisonTarget(cst.NotEqual(), cst.Integer("0"))])


def _paren(e: cst.BaseExpression) -> cst.BaseExpression:
    if isinstance(e, (cst.Name, cst.Attribute, cst.Call, cst.Subscript)) or e.lpar:
        return e
    return e.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


paren = _paren


def chain(e: cst.BaseExpression, op: type) -> list[cst.BaseExpression]:
    """`a and b and c` -> [a, b, c] (one operator; a parenthesized or different one is an operand)."""
    if isinstance(e, cst.BooleanOperation) and isinstance(e.operator, op) and not e.lpar:
        return chain(e.left, op) + chain(e.right, op)
    return [e]


def tensor_and(tests: Sequence[cst.BaseExpression], op: type) -> cst.BaseExpression:
    """`t1 and t2` on 0-d tensors as one bool tensor: `(t1) & (t2)` (`|` for `or`). Evaluates every
    operand: the caller proves those after the first are side-effect free."""
    bit = cst.BitAnd() if op is cst.And else cst.BitOr()
    pred = as_bool_tensor(tests[0])
    if len(tests) == 1:
        return pred.with_changes(lpar=[], rpar=[])
    pred = _paren(pred)
    for t in tests[1:]:
        pred = cst.BinaryOperation(pred, bit, _paren(as_bool_tensor(t)))
    return pred


def join_tests(tests: Sequence[cst.BaseExpression], op: type[cst.BaseBooleanOp]) -> cst.BaseExpression:
    """Python operands joined again with their own `and`/`or`."""
    out = tests[0]
    for t in tests[1:]:
        out = cst.BooleanOperation(out, op(), t)
    return out


def number(e: cst.BaseExpression) -> bool:
    while isinstance(e, cst.UnaryOperation) and isinstance(e.operator, (cst.Minus, cst.Plus)):
        e = e.expression
    return isinstance(e, (cst.Integer, cst.Float))


# operations whose result has their first operand's (or receiver's) shape
_ELEMENTWISE = frozenset(
    """
abs neg negative relu relu6 sigmoid tanh exp exp2 expm1 log log1p log2 log10 sqrt rsqrt square reciprocal sign
floor ceil round trunc frac sin cos tan clamp clamp_min clamp_max clip float half double bfloat16 int long bool
to type_as nan_to_num masked_fill softmax log_softmax gelu silu elu leaky_relu softplus mish hardtanh dropout
zeros_like ones_like full_like empty_like rand_like randn_like clone detach contiguous pow
""".split()
)


def shape_base(e: cst.BaseExpression, qualify: Qualify, scalars: AbstractSet[str] = frozenset()) -> Optional[str]:
    """The expression whose shape e provably has ("" for a plain number), or None when unknown. A call is
    elementwise only when it is torch's: `torch.relu(t)`, `F.gelu(t)` through the module's imports, or a
    method of that name on a value (`t.softmax(-1)`). `scalars` are names known to hold Python values (no
    tensor): broadcasting with one keeps the other operand's shape."""
    if number(e) or _scalar_name(e, scalars):
        return ""
    if isinstance(e, (cst.Name, cst.Attribute)):
        return cst.Module([]).code_for_node(e.with_changes(lpar=[], rpar=[]))
    if isinstance(e, cst.UnaryOperation) and isinstance(e.operator, (cst.Minus, cst.Plus, cst.BitInvert)):
        return shape_base(e.expression, qualify, scalars)
    if isinstance(e, cst.BinaryOperation):
        left, right = shape_base(e.left, qualify, scalars), shape_base(e.right, qualify, scalars)
        if _scalar(e.right) or right == "":
            return left
        if _scalar(e.left) or left == "":
            return right
        # `x - x.mean(0, keepdim=True)`: a reduction of the other operand that keeps its dimensions broadcasts
        # back to that operand's shape
        if left is not None and _kept_reduction(e.right, qualify) == left:
            return left
        if right is not None and _kept_reduction(e.left, qualify) == right:
            return right
        return left if left is not None and left == right else None
    if isinstance(e, cst.Call):
        f = e.func
        if isinstance(f, cst.Attribute) and f.attr.value in _ELEMENTWISE and not _torch(f.value, qualify):
            if not _bounds_scalar(f.attr.value, e.args, scalars):
                return None
            return shape_base(f.value, qualify, scalars)  # `t.softmax(-1)`: the receiver's shape
        q = qualify(f) or ""
        if _torch(f, qualify) and q.rsplit(".", 1)[-1] in _ELEMENTWISE and e.args:
            if not _bounds_scalar(q.rsplit(".", 1)[-1], e.args[1:], scalars):
                return None
            return shape_base(e.args[0].value, qualify, scalars)  # `torch.relu(t)`, `F.gelu(t)`
    return None


# elementwise operations whose other operands broadcast with the first: a tensor bound or exponent may give
# the result a larger shape (`torch.clamp(x, min=t)`)
_BROADCASTING = frozenset("clamp clamp_min clamp_max clip pow".split())


def _bounds_scalar(op: str, args: Sequence[cst.Arg], scalars: AbstractSet[str]) -> bool:
    return op not in _BROADCASTING or all(number(a.value) or _scalar_name(a.value, scalars) for a in args)


def _scalar_name(e: cst.BaseExpression, scalars: AbstractSet[str]) -> bool:
    while isinstance(e, cst.UnaryOperation) and isinstance(e.operator, (cst.Minus, cst.Plus)):
        e = e.expression
    return isinstance(e, cst.Name) and e.value in scalars


_REDUCTIONS = frozenset("mean sum amax amin std var norm logsumexp prod nansum nanmean".split())


def _kept_reduction(e: cst.BaseExpression, qualify: Qualify) -> Optional[str]:
    """The base of `t.mean(dim, keepdim=True)` (any reduction with keepdim=True), or None."""
    if not (isinstance(e, cst.Call) and isinstance(e.func, cst.Attribute) and e.func.attr.value in _REDUCTIONS):
        return None
    if not any(
        a.keyword is not None
        and a.keyword.value == "keepdim"
        and isinstance(a.value, cst.Name)
        and a.value.value == "True"
        for a in e.args
    ):
        return None
    return shape_base(e.func.value, qualify)


def _torch(e: cst.BaseExpression, qualify: Qualify) -> bool:
    """e names something in torch (a module or a function), resolved through the module's imports."""
    q = qualify(e) if isinstance(e, (cst.Name, cst.Attribute)) else None
    return q is not None and (q == "torch" or q.startswith("torch."))


def _scalar(e: cst.BaseExpression) -> bool:
    """A number or a size: broadcasting with it keeps the other operand's shape."""
    if number(e):
        return True
    return (
        isinstance(e, cst.Subscript)  # type: ignore[return-value]  # libcst's unions / an invariant mypy cannot see
        and isinstance(e.value, cst.Attribute)
        and e.value.attr.value == "shape"
        or isinstance(e, cst.Call)
        and isinstance(e.func, cst.Attribute)
        and e.func.attr.value == "size"
        and e.args
    )


def call(func: str, *args: cst.BaseExpression) -> cst.Call:
    return cst.Call(cst.parse_expression(func), [cst.Arg(a) for a in args])


def _imports_torch_anywhere(tree: cst.Module) -> bool:
    """`import torch` anywhere in the module, also under `if is_torch_available():` or `try:`: the module
    decides when torch is imported, and the rewritten functions run only where it is."""
    stack: list[cst.CSTNode] = [tree]
    while stack:  # statements only (a visitor would walk every expression of the module)
        n = stack.pop()
        if isinstance(n, (cst.SimpleStatementLine, cst.SimpleStatementSuite)):
            if any(
                isinstance(s, cst.Import)
                and any(dotted(a.name) in ("torch", "torch.nn") and a.asname is None for a in s.names)
                for s in n.body
            ):
                return True
        elif not isinstance(n, cst.FunctionDef):  # an import inside a function binds torch there only
            stack.extend(ch for ch in n.children if isinstance(ch, (cst.SimpleStatementLine, *BLOCKS)))
    return False


# what holds statements: a statement-level walk descends through these, never into expressions
BLOCKS = (
    cst.BaseSuite,
    cst.BaseCompoundStatement,
    cst.Else,
    cst.ExceptHandler,
    cst.ExceptStarHandler,
    cst.Finally,
    cst.MatchCase,
)


def ensure_imports(tree: cst.Module, needed: set[Import]) -> cst.Module:
    """Add `import torch` / `from typing import X` when the module lacks them (after the docstring and
    `__future__` imports, before other code)."""
    have_torch = _imports_torch_anywhere(tree)
    typing_names: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, cst.SimpleStatementLine):
            for s in stmt.body:
                if isinstance(s, cst.Import):
                    for a in s.names:
                        if (
                            dotted(a.name) == "torch"
                            and a.asname is None
                            or dotted(a.name) == "torch.nn"
                            and a.asname is None
                        ):
                            have_torch = True
                elif (
                    isinstance(s, cst.ImportFrom)
                    and s.module is not None
                    and dotted(s.module) == "typing"
                    and not isinstance(s.names, cst.ImportStar)
                ):
                    typing_names |= {a.name.value for a in s.names if a.asname is None and isinstance(a.name, cst.Name)}
    new_lines = []
    if ("torch", None) in needed and not have_torch:
        new_lines.append(cst.parse_statement("import torch\n"))
    wanted = sorted(n for m, n in needed if m == "typing" and n is not None and n not in typing_names)
    body = list(tree.body)
    if wanted:
        for idx, stmt in enumerate(body):  # extend an existing `from typing import ...` line
            if (
                isinstance(stmt, cst.SimpleStatementLine)
                and len(stmt.body) == 1
                and isinstance(stmt.body[0], cst.ImportFrom)
                and stmt.body[0].module is not None
                and dotted(stmt.body[0].module) == "typing"
                and not isinstance(stmt.body[0].names, cst.ImportStar)
                and not stmt.body[0].relative
            ):
                imp = stmt.body[0]
                names = [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in imp.names]  # type: ignore[union-attr]  # libcst's unions / an invariant mypy cannot see
                names += [cst.ImportAlias(cst.Name(n)) for n in wanted]
                body[idx] = stmt.with_changes(body=[imp.with_changes(names=names)])
                tree = tree.with_changes(body=body)
                wanted = []
                break
    if wanted:
        new_lines.append(cst.parse_statement(f"from typing import {', '.join(wanted)}\n"))
    if not new_lines:
        return tree
    i = 0
    while i < len(body):
        s = body[i]  # type: ignore[assignment]  # libcst's unions / an invariant mypy cannot see
        if (
            isinstance(s, cst.SimpleStatementLine)
            and len(s.body) == 1
            and (
                isinstance(s.body[0], cst.Expr)
                and isinstance(s.body[0].value, (cst.SimpleString, cst.ConcatenatedString))
                or isinstance(s.body[0], cst.ImportFrom)
                and s.body[0].module is not None
                and dotted(s.body[0].module) == "__future__"
            )
        ):
            i += 1
            continue
        break
    return tree.with_changes(body=body[:i] + new_lines + body[i:])


def annotate_params(fn: cst.FunctionDef) -> tuple[cst.Parameters, set[Import]]:
    """fn's parameters with the annotations torch.jit.script needs: `torch.Tensor` for required ones,
    `Optional[torch.Tensor]` for those defaulting to None; `self` and annotated ones stay. Also the
    imports those annotations need."""
    from tracesafe.analyzer.infer import all_params

    imports: set[Import] = set()
    every = all_params(fn.params)
    mapping = {}
    for i, p in enumerate(every):
        new = p
        if i > 0 and p.annotation is None:
            if p.default is None:
                new = p.with_changes(annotation=cst.Annotation(cst.parse_expression("torch.Tensor")))
            elif isinstance(p.default, cst.Name) and p.default.value == "None":
                imports.add(("typing", "Optional"))
                new = p.with_changes(annotation=cst.Annotation(cst.parse_expression("Optional[torch.Tensor]")))
        mapping[id(p)] = new
    ps = fn.params.with_changes(
        posonly_params=[mapping[id(p)] for p in fn.params.posonly_params],
        params=[mapping[id(p)] for p in fn.params.params],
        kwonly_params=[mapping[id(p)] for p in fn.params.kwonly_params],
    )
    return ps, imports


def name_counts(node: cst.CSTNode, targets: bool = False) -> Counter[str]:
    """How many times each name occurs under node as _Reads finds them (attribute names and keywords
    excluded; assignment targets only with targets=True), in no particular order. A walk over the nodes'
    fields: a libcst visitor rebuilds every node it enters, which made this walk over a whole function a
    tenth of `fix --form cond`'s planning."""
    counts: Counter[str] = Counter()
    stack = [node]
    while stack:
        n = stack.pop()
        t = type(n)
        # `type() is` rather than isinstance: this walk visits every node of a function
        if t is cst.Name:
            counts[n.value] += 1  # type: ignore[attr-defined]  # narrowed by the exact type test above
        elif t is cst.Attribute or t is cst.Arg:
            stack.append(n.value)  # type: ignore[attr-defined]  # narrowed by the exact type test above
        elif t is not cst.AssignTarget or targets:
            stack.extend(child_nodes(n))
    return counts
