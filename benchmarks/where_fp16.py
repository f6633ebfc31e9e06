"""`fix --form where` on half-precision traces of real models: tracer-warning sites before and after.

transformers' encoder-decoder layers guard fp16 overflow with `if hidden_states.dtype == torch.float16 and
not torch.isfinite(hidden_states).all(): clamp_value = ...; hidden_states = torch.clamp(...)`. In float32 the
tensor test never runs; traced in float16 the tracer freezes whether to clamp. This copies the installed
transformers, runs `tracesafe fix --form where --unsafe-fixes` over the copy, and for each model type builds
the base model from a tiny random config (fixed seed, `.half()`), runs it and traces it with the original and
with the fixed package: TracerWarning sites (file, line), and whether eager outputs are bit-identical.

    python benchmarks/where_fp16.py [--types bart,marian,...] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
sys.path.insert(0, str(TESTS))

from real_models import fix_command  # noqa: E402

TYPES = "bart,marian,mvp,plbart,blenderbot-small,nllb-moe,led,bigbird_pegasus"

_RUN = """
import json, sys, warnings
sys.path.insert(0, {tests!r})
import torch
import transformers
from transformers.models.auto import modeling_auto as auto
from real_models import inputs, tiny_config, traceable
from behaviour_runner import tensors
out = {{}}
for t in {types!r}:
    try:
        cfg = tiny_config(t)
        family = "seq2seq" if getattr(cfg, "is_encoder_decoder", False) else "text"
        torch.manual_seed(0)
        m = getattr(transformers, auto.MODEL_MAPPING_NAMES[t])(cfg).eval().half()
        x = inputs(m, family)
        if hasattr(m.config, "use_cache"):
            m.config.use_cache = False
        with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            eager = tensors(m(**x))
            torch.jit.trace(traceable(m, list(x)), tuple(x.values()), check_trace=False, strict=False)
        sites = sorted({{(w.filename.split("transformers/")[-1], w.lineno) for w in caught
                         if issubclass(w.category, torch.jit.TracerWarning)}})
        out[t] = {{"sites": sites, "eager": [e.float().tolist() for e in eager]}}
    except Exception as e:  # a type that does not build or run in half precision here says nothing
        out[t] = {{"error": f"{{type(e).__name__}}: {{str(e)[:200]}}"}}
print(json.dumps(out))
"""


def run(types: list[str], root: Path | None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(root) if root else "")
    code = _RUN.format(tests=str(TESTS), types=types)
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(p.stderr[-2000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--types", default=TYPES)
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "tracesafe-where-fp16")
    a = ap.parse_args()
    import transformers

    types = a.types.split(",")
    tree = a.out / "fixed"
    if tree.exists():
        shutil.rmtree(tree)
    shutil.copytree(
        Path(transformers.__file__).parent, tree / "transformers", ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run(fix_command("where", "transformers"), cwd=tree, check=True, capture_output=True)
    before, after = run(types, None), run(types, tree)
    # sites are (file, line); a rewrite above a site shifts its line, so a moved site shows as gone and new
    print("| model type | TracerWarning sites before | after | lines gone | lines new (fixed file) | eager outputs |")
    print("|---|---|---|---|---|---|")
    total = [0, 0]
    for t in types:
        b, f = before[t], after[t]
        if "error" in b or "error" in f:
            print(f"| {t} | {b.get('error') or f.get('error')} | | | |")
            continue
        sb, sf = {tuple(s) for s in b["sites"]}, {tuple(s) for s in f["sites"]}
        total[0] += len(sb)
        total[1] += len(sf)
        gone = ", ".join(f"{p.rsplit('/', 1)[-1]}:{n}" for p, n in sorted(sb - sf))
        new = ", ".join(f"{p.rsplit('/', 1)[-1]}:{n}" for p, n in sorted(sf - sb))
        same = "identical" if b["eager"] == f["eager"] else "**changed**"
        print(f"| {t} | {len(sb)} | {len(sf)} | {gone} | {new} | {same} |")
    print(f"| all | {total[0]} | {total[1]} | | | |")


if __name__ == "__main__":
    main()
