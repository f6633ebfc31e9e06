"""Real-code behaviour: `fix --unsafe-fixes` over a copy of the installed transformers 5.24.0, once per
form, then the real models run before and after.

`flag` changes no file there (each TS201 is refused with its reason: a submodule's forward, whose caller
would receive a tuple). For 36 of the model types whose files `where` or `cond` changed and that run on the
original (taken in an order
spread evenly over the sorted types; a causal LM where the type has one, else its base model; tiny random
configs, fixed seeds): the forward pass and, for a causal LM, a prefill plus one cached decode
step give bit-identical tensors (an error before must be the same error after), and at least 30 of them
must have run lines the fix wrote (line coverage of the rewritten lines, or the test fails); the fixed copy must
import; torch.jit.trace warns at no more sites after the fix than before (for `flag` and `where`: `cond`
output does not trace, by design); and a model that torch.export exported before still exports. Each form's
figures (files
changed, models compared, tracer-warning sites before and after) are printed; the README quotes them.
Marked slow; `.ci/run` runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from real_models import fix_command

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers", reason="the real-code behaviour test needs transformers 5.24.0")

pytestmark = [pytest.mark.slow, pytest.mark.torch]

HERE = Path(__file__).parent
PKG = Path(transformers.__file__).resolve().parent
MIN_MODELS = 30  # the floor for a form that changes model files
WANTED = 36  # models compared per form (keeps `.ci/run` within budget)
BATCH = 18
COVER_BATCH = 40  # types run with line coverage at a time, until enough ran rewritten lines


def _fix(form: str, root: Path, said: list | None = None) -> list[str]:
    """Fix a copy of the package in root; the changed files, relative to the package (what fix printed on
    stderr goes to `said`)."""
    tree = root / "transformers"
    shutil.copytree(PKG, tree, ignore=shutil.ignore_patterns("__pycache__"))
    p = subprocess.run(
        fix_command(form, "transformers"),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=2400,
    )
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-3000:]
    if said is not None:
        said.append(p.stderr)
    changed = sorted(
        str(f.relative_to(tree))
        for f in tree.rglob("*.py")
        if f.read_bytes() != (PKG / f.relative_to(tree)).read_bytes()
    )
    for rel in changed:  # every rewritten file still compiles (fix re-parses with libcst before writing)
        compile((tree / rel).read_text(encoding="utf-8"), rel, "exec")
    if changed:  # and fixing them again changes nothing
        again = subprocess.run(
            fix_command(form, *changed),
            cwd=tree,
            capture_output=True,
            text=True,
            timeout=2400,
        )
        assert "Fixed 0 file(s)" in again.stderr, again.stderr[-2000:]
    return changed


def _model_types(changed: list[str]) -> list[str]:
    """Model types whose modeling code a fix changed (a changed shared module reaches every model: then
    the sample of the tracer ground truth stands in)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES, model_type_to_module_name

    from behaviour_runner import pick

    dirs = {Path(c).parts[1] for c in changed if Path(c).parts[0] == "models" and len(Path(c).parts) > 2}
    types = sorted(t for t in CONFIG_MAPPING_NAMES if model_type_to_module_name(t) in dirs)
    if any(Path(c).parts[0] != "models" for c in changed):
        from real_models import SAMPLE

        types += sorted({getattr(transformers, n).config_class.model_type for n, _ in SAMPLE} - set(types))
    types = [t for t in types if _runnable(pick, t)]  # a model class whose inputs the runner generates
    return types


def _runnable(pick, model_type: str) -> bool:
    try:
        pick(model_type)
        return True
    except (LookupError, AttributeError, ImportError):  # no class, or it needs a backend not installed
        return False


def _changed_lines(root: Path, changed: list[str]) -> dict[str, list[int]]:
    """The lines of each fixed file that the fix wrote (inserted or replaced), in the fixed copy."""
    import difflib

    out = {}
    for rel in changed:
        old = (PKG / rel).read_text(encoding="utf-8").splitlines()
        new = (root / "transformers" / rel).read_text(encoding="utf-8").splitlines()
        lines = []
        for tag, _a, _b, c, d in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
            if tag in ("replace", "insert"):
                lines += range(c + 1, d + 1)
        out[rel] = lines
    return out


def _run(types: list[str], root: Path | None, out: Path, changed: dict | None = None, coverage: bool = False) -> dict:
    (out.parent / f"{out.stem}.json").write_text(json.dumps(types))
    args = [str(out.parent / f"{out.stem}.json"), str(out)]
    if changed is not None:
        (out.parent / f"{out.stem}.lines.json").write_text(json.dumps(changed))
        args.append(str(out.parent / f"{out.stem}.lines.json"))
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(root) if root else "", str(HERE)])),
        TRACESAFE_COVERAGE_ONLY="1" if coverage else "0",
    )
    p = subprocess.run(
        [sys.executable, str(HERE / "behaviour_runner.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=3000,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    res = torch.load(out, weights_only=False)
    where = Path(res.pop("__transformers__")).resolve()
    assert where == (root / "transformers" if root else PKG).resolve(), where  # it ran the copy we meant
    return res


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and x.dtype == y.dtype and torch.equal(x, y) for x, y in zip(a, b)
    )


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    cache: dict = {}

    def get(types: list[str]) -> dict:
        todo = [t for t in types if t not in cache]
        if todo:
            cache.update(_run(todo, None, tmp_path_factory.mktemp("orig") / "orig.pt"))
        return {t: cache[t] for t in types}

    return get


@pytest.mark.parametrize("form", ["flag", "where", "cond"])
def test_fixed_models_behave_as_before(form, tmp_path, originals):
    said: list[str] = []
    changed = _fix(form, tmp_path, said)
    if form == "flag":
        # every TS201 in transformers is a submodule's forward (its caller would get a tuple) or returns
        # values of different structure: flag refuses each, with its reason, and changes no file. (No
        # real library at hand has a top-level forward flag rewrites: diffusers and x-transformers neither.)
        refused = [ln for ln in said[0].splitlines() if " TS201 not fixed by `flag`: " in ln]
        assert changed == [] and len(refused) >= 10, (changed, said[0][-2000:])
        assert "has an unsafe" not in said[0]  # with --unsafe-fixes, nothing is left without its reason
        return
    eligible = _model_types(changed)
    lines = _changed_lines(tmp_path, changed)
    # the models whose forward pass or decode step runs a line the fix wrote (the fixed copy, with line
    # coverage): only those say anything about the fix. The eligible types in an order spread evenly over them
    # (not picked by result), in batches, until enough of them ran rewritten lines
    from concurrent.futures import ThreadPoolExecutor

    spread = [t for k in range(4) for t in eligible[k::4]]
    batches = [spread[i : i + COVER_BATCH] for i in range(0, len(spread), COVER_BATCH)]
    exercising: list[str] = []
    with ThreadPoolExecutor(max_workers=2) as pool:  # two interpreters at a time, one per core
        for i in range(0, len(batches), 2):
            if len(exercising) >= WANTED + 6:
                break
            pair = batches[i : i + 2]
            covs = pool.map(
                lambda b: _run(b[1], tmp_path, tmp_path / f"coverage-{b[1][0]}.pt", lines, coverage=True),
                enumerate(pair),
            )
            for batch, cov in zip(pair, covs):
                exercising += [t for t in batch if cov.get(t, {}).get("ran_changed")]
    order = exercising
    types, tried = [], 0
    while len(types) < WANTED and tried < len(order):
        batch = order[tried : tried + BATCH]
        tried += len(batch)
        ran = originals(batch)
        types += [t for t in batch if "forward" in ran[t]][: WANTED - len(types)]
    before = originals(types)
    after = _run(types, tmp_path, tmp_path / "fixed.pt", lines) if types else {}
    compared, diffs, w_before, w_after, worse, exercised = [], [], 0, 0, [], []
    exported = [0, 0]
    newly, untraceable = [], []
    for t in types:
        a, b = before[t], after[t]
        if "forward" not in a:  # did not build or run on the original: says nothing
            continue
        compared.append(t)
        if b.get("ran_changed"):
            exercised.append(t)
        for stage in ("forward", "decode"):
            if stage in a and not (stage in b and _same(a[stage], b[stage])):
                diffs.append(f"{t} ({a['class']}) {stage}: {b.get(stage + '_message', 'outputs differ')}")
            elif stage + "_error" in a and a[stage + "_error"] != b.get(stage + "_error"):
                diffs.append(f"{t} {stage}: raised {a[stage + '_error']} before, {b.get(stage + '_error')} after")
        exported[0] += "exported" in a
        exported[1] += "exported" in b
        if "exported" in a and "exported" not in b:
            diffs.append(f"{t}: exported with torch.export before, not after: {b.get('exported_message')}")
        if "exported" in b and "exported" not in a:
            newly.append(t)
        if form == "cond":
            # torch.jit.trace rejects torch.cond ("a dynamo-optimized function", README): the form serves
            # torch.export, measured above
            if "warnings" in a and "warnings" not in b:
                untraceable.append(t)
            continue
        if "warnings" in a:
            if "warnings" not in b:
                diffs.append(f"{t}: traced before, {b.get('warnings_message')} after")
                continue
            w_before += a["warnings"]
            w_after += b["warnings"]
            if b["warnings"] > a["warnings"]:
                worse.append(f"{t}: {a['warnings']} -> {b['warnings']}")
    trace = (
        f"; {len(untraceable)} no longer trace (torch.cond)"
        if form == "cond"
        else f"; tracer-warning sites {w_before} -> {w_after} (removed {w_before - w_after})"
    )
    print(
        f"\n{form}: {len(changed)} files changed, {len(eligible)} model types runnable here, {len(exercising)} run "
        f"rewritten lines, {tried} tried, "
        f"{len(compared)} ran and compared ({len(exercised)} ran rewritten lines){trace}; "
        f"torch.export succeeded on {exported[0]} before, {exported[1]} after"
        f"{' (newly: ' + ', '.join(newly) + ')' if newly else ''}"
    )
    assert not diffs, "behaviour changed:\n" + "\n".join(diffs)
    assert not worse, "more tracer warnings after the fix:\n" + "\n".join(worse)
    # a form's test proves something only on models that ran the code it rewrote
    assert len(exercised) >= MIN_MODELS, (tried, len(eligible), len(compared), exercised)
    if form == "where":
        assert w_after < w_before  # the trace form must remove warnings on the models it touched
