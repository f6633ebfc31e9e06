"""What an expression may hold, as far as a tracer is concerned.

A kind is a frozenset of atoms; the union of two kinds is their join ("may be either"). The analysis is
an abstract interpretation over this lattice: every expression evaluates to a kind, assignments bind
kinds flow-sensitively, and a call into reached code passes the argument kinds to the callee's
parameters (joined over every call site) and returns the callee's return kind.

Atoms:
- ``T`` a tensor, ``S`` a traced size, ``ST`` a sequence of sizes, ``LT`` a sequence of tensors,
  ``N`` None, ``P`` a plain Python value;
- ``U`` an opaque value: the result of a call the analysis cannot see into (a submodule built from a
  config string, an unknown library). It may be a tensor, a tuple or any object, so nothing is reported
  on it directly; using it as only a tensor can be used (``.shape``, ``.view(...)``, ``.item()``) makes it
  one;
- ``("tup", kinds)`` a tuple of known arity, ``("iter", elem)`` something iterated element by element,
  ``("dict", keys)`` a dict literal's keys, ``("dictof", values)`` the kind of a dict's values (from its
  literal and from ``d[k] = v``);
- ``("obj", ((field, kind), ...))`` an instance of a dataclass of the tree (a ModelOutput) built with these
  keyword fields: reading a field gives its kind;
- ``("mod", classes)`` an ``nn.Module`` instance of one of these classes (qualified names; ``torch.nn.X``
  or a class of the scanned tree), ``("mods", classes)`` a ModuleList/ModuleDict/Sequential of them:
  calling one runs the class's ``forward`` with the caller's argument kinds;
- ``("fns", defs)`` functions of the tree held as values (a registry dict looked up by a config
  string): calling one calls every function it may be;
- ``B1``/``B0`` a Python bool known while exporting (``torch.jit.is_tracing()`` is True under the tracer):
  a branch on it is not a hazard, and the analysis follows only the arm that runs.
"""

from __future__ import annotations

from typing import Any, Iterable, NamedTuple, Optional

T = "T"  # a tensor value (data-dependent under tracing)
S = "S"  # a traced size: x.shape[i], x.size(i), x.numel()
ST = "ST"  # a sequence of traced sizes: x.shape, x.size()
LT = "LT"  # a sequence of tensors: x.chunk(2), torch.max(x, dim=1), [a, b]
N = "N"  # None
P = "P"  # a plain Python value (or anything we know nothing about)
U = "U"  # an opaque value: a call result the analysis cannot see into (maybe a tensor, maybe not)
B1 = "B1"  # a Python bool known to be True while exporting under this target
B0 = "B0"  # ... known to be False
# a Python number read from a tensor (`t.item()`) under torch.export: an unbacked symbol. Arithmetic and
# sizes take it, but branching on it fails (GuardOnDataDependentSymNode), wherever the branch is
D = "D"

# An atom is one of the strings above or a tagged tuple ("tup", (kinds...)), ("mod", classes), ...: the
# payload's type depends on the tag, which mypy cannot follow, so atoms are Any.
Atom = Any
Kind = frozenset[Atom]
# a call's argument as the analysis sees it: (keyword or None, "" / "*" / "**", its kind)
Arg = tuple[Optional[str], str, Kind]
Env = dict[str, Kind]  # a name's kind at a point of a function

EMPTY: Kind = frozenset()
KT = frozenset({T})
KS = frozenset({S})
KST = frozenset({ST})
KLT = frozenset({LT})
KN = frozenset({N})
KP = frozenset({P})
KU = frozenset({U})
KB1 = frozenset({B1})
KB0 = frozenset({B0})
KD = frozenset({D})

_MAX_TUPLE = 8


def tup(kinds: Iterable[Kind]) -> Kind:
    ks = tuple(kinds)
    if len(ks) > _MAX_TUPLE:
        return KLT if any(T in k for k in ks) else KP
    return frozenset({("tup", ks)})


def iterable(elem: Kind) -> Kind:
    """Something iterated element by element, such as enumerate(...) or zip(...)."""
    return frozenset({("iter", elem)})


def dct(keys: Iterable[Any]) -> Kind:
    return frozenset({("dict", frozenset(keys))})


def keyed(items: Iterable[tuple[Any, Kind]]) -> Kind:
    """A dict whose keys are known (a display, the keywords a `**kwargs` parameter received): its keys, each
    key's kind (a "dkv" atom, for `d["key"]` and `**d`), and the kind of any value."""
    pairs = sorted(items, key=lambda kv: kv[0])
    return join(dct(k for k, _ in pairs), frozenset({("dkv", tuple(pairs))}), dictof(join(*(v for _, v in pairs))))


def keyed_ways(k: Kind) -> list[dict[Any, Kind]]:
    """The key -> kind mappings of k's dicts with known keys, one per way it was built (`keyed`)."""
    return [dict(a[1]) for a in k if isinstance(a, tuple) and a[0] == "dkv"]


def dictof(values: Kind) -> Kind:
    """A dict whose values have this kind (subscripting it gives them)."""
    return frozenset({("dictof", values)})


def mod(classes: Iterable[Any]) -> Kind:
    return frozenset({("mod", frozenset(classes))})


def mods(classes: Iterable[Any]) -> Kind:
    return frozenset({("mods", frozenset(classes))})


def fns(defs: Iterable[Any]) -> Kind:
    return frozenset({("fns", frozenset(defs))})


class Bound(NamedTuple):
    """`functools.partial(f, *args, **kw)` of a function of the tree: f with these arguments bound first. An
    item of a ``fns`` atom beside plain functions, so a partial held in an attribute or handed to a helper
    is called like the function it wraps."""

    fn: Any  # engine.FuncRef
    args: tuple[Arg, ...]


def bound_args(first: Iterable[Arg], then: Iterable[Arg]) -> list[Arg]:
    """The arguments a call passes when `then` follows the bound `first`: positions of `first` come before
    those of `then`, and a keyword of `then` overrides the same keyword of `first` (it is bound last)."""
    a, b = list(first), list(then)
    positional = [x for x in a if x[0] is None and not x[1]] + [x for x in b if x[0] is None and not x[1]]
    return positional + [x for x in a if x[0] is not None or x[1]] + [x for x in b if x[0] is not None or x[1]]


def unbind(d: Any, args: Iterable[Arg]) -> tuple[Any, list[Arg]]:
    """The function a ``fns`` item calls and the arguments it receives."""
    if isinstance(d, Bound):
        return d.fn, bound_args(d.args, args)
    return d, list(args)


def partial_of(k: Kind, args: Iterable[Arg]) -> Optional[Kind]:
    """`functools.partial(f, ...)` where f has kind k: the functions of the tree f may be, each with the
    arguments bound (a partial of a partial binds both), else None."""
    defs = atoms_of(k, "fns")
    if not defs:
        return None
    bound = tuple(args)
    return fns(Bound(d.fn, tuple(bound_args(d.args, bound))) if isinstance(d, Bound) else Bound(d, bound) for d in defs)


def atoms_of(k: Kind, tag: str) -> frozenset[Any]:
    """The union of the payloads of k's atoms tagged `tag` (module classes, functions)."""
    out: set[Any] = set()
    for a in k:
        if isinstance(a, tuple) and a[0] == tag:
            out |= a[1]
    return frozenset(out)


def known_bool(k: Kind) -> Optional[bool]:
    """True/False when k is a bool known while exporting, else None."""
    if k == KB1:
        return True
    if k == KB0:
        return False
    return None


def join(*kinds: Kind) -> Kind:
    if len(kinds) == 2:  # the common case, on the hot path: nothing new to normalize
        a, b = kinds
        if a == b or not b or b <= a:
            return a
        if not a or a <= b:
            return b
    elif len(kinds) == 1:
        return kinds[0]
    out: set[Atom] = set()
    for k in kinds:
        out |= k
    compound = [a for a in out if type(a) is tuple]
    if len(compound) < 2:
        return frozenset(out)
    # one atom per tag for sets of classes and functions, and for a dict's values
    for tag in ("mod", "mods", "fns", "dictof"):
        tagged = [a for a in compound if a[0] == tag]
        if len(tagged) > 1:
            out.difference_update(tagged)
            payload = join(*(a[1] for a in tagged)) if tag == "dictof" else frozenset().union(*(a[1] for a in tagged))
            out.add((tag, payload))
    # keep tuple atoms bounded: two tuples of the same arity merge elementwise
    tuples: list[Atom] = [a for a in compound if a[0] == "tup"]
    if len(tuples) > 1:
        by_len: dict[int, list[Atom]] = {}
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


def surely_tensor(k: Kind) -> bool:
    """A tensor and nothing that could be a sequence or an opaque value (iterating it is TS107)."""
    return T in k and LT not in k and U not in k and not any(isinstance(a, tuple) and a[0] != "fns" for a in k)


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
        elif isinstance(a, tuple) and a[0] == "mods":
            out.append(mod(a[1]))
        elif a == U:
            out.append(KU)
        else:
            out.append(KP)
    return join(*out) if out else KP


def nth_present(kinds: Iterable[Kind], i: int) -> Kind:
    """The i-th (negative: from the end) of these values that is not None, as ModelOutput's `to_tuple()`
    and `tuple(v for v in (a, b, c) if v is not None)` number them: a value that may be None shifts those
    after it, so the kind joins every value that may land at i (EMPTY when none can)."""
    seq = list(kinds) if i >= 0 else list(reversed(list(kinds)))
    idx = i if i >= 0 else -i - 1
    out: list[Kind] = []
    positions = {0}  # where the next present value may land
    for k in seq:
        if k == KN:
            continue
        if idx in positions:
            out.append(k - {N})
        after = {p + 1 for p in positions if p < idx}
        positions = (positions | after) if N in k else after
        if not positions:
            break
    return join(*out) if out else EMPTY


def present_tuples(kinds: list[Kind]) -> Kind:
    """`tuple(v for v in (a, b, c) if v is not None)`: a tuple of the values present, one atom per way the
    values that may be None are there or not (a few of them; else a sequence of their kinds)."""
    maybe = [i for i, k in enumerate(kinds) if N in k and k != KN]
    if len(maybe) > 3:
        return iterable(join(*(k - {N} for k in kinds)))
    out = []
    for mask in range(1 << len(maybe)):
        gone = {i for b, i in enumerate(maybe) if not mask >> b & 1}
        out.append(tup(k - {N} for i, k in enumerate(kinds) if k != KN and i not in gone))
    return join(*out)


def unpack(k: Kind, n: int) -> list[Kind]:
    """Kinds of the n targets of ``a, b, ... = value``."""
    for a in k:
        if isinstance(a, tuple) and a[0] == "tup" and len(a[1]) == n:
            return [join(e, *(element(frozenset({b})) for b in k if b != a)) for e in a[1]]
    e = element(k)
    return [e] * n
