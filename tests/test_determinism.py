"""Findings never depend on the order files are analysed in, on batches or on the number of jobs (issue:
a library summary's converged state must not depend on the root that computed it). The fixture tree in
several orders, with 1 and 2 jobs; and, marked slow, a slice of transformers with --target dynamo."""

from __future__ import annotations

import os
import random

import pytest

from tracesafe.analyzer import Config
from tracesafe.runner import check_paths

from conftest import FIXTURES, fixture_files, fixture_target


def _orders(files: list[str], n: int) -> list[list[str]]:
    rnd = random.Random(0)
    out = [list(files), list(reversed(files))]
    for _ in range(n):
        f = list(files)
        rnd.shuffle(f)
        out.append(f)
    return out


@pytest.mark.parametrize("target", ["trace", "dynamo"])
def test_fixture_findings_do_not_depend_on_order_or_jobs(target, monkeypatch):
    monkeypatch.chdir(FIXTURES.parent)
    files = [os.path.relpath(p) for p in fixture_files() if fixture_target(p) == "trace"]
    runs = []
    for order in _orders(files, 3):
        for jobs in (1, 2):
            runs.append(check_paths(order, Config(target=target), jobs=jobs).findings)
    assert runs[0] and all(r == runs[0] for r in runs)


@pytest.mark.slow
def test_transformers_dynamo_findings_do_not_depend_on_order():
    transformers = pytest.importorskip("transformers")
    from pathlib import Path

    pkg = Path(transformers.__file__).resolve().parent
    # shared modules (masking, attention, generation) reached from many model files, and those model files
    files = [str(p) for p in sorted((pkg / "models").glob("*/modeling_*.py"))][:80]
    files += [str(pkg / m) for m in ("masking_utils.py", "modeling_utils.py", "integrations/sdpa_attention.py")]
    runs = [check_paths(order, Config(target="dynamo"), jobs=2).findings for order in _orders(files, 1)]
    assert runs[0] and all(r == runs[0] for r in runs)
