"""Checks (TS109, and TS105 `assert` on a tensor): a tensor or size test whose arm only raises (`if (ids >=
vocab).any(): raise ValueError(...)`) or only warns, or an `assert` on a tensor or a size.

For the trace form (`where`) the check becomes eager-only, `if not torch.jit.is_tracing() and ...:` (`assert
torch.jit.is_tracing() or ...`): eager code runs exactly as before for every input, and while tracing the
original check was frozen into the graph as "does not raise" (or stopped the trace), so the traced graph is
the same. Safe.

For the torch.export form (`cond`) the check is kept in the exported program: under export (torch.export
sets `torch.compiler.is_compiling()`) it becomes `torch._check(torch.logical_not(<test>).item())` for a
tensor test (a runtime assertion in the program, where the original could not export at all:
`GuardOnDataDependentSymNode`) or `torch._check(<negated size test>)` for a size test (a guard on the
symbolic size, where the original guarded the same way); eager code takes the original branch, raising the
original exception. Safe. A warning is skipped while compiling (the exported program cannot warn). A test
mixing tensor and size operands, or Python and tensor operands under `or`, is refused with its reason:
split it into one check per condition.
"""

from __future__ import annotations

from typing import Optional, TypeGuard

import libcst as cst

from tracesafe.analyzer.infer import checks_only
from tracesafe.analyzer.kinds import Kind, is_size, is_tensor

from .common import Plan, Qualify, chain, is_pure, paren, tensor_and

TRACE_GUARD = "torch.jit.is_tracing"
COMPILING = "torch.compiler.is_compiling"


def raises_only(node: cst.If) -> bool:
    """The `if` arm is straight-line code that ends in `raise` (message building, then the raise)."""
    if not checks_only(node):
        return False
    last = node.body.body[-1]  # checks_only: straight-line statements
    return isinstance(last, cst.SimpleStatementLine) and isinstance(last.body[-1], cst.Raise)


def applies(node: cst.CSTNode, code: str) -> TypeGuard[cst.If | cst.Assert]:
    """The finding is a check (TS109: an `if` on a tensor or size whose arm only raises or warns, an `assert`
    on a size), or an `assert` on a tensor (TS105)."""
    return (
        code == "TS109" and isinstance(node, (cst.If, cst.Assert)) or code == "TS105" and isinstance(node, cst.Assert)
    )


def plan_guard(
    form: str,
    code: str,
    node: cst.If | cst.Assert,
    line: Optional[cst.SimpleStatementLine] = None,
    kinds: Optional[dict[int, Kind]] = None,
    qualify: Optional[Qualify] = None,
) -> Plan:
    if form == "cond" and isinstance(node, cst.If) and not raises_only(node):
        # a warning: nothing to keep in the exported program, which cannot warn; eager warns as before
        return _plan_eager_only(form, code, node, COMPILING)
    if form == "cond":
        assert qualify is not None, "the cond form plans checks with the module's names"
        try:
            return _plan_check(code, node, line, kinds or {}, qualify)
        except _Refuse as r:
            return Plan(form, {code}, [node], reason=str(r))
    return _plan_eager_only(form, code, node)


def _plan_eager_only(form: str, code: str, node: cst.If | cst.Assert, guard: str = "") -> Plan:
    """`if t: raise ...` -> `if not torch.jit.is_tracing() and t:`; `assert t, msg` -> `assert
    torch.jit.is_tracing() or t, msg` (or another exporter's guard)."""
    test = node.test
    keeps = cst.And if isinstance(node, cst.If) else cst.Or  # the operator `G and`/`G or` binds within
    if (
        isinstance(test, (cst.BooleanOperation, cst.IfExp, cst.Lambda))
        and not test.lpar
        and not (isinstance(test, cst.BooleanOperation) and isinstance(test.operator, (cst.And, keeps)))
    ):
        test = test.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    running = cst.Call(cst.parse_expression(guard or TRACE_GUARD))
    if isinstance(node, cst.If):
        new_test = cst.BooleanOperation(cst.UnaryOperation(cst.Not(), running), cst.And(), test)
    else:
        new_test = cst.BooleanOperation(running, cst.Or(), test)
    return Plan(form, {code}, [node], node, node.with_changes(test=new_test), "safe", imports={("torch", None)})


class _Refuse(Exception):
    pass


_INVERSE = {
    cst.Equal: cst.NotEqual,
    cst.NotEqual: cst.Equal,
    cst.LessThan: cst.GreaterThanEqual,
    cst.GreaterThanEqual: cst.LessThan,
    cst.GreaterThan: cst.LessThanEqual,
    cst.LessThanEqual: cst.GreaterThan,
}


def _size_holds(test: cst.BaseExpression, negate: bool) -> cst.BaseExpression:
    """An expression on sizes that is true when `test` is (or is not, with negate), without `not`, `and` or
    `or`, which would turn a symbolic size into a Python bool (a guard on the example's value)."""
    while isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        test, negate = test.expression, not negate
    test = test.with_changes(lpar=[], rpar=[]) if isinstance(test, cst.Comparison) else test
    if isinstance(test, cst.Comparison):
        if len(test.comparisons) != 1 or type(test.comparisons[0].operator) not in _INVERSE:
            raise _Refuse("a chained or `is`/`in` comparison in a size check")
        if not negate:
            return test
        target = test.comparisons[0]
        return test.with_changes(comparisons=[target.with_changes(operator=_INVERSE[type(target.operator)]())])
    if isinstance(test, cst.BooleanOperation):
        raise _Refuse("`and`/`or` between size tests: split it into one check per condition")
    return cst.Comparison(
        paren(test), [cst.ComparisonTarget(cst.Equal() if negate else cst.NotEqual(), cst.Integer("0"))]
    )


def _checks(
    parts: list[cst.BaseExpression], kinds: dict[int, Kind], negate: bool, op: type, qualify: Qualify
) -> list[cst.Call]:
    """torch._check calls that hold when the traced operands joined by `op` hold (negate: when they do not)."""
    sizes = [is_size(kinds.get(id(p), frozenset())) and not is_tensor(kinds.get(id(p), frozenset())) for p in parts]
    if all(sizes) and (len(parts) == 1 or negate == (op is cst.Or)):
        # not (a or b) is `not a` and `not b`; (a and b) is `a` and `b`: one check each
        return [cst.Call(cst.parse_expression("torch._check"), [cst.Arg(_size_holds(p, negate))]) for p in parts]
    if any(sizes):
        raise _Refuse(
            "size tests joined with tensor tests, or `and`/`or` between size tests: split it into one "
            "check per condition"
        )
    if not all(is_pure(p, qualify) for p in parts[1:]):
        raise _Refuse("tensor tests after the first have side effects (all of them would run)")
    pred = tensor_and(parts, op)
    if negate:
        pred = cst.Call(cst.parse_expression("torch.logical_not"), [cst.Arg(pred.with_changes(lpar=[], rpar=[]))])
    # `.item()` of the 0-d test inside torch._check: an unbacked bool torch.export keeps as a runtime
    # assertion, and the ONNX exporter converts (measured, torch 2.13: torch._check_tensor_all exports, but its
    # aten._is_all_true has no ONNX function)
    return [
        cst.Call(
            cst.parse_expression("torch._check"), [cst.Arg(cst.Call(cst.Attribute(paren(pred), cst.Name("item")), []))]
        )
    ]


def _plan_check(
    code: str,
    node: cst.If | cst.Assert,
    line: Optional[cst.SimpleStatementLine],
    kinds: dict[int, Kind],
    qualify: Qualify,
) -> Plan:
    test = node.test
    op = (
        cst.Or
        if isinstance(test, cst.BooleanOperation) and isinstance(test.operator, cst.Or) and not test.lpar
        else cst.And
    )
    operands = chain(test, op)
    if any(id(o) not in kinds for o in operands):
        raise _Refuse("`and` in the condition of a check whose operands were not all analysed")
    traced = [o for o in operands if is_tensor(kinds[id(o)]) or is_size(kinds[id(o)])]
    python = [o for o in operands if o not in traced]
    first = operands.index(traced[0]) if traced else len(operands)
    if any(o in python for o in operands[first:]):
        raise _Refuse("a Python test after a tensor test in a check (it would run first under export)")
    if not traced:
        raise _Refuse("no tensor or size test left to check")
    if python and op is cst.Or:
        raise _Refuse("a Python test `or` a tensor test in a check: split it into one check per condition")
    running = cst.Call(cst.parse_expression(COMPILING))
    if isinstance(node, cst.If):
        checks = _checks(traced, kinds, negate=True, op=op, qualify=qualify)
        body: cst.BaseStatement = cst.SimpleStatementLine([cst.Expr(c) for c in checks])
        if python:  # `if flag and t: raise`: the Python part still decides whether the check applies
            guard = python[0]
            for p in python[1:]:
                guard = cst.BooleanOperation(guard, cst.And(), p)
            body = cst.If(guard, cst.IndentedBlock([body]))
        keep = node.with_changes(orelse=None, leading_lines=[])
        new = cst.If(
            running, cst.IndentedBlock([body]), orelse=cst.If(keep.test, keep.body), leading_lines=node.leading_lines
        )
        after = list(node.orelse.body.body) if isinstance(node.orelse, cst.Else) else []
        if isinstance(node.orelse, cst.If):
            raise _Refuse("an `elif` after a check: rewrite the chain as nested `if` statements first")
        # the arm always raises: an `else` is the code after the `if`
        old = [node] if after else node
        return Plan("cond", {code}, [node], old, [new, *after] if after else new, "safe", imports={("torch", None)})
    if line is None or len(line.body) != 1:
        raise _Refuse("an `assert` sharing its line with other statements")
    if python:
        raise _Refuse("an `assert` mixing Python and tensor tests: split it")
    checks = _checks(traced, kinds, negate=False, op=op, qualify=qualify)
    new = cst.If(
        running,
        cst.IndentedBlock([cst.SimpleStatementLine([cst.Expr(c) for c in checks])]),
        orelse=cst.Else(cst.IndentedBlock([line.with_changes(leading_lines=[])])),
        leading_lines=line.leading_lines,
    )
    return Plan("cond", {code}, [node], line, new, "safe", imports={("torch", None)})
