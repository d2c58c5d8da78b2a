"""The deployment files under test and how they are read offline: their paths, the commands
they must name, the linters of the test extra, compose services and the Kubernetes manifests
(the base, and an overlay rendered on it as ``kubectl kustomize`` would)."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway import GUNICORN_ARGS as GATEWAY_GUNICORN_ARGS
from tests.support import ROOT
from webhook import GUNICORN_ARGS

DOCKERFILES = {
    "webhook": ROOT / "Dockerfile.webhook",
    "agent": ROOT / "Dockerfile.agent",
    "gateway": ROOT / "Dockerfile.gateway",
}
COMPOSE = ROOT / "compose.yaml"
EXAMPLE_CONFIG = ROOT / "deploy" / "config" / "sync-config.yaml"
K8S = ROOT / "deploy" / "kubernetes"
K8S_FLEET = ROOT / "deploy" / "kubernetes-fleet"
CHART = ROOT / "deploy" / "helm" / "modelsync"

WEBHOOK_COMMAND = ["gunicorn", *GUNICORN_ARGS]  # what the tests and make run start
AGENT_COMMAND = ["python", "-m", "agent", "run"]
AGENT_HEALTH = ["python", "-m", "agent", "health"]
GATEWAY_COMMAND = ["gunicorn", *GATEWAY_GUNICORN_ARGS]  # the REST provider
GATEWAY_KAFKA_COMMAND = ["python", "-m", "gateway", "kafka"]  # the Kafka provider, same image
GATEWAY_GRPC_COMMAND = ["python", "-m", "gateway", "grpc"]  # the gRPC provider, same image
GATEWAY_GRPC_PORT = 9003
# Each HTTP image's bind variable and the port its gunicorn settings default to.
HTTP_BINDS = {"webhook": ("MODELSYNC_WEBHOOK_BIND", 8080), "gateway": ("MODELSYNC_GATEWAY_BIND", 9001)}
SYNC_UID = 10001
# Native sidecars (initContainers with restartPolicy: Always) need this Kubernetes at least.
K8S_MIN_VERSION = "1.29.0"
SECRETS = {"MINIO_ACCESS_KEY": "ak", "MINIO_SECRET_KEY": "sk", "MODELSYNC_WEBHOOK_TOKEN": "tok"}


def tool(name: str) -> str:
    """A linter from the test extra: installed next to this interpreter, or on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: `pip install -e '.[test]'` provides it")
    return found


def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False, **kwargs)


def service_mounts(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {mount["target"]: mount for mount in service.get("volumes", [])}


def env_of(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in (service.get("environment") or {}).items()}


def base_manifests() -> dict[tuple[str, str], dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    found = {}
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            if doc:
                found[(doc["kind"], doc["metadata"]["name"])] = doc
    listed = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == set(kustomization["resources"]), "every manifest is in kustomization.yaml"
    return found


# The kustomize fields the fleet overlay may use: exactly the ones render_overlay applies (no
# kustomize binary is installable from the test extra; `kubectl kustomize` renders the same).
OVERLAY_FIELDS = {"apiVersion", "kind", "resources", "replicas", "configMapGenerator", "generatorOptions"}


def render_overlay(overlay: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """deploy/kubernetes-fleet rendered on the base: replica counts, and ConfigMaps replaced
    from files (behavior: replace, no name hash)."""
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    assert set(kustomization) <= OVERLAY_FIELDS, f"unchecked fields: {set(kustomization) - OVERLAY_FIELDS}"
    assert [(overlay / r).resolve() for r in kustomization["resources"]] == [K8S.resolve()]
    options = kustomization.get("generatorOptions", {})
    assert options.get("disableNameSuffixHash") is True, "the Deployment refers to the ConfigMap by name"
    found = copy.deepcopy(base_manifests())
    for entry in kustomization.get("replicas", []):
        found[("Deployment", entry["name"])]["spec"]["replicas"] = entry["count"]
    for generator in kustomization.get("configMapGenerator", []):
        key = ("ConfigMap", generator["name"])
        assert generator["behavior"] == "replace" and key in found, generator
        data = {Path(f).name: (overlay / f).read_text() for f in generator["files"]}
        labels = {**found[key]["metadata"].get("labels", {}), **options.get("labels", {})}
        found[key] = {**found[key], "data": data, "metadata": {"name": generator["name"], "labels": labels}}
    return found
