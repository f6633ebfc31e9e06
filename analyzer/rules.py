"""The rule registry: one table drives the analyzer's codes, the CLI, the docs and SARIF."""

from __future__ import annotations

from typing import NamedTuple

TARGETS = ("trace", "script", "dynamo")


# A named tuple rather than a dataclass: `dataclasses` pulls in `inspect`, a sixth of the 0.1 s that
# `tracesafe --version` and `tracesafe rule` may take.
class Rule(NamedTuple):
    """One rule: its code, ruff-style docs (what, why, example, instead), the targets it applies to and the
    rewrite forms that can fix it."""

    code: str
    name: str
    severity: str  # "error" | "warning"
    summary: str  # one line, SARIF shortDescription
    what: str
    why: str
    example: str
    instead: str
    targets: tuple[str, ...] = ("trace", "dynamo")
    forms: tuple[str, ...] = ()

    def docs(self) -> str:
        """ruff-style documentation in Markdown."""
        return (
            f"# {self.code} {self.name}\n\n"
            f"Severity: {self.severity}. Applies to targets: {', '.join(self.targets)}.\n\n"
            f"## What it does\n{self.what}\n\n"
            f"## Why is this bad?\n{self.why}\n\n"
            f"## Example\n```python\n{self.example.strip()}\n```\n\n"
            f"## Use instead\n```python\n{self.instead.strip()}\n```\n"
        )


_RULES = [
    Rule(
        "TS101",
        "tensor-if",
        "error",
        "`if` whose test depends on a tensor value",
        "Flags an `if` statement whose condition is computed from a tensor value, such as "
        "`if x.sum() > 0:` or `if torch.all(x == 0):`.",
        "`torch.jit.trace` and the TorchScript ONNX exporter run `forward` once and convert the "
        "condition to a Python `bool`. The branch taken for the example input is frozen into the "
        "graph and every later input takes it too, silently. The torch.export-based exporter "
        "(`dynamo=True`) refuses it with `GuardOnDataDependentSymNode`. Under `--target dynamo` this "
        "includes a number read with `.item()`, wherever it is tested: torch.export reads it as an unbacked "
        "symbol and fails at the `if`, not at `.item()` (the tracer freezes it at `.item()`, TS106).",
        """
def forward(self, x):
    if x.sum() > 0:
        y = x * 2
    else:
        y = -x
    return y
""",
        """
def forward(self, x):
    # both arms are cheap and always valid: keep the choice in the graph
    return torch.where(x.sum() > 0, x * 2, -x)
""",
        forms=("where", "cond"),
    ),
    Rule(
        "TS102",
        "tensor-while",
        "error",
        "`while` whose test depends on a tensor value",
        "Flags a `while` loop whose condition is computed from a tensor value.",
        "The tracer unrolls the loop for the example input: the exported graph always runs the same "
        "number of iterations. The torch.export-based exporter fails with `GuardOnDataDependentSymNode`.",
        """
def forward(self, x):
    while x.sum() < 100:
        x = x.abs() + 1
    return x
""",
        """
def forward(self, x):
    # torch.export-based exporter: the loop becomes an ONNX Loop
    return torch.while_loop(lambda x: x.sum() < 100, lambda x: (x.abs() + 1,), (x,))[0]
""",
        forms=("cond",),
    ),
    Rule(
        "TS103",
        "tensor-ternary",
        "error",
        "`a if cond else b` with a tensor-valued condition",
        "Flags a conditional expression whose condition is computed from a tensor value.",
        "The condition is converted to a Python `bool` once, while tracing; the exported graph keeps "
        "only the arm chosen for the example input.",
        """
def forward(self, x):
    return x * 2 if x.mean() > 0 else x
""",
        """
def forward(self, x):
    return torch.where(x.mean() > 0, x * 2, x)
""",
        forms=("where",),
    ),
    Rule(
        "TS104",
        "tensor-bool-op",
        "error",
        "`and`/`or`/`not`/`bool()` coercing a tensor to a Python bool",
        "Flags `and`, `or`, `not`, `bool(...)` and comparisons hidden in `min`/`max`/`sorted`/`in` "
        "that turn a tensor into a Python `bool` outside an `if`/`while` test.",
        "Each coercion runs once while tracing; the result is baked into the graph as a constant.",
        """
def forward(self, x, y):
    keep = (x.sum() > 0) and (y.sum() > 0)
    return x * keep
""",
        """
def forward(self, x, y):
    keep = torch.logical_and(x.sum() > 0, y.sum() > 0)
    return x * keep
""",
    ),
    Rule(
        "TS105",
        "tensor-assert",
        "error",
        "`assert` on a tensor value",
        "Flags an `assert` whose condition is computed from a tensor value.",
        "The assertion is evaluated once while tracing and disappears from the graph; under "
        "`dynamo=True` it fails with `GuardOnDataDependentSymNode`.",
        """
def forward(self, x):
    assert (x >= 0).all()
    return x.sqrt()
""",
        """
def forward(self, x):
    torch._assert_async((x >= 0).all())  # or validate inputs before export
    return x.sqrt()
""",
        forms=("where", "cond"),  # the assert becomes eager-only: skipped while that exporter runs
    ),
    Rule(
        "TS106",
        "tensor-to-python",
        "error",
        "a tensor or traced size converted to a Python value",
        "Flags `int()`, `float()`, `.item()`, `.tolist()`, `.numpy()`, `math.*`, `str()`/f-strings "
        "of tensors, `torch.tensor(<computed value>)`, and tensor-valued indices into Python containers: "
        "a list or tuple, an `nn.ModuleList`, `nn.Sequential` or `nn.ParameterList` "
        "(`self.experts[logits.argmax()]`).",
        "The Python value is computed once while tracing and recorded as a constant: every later "
        "input gets the example input's number. A tensor index into a Python container goes through "
        "`Tensor.__index__`, which the tracer freezes without any TracerWarning: the graph keeps the "
        "element (the expert, the scale) the example chose.",
        """
def forward(self, x):
    scale = float(x.sum())
    return x * scale
""",
        """
def forward(self, x):
    # keep the value a tensor: it stays an input-dependent node of the graph
    return x * x.sum()
""",
    ),
    Rule(
        "TS107",
        "tensor-iteration",
        "error",
        "iterating over or unpacking a tensor",
        "Flags `for v in tensor`, `enumerate(tensor)`, `zip(tensor, ...)`, `list(tensor)` and `a, b = tensor`.",
        "Iteration fixes the number of steps to the example input's first dimension.",
        """
def forward(self, x):
    return torch.stack([row * 2 for row in x])
""",
        """
def forward(self, x):
    return x * 2  # vectorise over the first dimension
""",
    ),
    Rule(
        "TS108",
        "shape-branch",
        "warning",
        "control flow on a traced size",
        "Flags `if`/`while`/ternaries/asserts/comparisons on a traced size such as `x.shape[0] > 1`, "
        "`x.size(1) == 3`, `x.numel()`, and `len(tensor)`. Under `--target dynamo` it also flags what makes "
        "torch.export pin a dynamic axis to the example's length: a loop or a list over a traced size "
        "(`for i in range(seq_len)`, `[(h, w)] * batch`), and `F.max_pool1d` / `nn.MaxPool1d` without "
        "`return_indices`, which specialises the length axis (torch 2.13, 2.14).",
        "The size is frozen to the example input's value: a batch or sequence axis that is dynamic at "
        "export time silently takes the example's branch. `x.dim()` and `x.ndim` are safe.",
        """
def forward(self, x):
    if x.shape[0] > 1:
        x = x - x.mean(0)
    return x
""",
        """
def forward(self, x):
    # torch.export-based exporter with a dynamic batch axis: both arms stay in the graph (ONNX If)
    def true_fn(x):
        return x - x.mean(0)
    def false_fn(x):
        return x.clone()
    return torch.cond(x.shape[0] > 1, true_fn, false_fn, (x,))
""",
        targets=("trace", "dynamo"),
        forms=("cond", "where"),  # where: only a size check that raises (it becomes eager-only)
    ),
    Rule(
        "TS109",
        "tensor-check",
        "warning",
        "a tensor or traced size tested only to raise or warn",
        "Flags an `if` on a tensor value or a traced size whose arm only raises or warns "
        "(`if (ids >= vocab).any(): raise ValueError(...)`), and an `assert` on a traced size "
        "(`assert x.shape[-1] == self.dim`); an `assert` on a tensor value is TS105. Such a check decides "
        "no value the model computes, so it is ranked apart from the branches that do: a project can "
        "`ignore` it and keep TS101.",
        "What it costs depends on the exporter. `torch.jit.trace` and the TorchScript exporter freeze the "
        "check: the graph never raises, and its outputs on valid inputs are still right. The torch.export-"
        "based exporter (`dynamo=True`) cannot export a check on a tensor value at all "
        "(`GuardOnDataDependentSymNode`), and a check on a size whose axis is dynamic becomes a guard on "
        "that size. `torch.jit.script` keeps it as it is.",
        """
def forward(self, ids):
    if (ids >= self.vocab_size).any():
        raise ValueError("token id out of range")
    return self.embed(ids)
""",
        """
def forward(self, ids):
    # under torch.export the check is a runtime assertion of the exported program; eager raises as before
    if torch.compiler.is_compiling():
        torch._check(torch.logical_not((ids >= self.vocab_size).any()).item())
    elif (ids >= self.vocab_size).any():
        raise ValueError("token id out of range")
    return self.embed(ids)
""",
        targets=("trace", "dynamo"),
        forms=("where", "cond"),  # where: eager-only while tracing; cond: torch._check under torch.export
    ),
    Rule(
        "TS110",
        "module-cast",
        "error",
        "`forward` moves or casts a submodule's parameters",
        "Under `--target dynamo`, flags a call in `forward` (or what it reaches) that converts a module's "
        "parameters in place: `.to(...)`, `.float()`, `.half()`, `.double()`, `.bfloat16()`, `.type(...)`, "
        "`.cuda()`, `.cpu()` on a submodule or on `self` (`self.classifier = self.classifier.to(self.dtype)`).",
        "torch.export traces `forward` with fake parameters, and a module's `_apply` cannot swap them: the "
        "export fails with `_apply(): Couldn't swap Linear.weight`, whatever the shapes and even when the "
        "dtype is already the one asked for. The tracer records the cast, so only torch.export is affected.",
        """
def forward(self, hidden_states):
    self.classifier = self.classifier.to(torch.float32)
    return self.classifier(hidden_states.to(torch.float32))
""",
        """
def __init__(self, config):
    super().__init__()
    self.classifier = nn.Linear(config.hidden_size, config.num_experts, dtype=torch.float32)

def forward(self, hidden_states):
    return self.classifier(hidden_states.to(torch.float32))
""",
        targets=("dynamo",),
    ),
    Rule(
        "TS201",
        "optional-return",
        "error",
        "`forward` returns `None` on some paths and tensors on others",
        "Flags the returns of a `forward` method that yields `None` on some paths (an explicit "
        "`return None`, a bare `return`, a variable that may hold `None`, or falling off the end) "
        "and a value on others.",
        "An ONNX graph has a fixed output signature. Tracing records whichever path the example "
        "input took; the TorchScript exporter writes an invalid model below opset 16. Under "
        "`--target script`, a `forward` annotated `-> Optional[torch.Tensor]` is not flagged: it "
        "exports as an ONNX Optional output at opset 16 and above (the `optional` form).",
        """
def forward(self, x):
    if torch.all(x == 0):
        return None
    return x * 2
""",
        """
def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    if torch.all(x == 0):
        return torch.zeros_like(x), torch.tensor(True)
    return x * 2, torch.tensor(False)
""",
        targets=("trace", "script", "dynamo"),
        forms=("flag", "optional"),
    ),
    Rule(
        "TS202",
        "inconsistent-returns",
        "error",
        "return paths of `forward` differ in structure",
        "Flags a `forward` whose returns differ in structure: tuples of different arity, a tensor "
        "on one path and a tuple on another, dicts with different keys.",
        "ONNX outputs are fixed in number and kind; the exported graph keeps one structure.",
        """
def forward(self, x):
    if self.training:
        return x, x.mean()
    return x
""",
        """
def forward(self, x):
    return x, x.mean()
""",
        targets=("trace", "script", "dynamo"),
    ),
    Rule(
        "TS301",
        "not-scriptable",
        "error",
        "construct that `torch.jit.script` rejects",
        "Under `--target script`, flags constructs that `torch.jit.script` cannot compile: `*args`/"
        "`**kwargs`, a parameter defaulting to `None` without an `Optional[...]` annotation, "
        "`lambda`, nested function definitions, `try`, generators, `global`, set literals.",
        "The TorchScript exporter needs the whole `forward` (and what it calls) to script.",
        """
def forward(self, x, mask=None, **kwargs):
    return x if mask is None else x * mask
""",
        """
def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None):
    return x if mask is None else x * mask
""",
        targets=("script",),
    ),
]

RULES: dict[str, Rule] = {r.code: r for r in _RULES}


def select_codes(select: list[str] | None, ignore: list[str] | None) -> set[str]:
    """Resolve --select/--ignore (codes, prefixes such as ``TS1``, or ``ALL``) to a set of codes."""

    def match(pattern: str) -> set[str]:
        p = pattern.strip().upper()
        if p == "ALL":
            return set(RULES)
        found = {c for c in RULES if c.startswith(p)}
        if not found:
            raise ValueError(f"unknown rule code or prefix: {pattern!r}")
        return found

    chosen: set[str] = set()
    for pat in select or ["ALL"]:
        chosen |= match(pat)
    for pat in ignore or []:
        chosen -= match(pat)
    return chosen


def rule_listing() -> str:
    """One line per rule (`tracesafe rule`)."""
    return "".join(f"{r.code}  {r.name:<22} {r.severity:<8} {r.summary}\n" for r in RULES.values())
