"""Size arithmetic kept symbolic, for torch.export (the `cond` form).

- `torch.div(a, b, rounding_mode="floor"|"trunc")` where a size goes (`x.view(n, torch.div(s, 2,
  rounding_mode="trunc"))`) becomes `a // b` when a and b are sizes or Python numbers: torch.div makes a
  tensor of them, which torch.export can only read back as a data-dependent integer; `//` keeps a symbolic
  size. `floor` is `//` exactly (safe); `trunc` equals it for non-negative operands, which sizes are and a
  Python number may not be (unsafe unless both are sizes or non-negative literals).
- `torch.tensor(list(range(...)))` (and `[::-1]` of it) becomes `torch.arange(...)` (`.flip(0)`): the
  same int64 values, computed in the graph instead of recorded for the example's length. A range that is
  empty gave a float32 tensor and now gives an int64 one, so the fix is unsafe.
"""

from __future__ import annotations

from typing import Optional

import libcst as cst

from tracesafe.analyzer.kinds import Kind, is_size, is_tensor

from .common import Plan, Qualify

FORM = "cond"


def _kw(call: cst.Call, name: str) -> Optional[cst.Arg]:
    return next((a for a in call.args if a.keyword is not None and a.keyword.value == name), None)


def _string(e: cst.BaseExpression) -> Optional[str]:
    return e.evaluated_value if isinstance(e, cst.SimpleString) and isinstance(e.evaluated_value, str) else None


def plan_div(node: cst.Call, kinds: dict[int, Kind], qualify: Qualify) -> Optional[Plan]:
    if qualify(node.func) != "torch.div":
        return None
    pos = [a for a in node.args if a.keyword is None and not a.star]
    mode = _kw(node, "rounding_mode")
    rounding = _string(mode.value) if mode is not None else None
    if len(pos) != 2 or len(node.args) != 3 or rounding not in ("floor", "trunc"):
        return Plan(
            FORM,
            {"TS106"},
            [node],
            reason="`torch.div` without a floor or trunc rounding mode is not a size computation",
        )
    k = kinds.get(id(node))
    if k is None or is_tensor(k):
        return Plan(FORM, {"TS106"}, [node], reason="`torch.div` of a tensor: its value is data-dependent")
    a, b = pos[0].value, pos[1].value
    exact = rounding == "floor" or all(_non_negative(x) for x in (a, b)) or is_size(k) and _non_negative(b)
    new = cst.BinaryOperation(_par(a), cst.FloorDivide(), _par(b))
    return Plan(FORM, {"TS106"}, [node], node, new, "safe" if exact else "unsafe")


def _non_negative(e: cst.BaseExpression) -> bool:
    return isinstance(e, (cst.Integer, cst.Float))


def _par(e: cst.BaseExpression) -> cst.BaseExpression:
    if isinstance(e, (cst.Name, cst.Attribute, cst.Call, cst.Subscript, cst.Integer)) or e.lpar:
        return e
    return e.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


def plan_tensor_of_range(node: cst.Call, qualify: Qualify) -> Optional[Plan]:
    """`torch.tensor(list(range(...))[::-1], device=d)` -> `torch.arange(..., device=d).flip(0)`."""
    if qualify(node.func) != "torch.tensor" or not node.args or node.args[0].keyword is not None:
        return None
    data, flip = node.args[0].value, False
    if isinstance(data, cst.Subscript) and len(data.slice) == 1 and isinstance(data.slice[0].slice, cst.Slice):
        sl = data.slice[0].slice
        if (
            sl.lower is None
            and sl.upper is None
            and isinstance(sl.step, cst.UnaryOperation)
            and isinstance(sl.step.operator, cst.Minus)
            and isinstance(sl.step.expression, cst.Integer)
            and sl.step.expression.value == "1"
        ):
            data, flip = data.value, True
        else:
            return None
    if not (
        isinstance(data, cst.Call)
        and isinstance(data.func, cst.Name)
        and data.func.value == "list"
        and len(data.args) == 1
        and isinstance(data.args[0].value, cst.Call)
    ):
        return None
    rng = data.args[0].value
    if (
        not (isinstance(rng.func, cst.Name) and rng.func.value == "range")
        or not 1 <= len(rng.args) <= 3
        or any(a.keyword is not None or a.star for a in rng.args)
    ):
        return None
    rest = [a for a in node.args[1:] if a.keyword is not None and a.keyword.value in ("device", "dtype")]
    if len(rest) != len(node.args) - 1:
        return None
    args = [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in rng.args] + list(rest)
    new: cst.BaseExpression = cst.Call(cst.parse_expression("torch.arange"), args)
    if flip:
        new = cst.Call(cst.Attribute(new, cst.Name("flip")), [cst.Arg(cst.Integer("0"))])
    return Plan(FORM, {"TS106"}, [node], node, new, "unsafe", imports={("torch", None)})
