"""Reporters: text, json (DESIGN.md §4)."""

from __future__ import annotations

import json
from collections import Counter

from tracesafe.analyzer import Finding
from tracesafe.analyzer.rules import RULES


def text(findings: list[Finding]) -> str:
    lines = [f"{f.path}:{f.line}:{f.column}: {f.code} {f.message}" for f in findings]
    return "\n".join(lines) + ("\n" if lines else "")


def as_json(findings: list[Finding]) -> str:
    return json.dumps([f.to_json() for f in findings], indent=2) + "\n"


def statistics(findings: list[Finding]) -> str:
    counts = Counter(f.code for f in findings)
    fixable = Counter(f.code for f in findings if f.fix)
    rows = [f"{counts[c]:5d}  {c}  {RULES[c].name:<22} [{fixable[c]} fixable]" for c in sorted(counts)]
    return "\n".join(rows) + ("\n" if rows else "")
