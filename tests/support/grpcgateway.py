"""``python -m gateway grpc`` as the tests run it: a real process on a free port, its own
configuration file and predictions file, ready once its health service says SERVING."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.gateway import gateway_settings, read_jsonl
from tests.support.helpers import free_port, wait_for
from tests.support.processes import Process, child_env
from tests.support.volume import Volume, base_settings


@dataclass
class GrpcGateway:
    proc: Process
    target: str
    volume: Volume

    def records(self) -> list[dict[str, Any]]:
        return read_jsonl(self.volume.root / "predictions" / "predictions.jsonl")

    def health(self, service: str = "") -> int:
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            except grpc.RpcError:
                return -1
            return int(answer.status)

    def stop(self) -> None:
        if self.proc.alive():
            code = self.proc.stop(timeout=40)
            assert code == 0, f"grpc gateway exited {code} on SIGTERM:\n{self.proc.log}"


def grpc_volume(root: Path, model_service: dict[str, Any], **grpc_options: Any) -> Volume:
    root.mkdir(parents=True, exist_ok=True)
    volume = Volume(root, root / "sync-config.yaml")
    volume.models.mkdir(exist_ok=True)
    # minio: required by the file, never contacted by the gateway
    volume.settings = base_settings("http://127.0.0.1:9", "unused", volume.models)
    gateway = gateway_settings(volume, "http://unused")
    gateway["model_service"] = {"timeout_seconds": 10, "connect_timeout_seconds": 1, **model_service}
    gateway["grpc"] = {"enabled": True, "bind": f"127.0.0.1:{free_port()}", "health_poll_seconds": 0.2}
    gateway["grpc"].update(grpc_options)
    volume.settings["gateway"] = gateway
    volume.write()
    return volume


def start_grpc_gateway(volume: Volume, *, serving: bool = True) -> GrpcGateway:
    target = volume.settings["gateway"]["grpc"]["bind"]
    log_path = volume.root / f"grpc-gateway-{free_port()}.log"
    proc = Process([sys.executable, "-m", "gateway", "grpc"], child_env(volume), log_path)
    gateway = GrpcGateway(proc, target, volume)
    wanted = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING

    def up() -> bool:
        assert proc.alive(), proc.log
        return gateway.health() == wanted

    wait_for(up, 30, 0.1, what="grpc gateway health")
    return gateway
