"""`tracesafe export` on real transformers models, built by factory functions (fixtures/export): keyword
inputs by name, dynamic dimensions by name, ModelOutput flattened by field; a model whose export pins a
dynamic length fails, naming the line and the rule `check` gives it."""

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
pytest.importorskip("transformers")

FACTORIES = os.path.relpath(FIXTURES / "export" / "hf_factories.py")


def export(*args):
    r = CliRunner().invoke(main, ["export", *args, "--format", "json"])
    assert r.exit_code in (0, 1), r.output
    return r, json.loads(r.stdout)


def test_a_transformers_model_from_a_factory_with_keyword_inputs_exports_with_dynamic_batch_and_sequence():
    r, rep = export(
        f"{FACTORIES}:tiny_llama",
        "--input",
        "input_ids=2x8:int64[0,99)",
        "--input",
        "attention_mask=2x8:int64[1,2)",
        "--dynamic",
        "batch=0",
        "--dynamic",
        "seq=1",
        "--exporter",
        "dynamo",
    )
    assert r.exit_code == 0, r.stdout
    assert rep["ok"] and rep["dynamic"] == ["batch", "seq"] and not rep["pinned"]
    matched = {c["name"] for c in rep["cases"] if c["match"]}
    assert {"batch1-randn", "batch3-randn", "seq1-randn", "seq9-randn", "batch3+seq9-randn"} <= matched
    assert [o.split(":")[1].strip() for o in rep["outputs"]][0].startswith("float32[")  # last_hidden_state
    # branches the analysis followed into the library's helper modules are covered too
    assert any("masking_utils.py" in b["path"] for b in rep["branches"])


def test_a_factory_that_gives_its_example_inputs():
    r, rep = export(
        f"{FACTORIES}:tiny_llama_with_inputs", "--dynamic", "batch=0", "--dynamic", "seq=1", "--exporter", "dynamo"
    )
    assert r.exit_code == 0, r.stdout
    assert rep["cases"][0] == {**rep["cases"][0], "name": "example", "match": True}
    assert any("use_cache=False" in n for n in rep["notes"])


def test_an_export_pinned_to_the_configured_image_size_fails():
    r, rep = export(
        f"{FACTORIES}:tiny_vit",
        "--input",
        "pixel_values=2x3x32x32",
        "--dynamic",
        "batch=0",
        "--dynamic",
        "height=2",
        "--dynamic",
        "width=3",
        "--exporter",
        "dynamo",
    )
    assert r.exit_code == 1 and not rep["ok"] and rep["exported"]
    assert rep["pinned"] == {"height": 32, "width": 32}
    at = rep["pinned_at"]["height"]
    assert at.endswith(os.path.join("models", "vit", "modeling_vit.py") + ":152")
    assert any(f["code"] == "TS109" and f["line"] == 152 for f in rep["findings"])  # a size check that raises
    assert all(c["match"] for c in rep["cases"] if c["match"] is not None)  # batch stayed dynamic
    assert any(c["name"] == "batch3-randn" and c["match"] for c in rep["cases"])
