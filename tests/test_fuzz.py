"""Fuzzing the pure core: grammar-valid Python from hypothesmith and mutated fixtures through check_source
and fix_source. Only SourceError (a one-line user error) may escape; every fix parses and is idempotent."""

from __future__ import annotations

import hypothesmith
import libcst as cst
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracesafe.analyzer import Config, SourceError, check_source
from tracesafe.rewriters.engine import FORMS, fix_source

from conftest import fixture_files

FIXTURE_SOURCES = [p.read_text(encoding="utf-8") for p in fixture_files()]
SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


def _through_the_core(src: str, form: str) -> None:
    try:
        check_source(src, "fuzz.py", Config(target="trace"))
        check_source(src, "fuzz.py", Config(target="script"))
        res = fix_source(src, form, unsafe_fixes=True)
    except SourceError:
        return
    if res.source != src:
        cst.parse_module(res.source)
        assert fix_source(res.source, form, unsafe_fixes=True).source == res.source


@SETTINGS
@given(hypothesmith.from_grammar(), st.sampled_from(FORMS))
def test_grammar_valid_python(src, form):
    _through_the_core(src, form)


@st.composite
def mutated_fixture(draw):
    lines = draw(st.sampled_from(FIXTURE_SOURCES)).splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "dedent", "indent", "truncate", "noise"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap" and i + 1 < len(lines):
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
        elif op == "dedent":
            lines[i] = lines[i].lstrip(" ")
        elif op == "indent":
            lines[i] = "    " + lines[i]
        elif op == "truncate":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        else:
            pos = draw(st.integers(0, len(lines[i])))
            lines[i] = (
                lines[i][:pos]
                + draw(st.sampled_from(["(", ")", ":", " if x else ", "None", "\\", "'", "\t"]))
                + lines[i][pos:]
            )
    return "".join(lines)


@SETTINGS
@given(mutated_fixture(), st.sampled_from(FORMS))
def test_mutated_fixtures(src, form):
    _through_the_core(src, form)
