"""Ground truth: torch.jit.trace on every runnable fixture model.

Every line the tracer warns on (TracerWarning) must be flagged by a TS1xx finding, and every TS1xx
finding on a line the tracer executed must be confirmed by a warning on it. No exceptions list.
(TS2xx concern output signatures, which the tracer does not warn about; TS301 is script-only.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tracesafe.analyzer import Config  # noqa: E402
from tracesafe.runner import check_paths  # noqa: E402

from conftest import FIXTURES, fixture_files, fixture_target  # noqa: E402
from tracer_truth import load_fixture, trace_truth  # noqa: E402

pytestmark = pytest.mark.torch

FILES = [p for p in fixture_files() if fixture_target(p) == "trace"]
ALL = {str(p.resolve()) for p in FILES}


@pytest.fixture(scope="module")
def flagged():
    res = check_paths([os.path.relpath(p) for p in FILES], Config(target="trace"))
    out: dict[str, list] = {}
    for f in res.findings:
        if f.code.startswith("TS1"):
            out.setdefault(str(Path(f.path).resolve()), []).append((f.line, f.end_line, f.code))
    return out


def _cases():
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        if "TRACE_CASES" not in text:
            continue
        mod = load_fixture(path, FIXTURES)
        for i, (cls, init, make) in enumerate(mod.TRACE_CASES):
            yield pytest.param(mod, cls, init, make, id=f"{path.relative_to(FIXTURES)}::{cls}#{i}")


@pytest.mark.parametrize("mod,cls,init,make", list(_cases()))
def test_tracer_agrees(mod, cls, init, make, flagged):
    torch.manual_seed(0)
    model = getattr(mod, cls)(**init).eval()
    warned, executed = trace_truth(model, make(), ALL)
    assert executed, "the trace ran no line of the fixtures"
    missed, unconfirmed = [], []
    for fn in ALL:
        spans = flagged.get(fn, [])
        for line in sorted(warned.get(fn, ())):
            if not any(a <= line <= b for a, b, _ in spans):
                missed.append(f"{Path(fn).name}:{line}")
        for a, b, code in spans:
            if a in executed.get(fn, ()) and not any(a <= w <= b for w in warned.get(fn, ())):
                unconfirmed.append(f"{Path(fn).name}:{a} {code}")
    assert not missed, f"tracer warned, tracesafe silent: {missed}"
    assert not unconfirmed, f"flagged and executed, but the tracer did not warn: {unconfirmed}"


def test_every_runnable_fixture_is_covered():
    ids = [p.id for p in _cases()]
    assert len(ids) >= 12
    assert any("clean_patterns" in i for i in ids)  # the no-finding file is traced too
