"""Type-check the project as it is installed: `analyzer/` and `rewriters/` are the packages
`tracesafe.analyzer` and `tracesafe.rewriters` (pyproject's package-dir), a layout mypy cannot map from
the source tree (there, every `from tracesafe.analyzer import ...` would be Any, and nothing between the
packages would be checked). The three directories are copied into that layout in a temporary directory;
mypy runs there with pyproject's [tool.mypy], `--strict` on the analyzer, the rewriters and the public
API (tracesafe/__init__.py and the runner it calls), and the paths it prints are mapped back.

    python .ci/typecheck.py        # exit status: mypy's
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYOUT = {"tracesafe": "tracesafe", "tracesafe/analyzer": "analyzer", "tracesafe/rewriters": "rewriters"}
STRICT = [
    "tracesafe/__init__.py",
    "tracesafe/runner.py",
    "tracesafe/discover.py",
    "tracesafe/analyzer",
    "tracesafe/rewriters",
]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="tracesafe-types-") as tmp:
        for dest, src in LAYOUT.items():
            shutil.copytree(
                ROOT / src, Path(tmp) / dest, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True
            )
        mypy = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")]
        runs = [mypy + ["--strict", *STRICT], mypy + ["tracesafe"]]
        status = 0
        for cmd in runs:
            p = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
            out = p.stdout + p.stderr
            # back to the source tree's paths (the longest prefix first: tracesafe/analyzer/ before tracesafe/)
            for dest, src in sorted(LAYOUT.items(), key=lambda kv: -len(kv[0])):
                out = out.replace(f"{dest}/", f"\0{src}/")
            sys.stdout.write(out.replace("\0", ""))
            status = status or p.returncode
        return status


if __name__ == "__main__":
    sys.exit(main())
