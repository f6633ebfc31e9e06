"""The README's figures are written by the benchmarks that measure them, between markers:

    <!-- NAME:begin -->
    ...table...
    <!-- NAME:end -->

`write_block(NAME, text)` replaces what is between a pair (run.py: `speed`, accuracy.py: `precision`,
rescue.py: `rescue`)."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def write_block(name: str, text: str, readme: Path = README) -> None:
    body = readme.read_text(encoding="utf-8")
    start, end = f"<!-- {name}:begin -->\n", f"<!-- {name}:end -->"
    if start not in body or end not in body:
        raise SystemExit(f"{readme.name} has no `{name}` markers")
    a, b = body.index(start) + len(start), body.index(end)
    readme.write_text(body[:a] + text.rstrip("\n") + "\n" + body[b:], encoding="utf-8")
