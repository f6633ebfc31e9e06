"""Where users run it: SARIF (validated against the shipped schema), GitHub annotations, generated rule
docs, per-file configuration, and the real pre-commit with try-repo."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import jsonschema
import pytest
from click.testing import CliRunner

from tracesafe.cli import main
from tracesafe.docsgen import rules_markdown

from conftest import FIXTURES, ROOT, SHARED

_SCHEMA_FILE = SHARED / "schemas" / "sarif-schema-2.1.0.json"
SCHEMA = json.loads(_SCHEMA_FILE.read_text(encoding="utf-8")) if _SCHEMA_FILE.exists() else None


def _validate(doc):
    if SCHEMA is None:
        pytest.skip(f"the SARIF schema is not at {_SCHEMA_FILE} (shared/ lives beside the project)")
    jsonschema.validate(doc, SCHEMA)


def run(*args):
    return CliRunner().invoke(main, list(args))


def sarif_of(*paths):
    r = run("check", "--no-cache", "--format", "sarif", *map(str, paths))
    assert r.exit_code in (0, 1), r.output
    doc = json.loads(r.stdout)
    _validate(doc)
    return doc


def test_sarif_validates_and_carries_the_registry(run_in):
    shutil.copytree(FIXTURES, run_in / "fixtures")
    doc = sarif_of("fixtures")
    run_ = doc["runs"][0]
    rules = run_["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules][:3] == ["TS101", "TS102", "TS103"]
    assert all(
        r["shortDescription"]["text"] and r["fullDescription"]["text"] and "## What it does" in r["help"]["text"]
        for r in rules
    )
    res = run_["results"]
    seed = [
        x
        for x in res
        if x["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "fixtures/seed_formatting.py"
    ]
    assert [
        (
            x["ruleId"],
            x["locations"][0]["physicalLocation"]["region"]["startLine"],
            x["locations"][0]["physicalLocation"]["region"]["startColumn"],
        )
        for x in seed
    ] == [("TS101", 11, 9), ("TS201", 17, 9)]
    assert all(rules[x["ruleIndex"]]["id"] == x["ruleId"] for x in res)
    fixed = [x for x in seed if "fixes" in x]
    assert (
        fixed
        and "return torch.zeros_like(input_tensor), torch.tensor(True)"
        in fixed[0]["fixes"][0]["artifactChanges"][0]["replacements"][0]["insertedContent"]["text"]
    )


def test_sarif_gives_each_file_one_edit(run_in):
    """Two fixable results of one file: a consumer that applies every result's fix must not apply one
    edit twice or two overlapping edits."""
    src = (FIXTURES / "seed_formatting.py").read_text(encoding="utf-8")
    second = src.replace("class FormattingLayer", "class SecondLayer")
    (run_in / "m.py").write_text(src + "\n\n" + second.split("\n\n\n", 1)[1], encoding="utf-8")
    results = sarif_of("m.py")["runs"][0]["results"]
    assert sum(1 for x in results if x["ruleId"] == "TS201") == 2
    edits = [
        (c["artifactLocation"]["uri"], r["deletedRegion"])
        for x in results
        for fx in x.get("fixes", [])
        for c in fx["artifactChanges"]
        for r in c["replacements"]
    ]
    assert len(edits) == 1, edits
    text = next(fx["description"]["text"] for x in results for fx in x.get("fixes", []))
    assert "2 fixable finding(s)" in text and "--unsafe-fixes" in text


def test_sarif_fingerprints_are_stable_across_runs_and_unrelated_edits(run_in):
    src = (FIXTURES / "seed_formatting.py").read_text(encoding="utf-8")
    (run_in / "m.py").write_text(src, encoding="utf-8")
    fps = lambda d: sorted(x["partialFingerprints"]["tracesafe/v1"] for x in d["runs"][0]["results"])  # noqa: E731
    first = fps(sarif_of("m.py"))
    assert first == fps(sarif_of("m.py")) and len(set(first)) == 2
    (run_in / "m.py").write_text("# a new comment line shifts everything\n" + src, encoding="utf-8")
    assert fps(sarif_of("m.py")) == first


def test_github_annotations_golden(run_in):
    shutil.copytree(FIXTURES, run_in / "fixtures")
    r = run("check", "--no-cache", "--format", "github", "fixtures/zoo/detection.py")
    assert r.exit_code == 1
    assert r.stdout == (FIXTURES / "golden" / "detection.github.txt").read_text(encoding="utf-8")


def test_github_escapes_properties_and_newlines():
    from tracesafe.analyzer import Finding
    from tracesafe.report import github

    f = Finding("a,b:c.py", 1, 2, 1, 5, "TS101", "50% of\nit", "M.forward")
    assert (
        github([f]) == "::error file=a%2Cb%3Ac.py,line=1,col=2,endLine=1,endColumn=5,title=tracesafe (TS101)::"
        "50%25 of%0Ait\n"
    )


def test_statistics_and_output_file(run_in):
    (run_in / "m.py").write_text((FIXTURES / "seed_formatting.py").read_text(encoding="utf-8"), encoding="utf-8")
    r = run("check", "--no-cache", "--statistics", "m.py")
    # the seed's TS201 fix (flag form) is unsafe: fixable only with --unsafe-fixes, and said so in the total
    assert r.exit_code == 1 and "TS201  optional-return" in r.stdout and "[0 fixable]" in r.stdout
    assert r.stdout.endswith("Found 2 findings; 0 fixable with `tracesafe fix` (1 more with --unsafe-fixes).\n")
    r = run("check", "--no-cache", "--statistics", "--unsafe-fixes", "m.py")
    assert "[1 fixable]" in r.stdout and r.stdout.endswith("Found 2 findings; 1 fixable with `tracesafe fix`.\n")
    r = run("check", "--no-cache", "--format", "sarif", "--output-file", "out.sarif", "m.py")
    assert r.exit_code == 1 and r.stdout == ""
    _validate(json.loads((run_in / "out.sarif").read_text(encoding="utf-8")))


def test_rules_doc_is_generated_from_the_registry():
    assert (ROOT / "docs" / "rules.md").read_text(encoding="utf-8") == rules_markdown(), (
        "docs/rules.md is stale: run `python -m tracesafe.docsgen > docs/rules.md`"
    )
    assert "## TS101 tensor-if" in rules_markdown() and "### Use instead" in rules_markdown()


BAD_IF = (
    "import torch.nn as nn\n\nclass M(nn.Module):\n    def forward(self, x):\n"
    "        if x.sum() > 0:\n            return x\n        return -x\n"
)
BAD_ITEM = (
    "import torch.nn as nn\n\nclass M(nn.Module):\n    def forward(self, x):\n        return x * x.sum().item()\n"
)


def test_each_file_uses_its_nearest_config(run_in):
    (run_in / "pyproject.toml").write_text("[tool.tracesafe]\nignore = ['TS106']\n", encoding="utf-8")
    sub = run_in / "sub"
    sub.mkdir()
    (sub / "pyproject.toml").write_text(
        "[tool.tracesafe]\nignore = ['TS101']\nexclude = ['skipped.py']\n", encoding="utf-8"
    )
    for d in (run_in, sub):
        (d / "a.py").write_text(BAD_IF, encoding="utf-8")
        (d / "b.py").write_text(BAD_ITEM, encoding="utf-8")
    (sub / "skipped.py").write_text(BAD_ITEM, encoding="utf-8")
    r = run("check", "--no-cache", ".")
    lines = sorted(line.split(": ")[0] for line in r.stdout.splitlines())
    assert lines == ["a.py:5:9", "sub/b.py:5:20"], r.stdout
    # --config overrides the discovery for every file
    r = run("check", "--no-cache", "--config", "sub/pyproject.toml", "a.py", "b.py")
    assert sorted(line.split(": ")[0] for line in r.stdout.splitlines()) == ["b.py:5:20"]


def test_a_broken_config_fails_its_files_only(run_in):
    bad = run_in / "bad"
    bad.mkdir()
    (bad / "pyproject.toml").write_text("[tool.tracesafe]\nselectt = ['TS1']\n", encoding="utf-8")
    (bad / "m.py").write_text(BAD_IF, encoding="utf-8")
    (run_in / "m.py").write_text(BAD_IF, encoding="utf-8")
    r = run("check", "--no-cache", "m.py", "bad/m.py")
    assert r.exit_code == 2 and "m.py:5:9: TS101" in r.stdout
    assert "unknown key(s) in [tool.tracesafe]: selectt" in r.stderr and "Traceback" not in r.stderr


def test_hook_mode_checks_exactly_the_given_files(run_in):
    (run_in / "m.py").write_text(BAD_IF, encoding="utf-8")
    assert run("check", "--hook").exit_code == 0  # no files: nothing to do (not the whole directory)
    assert run("check", "--hook", "m.py").exit_code == 1
    assert run("fix", "--hook").exit_code == 0


def _git(cwd, *args):
    subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
        },
    )


def _guide_pre_commit_config() -> str:
    """The user guide's .pre-commit-config.yaml block, as printed."""
    guide = (ROOT / "docs" / "guide.md").read_text(encoding="utf-8")
    block = guide.split("# .pre-commit-config.yaml\n", 1)[1].split("```", 1)[0]
    assert "repo: https://github.com/tracesafe/tracesafe" in block and "rev: " in block
    return block


@pytest.mark.slow
def test_the_guides_pre_commit_config_works(tmp_path):
    """The guide's block, run by the real pre-commit, with this clone's path for the URL and its HEAD
    commit for the sha: pre-commit installs the project into its own environment and runs both hooks."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout of the project")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    config = re.sub(r"rev: [0-9a-f]{40}", f"rev: {head.stdout.strip()}", _guide_pre_commit_config())
    config = config.replace("https://github.com/tracesafe/tracesafe", str(ROOT))
    config = config.replace("# - id: tracesafe-fix", "- id: tracesafe-fix").replace("#   args:", "  args:")
    repo = tmp_path / "user-repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / ".pre-commit-config.yaml").write_text(config, encoding="utf-8")
    (repo / "bad.py").write_text(BAD_IF, encoding="utf-8")
    (repo / "clean.py").write_text(
        "import torch.nn as nn\n\nclass M(nn.Module):\n    def forward(self, x):\n        return x * 2\n",
        encoding="utf-8",
    )
    (repo / "gate.py").write_text(
        "import torch.nn as nn\n\nclass M(nn.Module):\n    def forward(self, x):\n"
        "        return x * 2 if x.sum() > 0 else -x\n",
        encoding="utf-8",
    )
    _git(repo, "add", ".")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pc-home"), "PRE_COMMIT_COLOR": "never"}

    def hook(hook_id, *files):
        return subprocess.run(
            [sys.executable, "-m", "pre_commit", "run", hook_id, "--files", *files],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )

    p = hook("tracesafe-check", "bad.py")
    assert p.returncode == 1 and "bad.py:5:9: TS101" in p.stdout, p.stdout + p.stderr
    p = hook("tracesafe-check", "clean.py")
    assert p.returncode == 0, p.stdout + p.stderr
    p = hook("tracesafe-fix", "gate.py")  # `args: [--form, where]` from the guide
    assert p.returncode == 1 and "files were modified by this hook" in p.stdout, p.stdout + p.stderr
    assert "torch.where(x.sum() > 0, x * 2, -x)" in (repo / "gate.py").read_text(encoding="utf-8")


def test_files_without_a_config_form_one_group(run_in):
    """One analysis run (one parse cache) for a whole tree without pyproject.toml, not one per directory."""
    from tracesafe.cli import _groups

    for d in ("a", "b", "c/d"):
        (run_in / d).mkdir(parents=True)
        (run_in / d / "m.py").write_text(BAD_IF, encoding="utf-8")
    groups, errors = _groups((".",), None)
    assert not errors and len(groups) == 1 and len(groups[0][1]) == 3
