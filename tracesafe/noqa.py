"""`check --add-noqa`: a `# noqa: CODE` on the line of every finding, as ruff's --add-noqa.

A line that already has a `# noqa: A` gets the new codes merged into it (`# noqa: A, TS101`); a bare
`# noqa` already covers everything. A finding whose line ends inside a multi-line string cannot carry a
comment there and is left (counted as not added). Files are rewritten atomically, keeping their encoding
and line endings. Running it again adds nothing: the findings it marked are suppressed."""

from __future__ import annotations

import io
import re
import tokenize
from collections import defaultdict
from pathlib import Path

from tracesafe.analyzer.finding import Finding
from tracesafe.analyzer.source import SourceError, decode

_NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Za-z0-9]+(?:[\s,]+[A-Za-z0-9]+)*))?", re.IGNORECASE)


def _comment_lines(text: str) -> set[int]:
    """Lines (1-based) whose end is code or a comment, where a trailing comment may go: not the inside of
    a multi-line string."""
    ok: set[int] = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.COMMENT):
                ok.add(tok.start[0])
            elif tok.type == tokenize.ENDMARKER:
                ok.add(tok.start[0])
    except (tokenize.TokenError, SyntaxError):
        pass
    return ok


def _with_codes(line: str, codes: list[str]) -> str:
    body = line.rstrip("\r\n")
    end = line[len(body) :]
    m = _NOQA.search(body)
    if m is None:
        return f"{body}  # noqa: {', '.join(codes)}{end}"
    if m.group("codes") is None:
        return line  # a bare noqa covers every code
    have = [c.upper() for c in re.split(r"[\s,]+", m.group("codes")) if c]
    merged = have + [c for c in codes if not any(c.startswith(h) for h in have)]
    return f"{body[: m.start()]}# noqa: {', '.join(merged)}{body[m.end() :]}{end}"


def add_noqa(findings: list[Finding]) -> tuple[int, list[tuple[str, str]]]:
    """Add the directives; returns (lines changed, [(path, error)])."""
    from tracesafe.fixer import _encoding, atomic_write

    by_file: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for f in findings:
        if f.code not in by_file[f.path][f.line]:
            by_file[f.path][f.line].append(f.code)
    added, failed = 0, []
    for path, lines in sorted(by_file.items()):
        p = Path(path)
        try:
            data = p.read_bytes()
            text = decode(data)
        except (OSError, SourceError) as e:
            failed.append((path, f"cannot read: {getattr(e, 'strerror', None) or e}"))
            continue
        src = text.splitlines(keepends=True)
        ok = _comment_lines(text)
        n = 0
        for line, codes in lines.items():
            if line - 1 >= len(src) or line not in ok:
                continue
            new = _with_codes(src[line - 1], sorted(codes))
            if new != src[line - 1]:
                src[line - 1] = new
                n += 1
        if not n:
            continue
        try:
            atomic_write(p, "".join(src).encode(_encoding(data)), data)
        except (OSError, SourceError) as e:
            failed.append((path, f"cannot write: {getattr(e, 'strerror', None) or e}"))
            continue
        added += n
    return added, failed
