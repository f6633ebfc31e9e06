"""Ground truth on real models: transformers 5.24.0 classes from tiny configs, traced by torch.jit.trace.

Both directions on the lines that ran: every statement the tracer warns on carries a TS1xx finding, and
statements flagged and run without a warning stay under a stated budget. The sample is fixed in
real_models.SAMPLE (56 classes: text, vision, audio, detection, MoE, state-space)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers", reason="the real-model ground truth needs transformers 5.24.0 (the test extra)")

from real_models import measure  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.torch]

# Flagged statements that ran in full without a warning, as a share of the flagged statements that ran
# (measured at the time of writing: 2 of 46). A statement that skipped an operand of its `and`/`or` or an
# arm of its ternary (`conv_state is not None and seq_len == 1` without a cache) is left out: the tracer
# never saw the flagged part (18 such statements then).
ALARM_BUDGET = 0.10


@pytest.fixture(scope="module")
def result():
    return measure()


def test_enough_architectures_trace(result):
    assert len(result["traced"]) >= 40, result["failed"]


def test_every_warned_statement_is_flagged(result):
    assert result["warned"] > 0
    assert not result["missed"], "tracer warned, tracesafe silent:\n" + "\n".join(result["missed"])


def test_false_alarms_on_executed_code_stay_under_budget(result):
    alarms = result["alarms"]
    ran = result["confirmed"] + len(alarms)
    print(
        f"\nconfirmed {result['confirmed']}, false alarms {len(alarms)} of {ran} flagged statements that ran; "
        f"{len(result['unrun'])} not fully run left out"
    )
    detail = "\n".join(text for _, text in alarms)
    assert len(alarms) <= ALARM_BUDGET * ran, f"{len(alarms)} of {ran} ran without a warning:\n{detail}"
