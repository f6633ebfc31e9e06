"""``[tool.tracesafe]`` in pyproject.toml: discovery, validation, merging with CLI flags."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tracesafe.analyzer import Config
from tracesafe.analyzer.rules import TARGETS, select_codes

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FORMS = ("flag", "optional", "where", "cond")
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
        raise ConfigError(f"{where}: unknown key(s) in [tool.tracesafe]: {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(KEYS))})")
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


def effective(fc: FileConfig, *, select=None, ignore=None, target=None, form=None) -> Config:
    """CLI flags (when given) override the file's values."""
    v = fc.values
    return Config(
        target=target or v.get("target", "trace"),
        select=list(select) if select else _opt(v.get("select")),
        ignore=(list(_opt(v.get("ignore")) or []) + list(ignore or [])) or None,
        entry_points=tuple(["forward", *[e for e in _opt(v.get("entry-points")) or [] if e != "forward"]]),
        per_file_ignores={k: _opt(c) or [] for k, c in v.get("per-file-ignores", {}).items()},
        form=form or v.get("form", "flag"),
    )


def _opt(v):
    return [v] if isinstance(v, str) else v
