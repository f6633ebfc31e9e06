"""Hostile input: every bad file gets a one-line error naming it and exit 2, every other file is still
processed, no traceback reaches the user, and `fix` never loses data."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

import tracesafe.fixer as fixer
from tracesafe.analyzer import Config
from tracesafe.cli import main
from tracesafe.runner import check_paths

BAD_IF = (
    "import torch.nn as nn\n\nclass M(nn.Module):\n    def forward(self, x):\n"
    "        if x.sum() > 0:\n            return x\n        return -x\n"
)
TERNARY = (
    "import torch.nn as nn\n\nclass M(nn.Module):\n    def forward(self, x):\n        return x if x.sum() else -x\n"
)


def run(*args):
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def hostile(run_in):
    w = lambda name, data: (run_in / name).write_bytes(data)  # noqa: E731
    w("good.py", BAD_IF.encode())
    w("latin.py", b"# -*- coding: latin-1 -*-\n# caf\xe9\n" + BAD_IF.encode())
    w("badutf.py", b"# caf\xe9\n" + BAD_IF.encode())
    w("nul.py", b"x = 1\x00\n")
    w("empty.py", b"")
    w("syntax.py", b"def forward(self:\n")
    w("bom.py", b"\xef\xbb\xbf" + BAD_IF.encode())
    (run_in / "dir.py").mkdir()
    os.symlink("loop.py", run_in / "loop.py")
    os.symlink("missing.py", run_in / "dangling.py")
    (run_in / "sub").mkdir()
    os.symlink("..", run_in / "sub" / "up")  # a directory loop
    return run_in


EXPECTED_ERRORS = {
    "badutf.py": "cannot decode source",
    "nul.py": "source contains a NUL byte",
    "syntax.py": "syntax error at 1:12: '(' was never closed",
    "dir.py": "is a directory, not a Python file",
    "loop.py": "symlink loop",
    "dangling.py": "broken symlink",
    "nope.py": "no such file or directory",
}


def test_check_reports_each_bad_file_in_one_line_and_the_rest(hostile):
    r = run("check", "--no-cache", ".", "nope.py")
    assert r.exit_code == 2
    errors = [line for line in r.stderr.splitlines() if ": error: " in line]
    assert {e.split(": error: ")[0]: e.split(": error: ")[1] for e in errors}.keys() == EXPECTED_ERRORS.keys()
    for e in errors:
        name, msg = e.split(": error: ")
        assert EXPECTED_ERRORS[name] in msg
    found = {line.split(":")[0] for line in r.stdout.splitlines()}
    assert found == {"good.py", "latin.py", "bom.py"}  # PEP 263 cookie and BOM honoured; empty.py is clean
    assert "Traceback" not in r.output


def test_fix_processes_the_others_and_keeps_encodings(hostile):
    r = run("fix", "--form", "where", "--unsafe-fixes", ".")
    assert r.exit_code == 2 and "Traceback" not in r.output
    latin = (hostile / "latin.py").read_bytes()
    assert latin.startswith(b"# -*- coding: latin-1 -*-\n") and b"caf\xe9" in latin and b"torch.where" in latin
    bom = (hostile / "bom.py").read_bytes()
    assert bom.startswith(b"\xef\xbb\xbf") and bom.count(b"\xef\xbb\xbf") == 1 and b"torch.where" in bom
    assert (hostile / "badutf.py").read_bytes().startswith(b"# caf\xe9\n")  # untouched
    assert (hostile / "nul.py").read_bytes() == b"x = 1\x00\n"


def test_crlf_missing_final_newline_and_permissions_are_kept(run_in):
    f = run_in / "m.py"
    f.write_bytes(TERNARY.rstrip("\n").replace("\n", "\r\n").encode())
    os.chmod(f, 0o751)
    assert run("fix", "--form", "where", "m.py").exit_code == 1
    data = f.read_bytes()
    assert b"torch.where(x.sum() != 0, x, -x)" in data
    assert data.count(b"\r\n") == data.count(b"\n") and not data.endswith(b"\n")
    assert stat.S_IMODE(f.stat().st_mode) == 0o751


def test_file_changed_on_disk_between_read_and_write_is_left_alone(run_in, monkeypatch):
    f = run_in / "m.py"
    f.write_text(TERNARY, encoding="utf-8")
    real = fixer.fix_source

    def racing(*a, **k):
        res = real(*a, **k)
        f.write_text(TERNARY + "# edited meanwhile\n", encoding="utf-8")  # someone saves the file
        return res

    monkeypatch.setattr(fixer, "fix_source", racing)
    r = run("fix", "--form", "where", "m.py")
    assert r.exit_code == 2 and "m.py: error: changed on disk while it was being fixed; left alone" in r.stderr
    assert f.read_text(encoding="utf-8").endswith("# edited meanwhile\n")


def test_nothing_is_written_when_the_rewrite_does_not_parse(run_in, monkeypatch):
    f = run_in / "m.py"
    f.write_text(TERNARY, encoding="utf-8")
    real = fixer.fix_source

    def broken(*a, **k):
        res = real(*a, **k)
        res.source = res.source.replace("torch.where(", "torch.where((")
        return res

    monkeypatch.setattr(fixer, "fix_source", broken)
    r = run("fix", "--form", "where", "m.py")
    assert r.exit_code == 2 and "the rewrite did not parse; left unchanged" in r.stderr
    assert f.read_text(encoding="utf-8") == TERNARY
    assert not [p for p in run_in.iterdir() if p.name.endswith(".tstmp")]


def test_a_rewrite_that_does_not_parse_is_an_internal_error(run_in, monkeypatch):
    """The pass after a rewrite indexes it with CPython's parser: that is the rewrite's syntax check, and
    its failure is the tool's, not the user's file's."""
    from tracesafe.rewriters import engine

    f = run_in / "m.py"
    f.write_text(TERNARY, encoding="utf-8")
    real = engine._apply_in_place
    monkeypatch.setattr(engine, "_apply_in_place", lambda *a: real(*a).replace("torch.where(", "torch.where(("))
    r = run("fix", "--form", "where", "m.py")
    assert r.exit_code == 2 and "m.py: error: internal: the rewrite did not parse (syntax error at" in r.stderr
    assert f.read_text(encoding="utf-8") == TERNARY


def test_files_that_vanish_or_become_unreadable_mid_run(run_in, monkeypatch):
    (run_in / "a.py").write_text(BAD_IF, encoding="utf-8")
    (run_in / "b.py").write_text(BAD_IF, encoding="utf-8")
    res = check_paths(["a.py", "gone.py", "b.py"], Config())  # gone.py was discovered, then deleted
    assert res.errors == [("gone.py", "cannot read: No such file or directory")]
    assert {f.path for f in res.findings} == {"a.py", "b.py"}
    real = Path.read_bytes

    def deny(self):
        if self.name == "b.py":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", deny)
    res = check_paths(["a.py", "b.py"], Config())
    assert res.errors == [("b.py", "cannot read: Permission denied")] and {f.path for f in res.findings} == {"a.py"}
    r = run("fix", "--form", "where", "a.py", "b.py")
    assert r.exit_code == 2 and "b.py: error: cannot read: Permission denied" in r.stderr


def test_internal_errors_are_one_line_unless_debug(run_in, monkeypatch):
    import tracesafe.runner as runner

    def boom(*a, **k):
        raise ValueError("synthetic failure\nsecond line")

    monkeypatch.setattr(runner, "check_paths", boom)
    (run_in / "m.py").write_text(BAD_IF, encoding="utf-8")
    r = run("check", "m.py")
    assert r.exit_code == 2
    assert r.stderr.strip() == "tracesafe: internal error: ValueError: synthetic failure (run with --debug for details)"
    r = run("--debug", "check", "m.py")
    assert "Traceback" in r.stderr


def test_definitions_libcst_cannot_parse(run_in, monkeypatch):
    """`check` parses reached definitions with libcst after CPython indexed the module. When libcst's
    grammar rejects one (newer syntax), the file being checked gets one line naming the definition and
    its real line; a helper in another file is left unresolved and the root is still checked."""
    import libcst as cst

    from tracesafe.analyzer import SourceError, check_source

    real = cst.parse_module

    def picky(text, *a, **k):
        if "def helper" in text:
            raise cst.ParserSyntaxError("newer syntax", lines=text.splitlines(True), raw_line=3, raw_column=4)
        return real(text, *a, **k)

    monkeypatch.setattr(cst, "parse_module", picky)
    own = (
        BAD_IF.replace("        return -x\n", "        return helper(x)\n\n")
        + "def helper(t):\n    u = t\n    return u\n"
    )
    with pytest.raises(SourceError, match=r"^libcst cannot parse `helper`: syntax error at 11:5: newer syntax$"):
        check_source(own, "own.py")
    (run_in / "pkg").mkdir()
    (run_in / "pkg" / "__init__.py").write_text("")
    (run_in / "pkg" / "util.py").write_text("def helper(t):\n    u = t\n    return u\n")
    (run_in / "pkg" / "model.py").write_text(
        "from .util import helper\n" + BAD_IF.replace("        return -x\n", "        return helper(x)\n")
    )
    res = check_paths(["pkg/model.py", "pkg/util.py"], Config())
    assert [(f.path, f.line, f.code) for f in res.findings] == [("pkg/model.py", 6, "TS101")]
    assert res.errors == []
