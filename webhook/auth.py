"""Bearer-token check, in constant time.

MinIO sends ``Authorization: Bearer <token>``; a configured token that already has two words
(``Token abc``) it sends as-is, so that form is accepted verbatim too.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Response, current_app, request

from modelsync.config import Config
from modelsync.httpconn import HeadCheck
from modelsync.web import error_response
from webhook import metrics

F = TypeVar("F", bound=Callable[..., Any])


def expected_header(token: str) -> str:
    return token if " " in token.strip() else f"Bearer {token}"


def is_authorized(settings: Config, header: str | None) -> bool:
    token = settings.webhook.auth_token
    if token is None:
        return settings.webhook.insecure_no_auth
    expected = expected_header(token.reveal()).encode()
    return hmac.compare_digest(expected, (header or "").strip().encode("utf-8", "replace"))


def refuses_head(settings: Config) -> HeadCheck:
    """The token check on a request's head, before its body is invited (modelsync/web.py
    refuse_from_head): every route that reads a body is a :func:`require_token` one."""
    return lambda head: not is_authorized(settings, head.headers.get("authorization"))


def require_token(view: F) -> F:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        settings: Config = current_app.config["MODELSYNC"]
        if not is_authorized(settings, request.headers.get("Authorization")):
            metrics.REJECTED.labels(reason="unauthorized").inc()
            response: tuple[Response, int] = error_response(
                401, "missing or invalid bearer token in the Authorization header"
            )
            response[0].headers["WWW-Authenticate"] = "Bearer"
            return response
        return view(*args, **kwargs)

    return cast(F, wrapped)
