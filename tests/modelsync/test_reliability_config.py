"""Start-up input an operator gets wrong: a secret with a trailing newline, a secret file that is
not text, a ``.modelsync`` that is a symbolic link, a config file with a lone surrogate.

Each is met by the real processes (the agent's CLI, gunicorn serving the webhook): a clear
one-line ``configuration error`` and exit 2 without a traceback, or, for white space, a secret
that works the same from every source.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.helpers import minio_event, wait_for
from tests.support.processes import Process, agent_cli, child_env
from tests.support.volume import TOKEN, Volume
from webhook import gunicorn_command


def webhook_refuses_to_start(volume: Volume, **env: str) -> str:
    """Start gunicorn on the webhook and return its output once it has exited (non-zero)."""
    proc = Process(
        gunicorn_command(),
        child_env(volume, MODELSYNC_WEBHOOK_BIND="127.0.0.1:0", **env),
        volume.root / "webhook.log",
    )
    wait_for(lambda: not proc.alive(), 30, what="the webhook to refuse to start")
    assert proc.stop() != 0
    return proc.log


def assert_one_clean_line(output: str, *words: str) -> None:
    assert "Traceback" not in output, output
    assert "configuration error" in output, output
    for word in words:
        assert word in output, output


@pytest.mark.parametrize("token", [f"{TOKEN}\n", f"  {TOKEN}\t\n"])
def test_token_from_the_environment_is_stripped_like_a_file(
    volume: Volume, start_webhook, token: str
) -> None:
    del volume.settings["webhook"]["auth_token"]
    volume.write()
    webhook = start_webhook(MODELSYNC_WEBHOOK_TOKEN=token)
    answer = webhook.post_event(minio_event(volume.settings["minio"]["bucket_name"], "m/1/model.bin"))
    assert answer.status_code == 200, answer.text
    assert webhook.post_event({}, token=token.strip() + "x").status_code == 401


@pytest.mark.parametrize("name", ["MINIO_SECRET_KEY", "MODELSYNC_WEBHOOK_TOKEN"])
def test_a_secret_file_that_is_not_utf8_is_a_configuration_error(
    volume: Volume, tmp_path: Path, name: str
) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"s3cr\xff\xfe-hidden-part")
    result = agent_cli(volume, "run", **{f"{name}_FILE": str(secret)})
    assert result.returncode == 2, result.stderr
    assert_one_clean_line(result.stderr, f"{name}_FILE={secret} is not UTF-8 text")
    assert "hidden-part" not in result.stderr + result.stdout
    if name == "MODELSYNC_WEBHOOK_TOKEN":
        output = webhook_refuses_to_start(volume, **{f"{name}_FILE": str(secret)})
        assert_one_clean_line(output, "is not UTF-8 text")
        assert "hidden-part" not in output


def test_a_config_file_with_a_lone_surrogate_names_the_key(volume: Volume) -> None:
    text = volume.config_path.read_text()
    volume.config_path.write_text(
        text.replace(f"bucket_name: {volume.settings['minio']['bucket_name']}", 'bucket_name: "b\\ud800"')
    )
    result = agent_cli(volume, "run")
    assert result.returncode == 2, result.stderr
    assert_one_clean_line(result.stderr, "minio.bucket_name", "lone surrogate")


@pytest.mark.parametrize("number", [".nan", ".inf", "-.Inf"])
def test_a_number_that_is_not_finite_names_the_key(volume: Volume, number: str) -> None:
    # Valid YAML that passes any schema bound, but json.dumps would write NaN into config.json.
    volume.settings.setdefault("ovms", {})["model_defaults"] = {"plugin_config": {"PERF_COUNT": 1}}
    volume.write()
    text = volume.config_path.read_text().replace("PERF_COUNT: 1", f"PERF_COUNT: {number}")
    volume.config_path.write_text(text)
    result = agent_cli(volume, "status")
    assert result.returncode == 2, result.stderr
    assert_one_clean_line(
        result.stderr, "ovms.model_defaults.plugin_config.PERF_COUNT", "not a finite number"
    )


def test_a_config_file_that_is_not_utf8(volume: Volume) -> None:
    volume.config_path.write_bytes(volume.config_path.read_bytes() + b"# caf\xe9\n")
    result = agent_cli(volume, "status")
    assert result.returncode == 2, result.stderr
    assert_one_clean_line(result.stderr, "not UTF-8 text")


@pytest.mark.parametrize("link", [".modelsync", ".modelsync/intents"])
def test_a_symlinked_state_directory_is_refused(volume: Volume, tmp_path: Path, link: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if link != ".modelsync":
        (volume.models / ".modelsync").mkdir()
    (volume.models / link).symlink_to(elsewhere)

    for command in ("run", "resync"):
        result = agent_cli(volume, command)
        assert result.returncode == 2, result.stderr
        assert_one_clean_line(result.stderr, f"{volume.models / link} is a symbolic link")
    health = agent_cli(volume, "health")
    assert health.returncode == 1 and "is a symbolic link" in health.stderr
    assert_one_clean_line(webhook_refuses_to_start(volume), "is a symbolic link")
    assert list(elsewhere.iterdir()) == [], "nothing was written through the link"
