"""Regenerate fixtures/golden/*.json from the current analyzer (review the diff before committing)."""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from conftest import FIXTURES, fixture_files, fixture_target  # noqa: E402

from tracesafe.analyzer import Config  # noqa: E402
from tracesafe.runner import check_paths  # noqa: E402

os.chdir(FIXTURES.parent)
runs = {}
for path in fixture_files():
    target = fixture_target(path)
    if target not in runs:
        files = [os.path.relpath(p) for p in fixture_files() if fixture_target(p) == target]
        runs[target] = check_paths(files, Config(target=target)).findings
    rel = os.path.relpath(path)
    found = [f.to_json() for f in runs[target] if f.path == rel]
    out = FIXTURES / "golden" / path.relative_to(FIXTURES).with_suffix(".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(found, indent=2) + "\n", encoding="utf-8")
    print(out.relative_to(FIXTURES.parent), len(found))

# the GitHub annotations format, for one fixture
from tracesafe import report  # noqa: E402

det = [f for f in runs["trace"] if f.path == "fixtures/zoo/detection.py"]
(FIXTURES / "golden" / "detection.github.txt").write_text(report.github(det), encoding="utf-8")
print("fixtures/golden/detection.github.txt")
