"""The accuracy harness counts in one unit, the statement: recall is warned statements flagged over warned
statements (benchmarks/accuracy.py divided warned lines by missed statements before)."""

from __future__ import annotations

import pytest

from real_models import branch_operands, fully_ran, operand_lines, tally

SRC = """def f(x, y):
    if (x.sum() > 0 and
            y.sum() > 0):
        x = x + 1
    z = int(x.sum())
    if y.mean() > 0:
        y = y - 1
    return x + y + z
"""


def test_a_statement_warned_on_two_lines_counts_once(tmp_path):
    f = str(tmp_path / "m.py")
    (tmp_path / "m.py").write_text(SRC)
    warned = {f: {2, 3, 5}}  # the `if` warned on both lines of its test, and the int()
    executed = {f: set(range(1, 9))}
    none = tally(warned, executed, {}, {})
    assert none["warned"] == 2 and len(none["missed"]) == 2
    some = tally(warned, executed, {}, {f: [(3, "TS101")]})
    assert some["warned"] == 2 and len(some["missed"]) == 1 and some["confirmed"] == 1
    # a flagged statement that ran without a warning is one false alarm, however many findings it has
    alarm = tally(warned, executed, {}, {f: [(2, "TS101"), (5, "TS106"), (6, "TS101"), (6, "TS104")]})
    assert alarm["missed"] == [] and alarm["confirmed"] == 2 and len(alarm["alarms"]) == 1


GATED = """import torch


class Gated(torch.nn.Module):
    def __init__(self, gate: bool):
        super().__init__()
        self.gate = gate

    def forward(self, x):
        if self.gate and x.sum() > 0:
            x = x + 1
        return x * 2 if self.gate else x
"""


def test_a_statement_whose_flagged_operand_never_ran_is_left_out(tmp_path):
    # `if self.gate and x.sum() > 0:` with gate False: the line runs, `x.sum() > 0` does not, so the tracer
    # has nothing to say about it; with gate True it runs and warns. Instruction positions tell them apart.
    torch = pytest.importorskip("torch")
    from tracer_truth import load_fixture, trace_truth

    path = tmp_path / "gated.py"
    path.write_text(GATED)
    f = str(path.resolve())
    mod = load_fixture(path, tmp_path)
    flagged = {f: [(10, "TS101")]}
    for gate, outcome in ((False, "unrun"), (True, "confirmed")):
        ran_at: dict = {}
        warned, executed = trace_truth(
            mod.Gated(gate), (torch.ones(2),), {f}, direct_only=True, ran_at=ran_at, watch=operand_lines
        )
        r = tally(warned, executed, {}, flagged, ran_at=ran_at)
        assert (len(r["unrun"]), r["confirmed"], r["alarms"]) == ((1, 0, []) if outcome == "unrun" else (0, 1, []))


def test_operands_are_the_parts_a_statement_can_skip(tmp_path):
    path = tmp_path / "gated.py"
    path.write_text(GATED)
    ops = branch_operands(str(path))
    # the `if` header: both operands of `and`; the return: both arms of the ternary, not its test
    assert ops[(10, 10)] == [(10, 11, 10, 20), (10, 25, 10, 36)]
    assert ops[(12, 12)] == [(12, 15, 12, 20), (12, 39, 12, 40)]
    # a statement ran in full when an instruction inside every operand ran; here the ternary's `x * 2` did
    # not (an instruction spanning the whole ternary is inside no operand)
    ran = {(12, 12, 15, 40), (12, 12, 24, 33), (12, 12, 39, 40)}
    assert not fully_ran(str(path), (12, 12), ran)
    assert fully_ran(str(path), (12, 12), ran | {(12, 12, 19, 20)})
