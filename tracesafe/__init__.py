"""tracesafe: find, fix and prove tracer-unsafe control flow in PyTorch models.

Importing this package never imports torch: the export stage lives in ``tracesafe.export``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Optional

__version__ = "0.1.0"

if TYPE_CHECKING:  # what __getattr__ loads on first use, as the type checker should see it
    from tracesafe.analyzer import Config, Finding, SourceError
    from tracesafe.runner import RunResult


def __getattr__(name: str) -> Any:
    # the analyzer (and libcst, a third of a second to import) loads on first use: `tracesafe --version`,
    # `tracesafe rule` and a cached pre-commit run never need it
    if name in ("Config", "Finding", "SourceError"):
        from tracesafe import analyzer

        return getattr(analyzer, name)
    raise AttributeError(f"module 'tracesafe' has no attribute {name!r}")


def check_source(source: str | bytes, path: str = "<string>", config: Optional[Config] = None) -> list[Finding]:
    """Findings for one source string, each with the fix the configured form offers (`fix` field).
    Raises SourceError (one line) when it does not parse."""
    from tracesafe.analyzer.api import check_source as _check
    from tracesafe.rewriters.engine import safe_fix_fields

    return _check(source, path, config, plan=safe_fix_fields)


def check_paths(paths: Iterable[str], config: Optional[Config] = None, **kwargs: Any) -> RunResult:
    """Findings and per-file errors for files and directories (see ``tracesafe.runner.check_paths``)."""
    from tracesafe.discover import discover
    from tracesafe.runner import check_paths as _run

    from tracesafe.analyzer import Config

    files, errors = [], []
    for p, err in discover(list(paths), [], None):
        if err:
            errors.append((p, err))
        else:
            files.append(p)
    res = _run(files, config or Config(), **kwargs)
    res.errors = sorted(set(res.errors) | set(errors))
    return res


def fix_source(
    source: str,
    form: str = "flag",
    *,
    unsafe_fixes: bool = False,
    path: str = "<string>",
    codes: Optional[set[str]] = None,
) -> str:
    """The source rewritten with one form, for the findings of `codes` (a set of rule codes; default all)
    (``tracesafe.rewriters.engine.fix_source`` also says what was applied, skipped as unsafe, or refused
    and why)."""
    from tracesafe.rewriters.engine import fix_source as _fix

    return _fix(source, form, unsafe_fixes=unsafe_fixes, path=path, codes=codes).source


__all__ = ["Config", "Finding", "SourceError", "check_paths", "check_source", "fix_source", "__version__"]
