"""The gateway's pure parts, one at a time (the rest of tests/gateway runs them end to end):
what a reporter sends again after a sink failed, which names become metric labels, how the
model server's errors are reshaped, the inputs sampling policy and the status of an outage."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import ModelServiceUnavailable, SinkError
from gateway.inference import ModelLabels, normalise_error
from gateway.reporting import Reporting
from gateway.sinkreporter import SinkReporter, to_retry
from gateway.sinks.file import FileSink
from gateway.spill import Spill
from modelsync.gatewayconfig import SinkConfig

# -- a reporter's settle logic ---------------------------------------------------------------


def test_the_lines_the_sink_names_as_undelivered_are_the_ones_sent_again() -> None:
    error = SinkError("partial", undelivered=[b"b", b"c"], rejected=[b"a"])
    assert to_retry(error, [b"a", b"b", b"c", b"d"]) == [b"b", b"c"]


def test_when_the_sink_cannot_say_all_but_the_refused_are_sent_again() -> None:
    error = SinkError("down", rejected=[b"big"])
    assert to_retry(error, [b"x", b"big", b"y"]) == [b"x", b"y"]


def test_a_refused_line_takes_out_one_copy_not_every_equal_line() -> None:
    # Two equal records are two predictions: refusing one must not drop the other.
    error = SinkError("down", rejected=[b"same"])
    assert to_retry(error, [b"same", b"other", b"same"]) == [b"other", b"same"]


def test_nothing_refused_and_nothing_known_means_the_whole_batch_again() -> None:
    assert to_retry(SinkError("down"), [b"1", b"2"]) == [b"1", b"2"]


def test_an_empty_undelivered_list_means_everything_arrived() -> None:
    assert to_retry(SinkError("odd", undelivered=[]), [b"1", b"2"]) == []


@given(st.lists(st.sampled_from([b"a", b"b", b"c", b"d"]), max_size=30), st.data())
def test_what_is_sent_again_and_what_was_refused_add_up_to_the_batch(
    lines: list[bytes], data: st.DataObject
) -> None:
    refused = data.draw(st.lists(st.sampled_from(lines), max_size=len(lines)) if lines else st.just([]))
    refused = list((Counter(refused) & Counter(lines)).elements())
    retry = to_retry(SinkError("down", rejected=refused), lines)
    assert Counter(retry) + Counter(refused) == Counter(lines)
    remaining = iter(lines)
    assert all(line in remaining for line in retry)  # the batch's order is kept


# -- metric labels ---------------------------------------------------------------------------


def test_a_name_becomes_a_label_only_once_the_model_server_answered_it() -> None:
    labels = ModelLabels(limit=10)
    assert labels.of("made-up", None, 404) == ("unknown", "unknown")
    assert labels.of("adder", "1", 200) == ("adder", "1")
    assert labels.of("adder", "1", 500) == ("adder", "1")  # known now, whatever the status
    assert labels.of("adder", None, 200) == ("adder", "default")


def test_past_the_limit_new_names_share_one_label() -> None:
    labels = ModelLabels(limit=2)
    assert [labels.of(f"m{i}", None, 200) for i in range(3)] == [
        ("m0", "default"),
        ("m1", "default"),
        ("other", "other"),
    ]
    assert labels.of("m2", None, 500) == ("unknown", "unknown")


def test_each_predictor_has_labels_of_its_own() -> None:
    first, second = ModelLabels(), ModelLabels()
    first.of("adder", "1", 200)
    assert second.of("adder", "1", 500) == ("unknown", "unknown")


# -- errors from the model server ------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error": "Model with requested name is not found"}', "Model with requested name is not found"),
        (
            b'{"detail": [{"loc": ["body", "inputs"], "msg": "field required"}]}',
            "body.inputs: field required",
        ),
        (b'{"detail": "no such model"}', "no such model"),
        (b"upstream went away", "upstream went away"),
        (b"", "model server answered 502"),
        (b"[1, 2]", "model server answered 502: [1, 2]"),
    ],
)
def test_every_error_becomes_an_error_object(body: bytes, expected: str) -> None:
    assert json.loads(normalise_error(502, body)) == {"error": expected}


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (ModelServiceUnavailable("refused", sent=False), 503),
        (ModelServiceUnavailable("slow", timed_out=True), 504),
        (ModelServiceUnavailable("too large", bad_answer=True), 502),
    ],
)
def test_an_unusable_model_server_maps_to_one_status(failure: ModelServiceUnavailable, status: int) -> None:
    assert failure.status == status


# -- the inputs policy -----------------------------------------------------------------------


def test_inputs_are_kept_never_always_or_for_a_sample(tmp_path: Path) -> None:
    assert not Reporting([], 1.0).wants_inputs()  # nothing to record them in
    sink = FileSink(SinkConfig("file", "file", MappingProxyType({"path": str(tmp_path / "p.jsonl")})))
    reporter = SinkReporter(
        sink, Spill(tmp_path / "spill"), queue_size=10, batch_size=10, flush_seconds=1, retry_seconds=1
    )
    reporting = Reporting([reporter], 0.0)
    assert not reporting.wants_inputs()
    reporting.input_rate = 1.0
    assert all(reporting.wants_inputs() for _ in range(100))
    reporting.input_rate = 0.5
    kept = sum(reporting.wants_inputs() for _ in range(4000))
    assert 1600 < kept < 2400  # a sample, not all or none (20 standard deviations of slack)
