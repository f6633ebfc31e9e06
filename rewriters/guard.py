"""A tensor test that only raises (`if (ids >= vocab).any(): raise ValueError(...)`, or an `assert` on a
tensor or a size) becomes eager-only: `if not torch.jit.is_tracing() and (ids >= vocab).any():` (`assert
torch.jit.is_tracing() or ...`) for the trace forms, `torch.compiler.is_compiling()` for `cond` (torch.export
sets it).

Eager code runs exactly as before for every input. While tracing, the original check was frozen into the
graph as "does not raise" (or stopped the trace), so the traced graph is the same; under torch.export the
original could not export at all (`GuardOnDataDependentSymNode`), and the exported program carries no
check, which is why that form's fix is unsafe: the user decides to drop the check from the export.
"""

from __future__ import annotations

import libcst as cst

from .common import Plan

GUARDS = {"where": ("torch.jit.is_tracing", "safe"), "cond": ("torch.compiler.is_compiling", "unsafe")}


def raises_only(node: cst.If) -> bool:
    """The `if` arm is straight-line code that ends in `raise` (message building, then the raise)."""
    body = node.body
    if not isinstance(body, cst.IndentedBlock) or not body.body:
        return False
    if not all(isinstance(s, cst.SimpleStatementLine) for s in body.body):
        return False
    smalls = [sm for s in body.body for sm in s.body]
    return isinstance(smalls[-1], cst.Raise) and not any(isinstance(sm, (cst.Return, cst.Break, cst.Continue))
                                                          for sm in smalls)


def applies(code: str, node) -> bool:
    """The finding is a check the guard makes eager-only: an `if` on a tensor or size whose arm only
    raises, or an `assert` on one."""
    return code in ("TS101", "TS108") and isinstance(node, cst.If) and raises_only(node) or \
        code in ("TS105", "TS108") and isinstance(node, cst.Assert)


def plan_guard(form: str, code: str, node: cst.If | cst.Assert) -> Plan:
    """`if t: raise ...` -> `if not G and t:`; `assert t, msg` -> `assert G or t, msg` (G: the form's
    exporter is running)."""
    func, applicability = GUARDS[form]
    test = node.test
    keeps = cst.And if isinstance(node, cst.If) else cst.Or  # the operator `G and`/`G or` binds within
    if isinstance(test, (cst.BooleanOperation, cst.IfExp, cst.Lambda)) and not test.lpar and \
            not (isinstance(test, cst.BooleanOperation) and isinstance(test.operator, (cst.And, keeps))):
        test = test.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    running = cst.Call(cst.parse_expression(func))
    if isinstance(node, cst.If):
        new_test = cst.BooleanOperation(cst.UnaryOperation(cst.Not(), running), cst.And(), test)
    else:
        new_test = cst.BooleanOperation(running, cst.Or(), test)
    return Plan(form, {code}, [node], node, node.with_changes(test=new_test), applicability,
                imports={("torch", None)})
