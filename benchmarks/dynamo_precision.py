"""`--target dynamo` against torch.export on the lines it ran: which findings did the export get through?

    python benchmarks/dynamo_precision.py            # needs torch and transformers 5.24.0

The 56 real-model classes of tests/real_models.py, each exported as the rescue benchmark does it (non-strict,
batch and sequence axes Dim.DYNAMIC: tests/behaviour_runner.export_dynamic) under a line tracer over
transformers' files. A statement flagged by `check --target dynamo` is

- confirmed when the export failed there (a data-dependent guard, or the line where an axis was pinned);
- a false alarm when the export ran it and went on, and the finding is about a tensor value (TS101-TS107,
  TS110): a branch on, conversion of or iteration over a tensor that torch.export got through;
- not judged when the finding is about a traced size (TS108, TS109): an export that ran through a size test
  may have added a guard there (the program then rejects other lengths, which `parity` would show), and
  which line added which guard is not recorded here;
- not fully run when an operand of its `and`/`or` or an arm of its ternary ran no instruction (recorded as
  for the tracer: tests/real_models.fully_ran), as the oracle scores it.

Nothing is asserted: these are figures for the issue (23.2: "budget its false alarms on executed code as
for trace"), printed with every false alarm.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

SIZE_RULES = {"TS108", "TS109"}


def main() -> None:
    import torch
    import transformers

    from behaviour_runner import export_dynamic
    from tracer_truth import source_spans
    from real_models import SAMPLE, build, fully_ran, header, inputs, operand_lines, statement_spans
    from tracesafe.analyzer import Config
    from tracesafe.runner import check_paths

    pkg = Path(transformers.__file__).resolve().parent
    root = str(pkg) + "/"
    ran: dict[str, set[int]] = {}  # file (relative) -> lines run by an export that went past them
    failed_at: dict[str, set[int]] = {}  # file -> the lines where an export failed
    results = {}
    resolved: dict[str, str] = {}
    ran_code: dict[str, set] = {}  # file -> (code, instruction offset) run on lines holding and/or or a ternary

    def tracer(frame, event, arg):
        fn = resolved.get(frame.f_code.co_filename)
        if fn is None:
            p = str(Path(frame.f_code.co_filename).resolve())
            fn = resolved[frame.f_code.co_filename] = p[len(root) :] if p.startswith(root) else ""
        if not fn:
            return None
        if event == "line":
            lines.setdefault(fn, set()).add(frame.f_lineno)
            frame.f_trace_opcodes = frame.f_lineno in operand_lines(root + fn)
        elif event == "opcode":
            ran_code.setdefault(fn, set()).add((frame.f_code, frame.f_lasti))
        return tracer

    t0 = time.perf_counter()
    for name, family in SAMPLE:
        lines: dict[str, set[int]] = {}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.manual_seed(0)
                model = build(name)
                x = inputs(model, family)
                sys.settrace(tracer)
                try:
                    res = export_dynamic(model, x, family)
                finally:
                    sys.settrace(None)
        except Exception as e:  # noqa: BLE001 - a model that does not build says nothing
            results[name] = f"not built: {type(e).__name__}"
            continue
        results[name] = res["kind"] + (f" at {res['where']}" if res.get("where") else "")
        where = res.get("where")
        if where:
            rel, _, ln = where.rpartition(":")
            failed_at.setdefault(rel, set()).add(int(ln))
        for rel, got in lines.items():
            if where and rel == where.rpartition(":")[0]:
                got = got - {int(where.rpartition(":")[2])}  # the export stopped there: not gone past
            ran.setdefault(rel, set()).update(got)
    secs = time.perf_counter() - t0

    ran_at = source_spans(ran_code)
    files = sorted(set(ran) | set(failed_at))
    found = check_paths([str(pkg / f) for f in files], Config(target="dynamo"), jobs=2).findings
    confirmed, alarms, unjudged, unrun, seen = [], [], [], [], set()
    for f in found:
        if not f.code.startswith("TS1"):
            continue
        rel = str(Path(f.path).resolve())[len(root) :]
        a, b = header(statement_spans(str(pkg / rel)), f.line)
        if (rel, a, b) in seen:
            continue
        text = f"{rel}:{a} {f.code} {(pkg / rel).read_text().splitlines()[a - 1].strip()[:90]}"
        if any(a <= ln <= b for ln in failed_at.get(rel, ())):
            seen.add((rel, a, b))
            confirmed.append(text)
        elif any(a <= ln <= b for ln in ran.get(rel, ())):
            seen.add((rel, a, b))
            if not fully_ran(str(pkg / rel), (a, b), ran_at.get(rel, set())):
                unrun.append(text)
            else:
                (unjudged if f.code in SIZE_RULES else alarms).append(text)
    kinds: dict[str, int] = {}
    for r in results.values():
        k = r.split()[0] if not r.startswith("not built") else "not built"
        kinds[k] = kinds.get(k, 0) + 1
    judged = len(confirmed) + len(alarms)
    print(f"{len(SAMPLE)} classes exported in {secs:.0f} s: {kinds}")
    print(
        f"flagged statements the exports reached: {len(confirmed)} where the export failed, {len(alarms)} about a "
        f"tensor value that the export went past (false alarms), {len(unjudged)} size tests it went past (not judged), "
        f"{len(unrun)} not fully run"
    )
    print(f"precision on the tensor-value findings it reached: {len(confirmed) / judged if judged else 1:.3f}")
    for t in confirmed:
        print(f"  confirmed {t}")
    for t in alarms:
        print(f"  false alarm {t}")
    for t in unjudged:
        print(f"  not judged {t}")
    for t in unrun:
        print(f"  not fully run {t}")


if __name__ == "__main__":
    main()
