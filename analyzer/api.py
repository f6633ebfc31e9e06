"""The pure core: check_source for one string, analyze_root for one file of a tree.

The analyzer reports; whether a finding has a fix is decided outside it: callers pass `plan`, a function
(Analysis, ModuleInfo, form) -> {id(node): fix field} (tracesafe.rewriters.engine.fix_fields, wrapped by
the shell so that a planning bug cannot cost the user their findings). `tracesafe.analyzer` imports no
rewriter."""

from __future__ import annotations

import time

import os
from dataclasses import dataclass
from typing import AbstractSet, Any, Callable, Optional

from .config import Config
from .engine import Analysis, to_findings
from .finding import Finding
from .project import PHASES, ModuleInfo, Project, SourceError


@dataclass
class RootResult:
    findings: list[Finding]
    error: Optional[str]  # one line, when the root itself could not be read or parsed
    deps: dict[str, Optional[str]]  # other files read, path -> content hash (None: unreadable)


# (analysis, root module, form) -> id(node) -> the `fix` field of the finding at that node
Planner = Callable[[Analysis, ModuleInfo, str], dict[int, Any]]


def analyze_root(
    path: str,
    data: bytes | str,
    config: Config,
    project: Optional[Project] = None,
    only: Optional[AbstractSet[str]] = None,
    plan: Optional[Planner] = None,
) -> RootResult:
    """Analyze one file's entry points and what they reach (other files parsed on demand). Findings are
    positioned only for the files in `only` (absolute paths) when it is given."""
    project = project or Project()
    project.touched = set()
    try:
        mod = project.root_module(path, data)
    except SourceError as e:
        return RootResult([], str(e), {})
    an = Analysis(project, config.settings())
    t0, p0 = time.perf_counter(), PHASES["index (ast)"] + PHASES["parse (libcst)"]
    try:
        an.run(mod)
    except SourceError as e:
        return RootResult([], str(e), {})
    t1 = time.perf_counter()
    # definitions and helper modules parsed on demand count as parsing
    PHASES["reach+infer"] += (t1 - t0) - (PHASES["index (ast)"] + PHASES["parse (libcst)"] - p0)
    fixes = plan(an, mod, config.form) if plan is not None else {}
    t2 = time.perf_counter()
    PHASES["fix planning"] += t2 - t1
    codes = config.codes()
    found = [f for f in to_findings(an.raw_findings(), config.target, fixes, only, mod) if f.code in codes]
    PHASES["rules+positions"] += time.perf_counter() - t2
    return RootResult(found, None, project.deps(path))


def analyze_source(
    source: str | bytes,
    path: str,
    config: Config,
    whole: bool = False,
    in_tree: bool = False,
    project: Optional[Project] = None,
) -> tuple[Analysis, ModuleInfo]:
    """(Analysis, ModuleInfo) for one source string; `whole` parses the whole module with libcst (for
    rewriting it). With `in_tree` and a path that is a file, the source is that file in its package (its
    relative imports and base classes resolve, as in `check`); otherwise a module on its own. Raises
    SourceError when it does not parse. `project` is reused for a file in its package."""
    own = in_tree and path.endswith(".py") and os.path.isfile(path)
    # a project shared by the files of one run parses each helper module once (as `check`'s workers do)
    project = project if own and project is not None else Project()
    if own:
        mod = project.root_module(path, source, whole)
    else:
        mod = project.add_module(
            path, source, modname=os.path.splitext(os.path.basename(path))[0] or "module", whole=whole
        )
    an = Analysis(project, config.settings())
    an.run(mod)
    return an, mod


def check_source(
    source: str | bytes, path: str = "<string>", config: Optional[Config] = None, plan: Optional[Planner] = None
) -> list[Finding]:
    """Findings for one source string. Raises SourceError (one-line message) when it does not parse."""
    config = config or Config()
    an, mod = analyze_source(source, path, config)
    codes = config.codes()
    fixes = plan(an, mod, config.form) if plan is not None else {}
    return [
        f
        for f in to_findings(an.raw_findings(), config.target, fixes, fixes_for=mod)
        if f.code in codes and f.path == path
    ]
