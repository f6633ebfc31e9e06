"""Real code: the transformers 5.24.0 source (downloaded with pip) through `check`: nothing may crash.
`fix` over the whole source, once per form, with the models run before and after, is
tests/test_real_behaviour.py. Marked slow; `.ci/run` runs it."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

pytestmark = pytest.mark.slow

WHEEL = "transformers==5.24.0"


@pytest.fixture(scope="module")
def transformers_src(tmp_path_factory):
    dest = tmp_path_factory.mktemp("transformers")
    p = subprocess.run(
        [sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "-d", str(dest), "-q"],
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        pytest.skip(f"cannot download {WHEEL}: {p.stderr.strip().splitlines()[-1:]}")
    wheel = next(dest.glob("transformers-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        z.extractall(dest / "src")
    return dest / "src"


def _tracesafe(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "tracesafe", *args], cwd=cwd, capture_output=True, text=True, timeout=1800
    )


def test_check_the_whole_source(transformers_src):
    p = _tracesafe("check", "--no-cache", "--statistics", "transformers", cwd=transformers_src)
    assert p.returncode in (0, 1), p.stderr[-3000:]
    assert "internal error" not in p.stderr and "Traceback" not in p.stderr
    assert "TS101" in p.stdout  # it does find things in real models
