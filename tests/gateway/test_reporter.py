"""The prediction reporter with real sinks and a real spill directory: sinks go down and come
back, queues fill, processes die, and every record still arrives once."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import MappingProxyType

import pytest
import requests

from gateway.encoding import encode
from gateway.prediction import Call
from gateway.sinkreporter import SinkReporter
from gateway.sinks.file import FileSink
from gateway.spill import Spill
from modelsync import schema
from modelsync.gatewayconfig import SinkConfig
from tests.support.gateway import Gateway, a_call, infer_body, read_jsonl
from tests.support.helpers import wait_for
from tests.support.volume import Volume


def file_sink(path: Path, **options: object) -> FileSink:
    return FileSink(SinkConfig("file", "file", MappingProxyType({"path": str(path), **options})))


@pytest.fixture
def make_reporter(tmp_path: Path) -> Iterator[Callable[..., SinkReporter]]:
    made: list[SinkReporter] = []

    def make(sink: FileSink, queue_size: int = 1000, batch_size: int = 50) -> SinkReporter:
        spill = Spill(tmp_path / "spill" / sink.name)
        spill.prepare()
        reporter = SinkReporter(
            sink, spill, queue_size=queue_size, batch_size=batch_size, flush_seconds=0.02, retry_seconds=0.05
        )
        made.append(reporter)
        return reporter

    yield make
    for reporter in made:
        reporter.close()


def request_ids(path: Path) -> Counter[str]:
    return Counter(str(r["requestId"]) for r in read_jsonl(path))


def test_sink_down_then_up_every_record_arrives_once(
    tmp_path: Path, make_reporter: Callable[..., SinkReporter]
) -> None:
    target = tmp_path / "mount" / "predictions.jsonl"  # the mount is not there yet: sink down
    reporter = make_reporter(file_sink(target))
    for index in range(500):
        reporter.submit(a_call(index))
    wait_for(lambda: list((tmp_path / "spill" / "file").glob("*.jsonl")), 10, what="a spill segment")

    target.parent.mkdir()  # the mount appears: sink up
    wait_for(lambda: len(request_ids(target)) == 500, 20, what="500 records")
    for index in range(500, 600):
        reporter.submit(a_call(index))
    wait_for(lambda: len(request_ids(target)) == 600, 20, what="600 records")

    reporter.close()
    counts = request_ids(target)
    assert set(counts) == {f"req-{i}" for i in range(600)}
    assert max(counts.values()) == 1, "a record arrived twice"
    assert not list((tmp_path / "spill" / "file").glob("*.jsonl")), "replayed segments are removed"
    for record in read_jsonl(target):
        schema.check(schema.PREDICTION, record)


def test_a_full_queue_spills_instead_of_blocking(
    tmp_path: Path, make_reporter: Callable[..., SinkReporter]
) -> None:
    target = tmp_path / "predictions.jsonl"
    reporter = make_reporter(file_sink(target), queue_size=2, batch_size=1)
    started = time.perf_counter()
    for index in range(2000):
        reporter.submit(a_call(index))
    per_submit = (time.perf_counter() - started) / 2000
    assert per_submit < 0.005, "submit must never wait on the sink"
    assert list((tmp_path / "spill" / "file").glob("*.jsonl")), "an overflowing queue spills"

    wait_for(lambda: len(request_ids(target)) == 2000, 30, what="2000 records")
    assert max(request_ids(target).values()) == 1


def test_close_drains_the_queue_and_a_new_process_replays_what_was_left(
    tmp_path: Path, make_reporter: Callable[..., SinkReporter]
) -> None:
    target = tmp_path / "mount" / "predictions.jsonl"
    first = make_reporter(file_sink(target))
    for index in range(300):
        first.submit(a_call(index))
    first.close()  # sink still down: everything queued goes to the spill
    assert not target.exists()

    target.parent.mkdir()
    second = make_reporter(file_sink(target))
    second.start()  # a restarted gateway: nothing submitted yet, the old spill replays anyway
    wait_for(lambda: len(request_ids(target)) == 300, 20, what="300 replayed records")
    assert max(request_ids(target).values()) == 1


def test_a_torn_line_from_a_killed_writer_is_left_out(
    tmp_path: Path, make_reporter: Callable[..., SinkReporter]
) -> None:
    spill_dir = tmp_path / "spill" / "file"
    spill_dir.mkdir(parents=True)
    whole = b"".join(line for index in range(3) for line in encode(a_call(index)))
    (spill_dir / "seg-00000000000000000001-999999-dead00.jsonl").write_bytes(whole + b'{"predictionId": "tor')
    target = tmp_path / "predictions.jsonl"
    make_reporter(file_sink(target)).start()

    wait_for(lambda: len(request_ids(target)) == 3, 20, what="3 whole records")
    assert all(json.loads(line) for line in target.read_text().splitlines())


def test_replay_resumes_at_its_cursor(tmp_path: Path, make_reporter: Callable[..., SinkReporter]) -> None:
    """A replay cut short (the process died after delivering part of a segment) does not
    deliver that part again."""
    spill_dir = tmp_path / "spill" / "file"
    spill_dir.mkdir(parents=True)
    lines = [line for index in range(10) for line in encode(a_call(index))]
    segment = spill_dir / "seg-00000000000000000001-999999-dead00.jsonl"
    segment.write_bytes(b"".join(lines))
    (spill_dir / (segment.name + ".cursor")).write_text(str(sum(len(x) for x in lines[:4])))
    target = tmp_path / "predictions.jsonl"
    make_reporter(file_sink(target)).start()

    wait_for(lambda: len(request_ids(target)) == 6, 20, what="6 records")
    assert set(request_ids(target)) == {f"req-{i}" for i in range(4, 10)}


def test_file_sink_rotates_and_loses_nothing(
    tmp_path: Path, make_reporter: Callable[..., SinkReporter]
) -> None:
    target = tmp_path / "predictions.jsonl"
    reporter = make_reporter(file_sink(target, max_bytes=4096, backups=1000), batch_size=5)
    for index in range(300):
        reporter.submit(a_call(index))
    wait_for(lambda: len(request_ids(target)) == 300, 20, what="300 records")
    files = sorted(tmp_path.glob("predictions.jsonl*"))
    assert len([f for f in files if not f.name.endswith(".lock")]) > 5
    assert all(f.stat().st_size <= 4096 for f in files)
    assert max(request_ids(target).values()) == 1


def test_gateway_spills_while_its_sink_is_down_and_loses_nothing_across_a_restart(
    gateway_volume: Volume, start_gateway: Callable[..., Gateway]
) -> None:
    mount = gateway_volume.root / "mount"
    target = mount / "predictions.jsonl"
    gateway_volume.settings["gateway"]["reporting"]["sinks"] = [{"type": "file", "path": str(target)}]
    gateway_volume.write()
    gateway = start_gateway()
    for index in range(100):
        assert (
            gateway.infer("adder", infer_body(), version="1", **{"X-Request-Id": f"r{index}"}).status_code
            == 200
        )

    def spilled() -> bool:
        text = requests.get(gateway.url + "/metrics", timeout=5).text
        return 'modelsync_gateway_reporter_spilled_total{sink="file"} 100.0' in text

    wait_for(spilled, 10, what="100 spilled records")
    assert gateway.proc.stop(timeout=40) == 0  # graceful: both workers drain and seal their spill

    os.mkdir(mount)
    gateway = start_gateway()
    for index in range(100, 150):
        assert (
            gateway.infer("adder", infer_body(), version="1", **{"X-Request-Id": f"r{index}"}).status_code
            == 200
        )
    wait_for(lambda: len(request_ids(target)) == 150, 30, what="150 records")
    counts = request_ids(target)
    assert set(counts) == {f"r{i}" for i in range(150)}
    assert max(counts.values()) == 1
    text = requests.get(gateway.url + "/metrics", timeout=5).text
    assert 'modelsync_gateway_reporter_replayed_total{sink="file"} 100.0' in text
    assert 'dropped_total{sink="file"} 0.0' in text or "dropped_total{" not in text


def test_one_prediction_has_one_id_in_every_sink(
    tmp_path: Path, make_reporter: Callable[..., SinkReporter]
) -> None:
    first, second = tmp_path / "a" / "p.jsonl", tmp_path / "b" / "p.jsonl"
    first.parent.mkdir()
    second.parent.mkdir()
    reporters = [
        make_reporter(FileSink(SinkConfig("file", name, MappingProxyType({"path": str(path)}))))
        for name, path in (("a", first), ("b", second))
    ]
    for index in range(20):
        call = a_call(index)
        for reporter in reporters:
            reporter.submit(call)
    wait_for(lambda: len(request_ids(first)) == len(request_ids(second)) == 20, 10, what="20 records in each")
    assert {r["predictionId"] for r in read_jsonl(first)} == {r["predictionId"] for r in read_jsonl(second)}


def test_a_hostile_request_still_gets_its_record_and_the_sender_goes_on(
    tmp_path: Path, make_reporter: Callable[..., SinkReporter]
) -> None:
    """inputs: all, and a body nested deeper than Python's parser goes: the record is written
    without inputs, and every later record still arrives."""
    target = tmp_path / "predictions.jsonl"
    reporter = make_reporter(file_sink(target))
    hostile = Call(**{**a_call(0).__dict__, "request": b'{"inputs":' + b"[" * 100_000})
    reporter.submit(hostile)
    for index in range(1, 11):
        reporter.submit(a_call(index))
    wait_for(lambda: len(request_ids(target)) == 11, 10, what="11 records")
    (record,) = [r for r in read_jsonl(target) if r["requestId"] == "req-0"]
    assert "inputs" not in record and record["status"] == "ok"


def test_non_finite_outputs_are_written_as_valid_json(tmp_path: Path) -> None:
    call = a_call(0)
    body = json.loads(call.response)
    body["outputs"][0]["data"] = [float("nan"), float("inf")]
    (line,) = encode(Call(**{**call.__dict__, "response": json.dumps(body).encode()}))
    assert b"NaN" in line and json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c}"))
