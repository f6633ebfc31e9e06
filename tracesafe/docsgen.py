"""docs/rules.md from the rule registry: `python -m tracesafe.docsgen > docs/rules.md` (a test fails when
the file is stale)."""

from __future__ import annotations

from tracesafe.analyzer.rules import RULES


def rules_markdown() -> str:
    out = [
        "# Rules",
        "",
        "Generated from the rule registry (`analyzer/rules.py`) by "
        "`python -m tracesafe.docsgen > docs/rules.md`; `tracesafe rule CODE` prints the same text.",
        "",
        "| code | name | severity | targets | fix forms | summary |",
        "|---|---|---|---|---|---|",
    ]
    for r in RULES.values():
        out.append(
            f"| [{r.code}](#{r.code.lower()}-{r.name}) | {r.name} | {r.severity} | {', '.join(r.targets)} | "
            f"{', '.join(r.forms) or '—'} | {r.summary} |"
        )
    out.append("")
    for r in RULES.values():
        out.append(r.docs().replace(f"# {r.code} {r.name}", f"## {r.code} {r.name}", 1).replace("\n## ", "\n### "))
    return "\n".join(out)


if __name__ == "__main__":
    print(rules_markdown(), end="")
