"""`cond` form, for the torch.export-based exporter (`dynamo=True`): an `if` on a tensor or a traced size
becomes `torch.cond(pred, true_fn, false_fn, operands)` with local functions, a `while` on a tensor
becomes `torch.while_loop(cond_fn, body_fn, carried)`.

The measured rules (DESIGN.md §7) decide what is refused: the predicate is a 0-d bool tensor (Python
truthiness is `!= 0`), operands and outputs are tensors, both arms have the same output structure, no
`None`, no output may alias an input (it is `.clone()`d), no in-place writes, no mutation of `self`.
torch.cond traces both arms, so arms that call unknown code make the fix unsafe; a `while_loop` is
always unsafe because its state must keep shape and dtype on every iteration, which no static check
proves.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Optional

import libcst as cst

from tracesafe.analyzer.kinds import T, Env, Kind, is_size, is_tensor

from .liveness import Liveness
from .common import Plan, Qualify, name_counts, as_bool_tensor, call, chain, is_pure, shape_base, tensor_and

FORM = "cond"

# methods whose result may share storage with their receiver: returning one from an arm is aliasing
_VIEWS = frozenset(
    """
view view_as reshape reshape_as t T mT H transpose permute swapaxes swapdims movedim squeeze unsqueeze
flatten unflatten expand expand_as narrow select diagonal detach contiguous as_strided unfold real imag
chunk split unbind split_with_sizes tensor_split to type type_as float double half int long bool
""".split()
)


class Refuse(Exception):
    pass


# the env before a flagged statement, and after each of its arms (None: the arm does not fall through)
Envs = tuple[Env, list[Optional[Env]]]


def _is_tensor(kind: Kind) -> bool:
    return bool(kind) and all(a == T for a in kind)


def _returns_tensors(kind: Kind, n: Optional[int]) -> bool:
    """kind is one tensor (n is None) or an n-tuple of tensors."""
    if n is None:
        return _is_tensor(kind)
    return len(kind) == 1 and all(
        isinstance(a, tuple) and a[0] == "tup" and len(a[1]) == n and all(_is_tensor(k) for k in a[1]) for a in kind
    )


class _Reads(cst.CSTVisitor):
    """Names read by a node, in order of first appearance (attribute names and keywords excluded)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def visit_Name(self, n: cst.Name) -> None:
        if n.value not in self.names:
            self.names.append(n.value)

    def visit_Attribute(self, n: cst.Attribute) -> bool:
        n.value.visit(self)
        return False

    def visit_Arg(self, n: cst.Arg) -> bool:
        n.value.visit(self)
        return False

    def visit_AssignTarget(self, n: cst.AssignTarget) -> bool:
        return False


def reads(*nodes: Optional[cst.CSTNode]) -> list[str]:
    v = _Reads()
    for n in nodes:
        if n is not None:
            n.visit(v)
    return v.names


def _aliases(e: cst.BaseExpression) -> bool:
    """May e share storage with something that existed before (an input, a buffer)?"""
    if isinstance(e, (cst.Name, cst.Attribute, cst.Subscript)):
        return True
    if isinstance(e, cst.Call) and isinstance(e.func, cst.Attribute):
        return e.func.attr.value in _VIEWS
    return False


def _clone(e: cst.BaseExpression) -> cst.BaseExpression:
    return cst.Call(cst.Attribute(e, cst.Name("clone")), [])


class Arm:
    """The straight-line statements of an if-arm or loop body, checked against torch.cond's rules."""

    def __init__(self, block: Optional[cst.BaseSuite], allow_return: bool):
        self.stmts: list[cst.BaseStatement] = []
        self.ret: Optional[cst.Return] = None
        self.last: dict[str, Optional[cst.BaseExpression]] = {}  # name -> last value assigned (None: unknown)
        self.rewrote_aug = False
        self.values: list[cst.BaseExpression] = []
        if block is None:
            return
        if not isinstance(block, cst.IndentedBlock):
            raise Refuse("a one-line arm")
        for i, st in enumerate(block.body):
            if not isinstance(st, cst.SimpleStatementLine):
                raise Refuse("nested statements in an arm")
            smalls = []
            for sm in st.body:
                new = self._small(sm, allow_return)
                if new is not None:
                    smalls.append(new)
            if self.ret is not None and (i != len(block.body) - 1 or st.body[-1] is not self.ret):
                raise Refuse("code after a `return`")
            if self.ret is not None:
                smalls = smalls[:-1]
            if smalls:
                self.stmts.append(st.with_changes(body=smalls))
        for v in self.values:
            _check_no_inplace(v)

    def _small(self, sm: cst.BaseSmallStatement, allow_return: bool) -> Optional[cst.BaseSmallStatement]:
        if isinstance(sm, cst.Pass):
            return None
        if isinstance(sm, cst.Assign):
            for t in sm.targets:
                self._bind(t.target, sm.value if len(sm.targets) == 1 else None)
            self.values.append(sm.value)
            return sm
        if isinstance(sm, cst.AnnAssign) and sm.value is not None:
            self._bind(sm.target, sm.value)
            self.values.append(sm.value)
            return sm
        if isinstance(sm, cst.AugAssign):
            if not isinstance(sm.target, cst.Name):
                raise _target_refusal(sm.target)
            # in-place on an input is not allowed inside torch.cond/while_loop: write it out of place
            name = sm.target.value
            op = _BINOP[type(sm.operator)]
            value = cst.BinaryOperation(cst.Name(name), op, sm.value)
            self.rewrote_aug = self.rewrote_aug or name not in self.last
            self._bind(sm.target, value)
            self.values.append(sm.value)
            return cst.Assign([cst.AssignTarget(cst.Name(name))], value)
        if isinstance(sm, cst.Return):
            if not allow_return:
                raise Refuse("a `return` inside the loop")
            if sm.value is None:
                raise Refuse("a bare `return` (a `None` output)")
            self.ret = sm
            self.values.append(sm.value)
            return sm
        if isinstance(sm, (cst.Break, cst.Continue)):
            raise Refuse("`break`/`continue`")
        if isinstance(sm, cst.Expr) and isinstance(sm.value, (cst.SimpleString, cst.ConcatenatedString)):
            return None
        if isinstance(sm, cst.Expr):
            raise Refuse("a call for its side effects in an arm")
        raise Refuse(f"`{type(sm).__name__.lower()}` in an arm")

    def _bind(self, target: cst.BaseExpression, value: Optional[cst.BaseExpression]) -> None:
        if isinstance(target, cst.Name):
            self.last[target.value] = value
        elif isinstance(target, (cst.Tuple, cst.List)):
            for el in target.elements:
                self._bind(el.value, None)
        elif isinstance(target, cst.StarredElement):
            self._bind(target.value, None)
        else:
            raise _target_refusal(target)

    def output(self, name: str) -> cst.BaseExpression:
        """How this arm hands `name` back: the name itself, or a clone when it may alias an input."""
        if name not in self.last:
            return _clone(cst.Name(name))
        v = self.last[name]
        return _clone(cst.Name(name)) if v is None or _aliases(v) else cst.Name(name)

    def pure(self, qualify: Qualify) -> bool:
        return all(is_pure(v, qualify) for v in self.values)


_BINOP = {
    cst.AddAssign: cst.Add(),
    cst.SubtractAssign: cst.Subtract(),
    cst.MultiplyAssign: cst.Multiply(),
    cst.DivideAssign: cst.Divide(),
    cst.FloorDivideAssign: cst.FloorDivide(),
    cst.ModuloAssign: cst.Modulo(),
    cst.PowerAssign: cst.Power(),
    cst.MatrixMultiplyAssign: cst.MatrixMultiply(),
    cst.BitAndAssign: cst.BitAnd(),
    cst.BitOrAssign: cst.BitOr(),
    cst.BitXorAssign: cst.BitXor(),
    cst.LeftShiftAssign: cst.LeftShift(),
    cst.RightShiftAssign: cst.RightShift(),
}


def _target_refusal(target: cst.BaseExpression) -> Refuse:
    base = target
    while isinstance(base, (cst.Attribute, cst.Subscript)):
        base = base.value
    if isinstance(base, cst.Name) and base.value == "self":
        return Refuse("mutation of `self` in an arm")
    return Refuse("an in-place write in an arm")


def _check_no_inplace(e: cst.CSTNode) -> None:
    found = []

    class V(cst.CSTVisitor):
        def visit_Call(self, n: cst.Call) -> None:
            f = n.func
            if isinstance(f, cst.Attribute) and f.attr.value.endswith("_") and not f.attr.value.startswith("_"):
                found.append(f.attr.value)
            if any(
                a.keyword is not None
                and a.keyword.value == "inplace"
                and not (isinstance(a.value, cst.Name) and a.value.value == "False")
                for a in n.args
            ):
                found.append("inplace=")

        def visit_Lambda(self, n: cst.Lambda) -> bool:
            return False

    e.visit(V())
    if found:
        raise Refuse(f"in-place `{found[0]}` in an arm")


class Names:
    """What one enclosing function's plans ask of its names: fresh local-function names (true_fn,
    true_fn_2, ...), and the names read outside a statement. Each is one walk of the function, made
    the first time it is asked for, whatever the number of statements planned."""

    def __init__(self, fn: cst.FunctionDef):
        self._fn = fn
        self._taken: Optional[set[str]] = None
        self._counts: Optional[Counter[str]] = None
        self._live: Optional[Liveness] = None

    @property
    def taken(self) -> set[str]:
        if self._taken is None:
            # every name the function uses: read, assigned, or defined (a parameter's is a Name under it)
            self._taken = set(name_counts(self._fn, targets=True))
        return self._taken

    def live_after(self, node: cst.CSTNode) -> set[str]:
        """Names the function may read after the statement node runs (backward liveness; for a statement
        the analysis does not follow, every name read outside it)."""
        if self._live is None:
            self._live = Liveness(self._fn)
        live = self._live.after(node)
        return live if live is not None else self.reads_outside(node)

    def reads_outside(self, node: cst.CSTNode) -> set[str]:
        """Names read anywhere in the function's body except inside node (a statement of it)."""
        if self._counts is None:
            self._counts = name_counts(self._fn.body)
        inside = name_counts(node)
        return {n for n, c in self._counts.items() if c > inside[n]}

    def fresh(self, *bases: str) -> list[str]:
        k = 1
        while True:
            names = [b if k == 1 else f"{b}_{k}" for b in bases]
            if not any(n in self.taken for n in names):
                self.taken.update(names)
                return names
            k += 1


def _local_fn(
    name: str,
    params: list[str],
    stmts: Iterable[cst.BaseStatement],
    ret: cst.BaseExpression,
    like: Optional[cst.BaseSuite],
    leading_lines: Iterable[cst.EmptyLine] = (),
) -> cst.FunctionDef:
    body_stmts = list(stmts) + [cst.SimpleStatementLine([cst.Return(ret)])]
    if isinstance(like, cst.IndentedBlock):
        body = like.with_changes(body=body_stmts, footer=[])
    else:
        body = cst.IndentedBlock(body_stmts)
    return cst.FunctionDef(
        cst.Name(name),
        cst.Parameters([cst.Param(cst.Name(p)) for p in params]),
        body,
        leading_lines=list(leading_lines),
    )


def _tuple(items: list[cst.BaseExpression], parens: bool = True) -> cst.Tuple:
    t = cst.Tuple([cst.Element(i) for i in items])
    return t if parens else t.with_changes(lpar=[], rpar=[])


def _pack(items: list[cst.BaseExpression]) -> cst.BaseExpression:
    return items[0] if len(items) == 1 else _tuple(items, parens=False)


def _pred(test: cst.BaseExpression, kinds: dict[int, Kind], qualify: Qualify) -> tuple[cst.BaseExpression, bool]:
    """(predicate, exact). For `and`/`or`, the Python tests stay Python and short-circuit (torch.cond takes a
    Python bool and then runs just that arm, so `r is not None and r.sum() > 0` never touches a `None`);
    they go first, which moves a Python test written after a tensor test only when both are side-effect
    free. The tensor or traced-size tests are joined with `&`/`|`, which evaluates all of them: exact when
    the ones after the first are side-effect free."""
    if not isinstance(test, cst.BooleanOperation):
        return as_bool_tensor(test), True
    op = type(test.operator)
    operands = chain(test, op)
    if any(id(o) not in kinds for o in operands):
        raise Refuse("`and`/`or` in the condition (short-circuit)")
    is_traced = [is_tensor(kinds[id(o)]) or is_size(kinds[id(o)]) for o in operands]
    first = is_traced.index(True) if True in is_traced else len(operands)
    if not all(is_traced[first:]) and not all(is_pure(o, qualify) for o in operands[first:]):
        raise Refuse("a Python test after a tensor test in `and`/`or` (side effects: cannot reorder)")
    python = [o for o, t in zip(operands, is_traced) if not t]
    traced_ = [o for o, t in zip(operands, is_traced) if t]
    if not traced_ or any(isinstance(o, cst.BooleanOperation) for o in traced_):
        raise Refuse("nested `and`/`or` on tensors")
    exact = all(is_pure(o, qualify) for o in traced_[1:])
    pred = tensor_and(traced_, op)
    for p in reversed(python):
        # torch.cond takes a bool, not any falsy value `and` may stop at
        is_bool = isinstance(p, cst.Comparison) or isinstance(p, cst.UnaryOperation) and isinstance(p.operator, cst.Not)
        p = p if is_bool else cst.Call(cst.Name("bool"), [cst.Arg(p)])
        pred = cst.BooleanOperation(p, op(), pred)
    return pred, exact


def _operands(names: list[str], env_before: Env) -> list[str]:
    return [n for n in names if n != "self" and _is_tensor(env_before.get(n, frozenset()))]


def plan_if(
    stmts: list[cst.CSTNode],
    i: int,
    fn: cst.FunctionDef,
    envs: Envs,
    ret_kinds: dict[int, Kind],
    names: Names,
    qualify: Qualify,
    code: str,
    operand_kinds: Optional[dict[int, Kind]] = None,
) -> Plan:
    node = stmts[i]
    try:
        return _plan_if(stmts, i, fn, envs, ret_kinds, names, qualify, code, operand_kinds or {})
    except Refuse as r:
        return Plan(FORM, {code}, [node], reason=str(r))


def _plan_if(
    stmts: list[cst.CSTNode],
    i: int,
    fn: cst.FunctionDef,
    envs: Envs,
    ret_kinds: dict[int, Kind],
    names: Names,
    qualify: Qualify,
    code: str,
    operand_kinds: dict[int, Kind],
) -> Plan:
    node = stmts[i]
    assert isinstance(node, cst.If)  # the engine defers `if` statements only
    env_before, outs = envs
    pred, exact = _pred(node.test, operand_kinds, qualify)
    if isinstance(node.orelse, cst.If):
        raise Refuse("an `elif` chain")
    a = Arm(node.body, allow_return=True)
    b = Arm(node.orelse.body if node.orelse is not None else None, allow_return=True)
    consumed: list[cst.CSTNode] = [node]
    if a.ret is not None and node.orelse is None:
        nxt = stmts[i + 1] if i + 1 < len(stmts) else None
        if isinstance(nxt, cst.SimpleStatementLine) and len(nxt.body) == 1 and isinstance(nxt.body[0], cst.Return):
            if nxt.body[0].value is None:
                raise Refuse("a bare `return` (a `None` output)")
            b.ret = nxt.body[0]
            b.values.append(b.ret.value)  # type: ignore[arg-type]  # libcst's unions / an invariant mypy cannot see
            consumed.append(nxt)
    if (a.ret is None) != (b.ret is None):
        raise Refuse("one arm returns and the other does not")
    ra: Optional[cst.BaseExpression] = None
    rb: Optional[cst.BaseExpression] = None
    if a.ret is not None and b.ret is not None:
        ra, rb = a.ret.value, b.ret.value
        if ra is None or rb is None:  # Arm refused a bare return already
            raise Refuse("a bare `return` (a `None` output)")
        n = len(ra.elements) if isinstance(ra, cst.Tuple) else None
        nb = len(rb.elements) if isinstance(rb, cst.Tuple) else None
        if n != nb:
            raise Refuse("arms of different output structure")
        for r in (a.ret, b.ret):
            if not _returns_tensors(ret_kinds.get(id(r), frozenset()), n):
                raise Refuse("an arm returns `None` or a non-tensor")

        def items(v: cst.BaseExpression) -> list[cst.BaseExpression]:
            return [e.value for e in v.elements] if isinstance(v, cst.Tuple) else [v]

        ret_a = [_clone(e) if _aliases(e) else e for e in items(ra)]
        ret_b = [_clone(e) if _aliases(e) else e for e in items(rb)]
        outputs = None
    else:
        outside = names.reads_outside(node)
        assigned = list(dict.fromkeys([*a.last, *b.last]))
        # the env before a statement in a loop already holds what earlier iterations assigned
        outputs = [v for v in assigned if v in env_before or v in outside]
        if not outputs:
            raise Refuse("the arms produce no value used later")
        arm_envs = [outs[0], outs[1] if len(outs) > 1 else env_before]
        for v in outputs:
            for arm, env in zip((a, b), arm_envs):
                if isinstance(arm.last.get(v), cst.Name) and arm.last[v].value == "None":  # type: ignore[union-attr]  # libcst's unions / an invariant mypy cannot see
                    raise Refuse("an arm assigns `None`: use the flag or optional form")
                if v not in arm.last and v not in env_before:
                    raise Refuse(f"`{v}` may be undefined when the other arm runs")
                if env is None or not _is_tensor(env.get(v, frozenset())):
                    raise Refuse(f"`{v}` is not a tensor in every arm (torch.cond outputs tensors)")
        ret_a = [a.output(v) for v in outputs]
        ret_b = [b.output(v) for v in outputs]
    if code == "TS108":
        _shape_safe(a, b, outputs, ra if outputs is None else None, rb if outputs is None else None, qualify)
    t_name, f_name = names.fresh("true_fn", "false_fn")
    read = reads(*a.stmts, *b.stmts, *ret_a, *ret_b)
    ops = _operands(read, env_before)
    if code == "TS108" and not ops and not read:
        raise Refuse("the arms read no tensor")
    t_fn = _local_fn(t_name, ops, a.stmts, _pack(ret_a), node.body, node.leading_lines)
    f_fn = _local_fn(f_name, ops, b.stmts, _pack(ret_b), node.orelse.body if node.orelse is not None else None)
    rewritten = call("torch.cond", pred, cst.Name(t_name), cst.Name(f_name), _tuple([cst.Name(o) for o in ops]))
    if outputs is None:
        last = cst.SimpleStatementLine([cst.Return(rewritten)])
    else:
        target = _pack([cst.Name(v) for v in outputs])
        last = cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(target)], rewritten)])  # type: ignore[arg-type]  # libcst's unions / an invariant mypy cannot see
    safe = exact and a.pure(qualify) and b.pure(qualify) and not (a.rewrote_aug or b.rewrote_aug)
    return Plan(
        FORM, {code}, [node], consumed, [t_fn, f_fn, last], "safe" if safe else "unsafe", imports={("torch", None)}
    )


def _shape_safe(
    a: "Arm",
    b: "Arm",
    outputs: Optional[list[str]],
    ra: Optional[cst.BaseExpression],
    rb: Optional[cst.BaseExpression],
    qualify: Qualify,
) -> None:
    """A size test's arms, for torch.cond: the original exported (torch.export guarded on the size and kept the
    arm taken), but torch.cond traces both arms for every length, and an arm written for some lengths only (a
    slice, a pad, a topk) fails the export or gives outputs of another shape. Only arms that compute
    elementwise, side-effect free values of one shape are rewritten (Refuse otherwise)."""
    why = (
        "a size test whose arms may fail or change shape for other lengths: torch.cond traces both for every "
        "length, where torch.export of the original guarded on the size (keep it, or write the arms "
        "elementwise)"
    )
    if not (a.pure(qualify) and b.pure(qualify)):
        raise Refuse(why)
    if outputs is None:
        pairs = [(ra, rb)]
    else:
        pairs = [(a.last.get(v) or cst.Name(v), b.last.get(v) or cst.Name(v)) for v in outputs]
    for x, y in pairs:
        for ex, ey in (
            ((x, y),)
            if not isinstance(x, cst.Tuple)
            else zip([e.value for e in x.elements], [e.value for e in y.elements] if isinstance(y, cst.Tuple) else [])
        ):
            if ex is None or ey is None:
                raise Refuse(why)
            bx, by = shape_base(ex, qualify), shape_base(ey, qualify)
            if bx is None or bx != by and "" not in (bx, by):
                raise Refuse(why)


def plan_while(node: cst.While, fn: cst.FunctionDef, envs: Envs, names: Names, qualify: Qualify) -> Plan:
    try:
        return _plan_while(node, fn, envs, names, qualify)
    except Refuse as r:
        return Plan(FORM, {"TS102"}, [node], reason=str(r))


def _plan_while(node: cst.While, fn: cst.FunctionDef, envs: Envs, names: Names, qualify: Qualify) -> Plan:
    env_before, (body_env,) = envs
    if node.orelse is not None:
        raise Refuse("`while ... else`")
    if isinstance(node.test, cst.BooleanOperation):
        raise Refuse("`and`/`or` in a loop condition (short-circuit)")
    pred = as_bool_tensor(node.test)
    body = Arm(node.body, allow_return=False)
    outside = names.reads_outside(node)
    carried = [v for v in body.last if v in env_before]
    for v in body.last:
        if v not in env_before and v in outside:
            raise Refuse(f"`{v}` is first assigned inside the loop")
    if not carried:
        raise Refuse("the loop changes no tensor")
    for v in carried:
        if (
            not _is_tensor(env_before.get(v, frozenset()))
            or body_env is None
            or not _is_tensor(body_env.get(v, frozenset()))
        ):
            raise Refuse(f"`{v}` in the loop state is not a tensor (torch.while_loop carries tensors)")
    c_name, b_name = names.fresh("cond_fn", "body_fn")
    c_fn = _local_fn(c_name, carried, [], pred, None, node.leading_lines)
    b_fn = _local_fn(
        b_name, carried, body.stmts, _tuple([body.output(v) for v in carried], parens=len(carried) == 1), node.body
    )
    rewritten = call("torch.while_loop", cst.Name(c_name), cst.Name(b_name), _tuple([cst.Name(v) for v in carried]))
    target = _tuple([cst.Name(v) for v in carried], parens=len(carried) == 1)
    last = cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(target)], rewritten)])
    # the loop state must keep shape and dtype across iterations: no static check proves it
    return Plan(FORM, {"TS102"}, [node], [node], [c_fn, b_fn, last], "unsafe", imports={("torch", None)})
