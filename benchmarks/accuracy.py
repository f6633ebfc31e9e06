"""The accuracy harness: how often `tracesafe check` agrees with PyTorch's own tracer, in one run.

    python benchmarks/accuracy.py [--corpus DIR] [--skip-oracle] [--skip-models]

Two measurements, both against `torch.jit.trace`, never against a count of findings:

1. The transformers 5.24.0 oracle (../shared/oracle, when it is beside the project): TracerWarning sites
   and executed lines from tracing 1,354 model classes. Its scorer, `score.py`, is run on a fresh
   `tracesafe check` of the unpacked wheel: recall over the 871 control-flow sites, and precision on
   executed code (a flagged statement whose `and`/`or` operand or ternary arm never ran is left out).
2. The real-model sample of tests/real_models.py (56 classes built from tiny configs, needs torch and
   transformers 5.24.0) and the held-out diffusers sample of benchmarks/heldout.py: the warned statements
   found, and the flagged statements that ran without a warning (scored by the oracle's rule, from the
   instructions each traced statement ran).

Nothing here is asserted; tests/test_real_models.py asserts the second measurement in CI.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCORE = ROOT.parent / "shared" / "oracle" / "score.py"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))  # noqa: E402 below: these paths first

from run import WORK, corpus  # noqa: E402  the speed harness's download of the same wheel


FIGURES: dict = {}  # what --readme writes


def oracle(corpus_dir: Path) -> None:
    if not SCORE.is_file():
        print(f"oracle: skipped ({SCORE} is not beside the project)")
        return
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "tracesafe", "check", "--format", "json", "--exit-zero", "--no-cache", "."],
        cwd=corpus_dir,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    secs = time.perf_counter() - t
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write(out)
    WORK.mkdir(parents=True, exist_ok=True)
    report = WORK / "oracle-report.txt"
    res = subprocess.run(
        [sys.executable, str(SCORE), "--corpus", str(corpus_dir), "--findings", f.name, "--report", str(report)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise SystemExit(f"score.py failed: {res.stderr.strip()[-1000:]}")
    print(f"oracle: transformers 5.24.0, {len(json.loads(out))} findings in {secs:.1f} s")
    for line in res.stdout.strip().splitlines():
        print("  " + line)
    last = res.stdout.strip().splitlines()[-1]
    import re

    m = re.search(
        r"recall ([\d.]+) \((\d+)/(\d+).*?precision on executed code ([\d.]+) \((\d+) confirmed, (\d+) "
        r"false alarms",
        last,
    )
    if m:
        FIGURES["oracle"] = (
            f"**{m.group(1)}** ({m.group(2)}/{m.group(3)})",
            f"**{m.group(4)}** ({m.group(5)} confirmed, {m.group(6)} false alarms)",
        )
    print(f"  every miss and false alarm: {report}")


def models() -> None:
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as e:
        print(f"real models: skipped ({e.name} is not installed; pip install -e '.[test,export]')")
        return
    from real_models import measure

    t = time.perf_counter()
    r = measure()
    what = f"real models: transformers {transformers.__version__}, {len(r['traced'])} classes traced"
    FIGURES["models"] = (*_figures(what, r, t), len(r["traced"]))


def heldout() -> None:
    """diffusers, a library the analyzer was never tuned to (benchmarks/heldout.py)."""
    try:
        import diffusers
        import torch  # noqa: F401
    except ImportError as e:
        print(f"held-out: skipped ({e.name} is not installed)")
        return
    from heldout import cases
    from real_models import score

    t = time.perf_counter()
    r = score(diffusers, cases())
    what = f"held-out: diffusers {diffusers.__version__}, {len(r['traced'])} models traced"
    FIGURES["heldout"] = (*_figures(what, r, t), (diffusers.__version__, len(r["traced"])))


def _figures(what: str, r: dict, since: float) -> tuple[str, str]:
    """Print a real_models.score and return its recall and precision cells for the README table."""
    from real_models import describe

    print(f"{what} ({len(r['failed'])} failed to build or trace) in {time.perf_counter() - since:.1f} s")
    print("\n".join(describe(r)))
    alarms = r["alarms"]
    ran = r["confirmed"] + len(alarms)
    found = r["warned"] - len(r["missed"])
    return (
        f"**{found / r['warned'] if r['warned'] else 1:.3f}** ({found}/{r['warned']})",
        f"**{r['confirmed'] / ran if ran else 1:.3f}** ({r['confirmed']} confirmed, {len(alarms)} false alarms; "
        f"{len(r['unrun'])} not fully run left out)",
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, help="an unpacked transformers 5.24.0 package directory")
    ap.add_argument("--skip-oracle", action="store_true")
    ap.add_argument("--skip-models", action="store_true")
    ap.add_argument(
        "--rescue-json",
        type=Path,
        help="a rescue.json of benchmarks/rescue.py: --target dynamo against the statements where torch.export failed",
    )
    ap.add_argument("--readme", action="store_true", help="write the precision table into README.md")
    a = ap.parse_args()
    if not a.skip_oracle:
        oracle(a.corpus or corpus(WORK))
    if not a.skip_models:
        models()
        heldout()
    if a.rescue_json:
        dynamo(a.rescue_json)
    if a.readme:
        from readme import write_block

        write_block("precision", table())


def dynamo(path: Path) -> None:
    """`check --target dynamo` against the statements where torch.export of a real model failed (the rescue
    benchmark's before-runs: batch and sequence Dim.DYNAMIC), and where it failed next, after `fix` rewrote
    the first (its after-runs, in the fixed copy the benchmark leaves beside rescue.json)."""
    rows = json.loads(path.read_text())["rows"]
    # an export stopped by the runner's time limit names the line running when the alarm fired: no statement
    timed_out = [r for r in rows if re.fullmatch(r"over \d+ s", str(r.get("message") or ""))]
    import transformers
    from rescue import flagged_at, flagged_lines

    def hits(pkg: Path, wheres: list[str]) -> dict[str, bool]:
        flagged = flagged_lines(pkg)  # this build's findings, not the ones recorded with the rescue run
        return {w: flagged_at(flagged, pkg, w) for w in wheres}

    failing_kinds = ("data-dependent", "pinned", "other")
    failing = hits(
        Path(transformers.__file__).resolve().parent,
        sorted({r["where"] for r in rows if r["before"] in failing_kinds and r.get("where") and r not in timed_out}),
    )
    fixed = path.parent / "fixed" / "transformers"
    nxt = sorted(
        {
            r["after_where"]
            for r in rows
            if r.get("after") in failing_kinds and r.get("after_where") and r["after_where"] != r.get("where")
        }
    )
    second = hits(fixed, nxt) if nxt and fixed.is_dir() else {}
    found = sum(failing.values()) + sum(second.values())
    total = len(failing) + len(second)
    print(
        f"dynamo: {found}/{total} statements where torch.export failed are flagged by --target dynamo "
        f"({sum(failing.values())}/{len(failing)} first sites, {sum(second.values())}/{len(second)} next sites "
        f"after `fix`{'' if second or not nxt else '; the fixed copy is not beside rescue.json'})"
    )
    for r in timed_out:
        print(f"  not counted: {r['type']} ({r['message']}, the export did not finish)")
    for where, hit in sorted(failing.items()) + [(f"{w} (fixed copy)", h) for w, h in sorted(second.items())]:
        if not hit:
            print(f"  miss {where}")
    FIGURES["dynamo"] = (f"**{found / total if total else 1:.2f}** ({found}/{total})", "")


def table() -> str:
    lines = ["| measured against PyTorch itself | recall | precision on executed code |", "|---|---|---|"]
    if "oracle" in FIGURES:
        r, p = FIGURES["oracle"]
        lines.append(
            f"| transformers 5.24.0 tracer oracle (`../shared/oracle`: 871 sites, 1,354 classes traced) | {r} | {p} |"
        )
    if "models" in FIGURES:
        r, p, n = FIGURES["models"]
        lines.append(f"| {n} real model classes traced here (`tests/test_real_models.py`) | {r} | {p} |")
    if "heldout" in FIGURES:
        r, p, (version, n) = FIGURES["heldout"]
        lines.append(
            f"| diffusers {version}, {n} models traced (`benchmarks/heldout.py`; held out until its first run, "
            f"11/13, whose two misses were then fixed) | {r} | {p} |"
        )
    if "dynamo" in FIGURES:
        r, _ = FIGURES["dynamo"]
        lines.append(
            f"| `--target dynamo`: statements where torch.export of a transformers model fails, and where it "
            f"fails next once `fix` rewrote the first (rescue benchmark) | {r} | — |"
        )
    lines += [
        "",
        "Written by `python benchmarks/accuracy.py --readme"
        + (" --rescue-json <rescue.json from benchmarks/rescue.py>" if "dynamo" in FIGURES else "")
        + "`.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
