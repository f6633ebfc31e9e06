"""Reporters: text and json (DESIGN.md §4), SARIF 2.1.0 and GitHub annotations for CI, statistics."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from tracesafe import __version__
from tracesafe.analyzer import Finding
from tracesafe.analyzer.rules import RULES


def text(findings: list[Finding], color: bool = False) -> str:
    """`path:line:col: CODE message`, one per line; with color, as ruff styles it (bold path, the code
    red for an error and yellow for a warning)."""
    if not color:
        lines = [f"{f.path}:{f.line}:{f.column}: {f.code} {f.message}" for f in findings]
    else:
        from click import style

        lines = [
            f"{style(f.path, bold=True)}{style(':', fg='cyan')}{f.line}{style(':', fg='cyan')}{f.column}"
            f"{style(':', fg='cyan')} {style(f.code, fg='red' if f.severity == 'error' else 'yellow', bold=True)}"
            f" {f.message}"
            for f in findings
        ]
    return "\n".join(lines) + ("\n" if lines else "")


def use_color(choice: str, stream) -> bool:
    """--color: `always`, `never`, or `auto` = a terminal, unless NO_COLOR is set (no-color.org)."""
    import os

    if choice != "auto":
        return choice == "always"
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def as_json(findings: list[Finding]) -> str:
    return json.dumps([f.to_json() for f in findings], indent=2) + "\n"


def statistics(findings: list[Finding], unsafe_fixes: bool = False) -> str:
    """A count per rule and a total. Like ruff, a fix counts as fixable when `fix` applies it by default
    (safe), or with --unsafe-fixes also when it is unsafe; the unsafe ones are otherwise named apart."""
    counts = Counter(f.code for f in findings)
    safe = Counter(f.code for f in findings if f.fix and f.fix.get("applicability") == "safe")
    unsafe = Counter(f.code for f in findings if f.fix and f.fix.get("applicability") != "safe")
    fixable = safe + unsafe if unsafe_fixes else safe
    rows = [f"{counts[c]:5d}  {c}  {RULES[c].name:<22} [{fixable[c]} fixable]" for c in sorted(counts)]
    if not rows:
        return ""
    n, m, hidden = sum(counts.values()), sum(fixable.values()), 0 if unsafe_fixes else sum(unsafe.values())
    total = f"Found {n} finding{'s' if n != 1 else ''}; {m} fixable with `tracesafe fix`"
    if hidden:
        total += f" ({hidden} more with --unsafe-fixes)"
    return "\n".join(rows) + "\n" + total + ".\n"


def statistics_json(findings: list[Finding], unsafe_fixes: bool = False) -> str:
    """--statistics --format json: ruff's shape, one object per rule (code, name, count, fixable), with the
    unsafe fixes counted apart unless --unsafe-fixes counts them as fixable."""
    counts = Counter(f.code for f in findings)
    safe = Counter(f.code for f in findings if f.fix and f.fix.get("applicability") == "safe")
    unsafe = Counter(f.code for f in findings if f.fix and f.fix.get("applicability") != "safe")
    rows = [
        {
            "code": c,
            "name": RULES[c].name,
            "count": counts[c],
            "fixable": safe[c] + (unsafe[c] if unsafe_fixes else 0),
            "unsafe_fixable": 0 if unsafe_fixes else unsafe[c],
        }
        for c in sorted(counts)
    ]
    return json.dumps(rows, indent=2) + "\n"


# ------------------------------------------------------------------------------------------------ GitHub
def _gh_escape(s: str, prop: bool = False) -> str:
    s = s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return s.replace(":", "%3A").replace(",", "%2C") if prop else s


def github(findings: list[Finding]) -> str:
    """GitHub Actions workflow commands: one annotation per finding."""
    out = []
    for f in findings:
        level = "error" if f.severity == "error" else "warning"
        out.append(
            f"::{level} file={_gh_escape(f.path, True)},line={f.line},col={f.column},endLine={f.end_line},"
            f"endColumn={f.end_column},title={_gh_escape(f'tracesafe ({f.code})', True)}::"
            f"{_gh_escape(f.message)}"
        )
    return "\n".join(out) + ("\n" if out else "")


# ------------------------------------------------------------------------------------------------ SARIF
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def _uri(path: str, root: Path) -> str:
    p = Path(path)
    try:
        return (p.resolve().relative_to(root.resolve())).as_posix()
    except ValueError:
        return p.resolve().as_uri()


def _line_text(path: str, line: int, cache: dict) -> str:
    if path not in cache:
        try:
            cache[path] = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            cache[path] = []
    lines = cache[path]
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""


def _fixes(findings: list[Finding]) -> dict:
    """path -> a SARIF fix (the changed line span of the whole file), for files with fixable findings.
    Computed with the same form the `fix` field names; unsafe fixes say so in the description."""
    from tracesafe.rewriters.engine import fix_source

    out = {}
    for path in sorted({f.path for f in findings if f.fix}):
        form = next(f.fix["form"] for f in findings if f.path == path and f.fix)
        try:
            src = Path(path).read_text(encoding="utf-8")
            new = fix_source(src, form, unsafe_fixes=True, path=path).source
        except Exception:  # noqa: BLE001 - a report without a fix beats no report
            continue
        a, b = src.splitlines(keepends=True), new.splitlines(keepends=True)
        if a == b:
            continue
        start = 0
        while start < min(len(a), len(b)) and a[start] == b[start]:
            start += 1
        end_a, end_b = len(a), len(b)
        while end_a > start and end_b > start and a[end_a - 1] == b[end_b - 1]:
            end_a, end_b = end_a - 1, end_b - 1
        region = {"startLine": start + 1, "startColumn": 1}
        region.update(
            {"endLine": end_a + 1, "endColumn": 1}
            if end_a < len(a)
            else {"endLine": max(end_a, start + 1), "endColumn": len(a[end_a - 1]) + 1 if end_a else 1}
        )
        out[path] = (form, region, "".join(b[start:end_b]))
    return out


def sarif(findings: list[Finding], root: Path) -> str:
    """SARIF 2.1.0: rules from the registry, repo-relative URIs, 1-based regions, stable fingerprints."""
    codes = list(RULES)
    rules = []
    for code in codes:
        r = RULES[code]
        rules.append(
            {
                "id": code,
                "name": r.name,
                "shortDescription": {"text": r.summary},
                "fullDescription": {"text": r.what},
                "help": {"text": r.docs(), "markdown": r.docs()},
                "defaultConfiguration": {"level": "error" if r.severity == "error" else "warning"},
                "properties": {"targets": list(r.targets), "fixForms": list(r.forms)},
            }
        )
    lines: dict = {}
    seen: Counter = Counter()
    fixes = _fixes(findings)
    results = []
    for f in findings:
        uri = _uri(f.path, root)
        # stable across runs and unrelated edits: what is flagged and where (by text), not the line number
        key = f"{uri}\0{f.code}\0{f.function}\0{_line_text(f.path, f.line, lines)}"
        seen[key] += 1
        fp = hashlib.sha256(f"{key}\0{seen[key]}".encode()).hexdigest()[:32]
        res: dict[str, Any] = {
            "ruleId": f.code,
            "ruleIndex": codes.index(f.code),
            "level": "error" if f.severity == "error" else "warning",
            "message": {"text": f.message},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": uri, "uriBaseId": "%SRCROOT%"}
                        if not uri.startswith("file:")
                        else {"uri": uri},
                        "region": {
                            "startLine": f.line,
                            "startColumn": f.column,
                            "endLine": f.end_line,
                            "endColumn": f.end_column,
                        },
                    }
                }
            ],
            "partialFingerprints": {"tracesafe/v1": fp},
        }
        if f.fix and f.path in fixes:
            # one edit rewrites every fixable finding of the file: it goes on the file's first fixable
            # result only, so a consumer applying each result's fix applies it once (never overlapping)
            form, region, inserted = fixes.pop(f.path)
            covered = [g for g in findings if g.path == f.path and g.fix]
            unsafe = any(g.fix is not None and g.fix["applicability"] == "unsafe" for g in covered)
            where = ", ".join(f"{g.code} at line {g.line}" for g in covered)
            res["fixes"] = [
                {
                    "description": {
                        "text": f"tracesafe fix --form {form}{' --unsafe-fixes' if unsafe else ''}: "
                        f"one edit for this file's {len(covered)} fixable finding(s) ({where})"
                    },
                    "artifactChanges": [
                        {
                            "artifactLocation": res["locations"][0]["physicalLocation"]["artifactLocation"],
                            "replacements": [{"deletedRegion": region, "insertedContent": {"text": inserted}}],
                        }
                    ],
                }
            ]
        results.append(res)
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "tracesafe",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "informationUri": "https://github.com/tracesafe/tracesafe",
                        "rules": rules,
                    }
                },
                "originalUriBaseIds": {"%SRCROOT%": {"uri": root.resolve().as_uri() + "/"}},
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


__all__ = ["text", "as_json", "statistics", "github", "sarif"]
