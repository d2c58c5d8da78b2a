"""Configuration: the original sidecar's file works unchanged; every error names file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelsync import s3
from modelsync.config import load_config
from modelsync.errors import ConfigError

ORIGINAL = """\
minio:
  endpoint: "http://minio:9000"
  access_key: "minioadmin"
  secret_key: "minioadmin"
  bucket_name: "models"
  secure: false
sync:
  interval: 30
  models_path: "/models"
  log_level: "INFO"
ovms:
  model_name: "my-model"
  config_path: "/models/config.json"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sync-config.yaml"
    path.write_text(text)
    return path


def test_original_sidecar_config_loads_unchanged(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ORIGINAL), env={})
    assert config.minio.endpoint == "minio:9000"
    assert config.minio.secure is False
    assert config.minio.bucket == "models"
    assert config.minio.access_key.reveal() == "minioadmin"
    assert config.sync.interval == 30
    assert config.sync.models_path == Path("/models")
    assert config.ovms.model_name == "my-model"
    assert config.ovms.config_path == Path("/models/config.json")
    assert config.ovms.base_path == Path("/models")
    assert config.webhook.max_body_bytes == 1024 * 1024
    assert config.sync.settle_seconds == 2.0


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, ORIGINAL)
    assert load_config(env={"CONFIG_PATH": str(path)}).source == path


def test_https_scheme_means_tls(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ORIGINAL.replace("http://minio", "https://minio")), env={})
    assert config.minio.secure is True
    assert config.minio.url == "https://minio:9000"


def test_secrets_from_environment_and_files(tmp_path: Path) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text("file-token\n")
    env = {
        "MINIO_ACCESS_KEY": "env-access",
        "MINIO_SECRET_KEY_FILE": str(write(tmp_path, ORIGINAL).parent / "secret"),
        "MODELSYNC_WEBHOOK_TOKEN_FILE": str(secret_file),
    }
    (tmp_path / "secret").write_text("file-secret")
    config = load_config(tmp_path / "sync-config.yaml", env=env)
    assert config.minio.access_key.reveal() == "env-access"
    assert config.minio.secret_key.reveal() == "file-secret"
    assert config.webhook.auth_token is not None
    assert config.webhook.auth_token.reveal() == "file-token"
    # The environment wins over its _FILE twin.
    env["MODELSYNC_WEBHOOK_TOKEN"] = "env-token"
    assert load_config(tmp_path / "sync-config.yaml", env=env).webhook.auth_token.reveal() == "env-token"


def test_secrets_are_stripped_whatever_their_source(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("  file-secret \n")
    path = write(tmp_path, ORIGINAL.replace('secret_key: "minioadmin"', 'secret_key: " yaml-secret\\n"'))
    assert load_config(path, env={}).minio.secret_key.reveal() == "yaml-secret"
    env = {"MINIO_SECRET_KEY": "env-secret\n", "MODELSYNC_WEBHOOK_TOKEN": "\ttok \r\n"}
    config = load_config(path, env=env)
    assert config.minio.secret_key.reveal() == "env-secret"
    assert config.webhook.auth_token is not None and config.webhook.auth_token.reveal() == "tok"
    # White space alone is no secret: the _FILE twin is read instead.
    env = {"MINIO_SECRET_KEY": " \n", "MINIO_SECRET_KEY_FILE": str(tmp_path / "secret")}
    assert load_config(path, env=env).minio.secret_key.reveal() == "file-secret"


def test_a_secret_that_is_not_text_is_refused_without_showing_it(tmp_path: Path) -> None:
    path = write(tmp_path, ORIGINAL)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={"MINIO_ACCESS_KEY": "abc\udcff-hidden"})  # undecodable env bytes
    assert caught.value.key == "minio.access_key"
    assert "hidden" not in str(caught.value)


def test_secrets_never_in_repr(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ORIGINAL + "webhook:\n  auth_token: s3cr3t-token\n"), env={})
    assert "minioadmin" not in repr(config)
    assert "s3cr3t-token" not in repr(config)


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        (lambda d: d["minio"].pop("bucket_name"), "minio.bucket_name", "required"),
        (lambda d: d["sync"].update(interval="often"), "sync.interval", "expected number"),
        (lambda d: d["sync"].update(intervall=5), "sync.intervall", "unknown key"),
        (lambda d: d["sync"].update(models_path="relative/path"), "sync.models_path", "Absolute"),
        (lambda d: d["sync"].update(log_level="LOUD"), "sync.log_level", ""),
        (lambda d: d["sync"].update(log_format="xml"), "sync.log_format", "one of"),
        (lambda d: d.update(extra={}), "extra", "unknown key"),
        (lambda d: d["minio"].update(endpoint="http://minio:9000/path"), "minio.endpoint", "host:port"),
        (
            lambda d: d["ovms"].update(models={"m": {"stateful": True}}),
            "ovms.models.m.stateful",
            "unknown key",
        ),
        (lambda d: d["ovms"].update(model_defaults={"nireq": -1}), "ovms.model_defaults.nireq", ""),
        (lambda d: d["ovms"].update(models={"m": {"name": "x"}}), "ovms.models.m", ""),
        (lambda d: d.update(webhook={"max_body_bytes": 10}), "webhook.max_body_bytes", ""),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path: Path, change, key: str, words: str) -> None:
    document = yaml.safe_load(ORIGINAL)
    change(document)
    path = write(tmp_path, yaml.safe_dump(document))
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.key == key
    assert str(path) in str(caught.value)
    assert words in caught.value.message


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", env={})
    with pytest.raises(ConfigError, match=r"not valid YAML at line 2, column 1"):
        load_config(write(tmp_path, "minio:\n\tendpoint: x\n"), env={})
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- a list\n"), env={})


def test_agent_requires_credentials(tmp_path: Path) -> None:
    text = ORIGINAL.replace('  access_key: "minioadmin"\n', "")
    config = load_config(write(tmp_path, text), env={})
    with pytest.raises(ConfigError) as caught:
        s3.require_credentials(config, env={})
    assert caught.value.key == "minio.access_key"


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ORIGINAL), env={})
    with pytest.raises(AttributeError):
        config.sync.interval = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.ovms.models["x"] = {}  # type: ignore[index]


def test_log_lines_never_show_a_credential_in_a_url(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from modelsync import logsetup

    logsetup.configure("INFO")
    logging.getLogger("urllib3.connectionpool").warning(
        "Retrying after connection broken: %s",
        "/?Action=AssumeRoleWithWebIdentity&WebIdentityToken=eyJ.abc&x=1",
    )
    line = capsys.readouterr().err
    assert "eyJ.abc" not in line and "WebIdentityToken=***&x=1" in line


@pytest.mark.parametrize(
    "endpoint", ["http://ak:secret-in-url@127.0.0.1:9000", "127.0.0.1:99999", "[::1", "127.0.0.1:1?x=y"]
)
def test_an_endpoint_the_s3_client_refuses_is_a_configuration_error(tmp_path: Path, endpoint: str) -> None:
    path = write(tmp_path, ORIGINAL.replace('endpoint: "http://minio:9000"', f'endpoint: "{endpoint}"'))
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.key == "minio.endpoint"
    assert "secret-in-url" not in str(caught.value)


def test_what_an_endpoint_says_is_one_short_line_in_the_log() -> None:
    forged = "hello\n2026-12-06 10:00:00 - model_sync - ERROR - FORGED\r" + "A" * 200_000
    described = s3.describe(ValueError(forged))
    assert "\n" not in described and "\r" not in described and "\\x0a" in described
    assert len(described) < 400 and "more characters" in described
