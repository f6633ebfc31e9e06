"""The options a ruff user types from habit (issue 24.2), spelled and exiting as ruff's: check --fix (with
--unsafe-fixes, --diff), --add-noqa, --extend-select/--extend-ignore, --exclude/--extend-exclude,
--show-settings, --show-files, a file-level `# tracesafe: noqa`, `tracesafe clean`, --output-format."""

from __future__ import annotations

import json

from click.testing import CliRunner

from tracesafe.cli import main

from conftest import FIXTURES

SEED = (FIXTURES / "seed_formatting.py").read_text(encoding="utf-8")


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def found(r) -> list[tuple[str, int, str]]:
    return [(f["path"], f["line"], f["code"]) for f in json.loads(r.stdout)]


def test_check_fix_applies_then_reports_what_is_left(run_in):
    (run_in / "net.py").write_text(SEED)
    r = run("check", "--fix", "--diff", "--unsafe-fixes", "net.py")
    assert r.exit_code == 1 and r.stdout.startswith("--- a/net.py") and (run_in / "net.py").read_text() == SEED
    r = run("check", "--fix", "net.py")  # the flag fix is unsafe: nothing applied without --unsafe-fixes
    assert r.exit_code == 1 and (run_in / "net.py").read_text() == SEED
    assert "(0 fixed, 2 remaining)" in r.stderr
    r = run("check", "--fix", "--unsafe-fixes", "net.py")
    assert r.exit_code == 1 and "(1 fixed, 1 remaining)" in r.stderr  # the TS101 stays for the trace target
    assert "torch.tensor(True)" in (run_in / "net.py").read_text()
    assert "TS201" not in r.stdout and "net.py:12:9: TS101" in r.stdout
    assert run("check", "--diff", "net.py").exit_code == 2  # --diff goes with --fix


def test_add_noqa_marks_every_finding_once(run_in):
    (run_in / "net.py").write_text(SEED.replace("return None", "return None  # noqa: TS1"))
    r = run("check", "--no-cache", "--add-noqa", "net.py")
    assert r.exit_code == 0 and "Added 2 noqa directives." in r.stderr
    text = (run_in / "net.py").read_text()
    assert "if is_all_zeros:  # expect: TS101  # noqa: TS101\n" in text
    assert "# noqa: TS1, TS201" not in text  # the TS201 finding is on another line
    assert run("check", "--no-cache", "net.py").exit_code == 0
    again = run("check", "--no-cache", "--add-noqa", "net.py")
    assert "Added 0 noqa directives." in again.stderr and (run_in / "net.py").read_text() == text


def test_add_noqa_merges_codes_into_an_existing_directive(run_in):
    (run_in / "m.py").write_text(
        "import torch.nn as nn\n\n\nclass M(nn.Module):\n    def forward(self, x):\n"
        "        if x.sum() > 0 and int(x.max()) > 1:  # noqa: TS104\n"
        "            x = x * 2\n        return x\n"
    )
    run("check", "--no-cache", "--add-noqa", "m.py")
    assert "# noqa: TS104, TS101, TS106\n" in (run_in / "m.py").read_text()
    assert run("check", "--no-cache", "m.py").exit_code == 0


def test_extend_select_and_extend_ignore_add_to_the_config(run_in):
    (run_in / "pyproject.toml").write_text('[tool.tracesafe]\nselect = ["TS101"]\nignore = ["TS106"]\n')
    (run_in / "net.py").write_text(SEED)
    base = found(run("check", "--no-cache", "--format", "json", "net.py"))
    assert [c for _, _, c in base] == ["TS101"]
    wider = found(run("check", "--no-cache", "--format", "json", "--extend-select", "TS201", "net.py"))
    assert [c for _, _, c in wider] == ["TS101", "TS201"]
    assert found(run("check", "--no-cache", "--format", "json", "--select", "TS201", "net.py")) == [
        ("net.py", 17, "TS201")
    ]  # --select replaces the config's
    none = found(
        run("check", "--no-cache", "--format", "json", "--extend-select", "TS201", "--extend-ignore", "TS1", "net.py")
    )
    assert [c for _, _, c in none] == ["TS201"]
    assert run("check", "--extend-select", "TS999", "net.py").exit_code == 2


def test_exclude_and_extend_exclude_on_the_command_line(run_in):
    (run_in / "pyproject.toml").write_text('[tool.tracesafe]\nexclude = ["gen/"]\n')
    for d in ("gen", "src", "vendor"):
        (run_in / d).mkdir()
        (run_in / d / "net.py").write_text(SEED)
    files = lambda *a: sorted(run("check", "--show-files", *a).stdout.split())  # noqa: E731
    assert files(".") == ["src/net.py", "vendor/net.py"]
    assert files("--extend-exclude", "vendor/", ".") == ["src/net.py"]
    assert files("--exclude", "vendor/", ".") == ["gen/net.py", "src/net.py"]  # replaces the config's


def test_show_settings(run_in):
    (run_in / "pyproject.toml").write_text('[tool.tracesafe]\ntarget = "dynamo"\nignore = ["TS108"]\n')
    (run_in / "net.py").write_text(SEED)
    r = run("check", "--show-settings", "net.py")
    assert r.exit_code == 0
    assert "Resolved settings for: net.py" in r.stdout and "target = 'dynamo'" in r.stdout
    assert "pyproject.toml" in r.stdout and "'TS108'" not in r.stdout.split("select = ")[1].splitlines()[0]


def test_a_file_level_noqa(run_in):
    (run_in / "all.py").write_text("# tracesafe: noqa\n" + SEED)
    (run_in / "some.py").write_text("# tracesafe: noqa: TS101\n" + SEED)
    (run_in / "inline.py").write_text(SEED.replace('"""The seed', 'x = 1  # tracesafe: noqa\n"""The seed'))
    got = found(run("check", "--no-cache", "--format", "json", "all.py", "some.py", "inline.py"))
    assert [(p, c) for p, _, c in got] == [("inline.py", "TS101"), ("inline.py", "TS201"), ("some.py", "TS201")]


def test_clean_removes_the_caches(run_in):
    (run_in / "sub").mkdir()
    (run_in / "sub" / "net.py").write_text(SEED)
    (run_in / "pyproject.toml").write_text("[tool.tracesafe]\n")
    run("check", "sub")
    assert (run_in / ".tracesafe_cache").is_dir()
    r = run("clean")
    assert r.exit_code == 0 and not (run_in / ".tracesafe_cache").exists() and "Removing cache" in r.stderr
    assert "No cache found." in run("clean").stderr


def test_output_format_is_format(run_in):
    (run_in / "net.py").write_text(SEED)
    a = run("check", "--no-cache", "--output-format", "json", "net.py")
    b = run("check", "--no-cache", "--format", "json", "net.py")
    assert a.exit_code == b.exit_code == 1 and a.stdout == b.stdout and json.loads(a.stdout)
