"""The Neovim set-up in docs/guide.md, run as written: a headless Neovim loads docs/editors/nvim.lua, opens a
model file and receives tracesafe's diagnostics from `tracesafe server`. (Skipped where Neovim is not
installed; `.ci/run` installs Debian's.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT

NVIM = shutil.which("nvim")
SNIPPET = ROOT / "docs" / "editors" / "nvim.lua"
RUN = """
dofile(os.getenv("SNIPPET"))
vim.cmd("edit " .. os.getenv("TARGET"))
vim.cmd("doautocmd FileType python")
vim.wait(60000, function() return #vim.diagnostic.get(0) > 0 end, 200)
local out = {}
for _, d in ipairs(vim.diagnostic.get(0)) do
  table.insert(out, string.format("%d:%d %s %s", d.lnum + 1, d.col + 1, d.code or "", d.source or ""))
end
table.sort(out)
local f = io.open(os.getenv("OUT"), "w")
f:write(table.concat(out, "\\n") .. "\\n")
f:close()
vim.cmd("qa!")
"""


def test_the_guide_shows_the_snippet_that_is_run():
    assert SNIPPET.read_text(encoding="utf-8").strip() in (ROOT / "docs" / "guide.md").read_text(encoding="utf-8")


@pytest.mark.skipif(NVIM is None, reason="Neovim is not installed")
def test_neovim_gets_diagnostics_from_the_server(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.tracesafe]\n")
    (tmp_path / "net.py").write_text((FIXTURES / "seed_formatting.py").read_text(encoding="utf-8"))
    (tmp_path / "run.lua").write_text(RUN)
    # the snippet starts `tracesafe` by name: the console script installed beside this interpreter
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    env = dict(os.environ, SNIPPET=str(SNIPPET), TARGET="net.py", OUT=str(tmp_path / "out.txt"), PATH=path)
    subprocess.run(
        [NVIM, "--headless", "-u", "NONE", "-c", "luafile run.lua"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert (tmp_path / "out.txt").read_text().split("\n")[:2] == ["11:9 TS101 tracesafe", "17:9 TS201 tracesafe"]


def test_the_server_command_is_on_path():
    """The snippet starts `tracesafe server` by name: the console script the package installs."""
    found = shutil.which("tracesafe", path=os.path.dirname(sys.executable))  # beside the interpreter running us
    assert found and Path(found).exists()
