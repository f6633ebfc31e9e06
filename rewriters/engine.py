"""The fix engine: rules report, forms plan, and the engine applies every plan of a file in one pass."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Iterator, Optional, Sequence

import libcst as cst

from tracesafe.analyzer.api import analyze_source
from tracesafe.analyzer.config import Config
from tracesafe.analyzer.engine import Analysis, FuncState, position_def
from tracesafe.analyzer.kinds import EMPTY, D
from tracesafe.analyzer.project import ClassInfo, ModuleInfo, Project, SourceError, parse_source
from tracesafe.analyzer.rules import RULES

from . import FORMS, cond, flag, guard, optional, sizes, where
from .common import BLOCKS, Import, Plan, child_nodes, ensure_imports

# the export target each form serves: after a fix, `check --target <it>` has nothing the form could fix
FORM_TARGET = {"flag": "script", "optional": "script", "where": "trace", "cond": "dynamo"}


@dataclass
class FixResult:
    source: str
    applied: list[Plan] = field(default_factory=list)
    skipped_unsafe: list[Plan] = field(default_factory=list)
    refused: list[Plan] = field(default_factory=list)
    # (Analysis, ModuleInfo) of the last planning pass: the fixed text, analysed in its tree
    final: Optional[tuple[Analysis, ModuleInfo]] = field(default=None, repr=False)

    @property
    def changed_signatures(self) -> list[str]:
        return sorted({p.changed_signature for p in self.applied if p.changed_signature})


# a finding as the analysis holds it: (node, code, message, end node)
Found = tuple[cst.CSTNode, str, str, cst.CSTNode]


def plan_analysis(an: Analysis, mod: ModuleInfo, form: str) -> list[Plan]:
    """Plans for every finding of `mod` the form addresses (refusals included, with their reason)."""
    plans: list[Plan] = []
    for st in an.states_in(mod):
        for p in _state_plans(an, st, mod, form):
            p.defn = st.ref.defn
            plans.append(p)
    return plans


def _builders(ci: ClassInfo) -> list[str]:
    """The module's other classes that build `ci` (`self.up = nn.Sequential(..., PixelShuffleND(3))`): its
    forward is then a submodule's, whatever the analysis could follow of the call."""
    import ast

    out = []
    for other in ci.module.classes.values():
        if other is ci:
            continue
        for n in ast.walk(other.node):
            if isinstance(n, ast.Call) and (isinstance(n.func, ast.Name) and n.func.id == ci.name):
                out.append(other.name)
                break
    return sorted(out)


def _state_plans(an: Analysis, st: FuncState, mod: ModuleInfo, form: str) -> list[Plan]:
    plans: list[Plan] = []
    fn, qualify = st.ref.node, mod.qualify
    returned = list(an._return_findings(st)) if st.entry else []
    none_returns = [node for (_m, _f, node, code, _e, _msg) in returned if code == "TS201"]
    # return findings no form rewrites (inconsistent structure) still get their reason
    other_returns = [(node, code, msg, end) for (_m, _f, node, code, end, msg) in returned if code == "TS202"]
    if form in ("flag", "optional"):
        callers = sorted({an.states[c].ref.qualname for c in st.callers if c in an.states})
        if none_returns and form == "flag" and not callers and st.ref.cls is not None:
            callers = [f"{b}.__init__" for b in _builders(st.ref.cls)]
        if none_returns and form == "flag" and callers:
            # a submodule's forward: its caller would receive (value, flag) where it expects the value
            plans.append(
                Plan(
                    form,
                    {"TS201"},
                    none_returns,
                    reason=f"a submodule (`{callers[0]}` uses it): its caller "
                    f"would receive `(value, flag)`; fix the model it "
                    f"is part of",
                )
            )
        elif none_returns and form == "flag":
            plans.append(flag.plan_flag(fn, st.ref.qualname, st.returns, none_returns, qualify))
        elif none_returns:
            plans.append(optional.plan_optional(fn, st.ref.qualname, st.returns, none_returns))
        return plans + _unaddressed_plans(form, plans, list(st.found.values()) + other_returns)
    if none_returns:
        plans.append(Plan(form, {"TS201"}, none_returns, reason="a `None` output: use the flag or optional form"))
    found = []
    for f in st.found.values():
        if _tests_an_item(f[0], st):
            plans.append(Plan(form, {f[1]}, [f[0]], reason=_ITEM_REASON))
        else:
            found.append(f)
    if form == "where":
        parents = _parents(fn) if any(code == "TS103" for _n, code, _m, _e in found) else {}
        names = cond.Names(fn)  # walks the function the first time a plan asks what it reads
        for node, code, _msg, _end in found:
            if code == "TS103" and isinstance(node, cst.IfExp):
                plans.append(where.plan_ternary(node, qualify, st.test_kinds, parents))
            elif code == "TS102":
                plans.append(Plan(form, {code}, [node], reason="a `while` loop: `where` has no loop (use `cond`)"))
            elif guard.applies(node, code):
                plans.append(guard.plan_guard(form, code, node))
            elif code in ("TS101", "TS108") and isinstance(node, cst.If):
                if code == "TS108":
                    plans.append(Plan(form, {code}, [node], reason="a size test needs the `cond` form"))
                    continue
                # names bound on the paths reaching the `if`, from the flow-sensitive analysis
                before = st.envs[id(node)][0] if id(node) in st.envs else {}
                plans.append(
                    _Deferred(
                        form,
                        code,
                        node,
                        partial(
                            where.plan_if,
                            defined=set(before),
                            qualify=qualify,
                            kinds=st.test_kinds,
                            env_before=before,
                            names=names,
                        ),
                    )
                )
    elif form == "cond" and found:
        names = cond.Names(fn)  # a walk of the whole function: only where there is something to plan
        ret_kinds = {id(r): k for r, k in st.returns}
        lines = None  # small statement -> its line, for an `assert` (made when one is met)
        for node, code, _msg, _end in found:
            if code == "TS103" and isinstance(node, cst.IfExp):
                plans.append(Plan(form, {code}, [node], reason="a conditional expression: use the `where` form"))
            elif guard.applies(node, code):
                if isinstance(node, cst.Assert) and lines is None:
                    lines = {
                        id(sm): s
                        for stmts in _statement_lists(fn)
                        for s in stmts
                        if isinstance(s, cst.SimpleStatementLine)
                        for sm in s.body
                    }
                plans.append(
                    guard.plan_guard(
                        form, code, node, (lines or {}).get(id(node)), {**st.test_kinds, **st.operand_kinds}, qualify
                    )
                )
            elif code in ("TS101", "TS108") and isinstance(node, cst.If) and id(node) in st.envs:
                plans.append(
                    _Deferred(
                        form,
                        code,
                        node,
                        partial(
                            cond.plan_if,
                            fn=fn,
                            envs=st.envs[id(node)],
                            ret_kinds=ret_kinds,
                            names=names,
                            qualify=qualify,
                            code=code,
                            operand_kinds=st.operand_kinds,
                        ),
                    )
                )
            elif code == "TS102" and isinstance(node, cst.While) and id(node) in st.envs:
                plans.append(cond.plan_while(node, fn, st.envs[id(node)], names, qualify))
            elif code == "TS106" and isinstance(node, cst.Call):
                p = sizes.plan_div(node, st.test_kinds, qualify) or sizes.plan_tensor_of_range(node, qualify)
                if p is not None:
                    plans.append(p)
    return plans + _unaddressed_plans(form, plans, found + other_returns)


_ITEM_REASON = (
    "it tests a number read with `.item()`: torch.cond needs a bool tensor or a SymBool, and `flag != 0` on a "
    "SymBool is a Python constant (a branch torch.export silently specialises); test the tensor instead "
    "(`t.any()`, not `t.any().item()`)"
)


def _tests_an_item(node: cst.CSTNode, st: FuncState) -> bool:
    """Does the condition of this flagged statement test a number read with `.item()` (kind D)?"""
    test = getattr(node, "test", None)
    if not isinstance(test, cst.BaseExpression):
        return False
    stack: list[cst.CSTNode] = [test]
    while stack:
        e = stack.pop()
        if D in st.test_kinds.get(id(e), EMPTY) or D in st.operand_kinds.get(id(e), EMPTY):
            return True
        stack.extend(child_nodes(e))
    return False


def _unaddressed_plans(form: str, plans: list[Plan], found: list[Found]) -> list[Plan]:
    """Every finding the form's exporter still counts gets a reason, the ones no rewrite addresses too."""
    target = FORM_TARGET[form]
    planned = {(id(n), c) for p in plans for n in p.nodes for c in p.codes}
    out = []
    for node, code, _msg, _end in found:
        if (id(node), code) not in planned and target in RULES[code].targets:
            out.append(Plan(form, {code}, [node], reason=unaddressed(form, code, node)))
            planned.add((id(node), code))
    return out


def unaddressed(form: str, code: str, node: cst.CSTNode) -> str:
    """Why a finding no rewrite of the form addresses is left, and what to do instead."""
    exporter = "torch.export" if form == "cond" else "the tracer"
    if code == "TS106":
        what = "cannot guard on it" if form == "cond" else "records the example's value"
        return (
            f"a conversion to a Python value: {exporter} {what}; keep it a tensor "
            f"(or, for torch.export, declare a size with torch._check_is_size)"
        )
    if code == "TS107":
        return "iterating a tensor: the number of steps is the example's; vectorise it (or use torch.scan)"
    if code == "TS104":
        return "`and`/`or`/`not`/`bool()` on a tensor outside a test: use torch.logical_and/logical_or/logical_not"
    if code == "TS108" and (
        isinstance(node, (cst.For, cst.While, cst.CompFor, cst.BinaryOperation))
        or isinstance(node, cst.Call)
        and isinstance(node.func, cst.Name)
        and node.func.value == "range"
    ):
        return (
            f"a Python loop or list over a traced length: {exporter} unrolls it for the example's length; "
            f"vectorise it (torch.arange, broadcasting; or torch.scan / torch.while_loop for a recurrence)"
        )
    if code == "TS108":
        return f"a traced size used as a Python value: {exporter} fixes it to the example's length"
    if code == "TS202":
        return "return paths of different structure: no form rewrites them (return one structure on every path)"
    if code == "TS102":
        return "a `while` on a tensor this form cannot rewrite"
    if code == "TS301":
        return "a construct torch.jit.script rejects: no form rewrites it (see `tracesafe rule TS301`)"
    if code in ("TS101", "TS103", "TS105"):
        return f"a tensor test this form cannot rewrite here ({type(node).__name__})"
    return "no rewrite of this form addresses it"


def _parents(fn: cst.CSTNode) -> dict[cst.CSTNode, cst.CSTNode]:
    """child -> parent for every node of a function."""
    out: dict[cst.CSTNode, cst.CSTNode] = {}
    stack = [fn]
    while stack:
        node = stack.pop()
        for ch in child_nodes(node):
            out[ch] = node
            stack.append(ch)
    return out


def fix_fields(an: Analysis, mod: ModuleInfo, form: str) -> dict[int, Any]:
    """node id -> the JSON `fix` field, for the findings `form` can rewrite (the analyzer's `plan`)."""
    out = {}
    for plan in resolve_plans(plan_analysis(an, mod, form)):
        if plan.ok:
            for n in plan.nodes:
                out[id(n)] = {"form": plan.form, "applicability": plan.applicability}
    return out


def safe_fix_fields(an: Analysis, mod: ModuleInfo, form: str) -> dict[int, Any]:
    """fix_fields, where a planning bug costs the fix fields, never the findings."""
    try:
        return fix_fields(an, mod, form)
    except Exception:  # noqa: BLE001 - the report must survive a rewriter bug
        return {}


class _Deferred(Plan):
    """A plan for a statement that needs its enclosing statement list (it may consume the next
    statement): resolved while the engine walks blocks."""

    def __init__(self, form: str, code: str, node: cst.CSTNode, resolver: Callable[[list[cst.CSTNode], int], Plan]):
        super().__init__(form, {code}, [node])
        self.resolver = resolver

    def resolve(self, stmts: list[cst.CSTNode], i: int) -> Plan:
        return self.resolver(stmts, i)


def resolve_plans(plans: list[Plan]) -> list[Plan]:
    pending = {id(p.nodes[0]): p for p in plans if isinstance(p, _Deferred)}
    if not pending:
        return plans
    resolved: dict[int, Plan] = {}
    holders = {id(p.defn): p.defn.node for p in pending.values()}
    for fn in holders.values():
        for stmts in _statement_lists(fn):
            for i, s in enumerate(stmts):
                if id(s) in pending:
                    r = resolved[id(s)] = pending[id(s)].resolve(list(stmts), i)
                    r.defn = pending[id(s)].defn
    # only an `elif` is an `if` outside a statement list: left unresolved, it would count as applied
    # while changing nothing (and send `fix` round its passes again)
    return [
        resolved.get(id(p.nodes[0]), Plan(p.form, p.codes, p.nodes, reason=ELIF, defn=p.defn))
        if isinstance(p, _Deferred)
        else p
        for p in plans
    ]


def _statement_lists(fn: cst.CSTNode) -> Iterator[Sequence[cst.BaseStatement]]:
    """The body of every indented block under fn (a definition), descending through statements only (a
    libcst visitor would walk every expression too)."""
    if isinstance(fn, cst.IndentedBlock):
        yield fn.body
    for ch in fn.children:  # in source order: branch functions are named top-down
        if isinstance(ch, BLOCKS):
            yield from _statement_lists(ch)


ELIF = "an `elif` branch: rewrite the chain as nested `if` statements first"


def _apply(tree: cst.Module, plans: list[Plan]) -> cst.Module:
    lead: Optional[set[int]]
    targets: set[int]
    single = {id(p.old): p.new for p in plans if not isinstance(p.old, list)}
    multi = {id(p.old[0]): p for p in plans if isinstance(p.old, list)}
    dropped = {id(o) for p in plans if isinstance(p.old, list) for o in p.old[1:]}
    # a transformer rebuilds every node it enters: enter only the blocks and statements that lead to the
    # planned statements; an expression (a ternary) is found by entering the definition holding it whole
    olds = set(single) | set(multi)
    lead, found = _leading_to(tree, olds)
    if found != olds:
        targets = {id(p.defn.node) for p in plans if p.defn is not None}
        lead = _leading_to(tree, targets)[0] if all(p.defn is not None for p in plans) else None
    else:
        targets = set()

    return tree.visit(_Splice(single, multi, dropped, lead, targets))


class _Splice(cst.CSTTransformer):
    """Puts each plan's new code in place of its old nodes (ids of the originals: a transformer sees the
    originals in on_leave), entering only the `lead` nodes, and the `targets` whole (lead None: all).
    A class of the module, not of each call: a class made per call is cyclic garbage that kept every
    rewritten file's plans and old module alive until a full collection."""

    def __init__(
        self,
        single: dict[int, cst.CSTNode],
        multi: dict[int, Plan],
        dropped: set[int],
        lead: Optional[set[int]],
        targets: set[int],
    ):
        super().__init__()
        self.single, self.multi, self.dropped, self.lead, self.targets = single, multi, dropped, lead, targets
        self.inside = 0

    def on_visit(self, node: cst.CSTNode) -> bool:
        if self.lead is None or self.inside:
            return True
        if id(node) in self.targets:
            self.inside += 1
            return True
        return id(node) in self.lead

    def on_leave(  # type: ignore[override]  # returns what replaces the node, of whatever type it is
        self, orig: cst.CSTNode, new: cst.CSTNode
    ) -> cst.CSTNode | cst.FlattenSentinel[cst.CSTNode] | cst.RemovalSentinel:
        if self.lead is not None and id(orig) in self.targets:
            self.inside -= 1
        if id(orig) in self.single:
            return self.single[id(orig)]
        if id(orig) in self.multi:
            return cst.FlattenSentinel(self.multi[id(orig)].new)
        if id(orig) in self.dropped:
            return cst.RemoveFromParent()
        return new


def _leading_to(tree: cst.Module, targets: set[int]) -> tuple[set[int], set[int]]:
    """ids of the module, blocks and statements on the way to the target statements (or definitions),
    and the ids of the targets found on the way (an expression is not)."""
    out: set[int] = set()
    found: set[int] = set()

    def walk(node: cst.CSTNode, chain: list[int]) -> None:
        if id(node) in targets:
            out.update(chain)
            found.add(id(node))
            return
        chain.append(id(node))
        for ch in node.children:
            if isinstance(ch, BLOCKS) or id(ch) in targets:
                walk(ch, chain)
            elif isinstance(ch, cst.SimpleStatementLine) and any(id(sm) in targets for sm in ch.body):
                chain.append(id(ch))  # an `assert` is a small statement in its line
                for sm in ch.body:
                    walk(sm, chain)
                chain.pop()
        chain.pop()

    walk(tree, [])
    return out, found


def _apply_in_place(mod: ModuleInfo, plans: list[Plan], needed: set[Import]) -> Optional[str]:
    """The module text with each planned definition rewritten in its own parse and spliced back over its
    lines: what the planning analysis already parsed, instead of analysing the whole module again. None
    when that cannot be done (a plan outside a definition, an import to add that needs the module)."""
    groups: dict[int, tuple[Any, list[Plan]]] = {}  # id(definition) -> (its Def, its plans)
    for p in plans:
        if p.defn is None or p.defn.tree is None or p.defn.module is not mod or p.defn.tree is mod.tree:
            return None
        groups.setdefault(id(p.defn), (p.defn, []))[1].append(p)
    edits = []
    for d, ps in groups.values():
        code = _apply(d.tree, ps).code
        if d.indent:  # parsed as the body of `class _:` (Def._parse): drop that header line again
            first = code.find("\n") + 1
            if not code.startswith("class _:") or not first:
                return None  # pragma: no cover - Def._parse wrote that header
            code = code[first:]
        edits.append((d.start, d.end, code))
    mod.segment(1, 1)  # fills the line offsets
    starts, text = mod._starts, mod.text
    assert starts is not None
    out, at = [], 0
    for start, end, code in sorted(edits):
        a = starts[start - 1]
        b = starts[end] if end < len(starts) else len(text)
        if a < at:
            return None  # pragma: no cover - definitions do not overlap
        out += [text[at:a], code]
        at = b
    code = "".join(out) + text[at:]
    if needed and not _has_imports(mod, needed):
        code = ensure_imports(parse_source(code)[0], needed).code
    return code


def _has_imports(mod: ModuleInfo, needed: set[Import]) -> bool:
    """Nothing to add: the module's index saw `import torch` (rewrites change function bodies only). Any
    other case asks ensure_imports, which decides on the whole module."""
    return needed == {("torch", None)} and mod.imports_torch


_MAX_PASSES = 8


def fix_source(
    source: str,
    form: str = "flag",
    *,
    unsafe_fixes: bool = False,
    path: str = "<string>",
    codes: Optional[set[str]] = None,
    config: Optional[Config] = None,
    at: Optional[tuple[int, int]] = None,
) -> FixResult:
    """Rewrite one module's source with one form (only the findings of `codes`, when given), analysed
    with `config` (default: the form's target). Raises SourceError when it does not parse, and ValueError
    for an unknown form. Every pass's result is re-parsed.

    Like ruff, fixes are applied in passes until nothing changes: a rewrite can make an enclosing
    statement fixable (an `if` whose arm held the inner branch), and `fix` must be idempotent."""
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r} (choose from {', '.join(FORMS)})")
    if at is not None:
        # one finding's fix (an editor's quick fix): the plan for the node at (line, column), one pass, then
        # the pass on the result that proves it parses and finds what is left
        res = _fix_once(source, form, unsafe_fixes, path, codes, config, at=at)
        final = _rewritten(res.source, form, unsafe_fixes, path, codes, config, apply=False) if res.applied else res
        return FixResult(final.source, res.applied, final.skipped_unsafe, final.refused, final.final)
    res = _fix_once(source, form, unsafe_fixes, path, codes, config)
    applied = list(res.applied)
    for _ in range(_MAX_PASSES - 1):
        if not res.applied:
            break
        res = _rewritten(res.source, form, unsafe_fixes, path, codes, config)
        applied += res.applied
    if res.applied:  # the passes ran out: plan once more on the final text, applying nothing
        res = _rewritten(res.source, form, unsafe_fixes, path, codes, config, apply=False)
    # the last pass planned on the final text and applied nothing: refusals are where the fixed file has
    # them (the file as written; a first-pass refusal a later rewrite lifted is gone)
    return FixResult(res.source, applied, res.skipped_unsafe, res.refused, res.final)


def _position(plans: list[Plan], mod: ModuleInfo, which: Optional[list[Plan]] = None) -> None:
    """Set each plan's (line, column): one codegen pass per definition holding one of `which` (default:
    all), stopped at its last one."""
    wanted: dict[int, tuple[Any, set[cst.CSTNode]]] = {}  # id(definition) -> (its Def, the plans' nodes)
    for p in plans if which is None else which:
        if p.defn is not None:
            wanted.setdefault(id(p.defn), (p.defn, set()))[1].add(p.nodes[0])
    for d, nodes in wanted.values():
        position_def(d, mod.computed, nodes)
    for p in plans:
        t = mod.computed.get(p.nodes[0])
        p.position = (t[0], t[1] + 1) if t is not None else None


def _rewritten(
    source: str,
    form: str,
    unsafe_fixes: bool,
    path: str,
    codes: Optional[set[str]],
    config: Optional[Config],
    apply: bool = True,
) -> FixResult:
    """A pass over rewritten text. Its analysis indexes the text with CPython's parser first: that is the
    syntax check of every rewrite (the returned source is always the text the last pass analysed)."""
    try:
        return _fix_once(source, form, unsafe_fixes, path, codes, config, apply)
    except SourceError as e:  # the text parsed before it was rewritten: a bug in a form, not a user error
        raise SourceError(f"internal: the rewrite did not parse ({e}); file left unchanged") from None


_SHARED = Project()  # helper modules of the files fixed in this process, parsed once


def new_run() -> None:
    """Forget the helper modules of earlier runs in this process (another tree may sit at the same
    relative paths)."""
    global _SHARED
    _SHARED = Project()


def _plans(
    source: str,
    form: str,
    path: str,
    whole: bool,
    codes: Optional[set[str]] = None,
    config: Optional[Config] = None,
) -> tuple[Analysis, ModuleInfo, list[Plan]]:
    _SHARED.touched = set()  # the helper files this analysis reads (a fixed file's dependencies)
    an, mod = analyze_source(
        source, path, config or Config(target=FORM_TARGET[form]), whole=whole, in_tree=True, project=_SHARED
    )
    plans = plan_analysis(an, mod, form)
    if codes is not None:
        plans = [p for p in plans if p.codes & codes]  # a rule the user did not select is not fixed
    return an, mod, resolve_plans(plans)


def _fix_once(
    source: str,
    form: str,
    unsafe_fixes: bool,
    path: str,
    codes: Optional[set[str]] = None,
    config: Optional[Config] = None,
    apply: bool = True,
    at: Optional[tuple[int, int]] = None,
) -> FixResult:
    # most files have nothing a form can apply: plan on the reached definitions' parse (what `check`
    # does), and parse the whole module, which a rewrite needs, only when something will be applied
    an, mod, plans = _plans(source, form, path, whole=False, codes=codes, config=config)
    if at is not None:
        _position(plans, mod)
        plans = [p for p in plans if p.position == at]
    res = FixResult(source, final=(an, mod))
    applies = apply and any(p.ok and (unsafe_fixes or p.applicability != "unsafe") for p in plans)
    # refusals are reported where the last pass (which applies nothing) finds them: a pass that applies
    # is followed by another, and its positions would go unused
    reported = [] if applies else [p for p in plans if not p.ok or p.applicability == "unsafe"]
    if reported and at is None:
        _position(plans, mod, reported)
    todo = []
    for p in sorted(plans, key=lambda p: p.position or (0, 0)):
        if not p.ok:
            res.refused.append(p)
        elif p.applicability == "unsafe" and not unsafe_fixes:
            res.skipped_unsafe.append(p)
        else:
            todo.append(p)
    if not todo or not apply:
        return res
    needed = set().union(*(p.imports for p in todo))
    code = _apply_in_place(mod, todo, needed)
    if code is None:
        an, mod, plans = _plans(source, form, path, whole=True, codes=codes, config=config)
        todo = [p for p in plans if p.ok and (unsafe_fixes or p.applicability != "unsafe")]
        assert mod.tree is not None  # whole=True parsed the whole module
        code = ensure_imports(_apply(mod.tree, todo), needed).code
    res.source = code  # checked by the next pass (_rewritten)
    res.applied = todo
    return res
