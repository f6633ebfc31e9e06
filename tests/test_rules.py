"""Rule by rule, Fixit style: VALID snippets stay clean, INVALID ones report exactly the code."""

from __future__ import annotations

import textwrap

import pytest

from tracesafe.analyzer import RULES, Config, check_source


def module(body: str, sig: str = "self, x, y=None") -> str:
    return (
        "import math\nimport warnings\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n\n"
        f"class M(nn.Module):\n    def forward({sig}):\n"
        + textwrap.indent(textwrap.dedent(body), " " * 8)
        + "\n        return x\n"
    )


def codes(body: str, target: str = "trace", sig: str = "self, x, y=None") -> list[str]:
    return [f.code for f in check_source(module(body, sig), "m.py", Config(target=target))]


CASES = {
    "TS101": (
        [
            "if y is not None:\n    x = x + y",
            "if self.training:\n    x = x * 2",
            "if x.dim() == 3:\n    x = x[0]",
            "if len(self.layers) > 1:\n    pass",
            "if torch.jit.is_tracing():\n    x = x + 1",
            "if isinstance(x, torch.Tensor):\n    pass",
            "if x.dtype == torch.bool:\n    x = x.float()",
            "if y:\n    x = x * 2",
        ],
        [
            "if x.sum() > 0:\n    x = x * 2",
            "if torch.all(x == 0):\n    x = x + 1",
            "z = torch.any(x > 1)\nif z:\n    x = x * 2",
            "if x.mean() > 0 and self.training:\n    pass",
            "if not (x > 0).all():\n    pass",
            "if F.relu(x).max() > 1:\n    pass",
            "if y is not None and y.any():\n    pass",
        ],
    ),
    "TS102": (
        ["while self.training:\n    break", "i = 0\nwhile i < 3:\n    i += 1"],
        ["while x.sum() < 100:\n    x = x * 2", "while not torch.isfinite(x).all():\n    x = x.nan_to_num()"],
    ),
    "TS103": (
        ["x = x * 2 if self.training else x", "x = x if y is None else x + y"],
        ["x = x * 2 if x.mean() > 0 else x", "x = (x if (x > 0).any() else -x)"],
    ),
    "TS104": (
        ["ok = self.training and True", "z = torch.logical_and(x > 0, x < 1)", "z = not self.training"],
        ["z = (x.sum() > 0) and True", "z = not x.any()", "z = bool(x.mean() > 0)", "z = max(x.sum(), x.mean())"],
    ),
    "TS105": (
        ["assert y is None or y.dim() == 2", "assert x.ndim == 3"],
        ["assert (x >= 0).all()", "assert x.sum() != 0, 'empty'"],
    ),
    "TS106": (
        [
            "n = x.size(1)\nx = x.view(-1, n)",
            "s = x.shape[-1] ** 0.5",
            "z = torch.tensor(1.0)",
            "z = torch.zeros(x.shape[0])",
        ],
        [
            "n = int(x.sum())",
            "v = x.max().item()",
            "l = x.tolist()",
            "a = x.numpy()",
            "f = float(x.mean())",
            "s = math.sqrt(x.size(-1))",
            "t = f'{x.sum()}'",
            "z = torch.tensor(x.shape[0])",
            "e = [1, 2, 3][x.argmax()]",
            "s = str(x.sum())",
        ],
    ),
    "TS107": (
        [
            "for t in x.unbind(0):\n    pass",
            "a, b = x.chunk(2)",
            "for d in x.shape:\n    pass",
            "v, i = x.max(dim=0)",
            "rows = [r for r in x.split(1)]",
            "h, weights = self.attn(x)",
            "t = (x, 3, (x, x))\nfor h in t[2:][0]:\n    pass",
        ],
        [
            "for row in x:\n    pass",
            "a, b = x",
            "rows = list(x)",
            "for i, r in enumerate(x):\n    pass",
            "z = [r * 2 for r in x]",
            "t = (x, 3)\nrest = (x,) + t[:1]\nfor r in rest[1]:\n    pass",
        ],
    ),
    "TS108": (
        ["if x.dim() > 2:\n    pass", "n = x.shape[0]\nx = x.view(n, -1)", "for i in range(x.size(0)):\n    pass"],
        [
            "if x.shape[0] > 1:\n    pass",
            "if x.size(1) == 3:\n    pass",
            "b, c = x.shape\nif b > 1:\n    pass",
            "n = len(x)",
            "if x.numel() == 0:\n    pass",
            "z = x.shape == y.shape",
            "m = min(x.shape[0], 4)",
            "z = 3 in x.shape",
            "x = x[0] if x.shape[0] == 1 else x",
        ],
    ),
    "TS109": (
        [
            "if y is None:\n    raise ValueError('need y')",
            "if x.dim() != 2:\n    raise ValueError('2-d')",
            "assert x.ndim == 2",
        ],
        [
            "if (x < 0).any():\n    raise ValueError('negative')",
            "if x.shape[0] != 3:\n    raise ValueError('rows')",
            "assert x.shape[1] == 3",
            "if x.isnan().any():\n    warnings.warn('nan')",
            "if x.size(0) > 8:\n    msg = 'too many'\n    raise ValueError(msg)",
            "if x.shape[1:] != (3,):\n    raise ValueError('columns')",
            "assert x.shape == (2, 3)",
        ],
    ),
}


@pytest.mark.parametrize("code,snippet", [(c, s) for c, (valid, _) in CASES.items() for s in valid])
def test_valid(code, snippet):
    assert code not in codes(snippet)


@pytest.mark.parametrize("code,snippet", [(c, s) for c, (_, invalid) in CASES.items() for s in invalid])
def test_invalid(code, snippet):
    assert codes(snippet).count(code) == 1, codes(snippet)


def test_ts201_none_paths():
    src = module("if x.sum() > 0:\n    return None", sig="self, x")
    assert codes("if x.sum() > 0:\n    return None", sig="self, x") == ["TS101", "TS201"]
    assert "TS201" in codes("if self.flag:\n    return", sig="self, x")
    assert "TS201" not in codes("if self.flag:\n    return x * 2", sig="self, x")
    assert "return None" in src


def test_ts201_seed_shape_variable_none():
    body = "if torch.all(x == 0):\n    out = None\nelse:\n    out = x * 2\nreturn out"
    assert codes(body, sig="self, x") == ["TS101", "TS201"]


def test_ts202_structures():
    assert codes("if self.flag:\n    return x, x", sig="self, x") == ["TS202"]
    assert codes("if self.flag:\n    return {'a': x}\nreturn {'a': x, 'b': x}", sig="self, x") == ["TS202"]
    assert codes("if self.flag:\n    return (x, x)\nreturn (x * 2, x)", sig="self, x") == []


def test_ts301_only_for_script_target():
    body = "f = lambda t: t"
    assert "TS301" not in codes(body)
    assert codes(body, target="script", sig="self, x") == ["TS301"]
    assert codes("pass", target="script") == ["TS301"]  # y=None without Optional[...]
    assert codes("pass", target="script", sig="self, x, **kwargs") == ["TS301"]


def test_script_target_keeps_tensor_ifs_quiet():
    assert codes("if x.sum() > 0:\n    x = x * 2", target="script", sig="self, x") == []
    assert codes("if x.sum() > 0:\n    x = x * 2", target="dynamo") == ["TS101"]


def test_helpers_are_reached_with_argument_kinds():
    src = textwrap.dedent("""
        import torch
        from torch import nn as tnn

        def gate(v, k):
            if k > 1:
                v = v * 2
            return v if v.sum() > 0 else -v

        def unused(v):
            if v.sum() > 0:
                return v

        class Base(tnn.Module):
            def helper(self, t):
                return int(t.max())

        class M(Base):
            def forward(self, x):
                n = self.helper(x)
                return gate(x, 3) * n
    """)
    found = [(f.line, f.code, f.function) for f in check_source(src, "m.py")]
    assert found == [(8, "TS103", "gate"), (16, "TS106", "Base.helper")]


def test_self_attributes_resolve_like_python():
    """The nearest class that assigns `self.<name>` decides its kind (a subclass's `__init__` runs after
    `super().__init__()`), and an instance attribute shadows a base class's method of that name."""
    src = textwrap.dedent("""
        import torch
        import torch.nn as nn

        class Base(nn.Module):
            def __init__(self):
                super().__init__()
                self.scale = nn.Parameter(torch.ones(1))
                self.gate = torch.zeros(1)

            def proj(self, t):
                return int(t.max())

        class M(Base):
            def __init__(self):
                super().__init__()
                self.scale = True
                self.proj = nn.Identity()

            def forward(self, x):
                if self.scale:
                    x = x * 2
                if self.gate:
                    x = -x
                return self.proj(x)
    """)
    assert [(f.line, f.code) for f in check_source(src, "m.py")] == [(23, "TS101")]


def test_layer_subclass_parameters_are_tensors():
    """`self.weight` of an nn.Embedding subclass is a parameter: indexing it with ids is a gather (no
    TS106), and testing its value is a tensor test."""
    src = textwrap.dedent("""
        import torch.nn as nn

        class Positions(nn.Embedding):
            def forward(self, ids):
                if self.weight.sum() > 0:
                    ids = ids + 1
                return self.weight[ids]
    """)
    assert [(f.line, f.code) for f in check_source(src, "m.py")] == [(6, "TS101")]


def test_pep604_annotations():
    """`bool | None = None` is a Python flag, not a maybe-tensor; `torch.Tensor | None` stays a tensor."""
    sig = "self, x, flag: bool | None = None, n: int | None = None, r: torch.Tensor | None = None"
    assert codes("if not flag:\n    x = -x", sig=sig) == []
    assert codes("if n > x.shape[0]:\n    x = -x", sig=sig) == ["TS108"]
    assert codes("if r is not None and r.sum() > 0:\n    x = x + r", sig=sig) == ["TS101"]
    assert codes("if flag.any():\n    x = -x", sig="self, x, flag=None") == ["TS101"]  # unannotated: may be a tensor
    assert codes("if not flag:\n    x = -x", sig="self, x, flag=None") == []  # ...but a bare truth test is a flag's


def test_annotations_naming_classes_of_the_tree_are_python_objects():
    """`cache: Cache | None = None` where `Cache` is a class of the scanned tree: its attributes are Python
    values (transformers' KV-cache flags), unlike an unknown annotation, which may hide a tensor."""
    src = textwrap.dedent("""
        import torch.nn as nn

        class Cache:
            def __init__(self):
                self.is_updated = {}

        class M(nn.Module):
            def forward(self, x, cache: Cache | None = None, other: Unknown | None = None):
                if cache is not None and cache.is_updated.get(0):
                    x = x * 2
                if other is not None and other.sum() > 0:
                    x = -x
                return x
    """)
    assert [(f.line, f.code) for f in check_source(src, "m.py")] == [(12, "TS101")]


def test_error_messages_are_not_conversions():
    """Formatting a traced size or a tensor into an exception or an assert message happens only on the
    error path; its test is what gets reported."""
    assert codes("if x.shape[0] != 3:\n    raise ValueError(f'need 3 rows, got {x.shape[0]}: {x}')") == ["TS109"]
    assert codes("assert x.shape[-1] == 4, f'got {x.shape[-1]} ({x.sum().item()})'") == ["TS109"]
    assert codes("msg = f'got {x.shape[0]}'") == ["TS106"]  # outside a raise it is still a conversion


POOLS = {
    "F.max_pool1d(x, 2)": True,
    "nn.MaxPool1d(kernel_size=4, stride=4)(x)": True,
    "F.max_pool1d(x, 2, return_indices=True)[0]": False,
    "nn.MaxPool1d(4, return_indices=True)(x)[0]": False,
    "F.max_pool2d(x.unsqueeze(-1), (2, 1)).squeeze(-1)": False,
    "F.avg_pool1d(x, 2)": False,
}


@pytest.mark.parametrize("expr,pins", POOLS.items())
def test_max_pool1d_pins_the_length_under_torch_export(expr, pins):
    """Knowledge of torch, checked against it: max_pool1d without indices specialises the length axis in
    torch.export (2.13, 2.14); the same pooling with indices or through max_pool2d keeps it dynamic."""
    assert codes(f"x = {expr}", target="dynamo") == (["TS108"] if pins else [])
    assert codes(f"x = {expr}") == []  # the tracer records the op
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    fn = eval(f"lambda x: {expr}", {"F": F, "nn": torch.nn})  # noqa: S307 - the snippets above

    class M(torch.nn.Module):
        def forward(self, x):
            return fn(x)

    dyn = torch.export.Dim.DYNAMIC
    try:
        torch.export.export(M(), (torch.randn(2, 3, 16),), dynamic_shapes=({0: dyn, 2: dyn},), strict=False)
        pinned = False
    except Exception as e:  # noqa: BLE001 - the exporter's error is the measurement
        pinned = "Constraints violated" in str(e)
    assert pinned == pins


CASTS = {
    "self.lin = self.lin.to(torch.float32)": True,
    "self.lin.float()": True,
    "self.half().float()": True,
    "x = x.to(torch.float32)": False,  # a tensor, not a module
    "w = self.lin.weight.to(torch.float32)\nx = x @ w.t()": False,  # a copy of the weight
}


@pytest.mark.parametrize("stmt,fails", CASTS.items())
def test_casting_a_module_in_forward_fails_torch_export(stmt, fails):
    """TS110 (dynamo only) against torch.export: converting a module's parameters inside `forward` fails."""
    src = (
        "import torch\nimport torch.nn as nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.lin = nn.Linear(3, 3)\n\n    def forward(self, x):\n"
        + textwrap.indent(stmt, " " * 8)
        + "\n        return self.lin(x)\n"
    )
    assert [f.code for f in check_source(src, "m.py", Config(target="dynamo"))] == (["TS110"] if fails else [])
    assert [f.code for f in check_source(src, "m.py", Config(target="trace"))] == []
    torch = pytest.importorskip("torch")
    ns: dict = {}
    exec(compile(src, "m.py", "exec"), ns)  # noqa: S102 - the snippets above
    try:
        torch.export.export(ns["M"](), (torch.randn(2, 3),), strict=False)
        failed = False
    except RuntimeError as e:
        failed = "Couldn't swap" in str(e)
    assert failed == fails


def test_isinstance_narrows_a_name_in_each_arm():
    sig = "self, x, keep: int | torch.Tensor = 0"
    assert codes("if isinstance(keep, int):\n    if keep == 0:\n        x = -x", sig=sig) == []
    assert codes("if not isinstance(keep, int):\n    if keep.sum() > 0:\n        x = -x", sig=sig) == ["TS101"]
    assert (
        codes("if isinstance(keep, torch.Tensor):\n    pass\nelse:\n    if keep == 0:\n        x = -x", sig=sig) == []
    )
    n = "n = x.shape[0]\nif isinstance(n, int):\n    if n > 1:\n        x = -x"
    assert codes(n) == ["TS108"]  # a traced size is an int: still a size
    # under the tracer a size is a 0-dim tensor: not an int where `isinstance(n, torch.Tensor)` fails; for
    # torch.export it is a SymInt, not a tensor
    t = "n = x.shape[0]\nif isinstance(n, torch.Tensor):\n    x = x * n\nelse:\n    if n > 1:\n        x = -x"
    assert codes(t) == []
    assert codes(t, target="dynamo") == ["TS108"]


def test_entry_point_aliases():
    for imp, base in [
        ("import torch", "torch.nn.Module"),
        ("import torch.nn as nn", "nn.Module"),
        ("from torch import nn as tnn", "tnn.Module"),
        ("from torch.nn import Module as M0", "M0"),
        ("import torch as th", "th.nn.Module"),
    ]:
        src = (
            f"{imp}\n\nclass A({base}):\n    def forward(self, x):\n        if x.sum() > 0:\n"
            "            x = -x\n        return x\n"
        )
        assert [f.code for f in check_source(src, "a.py")] == ["TS101"], imp
    src = (
        "class A(object):\n    def forward(self, x):\n        if x.sum() > 0:\n            return x\n        return x\n"
    )
    assert check_source(src, "a.py") == []


def test_extra_entry_points():
    src = "import torch.nn as nn\nclass A(nn.Module):\n    def generate(self, x):\n        return x.item()\n"
    assert check_source(src, "a.py") == []
    assert [f.code for f in check_source(src, "a.py", Config(entry_points=("forward", "generate")))] == ["TS106"]


def test_finding_fields():
    (f, g) = check_source(module("if x.sum() > 0:\n    return None", sig="self, x"), "pkg/m.py")
    assert (f.path, f.line, f.column, f.end_line, f.end_column) == ("pkg/m.py", 10, 9, 10, 23)
    assert f.function == "M.forward" and f.fix is None and f.severity == "error" and f.name == "tensor-if"


def test_registry_is_complete():
    assert sorted(RULES) == [
        "TS101",
        "TS102",
        "TS103",
        "TS104",
        "TS105",
        "TS106",
        "TS107",
        "TS108",
        "TS109",
        "TS110",
        "TS201",
        "TS202",
        "TS301",
    ]
    for r in RULES.values():
        doc = r.docs()
        for head in ("## What it does", "## Why is this bad?", "## Example", "## Use instead"):
            assert head in doc
        assert r.severity == ("warning" if r.code in ("TS108", "TS109") else "error")


TRICKY = (
    '#!/usr/bin/env python\n# -*- coding: utf-8 -*-\n"""doc"""\nimport torch; import torch.nn as nn\n\n\n'
    "if True:\n    X = 1\n\n# a comment before the decorator\n\n@staticmethod\n# between\n@property\n\n"
    "def helper(t):\n    return t.item()\n\nclass A(nn.Module):\n\n    # inner\n    def forward(self, x, y=(1,\n"
    "            2)):\n        if x.sum() > 0: return x\n        return -x\n\n\nasync def later():\n    pass\n"
    "class B(A):\n    @torch.no_grad()\n    def forward(self, x):\n        s = x.sum() \\\n            + 1\n"
    "        return x if s else -x\n"
)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_definition_positions_equal_the_full_pass(newline):
    """`check` parses only reached definitions, each on its own: its positions must be those of the whole
    module's pass, node for node (whole-module parse), finding for finding (definition parse)."""
    from tracesafe.analyzer.api import Config, analyze_source
    from tracesafe.analyzer.engine import position_def, positions, to_findings

    source = TRICKY.replace("\n", newline)
    an, mod = analyze_source(source, "t.py", Config(), whole=True)
    full = positions(mod.tree)
    computed: dict = {}
    for d in [mod.functions["helper"], mod.classes["A"].methods["forward"], mod.classes["B"].methods["forward"]]:
        position_def(d, computed)
    assert computed and all(full._c[n] == t for n, t in computed.items())

    whole = to_findings(an.raw_findings(), "trace")
    lazy_an, lazy_mod = analyze_source(source, "t.py", Config())
    assert lazy_mod.tree is None and lazy_mod.functions["helper"]._node is None  # never reached
    lazy = to_findings(lazy_an.raw_findings(), "trace")
    assert [f.to_json() for f in lazy] == [f.to_json() for f in whole]
    assert {(f.line, f.code) for f in lazy} == {(24, "TS101"), (35, "TS103")}


def _tracer_says(snippet: str):
    """(warned, ran) for the snippet's statements under torch.jit.trace, or None when the snippet cannot
    run on a (2, 3) example input (it needs attributes or shapes the example does not have)."""
    torch = pytest.importorskip("torch")
    import inspect

    from tracer_truth import observing

    if "y" in snippet.replace("y.shape", "").split() or "y." in snippet or "+ y" in snippet:
        return None  # the example passes no `y`: an operand on it never runs
    literal_tensor = "torch.tensor(1.0)" in snippet
    src = module(snippet)
    first = src.splitlines().index("    def forward(self, x, y=None):") + 2
    last = first + len(textwrap.dedent(snippet).splitlines()) - 1
    ns: dict = {"__name__": "snippet"}
    exec(compile(src, "<snippet>", "exec"), ns)
    model = ns["M"]().eval()
    warned, ran = False, False

    def tracer(frame, event, arg):
        nonlocal ran
        if frame.f_code.co_filename == "<snippet>" and event == "line" and first <= frame.f_lineno <= last:
            ran = True
        return tracer

    def hook(message, category, filename, lineno, file=None, line=None):
        nonlocal warned
        # a warning raised inside torch on the snippet's behalf (Tensor.__format__, __index__) counts too;
        # the tracer registers every torch.tensor() result as a constant, a literal one too: it cannot
        # tell a frozen computed value from a constant the user wrote down
        if (
            issubclass(category, torch.jit.TracerWarning)
            and any(fr.filename == "<snippet>" for fr in inspect.stack())
            and not (literal_tensor and str(message).startswith("torch.tensor results are registered"))
        ):
            warned = True

    from tracesafe.export import TimedOut, time_limit

    # a fixed input (a random one made the TS102 loop endless about one run in 64), and a time limit: a
    # snippet that never ends on it is a failure, not a hang
    example = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    try:
        with time_limit(30, "tracing the snippet"), observing(hook, tracer):
            torch.jit.trace(model, (example,), check_trace=False)
    except TimedOut as e:
        pytest.fail(f"{snippet!r}: {e}")
    except Exception:
        return None
    return warned, ran


@pytest.mark.torch
@pytest.mark.parametrize(
    "code,snippet,invalid",
    [(c, s, False) for c, (v, _) in CASES.items() for s in v]
    + [(c, s, True) for c, (_, inv) in CASES.items() for s in inv],
)
def test_examples_agree_with_the_tracer(code, snippet, invalid):
    """Where the tracer can say (the snippet runs on a (2, 3) example input and does not hinge on `y`,
    which the example leaves None), an INVALID example makes it warn and a VALID one does not."""
    if snippet in SILENT:
        pytest.skip("the tracer freezes this without a warning (test_silent_hazards_freeze)")
    said = _tracer_says(snippet)
    if said is None:
        pytest.skip("the snippet does not run on a (2, 3) example input")
    warned, ran = said
    assert ran
    assert warned == invalid, f"tracer {'warned' if warned else 'was silent'} on {'INVALID' if invalid else 'VALID'}"


# hazards the tracer freezes without a TracerWarning: its silence is no evidence either way
SILENT = {"e = [1, 2, 3][x.argmax()]"}


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def _silent_cases():
    from conftest import FIXTURES
    from tracer_truth import load_fixture

    path = FIXTURES / "zoo" / "silent_hazards.py"
    mod = load_fixture(path, FIXTURES)
    return [pytest.param(path, mod, *case, id=case[0]) for case in mod.SILENT_CASES]


@pytest.mark.torch
@pytest.mark.parametrize("path,mod,cls,init,example,other", _silent_cases() if _has_torch() else [])
def test_silent_hazards_freeze(path, mod, cls, init, example, other):
    """Each tracer-silent hazard of fixtures/zoo/silent_hazards.py, proved by the traced graph: the trace
    runs the flagged line and warns nowhere in the file, yet the graph answers another input with the
    element the example chose; `check` reports that line."""
    torch = pytest.importorskip("torch")
    from conftest import expected_marks
    from tracer_truth import trace_truth

    torch.manual_seed(0)
    model = getattr(mod, cls)(**init).eval()
    real = str(path.resolve())
    warned, executed = trace_truth(model, example(), {real})
    found = {f.line for f in check_source(path.read_text(), str(path)) if f.code == "TS106"}
    ran = found & executed.get(real, set())
    assert ran and ran <= {line for line, _ in expected_marks(path)}, "check does not flag the line the trace ran"
    assert not warned, f"the tracer warned: {warned}"
    traced = torch.jit.trace(model, example(), check_trace=False)
    with torch.no_grad():
        assert not torch.equal(traced(*other()), model(*other())), "the graph is not frozen"


def _found(src: str, target: str = "trace") -> list[tuple[int, str]]:
    return [(f.line, f.code) for f in check_source(textwrap.dedent(src), "m.py", Config(target=target))]


def test_a_submodule_takes_what_its_parent_passes():
    """`self.layer(h, output_attentions=flag)`: the child's parameters get the parent's kinds — a flag
    from the config stays Python, a tuple of tensors stays a tuple — and a size handed down is a size."""
    src = """
        import torch
        import torch.nn as nn

        class Rotary(nn.Module):
            def forward(self, x):
                return x.cos(), x.sin()

        class Layer(nn.Module):
            def forward(self, h, pos, dims, output_attentions=None):
                cos, sin = pos
                height, width = dims
                if output_attentions:
                    h = h * 2
                if height % 2 == 1:
                    h = h[:, :-1]
                return h * cos + sin

        class Model(nn.Module):
            def __init__(self, config):
                super().__init__()
                self.config = config
                self.rotary = Rotary()
                self.layers = nn.ModuleList([Layer() for _ in range(config.n)])

            def forward(self, x):
                pos = self.rotary(x)
                for layer in self.layers:
                    x = layer(x, pos, x.shape[-2:], output_attentions=self.config.output_attentions)
                return x
    """
    assert _found(src) == [(15, "TS108")]


def test_a_top_level_none_default_is_a_tensor_only_when_used_as_one():
    src = """
        import torch.nn as nn

        class M(nn.Module):
            def forward(self, x, mask=None, output_hidden_states=None, return_dict=None):
                if output_hidden_states:
                    x = x + 1
                if not return_dict:
                    x = x * 2
                if mask is not None and mask[:, 0].any():
                    x = x + mask
                return x
    """
    assert _found(src) == [(10, "TS101")]


def test_the_value_passed_beats_the_annotation():
    src = """
        import torch.nn as nn

        def pad(x, height: int, width: float):
            if height % 2 == 1:
                x = x[:-1]
            return x * int(width)

        class M(nn.Module):
            def forward(self, x):
                return pad(x, x.shape[0], x.mean())
    """
    assert _found(src) == [(5, "TS108"), (7, "TS106")]


def test_no_suppression_keys_on_a_users_name():
    """A function named `is_tracing` is analysed like any other: one that returns torch's guard is a
    known value under the tracer, one that tests a tensor is a tensor test."""
    src = """
        import torch
        import torch.nn as nn

        def is_tracing(x=None):
            try:
                return torch.jit.is_tracing()
            except Exception:
                return False

        class Guarded(nn.Module):
            def forward(self, x):
                if not is_tracing(x) and (x == 0).all():
                    x = x + 1
                return x
    """
    assert _found(src) == []
    impostor = src.replace("return torch.jit.is_tracing()", "return x.sum() > 0")
    assert _found(impostor) == [(13, "TS101")]


def test_registered_functions_are_reached():
    """`ATTN[config.impl](...)`: every function of the registry is analysed with the call's kinds."""
    src = """
        import torch.nn as nn

        def eager(q, k):
            return q @ k

        def sdpa(q, k):
            if q.shape[-2] > 1:
                return q * k
            return q

        ATTN = {"eager": eager, "sdpa": sdpa}

        class Attention(nn.Module):
            def __init__(self, config):
                super().__init__()
                self.config = config

            def forward(self, q, k):
                fn = ATTN[self.config.impl]
                return fn(q, k)
    """
    assert _found(src) == [(8, "TS108")]


def test_opaque_results_are_not_tensors_until_used_as_one():
    """A call the analyzer cannot see into may return a tuple: unpacking it is fine. A torch.nn layer
    returns a tensor: unpacking that iterates over it. Reading `.shape` makes an opaque value a tensor."""
    src = """
        import torch.nn as nn

        class M(nn.Module):
            def __init__(self, config):
                super().__init__()
                self.attn = REGISTRY[config.attn](config)
                self.proj = nn.Linear(4, 4)

            def forward(self, x):
                out, weights = self.attn(x)
                a, b = self.proj(x)
                if out.shape[0] > 1:
                    out = out * 2
                return out + a
    """
    assert _found(src) == [(12, "TS107"), (13, "TS108")]


def test_eval_mode_is_known_while_exporting():
    """Exporters run the model in eval mode: `self.training` is False under trace and dynamo, so a
    branch on it is not a hazard and the operand after `self.training and` never runs."""
    body = "if self.training and x.sum() > 0:\n    x = x * 2\nd = x.sum() if self.training else x"
    assert codes(body) == []
    assert codes(body, target="dynamo") == []


# "Use instead" that changes the output signature on purpose, and how its outputs map back to the example's
def _none_as_flag(example_out, instead_out):
    value, is_none = instead_out  # TS201: (placeholder, flag) stands for None
    return bool(is_none) if example_out is None else (not bool(is_none) and _same(example_out, value))


def _first_of_tuple(example_out, instead_out):
    # TS202: the single-tensor path now returns the same tuple as the other path; its first item is the value
    if isinstance(example_out, tuple):
        return _same(example_out, instead_out)
    return _same(example_out, instead_out[0])


SIGNATURE_CHANGES = {"TS201": _none_as_flag, "TS202": _first_of_tuple}


def _same(a, b) -> bool:
    import torch

    if isinstance(a, tuple) or isinstance(b, tuple):
        return isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b) and all(map(_same, a, b))
    if a is None or b is None:
        return a is b
    return torch.equal(torch.as_tensor(a), torch.as_tensor(b))


def _rule_module(snippet: str, ns: dict):
    src = "class M(torch.nn.Module):\n" + textwrap.indent(textwrap.dedent(snippet).strip() + "\n", "    ")
    exec(compile(src, "<rule-doc>", "exec"), ns)
    return ns["M"]


@pytest.mark.torch
@pytest.mark.parametrize("code", sorted(RULES))
def test_use_instead_computes_what_the_example_computes(code):
    """Each rule's "Use instead" is the example made exportable, not another computation: both run
    eagerly on inputs that take every branch (signs, zeros, batch of one) and agree, in train and eval
    mode; where one raises, so does the other. A declared signature change (None as a flag, one tuple
    for every path) is compared through its mapping."""
    torch = pytest.importorskip("torch")
    from typing import Optional, Tuple

    from tracesafe.export import TimedOut, time_limit

    rule = RULES[code]
    ns = {"torch": torch, "Optional": Optional, "Tuple": Tuple}
    example, instead = _rule_module(rule.example, dict(ns)), _rule_module(rule.instead, dict(ns))
    g = torch.Generator().manual_seed(0)
    values = [
        torch.ones(2, 3),
        -torch.ones(2, 3),
        torch.zeros(2, 3),
        torch.randn(2, 3, generator=g),
        torch.rand(1, 3, generator=g) + 0.5,
        -torch.rand(1, 3, generator=g),
    ]
    nargs = len(inspect_params(example.forward)) - 1
    inputs = [(v,) for v in values] if nargs == 1 else [(a, b) for a in values for b in values if a.shape == b.shape]
    agree = SIGNATURE_CHANGES.get(code, _same)
    for training in (False, True):
        for args in inputs:
            outs = []
            for cls in (example, instead):
                try:
                    with time_limit(10, "the snippet"):  # a loop that never ends is a failure, not a hang
                        outs.append(("ok", cls().train(training)(*args)))
                except TimedOut:
                    pytest.fail(f"{code}: {'example' if cls is example else 'use-instead'} never ends on {args}")
                except Exception as e:  # noqa: BLE001 - the example's own failure is part of its meaning
                    outs.append(("raised", type(e).__name__))
            (ka, a), (kb, b) = outs
            assert ka == kb, f"{code}: example {ka}, use-instead {kb} on {args} (training={training})"
            if ka == "ok":
                assert agree(a, b), f"{code}: example {a} != use-instead {b} on {args} (training={training})"


def inspect_params(fn):
    import inspect

    return [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.default is inspect.Parameter.empty and p.kind == p.POSITIONAL_OR_KEYWORD
    ]


ANNOTATED = """
import torch
import torch.nn as nn
{imports}


{extra}


class M(nn.Module):
    def forward(self, x, y{ann} = None):
        if y is not None and y.any():
            x = x + 1
        return x
"""


@pytest.mark.parametrize(
    "imports,extra,ann,flagged",
    [
        ("", "", "", True),  # no annotation: the body's use decides
        ("", "", ': "Mask"', True),  # a string naming nothing known: unknown, as without an annotation
        ("", "Mask = torch.Tensor", ": Mask", True),  # a module-level alias of torch's Tensor
        ("from typing import Optional", "Mask = torch.Tensor", ': "Optional[Mask]"', True),
        ("from typing import Optional", "", ': "Optional[torch.Tensor]"', True),
        ("", "class Parameter:\n    def any(self):\n        return True", ": Parameter", False),  # a local class
        ("import tensorflow as tf", "", ": tf.Tensor", True),  # not torch's: unknown, the body decides
        ("", "", ": bool", False),
    ],
)
def test_annotations_are_resolved_not_spelled(imports, extra, ann, flagged):
    src = textwrap.dedent(ANNOTATED).format(imports=imports, extra=extra, ann=ann)
    found = [f.code for f in check_source(src, "m.py")]
    assert bool(found) == flagged, found


def test_a_foreign_tensor_annotation_does_not_make_a_python_value_a_tensor():
    """An annotation is a hint used only when nothing is known of the value passed: `tf.Tensor` or a local
    `class Parameter` is not torch's, so a config flag handed to it stays a Python value."""
    src = """
        import torch.nn as nn
        import tensorflow as tf


        class Parameter:
            pass


        def gate(flag: tf.Tensor, p: Parameter):
            if flag or p:
                return 2.0
            return 1.0


        class M(nn.Module):
            def __init__(self, cfg):
                super().__init__()
                self.cfg = cfg

            def forward(self, x):
                return x * gate(self.cfg.flag, self.cfg.p)
    """
    assert _found(src) == []
    assert _found(
        src.replace("flag: tf.Tensor", "flag: torch.Tensor").replace("import tensorflow as tf", "import torch")
    ) == [(11, "TS101")]


def test_numpy_is_numpy_only_when_imported():
    body = """
        import torch
        import torch.nn as nn
        {imp}


        class M(nn.Module):
            def forward(self, x):
                return x * np.sum(x)
    """
    assert _found(body.format(imp="import numpy as np")) == [(9, "TS106")]
    assert _found(body.format(imp="")) == []  # `np` is whatever the module makes it: here, nothing known


def test_a_branch_that_computes_is_not_a_check():
    """TS109 is for tests that only raise or warn; a branch that computes a value stays TS101/TS108."""
    assert codes("if x.sum() > 0:\n    x = x * 2") == ["TS101"]
    assert codes("if (x < 0).any():\n    x = x.abs()\nelse:\n    raise ValueError('no negatives')") == ["TS101"]
    assert codes("if x.shape[0] > 1:\n    warnings.warn('batch')\n    x = x[:1]") == ["TS108"]
    assert codes("assert (x >= 0).all()") == ["TS105"]


@pytest.mark.parametrize(
    "snippet",
    [
        "for i in range(x.shape[1]):\n    x = x + i",
        "pos = list(range(x.size(1)))",
        "z = [(1, 2)] * x.shape[0]",
        "z = [t for t in range(1, x.shape[0])]",
    ],
)
def test_a_python_loop_over_a_traced_length_pins_it_under_torch_export(snippet):
    """torch.export unrolls a loop or builds a list for the example's length, which pins that axis (the tracer
    unrolls it without a warning): TS108 for the dynamo target."""
    assert codes(snippet, target="dynamo") == ["TS108"]
    assert codes("for i in range(self.n):\n    x = x + i", target="dynamo") == []


@pytest.mark.torch
def test_torch_export_pins_a_loop_over_a_dynamic_length():
    torch = pytest.importorskip("torch")

    class M(torch.nn.Module):
        def forward(self, x):
            for i in range(x.shape[1]):
                x = x + i
            return x

    seq = torch.export.Dim("seq", min=2)
    with pytest.raises(Exception, match="specialized|Constraints violated"):
        torch.export.export(M(), (torch.randn(2, 5),), dynamic_shapes=({1: seq},), strict=False)


@pytest.mark.parametrize(
    "call", ["pick(1, x)", "pick(b=x, a=1)", "pick(*(1, x))", "pick(1, self.k)", "pick(x, 1)", "pick(1, b=self.k)"]
)
def test_a_nested_function_binds_its_arguments_as_a_helper_does(call):
    """Walker.call_nested and Analysis.call share one binding of arguments to parameters (`self`, `*args`,
    keywords, the annotation as a hint): a function defined in the body and the same function at module
    level give the same findings."""
    helper = "def pick(a, b: torch.Tensor = None):\n    return b\n"
    body = "y = pick_call\nif y.sum() > 0:\n    x = x * 2".replace("pick_call", call)
    nested = textwrap.indent(helper, "") + body
    src_nested = module(nested)
    src_module = module(body).replace("class M(nn.Module):", helper + "\n\nclass M(nn.Module):")
    got = [(f.code) for f in check_source(src_nested, "m.py")]
    want = [(f.code) for f in check_source(src_module, "m.py")]
    assert got == want, (got, want)


def test_a_local_list_that_tensors_are_appended_to_holds_tensors():
    """`frames = []`, `frames.append(frame)`: an element of the list is a tensor, and its shape a traced size
    (encodec's `last_frame_pad_length = frames[0].shape[-1] - frames[-1].shape[-1]`)."""
    src = """
        import torch
        import torch.nn as nn


        class M(nn.Module):
            def forward(self, x):
                frames = []
                for i in range(2):
                    frames.append(x * i)
                pad = frames[0].shape[-1] - frames[-1].shape[-1]
                if pad > 0:
                    x = x + 1
                return x
    """
    assert _found(src) == [(12, "TS108")]


def test_an_output_field_the_constructor_was_not_given_is_not_a_tensor():
    """`BaseModelOutput(last_hidden_state=h)` then `outputs.hidden_states`: the field's default (None) or
    what a decorator filled in (transformers' `@capture_outputs`): not the tensor its consumer's
    annotation claims (segformer's `zip(encoder_hidden_states, self.linear_projections)`)."""
    src = """
        from dataclasses import dataclass

        import torch
        import torch.nn as nn


        @dataclass
        class Output:
            last_hidden_state: torch.Tensor = None
            hidden_states: tuple = None


        class Encoder(nn.Module):
            def forward(self, x):
                return Output(last_hidden_state=x * 2)


        class Head(nn.Module):
            def forward(self, states: torch.Tensor):
                out = 0
                for s in zip(states, range(3)):
                    out = out + 1
                return out


        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.encoder = Encoder()
                self.head = Head()

            def forward(self, x):
                outputs = self.encoder(x)
                if outputs.last_hidden_state.sum() > 0:
                    x = x + 1
                return self.head(outputs.hidden_states), x
    """
    assert _found(src) == [(35, "TS101")]


def test_keywords_spread_on_with_kwargs_reach_the_parameter_they_name():
    """`self.attn(h, **kwargs)` where kwargs holds what the model passed by name (`position_embeddings=`):
    the attention's parameter is that value, not its annotation (deepseek_v4's dict of `(cos, sin)` pairs
    annotated as a dict or a tuple)."""
    src = """
        import torch
        import torch.nn as nn


        class Attention(nn.Module):
            def forward(self, h, position_embeddings: torch.Tensor, scale: torch.Tensor = None):
                cos, sin = position_embeddings["main"]
                if scale.sum() > 0:
                    h = h * 2
                return h * cos + sin


        class Layer(nn.Module):
            def __init__(self):
                super().__init__()
                self.attn = Attention()

            def forward(self, h, **kwargs):
                return self.attn(h, **kwargs)


        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.layer = Layer()

            def forward(self, x, **kwargs):
                pe = {"main": (x.cos(), x.sin())}
                return self.layer(x, position_embeddings=pe, **kwargs)
    """
    # `scale` no key names: the model's own **kwargs may hold it, so its annotation stands
    assert _found(src) == [(9, "TS101")]


def test_a_number_read_with_item_fails_torch_export_where_it_is_branched_on():
    """`.item()` under torch.export is an unbacked symbol: the export fails at the `if` that tests it, even
    in another function (longformer and led compute `is_global_attn` in the encoder and test it in the
    attention layer). The tracer freezes the value where `.item()` reads it, and only there."""
    src = """
        import torch
        import torch.nn as nn


        class Attention(nn.Module):
            def forward(self, h, is_global_attn=None):
                if is_global_attn:
                    h = h * 2
                return h


        class Encoder(nn.Module):
            def __init__(self):
                super().__init__()
                self.attn = Attention()

            def forward(self, h, mask):
                is_global_attn = (mask > 0).flatten().any().item()
                return self.attn(h, is_global_attn=is_global_attn)
    """
    assert _found(src, "dynamo") == [(8, "TS101"), (19, "TS106")]
    assert _found(src) == [(19, "TS106")]
    # `cond` leaves it, saying why: `torch.cond(is_global_attn != 0, ...)` on the SymBool `.item()` gives
    # would be a Python constant, one branch silently exported for every input
    from tracesafe.rewriters.engine import fix_source

    res = fix_source(textwrap.dedent(src), "cond", unsafe_fixes=True)
    assert res.source == textwrap.dedent(src)
    assert any("`.item()`" in (p.reason or "") and "TS101" in p.codes for p in res.refused)
    torch = pytest.importorskip("torch")
    ns: dict = {}
    exec(compile(textwrap.dedent(src), "m.py", "exec"), ns)  # noqa: S102 - the source above
    with pytest.raises(Exception, match="data-dependent") as failure:
        torch.export.export(ns["Encoder"](), (torch.randn(2, 3), torch.ones(2, 3)), strict=False)
    assert [f.lineno for f in __import__("traceback").extract_tb(failure.tb) if f.filename == "m.py"][-1] == 8


def test_a_buffer_cast_in_forward_is_not_a_module_cast():
    """`self.inv_freq = nn.Buffer(t)` holds a tensor, not a submodule: `self.inv_freq.to(x.device)` in
    `forward` (every rotary embedding in transformers) exports; casting a submodule does not (TS110)."""
    src = """
        import torch
        import torch.nn as nn


        class Rotary(nn.Module):
            def __init__(self):
                super().__init__()
                self.inv_freq = nn.Buffer(torch.ones(3), persistent=False)

            def forward(self, x):
                return x * self.inv_freq.to(device=x.device, dtype=torch.float32)
    """
    assert _found(src, "dynamo") == []
    torch = pytest.importorskip("torch")
    if not hasattr(torch.nn, "Buffer"):
        pytest.skip("torch.nn.Buffer is torch >= 2.5")
    ns: dict = {}
    exec(compile(textwrap.dedent(src), "m.py", "exec"), ns)  # noqa: S102 - the source above
    torch.export.export(ns["Rotary"](), (torch.randn(2, 3),), strict=False)  # does not raise
