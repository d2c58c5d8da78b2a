"""Fleet mode's deployment files: compose.fleet.yaml, deploy/kubernetes-fleet, Helm's mode.

The same offline checks as tests/deploy/test_deploy.py (whose Kubernetes tests also run on the fleet
overlay), plus what fleet mode needs: MinIO's Kafka target, brokers and topic agree across
MinIO, the topic's creation and every agent's config; each replica has its own volume; webhook
mode stays the default for one replica.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelsync import s3
from modelsync.config import Config, load_config
from tests.support import ROOT
from tests.support.deploy import (
    AGENT_COMMAND,
    AGENT_HEALTH,
    CHART,
    COMPOSE,
    EXAMPLE_CONFIG,
    K8S_FLEET,
    SECRETS,
    WEBHOOK_COMMAND,
    base_manifests,
    env_of,
    render_overlay,
    run,
    service_mounts,
    tool,
)

FLEET_COMPOSE = ROOT / "compose.fleet.yaml"
FLEET_CONFIG = ROOT / "deploy" / "config" / "fleet" / "sync-config.yaml"
INFRA = {"kafka", "kafka-init", "minio", "minio-init"}


def compose_config(path: Path) -> dict[str, Any]:
    # A bare environment: the file's defaults, not the developer's shell, are under test.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    result = run([tool("docker-compose"), "-f", str(path), "config", "--format", "json"], env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = yaml.safe_load(result.stdout)
    return document


@pytest.fixture(scope="module")
def fleet() -> dict[str, Any]:
    return compose_config(FLEET_COMPOSE)


def replicas(fleet: dict[str, Any]) -> list[str]:
    """The replica numbers, from the agent-N services."""
    return sorted(name.split("-", 1)[1] for name in fleet["services"] if name.startswith("agent-"))


@pytest.fixture(scope="module")
def fleet_config(fleet: dict[str, Any]) -> Config:
    services = fleet["services"]
    return load_config(FLEET_CONFIG, env={**env_of(services["agent-1"]), **env_of(services["webhook-1"])})


def same_but_events(config: Config, reference: Config) -> None:
    """Fleet mode changes only the events section: minio, sync, ovms and webhook stay."""
    assert config.kafka_events is not None and reference.kafka_events is None
    for section in ("minio", "sync", "ovms", "webhook"):
        assert getattr(config, section) == getattr(reference, section), section


def test_compose_fleet_has_two_or_more_full_replicas(fleet: dict[str, Any]) -> None:
    numbers = replicas(fleet)
    assert len(numbers) >= 2
    expected = INFRA | {f"{part}-{n}" for n in numbers for part in ("agent", "webhook", "ovms")}
    assert set(fleet["services"]) == expected
    default = compose_config(COMPOSE)["services"]
    for n in numbers:
        agent, webhook, ovms = (fleet["services"][f"{part}-{n}"] for part in ("agent", "webhook", "ovms"))
        assert agent["command"] == AGENT_COMMAND and agent["healthcheck"]["test"] == ["CMD", *AGENT_HEALTH]
        assert webhook["command"] == WEBHOOK_COMMAND
        # The images and their hardening are compose.yaml's.
        for name, service in (("agent", agent), ("webhook", webhook), ("ovms", ovms)):
            assert service["image"] == default[name]["image"], name
            assert service.get("read_only") == default[name].get("read_only"), name
        assert ovms["command"] == default["ovms"]["command"]
        assert ovms["depends_on"][f"agent-{n}"]["condition"] == "service_healthy"
        assert agent["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"


def test_compose_fleet_each_replica_has_its_own_volume(fleet: dict[str, Any], fleet_config: Config) -> None:
    models = str(fleet_config.sync.models_path)
    assert fleet_config.ovms.config_path.parent == fleet_config.sync.models_path
    volumes: list[str] = []
    for n in replicas(fleet):
        sources = set()
        for part in ("agent", "webhook", "ovms"):
            mount = service_mounts(fleet["services"][f"{part}-{n}"])[models]
            assert mount["type"] == "volume", (part, n, mount)
            assert bool(mount.get("read_only")) == (part == "ovms"), (part, n)
            sources.add(mount["source"])
        assert len(sources) == 1, f"replica {n}: one volume for its agent, webhook and OVMS"
        volumes += sources
    assert len(set(volumes)) == len(volumes), f"replicas share a volume: {volumes}"
    assert set(volumes) <= set(fleet["volumes"])


def test_compose_fleet_agent_reaches_its_own_ovms(fleet: dict[str, Any], fleet_config: Config) -> None:
    """One config file for all: "ovms" resolves, on each replica's network, to its OVMS only."""
    assert fleet_config.ovms.rest_url is not None
    host, port = re.fullmatch(r"http://([^:/]+):(\d+)", fleet_config.ovms.rest_url).groups()  # type: ignore[union-attr]
    services = fleet["services"]
    assert host not in services, "a service of that name would be reachable from every replica"
    for n in replicas(fleet):
        ovms = services[f"ovms-{n}"]
        assert list(ovms["networks"]) == [f"replica-{n}"]
        assert host in ovms["networks"][f"replica-{n}"]["aliases"]
        assert ovms["command"][ovms["command"].index("--rest_port") + 1] == port
        on_network = {name for name, s in services.items() if f"replica-{n}" in (s.get("networks") or {})}
        assert on_network == {f"agent-{n}", f"webhook-{n}", f"ovms-{n}"}
        for part in ("agent", "webhook"):
            assert set(services[f"{part}-{n}"]["networks"]) == {"default", f"replica-{n}"}


def test_compose_fleet_config_is_the_example_plus_events(fleet: dict[str, Any], fleet_config: Config) -> None:
    services = fleet["services"]
    reference = load_config(
        EXAMPLE_CONFIG, env={**env_of(services["agent-1"]), **env_of(services["webhook-1"])}
    )
    same_but_events(fleet_config, reference)
    for n in replicas(fleet):
        for part in ("agent", "webhook"):
            service = services[f"{part}-{n}"]
            config_path = Path(env_of(service)["CONFIG_PATH"])
            mount = service_mounts(service)[str(config_path.parent)]
            assert Path(mount["source"]) / config_path.name == FLEET_CONFIG and mount["read_only"]
            config = load_config(FLEET_CONFIG, env=env_of(service))
            if part == "agent":
                s3.require_credentials(config, env={})
            else:
                assert config.webhook.auth_token is not None


def test_compose_fleet_minio_publishes_to_the_agents_topic(
    fleet: dict[str, Any], fleet_config: Config
) -> None:
    services = fleet["services"]
    events = fleet_config.kafka_events
    assert events is not None
    minio = env_of(services["minio"])
    assert minio["MINIO_NOTIFY_KAFKA_ENABLE_MODELSYNC"] == "on"
    assert minio["MINIO_NOTIFY_KAFKA_BROKERS_MODELSYNC"] == events.bootstrap_servers
    assert minio["MINIO_NOTIFY_KAFKA_TOPIC_MODELSYNC"] == events.topic
    # Without a queue directory, events produced while the broker is down would be lost.
    assert minio["MINIO_NOTIFY_KAFKA_QUEUE_DIR_MODELSYNC"].startswith("/data/")
    assert int(minio["MINIO_NOTIFY_KAFKA_QUEUE_LIMIT_MODELSYNC"]) > 0
    assert not any(k.startswith("MINIO_NOTIFY_WEBHOOK_") for k in minio), "fleet mode has no webhook target"
    script = " ".join(services["minio-init"]["command"])
    bucket = fleet_config.minio.bucket
    assert f"mc event add local/{bucket} arn:minio:sqs::MODELSYNC:kafka --event put,delete" in script
    assert ":webhook" not in script
    # What the agents bootstrap from is what the broker advertises.
    broker = env_of(services["kafka"])
    advertised = {entry.split("://", 1)[1] for entry in broker["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    assert set(events.bootstrap_servers.split(",")) <= advertised


def test_compose_fleet_topic_exists_with_partitions_before_minio(
    fleet: dict[str, Any], fleet_config: Config
) -> None:
    services = fleet["services"]
    events = fleet_config.kafka_events
    assert events is not None
    script = " ".join(services["kafka-init"]["command"])
    created = re.search(r"--create --if-not-exists\s+\\?\s*--topic (\S+) --partitions (\d+)", script)
    assert created is not None, script
    assert created.group(1) == events.topic
    assert int(created.group(2)) >= 2, "several partitions: every agent must read all of them"
    assert f"--bootstrap-server {events.bootstrap_servers}" in script
    # A topic auto-created by MinIO's first message would have one partition.
    assert services["minio"]["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    assert services["kafka-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_compose_fleet_host_ports_are_distinct(fleet: dict[str, Any]) -> None:
    published = [
        (p.get("host_ip", ""), str(p["published"]))
        for service in fleet["services"].values()
        for p in service.get("ports", [])
    ]
    assert len(published) == len(set(published)), published
    assert all(host == "127.0.0.1" for host, _ in published)


# -- Kubernetes: the overlay (the shared pod checks run on it in tests/deploy/test_deploy.py) -----------


def configmap_config(manifests: dict[tuple[str, str], dict[str, Any]], tmp_path: Path, name: str) -> Config:
    path = tmp_path / f"{name}.yaml"
    path.write_text(manifests[("ConfigMap", "modelsync-config")]["data"]["sync-config.yaml"])
    return load_config(path, env=SECRETS)


def test_k8s_fleet_overlay_is_the_base_with_n_replicas_reading_the_topic(tmp_path: Path) -> None:
    base, fleet = base_manifests(), render_overlay(K8S_FLEET)
    assert set(fleet) == set(base)
    deployment = ("Deployment", "modelsync")
    assert base[deployment]["spec"]["replicas"] == 1, "webhook mode stays the default, one replica"
    assert fleet[deployment]["spec"]["replicas"] >= 2
    # The same Pod, each with its own emptyDir: only the count and the config differ.
    assert fleet[deployment]["spec"]["template"] == base[deployment]["spec"]["template"]
    for key in set(base) - {deployment, ("ConfigMap", "modelsync-config")}:
        assert fleet[key] == base[key], key
    same_but_events(configmap_config(fleet, tmp_path, "fleet"), configmap_config(base, tmp_path, "base"))


# -- Helm (values and templates as text, as in tests/deploy/test_deploy.py) ------------------------------


def helm_config(values: dict[str, Any], tmp_path: Path) -> Config:
    """sync-config.yaml as templates/configmap.yaml renders it for these values."""
    config = dict(values["config"])
    if values["mode"] == "fleet":
        kafka = values["events"]["kafka"]
        config["events"] = {
            "kafka": {"bootstrap_servers": kafka["bootstrap_servers"], "topic": kafka["topic"]}
        }
    path = tmp_path / f"{values['mode']}.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_config(path, env=SECRETS)


def test_helm_mode_webhook_is_the_default_and_fleet_adds_the_topic(tmp_path: Path) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["mode"] == "webhook" and values["replicaCount"] == 1
    assert set(values["events"]["kafka"]) == {"bootstrap_servers", "topic"}
    webhook = helm_config(values, tmp_path)
    assert webhook.kafka_events is None
    example = yaml.safe_load((CHART / "values-fleet.yaml").read_text())
    assert example["mode"] == "fleet" and example["replicaCount"] >= 2
    merged = {
        **values,
        **example,
        "events": {"kafka": {**values["events"]["kafka"], **example["events"]["kafka"]}},
    }
    fleet = helm_config(merged, tmp_path)
    assert fleet.kafka_events is not None
    assert fleet.kafka_events.bootstrap_servers == example["events"]["kafka"]["bootstrap_servers"]
    assert replace(fleet, events=None, source=webhook.source) == webhook


def test_helm_configmap_template_renders_the_mode() -> None:
    template = (CHART / "templates" / "configmap.yaml").read_text()
    for needle in (
        '{{- if eq .Values.mode "fleet" -}}',
        'required "mode fleet needs events.kafka.bootstrap_servers',
        '(dict "bootstrap_servers" $brokers "topic" .Values.events.kafka.topic)',
        '{{- else if ne .Values.mode "webhook" -}}',
        "{{- fail ",
        "{{- toYaml $config | nindent 4 }}",
    ):
        assert needle in template, needle
    # The Pods roll when the rendered config changes, mode included.
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    assert (
        'checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}'
        in deployment
    )
    assert "replicas: {{ .Values.replicaCount }}" in deployment
