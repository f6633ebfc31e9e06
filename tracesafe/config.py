"""``[tool.tracesafe]`` in pyproject.toml: discovery, validation, merging with CLI flags."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tracesafe.analyzer import Config
from tracesafe.analyzer.rules import TARGETS, select_codes
from tracesafe.rewriters import FORMS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

KEYS = {"select", "ignore", "per-file-ignores", "exclude", "entry-points", "form", "target"}


class ConfigError(Exception):
    """A one-line, user-facing configuration problem."""


@dataclass
class FileConfig:
    path: Optional[Path] = None  # the pyproject.toml it came from
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.path.parent if self.path else Path.cwd()


def find_pyproject(start: Path) -> Optional[Path]:
    """Nearest pyproject.toml with a [tool.tracesafe] table, walking up from start."""
    start = start.resolve()
    for d in [start, *start.parents] if start.is_dir() else [start.parent, *start.parent.parents]:
        cand = d / "pyproject.toml"
        if cand.is_file():
            try:
                data = tomllib.loads(cand.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                # a broken file that may be ours: load it to report the error
                return cand
            if "tracesafe" in data.get("tool", {}):
                return cand
    return None


def load(path: Path) -> FileConfig:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror if isinstance(e, OSError) else e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    table = data.get("tool", {}).get("tracesafe", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.tracesafe] must be a table")
    validate(table, path)
    return FileConfig(path, table)


def _str_list(value, key: str, where: Path) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: [tool.tracesafe] {key} must be a list of strings")
    return value


def validate(table: dict, where: Path) -> None:
    unknown = sorted(set(table) - KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) in [tool.tracesafe]: {', '.join(unknown)} (known: {', '.join(sorted(KEYS))})"
        )
    for key in ("select", "ignore", "exclude", "entry-points"):
        if key in table:
            _str_list(table[key], key, where)
    try:
        for key in ("select", "ignore"):
            if key in table:
                select_codes(_str_list(table[key], key, where), None)
        pfi = table.get("per-file-ignores", {})
        if not isinstance(pfi, dict):
            raise ConfigError(f"{where}: [tool.tracesafe] per-file-ignores must be a table")
        for pat, codes in pfi.items():
            select_codes(_str_list(codes, f"per-file-ignores.{pat}", where), None)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None
    if "target" in table and table["target"] not in TARGETS:
        raise ConfigError(f"{where}: target must be one of {', '.join(TARGETS)}, not {table['target']!r}")
    if "form" in table and table["form"] not in FORMS:
        raise ConfigError(f"{where}: form must be one of {', '.join(FORMS)}, not {table['form']!r}")


def effective(
    fc: FileConfig, *, select=None, ignore=None, target=None, form=None, extend_select=None, extend_ignore=None
) -> Config:
    """CLI flags (when given) override the file's values, as ruff's: --select replaces the file's `select`,
    --extend-select adds to it; --ignore and --extend-ignore add to its `ignore`."""
    v = fc.values
    chosen = list(select) if select else _opt(v.get("select"))
    if extend_select and chosen is not None:
        chosen = list(chosen) + list(extend_select)
    return Config(
        target=target or v.get("target", "trace"),
        select=chosen,
        ignore=(list(_opt(v.get("ignore")) or []) + list(ignore or []) + list(extend_ignore or [])) or None,
        entry_points=tuple(["forward", *[e for e in _opt(v.get("entry-points")) or [] if e != "forward"]]),
        per_file_ignores={k: _opt(c) or [] for k, c in v.get("per-file-ignores", {}).items()},
        form=form or v.get("form", "flag"),
    )


def _opt(v):
    return [v] if isinstance(v, str) else v


class Resolver:
    """The configuration for each file, like ruff: the nearest pyproject.toml with [tool.tracesafe] above
    it (cached per directory), or the one given with --config for every file."""

    def __init__(self, override: Optional[str] = None):
        self.override = load(Path(override)) if override else None
        self._by_dir: dict[Path, FileConfig] = {}
        self._by_file: dict[Path, FileConfig] = {}
        # one object for "no configuration": files are grouped by config identity, and each group is one
        # analysis run with its own parse cache
        self._none = FileConfig()

    def for_path(self, path: Path) -> FileConfig:
        """Raises ConfigError for a broken configuration file."""
        if self.override is not None:
            return self.override
        d = path.resolve() if path.is_dir() else path.resolve().parent
        if d not in self._by_dir:
            found = find_pyproject(d)
            if found is None:
                self._by_dir[d] = self._none
            else:
                if found not in self._by_file:
                    self._by_file[found] = load(found)
                self._by_dir[d] = self._by_file[found]
        return self._by_dir[d]


def excludes(fc: FileConfig, exclude=None, extend_exclude=None) -> list[str]:
    """fc's `exclude` patterns, or --exclude's in their place, plus --extend-exclude's."""
    base = list(exclude) if exclude else list(_opt(fc.values.get("exclude")) or [])
    return base + list(extend_exclude or [])


def excluded(fc: FileConfig, path: str, patterns: Optional[list[str]] = None) -> bool:
    """Does fc's `exclude` (gitignore-style, relative to fc's directory; or `patterns`) cover path?"""
    import pathspec

    patterns = _opt(fc.values.get("exclude")) or [] if patterns is None else patterns
    if not patterns:
        return False
    try:
        rel = Path(path).resolve().relative_to(fc.root.resolve()).as_posix()
    except ValueError:
        return False
    return pathspec.GitIgnoreSpec.from_lines(patterns).match_file(rel)
