"""Which files to check: paths and directories, .gitignore rules (pathspec) and excludes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import pathspec

_SKIP_DIRS = {
    ".git",
    ".hg",
    ".svn",
    "__pycache__",
    ".tox",
    ".nox",
    ".venv",
    "venv",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".tracesafe_cache",
    "node_modules",
    ".eggs",
    "build",
    "dist",
    "site-packages",
}


def _gitignore(d: Path) -> Optional[pathspec.GitIgnoreSpec]:
    f = d / ".gitignore"
    try:
        lines = f.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    return pathspec.GitIgnoreSpec.from_lines(lines)


def _outer_specs(d: Path) -> list[tuple[Path, pathspec.GitIgnoreSpec]]:
    """.gitignore files above a scanned directory, up to the repository root."""
    specs = []
    for parent in d.parents:
        spec = _gitignore(parent)
        if spec is not None:
            specs.append((parent, spec))
        if (parent / ".git").exists():
            break
    return specs


def _ignored(path: Path, is_dir: bool, specs: list[tuple[Path, pathspec.GitIgnoreSpec]]) -> bool:
    for base, spec in specs:
        try:
            rel = path.relative_to(base).as_posix()
        except ValueError:
            continue
        if spec.match_file(rel + "/" if is_dir else rel):
            return True
    return False


def _uncovering(spec: pathspec.GitIgnoreSpec, d: Path, base: Path) -> pathspec.GitIgnoreSpec:
    """spec without the patterns that match directory d (so that they do not cover what is beneath it)."""
    try:
        rel = d.relative_to(base).as_posix() + "/"
    except ValueError:
        return spec
    kept = [pat for pat in spec.patterns if pat.include is None or not pat.match_file(rel)]
    return spec if len(kept) == len(spec.patterns) else pathspec.GitIgnoreSpec(kept)


def _symlink_problem(p: Path) -> Optional[str]:
    try:
        p.resolve(strict=True)
    except RuntimeError:  # Python < 3.13 reports a loop this way
        return "symlink loop"
    except OSError as e:
        return "symlink loop" if e.errno == 40 else "broken symlink"
    return None


def discover(
    paths: Iterable[str],
    exclude: list[str],
    exclude_root: Optional[Path],
    force_exclude: bool = True,
    on_excluded: Optional[Callable[[str], None]] = None,
) -> Iterator[tuple[str, Optional[str]]]:
    """Yield (path, error) pairs: error is a one-line message for a path that cannot be used. A file named
    explicitly is excluded only with force_exclude (ruff's rule); otherwise it is kept and
    on_excluded(path) is told, so that an excluded file never looks clean in silence."""
    excl = pathspec.GitIgnoreSpec.from_lines(exclude) if exclude else None

    def excluded(p: Path, is_dir: bool, excl: Optional[pathspec.GitIgnoreSpec] = excl) -> bool:
        if excl is None or exclude_root is None:
            return False
        try:
            rel = p.resolve().relative_to(exclude_root.resolve()).as_posix()
        except ValueError:
            rel = p.as_posix()
        return bool(excl.match_file(rel + "/" if is_dir else rel))

    seen: set[str] = set()
    for raw in paths:
        p = Path(raw)
        if not p.exists() and not p.is_symlink():
            yield raw, "no such file or directory"
            continue
        problem = _symlink_problem(p) if p.is_symlink() else None
        if problem:
            yield raw, problem
            continue
        if p.is_file():
            hit = excluded(p, False)
            if hit and not force_exclude and on_excluded is not None:
                on_excluded(raw)
            if not hit or not force_exclude:
                key = os.path.normpath(raw)
                if key not in seen:
                    seen.add(key)
                    yield key, None
            continue
        if not p.is_dir():
            yield raw, "not a regular file or directory (broken symlink or special file)"
            continue
        # Like ruff, a directory named on the command line is walked even when a .gitignore above it or
        # `exclude` covers it (say, a package inside .venv/): the patterns that cover the named directory
        # itself do not apply beneath it, or every file would be skipped and the run would look clean.
        root = p.resolve()
        specs = [(base, _uncovering(spec, root, base)) for base, spec in _outer_specs(root)]
        walk_excl = excl
        if excl is not None and excluded(p, True):
            if force_exclude:
                continue
            if on_excluded is not None:
                on_excluded(raw)
            walk_excl = _uncovering(excl, root, exclude_root.resolve()) if exclude_root is not None else excl
        visited: set[tuple[int, int]] = set()
        for dirpath, dirnames, filenames in os.walk(p, followlinks=False):
            d = Path(dirpath)
            try:
                st = d.stat()
                if (st.st_dev, st.st_ino) in visited:
                    dirnames[:] = []
                    continue
                visited.add((st.st_dev, st.st_ino))
            except OSError:
                continue
            local = _gitignore(d)
            if local is not None:
                specs = specs + [(d.resolve(), local)]
            real = d.resolve() if specs else None  # resolved once per directory, and only when matched
            keep = []
            for name in sorted(dirnames):
                sub = d / name
                if name in _SKIP_DIRS or name.endswith(".egg-info"):
                    continue
                if name.endswith(".py"):
                    # a directory named like a module file: skip with a note
                    yield os.path.normpath(str(sub)), "is a directory, not a Python file"
                    continue
                if specs and _ignored(sub.resolve(), True, specs) or excluded(sub, True, walk_excl):
                    continue
                keep.append(name)
            dirnames[:] = keep
            for name in sorted(filenames):
                if not (name.endswith(".py") or name.endswith(".pyi") and False):
                    continue
                f = d / name
                link = f.is_symlink()
                if link:
                    problem = _symlink_problem(f)
                    if problem:
                        yield os.path.normpath(str(f)), problem
                        continue
                if (
                    specs
                    and real is not None
                    and _ignored(f.resolve() if link else real / name, False, specs)
                    or excluded(f, False, walk_excl)
                ):
                    continue
                key = os.path.normpath(str(f))
                if key not in seen:
                    seen.add(key)
                    yield key, None
