"""Faults for the webhook under real gunicorn: SIGKILL in the middle of traffic (counting every
acknowledged event), and hypothesis-generated hostile requests. The tests in
tests/webhook/test_reliability_webhook.py run a few rounds, ``bench/soak.py`` many."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelsync import keys
from tests.support.helpers import minio_event, minio_record
from tests.support.intents import IntentTail, intents_on_disk
from tests.support.processes import Webhook, gunicorn_pids
from tests.support.s3 import Bucket
from tests.support.volume import TOKEN, Volume


def sigkill_webhook(webhook: Webhook) -> None:
    """Crash the whole webhook at once: workers first (so none finishes a request), then the master."""
    for pid in reversed(gunicorn_pids(webhook.proc.popen.pid)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    webhook.proc.popen.wait(timeout=10)
    webhook.proc.handle.close()


@dataclass
class AckFigures:
    rounds: int = 0
    sent: int = 0
    acknowledged: int = 0
    failed_requests: int = 0
    acknowledged_but_missing: int = 0
    non_2xx: int = 0
    seconds: float = 0.0
    by_round: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "requests_sent": self.sent,
            "acknowledged_2xx": self.acknowledged,
            "connection_errors_at_kill": self.failed_requests,
            "non_2xx_answers": self.non_2xx,
            "acknowledged_but_missing": self.acknowledged_but_missing,
            "seconds": round(self.seconds, 1),
        }


class Traffic:
    """Clients posting distinct events as fast as they can, recording every acknowledged intent."""

    def __init__(self, url: str, bucket: Bucket, round_no: int) -> None:
        self.url = url
        self.bucket = bucket
        self.round_no = round_no
        self.acknowledged: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.counts = {"sent": 0, "errors": 0, "non_2xx": 0}

    def client(self, worker: int) -> None:
        session = requests.Session()
        n = 0
        while not self.stop.is_set():
            n += 1
            key = f"m{worker}/{self.round_no + 1}/file-{n}.bin"
            body = minio_event(self.bucket.name, key, etag=f"{n:032x}", size=n)
            try:
                response = session.post(
                    f"{self.url}/minio/events",
                    json=body,
                    headers={"Authorization": f"Bearer {TOKEN}"},
                    timeout=10,
                )
            except requests.RequestException:
                with self.lock:
                    self.counts["sent"] += 1
                    self.counts["errors"] += 1
                return  # the webhook is dead: this client is done
            with self.lock:
                self.counts["sent"] += 1
                if 200 <= response.status_code < 300:
                    self.acknowledged.extend(response.json()["intents"])
                else:
                    self.counts["non_2xx"] += 1


def kill_during_traffic(
    start_webhook: Callable[..., Webhook],
    volume: Volume,
    bucket: Bucket,
    rounds: int,
    clients: int = 8,
    rng: random.Random | None = None,
    min_acks: int = 50,
) -> AckFigures:
    """Each round: clients post events as fast as they can; the webhook is SIGKILLed mid-way."""
    rng = rng or random.Random()
    figures = AckFigures()
    started = time.monotonic()
    for round_no in range(rounds):
        webhook = start_webhook()
        traffic = Traffic(webhook.url, bucket, round_no)
        threads = [threading.Thread(target=traffic.client, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        target = min_acks + rng.randrange(4 * min_acks)
        while len(traffic.acknowledged) < target and time.monotonic() < deadline:
            time.sleep(0.005)  # pacing the check, not synchronising
        sigkill_webhook(webhook)
        traffic.stop.set()
        for thread in threads:
            thread.join(timeout=30)
        acknowledged = traffic.acknowledged
        on_disk = intents_on_disk(volume.intents)  # files and log frames, schema-checked
        missing = [i for i in acknowledged if i not in on_disk]
        figures.rounds += 1
        figures.sent += traffic.counts["sent"]
        figures.failed_requests += traffic.counts["errors"]
        figures.non_2xx += traffic.counts["non_2xx"]
        figures.acknowledged += len(acknowledged)
        figures.acknowledged_but_missing += len(missing)
        figures.by_round.append(len(acknowledged))
        assert not missing, f"round {round_no}: {len(missing)} acknowledged intents lost: {missing[:5]}"
        assert len(acknowledged) >= min_acks
    figures.seconds = time.monotonic() - started
    return figures


# -- fuzzing ------------------------------------------------------------------------------
TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
# Any code point, lone surrogates included (JSON carries them as \ud800 escapes; UTF-8 cannot).
ANY_TEXT = st.text(st.characters(categories=["Cs"]) | st.characters(codec="utf-8"), max_size=12)
SEGMENT = st.one_of(
    st.sampled_from(["..", ".", "", "m", "1", "0", "01", ".modelsync", "%2e%2e", "..%2f", "\\", "\x00", "~"]),
    st.from_regex(r"[A-Za-z0-9._-]{1,12}", fullmatch=True),
    TEXT,
    ANY_TEXT,
)
RAW_KEY = st.lists(SEGMENT, min_size=1, max_size=6).map("/".join) | st.just("/etc/passwd")


def escape(key: str, how: str) -> str:
    # A lone surrogate is escaped as the bytes CESU-8 would give it (not UTF-8 once decoded).
    if how == "query":
        return quote_plus(key, safe="", errors="surrogatepass")  # as MinIO sends it
    if how == "path":
        return quote(key, safe="/", errors="surrogatepass")
    if how == "double":
        return quote_plus(quote_plus(key, safe="", errors="surrogatepass"), safe="")
    return key


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


@st.composite
def mutated_event(draw: st.DrawFn, bucket: str) -> Any:
    key = draw(RAW_KEY)
    record = minio_record(
        draw(st.sampled_from([bucket, bucket, "other-bucket", ""])),
        "x",
        event=draw(
            st.sampled_from(
                ["s3:ObjectCreated:Put", "s3:ObjectRemoved:Delete", "s3:ObjectAccessed:Get", "", "s3:"]
            )
        ),
        etag=draw(st.none() | TEXT | ANY_TEXT),
        size=draw(st.none() | st.integers(min_value=-(2**70), max_value=2**70)),
    )
    record["s3"]["object"]["key"] = escape(key, draw(st.sampled_from(["query", "path", "double", "raw"])))
    if draw(st.integers(0, 3)) == 0:
        # Replace or add a random field somewhere.
        target = draw(st.sampled_from([record, record["s3"], record["s3"]["object"], record["s3"]["bucket"]]))
        target[draw(st.sampled_from([*list(target), "extra"]))] = draw(JSONISH)
    records = [record] * draw(st.integers(1, 3))
    return draw(st.sampled_from([{"Records": records}, {"EventName": "x", "Key": key, "Records": records}]))


HEADER_VALUE = st.from_regex(r"[!-~]([ -~]{0,58}[!-~])?", fullmatch=True)  # what HTTP allows


@st.composite
def fuzz_request(draw: st.DrawFn, bucket: str) -> dict[str, Any]:
    kind = draw(st.sampled_from(["event", "event", "json", "bytes"]))
    if kind == "event":
        body: bytes = json.dumps(draw(mutated_event(bucket))).encode()
    elif kind == "json":
        body = json.dumps(draw(JSONISH)).encode()
    else:
        body = draw(st.binary(max_size=300))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "latin-1"]))
    if encoding != "utf-8":
        body = body.decode("utf-8", "replace").encode(encoding, "replace")
    odds = draw(st.integers(0, 9))
    if odds < 7:
        token: str | None = f"Bearer {TOKEN}"
    elif odds < 9:
        token = draw(
            st.sampled_from([f"bearer {TOKEN}", TOKEN, f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", "", None])
        )
    else:
        token = draw(HEADER_VALUE)
    headers = {"Content-Type": draw(st.sampled_from(["application/json", "text/plain", "", "application/x"]))}
    if token is not None:
        headers["Authorization"] = token
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.from_regex(r"X-[A-Za-z0-9-]{1,20}", fullmatch=True))
        headers[name] = draw(HEADER_VALUE)
    path = draw(st.sampled_from(["/minio/events", "/minio/events", "/v1/resync", "/v1/resync?wait=0.01"]))
    return {"path": path, "body": body, "headers": headers}


def snapshot(root: Path, skip: Callable[[Path], bool]) -> dict[str, int]:
    return {str(p): p.lstat().st_size for p in root.rglob("*") if not skip(p)}


@dataclass
class FuzzFigures:
    cases: int = 0
    status_counts: dict[int, int] = field(default_factory=dict)
    server_errors: int = 0
    written_outside: int = 0
    seconds: float = 0.0


def check_answer(case: dict[str, Any], response: requests.Response, written: list[dict[str, Any]]) -> None:
    """No 5xx, no traceback, no token; each intent written since the last case (schema-checked by
    ``IntentTail``) names a safe key, and every intent the answer acknowledges is among them."""
    assert response.status_code < 500, (case, response.status_code, response.text)
    assert "Traceback" not in response.text
    assert TOKEN not in response.text
    for intent in written:
        if intent["kind"] == "object":
            assert keys.parse_key(intent["key"]) is not None, intent
    if response.status_code == 200 and case["path"] == "/minio/events":
        acknowledged = set(response.json()["intents"])
        assert acknowledged <= {intent["id"] for intent in written}, (case, response.text)


def fuzz_webhook(webhook: Webhook, volume: Volume, bucket: Bucket, examples: int) -> FuzzFigures:
    """Hypothesis against a live gunicorn: no 5xx, nothing written outside the intents directory."""
    figures = FuzzFigures()
    intents = volume.intents.resolve()
    logs = {p.resolve() for p in volume.root.glob("webhook-*.log")}

    def ours(path: Path) -> bool:
        resolved = path.resolve()
        return resolved in logs or resolved == intents or intents in resolved.parents

    before = snapshot(volume.root, ours)
    session = requests.Session()
    started = time.monotonic()
    written = IntentTail(volume.intents)

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=fuzz_request(bucket.name))
    def one(case: dict[str, Any]) -> None:
        response = session.post(
            webhook.url + case["path"], data=case["body"], headers=case["headers"], timeout=10
        )
        figures.cases += 1
        figures.status_counts[response.status_code] = figures.status_counts.get(response.status_code, 0) + 1
        check_answer(case, response, written())
        after = snapshot(volume.root, ours)
        assert after == before, sorted(set(after) ^ set(before))

    one()
    figures.seconds = time.monotonic() - started
    # Few fuzzed events are accepted: one that is shows the checks above see what the webhook writes.
    canary = webhook.post_event(minio_event(bucket.name, "m/1/canary.bin", etag="c" * 32, size=1))
    assert canary.status_code == 200 and canary.json()["intents"], canary.text
    check_answer({"path": "/minio/events"}, canary, written())
    assert webhook.proc.alive()
    assert "Traceback" not in webhook.proc.log
    return figures
