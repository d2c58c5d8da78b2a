"""The gRPC provider as a process (``python -m gateway grpc``): the server, the standard
``grpc.health.v1.Health`` service, the reporters, metrics and signals around them."""

from __future__ import annotations

import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gateway.factory import provider_predictor
from gateway.grpc.client import SERVICE
from gateway.grpc.provider import InferenceService
from gateway.inference import Predictor
from gateway.signals import stop_on_signals
from modelsync.config import Config
from modelsync.gatewayconfig import GrpcConfig

log = logging.getLogger(__name__)
GRACE_SECONDS = 10.0
# The names grpc.health.v1 answers for: the whole server, and the inference service by name.
HEALTH_SERVICES = ("", SERVICE)


def watch_health(
    predictor: Predictor, servicer: health.HealthServicer, every: float, stop: threading.Event
) -> None:
    """SERVING while the model server says it is ready, NOT_SERVING while it does not (or is gone),
    for the whole server ("") and for the inference service by name."""
    previous: bool | None = None
    while not stop.is_set():
        ready = predictor.service.ready()
        if ready != previous:
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if ready
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            for name in HEALTH_SERVICES:
                servicer.set(name, status)
            log.info(
                "grpc provider: model server %s", "ready: SERVING" if ready else "not ready: NOT_SERVING"
            )
            previous = ready
        stop.wait(every)


def build_server(config: GrpcConfig, predictor: Predictor) -> tuple[grpc.Server, health.HealthServicer]:
    server = grpc.server(
        ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="grpc"),
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", -1),
        ],
    )
    server.add_generic_rpc_handlers((InferenceService(predictor).handler(),))
    servicer = health.HealthServicer(experimental_non_blocking=True)
    for name in HEALTH_SERVICES:
        servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)  # until the model server says ready
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(config.bind)
    return server, servicer


def serve(settings: Config) -> int:
    """Run until SIGTERM or SIGINT; 2 for a configuration the provider cannot start with."""
    config = settings.gateway.grpc
    predictor = provider_predictor(settings, "grpc", config.enabled)
    if predictor is None:
        return 2
    try:
        server, servicer = build_server(config, predictor)
    except RuntimeError as exc:  # grpcio: the address could not be bound
        print(f"configuration error: {settings.source}: gateway.grpc.bind: {exc}", file=sys.stderr)
        return 2
    if config.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(config.metrics_port)
    stop = stop_on_signals("grpc", "finishing the calls in progress")
    predictor.reporting.start()
    server.start()
    watcher = threading.Thread(
        target=watch_health, args=(predictor, servicer, config.health_poll_seconds, stop), daemon=True
    )
    watcher.start()
    log.info(
        "grpc provider listening on %s, model service %s",
        config.bind,
        settings.gateway.model_service.protocol,
    )
    stop.wait()
    servicer.enter_graceful_shutdown()
    server.stop(GRACE_SECONDS).wait()
    predictor.reporting.close()
    predictor.service.close()
    log.info("grpc provider stopped")
    return 0
