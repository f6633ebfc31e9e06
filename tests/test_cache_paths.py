"""The cache never changes an answer (issue 21.1): any sequence of `check` and `fix --diff` runs, from any
directory of the project, naming files in any spelling (relative, absolute, `./x`, `a/../a`, through a
symlinked folder, a folder or a file), prints exactly what `--no-cache` prints for that run and exits alike."""

from __future__ import annotations

import os
import re
import textwrap

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracesafe.cli import main

NET = textwrap.dedent("""
    import torch
    import torch.nn as nn
    from .helpers import gate


    class Net(nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                return None
            return gate(x)
""")
# gate's finding exists only in the context net.py calls it with: another root's reach
HELPERS = {True: "def gate(v):\n    return v * v.item()\n", False: "def gate(v):\n    return v * 2\n"}
CWDS = [".", "pkg", "deep/er"]
SPELLINGS = ["rel", "abs", "dot", "updown", "link", "dir", "linkdir", "absdir"]


def _spell(kind: str, cwd: str, root: str) -> list[str]:
    here = os.path.join(root, cwd)
    pkg = os.path.relpath(os.path.join(root, "pkg"), here)
    link = os.path.relpath(os.path.join(root, "link"), here)
    files = ["net.py", "helpers.py"]
    return {
        "rel": [os.path.join(pkg, f) for f in files],
        "abs": [os.path.join(root, "pkg", f) for f in files],
        "dot": ["./" + os.path.join(pkg, f) for f in files],
        "updown": [os.path.join(pkg, "..", "pkg", f) for f in files],
        "link": [os.path.join(link, f) for f in files],
        "dir": [pkg],
        "linkdir": [link + os.sep],
        "absdir": [os.path.join(root, "pkg")],
    }[kind]


def _run(args: list[str]) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    err = r.stderr
    if args[0] == "fix":  # the summary's count, and what is left where
        m = re.search(r"(\d+) finding\(s\) would remain", err)
        err = m.group(1) if m else err
    return r.exit_code, r.stdout, err


@pytest.fixture
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("proj")
    (root / ".git").mkdir()
    (root / "pyproject.toml").write_text('[tool.tracesafe]\ntarget = "trace"\n')
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "net.py").write_text(NET)
    (root / "pkg" / "helpers.py").write_text(HELPERS[True])
    (root / "deep" / "er").mkdir(parents=True)
    os.symlink("pkg", root / "link")
    return str(root)


STEP = st.tuples(
    st.sampled_from(["check", "fix"]),
    st.sampled_from(CWDS),
    st.sampled_from(SPELLINGS),
    st.booleans(),
    st.integers(0, 2),
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, min_size=2, max_size=6))
def test_cached_runs_answer_as_no_cache_from_any_directory_and_spelling(project, steps):
    old = os.getcwd()
    try:
        for command, cwd, spelling, helper_unsafe, jobs in steps:
            with open(os.path.join(project, "pkg", "helpers.py"), "w") as f:
                f.write(HELPERS[helper_unsafe])
            os.chdir(os.path.join(project, cwd))
            paths = _spell(spelling, cwd, project)
            args = (
                ["check", "--jobs", str(jobs)]
                if command == "check"
                else ["fix", "--diff", "--unsafe-fixes", "--jobs", str(jobs)]
            )
            got = _run(args + paths)
            if command == "check":
                assert got == _run(["check", "--no-cache"] + args[1:] + paths), (cwd, paths)
                # the answer itself: net.py's two findings always, helpers.py's when it converts
                assert got[0] == 1 and got[1].count("net.py:") == 2
                assert ("helpers.py:2:16: TS106" in got[1]) == helper_unsafe
            else:
                # what would remain is counted alike from anywhere, in any spelling
                os.chdir(project)
                ref = _run(args + ["pkg"])
                assert (got[0], got[2]) == (ref[0], ref[2]) and got[2] == ("2" if helper_unsafe else "1"), (cwd, paths)
    finally:
        os.chdir(old)


def test_a_cache_filled_from_a_subdirectory_serves_the_root(project):
    """The reported sequence: filled from pkg/, read from the root by file and by folder."""
    old = os.getcwd()
    try:
        os.chdir(os.path.join(project, "pkg"))
        assert _run(["check", "."])[0] == 1
        os.chdir(project)
        for paths in (["pkg/net.py"], ["."], ["link/net.py"]):
            code, out, _ = _run(["check"] + paths)
            assert code == 1 and out.count("net.py:") == 2, paths
        assert _run(["fix", "--diff", "pkg/net.py"])[2] == "2"  # TS201 has only an unsafe fix
    finally:
        os.chdir(old)
