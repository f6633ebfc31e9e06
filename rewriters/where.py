"""`where` form: a branch that only chooses between tensor values becomes `torch.where(c, a, b)`.

Survives plain tracing and both exporters, but evaluates both arms: an arm that may raise or has side
effects makes the fix unsafe.
"""

from __future__ import annotations

from typing import AbstractSet, Mapping, Optional

import libcst as cst

from tracesafe.analyzer.kinds import B0, B1, N, P, S, T, Env, Kind

from .cond import Names
from .common import Plan, Qualify, as_bool_tensor, call, chain, is_pure, join_tests, number, shape_base, tensor_and

FORM = "where"


class _Split:
    """A condition taken apart: `python` operands stay a Python test around the rewrite (None: there are
    none), `tensor` is the bool tensor `torch.where` takes, `op` the and/or joining them."""

    def __init__(self, op: Optional[type], python: Optional[cst.BaseExpression], tensor: cst.BaseExpression):
        self.op, self.python, self.tensor = op, python, tensor


def _split(test: cst.BaseExpression, kinds: dict[int, Kind], qualify: Qualify) -> "_Split | str":
    """The condition as a Python part and a tensor part, or why it cannot be split.

    `if x.dtype == torch.float16 and torch.isinf(x).any():` keeps `x.dtype == torch.float16` a Python
    `if` and rewrites the tensor test under it. Python operands are the ones whose value is surely not a
    tensor or a traced size; they move before the tensor ones only when everything from the first tensor
    operand on is side-effect free (`and`/`or` would otherwise have skipped it). Several tensor operands
    are joined with `&`/`|`, which evaluates all of them: also only when side-effect free."""
    if not isinstance(test, cst.BooleanOperation):
        if not _surely_tensor(kinds.get(id(test))):
            return "the condition is not provably a tensor"
        return _Split(None, None, as_bool_tensor(test))
    op = type(test.operator)
    operands = chain(test, op)
    if any(isinstance(o, cst.BooleanOperation) for o in operands):
        return "nested `and`/`or` in the condition"
    ks = [kinds.get(id(o)) for o in operands]
    if any(k is None for k in ks):
        return "`and`/`or` in the condition (an operand of unknown kind)"
    traced = [bool(k & {T, S}) for k in ks]  # type: ignore[operator]  # libcst's unions / an invariant mypy cannot see
    if not any(traced):
        return "the condition is not provably a tensor"
    if not all(_surely_tensor(k) for k, t in zip(ks, traced) if t):
        return "a size or non-tensor operand in `and`/`or` (use the `cond` form)"
    first = traced.index(True)
    # a Python operand after the first tensor one moves before it, so that one no longer always runs
    moved = first if not all(traced[first:]) else first + 1
    if not all(is_pure(o, qualify) for o in operands[moved:]):
        return "`and`/`or` with side effects after the tensor test (cannot reorder or join with `&`)"
    python = [o for o, t in zip(operands, traced) if not t]
    return _Split(
        op, join_tests(python, op) if python else None, tensor_and([o for o, t in zip(operands, traced) if t], op)
    )


def _python(kind: Optional[Kind]) -> bool:
    """Only Python values (a number, a size, a bool, None): nothing that broadcasts like a tensor."""
    return bool(kind) and kind is not None and kind <= {P, S, N, B0, B1}


def _surely_tensor(kind: Optional[Kind]) -> bool:
    """Only a tensor: `torch.where` rejects a Python bool, a size, None or an opaque value."""
    return kind is not None and T in kind and kind <= {T}


def _is_none(e: cst.BaseExpression, kinds: Mapping[int, Kind]) -> bool:
    return isinstance(e, cst.Name) and e.value == "None" or N in kinds.get(id(e), frozenset())


def _arm_problem(
    a: cst.BaseExpression,
    b: cst.BaseExpression,
    kinds: Mapping[int, Optional[Kind]],
    qualify: Qualify,
    scalars: AbstractSet[str] = frozenset(),
) -> Optional[str]:
    """Why torch.where(c, a, b) might not mean `a if c else b` for every input, or None. Both arms are
    evaluated and broadcast together: each must be a tensor (or both plain numbers), and the two must
    provably have one shape (the same tensor through elementwise operations)."""
    if number(a) and number(b):
        return None
    for arm in (a, b):
        if not (number(arm) or _surely_tensor(kinds.get(id(arm)))):
            return "an arm is not provably a tensor"
    ba, bb = shape_base(a, qualify, scalars), shape_base(b, qualify, scalars)
    if ba is None or bb is None or (ba != bb and ba != "" and bb != ""):
        return "the arms may differ in shape"
    return None


# calls that turn their argument into a Python value: a `torch.where` fed to them keeps the hazard
_PYTHON_CONSUMERS = {
    "range",
    "int",
    "float",
    "bool",
    "len",
    "str",
    "list",
    "tuple",
    "min",
    "max",
    "round",
    "enumerate",
    "zip",
    "sorted",
    "sum",
    "any",
    "all",
    "iter",
    "print",
    "format",
}


def _used_by_python(node: cst.CSTNode, parents: dict[cst.CSTNode, cst.CSTNode]) -> Optional[str]:
    """Why the value of node goes back into Python (so rewriting it removes nothing), or None."""
    child, p = node, parents.get(node)
    while isinstance(p, (cst.Arg, cst.Element)) or isinstance(p, cst.Tuple) and child in [e.value for e in p.elements]:
        child, p = p, parents.get(p)
    if isinstance(p, cst.Call) and isinstance(p.func, cst.Name) and p.func.value in _PYTHON_CONSUMERS:
        return f"the value goes to `{p.func.value}()`"
    if isinstance(p, (cst.Index, cst.Slice)):
        return "the value is used as an index"
    if (
        isinstance(p, (cst.If, cst.While, cst.IfExp))
        and getattr(p, "test", None) is child
        or isinstance(p, (cst.BooleanOperation, cst.FormattedStringExpression))
        or isinstance(p, cst.UnaryOperation)
        and isinstance(p.operator, cst.Not)
    ):
        return "the value is tested or formatted by Python"
    return None


def plan_ternary(
    node: cst.IfExp,
    qualify: Qualify,
    kinds: Optional[dict[int, Kind]] = None,
    parents: Optional[dict[cst.CSTNode, cst.CSTNode]] = None,
) -> Plan:
    kinds = kinds or {}
    split = _split(node.test, kinds, qualify)
    if isinstance(split, str):
        return Plan(FORM, {"TS103"}, [node], reason=split)
    c = split.tensor
    why = _used_by_python(node, parents or {})
    if why:
        return Plan(FORM, {"TS103"}, [node], reason=why)
    if _is_none(node.body, kinds) or _is_none(node.orelse, kinds):
        return Plan(FORM, {"TS103"}, [node], reason="an arm may be `None`")
    problem = _arm_problem(node.body, node.orelse, kinds, qualify)
    if problem:
        return Plan(FORM, {"TS103"}, [node], reason=problem)
    new = call("torch.where", c, node.body, node.orelse)
    if split.python is None:
        new = new.with_changes(lpar=node.lpar, rpar=node.rpar)
    elif split.op is cst.And:  # `a if p and t else b`: `torch.where(t, a, b) if p else b`
        new = node.with_changes(test=split.python, body=new)  # type: ignore[assignment]  # libcst's unions / an invariant mypy cannot see
    else:  # `a if p or t else b`: `a if p else torch.where(t, a, b)`
        new = node.with_changes(test=split.python, orelse=new)  # type: ignore[assignment]  # libcst's unions / an invariant mypy cannot see
    safe = is_pure(node.body, qualify) and is_pure(node.orelse, qualify)
    return Plan(FORM, {"TS103"}, [node], node, new, "safe" if safe else "unsafe", imports={("torch", None)})


def _steps(block: cst.BaseSuite) -> Optional[list[tuple[str, cst.BaseExpression]]]:
    """[(name, value)] in order, when the block is only `name = value` lines."""
    if not isinstance(block, cst.IndentedBlock):
        return None
    out = []
    for stmt in block.body:
        if not isinstance(stmt, cst.SimpleStatementLine):
            return None
        for s in stmt.body:
            if isinstance(s, cst.Pass):
                continue
            if not (isinstance(s, cst.Assign) and len(s.targets) == 1 and isinstance(s.targets[0].target, cst.Name)):
                return None
            out.append((s.targets[0].target.value, s.value))
    return out


def _reads(e: cst.CSTNode) -> set[str]:
    names = set()

    class V(cst.CSTVisitor):
        def visit_Name(self, n: cst.Name) -> None:
            names.add(n.value)

    e.visit(V())
    return names


def _single_return(block: cst.BaseSuite) -> Optional[cst.Return]:
    if (
        isinstance(block, cst.IndentedBlock)
        and len(block.body) == 1
        and isinstance(block.body[0], cst.SimpleStatementLine)
        and len(block.body[0].body) == 1
        and isinstance(block.body[0].body[0], cst.Return)
    ):
        return block.body[0].body[0]
    return None


def _where_value(c: cst.BaseExpression, a: cst.BaseExpression, b: cst.BaseExpression) -> Optional[cst.BaseExpression]:
    if isinstance(a, cst.Tuple) or isinstance(b, cst.Tuple):
        if not (isinstance(a, cst.Tuple) and isinstance(b, cst.Tuple) and len(a.elements) == len(b.elements)):
            return None
        return cst.Tuple(
            [cst.Element(call("torch.where", c, x.value, y.value)) for x, y in zip(a.elements, b.elements)],
            lpar=[],
            rpar=[],
        )
    if isinstance(a, cst.Name) and a.value == "None" or isinstance(b, cst.Name) and b.value == "None":
        return None
    return call("torch.where", c, a, b)


def _pairs(
    a: cst.BaseExpression, ka: Optional[Kind], b: cst.BaseExpression, kb: Optional[Kind]
) -> list[tuple[cst.BaseExpression, Optional[Kind], cst.BaseExpression, Optional[Kind]]]:
    """(arm, kind) pairs of two returned values, element by element for tuples."""
    if isinstance(a, cst.Tuple) and isinstance(b, cst.Tuple):
        ea = _tuple_kinds(ka, len(a.elements))
        eb = _tuple_kinds(kb, len(b.elements))
        return [(x.value, kx, y.value, ky) for x, kx, y, ky in zip(a.elements, ea, b.elements, eb)]
    return [(a, ka, b, kb)]


def _tuple_kinds(k: Optional[Kind], n: int) -> list[Optional[Kind]]:
    tups = [x for x in (k or ()) if isinstance(x, tuple) and x[0] == "tup" and len(x[1]) == n]
    return list(tups[0][1]) if len(tups) == 1 and k is not None and len(k) == 1 else [None] * n


def plan_if(
    stmts: list[cst.CSTNode],
    i: int,
    defined: set[str],
    qualify: Qualify,
    kinds: Optional[dict[int, Kind]] = None,
    env_before: Optional[Env] = None,
    names: Optional[Names] = None,
) -> Plan:
    """Plan for the flagged `if` at stmts[i]; may also consume the `return` right after it. With `names`
    (what the enclosing function reads), a name an arm assigns and nothing reads afterwards is a temporary."""
    node = stmts[i]
    assert isinstance(node, cst.If)  # the engine defers `if` statements only
    if isinstance(node.orelse, cst.If):
        return Plan(FORM, {"TS101"}, [node], reason="`elif` chain")
    split = _split(node.test, kinds or {}, qualify)
    if isinstance(split, str):
        return Plan(FORM, {"TS101"}, [node], reason=split)
    plan = _plan_if(stmts, i, split.tensor, defined, qualify, kinds, env_before, names)
    if not plan.ok or split.python is None:
        return plan
    return _under_python_test(plan, node, split)


def _under_python_test(plan: Plan, node: cst.If, split: _Split) -> Plan:
    """The rewritten statements of the tensor part, put back under the Python part of the test.

    `if p and t: A else: B` -> `if p: <where(t, A, B)> else: B`;
    `if p or t: A else: B`  -> `if p: A else: <where(t, A, B)>`. A `return` after the `if` that the plan
    consumed as the other arm stays where it was (`and`) or is replaced by the rewrite (`or`)."""
    new = list(plan.new)
    new[0] = new[0].with_changes(leading_lines=[])
    block = node.body.with_changes(body=new)
    took_next = len(plan.old) == 2
    if split.op is cst.And:
        out = [node.with_changes(test=split.python, body=block)]
        old = [node]
    elif took_next:
        out = [node.with_changes(test=split.python), *new]
        old = plan.old
    else:
        other = (
            node.orelse.with_changes(body=node.orelse.body.with_changes(body=new))
            if node.orelse is not None
            else cst.Else(cst.IndentedBlock(new))
        )
        out = [node.with_changes(test=split.python, orelse=other)]
        old = [node]
    return Plan(FORM, plan.codes, plan.nodes, old, out, plan.applicability, imports=plan.imports)


def _plan_if(
    stmts: list[cst.CSTNode],
    i: int,
    c: cst.BaseExpression,
    defined: set[str],
    qualify: Qualify,
    kinds: Optional[dict[int, Kind]],
    env_before: Optional[Env],
    names: Optional[Names] = None,
) -> Plan:
    node = stmts[i]
    assert isinstance(node, cst.If)

    def fail(why: str) -> Plan:
        return Plan(FORM, {"TS101"}, [node], reason=why)

    ret_a = _single_return(node.body)
    if ret_a is not None:
        if node.orelse is not None:
            ret_b = _single_return(node.orelse.body)
            consumed = [node]
        else:
            nxt = stmts[i + 1] if i + 1 < len(stmts) else None
            ret_b = (
                nxt.body[0]
                if isinstance(nxt, cst.SimpleStatementLine)
                and len(nxt.body) == 1
                and isinstance(nxt.body[0], cst.Return)
                else None
            )
            consumed = [node, nxt]  # type: ignore[list-item]  # libcst's unions / an invariant mypy cannot see
        if ret_b is None or ret_a.value is None or ret_b.value is None:
            return fail("arms return differently")
        value = _where_value(c, ret_a.value, ret_b.value)
        if value is None:
            return fail("arms of different output structure or `None`")
        if kinds is not None:
            for a, ka, b, kb in _pairs(
                ret_a.value, kinds.get(id(ret_a.value)), ret_b.value, kinds.get(id(ret_b.value))
            ):
                problem = _arm_problem(a, b, {id(a): ka, id(b): kb}, qualify)
                if problem:
                    return fail(problem)
        safe = is_pure(ret_a.value, qualify) and is_pure(ret_b.value, qualify)
        new = [cst.SimpleStatementLine([cst.Return(value)], leading_lines=node.leading_lines)]
        return Plan(FORM, {"TS101"}, [node], consumed, new, "safe" if safe else "unsafe", imports={("torch", None)})
    steps = [_steps(node.body), _steps(node.orelse.body) if node.orelse is not None else []]
    arms = [arm for arm in steps if arm is not None]
    if len(arms) != 2:
        return fail("arms do more than assign tensors")
    if not arms[0] and not arms[1]:
        return fail("the branch assigns nothing")
    # An output is a name read after the `if` (with no `names`: every name assigned); torch.where picks it.
    # A temporary (assigned in one arm, read nowhere else: `clamp_value = ...` before `h = torch.clamp(h, ...)`)
    # is computed unconditionally ahead of the torch.where lines, as both arms' values are.
    after = names.live_after(node) if names is not None else None
    assigned = [[n for n, _ in arm] for arm in arms]
    outputs = list(dict.fromkeys(n for arm in assigned for n in arm if after is None or n in after))
    temps = [[n for n in arm if n not in outputs] for arm in assigned]
    if not outputs:
        return fail("the branch assigns nothing read after it")
    for k, arm in enumerate(arms):
        if any(assigned[k].count(n) > 1 for n in outputs):
            return fail("an arm assigns a name twice")
        if any(n in temps[1 - k] or assigned[k].count(n) > 1 for n in temps[k]):
            return fail("a temporary assigned in both arms or twice")
        for j, (n, value) in enumerate(arm):
            # a value must see what it saw in its arm: an output's old value (its own, or one the arm assigns
            # later and whose torch.where line comes after this one), never the other arm's temporaries
            earlier = set(assigned[k][:j])
            for m in _reads(value):
                if (
                    m in temps[1 - k]  # the other arm's: computed ahead of this value, not in its arm
                    or m in temps[k]
                    and m not in earlier  # this arm's, assigned after it reads the name
                    or m in outputs
                    and m in earlier  # an output's new value: torch.where computes it later
                    or m in outputs
                    and n in outputs
                    and m != n
                    and outputs.index(m) < outputs.index(n)  # rebound by its torch.where line first
                ):
                    return fail("an arm's values read names the branch assigns, in another order")
    if _reads(c) & set(temps[0] + temps[1]):
        return fail("a temporary rebinds a name the condition reads")
    values = [dict(arm) for arm in arms]
    for n in outputs:
        if any(n not in v for v in values) and n not in defined:
            return fail(f"`{n}` may be undefined when the other arm runs")
    scalars = {n for n, k in (env_before or {}).items() if _python(k) and n not in assigned[0] + assigned[1]}
    if kinds is not None:
        scalars |= {n for k, arm in enumerate(arms) for n, v in arm if n in temps[k] and _python(kinds.get(id(v)))}
    lines: list[cst.SimpleStatementLine] = []
    every = [v for arm in arms for _n, v in arm]
    safe = all(is_pure(v, qualify) for v in every)
    cond_expr: cst.BaseExpression = c
    if len(outputs) > 1 or temps[0] or temps[1]:
        tmp = "cond"
        while tmp in defined or tmp in assigned[0] or tmp in assigned[1] or (after is not None and tmp in after):
            tmp = "_" + tmp
        lines.append(cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(cst.Name(tmp))], c)]))
        cond_expr = cst.Name(tmp)
    for k, arm in enumerate(arms):
        for n, v in arm:
            if n in temps[k]:
                lines.append(cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(cst.Name(n))], v)]))
    for name in outputs:
        value, alt = values[0].get(name, cst.Name(name)), values[1].get(name, cst.Name(name))
        if isinstance(value, cst.Name) and value.value == "None" or isinstance(alt, cst.Name) and alt.value == "None":
            return fail("an arm assigns `None`")
        if kinds is not None:
            kv = kinds.get(id(value)) if id(value) in kinds else (env_before or {}).get(name)
            ka = kinds.get(id(alt)) if id(alt) in kinds else (env_before or {}).get(name)
            problem = _arm_problem(value, alt, {id(value): kv, id(alt): ka}, qualify, scalars)
            if problem:
                return fail(problem)
        lines.append(
            cst.SimpleStatementLine(
                [cst.Assign([cst.AssignTarget(cst.Name(name))], call("torch.where", cond_expr, value, alt))]
            )
        )
    lines[0] = lines[0].with_changes(leading_lines=node.leading_lines)
    return Plan(FORM, {"TS101"}, [node], [node], lines, "safe" if safe else "unsafe", imports={("torch", None)})
