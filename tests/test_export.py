"""The export stage with real torch, onnx and onnxruntime: the seed's frozen branch is caught, the dynamo
failure names the source line, fixed modules pass with every branch covered, bad input exits 2."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from tracesafe.cli import main

from conftest import FIXTURES

pytestmark = pytest.mark.torch
pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

SEED = str(FIXTURES / "seed_formatting.py")


def export(*args):
    r = CliRunner().invoke(main, ["export", *args, "--format", "json"])
    return r, (json.loads(r.stdout) if r.exit_code in (0, 1) else None)


def test_seed_traced_exports_but_parity_fails_on_zeros():
    r, rep = export(f"{SEED}:FormattingLayer", "--input", "2x3", "--exporter", "trace")
    assert r.exit_code == 1 and rep["exported"] and rep["checker"] == "passed" and not rep["ok"]
    zeros = next(c for c in rep["cases"] if c["name"] == "zeros")
    assert zeros["match"] is False and "eager None" in zeros["detail"]
    assert next(c for c in rep["cases"] if c["name"] == "ones")["match"] is True
    branch = rep["branches"][0]
    assert branch["line"] == 11 and branch["parity"] == {"true": False, "false": True}
    assert "If" not in rep["control_flow"]  # the branch was frozen away
    assert any(f["line"] == 11 and f["code"] == "TS101" for f in rep["findings"])  # the TracerWarning's line


def test_seed_dynamo_fails_naming_the_source_line():
    r = CliRunner().invoke(main, ["export", f"{SEED}:FormattingLayer", "--input", "2x3", "--exporter", "dynamo"])
    assert r.exit_code == 1
    assert "export FAILED at " in r.stdout and "seed_formatting.py:11: GuardOnDataDependentSymNode" in r.stdout


def test_seed_after_fix_passes_with_the_script_exporter_on_both_branches(tmp_path):
    target = tmp_path / "seed.py"
    target.write_text((FIXTURES / "seed_formatting.py").read_text(encoding="utf-8"), encoding="utf-8")
    assert CliRunner().invoke(main, ["fix", "--unsafe-fixes", str(target)]).exit_code == 1
    out = tmp_path / "seed.onnx"
    r, rep = export(f"{target}:FormattingLayer", "--input", "2x3", "-o", str(out))
    assert r.exit_code == 0, r.stdout
    assert rep["ok"] and rep["control_flow"].get("If") == 1 and out.exists()
    (branch,) = rep["branches"]
    assert set(branch["sides"]) == {"true", "false"} and branch["parity"] == {"true": True, "false": True}


@pytest.mark.parametrize(
    "cls,inputs",
    [
        ("MaskedScores", ["3x4", "3x4"]),
        ("DetectionGate", ["3x4", "3"]),
        ("CenterBatch", ["3x4"]),
        ("Renormalize", ["3x4"]),
    ],
)
@pytest.mark.parametrize("form", ["cond", "where"])
def test_cond_and_where_rewrites_pass_with_dynamo(cls, inputs, form):
    path = FIXTURES / "rewrites" / f"cond_gates.{form}.py"
    r, rep = export(f"{path}:{cls}", *sum((["--input", i] for i in inputs), []), "--exporter", "dynamo")
    if form == "where" and cls in ("CenterBatch", "Renormalize"):
        # `where` refuses size tests and loops: these are the original code, which the stage must catch
        assert r.exit_code == 1 and not rep["ok"]
        return
    assert r.exit_code == 0, r.stdout
    for b in rep["branches"]:
        assert set(b["sides"]) == {"true", "false"}, b


def test_original_size_branch_is_caught_at_batch_one_under_dynamo():
    # measured: the dynamo exporter keeps one arm of `if x.shape[0] > 1` with a dynamic batch axis
    r, rep = export(f"{FIXTURES / 'rewrites' / 'cond_gates.py'}:CenterBatch", "--input", "3x4", "--exporter", "dynamo")
    assert r.exit_code == 1
    wrong = {c["name"] for c in rep["cases"] if c["match"] is False}
    assert "batch1-randn" in wrong and all(n.startswith("batch1") for n in wrong)  # zeros are the same either way


def test_optional_outputs_need_opset_16(tmp_path):
    path = FIXTURES / "rewrites" / "seed_formatting.optional.py"
    r = CliRunner().invoke(main, ["export", f"{path}:FormattingLayer", "--input", "2x3", "--opset", "15"])
    assert r.exit_code == 2 and "opset 16" in r.stderr
    r, rep = export(f"{path}:FormattingLayer", "--input", "2x3", "--opset", "16")
    assert r.exit_code == 0, r.stdout
    assert rep["outputs"][0].split(": ")[1].startswith("optional<")


def test_python_api():
    from tracesafe.export import export as run_export
    from tracesafe.export import parse_input

    rep = run_export(
        f"{FIXTURES / 'rewrites' / 'where_gates.where.py'}:SignedResidual", [parse_input("2x3")], exporter="dynamo"
    )
    assert rep.ok and rep.exporter == "dynamo" and rep.opset == 18


@pytest.mark.parametrize(
    "args,needle",
    [
        (["missing.py:M", "--input", "2"], "missing.py: no such file"),
        ([f"{SEED}:Nope", "--input", "2"], "no class 'Nope'"),
        ([f"{SEED}:FormattingLayer", "--input", "2y3"], "a shape is sizes joined by `x`"),
        ([f"{SEED}:FormattingLayer", "--input", "2x3:float99"], "unknown dtype"),
        ([f"{SEED}:FormattingLayer", "--input", "2x3", "--input", "2x3"], "takes 1 positional input(s)"),
        ([f"{SEED}:FormattingLayer"], "at least one --input"),
        ([f"{SEED}", "--input", "2x3"], "expected FILE.py:NAME"),
        ([f"{SEED}:FormattingLayer", "--input", "2x3", "--init", "{bad"], "--init: not valid JSON"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, needle):
    r = CliRunner().invoke(main, ["export", *args])
    assert r.exit_code == 2, r.output
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_constructor_needing_arguments(tmp_path):
    f = tmp_path / "needs.py"
    f.write_text(
        "import torch.nn as nn\n\nclass M(nn.Module):\n    def __init__(self, dim):\n"
        "        super().__init__()\n        self.lin = nn.Linear(dim, dim)\n\n"
        "    def forward(self, x):\n        return self.lin(x)\n",
        encoding="utf-8",
    )
    r = CliRunner().invoke(main, ["export", f"{f}:M", "--input", "2x4"])
    assert r.exit_code == 2 and "cannot construct M" in r.stderr and "--init" in r.stderr
    r = CliRunner().invoke(main, ["export", f"{f}:M", "--input", "2x4", "--init", '{"dim": 4}'])
    assert r.exit_code == 0, r.stdout


MISMATCH = """import torch
import torch.nn as nn


class Mismatch(nn.Module):
    def __init__(self, width: int = 3):
        super().__init__()
        self.proj = nn.Linear(width, 5)

    def forward(self, x):
        y = x * 2
        return self.proj(y)
"""


def test_an_exporter_error_keeps_its_own_cause(tmp_path):
    """A wrong --init is a shape error, not a rule's hazard: no TS104, the real message, the user's line."""
    src = tmp_path / "mismatch.py"
    src.write_text(MISMATCH, encoding="utf-8")
    r, rep = export(f"{src}:Mismatch", "--input", "2x3", "--init", '{"width": 4}')
    assert r.exit_code == 1 and not rep["exported"]
    assert "mat1 and mat2 shapes cannot be multiplied" in rep["error"], rep["error"]
    assert rep["error_location"].endswith("mismatch.py:12")
    assert rep["findings"] == []
    assert rep["checker"] == "not run"  # the checker never ran: it did not pass


def test_output_into_a_missing_directory_is_a_usage_error(tmp_path):
    r = CliRunner().invoke(
        main, ["export", f"{SEED}:FormattingLayer", "--input", "2x3", "-o", str(tmp_path / "nope" / "m.onnx")]
    )
    assert r.exit_code == 2
    assert "does not exist" in r.stderr and len(r.stderr.strip().splitlines()) == 1


ENDLESS = """import torch
import torch.nn as nn


class Grow(nn.Module):
    def forward(self, x):
        while x.abs().sum() < 100:
            x = x * 2 + 1
        return x
"""


def test_a_model_that_never_ends_on_an_input_fails_naming_it(tmp_path):
    """x = -1 stays -1: the "negatives" input never ends. Each step has a time limit; the run finishes,
    names the input, and fails."""
    import time

    src = tmp_path / "grow.py"
    src.write_text(ENDLESS, encoding="utf-8")
    t0 = time.perf_counter()
    r, rep = export(f"{src}:Grow", "--input", "2x3", "--exporter", "trace", "--timeout", "2")
    assert time.perf_counter() - t0 < 60
    assert r.exit_code == 1 and rep["exported"] and not rep["ok"]
    slow = [c for c in rep["cases"] if "did not finish" in c["detail"]]
    assert [c["name"] for c in slow][:1] == ["negatives"] and slow[0]["match"] is False
    assert "eager PyTorch did not finish within 2 s" in slow[0]["detail"]
    r = CliRunner().invoke(main, ["export", f"{src}:Grow", "--input", "2x3", "--timeout", "0"])
    assert r.exit_code == 2 and "--timeout" in r.stderr


def test_text_is_streamed_as_it_happens():
    """The header comes before the export runs and each input line as that input is done; together they
    are the report's text."""
    from tracesafe import export as ex

    pieces: list[str] = []
    rep = ex.export(f"{SEED}:FormattingLayer", [ex.parse_input("2x3")], exporter="trace", stream=pieces.append)
    assert pieces[0] == rep.header() and "".join(pieces) == rep.text()
    inputs = [p for p in pieces if p.startswith("  input ")]
    assert len(inputs) == len(rep.cases) >= 7  # one piece per input, in order
    r = CliRunner().invoke(main, ["export", f"{SEED}:FormattingLayer", "--input", "2x3", "--exporter", "trace"])
    assert r.stdout == rep.text()


PLACEHOLDER = """import torch
import torch.nn as nn
from typing import Tuple


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 5)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if torch.all(x == 0):
            return torch.zeros_like(x), torch.tensor(True)
        return self.proj(x), torch.tensor(False)
"""


def test_an_output_shaped_differently_on_each_branch_fails(tmp_path):
    """A placeholder shaped like the input (2, 3) where the real output is (2, 5): ONNX gives the output a
    dynamic dimension and every input matches, but the signature is not fixed — export says so and fails."""
    src = tmp_path / "head.py"
    src.write_text(PLACEHOLDER, encoding="utf-8")
    r, rep = export(f"{src}:Head", "--input", "2x3")
    assert rep["exported"] and all(c["match"] for c in rep["cases"])
    assert r.exit_code == 1 and not rep["ok"]
    assert rep["signature"].startswith("output 0 is (2, 3) on zeros, (2, 5) on ones"), rep["signature"]
    fixed = tmp_path / "head_fixed.py"  # a new module: this process already imported head.py
    fixed.write_text(PLACEHOLDER.replace("torch.zeros_like(x)", "x.new_zeros(x.shape[0], 5)"), encoding="utf-8")
    r, rep = export(f"{fixed}:Head", "--input", "2x3")
    assert r.exit_code == 0 and rep["signature"] == "fixed", rep


ENERGY = """import torch
import torch.nn as nn


class Energy(nn.Module):
    def forward(self, x):
        if torch.all(x == 0):
            return None
        return (x * x).mean()
"""


def test_flag_placeholder_takes_the_shape_of_the_output_it_stands_for(tmp_path):
    """A full reduction returns a 0-d tensor: the `flag` placeholder is 0-d too (not shaped like the input),
    so both ONNX If branches have one signature and export passes on both."""
    src = tmp_path / "energy.py"
    src.write_text(ENERGY, encoding="utf-8")
    assert CliRunner().invoke(main, ["fix", "--unsafe-fixes", str(src)]).exit_code == 1
    assert "return x.new_zeros(()), torch.tensor(True)" in src.read_text(encoding="utf-8")
    r, rep = export(f"{src}:Energy", "--input", "2x3")
    assert r.exit_code == 0 and rep["signature"] == "fixed", r.stdout
    assert {c["name"] for c in rep["cases"] if c["match"]} >= {"zeros", "ones"}


def _write(tmp_path, rel: str, text: str):
    p = tmp_path / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    return p


DICT_OUT = """import torch
import torch.nn as nn


class DictOut(nn.Module):
    def forward(self, x):
        return {"b": x * 2, "a": (x + 1, None), "c": None}
"""


def test_stdout_carries_the_report_only(tmp_path):
    """The TorchScript exporter fails on a dict output and prints its IR graph to the process's stdout from
    C++: the report stays parseable JSON, and the step keeps an excerpt of what was printed."""
    import subprocess
    import sys

    src = _write(tmp_path, "dict_out.py", DICT_OUT)
    cmd = [sys.executable, "-m", "tracesafe", "export", f"{src}:DictOut", "--input", "2x3"]
    p = subprocess.run(cmd + ["--format", "json"], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    rep = json.loads(p.stdout)
    assert not rep["exported"] and "Torch IR graph" not in p.stderr and p.stdout.startswith("{")
    (step,) = [s for s in rep["steps"] if s["step"] == "export"]
    assert step["status"] == "failed" and "Torch IR graph at exception" in step["output"]
    assert len(step["output"].splitlines()) <= 12
    text = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert (
        text.stdout.startswith(f"{src.name}:DictOut: export with `script`")
        and "prim::Constant" not in text.stdout.split("printed:")[0]
        and text.stderr == ""
    )


LAYERS = """import torch


def gate(x):
    if x.sum() > 0:
        return x * 2
    return x - 1
"""
NET = """import torch
import torch.nn as nn

from ..layers import gate


class Net(nn.Module):
    def forward(self, x):
        y = x + 1
        return gate(y)
"""


def _pkg(tmp_path):
    _write(tmp_path, "mypkg/__init__.py", "")
    _write(tmp_path, "mypkg/models/__init__.py", "")
    _write(tmp_path, "mypkg/layers.py", LAYERS)
    return _write(tmp_path, "mypkg/models/net.py", NET)


def test_an_error_in_a_helper_module_is_reported_there_with_checks_rule(tmp_path, monkeypatch):
    """torch.export fails inside mypkg/layers.py, reached from Net in mypkg/models/net.py: the report names
    layers.py's line and the rule `check --target dynamo` gives it, with the message's whole first line."""
    import torch

    monkeypatch.chdir(tmp_path)
    net = _pkg(tmp_path)
    r, rep = export(f"{net}:Net", "--input", "2x3", "--exporter", "dynamo")
    assert r.exit_code == 1 and not rep["exported"]
    assert rep["error_location"] == os.path.join("mypkg", "layers.py") + ":5"
    assert [(f["path"], f["line"], f["code"]) for f in rep["findings"]] == [
        (os.path.join("mypkg", "layers.py"), 5, "TS101")
    ]
    try:
        torch.export.export(_load_net(tmp_path)(), (torch.randn(2, 3),), strict=False)
    except Exception as e:  # the exporter's own first line, whole
        assert rep["error"].endswith(str(e).strip().splitlines()[0].strip())
    assert all(c["detail"] == "not run: the export failed" for c in rep["cases"]) and len(rep["cases"]) >= 7


def _load_net(root):
    import importlib
    import sys

    sys.path.insert(0, str(root))
    try:
        return importlib.import_module("mypkg.models.net").Net
    finally:
        sys.path.remove(str(root))


def test_branch_coverage_reaches_the_helper_modules(tmp_path, monkeypatch):
    """The trace exporter: the TracerWarning in layers.py is check's TS101 there (not a TS104 at the call
    site), and the branch in layers.py is covered on both sides."""
    monkeypatch.chdir(tmp_path)
    net = _pkg(tmp_path)
    r, rep = export(f"{net}:Net", "--input", "2x3", "--exporter", "trace")
    assert r.exit_code == 1  # the frozen branch: parity fails on one side
    assert [(f["path"], f["line"], f["code"]) for f in rep["findings"]] == [
        (os.path.join("mypkg", "layers.py"), 5, "TS101")
    ]
    (branch,) = rep["branches"]
    assert branch["path"] == os.path.join("mypkg", "layers.py") and branch["line"] == 5
    assert set(branch["sides"]) == {"true", "false"} and False in branch["parity"].values()


PAIR = """import torch
import torch.nn as nn


class Pair(nn.Module):
    def forward(self, x):
        out = x * 2
        return out, None


class Fields(nn.Module):
    def forward(self, x):
        return {"b": x * 2, "a": (x + 1, None), "c": None}


class Varies(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2, None
        return x * 2, x + 1
"""


@pytest.mark.parametrize("exporter", ["trace", "dynamo"])
def test_a_constant_none_output_is_dropped_as_the_exporter_drops_it(tmp_path, exporter):
    src = _write(tmp_path, "pair.py", PAIR)
    r, rep = export(f"{src}:Pair", "--input", "2x3", "--exporter", exporter)
    assert r.exit_code == 0, r.stdout
    assert rep["dropped_outputs"] == ["[1]"] and len(rep["outputs"]) == 1
    r, rep = export(f"{src}:Fields", "--input", "2x3", "--exporter", exporter)
    assert r.exit_code == 0, r.stdout
    assert rep["dropped_outputs"] == ["a[1]", "c"] and len(rep["outputs"]) == 2
    text = CliRunner().invoke(main, ["export", f"{src}:Pair", "--input", "2x3", "--exporter", exporter]).stdout
    assert "(dropped by the exporter, None on the example: [1])" in text


def test_a_none_that_varies_with_the_input_stays_a_mismatch(tmp_path):
    src = _write(tmp_path, "pair.py", PAIR)
    r, rep = export(f"{src}:Varies", "--input", "2x3", "--exporter", "trace")
    assert r.exit_code == 1
    bad = [c for c in rep["cases"] if c["match"] is False]
    assert bad and all("None" in c["detail"] for c in bad)


SLOW_EXPORT = """import time

import torch
import torch.nn as nn


class SlowToExport(nn.Module):
    def forward(self, x):
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            time.sleep(5)
        return x * 2
"""


@pytest.mark.parametrize("exporter", ["trace", "dynamo"])
def test_a_step_that_runs_out_of_time_says_so(tmp_path, exporter):
    """A timeout is not an exporter failure, and the inputs it kept from running are listed as not run."""
    src = _write(tmp_path, "slow.py", SLOW_EXPORT)
    r, rep = export(f"{src}:SlowToExport", "--input", "2x3", "--exporter", exporter, "--timeout", "1")
    assert r.exit_code == 1 and not rep["ok"]
    assert rep["timed_out"] == "the export did not finish within 1 s" and rep["error"] is None
    assert not any("did not export" in n for n in rep["notes"])
    assert rep["cases"] and all(
        c["match"] is None and c["detail"] == "not run: the export timed out" for c in rep["cases"]
    )
    assert [s["status"] for s in rep["steps"]] == ["timed out"]
    text = (
        CliRunner()
        .invoke(main, ["export", f"{src}:SlowToExport", "--input", "2x3", "--exporter", exporter, "--timeout", "1"])
        .stdout
    )
    assert "export TIMED OUT: the export did not finish within 1 s" in text and "FAILED" not in text
    assert "onnx not run: the export timed out" in text


FACTORY = """import torch
import torch.nn as nn


class Tagger(nn.Module):
    def __init__(self, vocab: int = 50, dim: int = 8, max_len: int = 16):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(max_len, dim))
        self.out = nn.Linear(dim, 3)

    def forward(self, input_ids=None, attention_mask=None, return_dict=True):
        h = self.emb(input_ids) * attention_mask[..., None]
        if return_dict:
            return {"logits": self.out(h), "hidden": h}
        return self.out(h)


class Pinned(Tagger):
    def forward(self, input_ids=None, attention_mask=None, return_dict=True):
        h = self.emb(input_ids) + self.pos  # the table's length: only 16 tokens fit
        return self.out(h)


def tagger():
    return Tagger()


def tagger_with_inputs():
    torch.manual_seed(0)
    ids = torch.randint(0, 50, (2, 16))
    return Tagger(), {"input_ids": ids, "attention_mask": torch.ones(2, 16), "return_dict": False}


def pinned():
    return Pinned()
"""


def test_a_factory_with_keyword_inputs_and_named_dynamic_dimensions(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "factories.py", FACTORY)
    args = [
        "--input",
        "input_ids=2x16:int64[0,50)",
        "--input",
        "attention_mask=2x16:float32[0,1]",
        "--dynamic",
        "batch=0",
        "--dynamic",
        "seq=1",
        "--exporter",
        "dynamo",
    ]
    r, rep = export("factories.py:tagger", *args)
    assert r.exit_code == 0, r.stdout
    assert rep["dynamic"] == ["batch", "seq"] and not rep["pinned"]
    names = {c["name"] for c in rep["cases"] if c["match"]}
    assert {"batch1-randn", "seq17-randn", "batch3+seq17-randn"} <= names
    assert len(rep["outputs"]) == 2  # logits, hidden: a dict flattened by field
    # the factory's own example inputs, and a constant keyword input; the target as a module name
    monkeypatch.syspath_prepend(str(tmp_path))
    r, rep = export(
        "factories:tagger_with_inputs", "--dynamic", "batch=0", "--dynamic", "seq=1", "--exporter", "dynamo"
    )
    assert r.exit_code == 0, r.stdout
    assert rep["cases"][0]["name"] == "example" and any("return_dict=False" in n for n in rep["notes"])
    assert len(rep["outputs"]) == 1


def test_an_export_pinned_to_one_length_fails_naming_the_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "factories.py", FACTORY)
    r, rep = export(
        "factories.py:pinned",
        "--input",
        "input_ids=2x16:int64[0,50)",
        "--dynamic",
        "batch=0",
        "--dynamic",
        "seq=1",
        "--exporter",
        "dynamo",
    )
    assert r.exit_code == 1 and not rep["ok"] and rep["exported"]
    assert rep["pinned"] == {"seq": 16} and rep["pinned_at"] == {"seq": "factories.py:21"}
    assert rep["dynamic"] == ["batch", "seq"]
    seq = [c for c in rep["cases"] if "seq" in c["name"]]
    assert seq and all(c["detail"] == "not run: the export pinned `seq`" for c in seq)
    assert all(c["match"] for c in rep["cases"] if c["name"].startswith("batch") and "seq" not in c["name"])


def test_the_torch_range_is_checked(monkeypatch):
    import torch

    from tracesafe.export import UsageError, versions

    assert versions.check("dynamo") is None  # the installed torch is in the tested range
    monkeypatch.setattr(torch, "__version__", "2.12.1+cpu")
    assert "outside the range" in versions.check("script")
    monkeypatch.delattr(torch, "cond")
    with pytest.raises(UsageError, match="no torch.cond"):
        versions.check("script")
