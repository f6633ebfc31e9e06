"""The export stage, step by step: build, export, validate, run every input in eager PyTorch and onnxruntime.

Contract: `export(target, inputs, ...)` returns an `ExportReport` or raises `UsageError` (bad input: exit 2).
Each step runs under `steps.run_step` (time limit, output captured). The export fails (`error`, at the
innermost frame of the user's code, with the rule `check` gives that line), times out (`timed_out`), or pins
a dynamic dimension (`pinned`; the model is then exported with static shapes so that inputs of the
example's shape are still compared, and the others are listed as not run). Then the checker
(`full_check`), onnxruntime, and parity on every case of `inputs.cases`, recording the branch sides each
took in every file the analysis reached."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from typing import Callable, Optional, Sequence

from tracesafe.analyzer import Finding

from . import inputs as inp
from .analysis import Static, spell
from .coverage import record_sides
from .errors import TimedOut, UsageError, error_text, first_line, root_cause
from .exporters import DEFAULT_OPSET, EXPORTERS, TARGET_OF, Pinned, export_onnx
from .outputs import Layout, compare, shapes, signature_change, summary
from .report import CaseResult, ExportReport
from .steps import DEFAULT_TIMEOUT, run_onnx, run_step
from .target import Built, load_target

CONTROL_FLOW_OPS = ("If", "Loop", "Scan", "Where")


def export(
    target: str,
    inputs: Sequence[inp.InputSpec] = (),
    *,
    init: Optional[dict] = None,
    exporter: str = "script",
    opset: Optional[int] = None,
    output: Optional[str] = None,
    timeout: Optional[float] = DEFAULT_TIMEOUT,
    stream: Optional[Callable[[str], None]] = None,
    dynamic: Optional[list[inp.DynamicAxis]] = None,
    static: bool = False,
) -> ExportReport:
    """Export `target` (FILE.py:NAME or package.module:NAME), validate it and check parity (see the module's
    contract). Each step gets `timeout` seconds. `stream`, when given, receives the text report piece by
    piece as it happens (ExportReport.text() is the same text)."""
    if timeout is not None and timeout <= 0:
        raise UsageError(f"--timeout {timeout:g}: give a number of seconds above 0")
    if exporter not in EXPORTERS:
        raise UsageError(f"unknown exporter {exporter!r} (one of {', '.join(EXPORTERS)})")
    opset = opset or DEFAULT_OPSET[exporter]
    if exporter == "dynamo" and opset < 18:
        raise UsageError(
            f"the dynamo exporter needs --opset 18 or higher (measured: it writes opset 18 anyway "
            f"when asked for {opset})"
        )
    if not 7 <= opset <= 23:
        raise UsageError(f"--opset {opset} is outside 7..23")
    if static and dynamic:
        raise UsageError("--static and --dynamic contradict each other")
    if output is not None:
        parent = os.path.dirname(os.path.abspath(output))
        if not os.path.isdir(parent):
            raise UsageError(f"-o {output}: directory {os.path.dirname(output) or '.'} does not exist")
    say = stream or (lambda _text: None)
    from .versions import check

    outside = check(exporter)
    built = load_target(target, init)
    slots, consts = _slots(built, list(inputs))
    dims = inp.assign_dims(slots, dynamic, static)
    report = ExportReport(built.label, exporter, opset, output)
    if exporter == "dynamo":
        base = inp.dim_sizes(slots)
        for d in [d for d in dims if base[d] < 2]:
            # torch.export specialises a length of 1 (and 0): the example cannot show it is dynamic
            report.notes.append(
                f"dynamic dimension `{d}` has length {base[d]} in the example, which torch.export "
                f"treats as static; give a longer example to export it dynamically"
            )
            dims.remove(d)
            for s in slots:
                s.dims = {a: x for a, x in s.dims.items() if x != d}
    report.dynamic = list(dims)
    if outside:
        report.notes.append(outside)
    with tempfile.TemporaryDirectory(prefix="tracesafe-") as tmp:
        _run(built, slots, consts, dims, report, output or os.path.join(tmp, "model.onnx"), timeout, say)
    say(report.tail())
    return report


def _slots(built: Built, specs: list[inp.InputSpec]) -> tuple[list[inp.Slot], dict]:
    """The model's inputs: from --input, else the factory's example tensors (non-tensor keyword values a
    factory passes are constants of every call)."""
    import torch

    owner = built.class_name
    if specs:
        return inp.bind(built.model.forward, specs, owner), {}
    if built.args is None:
        raise UsageError("give at least one --input SHAPE[:DTYPE] (or a factory returning example inputs)")
    import inspect

    params = [
        p.name
        for p in inspect.signature(built.model.forward).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    slots, consts = [], {}
    for i, t in enumerate(built.args):
        if not isinstance(t, torch.Tensor):
            raise UsageError(f"{owner}: the factory's positional input {i} is a {type(t).__name__}, not a tensor")
        name = params[i] if i < len(params) else f"input{i}"
        slots.append(inp.Slot(name, False, inp.spec_of(t, name), example=t))
    for name, v in (built.kwargs or {}).items():
        if isinstance(v, torch.Tensor):
            slots.append(inp.Slot(name, True, inp.spec_of(v, name), example=v))
        else:
            consts[name] = v
    if not slots:
        raise UsageError(f"{owner}: the factory gave no tensor inputs")
    return slots, consts


def _call(model, slots: list[inp.Slot], consts: dict, tensors: dict):
    args = [tensors[s.name].clone() for s in slots if not s.keyword]
    kwargs = {s.name: tensors[s.name].clone() for s in slots if s.keyword}
    return model(*args, **kwargs, **consts)


def _not_run(report: ExportReport, cases: list[inp.Case], why: str, say) -> None:
    for c in cases:
        r = CaseResult(c.name, detail=f"not run: {why}")
        report.cases.append(r)
        say(report.case_line(r))


def _run(built: Built, slots, consts, dims, report: ExportReport, out_path: str, timeout, say) -> None:
    import onnx
    import onnxruntime as ort
    import torch

    for name in ("torch", "onnxscript", "onnx_ir"):  # their logs go into the steps' captured output
        logging.getLogger(name).setLevel(logging.CRITICAL)
    ort.set_default_logger_severity(3)
    say(report.header())
    exporter, model = report.exporter, built.model
    static = Static.of(built.class_file, built.file, TARGET_OF[exporter], built.roots)
    example = inp.example_case(slots)
    cases = inp.cases(slots, dims, with_example=all(s.example is not None for s in slots))
    caught: list[tuple[type, str, Optional[tuple]]] = []  # (category, message, user frame)

    def on_warning(message, category, filename, lineno, file=None, line=None):
        # torch warns from its own frames: the user's line is further up the stack
        caught.append((category, str(message), static.user_frame()))

    if consts:
        report.notes.append("constant keyword inputs: " + ", ".join(f"{k}={v!r}" for k, v in consts.items()))
    try:
        with warnings.catch_warnings(), run_step(report.steps, "export", timeout, "the export"):
            warnings.simplefilter("always")
            warnings.showwarning = on_warning
            live = list(dims)
            while True:
                try:
                    export_onnx(
                        model, slots, example.tensors, exporter, report.opset, out_path, live, consts, static.user_frame
                    )
                    break
                except Pinned as p:
                    # say where, then export with the other dimensions still dynamic: the inputs of the
                    # example's lengths are still compared, the others listed as not run
                    report.pinned.update(p.dims)
                    report.pinned_at.update({d: f"{spell(f)}:{ln}" for d, (f, ln) in p.where.items()})
                    for f, ln in p.where.values():
                        report.findings.extend(x for x in static.rule_at(f, ln) if x not in report.findings)
                    report.notes.append(f"torch.export: {p}")
                    live = [d for d in live if d not in p.dims]
                    for s in slots:
                        s.dims = {a: d for a, d in s.dims.items() if d in live}
        report.exported = True
    except UsageError:
        raise
    except TimedOut as e:
        report.timed_out = str(e)
        say(report.body())
        _not_run(report, cases, "the export timed out", say)
        return
    except Exception as e:  # noqa: BLE001 - an export failure is the report's verdict, not a crash
        root = root_cause(e)
        report.error = error_text(root)
        at = static.user_location(e)
        if at is not None:
            report.error_location = f"{spell(at[0])}:{at[1]}"
            # the failure is a rule's hazard only when the analyzer flagged that line; otherwise it stays
            # the exporter's own error (a shape mismatch is not a tensor-to-bool conversion)
            report.findings = static.rule_at(*at)
        say(report.body())
        _not_run(report, cases, "the export failed", say)
        return
    for category, message, at in caught:
        if issubclass(category, torch.jit.TracerWarning) and at is not None:
            here = static.rule_at(*at) or [
                Finding(
                    spell(at[0]),
                    at[1],
                    1,
                    at[1],
                    1,
                    _code_for_warning(message),
                    f"tracer: {message.splitlines()[0][:160]}",
                    "",
                )
            ]
            report.findings.extend(f for f in here if f not in report.findings)
    report.findings.sort(key=Finding.sort_key)

    sess = None
    try:
        with run_step(report.steps, "check", timeout, "the ONNX checker"):
            model_proto = onnx.load(out_path)
            try:
                onnx.checker.check_model(model_proto, full_check=True)
            except Exception as e:  # noqa: BLE001
                report.checker = first_line(e)
            report.control_flow, report.inputs, report.outputs = _graph_summary(model_proto)
            _check_dims(model_proto, slots, report)
            if report.checker is None:
                opts = ort.SessionOptions()
                opts.log_severity_level = 3
                try:
                    sess = ort.InferenceSession(out_path, opts, providers=["CPUExecutionProvider"])
                except Exception as e:  # noqa: BLE001
                    report.checker = f"onnxruntime cannot load the model: {first_line(e)}"
    except TimedOut as e:
        report.timed_out = str(e)
    layout = None
    if sess is not None:
        try:
            with (
                torch.no_grad(),
                warnings.catch_warnings(),
                run_step(report.steps, "eager example", timeout, "eager PyTorch"),
            ):
                warnings.simplefilter("ignore")
                layout = Layout.of(_call(model, slots, consts, example.tensors), exporter)
            report.dropped = layout.dropped
        except TimedOut as e:
            report.timed_out = str(e)
        except Exception as e:  # noqa: BLE001
            report.notes.append(f"eager PyTorch raised on the example: {error_text(e)}")
    say(report.body())
    if sess is None or layout is None:
        why = (
            "the export timed out"
            if report.timed_out
            else "the model did not pass the checker"
            if report.checker
            else "eager PyTorch raised on the example"
        )
        _not_run(report, cases, why, say)
        return

    shapes_in: dict[str, tuple] = {}
    taken_by: dict[str, dict] = {}
    for case in cases:
        result = CaseResult(case.name)
        if report.pinned and any(d in report.pinned for d in case.sizes):
            result.detail = "not run: the export pinned " + ", ".join(
                f"`{d}`" for d in case.sizes if d in report.pinned
            )
            report.cases.append(result)
            say(report.case_line(result))
            continue
        taken: dict = {}
        try:
            with (
                torch.no_grad(),
                warnings.catch_warnings(),
                run_step(report.steps, f"eager {case.name}", timeout, "eager PyTorch"),
            ):
                warnings.simplefilter("ignore")
                with record_sides(static, taken):
                    want = _call(model, slots, consts, case.tensors)
        except TimedOut as e:
            # a model that does not end on this input proves nothing there: a failure, named
            result.match, result.detail = False, str(e)
            report.cases.append(result)
            say(report.case_line(result))
            continue
        except Exception as e:  # noqa: BLE001 - an input the model itself rejects says nothing about ONNX
            result.detail = f"eager raised {error_text(e)}"
            report.cases.append(result)
            say(report.case_line(result))
            continue
        result.eager = summary(want)
        result.output_shapes = shapes(want)
        shapes_in[case.name] = tuple(tuple(t.shape) for t in case.tensors.values())
        result.branches = {f"{spell(f)}:{ln}": sorted(v) for (f, ln), v in taken.items()}
        taken_by[case.name] = taken
        try:
            with run_step(report.steps, f"onnxruntime {case.name}", None):
                got = run_onnx(sess, _feeds(sess, slots, case.tensors), timeout)
            result.match, result.detail = compare(want, got, layout)
        except TimedOut as e:
            result.match, result.detail = False, str(e)
        except Exception as e:  # noqa: BLE001
            result.match, result.detail = False, f"onnxruntime raised {error_text(e)}"
        report.cases.append(result)
        say(report.case_line(result))
    report.signature = signature_change(report.cases, shapes_in)
    _coverage(report, static, built, taken_by)


def _feeds(sess, slots, tensors: dict) -> dict:
    names = [i.name for i in sess.get_inputs()]
    if all(n in tensors for n in names):
        return {n: tensors[n].numpy() for n in names}
    return {n: tensors[s.name].numpy() for n, s in zip(names, slots)}


def _check_dims(model_proto, slots, report: ExportReport) -> None:
    """A dynamic dimension the ONNX graph gives a fixed length is pinned, whatever the exporter said."""
    by_name = {i.name: i for i in model_proto.graph.input}
    for s in slots:
        inp_ = by_name.get(s.name)
        if inp_ is None or not inp_.type.HasField("tensor_type"):
            continue
        dims = inp_.type.tensor_type.shape.dim
        for axis, d in s.dims.items():
            if axis < len(dims) and dims[axis].HasField("dim_value") and not dims[axis].dim_param:
                report.pinned.setdefault(d, dims[axis].dim_value)


def _coverage(report: ExportReport, static: Static, built: Built, taken_by: dict) -> None:
    """Branch sides per input; a branch of the model's own classes that no input took is not proven."""
    from tracesafe.analyzer.source import canonical

    classes = {type(m).__name__ for m in built.model.modules()}
    results = {c.name: c for c in report.cases}
    for b in static.branches:
        key = (canonical(b.path), b.line)
        for name, taken in taken_by.items():
            for side in taken.get(key, ()):
                b.sides.setdefault(side, []).append(name)
                b.parity[side] = b.parity.get(side, True) and bool(results[name].match)
    # branches of the model's own classes, and those elsewhere that its inputs reached
    report.branches = [b for b in static.branches if b.owner in classes or b.sides]
    uncovered = [
        f"{b.path}:{b.line} {side}" for b in report.branches for side in ("true", "false") if side not in b.sides
    ]
    if uncovered:
        report.notes.append("no generated input took: " + ", ".join(uncovered) + " (not proven)")


def _graph_summary(model) -> tuple[dict, list[str], list[str]]:
    counts: dict[str, int] = {}

    def walk(graph):
        for n in graph.node:
            if n.op_type in CONTROL_FLOW_OPS:
                counts[n.op_type] = counts.get(n.op_type, 0) + 1
            for a in n.attribute:
                if a.g is not None and a.g.node:
                    walk(a.g)
                for g in a.graphs:
                    walk(g)

    walk(model.graph)

    def describe(v) -> str:
        t = v.type
        if t.HasField("optional_type"):
            return f"{v.name}: optional<{_tensor_type(t.optional_type.elem_type)}>"
        if t.HasField("sequence_type"):
            return f"{v.name}: sequence<{_tensor_type(t.sequence_type.elem_type)}>"
        return f"{v.name}: {_tensor_type(t)}"

    return counts, [describe(v) for v in model.graph.input], [describe(v) for v in model.graph.output]


def _tensor_type(t) -> str:
    import onnx

    if not t.HasField("tensor_type"):
        return "?"
    tt = t.tensor_type
    dims = [d.dim_param or str(d.dim_value) if (d.dim_param or d.HasField("dim_value")) else "?" for d in tt.shape.dim]
    return f"{onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name}[{','.join(dims)}]"


def _code_for_warning(message: str) -> str:
    m = message.lower()
    if "iterating over a tensor" in m:
        return "TS107"
    if "python boolean" in m:
        return "TS104"
    return "TS106"
