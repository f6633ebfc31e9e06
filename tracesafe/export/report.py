"""The export stage's verdict, as text (streamed piece by piece) and JSON.

Contract: `ExportReport.ok` holds only when the model exported, the checker passed, no dynamic dimension was
pinned, no step timed out, every input that ran matched and the output signature is fixed. A case that
was never run is listed with `match: null` and why (`not run: ...`); one the model itself rejects is
`skipped`. `text()` is exactly the concatenation of what `export(stream=...)` was given."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

from tracesafe.analyzer import Finding


@dataclass
class CaseResult:
    name: str
    eager: str = ""  # summary of the eager output
    match: Optional[bool] = None
    detail: str = ""
    branches: dict = field(default_factory=dict)  # "path:line" -> sides taken
    output_shapes: list = field(default_factory=list)  # eager: each output's shape (None: not a tensor)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "eager": self.eager,
            "match": self.match,
            "detail": self.detail,
            "branches": self.branches,
            "output_shapes": self.output_shapes,
        }


@dataclass
class ExportReport:
    target: str
    exporter: str
    opset: int
    output: Optional[str] = None
    exported: bool = False
    checker: Optional[str] = None  # None = passed; else the checker's message
    error: Optional[str] = None  # the export failed (whole first line of the exporter's message)
    error_location: Optional[str] = None  # path:line, the innermost frame of the user's code
    timed_out: Optional[str] = None  # the step that ran out of time
    pinned: dict = field(default_factory=dict)  # dynamic dimension -> length the export pinned it to
    pinned_at: dict = field(default_factory=dict)  # dynamic dimension -> path:line of the code that pinned it
    dynamic: list = field(default_factory=list)  # the dynamic dimensions asked for
    notes: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    control_flow: dict = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # eager outputs the exporter leaves out (constant None)
    cases: list[CaseResult] = field(default_factory=list)
    branches: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    # how the eager outputs' shapes differ between inputs of one shape (None: they do not)
    signature: Optional[str] = None

    @property
    def parity_ok(self) -> bool:
        ran = [c for c in self.cases if c.match is not None]
        return bool(ran) and all(c.match for c in ran)

    @property
    def ok(self) -> bool:
        return (
            self.exported
            and self.checker is None
            and self.error is None
            and self.parity_ok
            and self.signature is None
            and not self.pinned
            and self.timed_out is None
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "exporter": self.exporter,
            "opset": self.opset,
            "output": self.output,
            "ok": self.ok,
            "exported": self.exported,
            # a check that never ran did not pass
            "checker": "not run" if not self.exported else "passed" if self.checker is None else self.checker,
            "error": self.error,
            "error_location": self.error_location,
            "timed_out": self.timed_out,
            "dynamic": self.dynamic,
            "pinned": self.pinned,
            "pinned_at": self.pinned_at,
            "notes": self.notes,
            "findings": [f.to_json() for f in self.findings],
            "control_flow": self.control_flow,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "dropped_outputs": self.dropped,
            "signature": "fixed" if self.signature is None else self.signature,
            "cases": [c.to_json() for c in self.cases],
            "branches": [b.to_json() for b in self.branches],
            "steps": [s.to_json() for s in self.steps],
        }

    def text(self) -> str:
        return "".join([self.header(), self.body(), *map(self.case_line, self.cases), self.tail()])

    def header(self) -> str:
        return f"{self.target}: export with `{self.exporter}` (opset {self.opset})\n"

    @staticmethod
    def case_line(c: CaseResult) -> str:
        verdict = {True: "match", False: "MISMATCH", None: "skipped"}[c.match]
        detail = c.detail
        if c.match is None and detail.startswith("not run: "):
            verdict, detail = "not run", detail[len("not run: ") :]
        return f"  input {c.name:<14} eager {c.eager:<28} onnx {verdict}{': ' + detail if detail else ''}\n"

    def body(self) -> str:
        """What the export and the checker said, and the findings that explain it."""
        out = []
        if self.timed_out:
            out.append(f"  export TIMED OUT: {self.timed_out}")
        elif self.error:
            where = f" at {self.error_location}" if self.error_location else ""
            out.append(f"  export FAILED{where}: {self.error}")
        if self.pinned:
            out.append(
                "  export PINNED "
                + ", ".join(
                    f"dynamic dimension `{d}` to {n if n is not None else 'the example length'}"
                    f"{' at ' + self.pinned_at[d] if d in self.pinned_at else ''}"
                    for d, n in self.pinned.items()
                )
                + ": it accepts no other length"
            )
        if self.exported:
            out.append(f"  exported: {self.output or '(not kept; use -o FILE)'}")
            out.append("  checker (full_check): " + ("passed" if self.checker is None else f"FAILED: {self.checker}"))
            ops = ", ".join(f"{k} x{v}" for k, v in self.control_flow.items()) or "none"
            out.append(f"  control flow kept: {ops}")
            out.append(f"  inputs: {', '.join(self.inputs)}")
            dropped = (
                f" (dropped by the exporter, None on the example: {', '.join(self.dropped)})" if self.dropped else ""
            )
            out.append(f"  outputs: {', '.join(self.outputs)}{dropped}")
        for f in self.findings:
            out.append(f"  {f.path}:{f.line}:{f.column}: {f.code} {f.message}")
        return "".join(line + "\n" for line in out)

    def tail(self) -> str:
        out = []
        if self.signature:
            out.append(f"  output signature differs between inputs of one shape: {self.signature}")
        for b in self.branches:
            sides = []
            for side in ("true", "false"):
                took = b.sides.get(side)
                if not took:
                    sides.append(f"{side}: not taken")
                else:
                    sides.append(f"{side}: {'match' if b.parity.get(side) else 'MISMATCH'} ({', '.join(took)})")
            out.append(f"  branch {b.path}:{b.line} `{b.text}`: " + "; ".join(sides))
        for n in self.notes:
            out.append(f"  note: {n}")
        out.append("  result: " + ("PASS" if self.ok else "FAIL"))
        return "\n".join(out) + "\n"


def report_json(report: ExportReport) -> str:
    return json.dumps(report.to_json(), indent=2) + "\n"
