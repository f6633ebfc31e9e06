"""Rewrites: golden outputs, and the three checks every rewrite gets (parses, idempotent, re-check clean);
with torch, behaviour in eager mode and through ONNX on inputs that take each branch."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import sys

import libcst as cst
import pytest
from click.testing import CliRunner

from tracesafe.analyzer import Config, check_source
from tracesafe.analyzer.project import Project
from tracesafe.cli import main
from tracesafe.rewriters.engine import FORM_TARGET, FORMS, fix_source

from conftest import FIXTURES
from regen_rewrites import CASES, REFUSALS, refusal_lines

FORM_CODES = {
    "flag": {"TS201"},
    "optional": {"TS201"},
    "where": {"TS101", "TS103"},
    "cond": {"TS101", "TS102", "TS108"},
}


@pytest.mark.parametrize("rel,form", CASES, ids=[f"{r}:{f}" for r, f in CASES])
def test_golden_rewrite_and_three_checks(rel, form):
    src = (FIXTURES / rel).read_text(encoding="utf-8")
    golden = (FIXTURES / "rewrites" / f"{os.path.basename(rel)[:-3]}.{form}.py").read_text(encoding="utf-8")
    res = fix_source(src, form, unsafe_fixes=True)
    assert res.source == golden
    assert res.applied
    cst.parse_module(res.source)  # 1. parses
    assert fix_source(res.source, form, unsafe_fixes=True).source == res.source  # 2. idempotent
    cfg = Config(target=FORM_TARGET[form])  # 3. the form's target reports nothing the form fixed
    before = {(f.code, f.function) for f in check_source(src, "m.py", cfg) if f.code in FORM_CODES[form]}
    after = {(f.code, f.function) for f in check_source(res.source, "m.py", cfg) if f.code in FORM_CODES[form]}
    assert before and len(after) < len(before)
    assert not after - before
    # and nothing is left that this form could still fix, safe or not
    left = check_source(res.source, "m.py", Config(target=FORM_TARGET[form], form=form))
    assert not [f for f in left if f.fix], [f.to_json() for f in left if f.fix]


@pytest.mark.parametrize("form", FORMS)
def test_refusals_are_golden_and_leave_code_alone(form):
    src = REFUSALS.read_text(encoding="utf-8")
    golden = REFUSALS.with_name(f"refusals.{form}.txt").read_text(encoding="utf-8")
    assert refusal_lines(src, form) == golden
    res = fix_source(src, form, unsafe_fixes=True)
    refused_lines = {p.position[0] for p in res.refused}
    kept = src.splitlines()
    out = res.source.splitlines()
    # every refused statement is still there, verbatim
    assert all(kept[n - 1] in out for n in refused_lines)


def test_cli_diff_says_why_in_its_output(run_in):
    (run_in / "m.py").write_text(REFUSALS.read_text(encoding="utf-8"), encoding="utf-8")
    r = CliRunner().invoke(main, ["fix", "--form", "cond", "--diff", "m.py"])
    assert "m.py:16:9: TS101 not fixed by `cond`: mutation of `self` in an arm" in r.stdout
    assert "m.py:53:9: TS102 not fixed by `cond`: `i` in the loop state is not a tensor" in r.stdout


def test_top_level_fix_source_returns_the_text():
    import tracesafe

    src = (FIXTURES / "seed_formatting.py").read_text(encoding="utf-8")
    assert tracesafe.fix_source(src, "optional") == (FIXTURES / "rewrites" / "seed_formatting.optional.py").read_text(
        encoding="utf-8"
    )
    with pytest.raises(ValueError, match="unknown form"):
        tracesafe.fix_source(src, "nope")


def test_unsafe_fixes_need_the_flag():
    src = (FIXTURES / "seed_formatting.py").read_text(encoding="utf-8")
    res = fix_source(src, "flag")
    assert res.source == src and res.skipped_unsafe and not res.applied


def test_refusals_say_why():
    src = (
        "import torch.nn as nn\n\nclass M(nn.Module):\n    def forward(self, x):\n"
        "        for i in range(3):\n            if x.sum() > i:\n                return None\n        return x\n"
    )
    res = fix_source(src, "flag", unsafe_fixes=True)
    assert res.source == src and "loop" in res.refused[0].reason
    src2 = (
        "import torch.nn as nn\n\nclass M(nn.Module):\n    def forward(self, x):\n"
        "        if x.sum() > 0:\n            self.count = 1\n            y = x\n        else:\n            y = -x\n"
        "        return y\n"
    )
    res = fix_source(src2, "where", unsafe_fixes=True)
    assert res.source == src2 and res.refused[0].reason == "arms do more than assign tensors"


def test_where_safety():
    src = (
        "import torch.nn as nn\n\nclass M(nn.Module):\n    def forward(self, x, idx):\n"
        "        y = x[idx] if x.sum() > 0 else x\n        z = x * 2 if x.sum() > 0 else -x\n        return y + z\n"
    )
    res = fix_source(src, "where")
    assert "torch.where(x.sum() > 0, x * 2, -x)" in res.source  # pure arms: safe
    assert "x[idx] if x.sum() > 0 else x" in res.source  # indexing may raise: unsafe, skipped
    assert "x[idx]" in fix_source(src, "where", unsafe_fixes=True).source
    assert "import torch\n" in res.source  # the import the fix needs was added


@pytest.mark.parametrize(
    "ret,placeholder",
    [
        ("x * 2", "torch.zeros_like(x)"),  # elementwise of the parameter: its shape
        ("(x * x).mean()", "x.new_zeros(())"),  # a full reduction: 0-d
        ("torch.relu(y), x.sum()", "torch.zeros_like(y), x.new_zeros(())"),  # per element of a tuple
        ("self.proj(y)", "torch.zeros_like(x)"),  # a layer's output: unknown, the first tensor parameter
        ("x.float() * 2", "torch.zeros_like(x)"),  # a cast: another dtype, not derived either
    ],
)
def test_flag_placeholder_is_shaped_like_the_output(ret, placeholder):
    src = (
        "import torch\nimport torch.nn as nn\n\nclass M(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.proj = nn.Linear(3, 5)\n\n    def forward(self, x, y):\n"
        f"        if torch.all(x == 0):\n            return None\n        return {ret}\n"
    )
    res = fix_source(src, "flag", unsafe_fixes=True)
    assert f"return {placeholder}, torch.tensor(True)" in res.source, res.source


def test_truthiness_is_not_zero():
    src = (
        "import torch\nimport torch.nn as nn\n\nclass M(nn.Module):\n    def forward(self, x):\n"
        "        s = x.sum()\n        return x if s else -x\n"
    )
    assert "torch.where(s != 0, x, -x)" in fix_source(src, "where").source


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dynamo looks the module up while compiling torch.cond
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.torch
def test_where_rewrites_match_eager_and_export_with_dynamo(tmp_path):
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    orig = _load(FIXTURES / "rewrites" / "where_gates.py", "wg_orig")
    new = _load(FIXTURES / "rewrites" / "where_gates.where.py", "wg_new")
    for cls, make in orig.EXPORT_CASES:
        a, b = getattr(orig, cls)().eval(), getattr(new, cls)().eval()
        inputs = make()
        for args in inputs:
            torch.testing.assert_close(b(*args), a(*args))
        out = tmp_path / f"{cls}.onnx"
        torch.onnx.export(b, inputs[0], str(out), dynamo=True, opset_version=18, verbose=False)
        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        for args in inputs:
            feeds = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), args)}
            got = sess.run(None, feeds)[0]
            torch.testing.assert_close(torch.from_numpy(got), a(*args), rtol=1e-5, atol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize("form", ["where", "cond"])
def test_python_tests_and_raising_checks_export_with_the_forms_exporter(tmp_path, form):
    """A switch joined to a tensor test, and a check that only raises, rewritten and exported with the
    form's own exporter: `where` through torch.jit.trace (no TracerWarning may be left: the hazard is
    gone, not hidden), `cond` through torch.export. Every input takes its branch in eager, in the graph
    and in onnxruntime, and an input the original rejects is still rejected in eager mode."""
    import warnings

    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    orig = _load(FIXTURES / "rewrites" / "python_tests.py", f"pt_orig_{form}")
    path = FIXTURES / "rewrites" / f"python_tests.{form}.py"
    new = _load(path, f"pt_new_{form}")
    left = {
        f.function.split(".")[0]
        for f in check_source(path.read_text(encoding="utf-8"), "m.py", Config(target=FORM_TARGET[form]))
    }
    assert left == ({"GatedScale"} if form == "cond" else set())  # cond leaves ternaries to `where`
    for cls, make, _dyn in orig.EXPORT_CASES:
        if cls in left:
            continue
        a, b = getattr(orig, cls)().eval(), getattr(new, cls)().eval()
        b.load_state_dict(a.state_dict())
        inputs = make()
        for args in inputs:
            torch.testing.assert_close(b(*args), a(*args))
        out = tmp_path / f"{cls}.onnx"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.onnx.export(b, inputs[0], str(out), dynamo=form == "cond", opset_version=18, verbose=False)
        tracer = [str(w.message) for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
        assert not tracer, (cls, tracer)
        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        for args in inputs:
            (got,) = sess.run(None, {i.name: t.numpy() for i, t in zip(sess.get_inputs(), args)})
            torch.testing.assert_close(torch.from_numpy(got), a(*args), rtol=1e-5, atol=1e-5)
    for cls, make, error in orig.RAISE_CASES:
        for m in (orig, new):
            with pytest.raises(error):
                getattr(m, cls)()(*make())


@pytest.mark.torch
def test_seed_flag_form_scripts_and_exports_an_if(tmp_path):
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    target = tmp_path / "seed.py"
    target.write_text((FIXTURES / "seed_formatting.py").read_text(encoding="utf-8"), encoding="utf-8")
    r = CliRunner().invoke(main, ["fix", "--unsafe-fixes", str(target)])
    assert r.exit_code == 1, r.output  # files changed: pre-commit semantics
    mod = _load(target, "seed_fixed")
    scripted = torch.jit.script(mod.FormattingLayer().eval())
    out = tmp_path / "seed.onnx"
    torch.onnx.export(
        scripted,
        (torch.zeros(2, 3),),
        str(out),
        dynamo=False,
        opset_version=17,
        input_names=["input_tensor"],
        output_names=["formatted", "is_none"],
    )
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert "If" in {n.op_type for n in model.graph.node}
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    zeros, flag = sess.run(None, {"input_tensor": torch.zeros(2, 3).numpy()})
    assert bool(flag) is True and (zeros == 0).all()
    ones = torch.ones(2, 3)
    val, flag = sess.run(None, {"input_tensor": ones.numpy()})
    assert bool(flag) is False and (val == 2).all()


def test_cli_diff_writes_nothing(run_in):
    f = run_in / "m.py"
    src = (FIXTURES / "seed_formatting.py").read_text(encoding="utf-8")
    f.write_text(src, encoding="utf-8")
    r = CliRunner().invoke(main, ["fix", "--diff", "--unsafe-fixes", "m.py"])
    assert (
        r.exit_code == 1
        and r.stdout.startswith("--- a/m.py")
        and "+            return torch.zeros_like(input_tensor), torch.tensor(True)" in r.stdout
    )
    assert f.read_text(encoding="utf-8") == src


def test_cli_leaves_unparsable_files_and_fixes_the_rest(run_in):
    (run_in / "bad.py").write_bytes(b"def forward(self:\n")
    good = run_in / "good.py"
    good.write_bytes((FIXTURES / "seed_formatting.py").read_bytes().replace(b"\n", b"\r\n"))
    os.chmod(good, 0o640)
    r = CliRunner().invoke(main, ["fix", "--unsafe-fixes", "."])
    assert r.exit_code == 2 and "bad.py: error: syntax error" in r.stderr
    assert (run_in / "bad.py").read_bytes() == b"def forward(self:\n"
    data = good.read_bytes()
    assert b"torch.tensor(True)" in data and data.count(b"\r\n") == data.count(b"\n")  # CRLF kept
    assert stat.S_IMODE(good.stat().st_mode) == 0o640
    assert not [p for p in run_in.iterdir() if p.name.endswith(".tstmp")]
    r = CliRunner().invoke(main, ["fix", "--unsafe-fixes", "good.py"])
    # nothing left to change, and nothing the flag form's exporter (TorchScript) would trip on
    assert r.exit_code == 0 and "Fixed 0 file(s); 0 finding(s) remain" in r.stderr, r.stderr


def test_cli_exit_zero_when_nothing_to_do(run_in):
    (run_in / "m.py").write_text(
        "import torch.nn as nn\n\nclass M(nn.Module):\n    def forward(self, x):\n        return x\n", encoding="utf-8"
    )
    assert CliRunner().invoke(main, ["fix", "m.py"]).exit_code == 0


def test_cli_lists_call_sites_of_changed_forward(run_in):
    (run_in / "layer.py").write_text((FIXTURES / "seed_formatting.py").read_text(encoding="utf-8"), encoding="utf-8")
    (run_in / "net.py").write_text(
        "import torch.nn as nn\nfrom layer import FormattingLayer\n\nclass Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.fmt = FormattingLayer()\n\n"
        "    def forward(self, x):\n        out = self.fmt(x)\n        return x\n",
        encoding="utf-8",
    )
    r = CliRunner().invoke(main, ["fix", "--unsafe-fixes", "."])
    assert "net.py:10: calls FormattingLayer.forward" in r.stderr


@pytest.mark.torch
def test_cond_rewrites_match_eager_and_export_with_dynamo_on_every_branch(tmp_path):
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    orig = _load(FIXTURES / "rewrites" / "cond_gates.py", "cg_orig")
    new = _load(FIXTURES / "rewrites" / "cond_gates.cond.py", "cg_new")
    for cls, make, dynamic_batch in orig.EXPORT_CASES:
        a, b = getattr(orig, cls)().eval(), getattr(new, cls)().eval()
        inputs = make()
        for args in inputs:
            torch.testing.assert_close(b(*args), a(*args))
        example = inputs[0]
        dyn = tuple({0: torch.export.Dim("batch", min=1)} for _ in example) if dynamic_batch else None
        out = tmp_path / f"{cls}.onnx"
        torch.onnx.export(b, example, str(out), dynamo=True, opset_version=18, dynamic_shapes=dyn, verbose=False)
        model = onnx.load(str(out))
        onnx.checker.check_model(model, full_check=True)
        assert {"If", "Loop"} & {n.op_type for n in model.graph.node}, cls  # the branch is in the graph
        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        for args in inputs:  # includes batch 1 for the size branch
            got = sess.run(None, {i.name: t.numpy() for i, t in zip(sess.get_inputs(), args)})
            want = a(*args)
            want = list(want) if isinstance(want, tuple) else [want]
            for g, w in zip(got, want):
                torch.testing.assert_close(torch.from_numpy(g), w, rtol=1e-5, atol=1e-5)


@pytest.mark.torch
def test_cond_keeps_a_check_in_the_exported_program(tmp_path):
    """A check that only raises becomes torch._check under torch.export: the original could not export
    (GuardOnDataDependentSymNode); the exported program keeps the check (it raises on an out-of-range id)
    and exports to ONNX; eager raises the original ValueError as before. A size check (`assert`) becomes a
    guard on the symbolic size."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    orig = _load(FIXTURES / "rewrites" / "python_tests.py", "pt_orig")
    new = _load(FIXTURES / "rewrites" / "python_tests.cond.py", "pt_new")
    ids, bad = torch.tensor([[1, 2, 9]]), torch.tensor([[1, 2, 12]])
    a, b = orig.CheckedEmbedding().eval(), new.CheckedEmbedding().eval()
    with pytest.raises(Exception, match="data-dependent|GuardOnDataDependent"):
        torch.export.export(a, (ids,), strict=False)
    ep = torch.export.export(b, (ids,), dynamic_shapes=({1: torch.export.Dim("seq", min=1)},), strict=False)
    torch.testing.assert_close(ep.module()(ids), a(ids))
    with pytest.raises(RuntimeError):
        ep.module()(bad)  # the check is in the program
    for m in (a, b):
        with pytest.raises(ValueError, match="token ids must be in"):
            m(bad)
    torch.onnx.export(ep, (), str(tmp_path / "emb.onnx"), dynamo=True, verbose=False)
    x, y = torch.randn(2, 3), torch.randn(2, 3)
    p = new.PairwiseDistance()
    pe = torch.export.export(p, (x, y), dynamic_shapes=({0: torch.export.Dim("b", min=1)},) * 2, strict=False)
    torch.testing.assert_close(pe.module()(x, y), orig.PairwiseDistance()(x, y))
    with pytest.raises(AssertionError, match="feature sizes differ"):
        p(x, torch.randn(2, 4))


@pytest.mark.torch
@pytest.mark.parametrize("cls,original_exports", [("Chunks", True), ("ReversedPositions", False)])
def test_cond_keeps_size_arithmetic_symbolic(cls, original_exports):
    """A tensor of a Python range pins the sequence length under torch.export (batch and sequence
    Dim.DYNAMIC); the rewrite exports, and its program equals eager on another batch and sequence length.
    (torch 2.13 also exports this simple torch.div of sizes; in Longformer's attention it does not.) Eager
    outputs are identical."""
    torch = pytest.importorskip("torch")
    orig = _load(FIXTURES / "rewrites" / "sizes.py", "sz_orig")
    new = _load(FIXTURES / "rewrites" / "sizes.cond.py", "sz_new")
    make, other = next((m, o) for c, m, o in orig.EXPORT_CASES if c == cls)
    a, b = getattr(orig, cls)().eval(), getattr(new, cls)().eval()
    for args in (make(), other()):
        torch.testing.assert_close(b(*args), a(*args), rtol=0, atol=0)
    dyn = ({0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC},)

    def exports(m) -> bool:
        try:
            ep = torch.export.export(m, make(), dynamic_shapes=dyn, strict=False)
            args = other()
            torch.testing.assert_close(ep.module()(*args), a(*args))
            return True
        except Exception:  # noqa: BLE001 - failing to export, or a program pinned to the example
            return False

    assert exports(a) == original_exports and exports(b)


@pytest.mark.torch
def test_optional_form_scripts_and_exports_an_optional_output(tmp_path):
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    mod = _load(FIXTURES / "rewrites" / "seed_formatting.optional.py", "seed_optional")
    scripted = torch.jit.script(mod.FormattingLayer().eval())
    out = tmp_path / "seed.onnx"
    torch.onnx.export(
        scripted, (torch.ones(2, 3),), str(out), dynamo=False, opset_version=16, input_names=["x"], output_names=["y"]
    )
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.output[0].type.HasField("optional_type")
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"x": torch.zeros(2, 3).numpy()}) == [None]
    (val,) = sess.run(None, {"x": torch.ones(2, 3).numpy()})
    assert (val == 2).all()


def _branch_cases(mod):
    if hasattr(mod, "BRANCH_CASES"):
        return mod.BRANCH_CASES
    return [(c[0], {}, c[1]) for c in getattr(mod, "EXPORT_CASES", [])]


@pytest.mark.torch
@pytest.mark.parametrize("rel,form", CASES, ids=[f"{r}:{f}" for r, f in CASES])
def test_rewrite_behaves_like_the_original_in_eager_mode(rel, form):
    """On inputs that take each branch; the flag form by its contract: (value..., False) where the original
    returned a value, (placeholder..., True) where it returned None."""
    torch = pytest.importorskip("torch")
    stem = os.path.basename(rel)[:-3]
    orig = _load(FIXTURES / rel, f"eager_{stem}_{form}_orig")
    new = _load(FIXTURES / "rewrites" / f"{stem}.{form}.py", f"eager_{stem}_{form}_new")
    cases = _branch_cases(orig)
    assert cases, f"{rel} needs BRANCH_CASES or EXPORT_CASES"
    none_seen = value_seen = False
    for cls, kwargs, make in cases:
        torch.manual_seed(0)
        a = getattr(orig, cls)(**kwargs).eval()
        b = getattr(new, cls)(**kwargs).eval()
        b.load_state_dict(a.state_dict())
        for args in make():
            want, got = a(*args), b(*args)
            if form != "flag":
                torch.testing.assert_close(got, want)
                continue
            *values, flag = got
            if want is None:
                none_seen = True
                assert bool(flag) and all(not v.any() for v in values)
            else:
                value_seen = True
                assert not bool(flag)
                torch.testing.assert_close(tuple(values) if len(values) > 1 else values[0], want)
    assert form != "flag" or (none_seen and value_seen)


def test_cond_keeps_python_tests_short_circuiting():
    """`and`/`or`: Python tests stay Python and go first (a `None` is never touched; one written after a
    tensor test moves only when both are side-effect free), tensor and size tests are joined with `&`/`|`;
    that evaluates every one of them, so the fix is safe only when the later ones are side-effect free."""
    src = (
        "import torch\nimport torch.nn as nn\n\nclass M(nn.Module):\n"
        "    def forward(self, x, y, r=None, todo: list = []):\n"
        "        if r is not None and r.sum() > 0:\n            x = x + r\n"
        "        if self.gate and x.sum() > 0 and y.any():\n            x = x * 2\n"
        "        if x.sum() > 0 or y.mean() < 0:\n            x = -x\n"
        "        if x.sum() > 0 and torch.sigmoid(x)[0, 0] > 0.5:\n            x = x - 1\n"
        "        if x.sum() > 0 and self.gate:\n            x = x + 1\n"
        "        if x.sum() > 0 and todo.pop():\n            x = x + 2\n"
        "        return x\n"
    )
    res = fix_source(src, "cond", unsafe_fixes=True)
    assert "torch.cond(r is not None and r.sum() > 0, " in res.source
    assert "torch.cond(bool(self.gate) and (x.sum() > 0) & y.any(), " in res.source
    assert "torch.cond((x.sum() > 0) | (y.mean() < 0), " in res.source
    assert sorted(p.applicability for p in res.applied) == ["safe", "safe", "safe", "safe", "unsafe"]
    safe = fix_source(src, "cond")
    assert "torch.cond(r is not None and r.sum() > 0, " in safe.source  # one tensor test: exact
    assert "torch.cond((x.sum() > 0) | (y.mean() < 0), " in safe.source  # pure later tests
    assert "torch.cond(bool(self.gate)" in safe.source  # `y.any()` is pure too
    # indexing is not; positions are the fixed source's
    assert [_line(safe.source, p) for p in safe.skipped_unsafe] == ["if x.sum() > 0 and torch.sigmoid(x)[0, 0] > 0.5:"]
    assert "torch.cond(bool(self.gate) and x.sum() > 0, " in res.source  # moved: both pure
    assert [(_line(res.source, p), p.reason) for p in res.refused] == [
        (
            "if x.sum() > 0 and todo.pop():",
            "a Python test after a tensor test in `and`/`or` (side effects: cannot reorder)",
        )
    ]


def test_cond_name_counts_equal_a_libcst_visitor_on_every_fixture():
    """`cond`'s name walk goes over node fields (a libcst visitor rebuilds each node it enters); it must
    find what the visitor it replaced found: names read, without attribute names, keywords or (unless
    asked) assignment targets."""
    from collections import Counter

    from tracesafe.rewriters.cond import _Reads, name_counts

    class Reference(_Reads):  # the visitor the walk replaced: _Reads, counting
        def __init__(self, targets):
            super().__init__()
            self.counts, self.targets = Counter(), targets

        def visit_Name(self, n):
            self.counts[n.value] += 1

        def visit_AssignTarget(self, n):
            return self.targets

    checked = 0
    for path in sorted(FIXTURES.rglob("*.py")):
        tree = cst.parse_module(path.read_text(encoding="utf-8"))
        for node in [tree, *(s for s in tree.body if isinstance(s, (cst.ClassDef, cst.FunctionDef)))]:
            for targets in (False, True):
                ref = Reference(targets)
                node.visit(ref)
                assert name_counts(node, targets) == ref.counts, (path.name, targets)
                checked += 1
    assert checked > 100


def test_child_nodes_are_libcsts_children_on_every_fixture():
    """The rewriters' field walk (`child_nodes`) finds the node objects libcst's `children` finds, for
    every node of every fixture (`children` rebuilds each node to find them)."""
    from tracesafe.rewriters.common import child_nodes

    nodes = 0
    for path in sorted(FIXTURES.rglob("*.py")):
        stack = [cst.parse_module(path.read_text(encoding="utf-8"))]
        while stack:
            node = stack.pop()
            kids = node.children
            assert sorted(map(id, child_nodes(node))) == sorted(map(id, kids)), (path.name, type(node).__name__)
            stack.extend(kids)
            nodes += 1
    assert nodes > 10_000


def _line(source: str, plan) -> str:
    return source.splitlines()[plan.position[0] - 1][plan.position[1] - 1 :]


@pytest.mark.torch
def test_cond_short_circuit_never_touches_none():
    torch = pytest.importorskip("torch")
    orig = _load(FIXTURES / "rewrites" / "cond_gates.py", "cg_orig_none")
    new = _load(FIXTURES / "rewrites" / "cond_gates.cond.py", "cg_new_none")
    x = torch.randn(2, 3)
    torch.testing.assert_close(new.GatedResidual()(x), orig.GatedResidual()(x))
    torch.testing.assert_close(new.GatedResidual()(x, None), x)


WHERE_MODULE = """import torch
import torch.nn as nn


class M(nn.Module):
    def forward(self, x, flag: bool = False, n=None):
{body}
"""


def _where(body: str, source: str = WHERE_MODULE):
    res = fix_source(source.format(body=body), "where", unsafe_fixes=True)
    return res, [p.reason for p in res.refused]


@pytest.mark.parametrize(
    "body,reason",
    [
        # torch.where rejects a None arm: `state if cond else None` must stay as it is
        ("        y = x * 2 if x.sum() > 0 else None\n        return y", "an arm may be `None`"),
        ("        z = None\n        y = x if x.sum() > 0 else z\n        return y", "an arm may be `None`"),
        # a Python value that happens to be truthy is not a tensor condition
        (
            "        c = x.sum() > 0 if flag else flag\n        y = x if c else -x\n        return y",
            "the condition is not provably a tensor",
        ),
        # the value goes back to Python: torch.where would keep the hazard and only slow it down
        (
            "        for i in range(x.shape[0] if x.sum() > 0 else 1):\n            x = x + 1\n        return x",
            "the value goes to `range()`",
        ),
    ],
)
def test_where_refuses_what_would_change_behaviour_or_keep_the_hazard(body, reason):
    res, reasons = _where(body)
    assert reason in reasons, reasons
    assert not res.applied
    assert res.source == WHERE_MODULE.format(body=body)


def test_where_rewrites_a_provable_tensor_condition():
    res, reasons = _where("        y = x * 2 if x.sum() > 0 else x\n        return y")
    assert "torch.where(x.sum() > 0, x * 2, x)" in res.source, reasons
    assert not [f for f in check_source(res.source, "m.py") if f.code == "TS103"]


def test_fix_keeps_a_conditional_torch_import_conditional():
    src = (
        "try:\n    import torch\nexcept ImportError:\n    torch = None\nimport torch.nn as nn\n\n\n"
        "class M(nn.Module):\n    def forward(self, x):\n        y = x * 2 if x.sum() > 0 else x\n        return y\n"
    )
    res = fix_source(src, "where", unsafe_fixes=True)
    assert res.applied and "torch.where(" in res.source
    assert res.source.count("import torch\n") == 1  # no unconditional `import torch` added on top


@pytest.mark.parametrize(
    "body,reason",
    [
        # slicing one arm: torch.where would broadcast arms of two shapes (transformers' swin `was_padded`)
        ("        y = x[:, :2].contiguous() if x.sum() > 0 else x\n        return y", "the arms may differ in shape"),
        ("        if x.sum() > 0:\n            x = x[:, :2]\n        return x", "the arms may differ in shape"),
        # arms that are Python values: a list, a config number (esmfold's ContextManagers, phimoe's mscale)
        ("        m = [] if x.sum() > 0 else [x]\n        return x", "an arm is not provably a tensor"),
        ("        s = self.a if x.sum() > 0 else self.b\n        return x * s", "an arm is not provably a tensor"),
    ],
)
def test_where_refuses_arms_it_cannot_prove(body, reason):
    res, reasons = _where(body)
    assert reason in reasons, reasons
    assert not res.applied


def test_where_computes_an_arms_temporaries_ahead():
    # a Python temporary only the arm reads (transformers' fp16 clamp): computed unconditionally, then the
    # output chosen by torch.where; pure, so safe
    body = "        if x.sum() > 0:\n            s = 2.0\n            x = x * s\n        return x"
    res = fix_source(WHERE_MODULE.format(body=body), "where")
    assert "s = 2.0\n        x = torch.where(cond, x * s, x)" in res.source, [p.reason for p in res.refused]
    assert "cond = x.sum() > 0\n" in res.source  # the test runs before any temporary rebinds a name


def test_where_temporaries_are_what_no_later_statement_reads():
    # transformers' T5-style layers repeat the clamp: each `clamp_value` is read only by its own branch, so
    # each is a temporary (liveness, not "read anywhere else in the function")
    arm = "            s = 2.0\n            x = x * s\n"
    body = f"        if x.sum() > 0:\n{arm}        x = x + 1\n        if x.mean() > 0:\n{arm}        return x"
    res = fix_source(WHERE_MODULE.format(body=body), "where")
    assert res.source.count("torch.where(cond, x * s, x)") == 2, [p.reason for p in res.refused]
    # in a loop the next iteration reads it: an output, whose new value the next line reads
    body = "        s = 1.0\n        for _ in range(3):\n            x = x * s\n            if x.sum() > 0:\n"
    body += "                s = 2.0\n                x = x + s\n        return x"
    res, reasons = _where(body)
    assert not res.applied and any("in another order" in r for r in reasons), reasons


@pytest.mark.parametrize(
    "body,reason",
    [
        # read after the branch: not a temporary but an output, and a Python value torch.where cannot pick
        (
            "        s = 1.0\n        if x.sum() > 0:\n            s = 2.0\n            x = x * 2\n"
            "        return x * s",
            "an arm is not provably a tensor",
        ),
        # one temporary name in both arms: computing both ahead would keep only the second
        (
            "        if x.sum() > 0:\n            s = 2.0\n            x = x * s\n        else:\n            s = 3.0\n"
            "            x = x + s\n        return x",
            "a temporary assigned in both arms or twice",
        ),
        # a tensor bound broadcasts the clamped value to another shape
        (
            "        b = x.sum(0)\n        if x.sum() > 0:\n            x = torch.clamp(x, min=b)\n        return x",
            "the arms may differ in shape",
        ),
        # the second assignment reads the first one's new value
        (
            "        y = x\n        if x.sum() > 0:\n            y = x + 1\n            x = y * 2\n        return x, y",
            "in another order",
        ),
        # the else arm reads `x` before rebinding it, but `x`'s torch.where line comes first: before the
        # check, this was rewritten (as safe) into `y = torch.where(cond, 1.0, x + 1)` reading the new `x`
        (
            "        if x.sum() > 0:\n            x = x * 2\n            n = 1.0\n        else:\n"
            "            n = x + 1\n            x = x - 1\n        return x, n",
            "in another order",
        ),
        # the condition reads a name a temporary rebinds
        (
            "        s = x\n        if s.sum() > 0:\n            s = 2.0\n            x = x * s\n        return x",
            "a temporary rebinds a name the condition reads",
        ),
    ],
)
def test_where_refuses_temporaries_it_cannot_move(body, reason):
    res, reasons = _where(body)
    assert any(reason in r for r in reasons), reasons
    assert not res.applied


@pytest.mark.parametrize(
    "test,out",
    [
        # the Python test stays a Python `if` around the rewrite
        ("flag and x.sum() > 0", "if flag:\n            x = torch.where(x.sum() > 0, x * 2, x)"),
        (
            "flag or x.sum() > 0",
            "if flag:\n            x = x * 2\n        else:\n            x = torch.where(x.sum() > 0, x * 2, x)",
        ),
        # written after the tensor test: moved first only because `x.sum() > 0` always runs cleanly
        ("x.sum() > 0 and flag", "if flag:\n            x = torch.where(x.sum() > 0, x * 2, x)"),
        # two tensor tests: joined with `&`, the second is side-effect free
        ("x.sum() > 0 and x.max() < 5", "x = torch.where((x.sum() > 0) & (x.max() < 5), x * 2, x)"),
    ],
)
def test_where_splits_python_and_tensor_tests(test, out):
    res, reasons = _where(f"        if {test}:\n            x = x * 2\n        return x")
    assert out in res.source, (reasons, res.source)
    assert not [f for f in check_source(res.source, "m.py") if f.code.startswith("TS1")]


@pytest.mark.parametrize(
    "test",
    [
        "x[n].sum() > 0 and flag",  # indexing may raise: it must keep running before `flag` is looked at
        "x.sum() > 0 and x[n].any()",  # `&` would evaluate the index even when the first test is false
    ],
)
def test_where_keeps_and_or_order_when_it_matters(test):
    res, reasons = _where(f"        if {test}:\n            x = x * 2\n        return x")
    assert not res.applied and any("side effects" in r for r in reasons), reasons


def test_where_knows_torch_through_imports_not_names():
    """`F.gelu(t)` has t's shape when F is torch.nn.functional; a module of the user's that happens to be
    called F proves nothing."""
    body = "        y = F.gelu(x) * 2 if x.sum() > 0 else -x\n        return y"
    torch_f = WHERE_MODULE.replace(
        "import torch.nn as nn\n", "import torch.nn as nn\nimport torch.nn.functional as F\n"
    )
    res, reasons = _where(body, torch_f)
    assert "torch.where(x.sum() > 0, F.gelu(x) * 2, -x)" in res.source, reasons
    mine = WHERE_MODULE.replace("import torch.nn as nn\n", "import torch.nn as nn\nimport filters as F\n")
    res, reasons = _where(body, mine)
    assert not res.applied and reasons


def test_where_rewrites_arms_of_one_shape():
    body = (
        "        y = torch.relu(x) * 2 if x.sum() > 0 else -x\n        if x.mean() > 0:\n"
        "            x = x.softmax(-1)\n        return x + y"
    )
    res, reasons = _where(body)
    assert "torch.where(x.sum() > 0, torch.relu(x) * 2, -x)" in res.source, reasons
    assert "x = torch.where(x.mean() > 0, x.softmax(-1), x)" in res.source, reasons


TWO_FIXES = """import torch
import torch.nn as nn


class M(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            y = x * 2
        else:
            y = -x
        return y * 3 if x.mean() > 1 else y
"""

LOOP_NONE = """import torch.nn as nn


class M(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return None
        return x


class N(nn.Module):
    def forward(self, x):
        for _ in range(3):
            if x.sum() > 0:
                return None
        return x
"""


def test_cli_fix_reports_on_the_file_as_fixed(run_in):
    """--diff counts what would remain after the fix, a refusal's position is its line in the written
    file, and the summary names the exporter its count is for."""
    f = run_in / "m.py"
    f.write_text(LOOP_NONE, encoding="utf-8")
    r = CliRunner().invoke(main, ["fix", "--diff", "--unsafe-fixes", "--select", "TS201", "m.py"])
    assert "Would fix 1 file(s); 1 finding(s) would remain for the script exporter" in r.stderr, r.stderr
    assert f.read_text(encoding="utf-8") == LOOP_NONE
    r = CliRunner().invoke(main, ["fix", "--unsafe-fixes", "m.py"])
    written = f.read_text(encoding="utf-8").splitlines()
    refusal = next(line for line in r.stderr.splitlines() if "a return inside a loop" in line)
    line, col = map(int, refusal.split(":")[1:3])
    assert written[line - 1][col - 1 :].startswith("return None")  # in the file as written, not as read
    assert (
        "Fixed 1 file(s); 1 finding(s) remain for the script exporter (see `tracesafe check --target script`)"
        in r.stderr
    )
    # the same count as `check` for that exporter
    check = CliRunner().invoke(main, ["check", "--no-cache", "--target", "script", "--select", "TS201", "m.py"])
    assert check.stderr.startswith("Found 1 finding in 1 file(s)")


@pytest.mark.parametrize(
    "args,changed",
    [
        (["--select", "TS103"], {"ternary"}),
        (["--select", "TS101"], {"if"}),
        (["--ignore", "TS101"], {"ternary"}),
        (["--select", "TS1"], {"if", "ternary"}),
        (["--select", "TS201"], set()),
    ],
)
def test_cli_fix_select_and_ignore(run_in, args, changed):
    f = run_in / "m.py"
    f.write_text(TWO_FIXES, encoding="utf-8")
    r = CliRunner().invoke(main, ["fix", "--form", "where", *args, "m.py"])
    text = f.read_text(encoding="utf-8")
    assert ("if x.sum() > 0:" not in text) == ("if" in changed), r.stderr
    assert ("if x.mean() > 1 else" not in text) == ("ternary" in changed), r.stderr
    assert r.exit_code == (1 if changed else 0)


def test_cli_fix_target_and_exit_zero(run_in):
    f = run_in / "m.py"
    f.write_text(LOOP_NONE, encoding="utf-8")
    r = CliRunner().invoke(main, ["fix", "--diff", "--target", "trace", "m.py"])
    assert "finding(s) would remain for the trace exporter" in r.stderr
    assert r.exit_code == 1
    r = CliRunner().invoke(main, ["fix", "--exit-zero", "--unsafe-fixes", "m.py"])
    assert r.exit_code == 0 and "Fixed 1 file(s)" in r.stderr
    assert CliRunner().invoke(main, ["fix", "--select", "TS999", "m.py"]).exit_code == 2


@pytest.mark.parametrize(
    "args,target", [([], "script"), (["--form", "cond"], "dynamo"), (["--target", "trace"], "trace")]
)
def test_cli_fix_summary_names_the_target_with_no_files(run_in, args, target):
    (run_in / "empty").mkdir()
    r = CliRunner().invoke(main, ["fix", *args, "empty"])
    assert r.exit_code == 0
    assert r.stderr.strip() == f"Fixed 0 file(s); 0 finding(s) remain for the {target} exporter.", r.stderr


def test_cli_fix_in_worker_processes_equals_serial(run_in):
    for i in range(20):
        (run_in / f"m{i}.py").write_text(TWO_FIXES if i % 2 else LOOP_NONE, encoding="utf-8")
    serial = CliRunner().invoke(main, ["fix", "--diff", "--form", "where", "--jobs", "1", "."])
    pooled = CliRunner().invoke(main, ["fix", "--diff", "--form", "where", "--jobs", "2", "."])
    assert serial.stdout == pooled.stdout and serial.stderr == pooled.stderr and serial.stdout


HELPER = """import torch
import torch.nn as nn


class Gate(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x.abs() * float(x.max())
"""

USER = """import torch.nn as nn

from .gate import Gate


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate = Gate()

    def forward(self, x):
        y = self.gate(x)
        if y.mean() > 1:
            y = y - 1
        if y.max() > 100:
            raise ValueError("too big")
        return y
"""


# `flag` makes Gate return (value, flag): Net, unchanged, no longer tests a tensor — known only to an
# analysis that reads the fixed gate.py
FLAGGED = HELPER.replace("            return x * 2", "            return None")


@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.parametrize("diff", [False, True])
@pytest.mark.parametrize("form,target,helper", [("cond", "dynamo", HELPER), ("flag", "trace", FLAGGED)])
def test_cli_fix_count_equals_check_after(run_in, jobs, diff, form, target, helper):
    """`fix` re-analyses only the files it changed and those whose analysis read one of them; its count
    must still be what `check` says of the files as written — across files, serial or pooled."""
    for i in range(9):  # enough files for the worker pool
        pkg = run_in / f"p{i}"
        pkg.mkdir()
        (pkg / "__init__.py").write_text("", encoding="utf-8")
        (pkg / "gate.py").write_text(helper, encoding="utf-8")
        # a size test, a value test, or only what `cond` refuses (that file stays as it is)
        user = [
            USER.replace("y.mean() > 1", "y.shape[0] > 1"),
            USER,
            USER.replace("        if y.mean() > 1:\n            y = y - 1\n", ""),
        ][i % 3]
        (pkg / "net.py").write_text(user, encoding="utf-8")
    before = {p: p.read_text(encoding="utf-8") for p in run_in.rglob("*.py")}
    args = [
        "fix",
        "--form",
        form,
        "--unsafe-fixes",
        "--target",
        target,
        "--jobs",
        jobs,
        *(["--diff"] if diff else []),
        ".",
    ]
    r = CliRunner().invoke(main, args)
    said = int(r.stderr.strip().splitlines()[-1].split("; ")[1].split(" finding")[0])  # the summary line
    if diff:  # what `check` would say of the fixed files: fix them for real, then ask
        assert {p: p.read_text(encoding="utf-8") for p in run_in.rglob("*.py")} == before
        assert r.stdout.count("\n+++ b/") >= 3  # the diff was printed
        CliRunner().invoke(main, [a for a in args if a != "--diff"])
    check = CliRunner().invoke(
        main, ["check", "--no-cache", "--target", target, "--format", "json", "--exit-zero", "."]
    )
    assert said == len(json.loads(check.stdout)) > 0
    # the files were fixed (by the run itself, or after the diff): the count is of rewritten code
    assert sum(p.read_text(encoding="utf-8") != before[p] for p in before) >= 3


def test_a_module_fix_replaces_is_freed_without_the_cyclic_gc(run_in):
    """`fix` gives every file it rewrites new text; the project drops the old module. A module and its
    definitions refer to each other, so the old one (its whole `ast` index) waited for the cyclic GC, and
    the next gc.freeze() of the run made it permanent: 400 MB more than `check` on transformers."""
    import gc
    import weakref

    from tracesafe.analyzer.api import analyze_source

    (run_in / "m.py").write_text(
        "import torch\nimport torch.nn as nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.proj = nn.Linear(2, 2)\n\n"
        "    def forward(self, x):\n        if x.sum() > 0:\n            x = self.proj(x)\n        return x\n"
    )
    res = fix_source((run_in / "m.py").read_text(), "cond", path="m.py", unsafe_fixes=True)
    assert "torch.cond(" in res.source
    project = Project()
    enabled = gc.isenabled()
    gc.disable()
    try:
        an, mod = analyze_source((run_in / "m.py").read_text(), "m.py", Config(), in_tree=True, project=project)
        assert an.states_in(mod)
        old = weakref.ref(mod)
        del an, mod
        project.root_module("m.py", res.source)  # new text: the old module is dropped
        assert old() is None
        an, mod = analyze_source(res.source, "m.py", Config(), in_tree=True, project=project)
        old = weakref.ref(mod)
        del an, mod
        project.forget("m.py")
        assert old() is None
    finally:
        if enabled:
            gc.enable()


@pytest.mark.parametrize("form", FORMS)
def test_every_finding_fix_leaves_has_a_reason(form):
    """Whatever the form, each finding its exporter still counts after the fix is either fixed or refused
    with a reason (conversions, iterations and unscriptable constructs included)."""
    from tracesafe.rewriters.engine import FORM_TARGET

    for fixture in (FIXTURES / "script_target.py", FIXTURES / "rewrites" / "refusals.py", FIXTURES / "zoo" / "moe.py"):
        src = fixture.read_text(encoding="utf-8")
        res = fix_source(src, form, unsafe_fixes=True, path=str(fixture))
        left = check_source(res.source, str(fixture), Config(target=FORM_TARGET[form]))
        refused = {(p.position, c) for p in res.refused for c in p.codes}
        for f in left:
            assert ((f.line, f.column), f.code) in refused, (form, fixture.name, f.line, f.code, f.message)
        assert all(p.reason for p in res.refused)
