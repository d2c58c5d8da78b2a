"""The REST provider: KServe v2 in front of the model server, so clients swap one URL.

``POST /v2/models/<m>[/versions/<v>]/infer`` goes through :class:`~gateway.inference.Predictor`
(answered, timed, recorded); the health and metadata routes are passed through as they are.
Ordinary infer posts never reach this view: ``gateway/direct.py`` serves them below Flask, with
the same :func:`gateway.restcall.infer`.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from flask import Blueprint, Response, current_app, request

from gateway import binary, restcall
from gateway.errors import ModelServiceUnavailable
from gateway.inference import JSON, ClientAnswer, Predictor, error_body, normalise_error
from gateway.modelservice import ModelService
from modelsync.httpconn import RequestHead
from modelsync.names import model_problem
from modelsync.web import request_body

bp = Blueprint("rest", __name__)


def _predictor() -> Predictor:
    predictor: Predictor = current_app.extensions["predictor"]
    return predictor


def _service() -> ModelService:
    return _predictor().service


def _respond(answer: ClientAnswer, headers: list[tuple[str, str]] | None = None) -> Response:
    response = Response(answer.body, status=answer.status, content_type=answer.content_type)
    for name, value in headers or ():
        response.headers[name] = value
    return response


def _bad_path(model: str, version: str | None) -> Response | None:
    problem = model_problem(model, version)
    return None if problem is None else _respond(ClientAnswer(400, error_body(problem), JSON))


def refuses_head(head: RequestHead) -> bool:
    """What :func:`infer` refuses before it reads the body, from the head alone (see
    ``modelsync.web.refuse_from_head``): a model or version name it does not pass on."""
    found = restcall.INFER.fullmatch(unquote(urlsplit(head.target).path))  # the path as routed
    return head.method == "POST" and found is not None and model_problem(found[1], found[2]) is not None


@bp.post("/v2/models/<model>/infer")
@bp.post("/v2/models/<model>/versions/<version>/infer")
def infer(model: str, version: str | None = None) -> Response:
    bad = _bad_path(model, version)
    if bad is not None:
        return bad
    request_id = restcall.request_id(request.headers.get("X-Request-Id"))
    body = request_body()  # 413 past the limit, chunked or not (modelsync/web.py)
    answer = restcall.infer(
        _predictor(), model, version, body, request_id, request.headers.get(binary.HEADER)
    )
    return _respond(answer, restcall.headers(answer, request_id))


def _pass_through(path: str) -> Response:
    try:
        answer = _service().get(path)
    except ModelServiceUnavailable as exc:
        return _respond(ClientAnswer(504 if exc.timed_out else 503, error_body(str(exc)), JSON))
    if 200 <= answer.status < 300:
        return _respond(ClientAnswer(answer.status, answer.body, answer.content_type))
    return _respond(ClientAnswer(answer.status, normalise_error(answer.status, answer.body), JSON))


@bp.get("/v2")
def server_metadata() -> Response:
    return _pass_through("/v2")


@bp.get("/v2/health/live")
def live() -> Response:
    return _pass_through("/v2/health/live")


@bp.get("/v2/health/ready")
def ready() -> Response:
    return _pass_through("/v2/health/ready")


@bp.get("/v2/models/<model>")
@bp.get("/v2/models/<model>/versions/<version>")
def model_metadata(model: str, version: str | None = None) -> Response:
    bad = _bad_path(model, version)
    if bad is not None:
        return bad
    return _pass_through(f"/v2/models/{model}" + (f"/versions/{version}" if version else ""))


@bp.get("/v2/models/<model>/ready")
@bp.get("/v2/models/<model>/versions/<version>/ready")
def model_ready(model: str, version: str | None = None) -> Response:
    bad = _bad_path(model, version)
    if bad is not None:
        return bad
    return _pass_through(f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/ready")


@bp.get("/healthz")
def healthz() -> Response:
    """The gateway process answers (the model server's own state is /v2/health/ready)."""
    return _respond(ClientAnswer(200, b'{"status":"ok"}', JSON))
