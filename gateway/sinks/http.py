"""HTTP sink: each prediction record as a CloudEvent in binary mode.

Binary mode (``ce-*`` headers, the record as the JSON body) is what KServe's payload logger
posts, so whatever consumes that (a broker's ingress, a logger service) consumes this.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import urllib3
from urllib3.exceptions import HTTPError
from urllib3.util import Retry, Timeout

from gateway.errors import SinkError
from modelsync.gatewayconfig import SinkConfig

EVENT_TYPE = "io.modelsync.gateway.prediction"
SOURCE = "modelsync-gateway"


class HttpSink:
    def __init__(self, config: SinkConfig) -> None:
        self.name = config.name
        self.url = str(config.get("url"))
        self.source = str(config.get("source", SOURCE))
        self.event_type = str(config.get("event_type", EVENT_TYPE))
        timeout = float(config.get("timeout_seconds", 5.0))
        self._pool = urllib3.PoolManager(
            maxsize=2, retries=Retry(total=0, redirect=0), timeout=Timeout(connect=timeout, read=timeout)
        )

    def send(self, lines: Sequence[bytes]) -> None:
        for index, line in enumerate(lines):
            try:
                record = json.loads(line)
                response = self._pool.request("POST", self.url, body=line, headers=self.headers(record))
            except (HTTPError, OSError) as exc:
                raise SinkError(
                    f"POST {self.url} failed: {type(exc).__name__}", list(lines[index:])
                ) from None
            if response.status >= 300:
                raise SinkError(f"POST {self.url} answered {response.status}", list(lines[index:]))

    def headers(self, record: dict[str, object]) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": str(record["predictionId"]),
            "ce-source": self.source,
            "ce-type": self.event_type,
            "ce-time": str(record["responseTimestamp"]),
            "ce-subject": f"{record['modelName']}/{record['modelVersion'] or ''}",
            "ce-modelname": str(record["modelName"]),
            "ce-requestid": str(record["requestId"]),
        }

    def close(self) -> None:
        self._pool.clear()
