"""The rescue benchmark: does `fix` turn exports that fail into exports that work, on real models?

    python benchmarks/rescue.py [--types N] [--form cond] [--jobs 2] [--out DIR] [--readme]

One class per transformers 5.24.0 model type (the causal LM where the type has one, else its base model;
text, vision and audio inputs; tiny random configs, fixed seeds: tests/behaviour_runner.py), in fresh
interpreters. Before: the forward pass (and a prefill plus one cached decode step for a causal LM),
torch.export with static shapes, and torch.export (non-strict) with the batch axis and the sequence axis of
text and audio inputs `Dim.DYNAMIC`, recording each failure's kind and the innermost line of transformers
that caused it. Then `check --target dynamo` on the package (is that line flagged?), `fix --unsafe-fixes
--form cond` on a copy (with the reason for each finding it leaves), and the same runs on the copy. After:
how many failing models export, with the exported program equal to eager on the example and on a new
batch and sequence length; eager outputs bit-identical; no model that exported before fails after.

`--types N` takes an evenly spread sample of N types (the slow test runs one); without it, every type that
builds. `--readme` writes the table into README.md between its `rescue` markers. Nothing is asserted here:
tests/test_rescue.py asserts the sample in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TESTS = ROOT / "tests"
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(HERE))

from real_models import fix_command  # noqa: E402  (tests/ is on the path from here)


def model_types() -> list[str]:
    """Every model type whose class the runner can build inputs for, sorted."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    from behaviour_runner import pick

    out = []
    for t in sorted(CONFIG_MAPPING_NAMES):
        try:
            pick(t)
        except (LookupError, AttributeError, ImportError):
            continue
        out.append(t)
    return out


def spread(types: list[str], n: int) -> list[str]:
    """n types evenly spread over the sorted list (not picked by result)."""
    if n >= len(types):
        return types
    step = len(types) / n
    return [types[int(i * step)] for i in range(n)]


def run(
    types: list[str], root: Path | None, work: Path, label: str, jobs: int, chunk: int = 12, reuse: bool = False
) -> dict:
    """behaviour_runner over types, `jobs` interpreters at a time, `chunk` types each (root: the directory
    holding the transformers copy to import; None: the installed one)."""
    import torch

    chunks = [types[i : i + chunk] for i in range(0, len(types), chunk)]
    env = dict(
        os.environ,
        TRACESAFE_DYNAMIC_EXPORT="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TRACESAFE_MODEL_LIMIT="300",
        PYTHONPATH=os.pathsep.join(filter(None, [str(root) if root else "", str(TESTS)])),
    )

    def one(i: int) -> dict:
        names = work / f"{label}-{i}.json"
        out = work / f"{label}-{i}.pt"
        if reuse and out.exists() and names.exists() and json.loads(names.read_text()) == chunks[i]:
            res = torch.load(out, weights_only=False)  # an earlier run of the same chunk (--reuse)
            res.pop("__transformers__", None)
            return res
        names.write_text(json.dumps(chunks[i]))
        p = subprocess.run(
            [sys.executable, str(TESTS / "behaviour_runner.py"), str(names), str(out)],
            env=env,
            capture_output=True,
            text=True,
        )
        if p.returncode != 0:
            return {t: {"error": f"runner failed: {p.stderr.strip().splitlines()[-1:] or ['?']}"} for t in chunks[i]}
        res = torch.load(out, weights_only=False)
        res.pop("__transformers__", None)
        return res

    results: dict = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for part in pool.map(one, range(len(chunks))):
            results.update(part)
    return results


def same(a: list, b: list) -> bool:
    import torch

    return len(a) == len(b) and all(
        x.shape == y.shape and x.dtype == y.dtype and torch.equal(x, y) for x, y in zip(a, b)
    )


def flagged_lines(pkg: Path) -> dict[str, set[int]]:
    """`check --target dynamo` on the package: file (relative) -> the lines its findings span."""
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "tracesafe",
            "check",
            "--target",
            "dynamo",
            "--format",
            "json",
            "--exit-zero",
            "--no-cache",
            "--jobs",
            "2",
            ".",
        ],
        cwd=pkg,
        capture_output=True,
        text=True,
    )
    out: dict[str, set[int]] = {}
    for f in json.loads(p.stdout):
        out.setdefault(f["path"], set()).update(range(f["line"], f["end_line"] + 1))
    return out


def flagged_at(flagged: dict[str, set[int]], pkg: Path, where: str) -> bool:
    """Does a finding (`flagged_lines`) lie on the statement holding `where` ("path:line")?"""
    lo, hi = statement(pkg, where)
    return bool(flagged.get(where.rpartition(":")[0], set()) & set(range(lo, hi + 1)))


def statement(pkg: Path, where: str) -> tuple[int, int]:
    """The header of the statement holding a line (an `if`'s test, a simple statement's lines)."""
    from real_models import header, statement_spans

    rel, _, line = where.rpartition(":")
    return header(statement_spans(str(pkg / rel)), int(line))


def fix_copy(pkg: Path, work: Path, form: str) -> tuple[Path, str, float]:
    tree = work / "fixed"
    if tree.exists():
        shutil.rmtree(tree)
    shutil.copytree(pkg, tree / "transformers", ignore=shutil.ignore_patterns("__pycache__"))
    t = time.perf_counter()
    p = subprocess.run(
        fix_command(form, "transformers"),
        cwd=tree,
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        raise SystemExit(f"fix failed: {p.stderr[-2000:]}")
    return tree, p.stderr, time.perf_counter() - t


def notes_at(said: str, rel: str, lines: range) -> list[str]:
    """What fix said about a statement it left (its refusals at those lines)."""
    out = []
    for ln in said.splitlines():
        m = re.match(r"transformers/(\S+?):(\d+):\d+: (.*)$", ln)
        if m and m.group(1) == rel and int(m.group(2)) in lines:
            out.append(m.group(3))
    return out


def measure(types: list[str], form: str, jobs: int, work: Path, reuse: bool = False) -> dict:
    import transformers

    pkg = Path(transformers.__file__).resolve().parent
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    before = run(types, None, work, "before", jobs, reuse=reuse)
    t_before = time.perf_counter() - t0
    flagged = flagged_lines(pkg)
    tree, said, t_fix = fix_copy(pkg, work, form)
    t0 = time.perf_counter()
    ran = [t for t in types if "forward" in before.get(t, {})]  # a type that did not run says nothing after
    after = run(ran, tree, work, "after", jobs)
    t_after = time.perf_counter() - t0

    rows = []
    for t in types:
        a, b = before.get(t, {}), after.get(t, {})
        if "forward" not in a:
            continue  # did not build or run here: says nothing
        row = {"type": t, "class": a.get("class")}
        da, db = a.get("dynamic") or {}, b.get("dynamic") or {}
        row["before"] = _kind(da, a)
        row["before_parity"] = da.get("parity")
        row["where"] = da.get("where")
        row["message"] = da.get("message")
        row["after"] = _kind(db, b)
        row["after_parity"] = db.get("parity")
        row["after_where"] = db.get("where")
        row["after_message"] = db.get("message")
        row["static_before"], row["static_after"] = "exported" in a, "exported" in b
        diffs = []
        for stage in ("forward", "decode"):
            if stage in a and not (stage in b and same(a[stage], b[stage])):
                diffs.append(stage)
            elif stage + "_error" in a and a[stage + "_error"] != b.get(stage + "_error"):
                diffs.append(stage + " error")
        row["eager_changed"] = diffs
        if row["where"] and row["before"] not in ("ok",):
            rel = row["where"].rpartition(":")[0]
            try:
                lo, hi = statement(pkg, row["where"])
            except (OSError, SyntaxError, ValueError):
                lo = hi = int(row["where"].rpartition(":")[2])
            row["flagged"] = bool(flagged.get(rel, set()) & set(range(lo, hi + 1)))
            row["notes"] = notes_at(said, rel, range(lo, hi + 1))
        rows.append(row)
    return {
        "types": len(types),
        "rows": rows,
        "seconds": {"before": t_before, "fix": t_fix, "after": t_after},
        "form": form,
    }


def _kind(d: dict, res: dict) -> str:
    """ok, data-dependent, pinned, other; "guarded" when it exported but its program rejects another batch or
    sequence length (a guard torch.export added silently, Dim.DYNAMIC)."""
    if not d:
        return "error" if "dynamic_error" in res else "not run"
    if d.get("kind") == "ok" and d.get("parity") not in (None, "ok") and "Guard failed" in (d.get("parity") or ""):
        return "guarded"
    return d["kind"]


def summarise(res: dict) -> dict:
    rows = res["rows"]
    failing = [r for r in rows if r["before"] in ("data-dependent", "pinned", "guarded", "other")]
    at_flagged = [r for r in failing if r.get("flagged")]
    ok_after = lambda r: r["after"] == "ok" and r["after_parity"] == "ok"  # noqa: E731
    rescued = [r for r in at_flagged if ok_after(r)]
    worked = [r for r in rows if r["before"] == "ok" and r["before_parity"] == "ok"]
    regressions = [r for r in worked if not ok_after(r)] + [
        r for r in rows if r["static_before"] and not r["static_after"]
    ]
    changed = [r for r in rows if r["eager_changed"]]
    statements = {r["where"] for r in failing if r["where"]}
    return {
        "ran": len(rows),
        "failing": failing,
        "at_flagged": at_flagged,
        "rescued": rescued,
        "worked": worked,
        "regressions": regressions,
        "changed": changed,
        "statements": statements,
        "by_kind": {
            k: sum(r["before"] == k for r in failing) for k in ("data-dependent", "pinned", "guarded", "other")
        },
    }


def table(res: dict, s: dict) -> str:
    pct = lambda a, b: f"{100 * a / b:.0f} %" if b else "n/a"  # noqa: E731
    lines = [
        f"| transformers 5.24.0, `fix --unsafe-fixes --form {res['form']}` | result |",
        "|---|---|",
        f"| model types run (one class each, tiny configs) | {s['ran']} of {res['types']} |",
        f"| dynamic export (batch, sequence `Dim.DYNAMIC`) fails before | {len(s['failing'])} "
        f"({s['by_kind']['data-dependent']} data-dependent, {s['by_kind']['pinned']} pinned axis, "
        f"{s['by_kind']['guarded']} exported but reject another length, {s['by_kind']['other']} other; "
        f"{len(s['statements'])} distinct statements) |",
        f"| … at a statement `check --target dynamo` flags | {len(s['at_flagged'])} |",
        f"| … of those, export after `fix` and match eager on the example and a new batch and sequence "
        f"length | **{len(s['rescued'])} ({pct(len(s['rescued']), len(s['at_flagged']))})** |",
        f"| eager behaviour changes (forward, cached decode step) | **{len(s['changed'])}** |",
        f"| regressions among the {len(s['worked'])} models that exported (dynamic, equal to eager) or "
        f"exported static before | **{len(s['regressions'])}** |",
    ]
    return "\n".join(lines) + "\n"


def details(s: dict) -> str:
    out = []
    for r in sorted(s["failing"], key=lambda r: r["type"]):
        state = "RESCUED" if r in s["rescued"] else "flagged" if r.get("flagged") else "not flagged"
        out.append(
            f"{r['type']:<24} {r['before']:<15} {r['where'] or '?'}  [{state}; after: {r['after']}"
            f"{' ' + (r['after_parity'] or '') if r['after'] == 'ok' else ''}"
            f"{' at ' + r['after_where'] if r.get('after_where') and r['after'] != 'ok' else ''}]"
        )
        for n in r.get("notes", []):
            out.append(f"    fix: {n}")
        if r["after"] != "ok" and r.get("after_message"):
            out.append(f"    after: {r['after_message'][:160]}")
    for r in s["changed"]:
        out.append(f"EAGER CHANGED {r['type']}: {', '.join(r['eager_changed'])}")
    for r in s["regressions"]:
        out.append(
            f"REGRESSION {r['type']}: after {r['after']} {r.get('after_parity') or ''} {r.get('after_message') or ''}"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--types", type=int, default=0, help="an evenly spread sample of this many model types")
    ap.add_argument("--form", default="cond")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "tracesafe-rescue")
    ap.add_argument("--readme", action="store_true", help="write the table into README.md")
    ap.add_argument("--reuse", action="store_true", help="reuse the before-runs an earlier run left in --out")
    ap.add_argument(
        "--write-sample",
        action="store_true",
        help="record the CI sample (tests/test_rescue.py) in benchmarks/rescue_sample.json",
    )
    a = ap.parse_args()
    types = model_types()
    if a.types:
        types = spread(types, a.types)
    res = measure(types, a.form, a.jobs, a.out, a.reuse)
    s = summarise(res)
    (a.out / "rescue.json").write_text(json.dumps(res, indent=1, default=str))
    text = table(res, s)
    secs = res["seconds"]
    text += (
        f"\n`python benchmarks/rescue.py{' --types ' + str(a.types) if a.types else ''}`: "
        f"{secs['before']:.0f} s before, {secs['fix']:.0f} s fix, {secs['after']:.0f} s after.\n"
    )
    print(text)
    print(details(s))
    if a.write_sample:
        working = sorted(r["type"] for r in s["worked"] if r["type"] not in {x["type"] for x in s["regressions"]})
        sample = {
            "failing_flagged": sorted(r["type"] for r in s["at_flagged"]),
            "rescued": sorted(r["type"] for r in s["rescued"]),
            "working": spread(working, 8),
        }
        (HERE / "rescue_sample.json").write_text(json.dumps(sample, indent=1) + "\n")
    if a.readme:
        from readme import write_block

        write_block("rescue", text)


if __name__ == "__main__":
    main()
