from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SHARED = ROOT.parent / "shared"

_EXPECT = re.compile(r"#\s*expect:\s*(?P<codes>TS\d{3}(?:\s*,\s*TS\d{3})*)")
_TARGET = re.compile(r"#\s*tracesafe-target:\s*(\w+)")


def fixture_files() -> list[Path]:
    return sorted(p for p in FIXTURES.rglob("*.py") if "golden" not in p.parts and "rewrites" not in p.parts)


def expected_marks(path: Path) -> list[tuple[int, str]]:
    """(line, code) pairs from `# expect: TS101, TS106` markers, one entry per code occurrence."""
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = _EXPECT.search(line)
        if m:
            out.extend((i, c.strip()) for c in m.group("codes").split(","))
    return sorted(out)


def fixture_target(path: Path) -> str:
    m = _TARGET.search(path.read_text(encoding="utf-8"))
    return m.group(1) if m else "trace"


@pytest.fixture
def run_in(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path
