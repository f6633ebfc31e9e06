"""The speed harness (issue: a repository-wide check at the cost of a parse, and instant re-runs).

    python benchmarks/run.py [--skip-torchfix] [--corpus DIR]

Downloads the transformers 5.24.0 wheel with `pip download`, unpacks its source, and measures in one run:
`tracesafe check --no-cache` with 1 and 2 jobs, a warm re-run with the cache, the same without the
prefilter, `fix --diff` over the whole tree with each form (each between two cold checks), libcst's bare
`parse_module` of every file (the floor of any libcst pass), TorchFix 0.7.0 (in its own venv) and
tracesafe on a 12-architecture subset, and a one-file check. It prints ratios, the per-phase profile,
and whether the findings were identical across all variants. Timings are wall-clock seconds from one
run; nothing here is asserted by the test suite.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import venv
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
# downloads, unpacked corpus, TorchFix venv: outside this repository, whose .gitignore `check` would
# honour for a tree inside it (as ruff does), leaving nothing to check
WORK = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tracesafe-bench"
WHEEL = "transformers==5.24.0"
TORCHFIX = "torchfix==0.7.0"
FORMS = ("flag", "where", "cond")
SUBSET = ["bert", "gpt2", "llama", "t5", "vit", "whisper", "clip", "bart", "roberta", "mistral", "resnet", "wav2vec2"]


def corpus(dest: Path) -> Path:
    src = dest / "src"
    if (src / "transformers").is_dir():
        return src / "transformers"
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "-d", str(dest), "-q"], check=True)
    wheel = next(dest.glob("transformers-5.24.0-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        z.extractall(src)
    return src / "transformers"


def timed(cmd: list[str], cwd: Path, env=None) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    return time.perf_counter() - t, p


def tracesafe(args: list[str], cwd: Path, env=None):
    cmd = [sys.executable, "-m", "tracesafe", "check", "--format", "json", "--exit-zero", "--profile", *args]
    secs, p = timed(cmd, cwd, env)
    if p.returncode not in (0, 2):
        raise SystemExit(f"tracesafe failed ({p.returncode}): {p.stderr[-2000:]}")
    profile = {}
    for line in p.stderr.splitlines():
        if line.startswith("profile "):
            profile = json.loads(line[len("profile ") :])
    findings = json.loads(p.stdout)
    digest = hashlib.sha256(json.dumps(findings, sort_keys=True).encode()).hexdigest()[:16]
    errors = sum(1 for line in p.stderr.splitlines() if ": error: " in line)
    return secs, len(findings), digest, profile, errors


PARSE_FLOOR = """
import sys, time, libcst
from pathlib import Path
files = sorted(Path(sys.argv[1]).rglob("*.py"))
t = time.perf_counter()
n = 0
for f in files:
    try:
        libcst.parse_module(f.read_bytes())
        n += 1
    except Exception:
        pass
print(time.perf_counter() - t, len(files), n)
"""


def parse_floor(tree: Path) -> tuple[float, int]:
    p = subprocess.run([sys.executable, "-c", PARSE_FLOOR, str(tree)], capture_output=True, text=True, check=True)
    secs, nfiles, _ok = p.stdout.split()
    return float(secs), int(nfiles)


def torchfix_env() -> Path:
    env_dir = WORK / "venv-torchfix"
    py = env_dir / "bin" / "python"
    if not py.exists():
        venv.create(env_dir, with_pip=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", TORCHFIX], check=True)
    return env_dir


def compile_bytecode() -> None:
    """Bytecode for tracesafe's modules, as a regular install (and TorchFix's venv) has: an editable install
    under PYTHONDONTWRITEBYTECODE=1 would recompile them on every run (measured: ~0.1 s of each)."""
    for d in ("analyzer", "rewriters", "tracesafe"):
        compileall.compile_dir(ROOT / d, quiet=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-torchfix", action="store_true")
    ap.add_argument("--corpus", type=Path, default=None, help="an unpacked transformers/ tree to reuse")
    ap.add_argument("--readme", action="store_true", help="write the speed table into README.md")
    args = ap.parse_args()
    tree = args.corpus.resolve() if args.corpus else corpus(WORK / "corpus")
    base = tree.parent  # run from here so paths read transformers/...
    rows: dict[str, float] = {}
    digests: dict[str, str] = {}
    print(
        f"corpus: {tree} ({sum(1 for _ in tree.rglob('*.py'))} files, "
        f"{sum(f.stat().st_size for f in tree.rglob('*.py')) / 1e6:.1f} MB)",
        flush=True,
    )

    compile_bytecode()
    floor, nfiles = parse_floor(tree)
    rows["libcst parse_module, every file"] = floor
    print(f"libcst parse floor: {floor:.1f} s for {nfiles} files", flush=True)

    shutil.rmtree(base / ".tracesafe_cache", ignore_errors=True)
    secs, n, digests["jobs 1"], profile1, errs = tracesafe(["--no-cache", "--jobs", "1", "transformers"], base)
    rows["tracesafe cold, 1 job"] = secs
    print(f"cold, 1 job: {secs:.1f} s, {n} findings, {errs} file errors", flush=True)
    if not n:
        sys.exit("benchmark: the cold check found nothing: was the corpus excluded (a .gitignore above it)?")
    secs, n, digests["jobs 2"], profile2, _ = tracesafe(["--no-cache", "--jobs", "2", "transformers"], base)
    rows["tracesafe cold, 2 jobs"] = secs
    print(f"cold, 2 jobs: {secs:.1f} s, {n} findings", flush=True)
    secs, n, digests["cache fill"], _, _ = tracesafe(["--jobs", "2", "transformers"], base)
    rows["tracesafe cache fill, 2 jobs"] = secs
    secs, n, digests["warm"], _, _ = tracesafe(["--jobs", "2", "transformers"], base)
    rows["tracesafe warm cache"] = secs
    print(f"warm: {secs:.2f} s, {n} findings", flush=True)
    env = {**os.environ, "TRACESAFE_NO_PREFILTER": "1"}
    secs, n, digests["no prefilter"], _, _ = tracesafe(["--no-cache", "--jobs", "2", "transformers"], base, env)
    rows["tracesafe cold, 2 jobs, prefilter off"] = secs
    print(f"prefilter off, 2 jobs: {secs:.1f} s, {n} findings", flush=True)

    # fix over the whole tree with each form, writing nothing (--diff), against the cold check (issue:
    # within 1.5x); --unsafe-fixes so every rewrite a form has is planned and applied in memory. This
    # machine's speed drifts by a fifth within minutes, and a ratio of two runs far apart measures the
    # drift: each fix runs between two cold checks (check, fix, check, fix, ...) and is compared with their
    # mean, which cancels a steady drift
    def cold_check() -> float:
        return tracesafe(["--no-cache", "--jobs", "2", "transformers"], base)[0]

    checks = [cold_check()]
    for form in FORMS:
        fsecs, p = timed(
            [
                sys.executable,
                "-m",
                "tracesafe",
                "fix",
                "--diff",
                "--unsafe-fixes",
                "--jobs",
                "2",
                "--form",
                form,
                "--profile",
                "transformers",
            ],
            base,
        )
        if p.returncode not in (0, 1):
            raise SystemExit(f"fix --form {form} failed ({p.returncode}): {p.stderr[-2000:]}")
        summary = next((line for line in p.stderr.splitlines() if line.startswith("Would fix")), "")
        rows[f"fix --diff --form {form}, 2 jobs"] = fsecs
        print(f"fix --form {form}: {fsecs:.1f} s; {summary}", flush=True)
        checks.append(cold_check())
        rows[f"cold checks around fix --form {form} (mean)"] = (checks[-2] + checks[-1]) / 2
    rows["cold checks between the fixes (4, spread)"] = max(checks) - min(checks)

    subset = [f"transformers/models/{m}" for m in SUBSET]
    secs, _subset_findings, _, _, _ = tracesafe(["--no-cache", "--jobs", "1", *subset], base)
    rows["tracesafe subset, 1 job"] = secs
    if not args.skip_torchfix:
        env_dir = torchfix_env()
        tf_secs, p = timed([str(env_dir / "bin" / "torchfix"), *subset], base)
        rows["TorchFix 0.7.0 subset"] = tf_secs
        print(
            f"subset: tracesafe {secs:.1f} s, TorchFix {tf_secs:.1f} s (exit {p.returncode}, "
            f"{len(p.stdout.splitlines())} lines)",
            flush=True,
        )

    seed = ROOT / "fixtures" / "seed_formatting.py"
    one, p = timed([sys.executable, "-X", "importtime", "-m", "tracesafe", "check", "--no-cache", str(seed)], ROOT)
    torch_imported = any(line.rstrip().endswith((" torch", "| torch")) for line in p.stderr.splitlines())
    # start-up, as ratios within this run: the interpreter, libcst's import, and tracesafe's commands
    # (median of 7 each, as the one-file check: one run of a 0.5 s command is mostly the machine's noise;
    # a cached file must answer without importing libcst)
    import statistics

    def median_of(cmd: list[str], cwd: Path) -> float:
        return statistics.median(timed(cmd, cwd)[0] for _ in range(7))

    one = median_of([sys.executable, "-m", "tracesafe", "check", "--no-cache", str(seed)], ROOT)
    rows["one-file check (pre-commit)"] = one

    startup_dir = WORK / "startup"
    shutil.rmtree(startup_dir, ignore_errors=True)
    startup_dir.mkdir(parents=True)
    shutil.copy(seed, startup_dir / "m.py")
    subprocess.run([sys.executable, "-m", "tracesafe", "check", "m.py"], cwd=startup_dir, capture_output=True)
    start = {
        "python -c pass": median_of([sys.executable, "-c", "pass"], ROOT),
        "python -c 'import libcst'": median_of([sys.executable, "-c", "import libcst"], ROOT),
        "tracesafe --version": median_of([sys.executable, "-m", "tracesafe", "--version"], ROOT),
        "tracesafe rule TS101": median_of([sys.executable, "-m", "tracesafe", "rule", "TS101"], ROOT),
        "check one file, cold": median_of(
            [sys.executable, "-m", "tracesafe", "check", "--no-cache", "m.py"], startup_dir
        ),
        "check one file, cached": median_of([sys.executable, "-m", "tracesafe", "check", "m.py"], startup_dir),
    }
    p = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tracesafe", "check", "m.py"],
        cwd=startup_dir,
        capture_output=True,
        text=True,
    )
    cached_libcst = any(line.rstrip().endswith(" libcst") for line in p.stderr.splitlines())

    print("\n== results (wall seconds, one run) ==")
    for k, v in rows.items():
        print(f"  {k:<40} {v:8.2f}")
    print("\n== ratios ==")
    ratio = lambda a, b: rows[a] / rows[b]  # noqa: E731
    print(
        f"  cold 1 job / libcst parse floor:  {ratio('tracesafe cold, 1 job', 'libcst parse_module, every file'):.2f}x"
        "  (target <= 1.0, stretch 0.5)"
    )
    print(
        f"  1 job / 2 jobs (speed-up):         {ratio('tracesafe cold, 1 job', 'tracesafe cold, 2 jobs'):.2f}x"
        "  (target >= 1.6)"
    )
    print(
        f"  warm / cold 2 jobs:                {100 * ratio('tracesafe warm cache', 'tracesafe cold, 2 jobs'):.1f}%"
        "  (target <= 5%)"
    )
    for form in FORMS:
        print(
            f"  fix --form {form} / the cold checks around it, 2 jobs: "
            f"{ratio(f'fix --diff --form {form}, 2 jobs', f'cold checks around fix --form {form} (mean)'):.2f}x"
            "  (target <= 1.5)"
        )
    around = sum(rows[f"cold checks around fix --form {f} (mean)"] for f in FORMS)
    print(
        "  fix, all forms / the cold checks around them:  "
        f"{sum(rows[f'fix --diff --form {f}, 2 jobs'] for f in FORMS) / around:.2f}x"
    )
    if "TorchFix 0.7.0 subset" in rows:
        print(
            f"  TorchFix / tracesafe on subset:    "
            f"{ratio('TorchFix 0.7.0 subset', 'tracesafe subset, 1 job'):.1f}x  (target >= 10)"
        )
    print(
        f"  one-file check (median of 7):      {one:.2f} s, torch imported: {torch_imported}"
        "  (target < 0.5 s, no torch)"
    )
    base, lib = start["python -c pass"], start["python -c 'import libcst'"]
    print("\n== start-up (median of 7; seconds, and beyond `python -c pass` / beyond `import libcst`) ==")
    for k, v in start.items():
        print(f"  {k:<28} {v:6.3f}  +{v - base:6.3f}  {v - lib:+7.3f}")
    print(
        f"  targets: --version, rule < 0.1 s; one file <= 0.15 s beyond import libcst; cached: no libcst "
        f"(imported: {cached_libcst})"
    )
    print(
        f"  findings identical (jobs 1, jobs 2, cache fill, warm, prefilter off): "
        f"{len(set(digests.values())) == 1} {digests}"
    )
    if args.readme:
        from readme import write_block

        write_block("speed", _speed_table(rows, start, one, torch_imported, cached_libcst, digests, nfiles))
    print("\n== per-phase profile, cold 1 job (seconds; parse includes helpers parsed on demand) ==")
    for k, v in profile1.items():
        print(f"  {k:<20} {v:8.2f}")
    print("\n== per-phase profile, cold 2 jobs (analysis phases are CPU seconds summed over workers) ==")
    for k, v in profile2.items():
        print(f"  {k:<20} {v:8.2f}")


def _speed_table(
    rows: dict, start: dict, one: float, torch_imported: bool, cached_libcst: bool, digests: dict, nfiles: int
) -> str:
    def ratio(a: str, b: str) -> float:
        return rows[a] / rows[b]

    around = {f: rows[f"cold checks around fix --form {f} (mean)"] for f in FORMS}
    fixes = " / ".join(f"{rows[f'fix --diff --form {f}, 2 jobs'] / around[f]:.2f}x" for f in FORMS)
    fix_all = sum(rows[f"fix --diff --form {f}, 2 jobs"] for f in FORMS) / sum(around.values())
    cold1, cold2 = rows["tracesafe cold, 1 job"], rows["tracesafe cold, 2 jobs"]
    floor = rows["libcst parse_module, every file"]
    warm = 100 * ratio("tracesafe warm cache", "tracesafe cold, 2 jobs")
    same = "yes" if len(set(digests.values())) == 1 else "NO"
    lines = [
        f"| transformers 5.24.0 ({nfiles:,} files), this machine (2 cores), one run | result |",
        "|---|---|",
        f"| `check --no-cache`, 1 job / libcst's bare parse of every file | {cold1:.1f} s / {floor:.1f} s = "
        f"**{cold1 / floor:.2f}x** |",
        f"| 2 jobs: speed-up over 1 job | {cold2:.1f} s: **{cold1 / cold2:.2f}x** |",
        f"| warm re-run (cache) / cold | **{warm:.1f} %** |",
        f"| `fix --diff` with {' / '.join(FORMS)} / the cold checks around each | {fixes} (all: **{fix_all:.2f}x**) |",
        f"| one-file check (pre-commit), median of 7 | **{one:.2f} s**, torch imported: {torch_imported} |",
        f"| `--version` / `rule TS101` / one cached file, medians of 7 (`python -c pass`: "
        f"{start['python -c pass']:.3f} s) | {start['tracesafe --version']:.3f} / "
        f"{start['tracesafe rule TS101']:.3f} / {start['check one file, cached']:.3f} s; libcst imported when "
        f"cached: {cached_libcst} |",
        f"| findings identical: 1 job, 2 jobs, cache fill, warm, prefilter off | {same} |",
        "",
        "Written by `python benchmarks/run.py --skip-torchfix --readme`.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
