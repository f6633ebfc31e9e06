"""What an expression may hold, as far as a tracer is concerned.

A kind is a frozenset of atoms; the union of two kinds is their join ("may be either").
"""

from __future__ import annotations

T = "T"    # a tensor value (data-dependent under tracing)
S = "S"    # a traced size: x.shape[i], x.size(i), x.numel()
ST = "ST"  # a sequence of traced sizes: x.shape, x.size()
LT = "LT"  # a sequence of tensors: x.chunk(2), torch.max(x, dim=1), [a, b]
N = "N"    # None
P = "P"    # a plain Python value (or anything we know nothing about)

Kind = frozenset

EMPTY: Kind = frozenset()
KT = frozenset({T})
KS = frozenset({S})
KST = frozenset({ST})
KLT = frozenset({LT})
KN = frozenset({N})
KP = frozenset({P})

_MAX_TUPLE = 8


def tup(kinds) -> Kind:
    kinds = tuple(kinds)
    if len(kinds) > _MAX_TUPLE:
        return KLT if any(T in k for k in kinds) else KP
    return frozenset({("tup", kinds)})


def iterable(elem: Kind) -> Kind:
    """Something iterated element by element, such as enumerate(...) or zip(...)."""
    return frozenset({("iter", elem)})


def dct(keys) -> Kind:
    return frozenset({("dict", frozenset(keys))})


def join(*kinds: Kind) -> Kind:
    out: set = set()
    for k in kinds:
        out |= k
    # keep tuple atoms bounded: two tuples of the same arity merge elementwise
    tuples = [a for a in out if isinstance(a, tuple) and a[0] == "tup"]
    if len(tuples) > 1:
        by_len: dict[int, list] = {}
        for a in tuples:
            by_len.setdefault(len(a[1]), []).append(a)
        for group in by_len.values():
            if len(group) > 1:
                for a in group:
                    out.discard(a)
                merged = tuple(join(*(g[1][i] for g in group)) for i in range(len(group[0][1])))
                out.add(("tup", merged))
    return frozenset(out)


def is_tensor(k: Kind) -> bool:
    return T in k


def is_size(k: Kind) -> bool:
    return S in k


def traced(k: Kind) -> bool:
    """Does converting this value to a Python bool/number make the tracer freeze it?"""
    return T in k or S in k


def element(k: Kind) -> Kind:
    """The kind of one element when iterating over / indexing a value of kind k."""
    out = []
    for a in k:
        if a == T or a == LT:
            out.append(KT)
        elif a == ST:
            out.append(KS)
        elif isinstance(a, tuple) and a[0] == "tup":
            out.extend(a[1])
        elif isinstance(a, tuple) and a[0] == "iter":
            out.append(a[1])
        else:
            out.append(KP)
    return join(*out) if out else KP


def unpack(k: Kind, n: int) -> list[Kind]:
    """Kinds of the n targets of ``a, b, ... = value``."""
    for a in k:
        if isinstance(a, tuple) and a[0] == "tup" and len(a[1]) == n:
            return [join(e, *(element(frozenset({b})) for b in k if b != a)) for e in a[1]]
    e = element(k)
    return [e] * n
