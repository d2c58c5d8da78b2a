"""The deployment files: Dockerfiles, compose.yaml, build.sh, Kubernetes manifests, Helm values.

No container engine or cluster runs in the test environment, so each file is checked by the
tool its ecosystem uses offline (hadolint, ``docker compose config``, shellcheck, the
Kubernetes OpenAPI schemas) and then against the project itself: every command must name a
real entry point, and every example config must load with ``modelsync.config.load_config``.
A missing tool fails the test rather than skipping it: a skipped check proves nothing.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import socket
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from modelsync import s3
from modelsync.config import Config, load_config
from modelsync.gatewayconfig import DEFAULT_SPILL_DIR
from tests.support import ROOT
from tests.support.deploy import (
    AGENT_COMMAND,
    AGENT_HEALTH,
    CHART,
    COMPOSE,
    DOCKERFILES,
    EXAMPLE_CONFIG,
    GATEWAY_COMMAND,
    GATEWAY_GRPC_COMMAND,
    GATEWAY_GRPC_PORT,
    GATEWAY_KAFKA_COMMAND,
    HTTP_BINDS,
    K8S_FLEET,
    K8S_MIN_VERSION,
    SECRETS,
    SYNC_UID,
    WEBHOOK_COMMAND,
    base_manifests,
    env_of,
    render_overlay,
    run,
    service_mounts,
    tool,
)

# -- Dockerfiles ------------------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", path.read_text())
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"not exec form: {arguments}"
    return value


def test_hadolint_passes_the_dockerfiles() -> None:
    result = run(
        [
            tool("hadolint"),
            "--failure-threshold",
            "warning",
            "--format",
            "tty",
            *map(str, DOCKERFILES.values()),
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("component", sorted(DOCKERFILES))
def test_dockerfile_is_multistage_pinned_and_non_root(component: str) -> None:
    steps = instructions(DOCKERFILES[component])
    froms = [args for keyword, args in steps if keyword == "FROM"]
    assert len(froms) == 2 and froms[0].endswith("AS builder"), froms
    base = next(args for keyword, args in steps if keyword == "ARG" and args.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim(-\w+)?", base), base
    runs = " ".join(args for keyword, args in steps if keyword == "RUN")
    # The agent's lock adds the preflight extra (openvino) to the same runtime dependencies.
    lock = "requirements-agent.lock" if component == "agent" else "requirements.lock"
    assert "--require-hashes" in runs and f"-r {lock}" in runs
    assert "--no-index" in runs, "the runtime stage must install only the builder's wheels"
    assert f"--uid {SYNC_UID}" in runs and "syncuser" in runs
    users = [args for keyword, args in steps if keyword == "USER"]
    # Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert users == [f"{SYNC_UID}:{SYNC_UID}"]
    envs = " ".join(args for keyword, args in steps if keyword == "ENV")
    assert "CONFIG_PATH=/config/sync-config.yaml" in envs


def healthcheck_command(component: str) -> list[str]:
    check = next(args for keyword, args in instructions(DOCKERFILES[component]) if keyword == "HEALTHCHECK")
    return exec_form(check[check.index("CMD ") + 4 :])


def test_dockerfile_commands_are_the_real_entry_points() -> None:
    cmds = {c: exec_form(next(a for k, a in instructions(p) if k == "CMD")) for c, p in DOCKERFILES.items()}
    assert cmds == {"webhook": WEBHOOK_COMMAND, "agent": AGENT_COMMAND, "gateway": GATEWAY_COMMAND}
    assert healthcheck_command("agent") == AGENT_HEALTH
    for component, (variable, port) in HTTP_BINDS.items():
        check = healthcheck_command(component)
        assert check[:2] == ["python", "-c"] and "/healthz" in check[2]
        assert variable in check[2] and "curl" not in " ".join(check)
        steps = instructions(DOCKERFILES[component])
        extra = f" {GATEWAY_GRPC_PORT}" if component == "gateway" else ""
        assert [args for keyword, args in steps if keyword == "EXPOSE"] == [f"{port}{extra}"]
        envs = " ".join(args for keyword, args in steps if keyword == "ENV")
        assert f"{variable}=0.0.0.0:{port}" in envs, component


def package_dirs() -> set[str]:
    """The source directories setuptools needs for ``pip wheel .``: each listed package's."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = setuptools.get("package-dir", {})
    return {mapped.get(p, p.replace(".", "/")).split("/")[0] for p in setuptools["packages"]}


@pytest.mark.parametrize("component", sorted(DOCKERFILES))
def test_dockerfile_copies_every_package_setuptools_builds(component: str) -> None:
    # setuptools stops with "package directory 'x' does not exist" for any listed package
    # missing from the build stage, so each image needs all of them, not only its own.
    copies = [args.split() for keyword, args in instructions(DOCKERFILES[component]) if keyword == "COPY"]
    copied = {PurePosixPath(args[0]).parts[0] for args in copies if len(args) == 2}
    assert package_dirs() <= copied, f"not copied: {sorted(package_dirs() - copied)}"


def test_entry_points_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert (ROOT / "webhook" / "gunicorn_conf.py").is_file()
    assert (ROOT / "agent" / "__main__.py").is_file()
    assert (ROOT / "gateway" / "gunicorn_conf.py").is_file()
    assert (ROOT / "gateway" / "__main__.py").is_file()
    assert callable(importlib.import_module("webhook.app").create_app)
    assert callable(importlib.import_module("gateway.app").create_app)
    kafka = importlib.import_module("gateway.cli")._parser().parse_args(GATEWAY_KAFKA_COMMAND[3:])
    assert kafka.command == "kafka"
    assert (
        importlib.import_module("gateway.cli")._parser().parse_args(GATEWAY_GRPC_COMMAND[3:]).command
        == "grpc"
    )
    # The gunicorn settings set PROMETHEUS_MULTIPROC_DIR when imported; keep that out of
    # this process, whose other tests read metrics in single-process mode.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # undone after the test
    for component, (variable, port) in HTTP_BINDS.items():
        monkeypatch.delenv(variable, raising=False)
        conf = importlib.import_module(f"{component}.gunicorn_conf")
        assert conf.bind.endswith(f":{port}"), f"the {component} image EXPOSEs and probes {port}"


class Healthz(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def healthz_port() -> Iterator[int]:
    """A stand-in server that answers /healthz, on a free port of 127.0.0.1."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("component", sorted(HTTP_BINDS))
def test_http_healthcheck_asks_the_bound_port(component: str, healthz_port: int) -> None:
    """The HEALTHCHECK script, run as Docker runs it: healthy exactly when /healthz answers
    on the port of the bind variable."""
    variable, _ = HTTP_BINDS[component]
    check = healthcheck_command(component)
    env = {"PATH": os.environ.get("PATH", "")}
    up = run([sys.executable, *check[1:]], env={**env, variable: f"0.0.0.0:{healthz_port}"})
    assert up.returncode == 0, up.stderr
    down = run([sys.executable, *check[1:]], env={**env, variable: f"0.0.0.0:{free_port()}"})
    assert down.returncode != 0


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "*", "allow-list: nothing enters the context unless named"
    for needed in (
        "pyproject.toml",
        "README.md",
        "requirements.lock",
        "requirements-agent.lock",
        "modelsync/",
        "schemas/",
        "webhook/",
        "agent/",
        "gateway/",
    ):
        assert f"!{needed}" in lines


@pytest.mark.parametrize(
    ("lock", "extras"), [("requirements.lock", []), ("requirements-agent.lock", ["preflight"])]
)
def test_lock_is_generated_and_covers_the_runtime_dependencies(lock: str, extras: list[str]) -> None:
    text = (ROOT / lock).read_text()
    assert "uv pip compile pyproject.toml" in text.splitlines()[1], "the generating command heads the lock"
    pinned = {
        m.group(1).lower().replace("_", "-") for m in re.finditer(r"^([A-Za-z0-9._-]+)==\S+", text, re.M)
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    needed = project["dependencies"] + [
        d for extra in extras for d in project["optional-dependencies"][extra]
    ]
    wanted = {re.match(r"[A-Za-z0-9._-]+", d).group(0).lower().replace("_", "-") for d in needed}
    assert wanted <= pinned, f"not in {lock}: {wanted - pinned}"
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    assert all("--hash=sha256:" in block for block in blocks if block.strip())


# -- compose.yaml ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    # A bare environment: the file's defaults, not the developer's shell, are under test.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    result = run(
        [tool("docker-compose"), "-f", str(COMPOSE), "config", "--format", "json"], env=env, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def example_config(compose: dict[str, Any]) -> Config:
    # The secrets as compose hands them to the agent and the webhook.
    services = compose["services"]
    env = {**env_of(services["agent"]), **env_of(services["webhook"])}
    return load_config(EXAMPLE_CONFIG, env=env)


GATEWAY_SERVICES = ("gateway", "gateway-kafka", "gateway-grpc")  # one image, three providers


def test_compose_has_the_stack(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "minio",
        "minio-init",
        "webhook",
        "agent",
        "ovms",
        *GATEWAY_SERVICES,
        "kafka",
        "kafka-init",
    }


def test_compose_commands_are_the_real_entry_points(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["webhook"]["command"] == WEBHOOK_COMMAND
    assert services["agent"]["command"] == AGENT_COMMAND
    assert services["agent"]["healthcheck"]["test"] == ["CMD", *AGENT_HEALTH]
    assert services["gateway"]["command"] == GATEWAY_COMMAND
    assert services["gateway-kafka"]["command"] == GATEWAY_KAFKA_COMMAND
    assert services["gateway-grpc"]["command"] == GATEWAY_GRPC_COMMAND
    built = {
        "webhook": "webhook",
        "agent": "agent",
        "gateway": "gateway",
        "gateway-kafka": "gateway",
        "gateway-grpc": "gateway",
    }
    for name, component in built.items():
        assert services[name]["build"]["dockerfile"] == DOCKERFILES[component].name
        assert services[name]["image"].endswith(f"/modelsync-{component}:dev"), services[name]["image"]
        assert services[name].get("entrypoint") is None, "the image runs the command as given"


def test_compose_example_config_loads(compose: dict[str, Any], example_config: Config) -> None:
    services = compose["services"]
    config_path = env_of(services["agent"])["CONFIG_PATH"]
    for name in ("agent", "webhook", *GATEWAY_SERVICES):
        assert env_of(services[name])["CONFIG_PATH"] == config_path
        mount = service_mounts(services[name])[str(Path(config_path).parent)]
        assert Path(mount["source"]) == EXAMPLE_CONFIG.parent and mount["read_only"]
    assert example_config.minio.endpoint == "minio:9000" and not example_config.minio.secure
    assert example_config.minio.access_key.reveal() == env_of(services["minio"])["MINIO_ROOT_USER"]
    assert example_config.ovms.rest_url == "http://ovms:8000"


def test_compose_models_volume_is_a_shared_directory(compose: dict[str, Any], example_config: Config) -> None:
    models = str(example_config.sync.models_path)
    services = compose["services"]
    for name in ("webhook", "agent", "ovms"):
        mount = service_mounts(services[name])[models]
        assert mount["type"] == "volume" and mount["source"] == "models", (name, mount)
        for target in service_mounts(services[name]):
            assert not target.endswith(".json"), f"{name}: single-file mount {target} hides atomic renames"
    assert service_mounts(services["ovms"])[models]["read_only"]
    assert "models" in compose["volumes"]
    assert example_config.ovms.config_path.parent == example_config.sync.models_path


def test_compose_ovms_reads_the_agents_config_json(compose: dict[str, Any], example_config: Config) -> None:
    ovms = compose["services"]["ovms"]
    assert ovms["image"].startswith("openvino/model_server:")
    args = ovms["command"]
    flags = dict(zip(args[::2], args[1::2], strict=True))
    assert flags == {
        "--config_path": str(example_config.ovms.config_path),
        "--file_system_poll_wait_seconds": "1",
        "--rest_port": "8000",
        "--port": "9000",
    }
    assert ovms["depends_on"]["agent"]["condition"] == "service_healthy"


def test_compose_minio_notifies_the_webhook(compose: dict[str, Any]) -> None:
    services = compose["services"]
    minio, webhook = env_of(services["minio"]), env_of(services["webhook"])
    port = webhook["MODELSYNC_WEBHOOK_BIND"].rsplit(":", 1)[1]
    assert minio["MINIO_NOTIFY_WEBHOOK_ENABLE_MODELSYNC"] == "on"
    assert minio["MINIO_NOTIFY_WEBHOOK_ENDPOINT_MODELSYNC"] == f"http://webhook:{port}/minio/events"
    assert minio["MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_MODELSYNC"] == webhook["MODELSYNC_WEBHOOK_TOKEN"]
    assert minio["MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_MODELSYNC"].startswith("/data/")
    assert int(minio["MINIO_NOTIFY_WEBHOOK_QUEUE_LIMIT_MODELSYNC"]) > 0
    assert services["minio"]["depends_on"]["webhook"]["condition"] == "service_healthy"
    check = " ".join(services["webhook"]["healthcheck"]["test"])
    # /readyz waits for the agent, which waits for MinIO: it would deadlock the start order.
    assert f"127.0.0.1:{port}/healthz" in check and "/readyz" not in check


def test_compose_init_subscribes_the_bucket(compose: dict[str, Any], example_config: Config) -> None:
    services = compose["services"]
    init = services["minio-init"]
    script = " ".join(init["command"])
    bucket = example_config.minio.bucket
    assert f"mc mb --ignore-existing local/{bucket}" in script
    assert f"mc event add local/{bucket} arn:minio:sqs::MODELSYNC:webhook --event put,delete" in script
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    assert services["agent"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"


def test_compose_gateway_serves_rest_on_its_bind_port(compose: dict[str, Any]) -> None:
    gateway = compose["services"]["gateway"]
    variable, port = HTTP_BINDS["gateway"]
    assert env_of(gateway)[variable] == f"0.0.0.0:{port}"
    assert [(p["host_ip"], p["target"]) for p in gateway["ports"]] == [("127.0.0.1", port)]
    check = " ".join(gateway["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/healthz" in check
    # The image's check asks /healthz, which the Kafka provider does not serve.
    assert compose["services"]["gateway-kafka"]["healthcheck"] == {"disable": True}
    assert "ports" not in compose["services"]["gateway-kafka"]


def test_compose_gateway_grpc_serves_its_bind_port_with_a_grpc_health_check(
    compose: dict[str, Any], example_config: Config
) -> None:
    service = compose["services"]["gateway-grpc"]
    assert example_config.gateway.grpc.enabled
    assert example_config.gateway.grpc.bind == f"0.0.0.0:{GATEWAY_GRPC_PORT}"
    assert [(p["host_ip"], p["target"]) for p in service["ports"]] == [("127.0.0.1", GATEWAY_GRPC_PORT)]
    check = " ".join(service["healthcheck"]["test"])
    assert "grpc_health.v1" in check and f"127.0.0.1:{GATEWAY_GRPC_PORT}" in check and "SERVING" in check


def test_compose_host_ports_are_distinct(compose: dict[str, Any]) -> None:
    published = [
        (p.get("host_ip", ""), str(p["published"]))
        for service in compose["services"].values()
        for p in service.get("ports", [])
    ]
    assert len(published) == len(set(published)), f"a host port is published twice: {published}"


def test_compose_gateway_calls_ovms(compose: dict[str, Any], example_config: Config) -> None:
    services = compose["services"]
    args = services["ovms"]["command"]
    rest_port = args[args.index("--rest_port") + 1]
    assert example_config.gateway.model_service.url == f"http://ovms:{rest_port}"
    assert example_config.gateway.rest.enabled
    for name in GATEWAY_SERVICES:
        assert "ovms" in services[name]["depends_on"], name


def test_compose_gateway_kafka_reaches_the_broker(compose: dict[str, Any], example_config: Config) -> None:
    services = compose["services"]
    kafka, config = services["kafka"], example_config.gateway.kafka
    broker = env_of(kafka)
    assert kafka["image"].startswith("apache/kafka:")
    # KRaft, one node: broker and controller in one process, no ZooKeeper.
    assert set(broker["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "KAFKA_ZOOKEEPER_CONNECT" not in broker and broker["CLUSTER_ID"]
    assert config.enabled
    # What the clients bootstrap from is what the broker advertises in the compose network.
    advertised = {entry.split("://", 1)[1] for entry in broker["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    assert set(config.bootstrap_servers.split(",")) <= advertised
    assert config.bootstrap_servers == "kafka:9092"
    assert "9092" in broker["KAFKA_LISTENERS"]
    assert kafka["healthcheck"]["test"][0] == "CMD" and "localhost:9092" in kafka["healthcheck"]["test"]
    assert {"target": "/var/lib/kafka/data", "source": "kafka-data"}.items() <= service_mounts(kafka)[
        "/var/lib/kafka/data"
    ].items()
    # The provider subscribes only once its topics exist, and the broker is healthy before that.
    init = services["kafka-init"]
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    depends = services["gateway-kafka"]["depends_on"]
    assert depends["kafka-init"]["condition"] == "service_completed_successfully"
    script = " ".join(init["command"])
    assert f"--bootstrap-server {config.bootstrap_servers} --create --if-not-exists" in script
    topics = re.search(r"for topic in ([^;]+);", script)
    assert topics is not None
    assert set(topics.group(1).split()) == {
        config.request_topic,
        config.reply_topic,
        config.dead_letter_topic,
    }


def test_compose_gateway_spill_and_sinks_are_volumes(compose: dict[str, Any], example_config: Config) -> None:
    services = compose["services"]
    reporting = example_config.gateway.reporting
    sinks = {sink.type: sink for sink in reporting.sinks}
    assert set(sinks) == {"file", "bucket"}
    # Records waiting for a sink that is down, and the file sink's files, outlive the container.
    directories = {
        str(reporting.spill_dir): "gateway-spill",
        str(Path(sinks["file"].get("path")).parent): None,
    }
    for name in GATEWAY_SERVICES:
        mounts = service_mounts(services[name])
        for directory, volume in directories.items():
            mount = mounts[directory]
            assert mount["type"] == "volume" and not mount.get("read_only"), (name, mount)
            assert volume is None or mount["source"] == volume
            assert mount["source"] in compose["volumes"]
        assert services[name]["read_only"] and "/tmp" in services[name]["tmpfs"]
    # The image creates both directories owned by syncuser, so fresh volumes start writable,
    # and declares the default spill directory a volume.
    steps = instructions(DOCKERFILES["gateway"])
    runs = " ".join(args for keyword, args in steps if keyword == "RUN")
    owned = re.search(r"chown -R 10001:10001 (\S+)", runs)
    assert owned is not None
    for directory in directories:
        assert directory in runs and Path(directory).is_relative_to(owned.group(1)), directory
    assert [exec_form(args) for keyword, args in steps if keyword == "VOLUME"] == [[str(DEFAULT_SPILL_DIR)]]
    assert reporting.spill_dir == DEFAULT_SPILL_DIR


def test_compose_bucket_sink_has_its_bucket_and_credentials(
    compose: dict[str, Any], example_config: Config
) -> None:
    services = compose["services"]
    script = " ".join(services["minio-init"]["command"])
    for sink in example_config.gateway.reporting.sinks:
        if sink.type == "bucket":
            assert f"mc mb --ignore-existing local/{sink.get('bucket')}" in script
    minio = env_of(services["minio"])
    for name in GATEWAY_SERVICES:
        config = load_config(EXAMPLE_CONFIG, env=env_of(services[name]))
        s3.require_credentials(config, env={})
        assert config.minio.access_key.reveal() == minio["MINIO_ROOT_USER"]
        assert config.minio.secret_key.reveal() == minio["MINIO_ROOT_PASSWORD"]


# -- build.sh ----------------------------------------------------------------------------------


def test_build_sh_is_shellcheck_clean() -> None:
    text = (ROOT / "build.sh").read_text()
    assert "set -euo pipefail" in text
    assert os.access(ROOT / "build.sh", os.X_OK)
    result = run([tool("shellcheck"), str(ROOT / "build.sh")])
    assert result.returncode == 0, result.stdout + result.stderr


def run_build_sh(tmp_path: Path, **env: str) -> list[list[str]]:
    """build.sh against a stand-in ``docker`` that records its arguments."""
    bin_dir, log = tmp_path / "bin", tmp_path / "docker.log"
    bin_dir.mkdir()
    fake = bin_dir / "docker"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {shlex.quote(str(log))}\n')
    fake.chmod(0o755)
    environment = {"PATH": f"{bin_dir}:{os.environ['PATH']}", **env}
    result = run(["bash", str(ROOT / "build.sh")], env=environment, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return [line.split() for line in log.read_text().splitlines()]


def test_build_sh_builds_and_pushes_every_image(tmp_path: Path) -> None:
    calls = run_build_sh(tmp_path, REGISTRY="reg.example", IMAGE_NAME="ms", TAG="1.2.3", PUSH="true")
    assert calls == [
        ["build", "--file", "Dockerfile.webhook", "--tag", "reg.example/ms-webhook:1.2.3", "."],
        ["build", "--file", "Dockerfile.agent", "--tag", "reg.example/ms-agent:1.2.3", "."],
        ["build", "--file", "Dockerfile.gateway", "--tag", "reg.example/ms-gateway:1.2.3", "."],
        ["push", "reg.example/ms-webhook:1.2.3"],
        ["push", "reg.example/ms-agent:1.2.3"],
        ["push", "reg.example/ms-gateway:1.2.3"],
    ]
    assert {call[2].removeprefix("Dockerfile.") for call in calls if call[0] == "build"} == set(DOCKERFILES)


def test_build_sh_pushes_only_when_asked(tmp_path: Path) -> None:
    calls = run_build_sh(tmp_path)
    assert [call[0] for call in calls] == ["build", "build", "build"]


# -- Kubernetes --------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["webhook", "fleet"])
def manifests(request: pytest.FixtureRequest) -> dict[tuple[str, str], dict[str, Any]]:
    """Every Kubernetes check runs on both: the base (webhook mode) and the fleet overlay."""
    return base_manifests() if request.param == "webhook" else render_overlay(K8S_FLEET)


def test_k8s_manifests_match_the_api_schemas(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    for key, doc in manifests.items():
        try:
            kubernetes_validate.validate(doc, K8S_MIN_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{key}: {exc}")


def pod_spec(manifests: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    return manifests[("Deployment", "modelsync")]["spec"]["template"]["spec"]


def containers(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in spec.get("initContainers", []) + spec["containers"]}


def test_k8s_pod_runs_ovms_with_agent_and_webhook_sidecars(
    manifests: dict[tuple[str, str], dict[str, Any]],
) -> None:
    spec = pod_spec(manifests)
    sidecars = {c["name"]: c for c in spec["initContainers"]}
    assert list(sidecars) == ["agent", "webhook"], "the agent starts first: OVMS waits for config.json"
    assert all(c["restartPolicy"] == "Always" for c in sidecars.values())
    assert [c["name"] for c in spec["containers"]] == ["ovms"]
    assert sidecars["agent"]["command"] == AGENT_COMMAND
    assert sidecars["webhook"]["command"] == WEBHOOK_COMMAND
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["models"] == {"name": "models", "emptyDir": {}}
    for name, container in containers(spec).items():
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["models"]["mountPath"] == "/models" and "subPath" not in mounts["models"], name
    ovms_args = containers(spec)["ovms"]["args"]
    assert ovms_args[ovms_args.index("--config_path") + 1] == "/models/config.json"


def test_k8s_probes_are_wired_to_the_health_checks(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    c = containers(pod_spec(manifests))
    for probe in ("startupProbe", "livenessProbe"):
        assert c["agent"][probe]["exec"]["command"] == AGENT_HEALTH
    assert c["webhook"]["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "webhook"}
    assert c["webhook"]["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "webhook"}
    # Sidecar readiness is Pod readiness: a MinIO outage must not take OVMS out of its Service.
    assert "readinessProbe" not in c["agent"] and "readinessProbe" not in c["webhook"]
    assert c["ovms"]["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    port = {p["name"]: p["containerPort"] for p in c["webhook"]["ports"]}["webhook"]
    assert {"name": "MODELSYNC_WEBHOOK_BIND", "value": f"0.0.0.0:{port}"} in c["webhook"]["env"]


def test_k8s_security_context(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    spec = pod_spec(manifests)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["fsGroup"] == SYNC_UID
    assert spec["enableServiceLinks"] is False
    c = containers(spec)
    for name in ("agent", "webhook"):
        context = c[name]["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == SYNC_UID, name
        assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
        tmp = {m["name"]: m["mountPath"] for m in c[name]["volumeMounts"]}["tmp"]
        assert tmp == "/tmp", f"{name}: gunicorn and prometheus need a writable /tmp"
    assert "emptyDir" in {v["name"]: v for v in spec["volumes"]}["tmp"]
    assert c["ovms"]["volumeMounts"][0]["readOnly"] is True


def test_k8s_config_and_secret_files_load(
    manifests: dict[tuple[str, str], dict[str, Any]], tmp_path: Path
) -> None:
    spec = pod_spec(manifests)
    volumes = {v["name"]: v for v in spec["volumes"]}
    secret = manifests[("Secret", "modelsync-credentials")]["stringData"]
    config_map = manifests[("ConfigMap", volumes["config"]["configMap"]["name"])]
    config_file = tmp_path / "sync-config.yaml"
    config_file.write_text(config_map["data"]["sync-config.yaml"])
    for name, container in containers(spec).items():
        if name == "ovms":
            continue
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["CONFIG_PATH"] == f"{mounts['config']}/sync-config.yaml"
        # Follow each *_FILE into the Secret volume it points at, and stage that key locally.
        local_env = {}
        for var, path in env.items():
            if var.endswith("_FILE"):
                volume_name = next(v for v, m in mounts.items() if path.startswith(m + "/"))
                key = next(
                    i["key"] for i in volumes[volume_name]["secret"]["items"] if path.endswith(i["path"])
                )
                staged = tmp_path / f"{name}-{key}"
                staged.write_text(secret[key])
                local_env[var] = str(staged)
        config = load_config(config_file, env=local_env)
        assert str(config.sync.models_path) == mounts["models"] == "/models"
        if name == "agent":
            s3.require_credentials(config, env={})
        else:
            assert config.webhook.auth_token
        assert config.ovms.rest_url == "http://127.0.0.1:8000", "OVMS is in the same Pod"


def test_k8s_webhook_service_reaches_the_webhook(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    service = manifests[("Service", "modelsync-webhook")]["spec"]
    labels = manifests[("Deployment", "modelsync")]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    assert service["ports"][0]["targetPort"] == "webhook"
    assert service["publishNotReadyAddresses"] is True


# -- Helm chart values (tests/deploy/test_deploy_gateway.py renders the chart with Helm itself) ---------


def test_helm_chart_values_match_the_manifests(tmp_path: Path) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "modelsync"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    config_file = tmp_path / "sync-config.yaml"
    config_file.write_text(yaml.safe_dump(values["config"]))
    config = load_config(config_file, env=SECRETS)
    assert str(config.sync.models_path) == "/models"
    assert config.ovms.config_path == Path("/models/config.json")
    assert values["securityContext"]["runAsUser"] == SYNC_UID
    assert values["securityContext"]["readOnlyRootFilesystem"] is True
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    template = (CHART / "templates" / "deployment.yaml").read_text()
    for needle in (json.dumps(WEBHOOK_COMMAND), json.dumps(AGENT_COMMAND), json.dumps(AGENT_HEALTH)):
        assert needle in template
    for path in ("/readyz", "/healthz", "restartPolicy: Always", "emptyDir"):
        assert path in template


# -- the development environment ----------------------------------------------------------------


def test_make_installs_the_test_and_bench_extras_at_locked_versions() -> None:
    """requirements-dev.lock pins every package of the test and bench extras (by the command
    that heads it), and every pip install in the Makefile is constrained by it."""
    text = (ROOT / "requirements-dev.lock").read_text()
    assert "uv pip compile pyproject.toml --extra test --extra bench" in text.splitlines()[1]
    pinned = {
        m.group(1).lower().replace("_", "-") for m in re.finditer(r"^([A-Za-z0-9._-]+)==\S+", text, re.M)
    }
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    wanted = {
        re.match(r"[A-Za-z0-9._-]+", d).group(0).lower().replace("_", "-")
        for d in [*extras["test"], *extras["bench"]]
    }
    assert wanted <= pinned, f"not in requirements-dev.lock: {wanted - pinned}"
    assert not re.search(r"^[A-Za-z0-9._-]+(>=|<|~=|\s*$)", text, re.M), "every line is an exact pin"
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if "pip install" in line and "-e " in line]
    assert installs and all("-c $(DEV_LOCK)" in line for line in installs)
    assert "DEV_LOCK := requirements-dev.lock" in makefile
