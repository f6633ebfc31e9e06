"""`optional` form: keep `None`, and make it a declared output. `forward` gets `-> Optional[torch.Tensor]`
and the parameter annotations `torch.jit.script` needs; the TorchScript exporter then writes an ONNX `If`
with an Optional output. Measured: that model is valid from opset 16 on; below 16 the exporter silently
writes an invalid one, so `tracesafe export` refuses lower opsets for it.

Eager behaviour is unchanged (annotations only), so the fix is safe.
"""

from __future__ import annotations

import libcst as cst

from tracesafe.analyzer.infer import terminates
from tracesafe.analyzer.kinds import Kind

from .common import Plan, annotate_params
from .flag import _arity

FORM = "optional"


def plan_optional(
    fn: cst.FunctionDef, qualname: str, returns: list[tuple[cst.Return, Kind]], nodes: list[cst.CSTNode]
) -> Plan:
    def fail(why: str) -> Plan:
        return Plan(FORM, {"TS201"}, nodes, reason=why)

    n = _arity([k for _, k in returns])
    if n is None:
        return fail("returns of different or unknown structure")
    if n != 1:
        return fail("a tuple output that may be `None` (ONNX Optional holds one tensor): use the flag form")
    if isinstance(fn.params.star_arg, cst.Param) or fn.params.star_kwarg is not None:
        return fail("`*args`/`**kwargs` do not script")
    ps, imports = annotate_params(fn)
    imports |= {("torch", None), ("typing", "Optional")}
    body = fn.body
    if isinstance(body, cst.IndentedBlock) and not terminates(body.body):
        # TorchScript wants every path of an Optional-returning function to say what it returns
        body = body.with_changes(body=[*body.body, cst.parse_statement("return None\n")])
    new_fn = fn.with_changes(
        params=ps, body=body, returns=cst.Annotation(cst.parse_expression("Optional[torch.Tensor]"))
    )
    return Plan(FORM, {"TS201"}, nodes, fn, new_fn, "safe", imports=imports)
