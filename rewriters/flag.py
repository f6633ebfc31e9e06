"""`flag` form (the seed's recipe for the TorchScript exporter): a `forward` that returns `None` on some
paths returns `(value, flag)` instead — a placeholder tensor and `torch.tensor(True)` where the output
is absent, the real value and `torch.tensor(False)` elsewhere — typed so that `torch.jit.script` takes it.

It changes what callers receive, so it is always an unsafe fix.
"""

from __future__ import annotations

from typing import Optional, Union, cast

import libcst as cst

from tracesafe.analyzer.infer import all_params, terminates
from tracesafe.analyzer.kinds import N, T, Kind

from .common import Plan, Qualify, annotate_params, shape_base

FORM = "flag"


def _returns(fn: cst.FunctionDef) -> list[tuple[cst.Return, bool]]:
    """(return node, inside a loop?) for every return of fn, nested functions excluded."""
    out = []

    class V(cst.CSTVisitor):
        depth = 0

        def visit_FunctionDef(self, n: cst.FunctionDef) -> bool:
            return n is fn

        def visit_Lambda(self, n: cst.Lambda) -> bool:
            return False

        def visit_For(self, n: cst.For) -> None:
            self.depth += 1

        def leave_For(self, n: cst.For) -> None:
            self.depth -= 1

        def visit_While(self, n: cst.While) -> None:
            self.depth += 1

        def leave_While(self, n: cst.While) -> None:
            self.depth -= 1

        def visit_Return(self, n: cst.Return) -> None:
            out.append((n, self.depth > 0))

    fn.visit(V())
    return out


def _is_none(e: Optional[cst.BaseExpression]) -> bool:
    return e is None or isinstance(e, cst.Name) and e.value == "None"


def _mentions_assign(node: cst.CSTNode, var: str) -> bool:
    found: list[cst.CSTNode] = []

    class V(cst.CSTVisitor):
        def visit_AssignTarget(self, n: cst.AssignTarget) -> None:
            if isinstance(n.target, cst.Name) and n.target.value == var:
                found.append(n)

        def visit_AugAssign(self, n: cst.AugAssign) -> None:
            if isinstance(n.target, cst.Name) and n.target.value == var:
                found.append(n)

    node.visit(V())
    return bool(found)


def _arity(kinds: list[Kind]) -> Optional[int]:
    arities = set()
    for k in kinds:
        for a in k:
            if a == N:
                continue
            if a == T:
                arities.add(1)
            elif isinstance(a, tuple) and a[0] == "tup":
                arities.add(len(a[1]))
            else:
                return None
    return arities.pop() if len(arities) == 1 else None


def _expr(code: str) -> cst.BaseExpression:
    return cst.parse_expression(code)


# reductions over every element: a 0-d result
_FULL_REDUCTIONS = frozenset("sum mean amax amin max min prod norm std var median nansum nanmean logsumexp".split())


def _placeholders(
    fn: cst.FunctionDef,
    rets: list[cst.Return],
    none_vars: dict[str, str],
    n: int,
    tensor_params: list[str],
    qualify: Qualify,
) -> list[str]:
    """One placeholder per output element, shaped like the value it stands for where that follows from the
    code: an elementwise function of an unchanged tensor parameter gives `torch.zeros_like(param)`, a full
    reduction of one gives a 0-d `param.new_zeros(())`. Elsewhere (a layer's output, a slice) the shape is
    not known statically and the placeholder is shaped like the first tensor parameter; `tracesafe export`
    fails when an output's shape then differs between branches."""
    unchanged = {p for p in tensor_params if not _mentions_assign(fn.body, p)}
    values: list[list[cst.BaseExpression]] = [[] for _ in range(n)]
    for r in rets:
        v = r.value
        if v is None or _is_none(v):
            continue
        if isinstance(v, cst.Name) and v.value in none_vars:
            for assigned in _assigned_values(fn, v.value):
                if not _is_none(assigned):
                    values[0].append(assigned)
            continue
        items = [e.value for e in v.elements] if n > 1 and isinstance(v, cst.Tuple) else [v]
        if len(items) != n:
            return [f"torch.zeros_like({tensor_params[0]})"] * n
        for i, e in enumerate(items):
            values[i].append(e)
    out: list[str] = []
    for vs in values:
        shapes = {_like(e, unchanged, qualify) for e in vs}
        one = shapes.pop() if len(shapes) == 1 else None
        out.append(one if one is not None else f"torch.zeros_like({tensor_params[0]})")
    return out


# conversions: the value no longer has its parameter's dtype, which the two ONNX If branches must share
_CASTS = frozenset("float half double bfloat16 int long bool to type_as".split())


def _like(e: cst.BaseExpression, params: set[str], qualify: Qualify) -> Optional[str]:
    if _casts(e):
        return None
    base = shape_base(e, qualify)
    if base in params:
        return f"torch.zeros_like({base})"
    if (
        isinstance(e, cst.Call)
        and isinstance(e.func, cst.Attribute)
        and e.func.attr.value in _FULL_REDUCTIONS
        and not e.args
        and shape_base(e.func.value, qualify) in params
    ):
        return f"{shape_base(e.func.value, qualify)}.new_zeros(())"
    return None


def _casts(e: cst.CSTNode) -> bool:
    found: list[cst.Call] = []

    class V(cst.CSTVisitor):
        def visit_Call(self, n: cst.Call) -> None:
            if isinstance(n.func, cst.Attribute) and n.func.attr.value in _CASTS:
                found.append(n)

    e.visit(V())
    return bool(found)


def _assigned_values(fn: cst.FunctionDef, var: str) -> list[cst.BaseExpression]:
    out = []

    class V(cst.CSTVisitor):
        def visit_Assign(self, n: cst.Assign) -> None:
            if any(isinstance(t.target, cst.Name) and t.target.value == var for t in n.targets):
                out.append(n.value)

    fn.body.visit(V())
    return out


def plan_flag(
    fn: cst.FunctionDef,
    qualname: str,
    returns: list[tuple[cst.Return, Kind]],
    nodes: list[cst.CSTNode],
    qualify: Qualify,
) -> Plan:
    def fail(why: str) -> Plan:
        return Plan(FORM, {"TS201"}, nodes, reason=why)

    rets = _returns(fn)
    if any(in_loop for _, in_loop in rets):
        return fail("a return inside a loop")
    kinds = {id(r): k for r, k in returns}
    n = _arity([k for _, k in returns])
    if n is None:
        return fail("returns of different or unknown structure")
    params = all_params(fn.params)[1:]
    tensor_params = [p.name.value for p in params if p.default is None]
    if not tensor_params:
        return fail("no tensor parameter to shape a placeholder")
    if isinstance(fn.params.star_arg, cst.Param) or fn.params.star_kwarg is not None:
        return fail("`*args`/`**kwargs` do not script")
    none_vars: dict[str, str] = {}
    for r, _ in rets:
        k = kinds.get(id(r), frozenset())
        if isinstance(r.value, cst.Name) and r.value.value != "None" and N in k:
            if n != 1:
                return fail("a maybe-`None` variable inside a tuple output")
            none_vars[r.value.value] = f"{r.value.value}_is_none"
    if any(v in {p.name.value for p in params} for v in none_vars):
        return fail("a parameter may be returned as `None`")
    shapes = _placeholders(fn, [r for r, _ in rets], none_vars, n, tensor_params, qualify)
    absent = ", ".join(shapes + ["torch.tensor(True)"])
    # The seed's shape `if c: v = None / else: v = ... ; return v` becomes a return in each arm.
    # Measured (torch 2.13, opset 17): assigning (value, flag) in the arms and returning after the
    # `if` scripts, but the TorchScript ONNX exporter then writes a graph whose value output is wrong;
    # returns inside the arms export a correct ONNX `If`.
    # id(if stmt) -> (var, id(return line), does the `if` arm set it to None?, does the `else` arm?)
    tails: dict[int, tuple[str, int, bool, bool]] = {}

    def arm_sets_none(block: cst.BaseSuite, var: str) -> Optional[bool]:
        last = None
        for st in block.body:
            if isinstance(st, cst.SimpleStatementLine):
                for sm in st.body:
                    if isinstance(sm, cst.Assign) and any(
                        isinstance(t.target, cst.Name) and t.target.value == var for t in sm.targets
                    ):
                        if len(sm.targets) != 1:
                            return None
                        last = _is_none(sm.value)
                    elif isinstance(sm, (cst.AugAssign, cst.AnnAssign)):
                        return None
            elif _mentions_assign(st, var):
                return None
        return last

    class Blocks(cst.CSTVisitor):
        def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
            return node is fn

        def visit_IndentedBlock(self, node: cst.IndentedBlock) -> None:
            body = list(node.body)
            for i, st in enumerate(body[1:], 1):
                if not (
                    isinstance(st, cst.SimpleStatementLine)
                    and len(st.body) == 1
                    and isinstance(st.body[0], cst.Return)
                    and isinstance(st.body[0].value, cst.Name)
                    and st.body[0].value.value in none_vars
                ):
                    continue
                prev, var = body[i - 1], st.body[0].value.value
                if isinstance(prev, cst.If) and isinstance(prev.orelse, cst.Else):
                    a, b = arm_sets_none(prev.body, var), arm_sets_none(prev.orelse.body, var)
                    if a is not None and b is not None:
                        tails[id(prev)] = (var, id(st), a, b)

    fn.visit(Blocks())
    handled = {v for v, *_ in tails.values()}
    if set(none_vars) - handled:
        return fail("`None` is assigned away from the `return`: make each branch return")
    dropped = {t[1] for t in tails.values()}

    def arm(block: cst.BaseSuite, var: str, is_none: bool) -> cst.BaseSuite:
        # The absent arm returns the placeholder directly instead of assigning `var`: measured, when
        # both arms assign the same name the TorchScript ONNX exporter writes a graph that returns
        # the wrong arm's value.
        out: list[cst.CSTNode] = []
        for st in block.body:
            if (
                is_none
                and isinstance(st, cst.SimpleStatementLine)
                and len(st.body) == 1
                and isinstance(st.body[0], cst.Assign)
                and _is_none(st.body[0].value)
                and isinstance(st.body[0].targets[0].target, cst.Name)
                and st.body[0].targets[0].target.value == var
            ):
                ret = cst.parse_statement(f"return {absent}\n")
                out.append(ret.with_changes(leading_lines=st.leading_lines, trailing_whitespace=st.trailing_whitespace))
                break
            out.append(st)
        else:
            if not terminates(block.body):
                out.append(cst.parse_statement(f"return {var}, torch.tensor({is_none})\n"))
        return block.with_changes(body=out)

    class Rewrite(cst.CSTTransformer):
        def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
            return node is fn

        def leave_If(self, orig: cst.If, new: cst.If) -> cst.If:
            if id(orig) not in tails:
                return new
            var, _, a, b = tails[id(orig)]
            orelse = cast(cst.Else, new.orelse)  # tails holds only `if`s with an `else`
            return new.with_changes(
                body=arm(new.body, var, a), orelse=orelse.with_changes(body=arm(orelse.body, var, b))
            )

        def leave_SimpleStatementLine(
            self, orig: cst.SimpleStatementLine, new: cst.SimpleStatementLine
        ) -> Union[cst.SimpleStatementLine, cst.RemovalSentinel]:
            if id(orig) in dropped:
                return cst.RemoveFromParent()
            return new

        def leave_Return(self, orig: cst.Return, new: cst.Return) -> cst.Return:
            if _is_none(orig.value):
                return new.with_changes(
                    value=_expr(f"({absent})").with_changes(lpar=[], rpar=[]),
                    whitespace_after_return=cst.SimpleWhitespace(" "),
                )
            flag = cst.Element(_expr("torch.tensor(False)"))
            value = cast(cst.BaseExpression, new.value)  # not `None`: that return was rewritten above
            if isinstance(value, cst.Tuple):
                return new.with_changes(value=value.with_changes(elements=list(value.elements) + [flag]))
            return new.with_changes(value=cst.Tuple([cst.Element(value), flag], lpar=[], rpar=[]))

    new_fn = cast(cst.FunctionDef, fn.visit(Rewrite()))
    body = new_fn.body
    if isinstance(fn.body, cst.IndentedBlock) and not terminates(fn.body.body):
        body = body.with_changes(body=list(body.body) + [cst.parse_statement(f"return {absent}\n")])
    imports = {("torch", None), ("typing", "Tuple")}
    ps, needed = annotate_params(fn)
    imports |= needed
    ret_ann = cst.Annotation(_expr("Tuple[" + ", ".join(["torch.Tensor"] * (n + 1)) + "]"))
    new_fn = new_fn.with_changes(params=ps, body=body, returns=ret_ann)
    return Plan(FORM, {"TS201"}, nodes, fn, new_fn, "unsafe", imports=imports, changed_signature=qualname)
