"""`tracesafe fix` over files: decode, rewrite, verify, write atomically, report."""

from __future__ import annotations

import difflib
import gc
import io
import os
import re
import stat
import tempfile
import tokenize
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional


from tracesafe.analyzer import Config
from tracesafe.analyzer.engine import to_findings
from tracesafe.analyzer.source import SourceError, canonical, content_hash, cpython_syntax_error, decode
from tracesafe.rewriters import engine
from tracesafe.rewriters.engine import FixResult, fix_source
from tracesafe import runner
from tracesafe.runner import _PARALLEL_MIN_FILES, batched


@dataclass
class Note:
    """A fix refused (with its reason) or left out as unsafe, at its place in the file as fixed."""

    position: tuple[int, int] | None
    codes: tuple[str, ...]
    reason: str | None  # None: an unsafe fix, skipped without --unsafe-fixes


@dataclass
class FileOutcome:
    """What fixing one file did, as plain data (it crosses from a worker process)."""

    path: str
    changed: bool = False
    diff: str = ""
    error: str | None = None
    notes: list[Note] = field(default_factory=list)
    signatures: list[str] = field(default_factory=list)  # entry points whose outputs changed
    applied: list[tuple[str, ...]] = field(default_factory=list)  # the codes of each rewrite applied
    source: str | None = None  # the fixed text, when it changed
    # with a config: the findings (JSON) the analysis of the fixed text reports on the run's files, and
    # the other files it read
    findings: list[dict] = field(default_factory=list)
    deps: dict[str, Optional[str]] = field(default_factory=dict)  # path -> content hash of the text read


def _notes(res: FixResult) -> list[Note]:
    out = [Note(p.position, tuple(sorted(p.codes)), p.reason) for p in res.refused]
    out += [Note(p.position, tuple(sorted(p.codes)), None) for p in res.skipped_unsafe]
    return sorted(out, key=lambda n: n.position or (0, 0))


def _encoding(data: bytes) -> str:
    try:
        return tokenize.detect_encoding(io.BytesIO(data).readline)[0]
    except SyntaxError:
        return "utf-8"


def atomic_write(path: Path, data: bytes, expected_old: bytes) -> None:
    """Replace path with data unless it changed since it was read; keep its permissions."""
    if path.read_bytes() != expected_old:
        raise SourceError("changed on disk while it was being fixed; left alone")
    mode = stat.S_IMODE(path.stat().st_mode)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tstmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def fix_file(
    path: str,
    form: str,
    unsafe_fixes: bool,
    write: bool,
    entry=None,
    codes=None,
    config: Optional[Config] = None,
    only: Optional[frozenset] = None,
) -> FileOutcome:
    """Fix one file (only the findings of `codes`, when given). With `entry` (a bytes regex for
    entry-point definitions), a file that defines none cannot have a fix: it only gets a syntax check.
    With `config`, the analysis of the fixed text also says what is left (on the files of `only`)."""
    out = FileOutcome(path)
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        out.error = f"cannot read: {e.strerror or e}"
        return out
    if entry is not None and not entry.search(data):
        from tracesafe.runner import _syntax_only

        out.error = _syntax_only(path, data)
        return out
    try:
        text = decode(data)
        res = fix_source(text, form, unsafe_fixes=unsafe_fixes, path=path, codes=codes, config=config)
    except SourceError as e:
        out.error = str(e)
        return out
    except RecursionError:
        out.error = "source is nested too deeply to rewrite"
        return out
    out.notes = _notes(res)
    if config is not None and res.final is not None:
        an, mod = res.final
        wanted = config.codes()
        out.findings = [
            f.to_json() for f in to_findings(an.raw_findings(), config.target, None, only) if f.code in wanted
        ]
        out.deps = engine._SHARED.deps(path)
    if res.source == text:
        return out
    enc = _encoding(data)  # "utf-8-sig" when the file had a BOM: encoding puts it back
    try:
        new_data = res.source.encode(enc)
    except UnicodeEncodeError:
        out.error = f"the rewrite cannot be encoded as {enc}; left unchanged"
        return out
    # the last check before a write: CPython's parser accepted the text when fix_source's last pass
    # indexed it; any other text is parsed here
    analysed = res.final is not None and res.final[1].text == res.source
    if not analysed and cpython_syntax_error(res.source):
        out.error = "the rewrite did not parse; left unchanged"
        return out
    out.changed, out.signatures, out.source = True, res.changed_signatures, res.source
    out.applied = [tuple(sorted(p.codes)) for p in res.applied]
    out.diff = "".join(
        difflib.unified_diff(
            text.splitlines(keepends=True),
            res.source.splitlines(keepends=True),
            fromfile=f"a/{path}",
            tofile=f"b/{path}",
        )
    )
    if write:
        engine._SHARED.forget(path)  # later files of this process read the new text, not summaries of the old
        try:
            atomic_write(p, new_data, data)
        except SourceError as e:
            out.error, out.changed = str(e), False
        except OSError as e:
            out.error, out.changed = f"cannot write: {e.strerror or e}", False
    return out


def _fix_batch(batch: list[str], *args) -> list[FileOutcome]:
    out = []
    for path in batch:
        gc.freeze()  # as `check`: the parsed helpers stay alive, the cyclic GC need not rescan them
        out.append(fix_file(path, *args))
    return out


def _worker_init() -> None:
    # one project per worker for the fix and the recount after it: the recount re-analyses files whose
    # helpers changed, and finds the rest of what they read already parsed
    engine.new_run()
    runner.use_project(engine._SHARED)


@contextmanager
def fix_pool(jobs: int, n_files: int):
    """Worker processes for fix_files and recount (None: run in this process), as `check` decides."""
    if jobs <= 1 or n_files < _PARALLEL_MIN_FILES:
        engine.new_run()
        yield None
        return
    with ProcessPoolExecutor(max_workers=jobs, initializer=_worker_init) as pool:
        yield pool


def fix_files(
    files: list[str],
    form: str,
    unsafe_fixes: bool,
    write: bool,
    entry=None,
    codes=None,
    config: Optional[Config] = None,
    pool=None,
    jobs: int = 1,
) -> Iterator[FileOutcome]:
    """fix_file over many files, in the `jobs` workers of `pool` (fix_pool) or in this process, in the
    order given. Each file is read, rewritten and written by one worker: no two touch one file."""
    only = frozenset(canonical(p) for p in files)
    args = (form, unsafe_fixes, write, entry, codes, config, only)
    if pool is None:
        yield from _fix_batch(files, *args)
        return
    batches = batched(files, jobs)
    for part in pool.map(_fix_batch, batches, *([x] * len(batches) for x in args)):
        yield from part


def recount(
    outcomes: list[FileOutcome], new_text: dict[str, bytes], config: Config, pool=None, jobs: int = 1, config_root=None
) -> tuple[int, int]:
    """The findings the fixed files hold (for config's target), counted as `check` would on the text
    written (or, with --diff, that would be): a file's own last analysis says it, unless it read a file
    that changed (new_text: every changed file so far -> its new text), maybe before that was rewritten;
    those files are analysed again, in the workers that fixed (their parsed modules reused), with the
    new text in place of the old. Returns (findings, files analysed again)."""
    final = {canonical(p): content_hash(data) for p, data in new_text.items()}
    # a file whose analysis read a changed file's final text (its worker had fixed that file already) was
    # analysed as `check` would now
    again = {o.path for o in outcomes if any(final.get(canonical(p), h) != h for p, h in o.deps.items())}
    known = [f for o in outcomes if o.path not in again for f in o.findings]
    done = [o.path for o in outcomes]
    res = runner.check_paths(
        [p for p in done if p in again],
        config,
        cache_root=None,
        contents=new_text,
        known=known,
        report_only=set(done),
        config_root=config_root,
        pool=pool,
        jobs=jobs,
        project=None if pool is not None else engine._SHARED,
    )
    return len(res.findings), len(again)


def call_sites(files: list[str], qualnames: list[str]) -> list[str]:
    """Lines in the scanned files that call a module whose `forward` changed its outputs."""
    classes = {q.split(".")[0] for q in qualnames}
    if not classes:
        return []
    ctor = re.compile(r"self\.(\w+)\s*=\s*(?:\w+\.)*(" + "|".join(map(re.escape, sorted(classes))) + r")\s*\(")
    out = []
    for f in files:
        try:
            lines = Path(f).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        attrs = {}
        for line in lines:
            m = ctor.search(line)
            if m:
                attrs[m.group(1)] = m.group(2)
        for i, line in enumerate(lines, 1):
            for attr, cls in attrs.items():
                if re.search(r"self\." + re.escape(attr) + r"\s*\(", line):
                    out.append(f"{f}:{i}: calls {cls}.forward, which now returns (value, flag)")
    return out
