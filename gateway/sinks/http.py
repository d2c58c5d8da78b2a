"""HTTP sink: prediction records as CloudEvents.

``mode: binary`` (default) posts one event per record, the record as the JSON body and its
attributes as ``ce-*`` headers: what KServe's payload logger posts, so whatever consumes that
(a broker's ingress, a logger service) consumes this. ``mode: batch`` posts a whole batch as
one ``application/cloudevents-batch+json`` array, for receivers that take it.

A 2xx takes the record; a 4xx other than 408 and 429 refuses it for good (it is kept aside,
not retried); anything else, or no answer, means the receiver is down.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError
from urllib3.util import Retry, Timeout

from gateway.errors import SinkError
from modelsync.gatewayconfig import SinkConfig

EVENT_TYPE = "io.modelsync.gateway.prediction"
SOURCE = "modelsync-gateway"


def refused_for_good(status: int) -> bool:
    return 400 <= status < 500 and status not in (408, 429)


class HttpSink:
    def __init__(self, config: SinkConfig) -> None:
        self.name = config.name
        self.url = str(config.get("url"))
        self.source = str(config.get("source", SOURCE))
        self.event_type = str(config.get("event_type", EVENT_TYPE))
        self.batch = config.get("mode", "binary") == "batch"
        timeout = float(config.get("timeout_seconds", 5.0))
        self._pool = urllib3.PoolManager(
            maxsize=2, retries=Retry(total=0, redirect=0), timeout=Timeout(connect=timeout, read=timeout)
        )

    def send(self, lines: Sequence[bytes]) -> None:
        if self.batch:
            self._send_batch(lines)
            return
        rejected: list[bytes] = []
        for index, line in enumerate(lines):
            try:
                headers = self.headers(json.loads(line))
            except (ValueError, KeyError, TypeError):
                rejected.append(line)  # not a record this sink can describe
                continue
            try:
                status = self._post(line, headers)
            except SinkError as exc:
                raise SinkError(str(exc), list(lines[index:]), rejected) from None
            if refused_for_good(status):
                rejected.append(line)
            elif status >= 300:
                raise SinkError(f"POST {self.url} answered {status}", list(lines[index:]), rejected)
        if rejected:
            raise SinkError(f"POST {self.url} refused {len(rejected)} records", [], rejected)

    def _send_batch(self, lines: Sequence[bytes]) -> None:
        events: list[dict[str, Any]] = []
        broken: list[bytes] = []
        for line in lines:
            try:
                events.append(self.event(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                broken.append(line)  # not a record this sink can describe: set it aside
        if broken and not events:
            raise SinkError("no record in the batch could be described", [], broken)
        body = json.dumps(events).encode()
        status = self._post(body, {"Content-Type": "application/cloudevents-batch+json"})
        if refused_for_good(status):
            raise SinkError(f"POST {self.url} refused the batch: {status}", [], list(lines))
        if status >= 300:
            raise SinkError(f"POST {self.url} answered {status}", None, broken)
        if broken:
            raise SinkError(f"{len(broken)} lines were not records", [], broken)

    def _post(self, body: bytes, headers: dict[str, str]) -> int:
        try:
            return int(self._pool.request("POST", self.url, body=body, headers=headers).status)
        except (HTTPError, OSError, ValueError) as exc:
            raise SinkError(f"POST {self.url} failed: {type(exc).__name__}") from None

    def attributes(self, record: dict[str, Any]) -> dict[str, str]:
        return {
            "specversion": "1.0",
            "id": str(record["predictionId"]),
            "source": self.source,
            "type": self.event_type,
            "time": str(record["responseTimestamp"]),
            "subject": f"{record['modelName']}/{record['modelVersion'] or ''}",
            "modelname": str(record["modelName"]),
            "requestid": str(record["requestId"]),
        }

    def headers(self, record: dict[str, Any]) -> dict[str, str]:
        headers = {f"ce-{k}": _header_safe(v) for k, v in self.attributes(record).items()}
        return {"Content-Type": "application/json", **headers}

    def event(self, record: dict[str, Any]) -> dict[str, Any]:
        return {**self.attributes(record), "datacontenttype": "application/json", "data": record}

    def close(self) -> None:
        self._pool.clear()


def _header_safe(value: str) -> str:
    # A model server's version string ends up here: keep it to one line of printable ASCII.
    return "".join(c if " " <= c <= "~" else "?" for c in value)[:512]
