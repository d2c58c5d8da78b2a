"""Reaching S3 the ways production does: TLS with a private CA, web identity (IRSA) through STS
with a token that rotates, the AWS environment, the instance role.

The servers are moto's own S3, STS and instance-metadata apps, served on loopback (the S3 one
with a certificate from a CA that trustme makes in the test). A thin WSGI layer in front of each
records what arrived, so a test can tell which credentials signed the agent's S3 requests.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from moto.moto_server.werkzeug_app import create_backend_app

from tests.support.helpers import served_models, wait_for
from tests.support.processes import agent_cli
from tests.support.s3 import Bucket
from tests.support.volume import Volume
from tests.support.wsgirig import Served, moto_s3


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_s3(serve: Callable[..., Served], ca: trustme.CA) -> Served:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return serve(moto_s3(), ssl_context=context)


def use_endpoint(volume: Volume, url: str, **minio: Any) -> None:
    volume.settings["minio"].update(endpoint=url, **minio)
    volume.write()


def without_static_keys(volume: Volume) -> None:
    del volume.settings["minio"]["access_key"], volume.settings["minio"]["secret_key"]


def test_tls_with_a_private_ca(
    volume: Volume, bucket: Bucket, start_agent, serve, ca: trustme.CA, tmp_path: Path
) -> None:
    s3 = tls_s3(serve, ca)
    bucket.put("secure/1/model.bin", b"weights over TLS")

    # Without the CA: the error names the endpoint and the certificate problem.
    use_endpoint(volume, s3.url)
    sick = agent_cli(volume, "health")
    assert sick.returncode == 1
    assert f"Cannot connect to MinIO at {s3.url}" in sick.stderr
    assert "TLS certificate verify failed: unable to get local issuer certificate" in sick.stderr
    assert "minio.ca_file" in sick.stderr
    assert not any(e.get("HTTP_AUTHORIZATION") for e in s3.recorder.seen), "nothing signed was sent"

    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    use_endpoint(volume, s3.url, ca_file=str(ca_file))
    start_agent()
    wait_for(lambda: "secure" in served_models(volume.ovms_config), what="synced through TLS")
    assert (volume.models / "secure" / "1" / "model.bin").read_bytes() == b"weights over TLS"
    assert any(e.get("HTTP_AUTHORIZATION") for e in s3.recorder.seen)


def test_tls_skip_verify_warns_once_and_works(volume: Volume, bucket: Bucket, start_agent, serve, ca) -> None:
    s3 = tls_s3(serve, ca)
    bucket.put("trusting/1/model.bin", b"x")
    use_endpoint(volume, s3.url, tls_skip_verify=True)
    agent = start_agent()
    wait_for(lambda: "trusting" in served_models(volume.ovms_config), what="synced without verification")
    assert agent.log.count("minio.tls_skip_verify is true") == 1, agent.log


@pytest.mark.parametrize(
    ("settings", "key", "words"),
    [
        ({"endpoint": "http://127.0.0.1:9", "ca_file": "/etc/hostname"}, "minio.ca_file", "not TLS"),
        (
            {"endpoint": "https://127.0.0.1:9", "ca_file": "/nonexistent/ca.pem"},
            "minio.ca_file",
            "cannot read",
        ),
        (
            {"endpoint": "https://127.0.0.1:9", "ca_file": "/etc/hostname"},
            "minio.ca_file",
            "no PEM certificate",
        ),
    ],
)
def test_a_bad_ca_file_is_a_configuration_error(
    volume: Volume, settings: dict[str, str], key: str, words: str
) -> None:
    volume.settings["minio"].update(settings)
    volume.write()
    result = agent_cli(volume, "run")
    assert result.returncode == 2
    assert f"configuration error: {volume.config_path}: {key}: " in result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr


def short_lived(body: bytes) -> bytes:
    """Credentials that expire 12 s from now: minio refreshes them 10 s before, so after ~2 s."""
    soon = (datetime.now(UTC) + timedelta(seconds=12)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return re.sub(rb"<Expiration>[^<]*</Expiration>", f"<Expiration>{soon}</Expiration>".encode(), body)


def test_web_identity_with_a_token_file_that_rotates(
    volume: Volume, bucket: Bucket, start_agent, serve, tmp_path: Path
) -> None:
    s3 = serve(moto_s3())
    sts = serve(create_backend_app("sts"), rewrite=short_lived)
    token_file = tmp_path / "token"
    token_file.write_text("eyJ.first-token.sig")
    without_static_keys(volume)
    use_endpoint(volume, s3.url, sts_endpoint=sts.url)
    env = {
        "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/models-reader",
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
    }

    health = agent_cli(volume, "health", **env)
    assert "S3 credentials: web identity (role arn:aws:iam::123456789012:role/models-reader" in health.stdout
    assert "first-token" not in health.stdout + health.stderr

    bucket.put("irsa/1/model.bin", b"v1")
    volume.settings["sync"]["interval"] = 1  # reconcile often, so credentials are used again and again
    volume.write()
    agent = start_agent(**env)
    wait_for(lambda: "irsa" in served_models(volume.ovms_config), what="synced with web identity")

    def tokens() -> list[str]:
        return [
            re.search(r"WebIdentityToken=([^&]+)", e.get("QUERY_STRING", "")).group(1)
            for e in sts.recorder.seen
        ]

    assert tokens() and set(tokens()) == {"eyJ.first-token.sig"}
    issued = s3.recorder.access_keys()
    assert issued and all(key.startswith("ASIA") for key in issued), issued  # STS's, not static keys

    token_file.write_text("eyJ.rotated-token.sig")  # the kubelet writes a fresh token
    wait_for(lambda: "eyJ.rotated-token.sig" in tokens(), 30, what="the rotated token to be used")
    bucket.put("irsa/2/model.bin", b"v2")
    wait_for(
        lambda: (volume.models / "irsa" / "2" / "model.bin").exists(), 30, what="v2 with renewed credentials"
    )
    assert len(s3.recorder.access_keys()) > len(issued), "the renewed credentials signed later requests"
    assert "rotated-token" not in agent.log and "first-token" not in agent.log


def test_web_identity_failure_is_an_outage_with_a_clear_reason(
    volume: Volume, start_agent, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("eyJ.secret-token.sig")
    without_static_keys(volume)
    volume.settings["minio"]["sts_endpoint"] = "http://127.0.0.1:9"  # nothing listens
    volume.write()
    agent = start_agent(
        wait_ready=False, AWS_ROLE_ARN="arn:aws:iam::1:role/r", AWS_WEB_IDENTITY_TOKEN_FILE=str(token_file)
    )
    wait_for(
        lambda: "cannot get S3 credentials from web identity" in agent.log, 30, what="the reason in the log"
    )
    assert agent.alive()
    assert "secret-token" not in agent.log


def test_aws_environment_and_session_token(volume: Volume, bucket: Bucket, start_agent, serve) -> None:
    s3 = serve(moto_s3())
    without_static_keys(volume)
    use_endpoint(volume, s3.url)
    env = {
        "AWS_ACCESS_KEY_ID": "AKIAENVIRONMENT00001",
        "AWS_SECRET_ACCESS_KEY": "env-secret",
        "AWS_SESSION_TOKEN": "tok",
    }
    health = agent_cli(volume, "health", **env)
    assert "S3 credentials: AWS environment (AWS_ACCESS_KEY_ID with AWS_SESSION_TOKEN)" in health.stdout
    bucket.put("envcreds/1/model.bin", b"x")
    start_agent(**env)
    wait_for(lambda: "envcreds" in served_models(volume.ovms_config), what="synced with AWS env credentials")
    assert s3.recorder.access_keys() == {"AKIAENVIRONMENT00001"}
    assert all(
        e.get("HTTP_X_AMZ_SECURITY_TOKEN") == "tok" for e in s3.recorder.seen if e.get("HTTP_AUTHORIZATION")
    )


def test_static_keys_come_first_with_a_session_token(
    volume: Volume, bucket: Bucket, start_agent, serve
) -> None:
    s3 = serve(moto_s3())
    use_endpoint(volume, s3.url, session_token="static-session")
    bucket.put("static/1/model.bin", b"x")
    start_agent(AWS_ACCESS_KEY_ID="AKIAIGNORED000000001", AWS_SECRET_ACCESS_KEY="ignored")
    wait_for(lambda: "static" in served_models(volume.ovms_config), what="synced with static keys")
    assert s3.recorder.access_keys() == {volume.settings["minio"]["access_key"]}
    signed = [e for e in s3.recorder.seen if e.get("HTTP_AUTHORIZATION")]
    assert all(e.get("HTTP_X_AMZ_SECURITY_TOKEN") == "static-session" for e in signed)


def test_instance_role_only_when_asked_for(volume: Volume, bucket: Bucket, start_agent, serve) -> None:
    s3 = serve(moto_s3())
    imds = serve(create_backend_app("instance_metadata"))
    without_static_keys(volume)
    use_endpoint(volume, s3.url)
    refused = agent_cli(volume, "run")
    assert refused.returncode == 2 and "minio.instance_role: true" in refused.stderr

    use_endpoint(volume, s3.url, instance_role=True, metadata_endpoint=imds.url)
    bucket.put("ec2/1/model.bin", b"x")
    start_agent()
    wait_for(lambda: "ec2" in served_models(volume.ovms_config), what="synced with the instance role")
    assert imds.recorder.seen, "the metadata service was asked"
    assert s3.recorder.access_keys(), "requests were signed with the role's credentials"
