"""One Kafka inference request: its headers read and checked, the model called, the reply
and (when it failed for good) the dead letter built. Nothing here talks to the broker."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from confluent_kafka import Message

from gateway.inference import JSON, ClientAnswer, Predictor, error_body
from modelsync.gatewayconfig import KafkaConfig
from modelsync.names import is_request_id, model_problem

log = logging.getLogger(__name__)

Headers = list[tuple[str, str | bytes | None]]


@dataclass
class Outgoing:
    topic: str
    value: bytes
    headers: Headers
    key: bytes | None = None


@dataclass
class Handled:
    reply: Outgoing | None  # None: the model server could not be reached; answer it later
    dead_letter: Outgoing | None = None

    def mark_possible_duplicate(self) -> None:
        if self.reply is not None and ("possible-duplicate", "true") not in self.reply.headers:
            self.reply.headers.append(("possible-duplicate", "true"))


def where(message: Message) -> tuple[str, int, int]:
    """Topic, partition and offset of a consumed message (never None once consumed)."""
    return str(message.topic()), int(message.partition() or 0), int(message.offset() or 0)


def raw_headers(message: Message) -> list[tuple[str, bytes]]:
    raw = message.headers() or []
    items = raw.items() if isinstance(raw, dict) else raw
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in items if v is not None]


def _origin(prefix: str, message: Message) -> Headers:
    topic, partition, offset = where(message)
    return [
        (f"{prefix}-topic", topic),
        (f"{prefix}-partition", str(partition)),
        (f"{prefix}-offset", str(offset)),
    ]


@dataclass(frozen=True)
class Request:
    message: Message
    correlation: str
    model: str
    version: str | None
    reply_to: str
    possible_duplicate: bool

    @classmethod
    def read(cls, message: Message, config: KafkaConfig, possible_duplicate: bool) -> Request:
        headers = {k.lower(): v.decode("utf-8", "replace") for k, v in raw_headers(message)}
        given = headers.get("correlation-id", "")
        # It travels on to the model server as X-Request-Id: one token of printable ASCII only.
        correlation = given if is_request_id(given) else "{}-{}-{}".format(*where(message))
        # Only topics the operator listed: a client must not make the gateway write anywhere.
        asked = headers.get("reply-to", "")
        reply_to = asked if asked in config.reply_to_topics else config.reply_topic
        return cls(
            message=message,
            correlation=correlation,
            model=headers.get("model") or config.default_model or "",
            version=headers.get("model-version") or None,
            reply_to=reply_to,
            possible_duplicate=possible_duplicate,
        )


class RequestHandler:
    def __init__(self, config: KafkaConfig, predictor: Predictor) -> None:
        self.config = config
        self.predictor = predictor

    def handle(self, message: Message, possible_duplicate: bool = False) -> Handled:
        """Never raises: whatever goes wrong with one request is that request's dead letter."""
        try:
            request = Request.read(message, self.config, possible_duplicate)
        except Exception as exc:
            log.exception("kafka provider: cannot read %s[%d]@%d", *where(message))
            request = Request(
                message, "{}-{}-{}".format(*where(message)), "", None, self.config.reply_topic, False
            )
            return self.dead(request, f"unreadable request: {type(exc).__name__}")
        try:
            return self._handle(request)
        except Exception as exc:
            log.exception("kafka provider: request %s failed unexpectedly", request.correlation)
            return self.dead(request, f"internal error: {type(exc).__name__}", status=500)

    def _handle(self, request: Request) -> Handled:
        problem = self._problem(request)
        if problem is not None:
            return self.dead(request, problem)
        answer = self._infer(request)
        if answer.ok:
            return Handled(self.reply(request, answer))
        if answer.unreachable:
            return Handled(None)
        reason = _error_text(answer)
        if answer.retry_safe:
            reason = f"model not available after {self.config.max_attempts} attempts: {reason}"
        return self.dead(request, reason, status=answer.status)

    def _problem(self, request: Request) -> str | None:
        if not request.model:
            return "no model: set the 'model' header (or gateway.kafka.default_model)"
        problem = model_problem(request.model, request.version)
        if problem is not None:
            return problem
        try:
            document = json.loads(request.message.value() or b"")
        except (ValueError, RecursionError) as exc:
            return f"request is not JSON: {str(exc)[:200]}"
        if not isinstance(document, dict):
            return "request is not a JSON object (expected a KServe v2 inference request)"
        return None

    def _infer(self, request: Request) -> ClientAnswer:
        """Asked again only while that is safe (no connection, or a 503 'not ready')."""
        delay = 0.2
        attempt = 1
        while True:
            answer = self.predictor.infer(
                request.model,
                request.version,
                request.message.value() or b"",
                provider="kafka",
                request_id=request.correlation,
                possible_duplicate=request.possible_duplicate,
                record_unreachable=False,  # not a prediction; the request is asked again later
            )
            # Unreachable: the batch waits and is read again, no point in asking again here.
            if answer.unreachable or not answer.retry_safe or attempt >= self.config.max_attempts:
                return answer
            log.warning(
                "kafka provider: model %s:%s unavailable (attempt %d of %d); retrying in %.1fs",
                request.model,
                request.version or "default",
                attempt,
                self.config.max_attempts,
                delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            attempt += 1

    def _headers(self, request: Request) -> Headers:
        headers: Headers = [
            ("correlation-id", request.correlation),
            ("model", request.model),
            *_origin("request", request.message),
        ]
        if request.version:
            headers.append(("model-version", request.version))
        if request.possible_duplicate:
            headers.append(("possible-duplicate", "true"))
        return headers

    def reply(self, request: Request, answer: ClientAnswer) -> Outgoing:
        headers = self._headers(request)
        headers += [("status", str(answer.status)), ("content-type", answer.content_type)]
        return Outgoing(request.reply_to, answer.body, headers, key=request.correlation.encode())

    def dead(self, request: Request, reason: str, status: int = 400, with_body: bool = True) -> Handled:
        message = request.message
        log.warning(
            "kafka provider: dead-lettering %s[%d]@%d (correlation %s): %s",
            *where(message),
            request.correlation,
            reason,
        )
        reply = self.reply(request, ClientAnswer(status, error_body(reason), JSON))
        dead = Outgoing(
            self.config.dead_letter_topic,
            (message.value() or b"") if with_body else b"",
            [*raw_headers(message), ("dead-letter-reason", reason), *_origin("original", message)],
            key=message.key(),
        )
        return Handled(reply, dead)


def _error_text(answer: ClientAnswer) -> str:
    try:
        document = json.loads(answer.body)
    except (ValueError, RecursionError):
        return f"model server answered {answer.status}"
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        return f"{answer.status}: {document['error']}"
    return f"model server answered {answer.status}"
