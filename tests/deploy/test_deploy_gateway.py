"""The gateway on Kubernetes: the manifests (deploy/kubernetes/gateway-*.yaml) and the Helm
chart, rendered by a real Helm engine (Helm's Go SDK, from the helm-python-sdk wheel), every
object validated against the Kubernetes API schemas, then checked against the project: real
entry points, the spill on a volume that follows the Pod, probes on real endpoints, Services,
budgets and the autoscaler pointing at the right Pods, a configuration that loads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import helm_python as helm
import kubernetes_validate
import pytest
import trustme
import yaml

from gateway.grpc.serve import HEALTH_SERVICES
from modelsync.config import Config, load_config
from tests.support.deploy import (
    CHART,
    GATEWAY_COMMAND,
    GATEWAY_GRPC_COMMAND,
    GATEWAY_GRPC_PORT,
    GATEWAY_KAFKA_COMMAND,
    HTTP_BINDS,
    K8S,
    K8S_MIN_VERSION,
    SECRETS,
    SYNC_UID,
)

Objects = dict[tuple[str, str], dict[str, Any]]
WORKLOADS = ("", "-kafka", "-grpc")  # the gateway's StatefulSets: REST, the Kafka worker, gRPC
KAFKA_SECRET_DIR = "/run/secrets/kafka/"
# Every option of the gateway on: the Kafka worker, the gRPC provider, the autoscaler, Kafka's Secret.
ALL_ON = {
    "gateway": {
        "kafkaSecret": "kafka-credentials",
        "kafkaWorker": {"enabled": True},
        "grpc": {"enabled": True},
        "autoscaling": {"enabled": True},
        "config": {
            "kafka": {
                "enabled": True,
                "bootstrap_servers": "kafka:9093",
                "security": {
                    "protocol": "sasl_ssl",
                    "sasl": {"mechanism": "SCRAM-SHA-512", "username": "gateway"},
                    "tls": {"ca_file": f"{KAFKA_SECRET_DIR}ca.crt"},
                },
            },
            "reporting": {"sinks": [{"type": "kafka", "name": "predictions", "topic": "predictions"}]},
        },
    }
}


def documents(texts: list[str]) -> Objects:
    found: Objects = {}
    for text in texts:
        for doc in yaml.safe_load_all(text):
            if doc:
                found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def render(values: dict[str, Any], release: str = "demo") -> Objects:
    with helm.Chart.load(str(CHART)) as chart:
        rendered = chart.render(values, name=release, namespace="ml")
    return documents([text for path, text in rendered.items() if not path.endswith("NOTES.txt")])


def manifests() -> Objects:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return documents([(K8S / name).read_text() for name in kustomization["resources"]])


CASES = {
    "manifests": (manifests, "modelsync"),
    "chart": (lambda: render(ALL_ON), "demo-modelsync"),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def deployed(request: pytest.FixtureRequest) -> tuple[Objects, str]:
    build, prefix = CASES[request.param]
    return build(), prefix


def validate(objects: Objects) -> None:
    for key, doc in objects.items():
        try:
            kubernetes_validate.validate(doc, K8S_MIN_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{key}: {exc}")


# -- the chart, rendered --------------------------------------------------------------------


FLEET = yaml.safe_load((CHART / "values-fleet.yaml").read_text())
VALUES = {
    "default": {},
    "all": ALL_ON,
    "off": {"gateway": {"enabled": False}},
    "fleet": {**FLEET, **ALL_ON},
}


@pytest.mark.parametrize("values", list(VALUES.values()), ids=list(VALUES))
def test_every_rendered_object_matches_the_api_schemas(values: dict[str, Any]) -> None:
    objects = render(values)
    assert ("Deployment", "demo-modelsync") in objects
    validate(objects)
    gateway = {key for key in objects if "gateway" in key[1]}
    if values.get("gateway", {}).get("enabled", True):
        assert ("StatefulSet", "demo-modelsync-gateway") in gateway
        grpc_on = values.get("gateway", {}).get("grpc", {}).get("enabled", False)
        assert (("Service", "demo-modelsync-gateway-grpc") in gateway) == grpc_on
    else:
        assert gateway == set()


def test_helm_lint_finds_no_errors() -> None:
    report = helm.lint(str(CHART))
    assert report["errors"] == [] and report["total_charts_linted"] == 1
    assert [m for m in report["messages"] if m["severity"] > 1] == [], report["messages"]


def test_the_chart_renders_the_manifests_gateway_objects() -> None:
    """The chart and deploy/kubernetes describe the same gateway (same kinds, same names
    once the release prefix is taken off)."""
    chart = {(kind, name.removeprefix("demo-")) for kind, name in render(ALL_ON) if "gateway" in name}
    plain = {key for key in manifests() if "gateway" in key[1]} - {("Secret", "modelsync-gateway-kafka")}
    assert chart == plain


def test_the_sync_objects_render_as_before() -> None:
    """The chart's config still loads (the gateway values did not leak into it)."""
    objects = render({})
    config_map = objects[("ConfigMap", "demo-modelsync-config")]["data"]["sync-config.yaml"]
    assert "gateway" not in yaml.safe_load(config_map)


# -- the gateway, in the manifests and in the rendered chart -------------------------------------


def workload(objects: Objects, name: str) -> dict[str, Any]:
    return objects[("StatefulSet", name)]


def container(set_: dict[str, Any]) -> dict[str, Any]:
    (only,) = set_["spec"]["template"]["spec"]["containers"]
    return only


def pod_labels(set_: dict[str, Any]) -> dict[str, str]:
    return set_["spec"]["template"]["metadata"]["labels"]


def test_manifests_validate() -> None:
    validate(manifests())


def test_gateway_runs_the_real_entry_points(deployed: tuple[Objects, str]) -> None:
    objects, prefix = deployed
    assert container(workload(objects, f"{prefix}-gateway"))["command"] == GATEWAY_COMMAND
    assert container(workload(objects, f"{prefix}-gateway-kafka"))["command"] == GATEWAY_KAFKA_COMMAND
    assert container(workload(objects, f"{prefix}-gateway-grpc"))["command"] == GATEWAY_GRPC_COMMAND


@pytest.fixture
def gateway_config(deployed: tuple[Objects, str], tmp_path: Path) -> Iterator[Config]:
    """The gateway's sync-config.yaml loaded as its Pods would: Kafka's password and CA
    staged where the Secret is mounted (a generated CA stands in for the placeholder)."""
    objects, prefix = deployed
    text = objects[("ConfigMap", f"{prefix}-gateway-config")]["data"]["sync-config.yaml"]
    staged = tmp_path / "kafka"
    staged.mkdir()
    trustme.CA().cert_pem.write_to_path(str(staged / "ca.crt"))
    (staged / "password").write_text("kafka-password\n")
    path = tmp_path / "sync-config.yaml"
    path.write_text(text.replace(KAFKA_SECRET_DIR, f"{staged}/"))
    env = {**SECRETS, "MODELSYNC_GATEWAY_KAFKA_PASSWORD_FILE": str(staged / "password")}
    env_names = {e["name"] for e in container(workload(objects, f"{prefix}-gateway"))["env"]}
    assert "MODELSYNC_GATEWAY_KAFKA_PASSWORD_FILE" in env_names
    yield load_config(path, env=env)


def test_spill_is_on_a_claim_that_follows_the_pod(
    deployed: tuple[Objects, str], gateway_config: Config
) -> None:
    objects, prefix = deployed
    for name in (f"{prefix}-gateway{suffix}" for suffix in WORKLOADS):
        spec = workload(objects, name)["spec"]
        claims = {c["metadata"]["name"]: c for c in spec["volumeClaimTemplates"]}
        assert claims["spill"]["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert spec["persistentVolumeClaimRetentionPolicy"] == {
            "whenDeleted": "Retain",
            "whenScaled": "Retain",
        }
        mounts = {m["name"]: m["mountPath"] for m in container(workload(objects, name))["volumeMounts"]}
        assert Path(mounts["spill"]) == gateway_config.gateway.reporting.spill_dir, name
        assert spec["template"]["spec"]["securityContext"]["fsGroup"] == SYNC_UID, "the claim is writable"
        assert container(workload(objects, name))["securityContext"]["readOnlyRootFilesystem"] is True


def test_gateway_config_loads_with_secured_kafka(gateway_config: Config) -> None:
    kafka = gateway_config.gateway.kafka
    assert kafka.enabled and kafka.security.password.reveal() == "kafka-password"
    for sink in gateway_config.gateway.reporting.sinks:
        if sink.type == "kafka" and "bootstrap_servers" not in sink.options:
            assert sink.security == kafka.security


def test_gateway_calls_the_ovms_service(deployed: tuple[Objects, str], gateway_config: Config) -> None:
    objects, prefix = deployed
    url = urlsplit(gateway_config.gateway.model_service.url)
    service = objects[("Service", str(url.hostname))]["spec"]
    assert url.port in [p["port"] for p in service["ports"] if p["targetPort"] == "rest"]
    assert (
        service["selector"].items()
        <= objects[("Deployment", prefix)]["spec"]["template"]["metadata"]["labels"].items()
    )


def test_rest_service_port_probes_and_bind(deployed: tuple[Objects, str]) -> None:
    objects, prefix = deployed
    rest = workload(objects, f"{prefix}-gateway")
    c = container(rest)
    port = {p["name"]: p["containerPort"] for p in c["ports"]}["http"]
    bind_var, _default = HTTP_BINDS["gateway"]
    assert {"name": bind_var, "value": f"0.0.0.0:{port}"} in c["env"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    service = objects[("Service", f"{prefix}-gateway")]["spec"]
    assert service["selector"].items() <= pod_labels(rest).items()
    assert service["ports"][0]["targetPort"] == "http"
    assert rest["spec"]["serviceName"] in {name for kind, name in objects if kind == "Service"}


def test_kafka_worker_liveness_is_its_metrics_port(
    deployed: tuple[Objects, str], gateway_config: Config
) -> None:
    objects, prefix = deployed
    c = container(workload(objects, f"{prefix}-gateway-kafka"))
    port = {p["name"]: p["containerPort"] for p in c["ports"]}["metrics"]
    assert port == gateway_config.gateway.kafka.metrics_port
    assert c["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}


def test_grpc_service_port_and_health_probe(deployed: tuple[Objects, str], gateway_config: Config) -> None:
    """The gRPC provider listens where its config binds, its Service carries port 9003, and
    its readiness is the kubelet's gRPC probe on a name the provider's health service sets;
    start-up and liveness ask only for the open port (a model server that is down must not
    restart the gateway)."""
    objects, prefix = deployed
    grpc = workload(objects, f"{prefix}-gateway-grpc")
    c = container(grpc)
    port = {p["name"]: p["containerPort"] for p in c["ports"]}["grpc"]
    assert port == GATEWAY_GRPC_PORT
    assert gateway_config.gateway.grpc.enabled
    assert gateway_config.gateway.grpc.bind == f"0.0.0.0:{port}"
    probe = c["readinessProbe"]["grpc"]
    assert probe["port"] == port and probe.get("service", "") in HEALTH_SERVICES
    for name in ("startupProbe", "livenessProbe"):
        assert c[name]["tcpSocket"] == {"port": "grpc"}, name
    service = objects[("Service", f"{prefix}-gateway-grpc")]["spec"]
    assert service["selector"].items() <= pod_labels(grpc).items()
    assert service["ports"] == [{"name": "grpc", "port": port, "targetPort": "grpc", "appProtocol": "grpc"}]
    rest_service = objects[("Service", f"{prefix}-gateway")]["spec"]
    assert not rest_service["selector"].items() <= pod_labels(grpc).items(), "REST clients never reach it"


def test_resources_budgets_and_autoscaler(deployed: tuple[Objects, str]) -> None:
    objects, prefix = deployed
    for name in (f"{prefix}-gateway{suffix}" for suffix in WORKLOADS):
        requests = container(workload(objects, name))["resources"]["requests"]
        assert requests.keys() >= {"cpu", "memory"}, name
        budget = objects[("PodDisruptionBudget", name)]["spec"]
        assert budget["selector"]["matchLabels"].items() <= pod_labels(workload(objects, name)).items()
        assert budget["maxUnavailable"] == 1
    target = objects[("HorizontalPodAutoscaler", f"{prefix}-gateway")]["spec"]["scaleTargetRef"]
    assert target == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": f"{prefix}-gateway"}


def test_gateway_pods_and_sync_pods_never_share_a_selector(deployed: tuple[Objects, str]) -> None:
    """The webhook's and OVMS's Services select name + instance: gateway Pods must not match
    them, nor the gateway's Services the OVMS Pods."""
    objects, prefix = deployed
    sync_labels = objects[("Deployment", prefix)]["spec"]["template"]["metadata"]["labels"]
    gateway_labels = [pod_labels(workload(objects, f"{prefix}-gateway{s}")) for s in WORKLOADS]
    for (kind, name), doc in objects.items():
        selector = doc["spec"].get("selector") if kind in {"Service", "Deployment", "StatefulSet"} else None
        if not selector:
            continue
        selector = selector.get("matchLabels", selector)
        matches_sync = selector.items() <= sync_labels.items()
        matches_gateway = any(selector.items() <= labels.items() for labels in gateway_labels)
        assert not (matches_sync and matches_gateway), f"{kind} {name} selects both"
        assert matches_gateway == ("gateway" in name), f"{kind} {name}"


# -- fleet mode on a secured Kafka (the agent's event reader, the webhook's resync) -------------


def test_fleet_mode_reads_a_secured_topic(tmp_path: Path) -> None:
    """events.kafka.security reaches the agent's config; the Secret's password and CA are
    mounted in the agent and the webhook (the webhook publishes resync commands)."""
    security = {
        "protocol": "sasl_ssl",
        "sasl": {"mechanism": "SCRAM-SHA-256", "username": "agent"},
        "tls": {"ca_file": f"{KAFKA_SECRET_DIR}ca.crt"},
    }
    values = {**FLEET, "events": {"kafka": {**FLEET["events"]["kafka"], "security": security}}}
    objects = render({**values, "eventsKafkaSecret": "events-kafka"})
    validate(objects)
    spec = objects[("Deployment", "demo-modelsync")]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["events-kafka"]["secret"]["secretName"] == "events-kafka"
    staged = tmp_path / "kafka"
    staged.mkdir()
    trustme.CA().cert_pem.write_to_path(str(staged / "ca.crt"))
    (staged / "password").write_text("events-password\n")
    text = objects[("ConfigMap", "demo-modelsync-config")]["data"]["sync-config.yaml"]
    path = tmp_path / "sync-config.yaml"
    path.write_text(text.replace(KAFKA_SECRET_DIR, f"{staged}/"))
    for sidecar in spec["initContainers"]:
        mounts = {m["name"]: m["mountPath"] for m in sidecar["volumeMounts"]}
        env = {e["name"]: e["value"] for e in sidecar["env"]}
        password_file = env["MODELSYNC_EVENTS_KAFKA_PASSWORD_FILE"]
        assert password_file == mounts["events-kafka"] + "/password" == f"{KAFKA_SECRET_DIR}password"
        config = load_config(
            path, env={**SECRETS, "MODELSYNC_EVENTS_KAFKA_PASSWORD_FILE": str(staged / "password")}
        )
        kafka = config.kafka_events
        assert kafka is not None and kafka.security.password.reveal() == "events-password", sidecar["name"]
        assert kafka.security.ca_file == staged / "ca.crt"
