"""Generated `forward` bodies through every form: each rewrite either refuses or yields code that parses,
is idempotent, and can be checked again."""

from __future__ import annotations

import libcst as cst
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracesafe.analyzer import Config, check_source
from tracesafe.rewriters.engine import FORM_TARGET, FORMS, fix_source

NAMES = ["x", "y", "out", "n"]
EXPRS = [
    "x * 2",
    "-y",
    "x + y",
    "torch.zeros_like(x)",
    "x.clone()",
    "y",
    "x[0]",
    "self.w * x",
    "None",
    "1.0",
    "x.sum()",
    "helper(x)",
    "out",
    "x.t()",
    "torch.where(x > 0, x, y)",
]
CONDS = [
    "x.sum() > 0",
    "torch.all(x == 0)",
    "x.shape[0] > 1",
    "y.mean()",
    "not x.any()",
    "x.sum() > 0 and y.sum() > 0",
    "self.training",
    "y is None",
    "n < 3",
    "out.max() < 0.5",
]


def _indent(lines: list[str]) -> list[str]:
    return ["    " + line for line in lines]


@st.composite
def statements(draw, depth=0):
    kinds = ["assign", "aug", "ternary", "return", "bare_return", "self", "inplace", "pass"]
    if depth < 2:
        kinds += ["if", "ifelse", "elif", "while", "for"] * 2
    kind = draw(st.sampled_from(kinds))
    name, e1, e2, c = (
        draw(st.sampled_from(NAMES)),
        draw(st.sampled_from(EXPRS)),
        draw(st.sampled_from(EXPRS)),
        draw(st.sampled_from(CONDS)),
    )
    body = lambda: draw(st.lists(statements(depth + 1), min_size=1, max_size=3).map(lambda b: sum(b, [])))  # noqa: E731
    if kind == "assign":
        return [f"{name} = {e1}"]
    if kind == "aug":
        return [f"{name} += {e1}"]
    if kind == "ternary":
        return [f"{name} = {e1} if {c} else {e2}"]
    if kind == "return":
        return [f"return {e1}, {e2}" if draw(st.booleans()) else f"return {e1}"]
    if kind == "bare_return":
        return ["return"]
    if kind == "self":
        return [f"self.count = {e1}"]
    if kind == "inplace":
        return [f"{name}.add_(1)"]
    if kind == "pass":
        return ["pass"]
    if kind == "if":
        return [f"if {c}:", *_indent(body())]
    if kind == "ifelse":
        return [f"if {c}:", *_indent(body()), "else:", *_indent(body())]
    if kind == "elif":
        c2 = draw(st.sampled_from(CONDS))
        return [f"if {c}:", *_indent(body()), f"elif {c2}:", *_indent(body()), "else:", *_indent(body())]
    if kind == "while":
        return [f"while {c}:", *_indent(body())]
    return ["for i in range(3):", *_indent(body())]


@st.composite
def modules(draw):
    body = sum(draw(st.lists(statements(), min_size=1, max_size=5)), [])
    lines = [
        "import torch",
        "import torch.nn as nn",
        "",
        "",
        "def helper(t):",
        "    return t + 1",
        "",
        "",
        "class M(nn.Module):",
        "    def forward(self, x, y, n=0):",
        "        out = x",
        *("        " + line for line in body),
    ]
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(modules(), st.sampled_from(FORMS))
def test_generated_forwards_refuse_or_rewrite_cleanly(src, form):
    res = fix_source(src, form, unsafe_fixes=True)
    if res.source == src:
        return
    cst.parse_module(res.source)
    compile(res.source, "<fixed>", "exec")  # also what CPython accepts (libcst is more permissive)
    assert fix_source(res.source, form, unsafe_fixes=True).source == res.source
    check_source(res.source, "m.py", Config(target=FORM_TARGET[form]))
