"""The lattice helpers that number values the way Python does: a partial's arguments, and the tuples a
model builds when it drops the `None` entries (`to_tuple()`, `tuple(v for v in ... if v is not None)`)."""

from __future__ import annotations

from tracesafe.analyzer.kinds import (
    EMPTY,
    KLT,
    KN,
    KP,
    KS,
    KT,
    N,
    Bound,
    bound_args,
    element,
    fns,
    join,
    nth_present,
    partial_of,
    present_tuples,
    unbind,
)


def test_nth_present_counts_only_the_values_there():
    maybe_hidden = join(KLT, KN)
    fields = [KT, maybe_hidden, join(KP, KN), KN]
    assert nth_present(fields, 0) == KT
    # the second value present is the hidden states when they are there, the third field otherwise
    assert nth_present(fields, 1) == join(KLT, KP)
    assert nth_present(fields, 2) == KP
    assert nth_present(fields, 3) == EMPTY
    assert nth_present(fields, -1) == join(KP, KLT, KT)  # the last present: whichever of them is there
    assert nth_present([KN, KT], 0) == KT  # a field known to be None is never numbered


def test_present_tuples_enumerates_what_may_be_dropped():
    k = present_tuples([KT, join(KLT, KN)])
    tuples = sorted((a for a in k), key=lambda a: len(a[1]))
    assert [len(a[1]) for a in tuples] == [1, 2]
    assert tuples[1][1] == (KT, KLT)  # None is gone from what is there
    assert element(k) == join(KT, KLT)
    many = present_tuples([join(KT, KN)] * 5)  # too many ways: a sequence of their kinds
    assert element(many) == KT and N not in element(many)


def test_partial_binds_first_and_a_call_keyword_overrides():
    first = [(None, "", KT), ("eps", "", KP)]
    then = [(None, "", KS), ("eps", "", KT), ("chunk", "", KP)]
    assert bound_args(first, then) == [
        (None, "", KT),
        (None, "", KS),
        ("eps", "", KP),
        ("eps", "", KT),
        ("chunk", "", KP),
    ]
    (inner,) = next(iter(partial_of(fns({"kernel"}), first)))[1]
    assert inner == Bound("kernel", tuple(first))
    # a partial of a partial binds both, in order
    (outer,) = next(iter(partial_of(fns({inner}), [(None, "", KS)])))[1]
    fn, args = unbind(outer, [("chunk", "", KP)])
    assert fn == "kernel" and args == [(None, "", KT), (None, "", KS), ("eps", "", KP), ("chunk", "", KP)]
    assert partial_of(KT, first) is None  # not a function of the tree: nothing is known of the call
