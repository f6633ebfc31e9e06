"""Regenerate the golden rewrites in fixtures/rewrites/ (review the diff before committing):
`<stem>.<form>.py` for each rewrite case, `refusals.<form>.txt` for the refusal fixture."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from conftest import FIXTURES  # noqa: E402

from tracesafe.rewriters.engine import FORMS, fix_source  # noqa: E402

CASES = [  # (input fixture, form)
    ("seed_formatting.py", "flag"),
    ("seed_formatting.py", "optional"),
    ("zoo/detection.py", "flag"),
    ("zoo/returns.py", "flag"),
    ("zoo/returns.py", "optional"),
    ("rewrites/where_gates.py", "where"),
    ("rewrites/where_gates.py", "cond"),
    ("rewrites/cond_gates.py", "cond"),
    ("rewrites/cond_gates.py", "where"),
    ("rewrites/python_tests.py", "where"),
    ("rewrites/python_tests.py", "cond"),
    ("rewrites/sizes.py", "cond"),
]
REFUSALS = FIXTURES / "rewrites" / "refusals.py"


def refusal_lines(source: str, form: str) -> str:
    """Each refusal at its place in the fixed source, with that line's text (positions are the file's as
    written, so the golden shows what they point at)."""
    res = fix_source(source, form, unsafe_fixes=True)
    lines = res.source.splitlines()
    return "".join(
        f"{p.position[0]}:{p.position[1]} {'/'.join(sorted(p.codes))} {p.reason} || "
        f"{lines[p.position[0] - 1].strip()}\n"
        for p in res.refused
    )


if __name__ == "__main__":
    for rel, form in CASES:
        src = (FIXTURES / rel).read_text(encoding="utf-8")
        out = FIXTURES / "rewrites" / f"{Path(rel).stem}.{form}.py"
        out.write_text(fix_source(src, form, unsafe_fixes=True).source, encoding="utf-8")
        print(out.relative_to(FIXTURES.parent))
    for form in FORMS:
        out = REFUSALS.with_name(f"refusals.{form}.txt")
        out.write_text(refusal_lines(REFUSALS.read_text(encoding="utf-8"), form), encoding="utf-8")
        print(out.relative_to(FIXTURES.parent))
