"""tracesafe.analyzer: find tracer-unsafe control flow in PyTorch modules with libcst."""

from .api import Config, analyze_root, check_source
from .finding import Finding
from .project import SourceError
from .rules import RULES, Rule, select_codes

__all__ = ["Config", "Finding", "RULES", "Rule", "SourceError", "analyze_root", "check_source", "select_codes"]
