"""The `tracesafe check` contract (DESIGN.md §4) through click's CliRunner and a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import click
import pytest
from click.testing import CliRunner

from tracesafe.cli import main

from conftest import FIXTURES, ROOT

BAD_IF = textwrap.dedent("""
    import torch.nn as nn

    class M(nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                x = x * 2
            return x
""")
CLEAN = "import torch.nn as nn\n\nclass M(nn.Module):\n    def forward(self, x):\n        return x * 2\n"


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_seed_example_text_output(monkeypatch):
    monkeypatch.chdir(ROOT)
    r = run("check", "--no-cache", "fixtures/seed_formatting.py")
    assert r.exit_code == 1
    lines = r.stdout.splitlines()
    assert lines[0].startswith("fixtures/seed_formatting.py:11:9: TS101 ")
    assert "is_all_zeros" in lines[0]
    assert lines[1].startswith("fixtures/seed_formatting.py:17:9: TS201 ")


def test_exit_codes(run_in):
    write(run_in / "bad.py", BAD_IF)
    write(run_in / "good.py", CLEAN)
    assert run("check", "good.py").exit_code == 0
    assert run("check", "bad.py").exit_code == 1
    assert run("check", "--exit-zero", "bad.py").exit_code == 0
    assert run("check", "missing.py").exit_code == 2


def test_json_shape(run_in):
    write(run_in / "m.py", BAD_IF)
    r = run("check", "--format", "json", "m.py")
    data = json.loads(r.stdout)
    assert data == [
        {
            "path": "m.py",
            "line": 6,
            "column": 9,
            "end_line": 6,
            "end_column": 23,
            "code": "TS101",
            "name": "tensor-if",
            "severity": "error",
            "message": data[0]["message"],
            "function": "M.forward",
            "fix": None,
        }
    ]
    assert "x.sum() > 0" in data[0]["message"]


def test_select_ignore_prefix_and_all(run_in):
    write(run_in / "m.py", BAD_IF.replace("return x", "return x, int(x.max())"))

    def codes(*a):
        return sorted(f["code"] for f in json.loads(run("check", "--format", "json", *a, "m.py").stdout))

    assert codes() == ["TS101", "TS106"]
    assert codes("--select", "TS106") == ["TS106"]
    assert codes("--ignore", "TS10") == []
    assert codes("--select", "ALL", "--ignore", "TS101") == ["TS106"]
    assert codes("--select", "TS101,TS106") == ["TS101", "TS106"]
    r = run("check", "--select", "XX9", "m.py")
    assert r.exit_code == 2 and "unknown rule" in r.stderr


def test_target_option(run_in):
    write(run_in / "m.py", BAD_IF)
    assert run("check", "--target", "script", "m.py").exit_code == 0
    assert run("check", "--target", "dynamo", "m.py").exit_code == 1


def test_parse_error_is_one_line_and_others_still_checked(run_in):
    write(run_in / "a_broken.py", "def forward(self:\n")
    write(run_in / "b_model.py", BAD_IF)
    r = run("check", ".")
    assert r.exit_code == 2
    assert "b_model.py:6:9: TS101" in r.stdout
    errs = [ln for ln in r.stderr.splitlines() if "a_broken.py" in ln]
    assert len(errs) == 1 and "syntax error" in errs[0] and "Traceback" not in r.stderr


def test_sorted_deterministic_output(run_in):
    for name in ("z.py", "a.py", "m/b.py"):
        write(run_in / name, BAD_IF + BAD_IF.replace("class M", "class N"))
    out1 = run("check", "--no-cache", ".").stdout
    out2 = run("check", "--no-cache", "--jobs", "2", ".").stdout
    assert out1 == out2
    keys = [(ln.split(":")[0], int(ln.split(":")[1])) for ln in out1.splitlines()]
    assert keys == sorted(keys) and len(keys) == 6


def test_gitignore_and_exclude(run_in):
    write(run_in / ".gitignore", "generated/\n")
    write(run_in / "generated" / "m.py", BAD_IF)
    write(run_in / "vendor" / "m.py", BAD_IF)
    write(run_in / "src" / "m.py", BAD_IF)
    write(run_in / "pyproject.toml", '[tool.tracesafe]\nexclude = ["vendor/"]\n')
    r = run("check", ".")
    assert [ln.split(":")[0] for ln in r.stdout.splitlines()] == [os.path.join("src", "m.py")]


def test_a_named_directory_inside_an_ignored_one_is_checked(run_in, monkeypatch):
    # The rescue benchmark checks transformers inside the project's own .venv/: a .gitignore or `exclude`
    # rule covering the named directory must not empty the walk (exit 0, nothing said), as ruff does.
    write(run_in / ".gitignore", ".venv/\n*_gen.py\n")
    pkg = run_in / ".venv" / "lib" / "pkg"
    write(pkg / "m.py", BAD_IF)
    write(pkg / "skip_gen.py", BAD_IF)  # a rule not covering the named directory still applies beneath it
    write(run_in / "vendor" / "v" / "m.py", BAD_IF)
    write(run_in / "pyproject.toml", '[tool.tracesafe]\nexclude = ["vendor/"]\n')
    assert run("check", "--no-cache", ".").exit_code == 0  # walked from the root, both stay out
    monkeypatch.chdir(pkg)
    r = run("check", "--no-cache", ".")
    assert [ln.split(":")[0] for ln in r.stdout.splitlines()] == ["m.py"] and r.exit_code == 1
    monkeypatch.chdir(run_in)
    r = run("check", "--no-cache", os.path.join("vendor", "v"))
    assert r.exit_code == 1 and "processed because it was named" in r.stderr
    assert run("check", "--no-cache", "--force-exclude", os.path.join("vendor", "v")).exit_code == 0


def test_noqa(run_in):
    write(run_in / "m.py", BAD_IF.replace("if x.sum() > 0:", "if x.sum() > 0:  # noqa: TS101"))
    assert run("check", "m.py").exit_code == 0
    write(run_in / "m.py", BAD_IF.replace("if x.sum() > 0:", "if x.sum() > 0:  # noqa: TS106"))
    assert run("check", "m.py").exit_code == 1


def test_pyproject_config(run_in):
    write(run_in / "m.py", BAD_IF.replace("return x", "return int(x.max())"))
    write(run_in / "pyproject.toml", '[tool.tracesafe]\nignore = ["TS106"]\n')
    assert [ln.split()[1] for ln in run("check", "m.py").stdout.splitlines()] == ["TS101"]
    write(run_in / "pyproject.toml", '[tool.tracesafe]\nper-file-ignores = { "m.py" = ["TS1"] }\n')
    assert run("check", "m.py").exit_code == 0
    write(run_in / "pyproject.toml", '[tool.tracesafe]\ntarget = "script"\n')
    assert run("check", "m.py").exit_code == 0


@pytest.mark.parametrize(
    "content,needle",
    [
        ('[tool.tracesafe]\nselekt = ["TS1"]\n', "unknown key"),
        ("[tool.tracesafe\n", "invalid TOML"),
        ('[tool.tracesafe]\ntarget = "onnx"\n', "target must be"),
        ('[tool.tracesafe]\nselect = ["TS999"]\n', "unknown rule"),
    ],
)
def test_broken_config_is_one_line_exit_2(run_in, content, needle):
    write(run_in / "m.py", CLEAN)
    write(run_in / "pyproject.toml", content)
    r = run("check", "m.py")
    assert r.exit_code == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_statistics_and_output_file(run_in):
    write(run_in / "m.py", BAD_IF)
    r = run("check", "--statistics", "m.py")
    assert "TS101" in r.stdout and "tensor-if" in r.stdout
    r = run("check", "--format", "json", "--output-file", "out.json", "m.py")
    assert r.exit_code == 1 and json.loads((run_in / "out.json").read_text())[0]["code"] == "TS101"


def test_rule_command():
    r = run("rule", "TS101")
    assert r.exit_code == 0 and "## Why is this bad?" in r.stdout
    assert run("rule", "TS999").exit_code == 2
    assert "TS201" in run("rule").stdout


def test_cache_reuses_and_invalidates_on_helper_change(run_in):
    write(run_in / "helpers.py", "def gate(v):\n    return v\n")
    write(
        run_in / "model.py",
        "import torch.nn as nn\nfrom helpers import gate\n\nclass M(nn.Module):\n"
        "    def forward(self, x):\n        return gate(x)\n",
    )
    assert run("check", ".").exit_code == 0
    assert (run_in / ".tracesafe_cache").is_dir()
    write(run_in / "helpers.py", "def gate(v):\n    return v.item()\n")
    r = run("check", "model.py")
    assert r.exit_code == 0  # helpers.py was not passed: only model.py is reported on
    r = run("check", ".")
    assert r.exit_code == 1 and "helpers.py:2:12: TS106" in r.stdout


def test_cache_invalidates_on_a_helper_checked_before_it(run_in):
    """A root that reads a module another root of the same process analysed first depends on it like on a
    helper parsed on demand: when that module changes, the root's cached findings are not reused."""
    write(run_in / "pkg" / "__init__.py", "")
    write(
        run_in / "pkg" / "a_gate.py",
        "import torch.nn as nn\n\nclass Gate(nn.Module):\n    def forward(self, x):\n        return x * 2\n",
    )
    write(
        run_in / "pkg" / "b_net.py",
        "import torch.nn as nn\nfrom .a_gate import Gate\n\nclass Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.gate = Gate()\n\n"
        "    def forward(self, x):\n        y = self.gate(x)\n        if y:\n"
        "            y = y - 1\n        return y\n",
    )
    r = run("check", "--jobs", "1", "pkg")
    assert r.exit_code == 1 and os.path.join("pkg", "b_net.py") + ":11:9: TS101" in r.stdout
    # the gate now returns a Python bool: Net's `if` no longer tests a tensor
    write(
        run_in / "pkg" / "a_gate.py",
        "import torch.nn as nn\n\nclass Gate(nn.Module):\n"
        "    def forward(self, x):\n        return x.sum().item() > 0\n",
    )
    cached = run("check", "--jobs", "1", "pkg")
    assert cached.stdout == run("check", "--no-cache", "--jobs", "1", "pkg").stdout
    assert "b_net.py" not in cached.stdout and "a_gate.py:5:16: TS106" in cached.stdout


def _assert_never_imported(code: str, prefixes: tuple) -> None:
    """Run code in a fresh interpreter, then fail if a module under one of prefixes was imported."""
    code += (
        f"\nbad = sorted(m for m in sys.modules if m.startswith({prefixes!r}))\n"
        "print(bad[:5])\nsys.exit(1 if bad else 0)\n"
    )
    p = subprocess.run([sys.executable, "-c", "import sys\n" + code], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def _cli(args: list, exit_code: int) -> str:
    return (
        "from click.testing import CliRunner\nfrom tracesafe.cli import main\n"
        f"r = CliRunner().invoke(main, {args!r})\nassert r.exit_code == {exit_code}, r.output"
    )


@pytest.mark.parametrize("args", [["check", "--no-cache"], ["fix", "--diff", "--form", "cond", "--unsafe-fixes"]])
def test_check_and_fix_never_import_torch(args):
    _assert_never_imported(_cli(args + [str(FIXTURES)], 1), ("torch", "onnx"))


def test_python_dash_m_entry(tmp_path):
    f = write(tmp_path / "m.py", BAD_IF)
    p = subprocess.run(
        [sys.executable, "-m", "tracesafe", "check", "--no-cache", str(f)], capture_output=True, text=True
    )
    assert p.returncode == 1 and "TS101" in p.stdout


def test_a_named_file_that_exclude_covers(run_in):
    """ruff's rule: a file named on the command line is checked even when `exclude` covers it, and
    tracesafe says so on stderr; --force-exclude (implied by the pre-commit hook) skips it."""
    write(run_in / "pyproject.toml", '[tool.tracesafe]\nexclude = ["vendor/"]\n')
    write(run_in / "vendor" / "m.py", BAD_IF)
    named = os.path.join("vendor", "m.py")
    r = run("check", named)
    assert r.exit_code == 1 and r.stdout.startswith(named + ":6:")
    assert "excluded by the configuration's `exclude`" in r.stderr
    r = run("check", "--force-exclude", named)
    assert r.exit_code == 0 and named not in r.stdout
    assert "excluded" not in r.stderr
    assert run("check", "--hook", named).exit_code == 0
    assert run("fix", "--force-exclude", "--diff", named).exit_code == 0


def test_check_reads_standard_input(run_in):
    """`tracesafe check - --stdin-filename F`: editors pipe the buffer; the report names F, F's config
    applies, and bad input is one line and exit 2."""
    write(run_in / "pkg" / "pyproject.toml", '[tool.tracesafe]\nignore = ["TS106"]\n')
    r = CliRunner().invoke(main, ["check", "-", "--stdin-filename", os.path.join("pkg", "m.py")], input=BAD_IF)
    assert r.exit_code == 1 and r.stdout.startswith(os.path.join("pkg", "m.py") + ":6:9: TS101"), r.stdout
    item = "import torch.nn as nn\n\nclass M(nn.Module):\n    def forward(self, x):\n        return x.item()\n"
    assert CliRunner().invoke(main, ["check", "-", "--stdin-filename", "pkg/m.py"], input=item).exit_code == 0
    r = CliRunner().invoke(main, ["check", "-", "--format", "json"], input=BAD_IF)
    assert r.exit_code == 1 and '"path": "-"' in r.stdout
    r = CliRunner().invoke(main, ["check", "-"], input="def f(:\n")
    assert r.exit_code == 2 and r.stderr.startswith("-: error: syntax error")
    assert CliRunner().invoke(main, ["check", "-", "m.py"], input=BAD_IF).exit_code == 2


@pytest.mark.parametrize("args", [["--version"], ["rule", "TS101"], ["rule"]])
def test_version_and_rule_do_not_import_libcst(args):
    """Start-up: the rule registry and the version need neither libcst (a third of a second) nor torch."""
    _assert_never_imported(_cli(args, 0), ("libcst", "torch"))


@pytest.mark.parametrize("args", [["--version"], ["rule"], ["rule", "--all"], ["rule", "ts101"], ["rule", "TS999"]])
def test_the_console_entry_answers_like_the_click_application(args, capsys):
    """`tracesafe --version` and `tracesafe rule` are answered by the console entry without click; what
    they print and their exit code are the click application's."""
    from tracesafe.entry import _fast, main as entry

    assert _fast(args) is not None  # the fast path is what is tested here
    code = entry(args)
    out, err = capsys.readouterr()
    r = CliRunner().invoke(main, args)
    assert (code, out, err) == (r.exit_code, r.stdout, r.stderr)


@pytest.mark.parametrize("args", [["--version"], ["rule", "TS101"], ["rule"]])
def test_the_console_entry_starts_without_click(args):
    """Start-up (issue 14): `--version` and `rule` import neither click nor libcst."""
    _assert_never_imported(
        f"from tracesafe.entry import main\nassert main({args!r}) == 0", ("click", "libcst", "torch")
    )


def test_the_console_entry_hands_the_rest_to_click(tmp_path):
    f = write(tmp_path / "m.py", BAD_IF)
    for args in (["rule", "--help"], ["--help"], ["check", "--no-cache", str(f)]):
        p = subprocess.run(
            [sys.executable, "-c", f"import sys\nfrom tracesafe.entry import main\nsys.exit(main({args!r}))"],
            capture_output=True,
            text=True,
        )
        expected = 1 if args[0] == "check" else 0
        assert p.returncode == expected and ("Usage:" in p.stdout or "TS101" in p.stdout), p.stderr


def test_a_cached_file_answers_without_libcst(tmp_path):
    """A pre-commit run over files whose content hash is cached reads the cache and reports, never loading
    the analysis (libcst is most of a cold start); a changed file loads it and is analysed again."""
    f = write(tmp_path / "m.py", BAD_IF)
    first = subprocess.run(
        [sys.executable, "-m", "tracesafe", "check", str(f)], cwd=tmp_path, capture_output=True, text=True
    )
    run_it = f"import os\nos.chdir({str(tmp_path)!r})\n" + _cli(["check", str(f)], 1)
    _assert_never_imported(
        run_it + f"\nassert r.stdout == {first.stdout!r}, r.stdout",
        ("libcst", "tracesafe.analyzer.project", "tracesafe.rewriters.engine"),
    )
    write(f, BAD_IF.replace("x * 2", "x * 3"))
    p = subprocess.run(
        [sys.executable, "-c", "import sys\n" + run_it + "\nassert 'libcst' in sys.modules"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stdout + p.stderr


def test_the_analyzer_stands_alone():
    """The analyzer reports and never imports a rewriter: whether a finding is fixable is the shell's
    question (tracesafe.check_source and the runner pass the rewriters' planner)."""
    _assert_never_imported(
        f"from tracesafe.analyzer import check_source\nfs = check_source({BAD_IF!r}, 'm.py')\n"
        "assert [f.code for f in fs] == ['TS101'] and fs[0].fix is None, fs",
        ("tracesafe.rewriters",),
    )
    import tracesafe

    (f,) = tracesafe.check_source(
        BAD_IF.replace("return x\n        return -x", "return x * 2\n        return x"),
        "m.py",
        tracesafe.Config(form="where"),
    )
    assert f.fix == {"form": "where", "applicability": "safe"}


COPIED = textwrap.dedent("""
    import torch
    import torch.nn as nn


    def helper(x):
        if x.sum() > 0:
            return x * 2
        return torch.where(x > 0, x, -x) if x.mean() > 1 else x


    class A(nn.Module):
        def forward(self, x):
            if x.max() > 3:
                return None
            return helper(x)


    class B(nn.Module):
        def forward(self, x):
            if x.max() > 3:
                return None
            return helper(x)
""")


def test_copied_definitions_are_reported_at_their_own_lines(run_in):
    # one libcst tree serves identical definitions of different modules: a whole-tree run must say
    # exactly what each file says alone, positions and fix fields included
    write(run_in / "pkg" / "__init__.py", "")
    write(run_in / "pkg" / "a.py", COPIED)
    write(run_in / "pkg" / "b.py", "\n\n# shifted\n" + COPIED)
    write(
        run_in / "pkg" / "c.py",
        "from .b import helper\nimport torch.nn as nn\n\n\nclass C(nn.Module):\n"
        "    def forward(self, x):\n        return helper(x)\n",
    )
    together = json.loads(run("check", "--no-cache", "--jobs", "1", "--format", "json", "--exit-zero", "pkg").stdout)
    alone = [
        f
        for name in ("a", "b", "c")
        for f in json.loads(run("check", "--no-cache", "--format", "json", "--exit-zero", f"pkg/{name}.py").stdout)
    ]
    assert together == alone
    lines = {(f["path"].replace(os.sep, "/"), f["line"]) for f in together}
    assert {("pkg/a.py", 7), ("pkg/a.py", 9), ("pkg/a.py", 14), ("pkg/a.py", 21)} <= lines
    assert {("pkg/b.py", 10), ("pkg/b.py", 12), ("pkg/b.py", 17), ("pkg/b.py", 24)} <= lines
    assert any(f["fix"] for f in together)


def test_quiet_prints_findings_and_errors_only(run_in):
    write(run_in / "bad.py", BAD_IF)
    write(run_in / "broken.py", "def forward(self:\n")
    r = run("check", "--no-cache", "-q", "bad.py", "broken.py")
    assert r.exit_code == 2 and r.stdout.startswith("bad.py:6:9: TS101")
    assert r.stderr.startswith("broken.py: error:") and "Found" not in r.stderr
    loud = run("check", "--no-cache", "bad.py")
    assert "Found 1 finding in 1 file(s)." in loud.stderr
    write(run_in / "m.py", BAD_IF.replace("x = x * 2", "return None"))
    r = run("fix", "--quiet", "--form", "where", "m.py")
    assert r.stderr == "" and r.exit_code == 1  # findings remain (the exit says so), and nothing is said


def test_color(run_in, monkeypatch):
    from tracesafe.report import use_color

    write(run_in / "bad.py", BAD_IF)
    plain = run("check", "--no-cache", "--color", "never", "bad.py").stdout
    colored = run("check", "--no-cache", "--color", "always", "bad.py").stdout
    assert "\x1b[" not in plain and "\x1b[" in colored
    assert click.unstyle(colored) == plain
    assert "\x1b[" not in run("check", "--no-cache", "bad.py").stdout  # auto: not a terminal

    class Tty:
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_color("auto", Tty()) and not use_color("never", Tty()) and use_color("always", object())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color("auto", Tty()) and use_color("always", Tty())


def test_fix_show_fixes(run_in):
    write(
        run_in / "m.py",
        "import torch\nimport torch.nn as nn\n\nclass M(nn.Module):\n    def forward(self, x):\n"
        "        if x.sum() > 0:\n            y = x * 2\n        else:\n            y = -x\n"
        "        return y if x.mean() > 1 else -y\n",
    )
    r = run("fix", "--form", "where", "--show-fixes", "m.py")
    assert (
        "Fixed 2 finding(s):\n- m.py:\n    1 \u00d7 TS101 (tensor-if)\n    1 \u00d7 TS103 (tensor-ternary)\n"
        in r.stderr
    ), r.stderr


def test_progress_bar_only_on_a_terminal(tmp_path):
    """A long run in a terminal draws a bar on stderr; stdout (the report) is untouched, and a pipe gets
    no bar at all."""
    import pty

    for i in range(70):
        write(tmp_path / f"m{i}.py", BAD_IF)
    cmd = [sys.executable, "-m", "tracesafe", "check", "--no-cache", "--jobs", "1", "."]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100"}
    master, slave = pty.openpty()
    p = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    err = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal closed
            break
        if not chunk:
            break
        err += chunk
    out = p.communicate()[0].decode()
    os.close(master)
    assert "Checking" in err.decode() and "100%" in err.decode()
    assert out.count("TS101") == 70 and "Checking" not in out
    piped = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert "Checking" not in piped.stderr and piped.stdout == out
    quiet = subprocess.run(cmd + ["-q"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert quiet.stderr == ""


def test_a_roots_findings_do_not_depend_on_the_roots_before_it(run_in):
    """Library functions are summarised per argument kinds and the summaries kept for later roots of the
    process, under a cap of contexts per function: which roots ran before (a worker's batch order) must
    not change any root's findings."""
    from tracesafe.analyzer import Config, analyze_root
    from tracesafe.analyzer.project import Project

    write(run_in / "pkg" / "__init__.py", "")
    write(
        run_in / "pkg" / "lib.py",
        textwrap.dedent("""
        import torch

        def h(x, y, z=None):
            if y > 0:
                x = x * 2
            if z is not None and z.sum() > 0:
                x = x + 1
            return g(x, y)

        def g(a, b):
            return a if b else -a
    """),
    )
    # six contexts of h where `y` is a Python value, then a size and a tensor: past the cap of six, those
    # two share one joined state; a root must get that whether or not earlier roots left summaries
    six = ["x, 1", "x.shape, 1", "x.shape[0], 1", "(x, x), 1", "None, 1", "3, 1"]
    bodies = [six + ["x, x.shape[0]", "x, x.sum()"], six[:3], six[3:] + ["x, x.shape[0]"], six[::2]]
    for i, body in enumerate(bodies):
        calls = "\n".join(f"        y = h({a})" for a in body)
        write(
            run_in / "pkg" / f"m{i}.py",
            f"import torch.nn as nn\nfrom .lib import h\n\n\nclass M{i}(nn.Module):\n"
            f"    def forward(self, x):\n{calls}\n        return x\n",
        )
    roots = [f"pkg/m{i}.py" for i in range(4)]

    def run_order(order):
        project, out = Project(), {}
        for r in order:
            res = analyze_root(r, (run_in / r).read_bytes(), Config(), project)
            out[r] = sorted(f.to_json().items() for f in res.findings)
        return out

    alone = {r: run_order([r])[r] for r in roots}
    assert run_order(roots[::-1]) == alone and run_order(roots[1:] + roots[:1]) == alone
    assert any(alone.values())


def test_statistics_in_json_and_refused_for_sarif(run_in):
    write(run_in / "bad.py", BAD_IF)
    r = run("check", "--no-cache", "--statistics", "--format", "json", "bad.py")
    assert r.exit_code == 1
    assert json.loads(r.stdout) == [
        {"code": "TS101", "name": "tensor-if", "count": 1, "fixable": 0, "unsafe_fixable": 0}
    ]
    r = run("check", "--no-cache", "--statistics", "--format", "sarif", "bad.py")
    assert r.exit_code == 2 and "--statistics" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_fix_reads_standard_input_like_ruff(run_in, monkeypatch):

    seed = (FIXTURES / "seed_formatting.py").read_text(encoding="utf-8")
    r = CliRunner().invoke(main, ["fix", "--unsafe-fixes", "-", "--stdin-filename", "models/net.py"], input=seed)
    assert r.exit_code == 1  # changed
    assert "torch.tensor(True)" in r.stdout and r.stdout.startswith('"""The seed tutorial')
    assert "Fixed 1 file(s); 0 finding(s) remain for the script exporter." in r.stderr
    compile(r.stdout, "net.py", "exec")
    again = CliRunner().invoke(
        main, ["fix", "--unsafe-fixes", "-", "--stdin-filename", "models/net.py"], input=r.stdout
    )
    assert again.exit_code == 0 and again.stdout == r.stdout  # nothing left to fix: the same code back
    diff = CliRunner().invoke(main, ["fix", "--unsafe-fixes", "--diff", "-", "--stdin-filename", "net.py"], input=seed)
    assert diff.stdout.startswith("--- a/net.py\n+++ b/net.py\n")
    assert run("fix", "-", "other.py").exit_code == 2
    assert run("fix", "--stdin-filename", "x.py", ".").exit_code == 2
    bad = CliRunner().invoke(main, ["fix", "-", "--stdin-filename", "x.py"], input="def (:\n")
    assert bad.exit_code == 2 and "syntax error" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_fix_validates_the_configuration_before_it_does_anything(run_in):
    write(run_in / "pyproject.toml", "[tool.tracesafe]\nbogus = 1\n")
    write(run_in / "seed.py", (FIXTURES / "seed_formatting.py").read_text(encoding="utf-8"))
    before = (run_in / "seed.py").read_text()
    r = run("fix", "--unsafe-fixes", ".")
    assert r.exit_code == 2 and "unknown key(s)" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Would fix" not in r.stderr and "Fixed" not in r.stderr
    assert (run_in / "seed.py").read_text() == before


def test_a_clean_check_says_so_unless_quiet(run_in):
    write(run_in / "clean.py", CLEAN)
    r = run("check", "--no-cache", "clean.py")
    assert r.exit_code == 0 and r.stderr.strip() == "All checks passed!" and r.stdout == ""
    assert run("check", "--no-cache", "-q", "clean.py").stderr == ""
    assert json.loads(run("check", "--no-cache", "--format", "json", "clean.py").stdout) == []
    assert "All checks passed!" not in run("check", "--no-cache", "--format", "json", "clean.py").stderr


def test_profile_is_documented():
    for cmd in ("check", "fix"):
        assert "--profile" in run(cmd, "--help").stdout
