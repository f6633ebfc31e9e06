"""Run the analyzer over many files: prefilter, cache, process pool; deterministic results."""

from __future__ import annotations

import gc
import json
import os
import pickle
import re
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

import pathspec

from tracesafe import __version__
from tracesafe.analyzer.config import Config
from tracesafe.analyzer.finding import Finding
from tracesafe.analyzer.source import (
    SourceError,
    canonical,
    content_hash,
    cpython_syntax_error,
    forget_canonical,
    source_text,
)

if TYPE_CHECKING:
    from tracesafe.analyzer.project import Project

T = TypeVar("T")
# one file of a batch, as plain data for the parent: (path, findings as JSON, error, deps -> content hash)
BatchResult = tuple[str, list[dict[str, Any]], Optional[str], dict[str, Optional[str]]]

# the analysis (libcst, the rewriters) is imported where a file is analysed: a run whose files all hit
# the cache answers without it

# roots to analyze below which a pool costs more than it saves (pre-commit already runs one per core)
_PARALLEL_MIN_FILES = 16


@dataclass
class RunResult:
    findings: list[Finding]
    errors: list[tuple[str, str]]  # (path, one-line message)
    files: int = 0
    phases: dict[str, float] = field(default_factory=dict)


def norm(path: str) -> str:
    """Path relative to the cwd when below it (the text format's contract), else absolute."""
    ap = os.path.abspath(path)
    rel = os.path.relpath(ap)
    return ap if rel.startswith("..") else rel


def _entry_pattern(config: Config) -> re.Pattern[bytes]:
    names = "|".join(re.escape(n) for n in config.entry_points)
    return re.compile(rb"def\s+(?:" + names.encode() + rb")\s*\(")


_WORKER_PROJECT: Optional[Project] = None


def _worker_init(overlay: Optional[dict[str, bytes]] = None) -> None:
    # one parse cache per worker process for the whole run: shared helpers (modeling_utils.py...) are
    # parsed once per worker, not once per batch
    from tracesafe.analyzer.project import Project

    global _WORKER_PROJECT
    _WORKER_PROJECT = Project(overlay=overlay)


def use_project(project: Project) -> None:
    """Make `project` this worker's parse cache (a pool `fix` made, reused for its recount)."""
    global _WORKER_PROJECT
    _WORKER_PROJECT = project


def _overlay(project: Project, overlay: Optional[dict[str, bytes]]) -> None:
    """Give a project that may hold files' old text their new text (absolute path -> bytes)."""
    new = {path: data for path, data in (overlay or {}).items() if project.overlay.get(path) != data}
    if new:
        project.forget(*new)
        project.overlay.update(new)


_LOADED: dict[str, dict[str, bytes]] = {}  # overlay file -> its dict, read once per worker


def _load_overlay(path: Optional[str]) -> Optional[dict[str, bytes]]:
    if path is not None and path not in _LOADED:
        with open(path, "rb") as f:
            _LOADED[path] = pickle.load(f)
    return _LOADED.get(path) if path is not None else None


def _analyze_batch(
    batch: list[tuple[str, bytes, bool]],
    config: Config,
    only: Optional[frozenset[str]] = None,
    project: Optional[Project] = None,
    overlay_file: Optional[str] = None,
) -> tuple[list[BatchResult], dict[str, float]]:
    """Analyze roots sharing one parse cache (the caller's, or the worker's in a pool), and syntax-check
    the prefiltered files (no entry point: nothing to analyze); return plain data for the parent."""
    from tracesafe.analyzer.api import analyze_root
    from tracesafe.analyzer.project import PHASES
    from tracesafe.rewriters.engine import safe_fix_fields

    project = project or _WORKER_PROJECT
    assert project is not None, "a pool's workers start with _worker_init"
    _overlay(project, _load_overlay(overlay_file))
    before = dict(PHASES)
    out: list[BatchResult] = []
    syntax = 0.0
    for path, data, analyze in batch:
        if not analyze:
            ts = time.perf_counter()
            out.append((path, [], _syntax_only(path, data), {}))
            syntax += time.perf_counter() - ts
            continue
        # the parsed trees stay alive for the whole batch (shared helpers): without this, every cyclic
        # GC pass rescans millions of libcst nodes and a repository-wide run grows quadratically
        gc.freeze()
        try:
            res = analyze_root(path, data, config, project, only, plan=safe_fix_fields)
        except RecursionError:
            out.append((path, [], "source is nested too deeply to analyze", {}))
            continue
        out.append((path, [f.to_json() for f in res.findings], res.error, res.deps))
    return out, {"syntax check": syntax, **{k: PHASES[k] - before[k] for k in PHASES}}


def batched(items: list[T], jobs: int) -> list[list[T]]:
    """Small contiguous batches for a pool of `jobs` workers: they balance the load, and each worker keeps
    its parse cache across them."""
    n = max(1, min(len(items) // (jobs * 8), 32))
    return [items[i : i + n] for i in range(0, len(items), n)]


def _syntax_only(path: str, data: bytes) -> Optional[str]:
    """For prefiltered files: still report files that are not valid Python."""
    try:
        text = source_text(data)
    except SourceError as e:
        return str(e)
    try:
        return cpython_syntax_error(text)
    except (ValueError, RecursionError, MemoryError) as e:
        return f"cannot parse: {str(e).splitlines()[0] if str(e) else type(e).__name__}"


def _tool_digest() -> str:
    """Hash of the analyzer's own code, so an upgraded or edited tool never reads stale results."""
    import tracesafe.analyzer as pkg

    h = []
    for f in sorted(Path(pkg.__file__).parent.glob("*.py")):
        try:
            h.append(content_hash(f.read_bytes()))
        except OSError:
            pass
    return content_hash("".join(h).encode())


class Cache:
    """Per-root results keyed by content, tool version and settings; deps re-validated by hash."""

    def __init__(self, root: Path, config: Config):
        self.dir = root / ".tracesafe_cache"
        self.salt = content_hash(f"{__version__}|{_tool_digest()}|{config.fingerprint()}".encode())[:16]
        self.file = self.dir / f"v1-{self.salt}.json"
        self.entries: dict[str, Any] = {}
        self.dirty = False
        # a shared helper is a dependency of hundreds of roots: read and hash it once per run
        self._dep_hashes: dict[str, Optional[str]] = {}
        try:
            self.entries = json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.entries = {}

    def get(self, path: str, digest: str) -> Optional[dict[str, Any]]:
        e: Optional[dict[str, Any]] = self.entries.get(canonical(path))
        if not e or e["hash"] != digest:
            return None
        for dep, h in e["deps"].items():
            if dep not in self._dep_hashes:
                try:
                    self._dep_hashes[dep] = content_hash(Path(dep).read_bytes())
                except OSError:
                    self._dep_hashes[dep] = None
            if self._dep_hashes[dep] != h:
                return None
        return e

    def put(
        self,
        path: str,
        digest: str,
        findings: list[dict[str, Any]],
        error: Optional[str],
        deps: dict[str, Optional[str]],
    ) -> None:
        # every path canonical: what is read back must not depend on the cwd or spelling that filled it
        self.entries[canonical(path)] = {
            "hash": digest,
            "findings": [{**f, "path": canonical(f["path"])} for f in findings],
            "error": error,
            "deps": {canonical(d): h for d, h in deps.items()},
        }
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        try:
            self.dir.mkdir(exist_ok=True)
            gi = self.dir / ".gitignore"
            if not gi.exists():
                gi.write_text("*\n")
            fd, tmp = tempfile.mkstemp(dir=self.dir, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.entries, f)
            os.replace(tmp, self.file)
        except OSError:
            pass  # a read-only tree still gets its results; only the cache is lost


def per_file_ignored(f: Finding, config: Config, root: Optional[str | Path] = None, real: Optional[str] = None) -> bool:
    """Does the config's `per-file-ignores` (patterns relative to its directory `root`) drop this finding?"""
    if not config.per_file_ignores:
        return False
    rel = os.path.relpath(real or canonical(f.path), canonical(str(root or os.getcwd())))
    for pat, codes in config.per_file_ignores.items():
        if _spec(pat).match_file(rel) and any(
            f.code.startswith("" if c.upper() == "ALL" else c.upper()) for c in codes
        ):
            return True
    return False


_SPECS: dict[str, pathspec.GitIgnoreSpec] = {}


def _spec(pattern: str) -> pathspec.GitIgnoreSpec:
    s = _SPECS.get(pattern)
    if s is None:
        s = _SPECS[pattern] = pathspec.GitIgnoreSpec.from_lines([pattern])
    return s


def check_paths(
    files: list[str],
    config: Config,
    *,
    jobs: int = 1,
    cache_root: Optional[Path] = None,
    prefilter: bool = True,
    report_only: Optional[set[str]] = None,
    config_root: Optional[Path] = None,
    contents: Optional[dict[str, bytes]] = None,
    known: Optional[list[dict[str, Any]]] = None,
    progress: Optional[Callable[[int, int], None]] = None,
    pool: Any = None,  # a multiprocessing pool of `jobs` workers
    project: Optional[Project] = None,
) -> RunResult:
    """Findings for the given files (paths as discovered); errors never stop the other files. `contents`
    (path -> bytes) stands in for what some files hold on disk (`fix --diff` counts what would remain);
    `known` are findings (JSON) other roots' analyses already gave, merged in (`fix` re-analyses only
    what it changed). `progress(n, total)` is told as each n more of the total files to analyse are done.
    `pool` (of `jobs` workers, each holding a project: use_project) or `project` reuse what an earlier run
    parsed."""
    t0 = time.perf_counter()
    forget_canonical()
    phases = {"read": 0.0, "prefilter": 0.0, "analyze": 0.0, "report": 0.0}
    errors: list[tuple[str, str]] = []
    cache = Cache(cache_root, config) if cache_root is not None else None
    entry = _entry_pattern(config)
    todo: list[tuple[str, bytes, bool]] = []
    digests: dict[str, str] = {}
    raw: list[dict[str, Any]] = list(known or [])
    for path in files:
        ts = time.perf_counter()
        try:
            data = contents[path] if contents and path in contents else Path(path).read_bytes()
        except IsADirectoryError:
            errors.append((path, "is a directory, not a Python file"))
            continue
        except OSError as e:
            errors.append((path, f"cannot read: {e.strerror or e}"))
            continue
        phases["read"] += time.perf_counter() - ts
        if cache is not None:
            digest = digests[path] = content_hash(data)
            hit = cache.get(path, digest)
            if hit is not None:
                raw.extend(hit["findings"])
                if hit["error"]:
                    errors.append((path, hit["error"]))
                continue
        ts = time.perf_counter()
        # a file that defines no entry point is only syntax-checked (in the pool, with the analyses)
        todo.append((path, data, not prefilter or entry.search(data) is not None))
        phases["prefilter"] += time.perf_counter() - ts

    ts = time.perf_counter()
    results: list[BatchResult] = []
    # what the files would hold, for the roots and for the helpers they reach alike (in any order)
    overlay = {canonical(p): d for p, d in contents.items()} if contents else None
    # findings are kept for the files asked about; a cached result must not depend on which those were,
    # so with a cache every analyzed root reports on every file it reaches
    only = None if cache is not None else frozenset(canonical(p) for p in (report_only or files))
    if todo and (pool is not None or jobs > 1 and sum(analyze for _, _, analyze in todo) >= _PARALLEL_MIN_FILES):
        from concurrent.futures import ProcessPoolExecutor  # a pool only for a larger input

        overlay_file = None
        if pool is not None:
            # another run's workers, whose parsed modules this run reuses (fix's recount): the largest
            # files first, so that no worker is left with one at the end; the overlay in a file each
            # worker reads once (it cannot know which worker takes which batch)
            todo.sort(key=lambda t: -len(t[1]))
            if overlay:
                fd, overlay_file = tempfile.mkstemp(prefix="tracesafe-", suffix=".overlay")
                with os.fdopen(fd, "wb") as out_file:
                    pickle.dump(overlay, out_file, protocol=pickle.HIGHEST_PROTOCOL)
        batches = batched(todo, jobs)
        try:
            with (
                nullcontext(pool)
                if pool is not None
                else ProcessPoolExecutor(max_workers=jobs, initializer=_worker_init, initargs=(overlay,))
            ) as workers:
                n = len(batches)
                for part, times in workers.map(
                    _analyze_batch, batches, [config] * n, [only] * n, [None] * n, [overlay_file] * n
                ):
                    results.extend(part)
                    for k, v in times.items():  # summed over workers: CPU seconds, not wall time
                        phases[k] = phases.get(k, 0.0) + v
                    if progress:
                        progress(len(part), len(todo))
        finally:
            if overlay_file is not None:
                os.unlink(overlay_file)
    elif todo:
        from tracesafe.analyzer.project import Project

        if project is None:
            project = Project(overlay=overlay)  # one parse cache for the whole run, told of in steps
        else:
            _overlay(project, overlay)
        step = 32 if progress else len(todo)
        for i in range(0, len(todo), step):
            part, times = _analyze_batch(todo[i : i + step], config, only, project)
            results.extend(part)
            for k, v in times.items():
                phases[k] = phases.get(k, 0.0) + v
            if progress:
                progress(len(part), len(todo))
    phases["analyze"] = time.perf_counter() - ts

    ts = time.perf_counter()
    for path, found, err, deps in results:
        raw.extend(found)
        if err:
            errors.append((path, err))
        if cache is not None:
            cache.put(path, digests[path], found, err, deps)
    if cache is not None:
        cache.save()

    # each file asked about, by its one name -> as the report spells it; a finding is matched by the name
    # of the file it is in (computed from another cwd, another spelling or another root's reach alike)
    spelled = {canonical(p): norm(p) for p in (report_only if report_only is not None else files)}
    out: dict[Finding, Finding] = {}
    for d in raw:
        f = Finding.from_json(d)
        real = canonical(f.path)
        p = spelled.get(real)
        if p is None:
            continue
        if config.per_file_ignores and per_file_ignored(f, config, config_root, real):
            continue
        g = Finding(p, f.line, f.column, f.end_line, f.end_column, f.code, f.message, f.function, f.fix)
        # the same finding may come from several roots; only the file's own analysis plans its fix, so
        # keep that one whatever order the roots ran in
        old = out.get(g)
        if old is None or (old.fix is None and g.fix is not None):
            out[g] = g
    findings = sorted(out.values(), key=Finding.sort_key)
    errors = sorted({(norm(p), m) for p, m in errors})
    phases["report"] = time.perf_counter() - ts
    phases["total"] = time.perf_counter() - t0
    return RunResult(findings, errors, len(files), phases)
