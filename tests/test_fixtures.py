"""Golden fixtures: each fixture's `# expect:` markers are exactly what `check` reports, and the
full findings (spans, messages) match the golden JSON beside them."""

from __future__ import annotations

import json
import os

import pytest

from tracesafe.analyzer import Config, Finding
from tracesafe.analyzer.api import analyze_root
from tracesafe.analyzer.project import Project
from tracesafe.runner import check_paths

from conftest import FIXTURES, expected_marks, fixture_files, fixture_target

GOLDEN = FIXTURES / "golden"


_RUNS: dict = {}


def _findings(path):
    """Findings in `path` from one check of every fixture of its target (helpers are reached across files)."""
    target = fixture_target(path)
    if target not in _RUNS:
        files = [os.path.relpath(p, FIXTURES.parent) for p in fixture_files() if fixture_target(p) == target]
        _RUNS[target] = check_paths(files, Config(target=target)).findings
    rel = os.path.relpath(path, FIXTURES.parent)
    return [f for f in _RUNS[target] if f.path == rel]


@pytest.fixture(autouse=True)
def _cwd_root(monkeypatch):
    monkeypatch.chdir(FIXTURES.parent)


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: str(p.relative_to(FIXTURES)))
def test_markers_match_findings(path):
    got = sorted((f.line, f.code) for f in _findings(path))
    assert got == expected_marks(path)


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: str(p.relative_to(FIXTURES)))
def test_golden_json(path):
    golden = GOLDEN / path.relative_to(FIXTURES).with_suffix(".json")
    got = [f.to_json() for f in _findings(path)]
    assert golden.exists(), "missing golden file; run `python tests/regen_golden.py`"
    assert got == json.loads(golden.read_text(encoding="utf-8"))


def test_every_fixture_has_expectations_or_is_clean():
    marked = [p for p in fixture_files() if expected_marks(p)]
    assert len(marked) >= 8


def test_whole_tree_identical_with_jobs_cache_and_prefilter(tmp_path):
    files = [os.path.relpath(p) for p in fixture_files() if fixture_target(p) == "trace"]
    base = check_paths(files, Config(), jobs=1, prefilter=False).findings
    assert base
    assert check_paths(files, Config(), jobs=1, prefilter=True).findings == base
    assert check_paths(files, Config(), jobs=2, prefilter=True).findings == base
    cold = check_paths(files, Config(), jobs=1, cache_root=tmp_path).findings
    warm = check_paths(files, Config(), jobs=1, cache_root=tmp_path).findings
    assert cold == base and warm == base
    assert list(tmp_path.joinpath(".tracesafe_cache").glob("*.json"))
    # `check` parses reached definitions only; `fix` parses whole modules: the same findings
    whole = Project(whole=True)
    only = {os.path.abspath(f) for f in files}
    got = {f for p in files for f in analyze_root(p, open(p, "rb").read(), Config(), whole, only).findings}
    assert sorted(got, key=Finding.sort_key) == base
