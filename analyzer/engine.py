"""Entry points, reach and the fixpoint over reached functions; positions and suppression."""

from __future__ import annotations

import ast
import re
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from typing import AbstractSet, Any, Iterable, Iterator, Literal, Optional, Union

import libcst as cst
from libcst.metadata import CodePosition, CodeRange

# libcst has no public codegen state; the position pass subclasses it. pyproject pins the libcst range this
# is tested on, and CI runs the analyzer's tests on the floor of that range (.ci/run).
from libcst._nodes.internal import CodegenState

from .finding import Finding
from . import torchapi as api
from .infer import Walker, all_params, annotation_kind, object_uses, tensor_uses
from .kinds import (
    EMPTY,
    KLT,
    KN,
    KP,
    KT,
    KU,
    N,
    P,
    U,
    Arg,
    Env,
    Kind,
    atoms_of,
    keyed,
    keyed_ways,
    dictof as dictof_kind,
    fns as fns_kind,
    join,
    iterable,
    mod as mod_kind,
    mods as mods_kind,
    partial_of,
    tup,
)
from .source import canonical
from .project import _DEFS, NEWLINE, ClassInfo, Def, ModuleInfo, Project, SourceError, ast_dotted, dotted
from .rules import RULES

_MAX_VISITS = 12  # re-analyses of one function before its summary is taken as final
_MAX_DEPTH = 8  # nested walks of new callees; deeper ones are queued
_MAX_CONTEXTS = 6  # argument-kind contexts of one library function before they are merged


@dataclass(frozen=True)
class FuncRef:
    module: ModuleInfo
    cls: Optional[ClassInfo]
    defn: Def

    @property
    def node(self) -> cst.FunctionDef:
        return self.defn.node

    def parse(self) -> cst.FunctionDef:
        """Parse the definition now (SourceError if libcst cannot), rather than on first use."""
        return self.defn.node

    @property
    def key(self) -> tuple[str, str]:
        return (self.module.path, self.qualname)

    @property
    def qualname(self) -> str:
        return self.defn.qualname

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FuncRef) and self.key == other.key


FuncKey = tuple[str, str]  # (path, qualname)
# a function's state: one per function of the root module, one per tuple of argument kinds elsewhere
StateKey = Union[FuncKey, tuple[FuncKey, frozenset[tuple[str, Kind]]]]
# (module, definition, node, code, end node, message)
RawFinding = tuple[ModuleInfo, Def, cst.CSTNode, str, cst.CSTNode, str]


@dataclass
class FuncState:
    ref: FuncRef
    entry: bool
    params: dict[str, Kind]
    ret: Kind = EMPTY
    visits: int = 0
    callers: set[StateKey] = field(default_factory=set)
    found: dict[tuple[int, str], tuple[cst.CSTNode, str, str, cst.CSTNode]] = field(default_factory=dict)
    returns: list[tuple[cst.Return, Kind]] = field(default_factory=list)
    envs: dict[int, tuple[Env, list[Optional[Env]]]] = field(default_factory=dict)
    operand_kinds: dict[int, Kind] = field(default_factory=dict)
    callees: set[StateKey] = field(default_factory=set)  # state keys this function's walks called
    test_kinds: dict[int, Kind] = field(default_factory=dict)  # id(tested expression or ternary arm) -> its kind
    provisional: bool = False  # the last walk used a stand-in for a callee with no result yet


@dataclass
class Settings:
    target: str = "trace"
    entry_points: tuple[str, ...] = ("forward",)


def default_params(
    fn: cst.FunctionDef, is_method: bool, names: Optional[Names] = None, top: bool = False, cls: Optional[str] = None
) -> dict[str, Kind]:
    """Kinds of parameters no caller passes. For a top-level entry point (`top`: a `forward` no caller in
    the tree reaches, so the tracer calls it): a parameter without a default is an example input, a
    tensor; one defaulting to `None` is a tensor when the body uses it as only a tensor can be used, and
    opaque otherwise (a flag, a cache, a tensor handed on). An annotation decides where it is known."""
    out: dict[str, Kind] = {}
    params = all_params(fn.params)
    uses: Optional[set[str]] = None
    instance = cls is not None and not any(
        dotted(d.decorator) in ("staticmethod", "classmethod") for d in fn.decorators
    )
    for i, p in enumerate(params):
        name = p.name.value
        if is_method and i == 0 and not fn.params.posonly_params or name == "self":
            # the instance, so `self` handed to a helper (`attn.prepare_attention_mask(...)`) keeps its class
            out[name] = mod_kind({cls}) if instance and i == 0 else KP
            continue
        ann = annotation_kind(p.annotation, names)
        if ann is not None:
            out[name] = ann
        elif p.default is None:
            out[name] = KT if top else KU  # a helper's parameter no call maps (`f(*args)`) is unknown
        elif isinstance(p.default, cst.Name) and p.default.value == "None":
            if not top:
                out[name] = KN  # a call that does not pass it passes None
                continue
            if uses is None:
                uses = tensor_uses(fn)
            out[name] = join(KT if name in uses else KU, KN)
        else:
            out[name] = KP
    if isinstance(fn.params.star_arg, cst.Param):
        out[fn.params.star_arg.name.value] = KLT if top else KU
    if fn.params.star_kwarg is not None:
        out[fn.params.star_kwarg.name.value] = KP
    return out


def bind_arguments(
    fn: cst.FunctionDef,
    args: Iterable[Arg],
    is_method: bool,
    defaults: dict[str, Kind],
    names: Optional[Names] = None,
) -> dict[str, Kind]:
    """The kinds of fn's parameters for a call passing `args` ((keyword, star, kind) each): positions map
    until a `*args` (then only keywords do), a `**kwargs` may fill any parameter not passed by name, and
    parameters not passed keep their defaults' kinds. An annotation is a hint: the value actually passed
    wins, unless nothing is known of it. One binding for calls into reached code and into functions
    defined in a body (Walker.call_nested)."""
    params = all_params(fn.params)
    pnames = [p.name.value for p in params]
    if is_method and pnames and pnames[0] in ("self", "cls"):
        pnames = pnames[1:]
    incoming: dict[str, Kind] = {}
    positional = True  # until a `*args`: then positions are unknown (keywords still map)
    spread = False  # a `**kwargs` may fill any parameter not passed by name
    spread_dicts: list[Kind] = []
    extra: dict[str, Kind] = {}  # keywords no parameter names: the callee's `**kwargs` holds them
    named = set(pnames) | {p.name.value for p in fn.params.kwonly_params}
    i = 0
    for kw, star, k in args:
        if star == "*":
            positional = False
        elif star:
            spread = True
            spread_dicts.append(k)
        elif kw is None:
            if positional and i < len(pnames):
                incoming[pnames[i]] = k
            i += 1
        elif kw in named:
            incoming[kw] = k
        else:
            extra[kw] = k
    base = dict(defaults)
    star_kwarg = fn.params.star_kwarg
    if isinstance(star_kwarg, cst.Param) and extra:
        # `helper(x, mask=mask)` into `def helper(x, **kwargs)`: `kwargs["mask"]`, `kwargs.get("mask")`
        base[star_kwarg.name.value] = join(keyed(extra.items()), defaults.get(star_kwarg.name.value, KP))
    # `layer(x, **kwargs)` where kwargs holds keywords a call passed by name (`layer(x, mask=m)` into a
    # `def f(x, **kwargs)`): the parameter they name is that value (other keys may be there too, but not
    # that one again)
    spelled = keyed_ways(spread_dicts[0]) if len(spread_dicts) == 1 else []
    for p in params:
        n = p.name.value
        if n in incoming:
            k = incoming[n]
            ann = annotation_kind(p.annotation, names) if k <= {P, U} else None
            base[n] = ann if ann is not None else k
        elif spelled and all(n in d for d in spelled):
            base[n] = join(*(d[n] for d in spelled))
        elif spread or not positional:
            ann = annotation_kind(p.annotation, names)
            base[n] = join(base.get(n, EMPTY), ann if ann is not None else KU)
    return base


class Analysis:
    """One root file's analysis: its entry points and everything they reach, to a fixpoint."""

    def __init__(self, project: Project, settings: Settings):
        self.project = project
        self.root: Optional[ModuleInfo] = None
        self._depth = 0
        self._pending = False  # the walk under way used a stand-in for a callee with no result yet
        self.settings = settings
        self.states: dict[StateKey, FuncState] = {}
        self.queue: deque[StateKey] = deque()
        self._class_refs: dict[str, Optional[ClassInfo]] = {}
        self._name_kinds: dict[tuple[str, str], Optional[Kind]] = {}
        self._attr_kinds: dict[tuple[str, str], Kind] = {}
        self._getters: dict[tuple[str, str], Optional[FuncRef]] = {}  # (class, name) -> its @property getter
        self._class_cache: dict[str, bool] = {}
        self._walking: list[StateKey] = []  # state keys being walked (the innermost is the caller of a call)
        # library function key -> contexts created (keyed by a state key's head: a context's function)
        self._contexts: dict[Union[str, FuncKey], int] = {}
        self._defaults: dict[FuncKey, dict[str, Kind]] = {}  # parameters' kinds when a call does not pass them

    # ------------------------------------------------------------------ entry points
    def entry_points(self, mod: ModuleInfo) -> list[FuncRef]:
        out: list[FuncRef] = []
        for ci in mod.classes.values():
            # a class without its own entry-point method has nothing to analyze: skip resolving its bases
            # (which may parse other files)
            fns = [ci.methods[name] for name in self.settings.entry_points if name in ci.methods]
            if fns and self.project.is_module_class(ci):
                out.extend(FuncRef(mod, ci, fn) for fn in fns)
        return out

    def run(self, mod: ModuleInfo) -> None:
        """Raises SourceError when libcst cannot parse one of the root's reached functions.

        Entry points of classes that another class of the module names are not seeded first: their
        parameters take what the parent's `self.layer(...)` call hands them. Those no class builds
        (named only by an `isinstance` or a docstring) come next, then the rest: whatever no caller
        reached is analysed as a top-level model, called by the tracer."""
        self.root = mod
        entries = self.entry_points(mod)
        named, built = self.submodule_classes(mod)
        tier = {
            ref.key: 2 if ref.cls.qualname in built else 1 if ref.cls.qualname in named else 0  # type: ignore[union-attr]  # libcst's unions / an invariant mypy cannot see
            for ref in entries
        }
        for level in (0, 1, 2):
            for ref in entries:
                if tier[ref.key] != level or ref.key in self.states:
                    continue
                self.states[ref.key] = FuncState(
                    ref,
                    True,
                    default_params(ref.node, True, self.names(ref), top=True, cls=ref.cls.qualname),  # type: ignore[union-attr]  # entry points are methods
                )
                self.queue.append(ref.key)
            while self.queue:
                self._visit(self.queue.popleft())
        for ref in entries:
            self.states[ref.key].entry = True
        self._store_summaries()

    # ------------------------------------------------------------------ library summaries
    # A function outside the root module is analysed once per tuple of argument kinds (its context), so
    # its converged result depends on nothing but those kinds: it is kept for the process's later roots,
    # which install it (and what it called) instead of walking again (the masking and attention helpers
    # every model reaches).
    def _store_summaries(self) -> None:
        store = self.project.summaries
        for key, st in self.states.items():
            if (
                isinstance(key[1], frozenset)
                and key not in store
                and not st.provisional
                and all(isinstance(c[1], frozenset) for c in st.callees)
            ):
                store[key] = st

    def _installable(self, key: StateKey, seen: set[StateKey]) -> bool:
        """A summary, and every summary it called, exist, and installing them keeps each function within
        _MAX_CONTEXTS for this root (the walk they stand for would have stayed within it too)."""
        if key in self.states or key in seen:
            return True
        snap = self.project.summaries.get(key)
        if snap is None:
            return False
        seen.add(key)
        if self._contexts.get(key[0], 0) + sum(1 for k in seen if k[0] == key[0]) > _MAX_CONTEXTS:
            return False
        return all(self._installable(c, seen) for c in snap.callees)

    def _install(self, key: StateKey) -> None:
        if key in self.states:
            return
        snap = self.project.summaries[key]
        self._contexts[key[0]] = self._contexts.get(key[0], 0) + 1
        if snap.ref.module.path in self.project.loaded:
            # this root depends on that file as surely as if it had walked it (the cache's and fix's deps)
            self.project.touched.add(snap.ref.module.path)
        self.states[key] = FuncState(
            snap.ref,
            False,
            snap.params,
            snap.ret,
            snap.visits,
            set(),
            snap.found,
            snap.returns,
            snap.envs,
            snap.operand_kinds,
            snap.callees,
            snap.test_kinds,
        )
        for c in snap.callees:
            self._install(c)

    def submodule_classes(self, mod: ModuleInfo) -> tuple[set[str], set[str]]:
        """Qualified names of mod's classes named in the body of another class of mod (`SwinStage(...,
        downsample=SwinPatchMerging)`), and of those called there (`self.layer = Layer(config)`), built by
        it. Only the order of analysis depends on it (a class no caller reaches is analysed as a top-level
        model all the same, after the others), so a name in a docstring costs nothing; one regex over the
        classes' text."""
        if len(mod.classes) < 2:
            return set(), set()
        pattern = re.compile(r"\b(" + "|".join(map(re.escape, mod.classes)) + r")\b(\s*\()?")
        named, built = set(), set()
        for ci in mod.classes.values():
            for m in pattern.finditer(mod.segment(ci.node.lineno, ci.node.end_lineno)):  # type: ignore[arg-type]  # libcst's unions / an invariant mypy cannot see
                if m.group(1) != ci.name:
                    q = mod.classes[m.group(1)].qualname
                    named.add(q)
                    if m.group(2):
                        built.add(q)
        return named, built

    def _visit(self, key: StateKey) -> None:
        st = self.states[key]
        if st.visits >= _MAX_VISITS:
            return
        st.visits += 1
        walker = Walker(self, st.ref, st.params, self.settings.target)
        self._walking.append(key)
        outer, self._pending = self._pending, False
        try:
            ret = walker.run()
        finally:
            self._walking.pop()
            provisional, self._pending = self._pending, outer
        st.found = walker.found
        st.returns = walker.returns
        st.envs = walker.envs
        st.operand_kinds = walker.operand_kinds
        st.test_kinds = walker.test_kinds
        # a walk that saw a callee with no result yet (queued, or recursive) computed with a stand-in for it: its
        # result replaces the last provisional one instead of joining it, so what a function returns never
        # depends on the order its callees happened to be walked in (nor, through summaries, on the roots
        # before it)
        new = ret if st.provisional or provisional else join(st.ret, ret)
        st.provisional = provisional
        if new != st.ret:
            st.ret = new
            for caller in st.callers:
                if caller not in self.queue:
                    self.queue.append(caller)

    def states_in(self, mod: ModuleInfo) -> list[FuncState]:
        """The analysed functions defined in mod (the analysis also reaches other files)."""
        return [st for st in self.states.values() if st.ref.module is mod]

    # ------------------------------------------------------------------ reach
    def bind_nested(self, fn: cst.FunctionDef, args: Iterable[Arg], names: "Names") -> dict[str, Kind]:
        """A function defined in a body, called with args: its parameters' kinds (as for any call)."""
        return bind_arguments(fn, args, False, default_params(fn, False, names), names)

    def names(self, ref: FuncRef) -> "Names":
        """How annotations in ref's module resolve (infer.annotation_kind)."""
        return Names(ref.module, self)

    def is_tree_class(self, mod: ModuleInfo, e: cst.BaseExpression) -> bool:
        """Is this name, in mod, a class of the scanned tree that is not a tensor?"""
        q = mod.qualify(e)
        if q is None or q.startswith("torch."):
            return False
        hit = self._class_cache.get(q)
        if hit is None:
            ci = self.project.resolve_class(q)
            hit = self._class_cache[q] = ci is not None and not any(b.endswith("Tensor") for b in ci.bases)
        return hit

    def are_modules(self, ref: FuncRef, classes: Iterable[str]) -> bool:
        """Are instances of these classes nn.Modules (torch.nn's, or a subclass of one in the tree)?"""
        for q in classes:
            if q.startswith("torch.nn."):
                if not q.rsplit(".", 1)[-1][:1].isupper():
                    return False
                continue
            ci = self._module_class(ref, q)
            if ci is None or not self.project.is_module_class(ci):
                return False
        return True

    def dataclass_fields(self, ref: FuncRef, func: cst.BaseExpression) -> Optional[list[str]]:
        """When `func(...)` builds an instance of a `@dataclass` of the scanned tree (a ModelOutput): its
        fields in declaration order (bases first, as `dataclasses.fields` lists them), else None."""
        q = ref.module.qualify(func)
        ci = self._module_class(ref, q) if q is not None else None
        if ci is None or not any(
            (ast_dotted(d.func if isinstance(d, ast.Call) else d) or "").rsplit(".", 1)[-1] == "dataclass"
            for d in ci.node.decorator_list
        ):
            return None
        out: list[str] = []
        for c in reversed(list(self.project.mro(ci))):
            for st in c.node.body:
                if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name) and st.target.id not in out:
                    out.append(st.target.id)
        return out

    def is_tree_name(self, ref: FuncRef, qualname: str) -> bool:
        head = qualname.split(".")[0]
        return head != "torch" and self.project.lookup(qualname) is not None

    def resolve_call(self, ref: FuncRef, func: cst.BaseExpression) -> Union[FuncRef, str, None]:
        """The reached function a call goes to: a FuncRef (parsed), "class" for a constructor, or None."""
        out = self._resolve_call(ref, func)
        if isinstance(out, FuncRef):
            try:
                out.parse()
            except SourceError:
                # like an unparsable helper module: unresolved, except in the file being checked
                if out.module is self.root:
                    raise
                return None
        return out

    def _resolve_call(self, ref: FuncRef, func: cst.BaseExpression) -> Union[FuncRef, str, None]:
        mod = ref.module
        if (
            isinstance(func, cst.Attribute)
            and isinstance(func.value, cst.Name)
            and func.value.value == "self"
            and ref.cls is not None
        ):
            name = func.attr.value
            for c in self.project.mro(ref.cls):
                if name in c.methods:
                    return FuncRef(c.module, c, c.methods[name])
                if name in _self_attrs(c):
                    return None  # an instance attribute (a submodule) shadows the bases' methods
            return None
        if (
            isinstance(func, cst.Attribute)
            and isinstance(func.value, cst.Call)
            and dotted(func.value.func) == "super"
            and ref.cls is not None
        ):
            name = func.attr.value
            for c in islice(self.project.mro(ref.cls), 1, None):
                if name in c.methods:
                    return FuncRef(c.module, c, c.methods[name])
            return None
        if isinstance(func, cst.Name):
            name = func.value
            if name in mod.functions:
                return FuncRef(mod, None, mod.functions[name])
            if name in mod.classes:
                return "class"
        q = mod.qualify(func)
        if q is None or q.startswith("torch."):
            return None
        hit = self.project.lookup(q)
        if hit is None:
            return None
        kind, m, obj = hit
        if kind == "function":
            return FuncRef(m, None, obj)
        if kind == "class":
            return "class"
        return None

    def call(self, caller: FuncRef, callee: FuncRef, args: Iterable[Arg]) -> Kind:
        try:
            callee.parse()
        except SourceError:
            # like an unparsable helper module: unresolved, except in the file being checked
            if callee.module is self.root:
                raise
            return KU
        is_method = callee.cls is not None
        names = self.names(callee)
        defaults = self._defaults.get(callee.key)
        if defaults is None:
            defaults = self._defaults[callee.key] = default_params(
                callee.node, is_method, names, cls=callee.cls.qualname if callee.cls is not None else None
            )
        base = bind_arguments(callee.node, args, is_method, defaults, names)
        key: StateKey = callee.key
        if callee.module is not self.root:
            # a module instance handed to library code that only reads its attributes (`module.scaling` in an
            # attention function) is a plain object there: one context for every calling class, not one each
            used = object_uses(callee.node)
            if is_method:
                used = used | {p.name.value for p in all_params(callee.node.params)[:1]}  # its own `self`
            for n, k in base.items():
                if n not in used and atoms_of(k, "mod"):
                    base[n] = frozenset(a for a in k if not (isinstance(a, tuple) and a[0] == "mod")) | KP
            # library code: one state per argument kinds, up to _MAX_CONTEXTS of them per function. The
            # count is of the contexts this root holds, walked or installed from a summary alike: which
            # summaries an earlier root of the process left must not change this root's result
            ctx = (callee.key, frozenset(base.items()))
            if ctx in self.states:
                key = ctx
            elif self._contexts.get(callee.key, 0) < _MAX_CONTEXTS:
                key = ctx
                if ctx in self.project.summaries and self._installable(ctx, set()):
                    self._install(ctx)
                else:
                    self._contexts[callee.key] = self._contexts.get(callee.key, 0) + 1
        st = self.states.get(key)
        caller_key = self._walking[-1] if self._walking else caller.key
        if caller_key in self.states:
            self.states[caller_key].callees.add(key)
        if st is None:
            st = FuncState(callee, False, base)
            self.states[key] = st
            if self._depth < _MAX_DEPTH:
                # walk a new callee now, so this caller sees its return kind instead of being walked again
                # once it is known (a third fewer walks on transformers)
                self._depth += 1
                try:
                    self._visit(key)
                finally:
                    self._depth -= 1
            else:
                self.queue.append(key)
        elif key == callee.key:
            merged = {n: join(st.params.get(n, EMPTY), k) for n, k in base.items()}
            if merged != st.params:
                st.params = merged
                if key not in self.queue:
                    self.queue.append(key)
        st.callers.add(caller_key)
        if not st.ret or st.provisional:
            self._pending = True  # this caller's walk uses a stand-in: see _visit
        return st.ret if st.ret else KP

    def call_module(
        self, caller: FuncRef, classes: Iterable[str], args: Iterable[Arg], method: Optional[str] = None
    ) -> Kind:
        """Calling an nn.Module instance of one of these classes (its `forward`), or one of its methods
        (`self.layer.method(...)`), with the caller's kinds."""
        out = []
        for q in classes:
            ci = self._module_class(caller, q)
            if ci is not None:
                out.append(self.call_method(caller, ci, method or "forward", args))
            elif method is None and q.startswith("torch.nn.") and q.rsplit(".", 1)[-1] not in _CONTAINERS:
                out.append(KLT if q.rsplit(".", 1)[-1] in api.TUPLE_LAYERS else KT)
            else:
                out.append(KU)
        return join(*out) if out else KU

    def call_method(self, caller: FuncRef, ci: ClassInfo, name: str, args: Iterable[Arg]) -> Kind:
        """A method of a tree class called on one of its instances; its torch.nn base's when not defined
        in the tree (a subclass of nn.Linear without its own forward returns a tensor)."""
        for c in self.project.mro(ci):
            if name in c.methods:
                return self.call(caller, FuncRef(c.module, c, c.methods[name]), args)
        if name == "forward":
            # an object of the tree that is not a module (an attention processor): calling it runs `__call__`
            for c in self.project.mro(ci):
                if "__call__" in c.methods:
                    return self.call(caller, FuncRef(c.module, c, c.methods["__call__"]), args)
        if name == "forward" and any(
            b.startswith("torch.nn.") and b.rsplit(".", 1)[-1] not in _CONTAINERS
            for c in self.project.mro(ci)
            for b in c.bases
        ):
            return KT
        return KU

    def _module_class(self, ref: FuncRef, q: str) -> Optional[ClassInfo]:
        if q.startswith("torch."):
            return None
        local = ref.module.classes.get(q.rsplit(".", 1)[-1]) if q.startswith(ref.module.modname + ".") else None
        if local is not None:
            return local
        if q not in self._class_refs:
            self._class_refs[q] = self.project.resolve_class(q)
        return self._class_refs[q]

    # ------------------------------------------------------------------ module-level values
    def name_kind(self, mod: ModuleInfo, name: str) -> Optional[Kind]:
        """A module-level name used as a value: a function of the tree (`fns`), a registry of them (a dict
        literal of functions, or an instance of a class holding one: its values), else None."""
        key = (mod.path, name)
        if key in self._name_kinds:
            return self._name_kinds[key]
        self._name_kinds[key] = None  # a cycle of aliases resolves to nothing
        out = None
        if name in mod.functions:
            out = fns_kind({FuncRef(mod, None, mod.functions[name])})
        elif name in mod.globals:
            out = self._global_kind(mod, mod.globals[name])
        elif name in mod.imports:
            q = mod.imports[name]
            if not q.startswith(_NOT_TREE):
                head, _, last = q.rpartition(".")
                other = self.project.module(head) if head else None
                if (
                    other is not None
                    and other is not mod
                    and last
                    and (last in other.functions or last in other.globals or last in other.imports)
                ):
                    out = self.name_kind(other, last)
        self._name_kinds[key] = out
        return out

    def _global_kind(self, mod: ModuleInfo, value: ast.expr) -> Optional[Kind]:
        if isinstance(value, ast.Dict):
            return self._registry(mod, value)
        if isinstance(value, (ast.Name, ast.Attribute)):
            d = ast_dotted(value)
            return self.name_kind(mod, d) if d and "." not in d else None
        if isinstance(value, ast.Call):
            d = ast_dotted(value.func)
            ci = self._module_class(FuncRef(mod, None, None), mod.qualify_dotted(d)) if d else None  # type: ignore[arg-type]  # libcst's unions / an invariant mypy cannot see
            if ci is not None:
                # an instance of a class that keeps a class-level dict of functions: a registry
                for c in self.project.mro(ci):
                    for st in c.node.body:
                        v = st.value if isinstance(st, (ast.Assign, ast.AnnAssign)) else None
                        if isinstance(v, ast.Dict):
                            k = self._registry(c.module, v)
                            if k is not None:
                                return k
        return None

    def _registry(self, mod: ModuleInfo, value: ast.Dict) -> Optional[Kind]:
        """A dict literal whose values are functions of the tree: dictof(fns(all of them))."""
        refs, unknown = set(), False  # type: ignore[var-annotated]  # libcst's unions / an invariant mypy cannot see
        for v in value.values:
            d = ast_dotted(v) if v is not None else None
            k = self.name_kind(mod, d) if d and "." not in d else None
            fs = atoms_of(k, "fns") if k else frozenset()
            refs |= fs
            unknown = unknown or not fs
        if not refs:
            return None
        return dictof_kind(join(fns_kind(refs), KU) if unknown else fns_kind(refs))

    def module_attr_kind(self, ref: FuncRef, classes: Iterable[str], name: str) -> Kind:
        """An attribute of a submodule instance: its class's own attribute kinds."""
        out = []
        for q in classes:
            ci = self._module_class(ref, q)
            if ci is None:
                out.append(KT if name in ("weight", "bias") and q.startswith("torch.nn.") else KU)
            else:
                out.append(self._property(ref, ci, name) or self._attr_kind_of_class(ci, name))
        return join(*out) if out else KU

    def _property(self, ref: FuncRef, ci: ClassInfo, name: str) -> Optional[Kind]:
        """`obj.scale` where the class defines `scale` as a `@property` (or `cached_property`): what its
        getter returns, else None."""
        key = (ci.qualname, name)
        if key not in self._getters:
            self._getters[key] = None
            for c in self.project.mro(ci):
                if name in c.methods:
                    node = next(
                        (
                            n
                            for n in c.node.body
                            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name
                        ),
                        None,
                    )
                    if node is not None and any(
                        (ast_dotted(d) or "").rsplit(".", 1)[-1] in ("property", "cached_property")
                        for d in node.decorator_list
                    ):
                        self._getters[key] = FuncRef(c.module, c, c.methods[name])
                    break
                if name in _self_attrs(c):
                    break
        getter = self._getters[key]
        return self.call(ref, getter, []) if getter is not None else None

    def self_attr_kind(self, ref: FuncRef, name: str) -> Kind:
        """Parameters and buffers are tensors, submodules are module instances of their classes; other
        attributes of `self` are Python values. The nearest class in the MRO that assigns the attribute
        decides (a subclass's `__init__` runs last)."""
        if ref.cls is None or name in _MODULE_STATE:
            return KP
        return self._property(ref, ref.cls, name) or self._attr_kind_of_class(ref.cls, name)

    def _attr_kind_of_class(self, ci: ClassInfo, name: str) -> Kind:
        key = (ci.qualname, name)
        kind = self._attr_kinds.get(key)
        if kind is None:
            kind = KP
            for c in self.project.mro(ci):
                attrs = _self_attrs(c)
                if name in attrs:
                    kind = attrs[name]
                    break
                if name in c.methods:  # a method or property
                    break
                if name in ("weight", "bias") and any(_param_layer(b) for b in c.bases):
                    kind = KT  # a subclass of nn.Linear, nn.Conv2d, nn.Embedding...: the layer's parameters
                    break
            self._attr_kinds[key] = kind
        return kind

    # ------------------------------------------------------------------ results
    def raw_findings(self) -> Iterator[RawFinding]:
        for st in self.states.values():
            for node, code, msg, end in st.found.values():
                yield st.ref.module, st.ref.defn, node, code, end, msg
            if st.entry:
                yield from self._return_findings(st)

    def _return_findings(self, st: FuncState) -> Iterator[RawFinding]:
        fn = st.ref.node
        mod = st.ref.module
        rets = st.returns
        may_none = [(r, k) for r, k in rets if N in k]
        values = [(r, k) for r, k in rets if k - {N}]
        from .infer import terminates

        falls_off = isinstance(fn.body, cst.IndentedBlock) and not terminates(fn.body.body)
        # `-> Optional[Tensor]` under TorchScript is a fixed signature: an ONNX Optional output (opset >= 16)
        declared_optional = self.settings.target == "script" and _optional_tensor(fn.returns)
        if (may_none or falls_off) and values and not declared_optional:
            for r, _k in may_none:
                what = "returns `None`" if r.value is None or dotted(r.value) == "None" else "may return `None`"
                yield (
                    mod,
                    st.ref.defn,
                    r,
                    "TS201",
                    r,
                    f"`{fn.name.value}` {what} here and a value elsewhere: ONNX outputs are fixed",
                )
            if falls_off:
                yield (
                    mod,
                    st.ref.defn,
                    fn.name,
                    "TS201",
                    fn.name,
                    f"`{fn.name.value}` can fall off its end (returning `None`) and returns a value elsewhere",
                )
        shapes = []
        for r, k in values:
            s = _structure(k)
            if s is not None:
                shapes.append((r, s))
        if len({s for _, s in shapes}) > 1:
            first = shapes[0][1]
            for r, s in shapes:
                if s != first:
                    yield (
                        mod,
                        st.ref.defn,
                        r,
                        "TS202",
                        r,
                        f"returns {_describe(s)} here but {_describe(first)} elsewhere: ONNX outputs are fixed",
                    )


_PARAM_LAYERS = (
    "Linear",
    "LazyLinear",
    "Bilinear",
    "Conv",
    "LazyConv",
    "Embedding",
    "LayerNorm",
    "GroupNorm",
    "BatchNorm",
    "LazyBatchNorm",
    "InstanceNorm",
    "RMSNorm",
    "PReLU",
)


def _param_layer(base: str) -> bool:
    """A torch.nn layer whose `weight` (and `bias`) are parameters."""
    head, _, last = base.rpartition(".")
    return head in ("torch.nn", "torch.nn.modules") and last.startswith(_PARAM_LAYERS) and "Module" not in last


# attributes every nn.Module has and no model assigns: answered without walking a class's bases
_MODULE_STATE = {"training", "__class__", "__dict__"}


def _optional_tensor(ann: Optional[cst.Annotation]) -> bool:
    e = ann.annotation if ann is not None else None
    return (
        isinstance(e, cst.Subscript)
        and (dotted(e.value) or "").rsplit(".", 1)[-1] == "Optional"
        and len(e.slice) == 1
        and (dotted(e.slice[0].slice.value) or "").rsplit(".", 1)[-1] == "Tensor"  # type: ignore[attr-defined]  # libcst's unions / an invariant mypy cannot see
    )


def _structure(k: Kind) -> Optional[tuple[Any, ...]]:
    atoms = [a for a in k if a != N and not (isinstance(a, tuple) and a[0] in ("dictof", "dkv"))]
    if len(atoms) != 1:
        return None
    a = atoms[0]
    if a == "T":
        return ("tensor",)
    if isinstance(a, tuple) and a[0] == "tup":
        return ("tuple", len(a[1]))
    if isinstance(a, tuple) and a[0] == "dict":
        return ("dict", tuple(sorted(a[1])))
    return None


def _describe(s: tuple[Any, ...]) -> str:
    if s[0] == "tensor":
        return "a tensor"
    if s[0] == "tuple":
        return f"a {s[1]}-tuple"
    return "a dict with keys " + ", ".join(s[1])


class Names:
    """Name resolution for annotations in one module (infer.annotation_kind)."""

    __slots__ = ("module", "analysis")

    def __init__(self, module: ModuleInfo, analysis: "Analysis"):
        self.module, self.analysis = module, analysis

    def is_tree_class(self, e: cst.BaseExpression) -> bool:
        return self.analysis.is_tree_class(self.module, e)


_NOT_TREE = ("torch.", "typing.", "math.", "numpy.", "collections.", "functools.", "dataclasses.")
_CONTAINERS = {"ModuleList", "ModuleDict", "Sequential"}


def _self_attrs(ci: ClassInfo) -> dict[str, Kind]:
    """`self` attributes the class assigns anywhere in its body -> the kind of the values assigned: a
    tensor (parameter, buffer, torch call), a module instance (`Cls(...)`: its class), a container of
    modules (`nn.ModuleList([Cls(...) for ...])`), opaque for other calls, Python otherwise. From the
    class's `ast`: no libcst parse of `__init__`."""
    if ci.self_attrs is not None:
        return ci.self_attrs
    out: dict[str, Kind] = {}
    mod = ci.module
    assign = partial(_assign_self, out, ci)

    # statements only: the assignments that matter are statements, and expressions are most of the nodes
    stack = [ci.node.body]
    while stack:
        for st in stack.pop():
            if isinstance(st, ast.Assign):
                for t in st.targets:
                    assign(t, st.value)
            elif isinstance(st, ast.AnnAssign) and st.value is not None:
                assign(st.target, st.value)
            elif isinstance(st, ast.Expr) and isinstance(st.value, ast.Call):
                name = ast_dotted(st.value.func) or ""
                args = st.value.args
                if (
                    name.endswith(("register_buffer", "register_parameter"))
                    and args
                    and isinstance(args[0], ast.Constant)
                    and isinstance(args[0].value, str)
                ):
                    out[args[0].value] = KT
                elif (
                    name.endswith("add_module")
                    and args
                    and isinstance(args[0], ast.Constant)
                    and isinstance(args[0].value, str)
                    and len(args) > 1
                ):
                    out[args[0].value] = _value_kind(args[1], mod)
            else:
                for extra in ("body", "orelse", "finalbody"):
                    block = getattr(st, extra, None)
                    if isinstance(block, list):
                        stack.append(block)
                for h in getattr(st, "handlers", ()):
                    stack.append(h.body)
                for c in getattr(st, "cases", ()):
                    stack.append(c.body)
    ci.self_attrs = out
    return out


def _assign_self(out: dict[str, Kind], ci: ClassInfo, target: ast.expr, value: Optional[ast.expr]) -> None:
    """`self.<attr> = value` in a class's code: the attribute's kind joins the value's. (Not a closure in
    _self_attrs: a recursive closure is a cycle, which kept a module `fix` dropped alive.)"""
    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
        k = _value_kind(value, ci.module, ci, out) if value is not None else KP
        out[target.attr] = join(out[target.attr], k) if target.attr in out else k
    elif (
        isinstance(target, ast.Subscript)
        and isinstance(target.value, ast.Attribute)
        and isinstance(target.value.value, ast.Name)
        and target.value.value.id == "self"
        and value is not None
    ):
        # `self.layers[key] = Layer()`: a dict of objects the class fills as it runs (a cache of layers). Only
        # objects and functions: `self.buf[i] = t` writes into a tensor, it does not make it a dict
        k = _value_kind(value, ci.module, ci, out)
        if atoms_of(k, "mod") or atoms_of(k, "fns"):
            name = target.value.attr
            out[name] = join(out[name], dictof_kind(k)) if name in out else dictof_kind(k)
    elif isinstance(target, (ast.Tuple, ast.List)):
        for elt in target.elts:  # `a, self.scale = f(...)`: assigned, kind unknown
            _assign_self(out, ci, elt.value if isinstance(elt, ast.Starred) else elt, None)


def _name_values(ci: ClassInfo, name: str) -> list[ast.expr]:
    """What a name of the class's methods may hold: the values assigned to it (`_local_values`), and when it is
    a parameter of a method, the arguments the class's own `self.method(...)` calls pass it (followed the same
    way)."""
    out = _local_values(ci, name, {name})
    for fn in ci.node.body:
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        params = [a.arg for a in fn.args.posonlyargs + fn.args.args][1:]  # after self
        if name not in params and name not in [a.arg for a in fn.args.kwonlyargs]:
            continue
        at = params.index(name) if name in params else None
        for n in ast.walk(ci.node):
            if not (
                isinstance(n, ast.Call)
                and isinstance(n.func, ast.Attribute)
                and n.func.attr == fn.name
                and isinstance(n.func.value, ast.Name)
                and n.func.value.id == "self"
            ):
                continue
            given = [k.value for k in n.keywords if k.arg == name]
            if not given and at is not None and at < len(n.args) and not isinstance(n.args[at], ast.Starred):
                given = [n.args[at]]
            for v in given:
                if isinstance(v, ast.Name):
                    out.extend(_local_values(ci, v.id, {v.id, name}))
                else:
                    out.append(v)
    return out


def _local_values(ci: ClassInfo, name: str, seen: set[str]) -> list[ast.expr]:
    """What a local list of the class's methods holds: appended values, followed through local names."""
    if ci._locals is None:
        # local names of the class's methods -> values given to them (`stage = Stage(...)`,
        # `layers.append(stage)`), for a ModuleList built from a local list: computed when one is met
        local: dict[str, list[ast.expr]] = {}
        for n in ast.walk(ci.node):
            if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
                local.setdefault(n.targets[0].id, []).append(n.value)
            elif (
                isinstance(n, ast.Call)
                and isinstance(n.func, ast.Attribute)
                and n.func.attr == "append"
                and isinstance(n.func.value, ast.Name)
                and len(n.args) == 1
            ):
                local.setdefault(n.func.value.id, []).append(n.args[0])
        ci._locals = local
    out = []
    for v in ci._locals.get(name, ()):
        if isinstance(v, ast.Name) and v.id not in seen:
            seen.add(v.id)
            out.extend(_local_values(ci, v.id, seen))
        elif isinstance(v, ast.List) and not v.elts:
            continue  # `layers = []`
        else:
            out.append(v)
    return out


def _passed_classes(ci: ClassInfo, param: str) -> Optional[Kind]:
    """The module instances a class's `param` builds, from the calls constructing the class in its
    module that pass classes of the module for it (`SwinStage(..., downsample=SwinPatchMerging)`)."""
    init = next((n for n in ci.node.body if isinstance(n, _DEFS) and n.name == "__init__"), None)
    if init is None:
        return None
    names = [a.arg for a in init.args.posonlyargs + init.args.args][1:]
    if param not in names and param not in [a.arg for a in init.args.kwonlyargs]:
        return None
    mod, out = ci.module, []
    for other in mod.classes.values():
        for n in ast.walk(other.node):
            if not (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == ci.name):
                continue
            vals = [kw.value for kw in n.keywords if kw.arg == param]
            if param in names and names.index(param) < len(n.args):
                vals.append(n.args[names.index(param)])
            for v in vals:
                for x in (v.body, v.orelse) if isinstance(v, ast.IfExp) else (v,):
                    if isinstance(x, ast.Name) and x.id in mod.classes:
                        out.append(mod_kind({mod.classes[x.id].qualname}))
                    elif isinstance(x, ast.Constant) and x.value is None:
                        out.append(KN)
                    else:
                        out.append(KU)
    return join(*out) if out else None


def _value_kind(
    e: ast.expr, mod: ModuleInfo, ci: Optional[ClassInfo] = None, attrs: Optional[dict[str, Kind]] = None
) -> Kind:
    """The kind of a value assigned to a `self` attribute, from its `ast` (`attrs`: the attributes the class
    assigned before it)."""
    if isinstance(e, ast.IfExp):
        return join(_value_kind(e.body, mod, ci, attrs), _value_kind(e.orelse, mod, ci, attrs))
    if isinstance(e, ast.Constant):
        return KN if e.value is None else KP
    if isinstance(e, (ast.List, ast.Tuple)) and e.elts and not any(isinstance(x, ast.Starred) for x in e.elts):
        # a Python list of the model (`self.scales = [1.0, 2.0]`): indexing it with a tensor freezes
        return (
            tup(_value_kind(x, mod, ci, attrs) for x in e.elts)
            if len(e.elts) <= 8
            else iterable(join(*(_value_kind(x, mod, ci, attrs) for x in e.elts)))
        )
    if isinstance(e, ast.Name) and e.id in mod.functions:
        # a function of the module held by the model (`self.kernel_fn = kernel`): calling it calls it
        return fns_kind({FuncRef(mod, None, mod.functions[e.id])})
    if isinstance(e, ast.Name) and ci is not None:
        # `self.processor = processor` in `set_processor(self, processor)`, called as
        # `self.set_processor(AttnProcessor())`: the objects or functions the class hands it
        held = join(*(_value_kind(v, mod, None) for v in _name_values(ci, e.id)))
        return held if atoms_of(held, "mod") or atoms_of(held, "fns") else KP
    if (
        isinstance(e, ast.Attribute)
        and isinstance(e.value, ast.Name)
        and e.value.id == "self"
        and attrs is not None
        and atoms_of(attrs.get(e.attr, EMPTY), "fns")
    ):
        return attrs[e.attr]
    if not isinstance(e, ast.Call):
        return KP
    d = ast_dotted(e.func)
    if d is None:
        return KU  # `ACT2FN[cfg.act]()`, `REGISTRY[name](cfg)`: built from a config string
    if d.startswith("self."):
        # `self.classifier = self.classifier.to(dtype)`: the same module, moved; another method's result
        # is unknown
        parts = d.split(".")
        if len(parts) == 3 and parts[2] in api.MODULE_CASTS:
            return attrs.get(parts[1], KU) if attrs is not None else KU
        return KU
    q = mod.qualify_dotted(d)
    last = q.rsplit(".", 1)[-1]
    if q == "functools.partial" and e.args and not isinstance(e.args[0], ast.Starred):
        bound: list[Arg] = [
            (None, "*", KU) if isinstance(a, ast.Starred) else (None, "", _value_kind(a, mod, ci, attrs))
            for a in e.args[1:]
        ]
        bound += [(k.arg, "" if k.arg else "**", _value_kind(k.value, mod, ci, attrs)) for k in e.keywords]
        wrapped = partial_of(_value_kind(e.args[0], mod, ci, attrs), bound)
        if wrapped is not None:
            return wrapped
    if last == "Parameter" or last == "Buffer" and q.startswith("torch."):
        return KT  # `nn.Parameter(t)`, `nn.Buffer(t)` (torch >= 2.5): a tensor the module holds, not a submodule
    if q.startswith("torch.nn.") and last in ("ParameterList", "ParameterDict"):
        return KLT if last == "ParameterList" else dictof_kind(KT)
    if q.startswith("torch.nn.") and last in _CONTAINERS:
        classes: set[str] = set()
        known = True
        for a in e.args:
            elts = (
                a.elts
                if isinstance(a, (ast.List, ast.Tuple))
                else [a.elt]
                if isinstance(a, (ast.ListComp, ast.GeneratorExp))
                else [v for v in a.values]
                if isinstance(a, ast.Dict)
                else [a.value.elt]
                if isinstance(a, ast.Starred) and isinstance(a.value, ast.ListComp)
                else [a]
            )
            if len(elts) == 1 and isinstance(elts[0], ast.Name) and ci is not None:
                elts = _local_values(ci, elts[0].id, set())
            for el in elts:
                k = _value_kind(el, mod, ci)
                cs = atoms_of(k, "mod")
                classes |= cs
                known = known and bool(cs)
        if last == "Sequential":
            return mod_kind({q}) if known and all(c.startswith("torch.nn.") for c in classes) else KU
        held = mods_kind(classes) if known and classes else frozenset({("mods", frozenset())})
        # a ModuleDict is looked up by key (a tensor key is a KeyError, not a frozen index), iterated by key
        return dictof_kind(mod_kind(classes) if known and classes else KU) if last == "ModuleDict" else held
    if (
        q.startswith("torch.nn.")
        and not q.startswith(("torch.nn.functional.", "torch.nn.init."))
        and last[:1].isupper()
    ):
        return mod_kind({q})
    if (
        q.startswith("torch.")
        and not q.startswith(("torch.nn.", "torch.jit", "torch.device"))
        and not last[:1].isupper()
    ):
        return KT
    if q.startswith("torch."):
        return KP
    if "." not in d and d not in mod.classes and d not in mod.imports and d not in mod.functions:
        passed = _passed_classes(ci, d) if ci is not None else None
        if passed is not None:
            return passed  # `self.downsample = downsample(...)`: the class its builders pass
        return KP  # a builtin: int(...), getattr(config, ...)
    # a class of the tree (resolved when called), a factory function, another library: what it builds
    return mod_kind({q})


# ---------------------------------------------------------------------- positions and noqa
_FIXABLE = {code for code, rule in RULES.items() if rule.forms}
_NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Za-z0-9]+(?:[\s,]+[A-Za-z0-9]+)*))?", re.IGNORECASE)


Computed = dict[cst.CSTNode, tuple[int, int, int, int]]  # node -> (line, column, end line, end column)


class _Recorder:
    """`with state.record_syntactic_position(node)` without a generator per node."""

    __slots__ = ("state", "node", "start_node", "end_node", "start")

    def __init__(
        self,
        state: _PositionState,
        node: cst.CSTNode,
        start_node: Optional[cst.CSTNode],
        end_node: Optional[cst.CSTNode],
    ):
        self.state, self.node, self.start_node, self.end_node = state, node, start_node, end_node

    def __enter__(self) -> None:
        self.start = (self.state.line, self.state.column)

    def __exit__(self, exc_type: Optional[type[BaseException]], *exc: object) -> Literal[False]:
        if exc_type is not None:  # the pass stopped early (_Done): this node's end was never reached
            return False
        st = self.state
        comp = st.computed
        start = comp[self.start_node][:2] if self.start_node is not None else self.start
        end = comp[self.end_node][2:] if self.end_node is not None else (st.line, st.column)
        comp[self.node] = (*start, *end)
        return False


class _PositionState(CodegenState):
    """libcst's PositionProvider semantics (syntactic ranges, whitespace-inclusive where a node records
    none) from one codegen pass, storing tuples: the provider's per-node objects and generator-based
    context managers were most of a repository-wide check's time."""

    def __init__(self, module: cst.Module):
        super().__init__(default_indent=module.default_indent, default_newline=module.default_newline)
        self.line, self.column = 1, 0
        self.computed: Computed = {}
        self._stack: list[tuple[int, int]] = []
        self.wanted: frozenset[cst.CSTNode] | set[cst.CSTNode] = frozenset()
        self.remaining = -1

    def add_indent_tokens(self) -> None:
        for token in self.indent_tokens:
            self.add_token(token)

    def add_token(self, value: str) -> None:
        self.tokens.append(value)
        if "\n" in value or "\r" in value:
            segments = NEWLINE.split(value)
            self.line += len(segments) - 1
            self.column = len(segments[-1])
        else:
            self.column += len(value)

    def before_codegen(self, node: cst.CSTNode) -> None:
        self._stack.append((self.line, self.column))

    def after_codegen(self, node: cst.CSTNode) -> None:
        start = self._stack.pop()
        if node not in self.computed:
            self.computed[node] = (*start, self.line, self.column)
        if node in self.wanted:
            self.remaining -= 1
            if not self.remaining:
                raise _Done  # the rest of the definition holds no reported node

    def record_syntactic_position(  # type: ignore[override]  # a context manager object, not a generator's
        self,
        node: cst.CSTNode,
        *,
        start_node: Optional[cst.CSTNode] = None,
        end_node: Optional[cst.CSTNode] = None,
    ) -> _Recorder:
        return _Recorder(self, node, start_node, end_node)


class Positions:
    """node -> CodeRange (1-based lines, 0-based columns, as libcst's PositionProvider)."""

    def __init__(self, computed: Computed):
        self._c = computed

    def get(self, node: cst.CSTNode, default: Optional[CodeRange] = None) -> Optional[CodeRange]:
        t = self._c.get(node)
        return default if t is None else CodeRange(CodePosition(t[0], t[1]), CodePosition(t[2], t[3]))

    def __getitem__(self, node: cst.CSTNode) -> CodeRange:
        r = self.get(node)
        if r is None:
            raise KeyError(node)
        return r


class _Done(Exception):
    pass


def position_def(d: Def, computed: Computed, wanted: Optional[set[cst.CSTNode]] = None) -> None:
    """Add the positions of one parsed definition's nodes, at the definition's lines in its file: one
    codegen pass over the definition instead of over the module, stopped once the `wanted` nodes (when
    given) have theirs."""
    node = d.node
    state = _PositionState(d.tree)  # type: ignore[arg-type]  # libcst's unions / an invariant mypy cannot see
    state.computed = computed
    if wanted:
        state.wanted, state.remaining = wanted, len(wanted)
    if d.tree is d.module.tree:
        # a node of the whole module: its leading lines come first; the class's indentation
        state.line = (
            d.start - len(node.leading_lines) - (len(node.decorators[0].leading_lines) if node.decorators else 0)
        )
    else:
        state.line = d.start  # parsed from the definition's own first line: no leading lines
    indent = d.indent
    state.indent_tokens = [indent] if indent else []
    try:
        node._codegen(state)
    except _Done:
        pass


def positions(tree: cst.Module) -> Positions:
    """Code ranges of every node from one codegen pass (no MetadataWrapper copy, no metadata objects)."""
    state = _PositionState(tree)
    tree._codegen(state)
    return Positions(state.computed)


def suppressed(line_text: str, code: str) -> bool:
    m = _NOQA.search(line_text)
    if not m:
        return False
    codes = m.group("codes")
    if not codes:
        return True
    wanted = [c.upper() for c in re.split(r"[\s,]+", codes) if c]
    return any(code.startswith(w) for w in wanted)


_FILE_NOQA = re.compile(
    r"^[ \t]*#[ \t]*tracesafe:[ \t]*noqa(?::[ \t]*(?P<codes>[A-Za-z0-9]+(?:[ \t,]+[A-Za-z0-9]+)*))?"
    r"[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)


def file_noqa(text: str) -> Optional[list[str]]:
    """A file-level `# tracesafe: noqa` (on a line of its own, as ruff's `# ruff: noqa`): None when absent,
    [] for every code, else the codes or prefixes it names (several such lines add up)."""
    if "tracesafe:" not in text:
        return None
    found = None
    for m in _FILE_NOQA.finditer(text):
        codes = m.group("codes")
        if codes is None:
            return []
        found = (found or []) + [c.upper() for c in re.split(r"[\s,]+", codes) if c]
    return found


def to_findings(
    raw: Iterable[RawFinding],
    target: str,
    fixes: Optional[dict[int, Any]] = None,
    only: Optional[AbstractSet[str]] = None,
    fixes_for: Optional[ModuleInfo] = None,
) -> list[Finding]:
    """Turn (module, definition, node, code, end, message) into positioned, de-duplicated, unsuppressed
    Findings; with `only` (canonical paths), just for those files. `fixes` (node id -> fix field) were
    planned for the module `fixes_for`: a helper module's copy of the same text may share its nodes.
    Positions come from a codegen pass over each reported definition, up to its last reported node."""
    items = [r for r in raw if target in RULES[r[3]].targets and (only is None or canonical(r[0].path) in only)]
    by_def: dict[int, tuple[Def, set[cst.CSTNode]]] = {}
    for mod, d, node, _code, end, _msg in items:
        if node not in mod.computed or end not in mod.computed:
            by_def.setdefault(id(d), (d, set()))[1].update((node, end))
    for d, wanted in by_def.values():
        position_def(d, d.module.computed, wanted)
    out: set[Finding] = set()
    whole: dict[int, Optional[list[str]]] = {}  # id(module) -> its file-level noqa
    for mod, d, node, code, end, msg in items:
        rng, erng = mod.computed.get(node), mod.computed.get(end)
        if rng is None or erng is None:
            continue
        if id(mod) not in whole:
            whole[id(mod)] = file_noqa(mod.text)
        skip = whole[id(mod)]
        if skip is not None and (not skip or any(code.startswith(c) for c in skip)):
            continue
        if suppressed(mod.line_text(rng[0]), code):
            continue
        out.add(
            Finding(
                mod.path,
                rng[0],
                rng[1] + 1,
                erng[2],
                erng[3] + 1,
                code,
                msg,
                d.qualname,
                (fixes or {}).get(id(node)) if code in _FIXABLE and mod is fixes_for else None,
            )
        )
    # one finding per place and rule: a library function analysed in several contexts may word it twice
    seen, unique = set(), []
    for f in sorted(out, key=lambda f: (f.sort_key(), f.message)):
        place = (f.path, f.line, f.column, f.code)
        if place not in seen:
            seen.add(place)
            unique.append(f)
    return unique
