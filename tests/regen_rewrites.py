"""Regenerate fixtures/rewrites/*.<form>.py golden rewrites (review the diff before committing)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from conftest import FIXTURES  # noqa: E402

from tracesafe.rewriters.engine import fix_source  # noqa: E402

CASES = [  # (input fixture, form)
    ("seed_formatting.py", "flag"),
    ("zoo/detection.py", "flag"),
    ("zoo/returns.py", "flag"),
    ("rewrites/where_gates.py", "where"),
]

if __name__ == "__main__":
    for rel, form in CASES:
        src = (FIXTURES / rel).read_text(encoding="utf-8")
        out = FIXTURES / "rewrites" / f"{Path(rel).stem}.{form}.py"
        out.write_text(fix_source(src, form, unsafe_fixes=True).source, encoding="utf-8")
        print(out.relative_to(FIXTURES.parent))
