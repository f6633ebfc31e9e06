"""The accuracy harness counts in one unit, the statement: recall is warned statements flagged over warned
statements (benchmarks/accuracy.py divided warned lines by missed statements before)."""

from __future__ import annotations

from real_models import tally

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
