"""Which names a function may still read after each of its statements (backward liveness).

A rewrite that moves an arm's computation ahead of a branch (`where`: the arm's temporaries run
unconditionally) may do so only for names nothing reads afterwards. Names read anywhere in the function are
too coarse: transformers' decoder layers assign `clamp_value` in three consecutive `if`s, each reading only
its own. The analysis over-approximates what is live (a name it cannot follow counts as read):
`try`, `with` and `match` statements keep every name they mention live and kill none, a loop is iterated to a
fixpoint, `break` and `continue` keep the loop's live names, and a name a nested function or lambda reads is
live everywhere (it may be called at any point).
"""

from __future__ import annotations

from typing import Optional, Sequence

import libcst as cst

from .common import child_nodes, name_counts


def _reads(node: Optional[cst.CSTNode]) -> set[str]:
    return set(name_counts(node)) if node is not None else set()


class Liveness:
    """after(node): the names live after a statement of the function (None for a statement it did not
    reach: inside a `try`, a `with` or a `match`, or not a statement)."""

    def __init__(self, fn: cst.FunctionDef):
        self._after: dict[int, set[str]] = {}
        self._loops: list[set[str]] = []  # live at the enclosing loops' heads and exits
        self._always = self._closure_reads(fn.body)
        body = fn.body.body if isinstance(fn.body, cst.IndentedBlock) else [fn.body]
        self._block(body, set())

    def after(self, node: cst.CSTNode) -> Optional[set[str]]:
        out = self._after.get(id(node))
        return None if out is None else out | self._always

    @staticmethod
    def _closure_reads(body: cst.CSTNode) -> set[str]:
        out: set[str] = set()
        stack: list[cst.CSTNode] = [body]
        while stack:
            n = stack.pop()
            if isinstance(n, (cst.FunctionDef, cst.Lambda)):
                out |= _reads(n)
            else:
                stack.extend(child_nodes(n))
        return out

    def _block(self, stmts: Sequence[cst.CSTNode], out: set[str]) -> set[str]:
        live = set(out)
        for s in reversed(stmts):
            live = self._stmt(s, live)
        return live

    def _suite(self, suite: Optional[cst.CSTNode], out: set[str]) -> set[str]:
        if suite is None:
            return set(out)
        if isinstance(suite, (cst.Else, cst.Finally)):
            suite = suite.body
        if isinstance(suite, cst.IndentedBlock):
            return self._block(suite.body, out)
        if isinstance(suite, cst.SimpleStatementSuite):
            return self._small_line(suite.body, out)
        return out | _reads(suite)

    def _stmt(self, s: cst.CSTNode, out: set[str]) -> set[str]:
        self._after.setdefault(id(s), set()).update(out)
        if isinstance(s, cst.SimpleStatementLine):
            return self._small_line(s.body, out)
        if isinstance(s, cst.If):
            orelse = self._stmt(s.orelse, out) if isinstance(s.orelse, cst.If) else self._suite(s.orelse, out)
            return _reads(s.test) | self._suite(s.body, out) | orelse
        if isinstance(s, (cst.For, cst.While)):
            head = set(out)  # live at the loop's head: after the body, and after the loop (zero iterations)
            while True:
                self._loops.append(head | out)
                body = self._suite(s.body, head | out)
                self._loops.pop()
                new = head | body | (_reads(s.test) if isinstance(s, cst.While) else set())
                if new == head:
                    break
                head = new
            exit_live = self._suite(s.orelse, out) if s.orelse is not None else set(out)
            return head | exit_live | (_reads(s.iter) | _reads(s.target) if isinstance(s, cst.For) else set())
        # try/with/match, nested definitions and classes: every name mentioned stays live, none is killed
        return out | _reads(s)

    def _small_line(self, smalls: Sequence[cst.BaseSmallStatement], out: set[str]) -> set[str]:
        live = set(out)
        for sm in reversed(smalls):
            live = self._small(sm, live)
        return live

    def _small(self, sm: cst.BaseSmallStatement, live: set[str]) -> set[str]:
        if isinstance(sm, cst.Assign):
            killed = {t.target.value for t in sm.targets if isinstance(t.target, cst.Name)}
            others = set().union(*(_reads(t.target) for t in sm.targets if not isinstance(t.target, cst.Name)))
            return (live - killed) | others | _reads(sm.value)
        if isinstance(sm, cst.AnnAssign) and isinstance(sm.target, cst.Name) and sm.value is not None:
            return (live - {sm.target.value}) | _reads(sm.value)
        if isinstance(sm, (cst.Return, cst.Raise)):
            return _reads(sm)  # nothing after it runs
        if isinstance(sm, (cst.Break, cst.Continue)):
            return live | (self._loops[-1] if self._loops else set())
        return live | _reads(sm)  # AugAssign reads its target; an expression, del, assert, import...
