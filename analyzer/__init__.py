"""tracesafe.analyzer: find tracer-unsafe control flow in PyTorch modules with libcst."""

from typing import TYPE_CHECKING, Any

from .rules import RULES, Rule, select_codes

if TYPE_CHECKING:  # what __getattr__ loads on first use, as the type checker should see it
    from .api import analyze_root, check_source
    from .config import Config
    from .finding import Finding
    from .source import SourceError

_LAZY = {
    "Config": "config",
    "analyze_root": "api",
    "check_source": "api",
    "Finding": "finding",
    "SourceError": "source",
}


def __getattr__(name: str) -> Any:
    # libcst loads with the analysis, not with the rule registry (`tracesafe rule`, `--version`)
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Config", "Finding", "RULES", "Rule", "SourceError", "analyze_root", "check_source", "select_codes"]
